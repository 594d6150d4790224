"""The job: which tree, series, fragments, guest tests, variants, QEMU settings and timeouts.

A job is a YAML file validated here before any work starts: an unknown key, a wrong type or a
missing file is refused with the file, the dotted key (`variants[2].kconfig_extra`) and its line.
Relative paths resolve against the job file's folder, or PROJECT_ROOT for the embedded
default job (pipeline/data/default-job.yaml); a series given by name is patches/<name> under
PROJECT_ROOT in any job. Command-line flags are merged in by `apply_overrides`.

PROJECT_ROOT is the folder with the project's patches/, kconfigs/ and guest-tests/: the
checkout the package is in (a source checkout, an editable install), or, for an installed
wheel, the copy of those folders the wheel carries as pipeline/project/ (see setup.py).
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml

from . import safeyaml
from .errors import BadInput
from .qemu import Machine

T = TypeVar("T")
_Spec = TypeVar("_Spec", str, "str | None")       # a tree spec (str) or a series spec (or None)
PACKAGE_DIR = Path(__file__).resolve().parent
INSTALLED_DATA = PACKAGE_DIR / "project"      # written into the wheel only (setup.py)
INSTALLED = INSTALLED_DATA.is_dir()           # a wheel install, not a checkout
PROJECT_ROOT = INSTALLED_DATA if INSTALLED else PACKAGE_DIR.parent
DEFAULT_JOB = PACKAGE_DIR / "data" / "default-job.yaml"
ACCELS = ("auto", "kvm", "tcg")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_NUMBER = 1e7          # seconds (115 days) or a factor: scaled timeouts stay finite
# make targets and selftest folders reach make as words: no `O=/etc`, no `-f`, no `..`
_CONFIG_TARGET_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*config$")
_SELFTEST_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*(/[A-Za-z0-9_][A-Za-z0-9_-]*)*$")


@dataclass(frozen=True)
class Variant:
    name: str
    series: bool = True                     # apply the job's series (false: baseline tree)
    kconfig_extra: list[Path] = field(default_factory=list)
    timeout_scale: float = 1.0              # multiplies the boot/test/total timeouts
    kernel_args: list[str] = field(default_factory=list)  # after qemu.kernel_args
    optional: bool = False                  # run only when asked for with --variant


@dataclass(frozen=True)
class QemuSettings:
    memory: str = "1G"
    smp: int = 2
    accel: str = "auto"
    kernel_args: list[str] = field(default_factory=list)
    qemu_args: list[str] = field(default_factory=list)
    root: Path | None = None      # host folder shown as the guest's / (None: the host's /)


@dataclass(frozen=True)
class Timeouts:
    build: float = 3600.0
    boot: float = 120.0
    test: float = 300.0
    total: float = 1800.0


@dataclass(frozen=True)
class KselftestSettings:
    enabled: bool = False
    targets: list[str] = field(default_factory=lambda: ["cgroup"])   # tools/testing/selftests/*
    variants: list[str] = field(default_factory=lambda: ["baseline", "patched"])
    timeout_scale: float = 6.0      # kselftest's own per-test timeouts are sized for hardware
    retries: int = 8                # max reruns per kernel of a candidate regression/fix
    alpha: float = 0.01             # significance of the one-sided Fisher test on the reruns
    rerun_budget: float = 1800.0    # seconds of reruns in all, then decide with what is known


@dataclass(frozen=True)
class Job:
    source: Path                            # the job file (for messages)
    tree: str                               # normalised spec: debian:X.Y, URL, absolute path[@rev]
    series: str | None                      # a series name (patches/<name>) or an absolute path
    base_config: str = "tinyconfig"
    kconfig: list[Path] = field(default_factory=list)
    tests: list[Path] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=lambda: [Variant("default")])
    qemu: QemuSettings = field(default_factory=QemuSettings)
    timeouts: Timeouts = field(default_factory=Timeouts)
    out: Path = field(default_factory=lambda: Path.cwd() / "out")
    cache_dir: Path | None = None
    kselftest: KselftestSettings = field(default_factory=KselftestSettings)
    tree_sha256: str | None = None
    tree_insecure_http: bool = False        # a plain http:// tree without tree_sha256 is ok


# --- YAML with line numbers -------------------------------------------------------------------

def _key_lines(node: yaml.Node, path: str, lines: dict[str, int],
               columns: dict[str, int] | None = None) -> None:
    """Map each dotted key path of the document to its 1-based line (and its 0-based column,
    into `columns`, which orders two problems on one line)."""
    cols: dict[str, int] = {} if columns is None else columns
    lines.setdefault(path, node.start_mark.line + 1)
    cols.setdefault(path, node.start_mark.column)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = f"{path}.{key.value}" if path else str(key.value)
            lines[sub], cols[sub] = key.start_mark.line + 1, key.start_mark.column
            _key_lines(value, sub, lines, cols)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            sub = f"{path}[{index}]"
            lines[sub], cols[sub] = item.start_mark.line + 1, item.start_mark.column
            _key_lines(item, sub, lines, cols)


def _load_yaml_positions(path: Path) -> tuple[Any, dict[str, int], dict[str, int]]:
    """The job file's data and the line and column of every dotted key; BadInput for a file
    that is not UTF-8, too big, malformed, or an alias bomb (see pipeline.safeyaml: checked
    before any Python object is built)."""
    data, node = safeyaml.load(path, "job file")
    lines: dict[str, int] = {}
    columns: dict[str, int] = {}
    if node is not None:
        _key_lines(node, "", lines, columns)
    return data, lines, columns


def load_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    """The job file's data and the line of every dotted key (see _load_yaml_positions)."""
    data, lines, _ = _load_yaml_positions(path)
    return data, lines


