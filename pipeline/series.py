"""Patch series: a folder of `git format-patch` files plus series.yaml, or an mbox file.

`series.yaml`: name, base (list of kernel version prefixes such as "6.1"; an unquoted 6.10 is
the version "6.10" as written, not the float 6.1), link, optional description. Patches are `NNNN-*.patch`, applied in NNNN order; a gap or a duplicate number is
bad input (0000, a cover letter, is skipped). A series given by name is looked up under
patches/<name>/*/series.yaml and the variant whose base matches the tree version is picked
(longest prefix wins).
"""

from __future__ import annotations

import email.header
import hashlib
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import safeyaml
from .errors import BadInput
from .git import git_run

_PATCH_RE = re.compile(r"^(\d{4})-.*\.patch$")
_SERIES_KEYS = {"name", "base", "link", "description"}
MAX_PATCH_BYTES = 64 << 20     # one patch or mbox file
MAILSPLIT_TIMEOUT = 120.0      # git mailsplit of at most MAX_PATCH_BYTES: well under a second


@dataclass(frozen=True)
class Patch:
    index: int        # position in the series, from 1
    name: str         # file name (or `<mbox>#N`)
    subject: str
    text: str         # the patch in git format-patch / mbox form


@dataclass(frozen=True)
class Series:
    name: str
    base: list[str]
    source: Path      # the folder (or mbox file)
    patches: list[Patch]
    link: str = ""
    description: str = ""
    hash: str = ""    # content hash of metadata + patches, for cache keys

    @property
    def short(self) -> str:
        return self.hash[:12]


@dataclass(frozen=True)
class SeriesChoice:
    """Where a series spec points before the tree version is known (checked before any work)."""

    spec: str
    candidates: list[Path] = field(default_factory=list)  # series folders or one mbox file


def _subject(text: str) -> str:
    match = re.search(r"^Subject:[ \t]*(.*(?:\n[ \t].*)*)", text, re.MULTILINE)
    if not match:
        return ""
    raw = re.sub(r"\n[ \t]+", " ", match.group(1)).strip()
    try:
        raw = str(email.header.make_header(email.header.decode_header(raw)))
    except (ValueError, LookupError):
        pass
    return re.sub(r"^\[[^\]]*\]\s*", "", raw)


def _series_hash(meta: str, patches: list[Patch]) -> str:
    digest = hashlib.sha256(meta.encode())
    for patch in patches:
        digest.update(b"\0" + patch.name.encode() + b"\0" + patch.text.encode())
    return digest.hexdigest()


def _is_patch(text: str) -> bool:
    return bool(re.search(r"^(diff --git |--- \S|Index: )", text, re.MULTILINE))


@dataclass(frozen=True)
class YamlNumber:
    """A plain scalar YAML reads as a number (`6.10`, `6`), kept as written: as a float
    6.10 is 6.1, so a series for 6.10 would be picked for 6.1 trees."""

    text: str

    def __str__(self) -> str:
        return self.text


class _SeriesLoader(yaml.SafeLoader):
    """series.yaml's loader: int and float scalars become YamlNumber (their text); where a
    string is wanted (name, link) they are still not one, so those errors stay."""


