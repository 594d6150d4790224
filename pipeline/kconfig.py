"""Kernel configuration: base config + merged fragments + olddefconfig + a survivor check.

Fragments are merged in order (a later fragment wins; an override is logged), written over the
base .config, completed with `make olddefconfig`, and then every option a fragment asked for is
checked in the final .config: Kconfig silently drops options whose dependencies are off (on 6.1
9P_FS needs INET), and such a kernel would fail much later, at boot.

A fragment whose first lines say `# pipeline: min-version X.Y` is skipped on older trees.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import proc
from .errors import BadInput, StageFailed
from .log import Logger
from .results import FAILED, PASSED, Case
from .tree import version_tuple

if TYPE_CHECKING:
    from .context import VariantContext
_SET_RE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET_RE = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")
_MIN_VERSION_RE = re.compile(r"^#\s*pipeline:\s*min-version\s+(\S+)\s*$")


@dataclass(frozen=True)
class Option:
    name: str        # CONFIG_FOO
    value: str       # as written in .config: y, m, n (is not set), "string", 123, 0x10
    fragment: Path
    line: int

    def config_line(self) -> str:
        return f"# {self.name} is not set" if self.value == "n" else f"{self.name}={self.value}"


@dataclass(frozen=True)
class Fragment:
    path: Path
    options: list[Option]
    min_version: str | None = None


@dataclass(frozen=True)
class Missing:
    option: Option
    got: str | None        # value in the final .config (None: absent / not set)

    def describe(self) -> str:
        got = "not set" if self.got in (None, "n") else f"={self.got}"
        return (f"{self.option.config_line()} (from {self.option.fragment}:{self.option.line}) "
                f"did not survive olddefconfig: final .config has {self.option.name} {got}")


@dataclass
class ConfigResult:
    config: Path                     # the final .config
    config_hash: str                 # sha256 of the final .config
    options: dict[str, Option]       # merged requested options
    skipped: list[Path] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.missing


def parse_fragment(path: Path) -> Fragment:
    """Parse `CONFIG_X=...` and `# CONFIG_X is not set` lines; other comments are ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read fragment: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 (byte {exc.object[exc.start]:#04x} at offset "
                       f"{exc.start}): a kconfig fragment is text") from None
    options: list[Option] = []
    min_version = None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if m := _MIN_VERSION_RE.match(line):
            if number > 5:
                raise BadInput(f"{path}:{number}: `# pipeline: min-version` must be in the "
                               "first lines of the fragment")
            min_version = m.group(1)
            if not version_tuple(min_version):
                raise BadInput(f"{path}:{number}: bad min-version {min_version!r}")
        elif m := _UNSET_RE.match(line):
            options.append(Option(m.group(1), "n", path, number))
        elif line.startswith("#"):
            continue
        elif m := _SET_RE.match(line):
            value = m.group(2).strip()
            if not value:
                raise BadInput(f"{path}:{number}: {m.group(1)} has no value")
            options.append(Option(m.group(1), value, path, number))
        else:
            raise BadInput(f"{path}:{number}: not a kconfig line: {raw!r} (expected CONFIG_X=y "
                           "or '# CONFIG_X is not set')")
    return Fragment(path, options, min_version)


def select_fragments(paths: list[Path], version: str, log: Logger) -> tuple[list[Fragment],
                                                                          list[Path]]:
    """Parse fragments; drop (and log) those whose min-version is above the tree's version."""
    kept, skipped = [], []
    for path in paths:
        fragment = parse_fragment(path)
        if fragment.min_version and version_tuple(version) < version_tuple(fragment.min_version):
            log(f"  skipping {path.name}: needs kernel >= {fragment.min_version}, tree is {version}")
            skipped.append(path)
        else:
            kept.append(fragment)
    return kept, skipped


def merge(fragments: list[Fragment], log: Logger) -> tuple[dict[str, Option], list[str]]:
    """Later fragments win; every override between fragments is logged and returned."""
    merged: dict[str, Option] = {}
    overrides: list[str] = []
    for fragment in fragments:
        for option in fragment.options:
            old = merged.get(option.name)
            if old is not None and old.value != option.value:
                text = (f"{option.name}: {option.fragment.name}:{option.line} "
                        f"({option.config_line()}) overrides {old.fragment.name}:{old.line} "
                        f"({old.config_line()})")
                overrides.append(text)
                log(f"  warning: {text}")
            merged[option.name] = option
    return merged, overrides


def parse_config(text: str) -> dict[str, str]:
    """A .config as {CONFIG_X: value}; `# ... is not set` gives "n"."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if m := _SET_RE.match(line):
            values[m.group(1)] = m.group(2)
        elif m := _UNSET_RE.match(line):
            values[m.group(1)] = "n"
    return values


def check_survivors(requested: dict[str, Option], final: dict[str, str]) -> list[Missing]:
    missing = []
    for option in requested.values():
        got = final.get(option.name)
        if option.value == "n":
            if got not in (None, "n"):
                missing.append(Missing(option, got))
        elif got != option.value:
            missing.append(Missing(option, got))
    return missing


def write_merged(config: Path, options: dict[str, Option]) -> None:
    """Replace the requested symbols' lines in `config` and append them, fragment order."""
    names = set(options)
    kept = []
    for line in config.read_text().splitlines():
        m = _SET_RE.match(line) or _UNSET_RE.match(line)
        if m and m.group(1) in names:
            continue
        kept.append(line)
    kept.append("# --- merged by kernel-pipeline from: " + ", ".join(
        sorted({str(o.fragment) for o in options.values()})))
    kept += [o.config_line() for o in options.values()]
    config.write_text("\n".join(kept) + "\n")


def make_cmd(src: Path, build: Path, target: str) -> list[str]:
    return ["make", "-C", str(src), f"O={build}", target]


def configure(src: Path, work: Path, base_config: str, fragment_paths: list[Path], version: str,
              log: Logger, logfile: Path, timeout: float = 600.0) -> ConfigResult:
    """Configure in `work` (a build folder): base config, fragments, olddefconfig, check.

    Output of make goes to `logfile`. Returns the result even when options are missing
    (`ok` False); raises StageFailed when make itself fails."""
    fragments, skipped = select_fragments(fragment_paths, version, log)
    options, overrides = merge(fragments, log)
    work.mkdir(parents=True, exist_ok=True)
    duration = 0.0
    with open(logfile, "ab") as out:
        for target, edit in ((base_config, True), ("olddefconfig", False)):
            cmd = make_cmd(src, work, target)
            out.write(f"$ {' '.join(cmd)}\n".encode())
            out.flush()
            done = proc.run(cmd, timeout=timeout, stdout=out, tick=lambda _t: None)
            duration += done.duration
            if done.returncode != 0:
                why = "timed out" if done.timed_out else f"exit {done.returncode}"
                tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-20:])
                raise StageFailed(f"make {target} failed ({why}); see {logfile}", details=tail)
            if edit:
                write_merged(work / ".config", options)
    final_text = (work / ".config").read_text()
    final = parse_config(final_text)
    missing = check_survivors(options, final)
    return ConfigResult(work / ".config", hashlib.sha256(final_text.encode()).hexdigest(),
                        options, skipped, overrides, missing, duration)