# --- validation -------------------------------------------------------------------------------

class _Problem(BadInput):
    """One validation error, with where it is: (line, column); (0, 0) for the whole file."""

    def __init__(self, message: str, where: tuple[int, int]) -> None:
        super().__init__(message)
        self.where = where


@dataclass
class Checker:
    """Type checks that raise BadInput naming file, key and line.

    With `collect`, the checks that look at several keys or items (`mapping`, `items`,
    `strings`) record each problem instead of raising it, and `attempt` runs one check,
    recording its error and returning a default; `raise_collected` then raises one BadInput
    with every problem, one `file:line: key: problem` per line in file order."""

    file: Path
    lines: dict[str, int]
    collect: bool = False
    columns: dict[str, int] = field(default_factory=dict)
    problems: list[_Problem] = field(default_factory=list)

    def fail(self, key: str, problem: str) -> BadInput:
        line = self.lines.get(key)
        where = f"{self.file}:{line}" if line else str(self.file)
        return _Problem(f"{where}: {key}: {problem}" if key else f"{where}: {problem}",
                        (line or 0, self.columns.get(key, 0) if line else 0))

    def report(self, error: BadInput) -> None:
        """Record `error` (collect mode) or raise it."""
        if not self.collect:
            raise error
        self.problems.append(error if isinstance(error, _Problem)
                             else _Problem(error.message, (0, 0)))

    def attempt(self, check: Callable[..., T], *args: Any, default: T) -> T:
        """`check(*args)`; in collect mode its BadInput is recorded and `default` returned."""
        try:
            return check(*args)
        except BadInput as exc:
            self.report(exc)
            return default

    def raise_collected(self) -> None:
        if self.problems:
            ordered = sorted(self.problems, key=lambda p: p.where)  # stable: same key, order seen
            raise BadInput("\n".join(p.message for p in ordered))

    def mapping(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        """The mapping's allowed keys (each unknown key is a problem)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping, not {_type(value)}")
        for name in value:
            if name not in allowed:
                sub = f"{key}.{name}" if key else str(name)
                self.report(self.fail(sub, f"unknown key (allowed: "
                                           f"{', '.join(sorted(allowed))})"))
        return {k: v for k, v in value.items() if k in allowed}

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, not {_type(value)}")
        return value

    def opt_string(self, value: Any, key: str) -> str | None:
        return None if value is None else self.string(value, key)

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {_type(value)}")
        return value

    def number(self, value: Any, key: str) -> float:
        """A positive, finite number up to MAX_NUMBER: NaN compares false with everything and
        infinity never expires, so either would switch a timeout off."""
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or not 0 < value <= MAX_NUMBER):
            raise self.fail(key, f"must be a positive finite number up to {MAX_NUMBER:g}, "
                                 f"not {value!r}")
        return float(value)

    def integer(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(key, f"must be a positive integer, not {value!r}")
        return value

    def memory(self, value: Any, key: str) -> str:
        problem = memory_problem(value)
        if problem:
            raise self.fail(key, problem)
        return str(value)

    def cpus(self, value: Any, key: str) -> int:
        problem = cpus_problem(value)
        if problem:
            raise self.fail(key, problem)
        assert isinstance(value, int)   # what cpus_problem checked
        return value

    def count(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(key, f"must be a whole number >= 0, not {value!r}")
        return value

    def items(self, value: Any, key: str) -> list[tuple[int, str]]:
        """(index, string) of each valid item of a list of strings (each other is a problem)."""
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, not {_type(value)}")
        out = []
        for i, item in enumerate(value):
            text = self.attempt(self.string, item, f"{key}[{i}]", default=None)
            if text is not None:
                out.append((i, text))
        return out

    def strings(self, value: Any, key: str) -> list[str]:
        return [text for _, text in self.items(value, key)]

    def existing(self, value: str, key: str, base: Path, kind: str) -> Path:
        try:
            utf8_path(value, kind)
        except BadInput as exc:
            raise self.fail(key, exc.message) from None
        path = (base / Path(value).expanduser()).resolve()
        if not path.exists():
            raise self.fail(key, f"{kind} {value!r} does not exist ({path})")
        if kind == "fragment" and not path.is_file():
            raise self.fail(key, f"{kind} {value!r} is not a file ({path})")
        return path


def _kernel_words(check: Checker, value: Any, key: str = "qemu.kernel_args") -> list[str]:
    """Kernel command line words: the kernel splits its command line at white space, so a
    word with a space (or a control character) would silently become two parameters."""
    words = []
    for i, word in check.items(value, key):
        if any(c.isspace() or not c.isprintable() for c in word):
            check.report(check.fail(f"{key}[{i}]", f"{word!r} contains white space or a "
                                    "control character: give each kernel parameter as its "
                                    "own item"))
        else:
            words.append(word)
    return words


def _guest_root(check: Checker, value: Any, base: Path) -> Path | None:
    """qemu.root: a host folder (relative to the job file) exported read-only as the guest's /
    instead of the host's own /."""
    if value is None:
        return None
    path = check.existing(check.string(value, "qemu.root"), "qemu.root", base, "folder")
    if not path.is_dir():
        raise check.fail("qemu.root", f"{value!r} is not a folder ({path})")
    return path


# QEMU's -m: a size in MiB, or with a K/M/G/T suffix (1G, 512M, 1.5G).
_MEMORY_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[KMGT]?", re.IGNORECASE)
_MEMORY_UNITS = {"": 1 << 20, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MIN_MEMORY = 16 << 20     # bytes: less than this boots no kernel of ours
MAX_CPUS = 255            # QEMU's q35/pc limit without x2apic


def memory_problem(value: Any) -> str | None:
    """None when `value` is a guest memory size as QEMU's -m takes it (qemu.memory, --memory),
    else what is wrong with it."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"must be a size such as 1G or 512M, not {_type(value)}"
    text = str(value)
    if not _MEMORY_RE.fullmatch(text):
        return (f"{text!r} is not a size: a number of MiB or one with a K/M/G/T suffix "
                "(1G, 512M)")
    unit = text[-1].lower() if text[-1].isalpha() else ""
    size = float(text.rstrip("KMGTkmgt")) * _MEMORY_UNITS[unit]
    if size < MIN_MEMORY:
        return f"{text!r} is too small: at least 16M"
    return None


def cpus_problem(value: Any) -> str | None:
    """None when `value` is a guest CPU count (qemu.smp, --cpus), else what is wrong."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_CPUS:
        return f"must be a positive integer (1 to {MAX_CPUS} CPUs), not {value!r}"
    return None


def _type(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "nothing"}.get(type(value),
                                                                          type(value).__name__)


_TOP_KEYS = {"tree", "series", "base_config", "kconfig", "tests", "variants", "qemu", "timeouts",
             "out", "cache_dir", "tree_sha256", "kselftest", "matrix",
             "tree_insecure_http"}
_VARIANT_KEYS = {"name", "series", "kconfig_extra", "timeout_scale", "kernel_args",
                 "optional"}
_QEMU_KEYS = {"memory", "smp", "accel", "kernel_args", "qemu_args", "root"}
_TIMEOUT_KEYS = {"build", "boot", "test", "total"}
_KSELFTEST_KEYS = {"enabled", "targets", "variants", "timeout_scale", "retries", "alpha",
                   "rerun_budget"}


def utf8_path(path: Path | str, what: str) -> None:
    """BadInput for a path that is not valid UTF-8 (Python holds its bad bytes as lone
    surrogates, which cannot be written to a log, a .config or JUnit XML: the run would crash
    at the end and lose its report)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(text).decode("utf-8", errors="backslashreplace")
        raise BadInput(f"{what} {shown}: the path is not valid UTF-8; rename it") from None


def normalize_tree_spec(spec: str, base: Path) -> str:
    """`debian:X.Y` and URLs unchanged; paths made absolute (keeping an `@REV`), must exist.
    Raises ValueError with the reason (callers turn it into BadInput with their context)."""
    if spec.startswith("debian:"):
        if not re.fullmatch(r"debian:\d+\.\d+", spec):
            raise ValueError(f"{spec!r}: expected debian:MAJOR.MINOR, e.g. debian:6.1")
        return spec
    if re.match(r"^https?://", spec):
        return spec
    if re.match(r"^[a-z]+://", spec):
        raise ValueError(f"{spec!r}: only http:// and https:// URLs are supported")
    direct = (base / Path(spec).expanduser()).resolve()
    if direct.exists():
        return str(direct)
    if "@" in spec:
        path_part, rev = spec.rsplit("@", 1)
        path = (base / Path(path_part).expanduser()).resolve()
        if path.is_dir() and rev:
            return f"{path}@{rev}"
    raise ValueError(f"tree {spec!r} does not exist ({direct})")


def normalize_series_spec(spec: str | None, base: Path) -> str | None:
    """None/`none` -> None; a bare name stays a name (patches/<name>); a path becomes absolute."""
    if spec is None or spec == "none":
        return None
    if _NAME_RE.match(spec) and not (base / spec).exists():
        return spec
    path = (base / Path(spec).expanduser()).resolve()
    if not path.exists():
        raise ValueError(f"series {spec!r} does not exist ({path})")
    return str(path)


def load_job(path: Path | None = None) -> Job:
    """Load and validate a job file (None: the embedded default job). Every problem found is
    reported at once: one BadInput, one `file:line: key: problem` per line, in file order."""
    if path is None:
        file, base = DEFAULT_JOB, PROJECT_ROOT
    else:
        file = path.expanduser().resolve()
        base = file.parent
    utf8_path(file, "job file")
    data, lines, columns = _load_yaml_positions(file)
    check = Checker(file, lines, collect=True, columns=columns)
    job = _validate(check, data, file, base)
    check.raise_collected()
    return job


def _validate(check: Checker, data: Any, file: Path, base: Path) -> Job:
    """The Job of `data`; each problem is recorded in `check` and a default used in its place
    (the Job is then thrown away: `check.raise_collected()`)."""
    top: dict[str, Any] = check.attempt(check.mapping, data, "", _TOP_KEYS, default={})

    def spec(normalize: Callable[[_Spec, Path], _Spec], value: _Spec, key: str) -> _Spec:
        try:
            return normalize(value, base)
        except ValueError as exc:
            raise check.fail(key, str(exc)) from None

    tree = "" if top.get("tree") is None else check.attempt(check.string, top["tree"], "tree",
                                                              default="")
    if tree:
        tree = check.attempt(spec, normalize_tree_spec, tree, "tree", default="")
    series_raw = check.attempt(check.opt_string, top.get("series"), "series", default=None)
    series = check.attempt(spec, normalize_series_spec, series_raw, "series", default=None)

    def paths(key: str, kind: str, value: Any) -> list[Path]:
        found = []
        listed: list[tuple[int, str]] = check.attempt(check.items, value, key, default=[])
        for i, v in listed:
            p = check.attempt(check.existing, v, f"{key}[{i}]", base, kind, default=None)
            if p is not None:
                found.append(p)
        return found

    kconfig = paths("kconfig", "fragment", top.get("kconfig"))
    tests = paths("tests", "test path", top.get("tests"))

    variants: list[Variant] = []
    names: list[str] = []       # every variant name given, also of a variant with problems
    raw_variants = top.get("variants")
    if raw_variants is None:
        variants = [Variant("default")]
        names = ["default"]
    elif not isinstance(raw_variants, list) or not raw_variants:
        check.report(check.fail("variants", "must be a non-empty list of {name: ...} mappings"))
    else:
        for i, raw in enumerate(raw_variants):
            key = f"variants[{i}]"
            item = check.attempt(check.mapping, raw, key, _VARIANT_KEYS, default=None)
            if item is None:
                continue
            name = _variant_name(check, item, key, names)
            if name is None:
                continue
            names.append(name)
            variants.append(Variant(
                name=name,
                series=check.attempt(check.boolean, item.get("series", True), f"{key}.series",
                                     default=True),
                kconfig_extra=paths(f"{key}.kconfig_extra", "fragment",
                                    item.get("kconfig_extra")),
                timeout_scale=check.attempt(check.number, item.get("timeout_scale", 1.0),
                                            f"{key}.timeout_scale", default=1.0),
                kernel_args=_kernel_words(check, item.get("kernel_args"), f"{key}.kernel_args"),
                optional=check.attempt(check.boolean, item.get("optional", False),
                                       f"{key}.optional", default=False)))

    qemu = _qemu(check, check.attempt(check.mapping, top.get("qemu"), "qemu", _QEMU_KEYS,
                                      default={}), base)

    raw_t: dict[str, Any] = check.attempt(check.mapping, top.get("timeouts"), "timeouts",
                                          _TIMEOUT_KEYS, default={})
    dt = Timeouts()
    timeouts = Timeouts(**{k: check.attempt(check.number, raw_t.get(k, getattr(dt, k)),
                                            f"timeouts.{k}", default=getattr(dt, k))
                           for k in sorted(_TIMEOUT_KEYS)})

    kselftest = _kselftest(check, check.attempt(check.mapping, top.get("kselftest"), "kselftest",
                                                _KSELFTEST_KEYS, default={}), names)

    out_raw = check.attempt(check.opt_string, top.get("out"), "out", default=None)
    cache_raw = check.attempt(check.opt_string, top.get("cache_dir"), "cache_dir", default=None)
    sha = check.attempt(check.opt_string, top.get("tree_sha256"), "tree_sha256", default=None)
    if sha is not None:
        if re.fullmatch(r"[0-9a-fA-F]{64}", sha):
            sha = sha.lower()
        else:
            check.report(check.fail("tree_sha256", "must be 64 hexadecimal digits"))

    base_config = check.attempt(check.string, top.get("base_config", "tinyconfig"),
                                "base_config", default="tinyconfig")
    if not _CONFIG_TARGET_RE.match(base_config):
        check.report(check.fail("base_config", f"{base_config!r}: must be a make config target "
                                               "such as tinyconfig, defconfig or "
                                               "x86_64_defconfig"))
    insecure = check.attempt(check.boolean, top.get("tree_insecure_http", False),
                             "tree_insecure_http", default=False)

    return Job(
        source=file, tree=tree, series=series, base_config=base_config,
        tree_insecure_http=insecure,
        kconfig=kconfig, tests=tests, variants=variants or [Variant("default")], qemu=qemu,
        timeouts=timeouts,
        out=(base / out_raw).resolve() if out_raw else Path.cwd() / "out",
        cache_dir=(base / cache_raw).resolve() if cache_raw else None,
        tree_sha256=sha, kselftest=kselftest)


def _variant_name(check: Checker, item: dict[str, Any], key: str,
                  seen: list[str]) -> str | None:
    if "name" not in item:
        check.report(check.fail(key, "missing key 'name'"))
        return None
    name = check.attempt(check.string, item["name"], f"{key}.name", default=None)
    if name is None:
        return None
    if not _NAME_RE.match(name):
        check.report(check.fail(f"{key}.name", f"{name!r}: use letters, digits, '.', '_', '-'"))
        return None
    if name in seen:
        check.report(check.fail(f"{key}.name", f"duplicate variant name {name!r}"))
        return None
    return name


def _qemu(check: Checker, raw_q: dict[str, Any], base: Path) -> QemuSettings:
    machine = Machine.load()        # pipeline/data/qemu.yaml: the machine's defaults
    defaults_q = QemuSettings(memory=machine.default_memory, smp=machine.default_smp,
                              accel=machine.default_accel)
    memory = raw_q.get("memory", defaults_q.memory)
    if isinstance(memory, int) and not isinstance(memory, bool):
        memory = str(memory)  # QEMU reads a bare number as MiB
    accel = check.attempt(check.string, raw_q.get("accel", defaults_q.accel), "qemu.accel",
                          default=defaults_q.accel)
    if accel not in ACCELS:
        check.report(check.fail("qemu.accel", f"{accel!r}: must be one of {', '.join(ACCELS)}"))
        accel = defaults_q.accel
    return QemuSettings(
        memory=check.attempt(check.memory, memory, "qemu.memory", default=defaults_q.memory),
        smp=check.attempt(check.cpus, raw_q.get("smp", defaults_q.smp), "qemu.smp",
                          default=defaults_q.smp),
        accel=accel,
        kernel_args=_kernel_words(check, raw_q.get("kernel_args")),
        qemu_args=check.attempt(check.strings, raw_q.get("qemu_args"), "qemu.qemu_args",
                                default=[]),
        root=check.attempt(_guest_root, check, raw_q.get("root"), base, default=None))


def _kselftest(check: Checker, raw_k: dict[str, Any], variant_names: list[str]
               ) -> KselftestSettings:
    dk = KselftestSettings()

    def get(name: str, kind: Callable[[Any, str], T]) -> T:
        default: T = getattr(dk, name)
        return check.attempt(kind, raw_k.get(name, default), f"kselftest.{name}",
                             default=default)

    targets = []
    listed: list[tuple[int, str]] = check.attempt(
        check.items, raw_k.get("targets", dk.targets), "kselftest.targets", default=[])
    for i, target in listed:
        if _SELFTEST_RE.match(target):
            targets.append(target)
        else:
            check.report(check.fail(f"kselftest.targets[{i}]", f"{target!r}: a folder name "
                                    "under tools/testing/selftests/ (letters, digits, '_', "
                                    "'-', '/')"))
    variants = []
    listed = check.attempt(check.items, raw_k.get("variants", dk.variants),
                           "kselftest.variants", default=[])
    for i, name in listed:
        if "variants" in raw_k and name not in variant_names:
            check.report(check.fail(f"kselftest.variants[{i}]", f"no variant named {name!r}"))
        variants.append(name)
    alpha = get("alpha", check.number)
    if alpha >= 0.5:
        check.report(check.fail("kselftest.alpha", f"must be below 0.5, not {alpha!r}"))
    return KselftestSettings(
        enabled=get("enabled", check.boolean), targets=targets, variants=variants,
        timeout_scale=get("timeout_scale", check.number), retries=get("retries", check.count),
        alpha=alpha, rerun_budget=get("rerun_budget", check.number))


@dataclass(frozen=True)
class Overrides:
    """Command-line flags; None / empty means 'keep the job's value'."""

    tree: str | None = None
    series: str | None = None
    kconfig: list[str] = field(default_factory=list)    # added to the job's fragments
    tests: list[str] = field(default_factory=list)      # added to the job's tests
    out: str | None = None
    accel: str | None = None
    variants: list[str] = field(default_factory=list)   # run only these
    cache_dir: str | None = None
    tree_sha256: str | None = None
    kselftest: bool | None = None                       # --kselftest / --no-kselftest
    insecure_http: bool | None = None                   # --insecure-http
    memory: str | None = None                           # --memory: qemu.memory
    cpus: str | None = None                             # --cpus: qemu.smp (text from argv)


def apply_overrides(job: Job, flags: Overrides, cwd: Path | None = None) -> Job:
    """Merge flags into the job; relative paths on the command line resolve against `cwd`."""
    cwd = cwd or Path.cwd()

    def flag_path(value: str, flag: str, fragment: bool = False) -> Path:
        utf8_path(value, flag)
        path = (cwd / Path(value).expanduser()).resolve()
        if not path.exists():
            raise BadInput(f"{flag} {value}: does not exist ({path})")
        if fragment and not path.is_file():
            raise BadInput(f"{flag} {value}: is not a file ({path})")
        return path

    changes: dict[str, Any] = {}
    for value, flag in ((flags.tree, "--tree"), (flags.series, "--series"),
                        (flags.out, "--out"), (flags.cache_dir, "--cache-dir")):
        if value is not None:
            utf8_path(value, flag)
    if flags.tree is not None:
        try:
            changes["tree"] = normalize_tree_spec(flags.tree, cwd)
        except ValueError as exc:
            raise BadInput(f"--tree: {exc}") from None
        if flags.tree_sha256 is None:
            changes["tree_sha256"] = None  # a job's checksum belongs to the job's tree
    if flags.tree_sha256 is not None:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", flags.tree_sha256):
            raise BadInput("--tree-sha256: must be 64 hexadecimal digits")
        changes["tree_sha256"] = flags.tree_sha256.lower()
    if flags.series is not None:
        try:
            changes["series"] = normalize_series_spec(flags.series, cwd)
        except ValueError as exc:
            raise BadInput(f"--series: {exc}") from None
    if flags.kconfig:
        changes["kconfig"] = job.kconfig + [flag_path(v, "--kconfig", True)
                                            for v in flags.kconfig]
    if flags.tests:
        changes["tests"] = job.tests + [flag_path(v, "--tests") for v in flags.tests]
    if flags.out is not None:
        changes["out"] = (cwd / flags.out).resolve()
    if flags.cache_dir is not None:
        changes["cache_dir"] = (cwd / flags.cache_dir).expanduser().resolve()
    if flags.accel is not None:
        if flags.accel not in ACCELS:
            raise BadInput(f"--accel {flags.accel}: must be one of {', '.join(ACCELS)}")
        changes["qemu"] = replace(job.qemu, accel=flags.accel)
    qemu_changes = machine_overrides(flags.memory, flags.cpus)
    if qemu_changes:
        changes["qemu"] = replace(changes.get("qemu", job.qemu), **qemu_changes)
    if flags.variants:
        known = [v.name for v in job.variants]
        for name in flags.variants:
            if name not in known:
                raise BadInput(f"--variant {name}: {job.source} has no such variant "
                               f"(there are: {', '.join(known)})")
        changes["variants"] = [v for v in job.variants if v.name in flags.variants]
    else:  # an optional variant (e.g. a sanitizer too slow for every run) only when named
        changes["variants"] = [v for v in job.variants if not v.optional]
        if not changes["variants"]:
            raise BadInput(f"{job.source}: every variant is optional: choose with --variant "
                           f"({', '.join(v.name for v in job.variants)})")
    if flags.kselftest is not None:
        changes["kselftest"] = replace(job.kselftest, enabled=flags.kselftest)
    if flags.insecure_http is not None:
        changes["tree_insecure_http"] = flags.insecure_http
    merged = replace(job, **changes)
    if not merged.tree:
        raise BadInput(f"{job.source}: no tree (set `tree:` in the job or pass --tree SPEC)")
    if (merged.tree.startswith("http://") and merged.tree_sha256 is None
            and not merged.tree_insecure_http):
        raise BadInput(f"tree {merged.tree}: plain http without a checksum: anyone on the "
                       "way can replace the tarball. Pass --tree-sha256 HEX (job key "
                       "tree_sha256), use https, or accept the risk with --insecure-http "
                       "(job key tree_insecure_http: true)")
    return merged


def machine_overrides(memory: str | None, cpus: str | None) -> dict[str, Any]:
    """The QemuSettings fields set by --memory and --cpus, checked as qemu.memory and
    qemu.smp are in a job file; BadInput naming the flag otherwise."""
    changes: dict[str, Any] = {}
    if memory is not None:
        problem = memory_problem(memory)
        if problem:
            raise BadInput(f"--memory {memory}: {problem}")
        changes["memory"] = memory
    if cpus is not None:
        count: Any = int(cpus) if re.fullmatch(r"[+-]?[0-9]+", cpus.strip()) else cpus
        problem = cpus_problem(count)
        if problem:
            raise BadInput(f"--cpus {cpus}: {problem}")
        changes["smp"] = count
    return changes


def seconds_arg(text: str) -> float:
    """argparse type of a timeout flag: a finite positive number (NaN or inf would switch the
    deadline off)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not 0 < value <= MAX_NUMBER:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive finite number up to "
                                         f"{MAX_NUMBER:g}")
    return value


def check_guest_root(root: Path | None, needed: list[Path]) -> None:
    """With qemu.root the guest sees that folder as /: everything it runs from the host (the
    interpreter, the guest init, the tests, the selftest build) must be there at the same
    path, or the guest would only fail at boot. Checked before any work (exit 2)."""
    if root is None:
        return
    for path in needed:
        for want in dict.fromkeys([path.absolute(), path.resolve()]):
            if not (root / want.relative_to(want.anchor)).exists():
                raise BadInput(f"qemu.root {root}: the guest would not find {want} in it "
                               f"(make it visible there, e.g. mount --bind -o ro {want} "
                               f"{root / want.relative_to(want.anchor)})")


def check_boot_paths(*paths: Path) -> None:
    """The guest's init is `PYTHON -B .../pipeline/guest/init.py` on the kernel command line,
    which the kernel splits at white space: refuse such paths before any work (exit 2)."""
    for path in paths:
        text = str(path)
        if any(c.isspace() for c in text):
            raise BadInput(f"{text}: a path with white space cannot go on the kernel command "
                           "line (the guest's init); move the project or its venv to a path "
                           "without spaces")