def _number_as_written(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> YamlNumber:
    return YamlNumber(loader.construct_scalar(node))


for _tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
    _SeriesLoader.add_constructor(_tag, _number_as_written)


@dataclass(frozen=True)
class _Meta:
    name: str
    base: list[str]
    link: str
    description: str
    text: str


def _read_meta(folder: Path) -> _Meta:
    meta_file = folder / "series.yaml"
    meta_text = safeyaml.read_text(meta_file, "series.yaml")
    meta, _ = safeyaml.load(meta_file, "series.yaml", meta_text, loader_class=_SeriesLoader)
    if not isinstance(meta, dict):
        raise BadInput(f"{meta_file}: must be a mapping with name, base, link")
    for key in meta:
        if key not in _SERIES_KEYS:
            raise BadInput(f"{meta_file}: {key}: unknown key "
                           f"(allowed: {', '.join(sorted(_SERIES_KEYS))})")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise BadInput(f"{meta_file}: name: must be a non-empty string")
    base = meta.get("base")
    if isinstance(base, (str, YamlNumber)):
        base = [base]
    if not isinstance(base, list) or not base or not all(isinstance(b, (str, YamlNumber, bool))
                                                         for b in base):
        raise BadInput(f"{meta_file}: base: must be a list of kernel versions like \"6.1\"")
    for key in ("link", "description"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise BadInput(f"{meta_file}: {key}: must be a string")
    return _Meta(name, [str(b) for b in base], meta.get("link") or "",
                 meta.get("description") or "", meta_text)


def load_folder(folder: Path) -> Series:
    """A folder with series.yaml and NNNN-*.patch files."""
    meta = _read_meta(folder)
    patches = _numbered_patches(folder)
    return Series(name=meta.name, base=meta.base, source=folder, patches=patches,
                  link=meta.link, description=meta.description,
                  hash=_series_hash(meta.text, patches))


def load_patch_folder(folder: Path) -> Series:
    """A folder of NNNN-*.patch files without series.yaml (`git format-patch -o DIR`): a
    series with no name but the folder's and no base."""
    patches = _numbered_patches(folder)
    return Series(name=folder.name, base=[], source=folder, patches=patches,
                  hash=_series_hash(folder.name, patches))


def _numbered_patches(folder: Path) -> list[Patch]:
    numbered: dict[int, Path] = {}
    for path in sorted(folder.glob("*.patch")):
        if not path.is_file():
            raise BadInput(f"{path}: is not a regular file (a patch of the series must be one)")
        match = _PATCH_RE.match(path.name)
        if not match:
            raise BadInput(f"{path}: patch file names must start with a 4-digit number "
                           "(git format-patch: 0001-subject.patch)")
        number = int(match.group(1))
        if number in numbered:
            raise BadInput(f"{folder}: patch number {number:04d} is used twice: "
                           f"{numbered[number].name} and {path.name}")
        numbered[number] = path
    numbered.pop(0, None)  # 0000-cover-letter.patch
    if not numbered:
        raise BadInput(f"{folder}: no NNNN-*.patch files in the series")
    for expected in range(1, max(numbered) + 1):
        if expected not in numbered:
            raise BadInput(f"{folder}: patch {expected:04d} is missing "
                           f"(have {', '.join(p.name for _, p in sorted(numbered.items()))})")
    patches = []
    for index, (_, path) in enumerate(sorted(numbered.items()), start=1):
        text = read_patch_text(path)
        if not _is_patch(text):
            raise BadInput(f"{path}: contains no diff")
        patches.append(Patch(index, path.name, _subject(text) or path.name, text))
    return patches


def read_patch_text(path: Path, limit: int = MAX_PATCH_BYTES) -> str:
    """A patch file as strict UTF-8: a byte that is not UTF-8 (e.g. Latin-1) would become
    U+FFFD and the patch would no longer apply to the bytes of the tree, so it is an error
    naming the file and the line."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise BadInput(f"{path}: larger than {limit >> 20} MiB: refused")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BadInput(f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x}); "
                       "re-export the patch as UTF-8 (git format-patch writes UTF-8)") from None


def split_mbox(text: str) -> list[str]:
    """Split an mbox into messages the way `git am` does: with `git mailsplit -b`, which
    starts a message only at a `From ` line that looks like an mbox separator (a time and a
    year), so a commit message line such as "From the RFC thread of 2021" stays in its mail.
    `-b` takes text without a separator line as one mail; `--keep-cr` keeps the bytes as they
    are. Each part still begins with its `From ` line; blank text gives []."""
    if not text.strip():
        return []
    data = text.encode("utf-8", errors="surrogateescape")
    with tempfile.TemporaryDirectory(prefix="pipeline-mailsplit-") as tmp:
        work = Path(tmp)
        mbox = work / "mbox"
        mbox.write_bytes(data)
        parts = work / "parts"
        parts.mkdir()
        done = git_run(None, "mailsplit", "-b", "--keep-cr", f"-o{parts}", "--", str(mbox),
                       timeout=MAILSPLIT_TIMEOUT)
        if done.timed_out:
            raise BadInput(f"git mailsplit timed out after {MAILSPLIT_TIMEOUT:.0f}s")
        if done.returncode != 0:
            raise BadInput(f"git mailsplit cannot split the mbox: {done.output.strip()}")
        files = sorted((p for p in parts.iterdir() if p.name.isdigit()),
                       key=lambda p: int(p.name))
        return [p.read_bytes().decode("utf-8", errors="surrogateescape") for p in files]


def load_mbox(path: Path) -> Series:
    text = read_patch_text(path)
    messages = [m for m in split_mbox(text) if _is_patch(m)]
    if not messages:
        raise BadInput(f"{path}: mbox contains no patch")
    patches = [Patch(i, f"{path.name}#{i}", _subject(m) or f"patch {i}", m)
               for i, m in enumerate(messages, start=1)]
    name = re.sub(r"\.(mbox|patch|eml)$", "", path.name)
    return Series(name=name, base=[], source=path, patches=patches,
                  hash=_series_hash(path.name, patches))


def locate(spec: str, project_root: Path) -> SeriesChoice:
    """Resolve a series spec (name or absolute path) to candidate sources; BadInput if none."""
    path = Path(spec)
    if not path.is_absolute():
        folder = project_root / "patches" / spec
        if not folder.is_dir():
            known = sorted(p.name for p in (project_root / "patches").glob("*") if p.is_dir())
            raise BadInput(f"series {spec!r}: no folder {folder} "
                           f"(known series: {', '.join(known) or 'none'})")
        path = folder
    if path.is_file():
        return SeriesChoice(spec, [path])
    if (path / "series.yaml").is_file():
        return SeriesChoice(spec, [path])
    variants = sorted(p.parent for p in path.glob("*/series.yaml"))
    if not variants:
        raise BadInput(f"series {spec!r}: {path} has neither series.yaml nor "
                       "<variant>/series.yaml folders")
    return SeriesChoice(spec, variants)


def _matches(version: str, prefix: str) -> bool:
    return version == prefix or version.startswith((prefix + ".", prefix + "-"))


def pick(choice: SeriesChoice, version: str) -> Series:
    """Load the candidate whose base matches the tree `version` (longest prefix wins)."""
    if len(choice.candidates) == 1 and choice.candidates[0].is_file():
        return load_mbox(choice.candidates[0])
    metas = [(folder, _read_meta(folder)) for folder in choice.candidates]
    best: tuple[int, Path] | None = None
    for folder, meta in metas:
        for prefix in meta.base:
            if _matches(version, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), folder)
    if best is None:
        there = "; ".join(f"{folder.name} (base {', '.join(m.base)})" for folder, m in metas)
        raise BadInput(f"series {choice.spec!r}: no variant for kernel {version}; "
                       f"there are: {there}")
    return load_folder(best[1])