def install_config(config: Path, build_dir: Path) -> bool:
    """Copy `config` into `build_dir` unless it already has the same content (keeps mtimes, so
    an unchanged configuration triggers no rebuild). Returns True when it copied."""
    build_dir.mkdir(parents=True, exist_ok=True)
    target = build_dir / ".config"
    if target.is_file() and target.read_bytes() == config.read_bytes():
        return False
    shutil.copyfile(config, target)
    return True


def configure_stage(ctx: VariantContext) -> list[Case]:
    """The configure stage: the job's base config and fragments (plus the variant's) on the
    sources, in the variant's config folder; makes `config` when every requested option
    survived olddefconfig. OUT/<variant>/config is the final .config."""
    assert ctx.src is not None
    job, vr = ctx.job, ctx.report
    work = ctx.cache.dir("configs") / ctx.src_key
    result = configure(ctx.src, work, job.base_config, job.kconfig + ctx.variant.kconfig_extra,
                       ctx.tree.version, ctx.log, ctx.out / "configure.log")
    shutil.copyfile(result.config, ctx.out / "config")
    vr.properties["config_hash"] = result.config_hash
    case = Case("configure", PASSED, result.duration,
                stdout="\n".join(["overrides:", *result.overrides]) if result.overrides else "")
    if result.skipped:
        case.message = "skipped fragments: " + ", ".join(p.name for p in result.skipped)
    if result.ok:
        ctx.config = result
        return [case]
    first = result.missing[0].option
    more = f" (+{len(result.missing) - 1} more)" if len(result.missing) > 1 else ""
    case.status = FAILED
    case.message = (f"{first.name} (from {first.fragment.name}) did not survive "
                    f"olddefconfig{more}")
    case.details = "\n".join(m.describe() for m in result.missing)
    ctx.log(case.details)
    ctx.log.rerun(make_cmd(ctx.src, work, "olddefconfig"))
    return [case]
