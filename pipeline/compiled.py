"""Was the code the series touches really compiled? (issue #17, point 2)

For every hunk of the series, in every variant that applies it: the object of a touched `.c`
file must have been built in the variant's build folder, and the hunk's added lines must
survive preprocessing, i.e. not sit inside an `#if`/`#ifdef` the variant's config turns off.
A touched header counts as compiled when an object that was built includes it (the
dependency list of its `.o.cmd` file names it) and the lines survive in that object's
preprocessed output.

The compiler's own view is used, not a guess: the object's `.o.cmd` file holds the exact
command Kbuild compiled it with; run again with `-E -dD` (preprocess only, keep `#define`s)
into a temporary folder it gives the preprocessed text with `# N "file"` line markers. A
source line is *visible* when its output line is not empty (an `#include` that was processed
shows as the marker returning to the file). Lines are judged by their conditional group (the
lines between two `#if`/`#elif`/`#else`/`#endif` of one level): a group is live when any of its
lines is visible, so a multi-line macro call, whose arguments the preprocessor joins onto its
first line, is not mistaken for dead code. Nothing is written to the build folder.

The variant stage (`compiled`) has one case per hunk: passed when compiled in this variant,
skipped with the reason and the option that would enable it when not. report() adds, once
every variant ran, a failed case (suite `series.compiled`) for every hunk whose lines no
variant compiled: the series was tested with that code compiled out. The series folder's
`not-compiled.yaml` (file, option, reason) accepts such a hunk, e.g. a `!CONFIG_KERNFS` stub
no config of the job can have: it is then a skipped case with the reason.
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import proc, safeyaml
from .build import build_dir_of
from .diffs import hunk_header
from .errors import BadInput, StageFailed
from .results import FAILED, PASSED, SKIPPED, Case, Stage
from .series import Patch

if TYPE_CHECKING:
    from .context import RunContext, VariantContext

SUITE = "series.compiled"
ACCEPTED_FILE = "not-compiled.yaml"   # in the series folder: hunks accepted as not compiled
_ACCEPTED_KEYS = {"file", "option", "reason"}
PREPROCESS_TIMEOUT = 300.0     # one file: ~1 s on a 2-core machine; a hung compiler stops here
MAX_HEADER_USERS = 3           # objects tried per header until all its hunks are seen compiled
C_SUFFIXES = (".c", ".h")

_MARKER_RE = re.compile(r'^# (\d+) "((?:[^"\\]|\\.)*)"((?: \d+)*)$')
_DIRECTIVE_RE = re.compile(r"^\s*#\s*([a-z_]+)\b(.*)$")
_CONFIG_RE = re.compile(r"\bCONFIG_[A-Za-z0-9_]+\b")
_CMD_RE = re.compile(r"^(?:saved)?cmd_(\S+\.o) := (.*)$", re.MULTILINE)
_SOURCE_RE = re.compile(r"^source_\S+ := (.*)$", re.MULTILINE)
_ASSIGN_RE = re.compile(r"^\s*([A-Za-z0-9_.-]+?)-(\$\((CONFIG_[A-Za-z0-9_]+)\)|y|m|objs)"
                        r"\s*(?::=|\+=|=)\s*(.*)$")


# --- the series' hunks --------------------------------------------------------------------------

@dataclass(frozen=True)
class _RawHunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    body: tuple[str, ...]
    header: str                 # `@@ -a,b +c,d @@ function context`


@dataclass(frozen=True)
class _FileDiff:
    old_path: str | None        # None: a new file
    new_path: str | None        # None: a deleted file
    hunks: tuple[_RawHunk, ...]


@dataclass(frozen=True)
class Hunk:
    """One hunk of one patch, located in the tree after the whole series."""

    patch: str                  # the patch file name
    path: str                   # the file, relative to the tree
    header: str                 # `@@ -a,b +c,d @@ function context`
    lines: tuple[int, ...]      # lines to check in the final tree (added lines, not blank)
    note: str = ""              # why `lines` is empty (changed again by a later patch, ...)

    @property
    def key(self) -> str:
        return f"{self.patch} {self.path} {self.header}"


def parse_patch(text: str) -> list[_FileDiff]:
    """The file diffs of one patch (git format-patch or plain unified diff). Hunk bodies are
    read by their line counts, so the mail signature (`-- `) is not taken for a removal."""
    lines = text.splitlines()
    files: list[_FileDiff] = []
    i = 0
    old: str | None = None
    new: str | None = None
    hunks: list[_RawHunk] = []
    started = False
    fresh = False       # a `diff --git` line opened this file: its ---/+++ lines follow

    def flush() -> None:
        if started and (hunks or old != new):
            files.append(_FileDiff(old, new, tuple(hunks)))

    while i < len(lines):
        line = lines[i]
        if line.startswith("diff --git "):
            flush()
            started, hunks, fresh = True, [], True
            parts = line.split(" ")
            old = parts[2][2:] if len(parts) >= 4 else None
            new = parts[3][2:] if len(parts) >= 4 else None
        elif line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            if not fresh:   # a plain unified diff: each ---/+++ pair opens a file
                flush()
                started, hunks = True, []
            fresh = False
            old = _diff_path(line[4:])
            new = _diff_path(lines[i + 1][4:])
            i += 1
        elif started and (hh := hunk_header(line)):
            a, b, c, d = hh.old_start, hh.old_len, hh.new_start, hh.new_len
            body: list[str] = []
            olds, news = b, d
            i += 1
            while i < len(lines) and (olds > 0 or news > 0):
                row = lines[i]
                tag = row[:1]
                if tag == "\\":
                    i += 1
                    continue
                if tag == "-":
                    olds -= 1
                elif tag == "+":
                    news -= 1
                else:   # context (a blank context line may have lost its space)
                    olds -= 1
                    news -= 1
                    row = " " + row[1:]
                body.append(row)
                i += 1
            header = f"@@ -{a},{b} +{c},{d} @@" + (f" {hh.context}" if hh.context else "")
            hunks.append(_RawHunk(a, b, c, d, tuple(body), header))
            continue
        i += 1
    flush()
    return files


def _diff_path(spec: str) -> str | None:
    spec = spec.split("\t")[0].strip()
    if spec == "/dev/null":
        return None
    return spec[2:] if spec[:2] in ("a/", "b/") else spec


def _first(start: int, length: int) -> int:
    """The first line a hunk range covers (`-5,0` is an insertion after line 5)."""
    return start if length > 0 else start + 1


def map_line(line: int, hunks: Sequence[_RawHunk]) -> int | None:
    """Where line `line` of a file ends up after `hunks` (one patch's hunks of that file);
    None when they remove it."""
    delta = 0
    for h in sorted(hunks, key=lambda h: h.old_start):
        old_first, new_first = _first(h.old_start, h.old_len), _first(h.new_start, h.new_len)
        if line < old_first:
            return line + delta
        if line < old_first + h.old_len:
            o, n = old_first, new_first
            for row in h.body:
                if row[:1] == "+":
                    n += 1
                    continue
                if o == line:
                    return n if row[:1] == " " else None
                o += 1
                if row[:1] == " ":
                    n += 1
            return None   # not reached for a well-formed hunk
        delta = (new_first + h.new_len) - (old_first + h.old_len)
    return line + delta


def series_hunks(patches: Sequence[Patch], src: Path) -> list[Hunk]:
    """Every hunk of a C source or header, with its lines in the tree `src` after the whole
    series: each patch's post-image line numbers are carried through the later patches (a
    line a later patch changes is checked as that patch's), then checked against the file's
    text; a hunk `git am` applied at an offset is found by searching for its lines."""
    diffs = [(p, parse_patch(p.text)) for p in patches]
    result: list[Hunk] = []
    texts: dict[str, list[str]] = {}
    code: dict[str, list[str]] = {}
    for k, (patch, files) in enumerate(diffs):
        for fd in files:
            if fd.new_path is None or not fd.new_path.endswith(C_SUFFIXES):
                continue
            for raw in fd.hunks:
                result.append(_locate(patch, fd.new_path, raw, diffs[k + 1:], src, texts,
                                      code))
    return result


def _locate(patch: Patch, path: str, raw: _RawHunk, later: list[tuple[Patch, list[_FileDiff]]],
            src: Path, texts: dict[str, list[str]], code: dict[str, list[str]]) -> Hunk:
    header = raw.header
    wanted: list[tuple[int, str]] = []      # (line in this patch's post-image, text)
    n = _first(raw.new_start, raw.new_len)
    before: tuple[int, str] | None = None     # around the first removal, for a hunk
    after: tuple[int, str] | None = None      # that only removes: that code must compile
    removed = False
    for row in raw.body:
        tag = row[:1]
        if tag == "+":
            wanted.append((n, row[1:]))
            n += 1
        elif tag == " ":
            if removed and after is None:
                after = (n, row[1:])
            if not removed:
                before = (n, row[1:])
            n += 1
        else:
            removed = True
    if not wanted:
        wanted = [x for x in (before, after) if x is not None]
    if not wanted:
        return Hunk(patch.name, path, header, (), "no lines to check")
    cur = path
    moved: list[tuple[int | None, str]] = [(ln, t) for ln, t in wanted]
    for _later_patch, files in later:
        for fd in files:
            if fd.old_path == cur:
                moved = [(map_line(ln, fd.hunks) if ln is not None else None, t)
                         for ln, t in moved]
                if fd.new_path is None:
                    return Hunk(patch.name, path, header, (), "file deleted by a later patch")
                cur = fd.new_path
    if cur not in texts:
        try:
            texts[cur] = (src / cur).read_text(errors="replace").splitlines()
        except OSError:
            return Hunk(patch.name, cur, header, (), f"{cur} not found in the applied tree")
    text = texts[cur]
    kept = [(ln, t) for ln, t in moved if ln is not None]
    if not kept:
        return Hunk(patch.name, cur, header, (), "every line changed again by a later patch")
    lines = _match(kept, text)
    if lines is None:
        return Hunk(patch.name, cur, header, (), "its lines are not in the applied tree")
    if cur not in code:
        code[cur] = _strip_comments(text)
    lines = [ln for ln in lines if code[cur][ln - 1].strip()]
    if not lines:
        return Hunk(patch.name, cur, header, (), "no code lines (blank or comments only)")
    return Hunk(patch.name, cur, header, tuple(lines))


def _match(kept: list[tuple[int, str]], text: list[str]) -> list[int] | None:
    """The lines of `kept` in `text`: where they are expected, else at the nearest offset
    where they all are (git apply's offset), else those of them that are where expected."""
    def fits(offset: int) -> bool:
        return all(0 < ln + offset <= len(text) and text[ln + offset - 1] == t for ln, t in kept)
    for step in range(len(text) + 1):
        for offset in ((0,) if step == 0 else (-step, step)):
            if fits(offset):
                return [ln + offset for ln, _t in kept]
    here = [ln for ln, t in kept if 0 < ln <= len(text) and text[ln - 1] == t]
    return here or None


# --- conditional groups of a source file ------------------------------------------------------

@dataclass
class Group:
    """The lines between two preprocessor conditionals of one level."""

    directive: str              # `#ifdef CONFIG_X`, `#else`, ... ('' for the whole file)
    line: int                   # where the directive is (0 for the whole file)
    parent: int                 # index of the enclosing group (-1 for the whole file)
    opening: str = ""           # for #elif/#else: the `#if...` of its chain
    lines: list[int] = field(default_factory=list)

    def options(self) -> list[str]:
        """What the config must say for this group to be compiled: `CONFIG_X`, or
        `CONFIG_X=n` for `#ifndef CONFIG_X` and the `#else` of `#ifdef CONFIG_X`; for a
        condition of several options or an `#elif`, the options it names."""
        if self.directive.startswith("#else"):
            simple = _simple(self.opening)
            if simple is not None:
                return [simple[0] if simple[1] else f"{simple[0]}=n"]
        elif not self.directive.startswith("#elif"):
            simple = _simple(self.directive)
            if simple is not None:
                return [f"{simple[0]}=n" if simple[1] else simple[0]]
        return list(dict.fromkeys(_CONFIG_RE.findall(self.opening + " " + self.directive)))

    def describe(self) -> str:
        if self.opening:
            return f"`{self.directive}` of `{self.opening}` (line {self.line})"
        return f"`{self.directive}` (line {self.line})"


_SIMPLE_RE = re.compile(r"^#(?:(ifdef|ifndef) (CONFIG_\w+)|if (!?)\s*(?:defined\s*\(?\s*|"
                        r"IS_(?:ENABLED|BUILTIN|REACHABLE)\s*\(\s*)?(CONFIG_\w+)\s*\)?)$")


def _simple(directive: str) -> tuple[str, bool] | None:
    """(option, negated) of a conditional on one option (`#ifdef CONFIG_X`,
    `#if !IS_ENABLED(CONFIG_X)`, ...), None for anything else."""
    m = _SIMPLE_RE.match(directive)
    if m is None:
        return None
    if m.group(2):
        return m.group(2), m.group(1) == "ifndef"
    return m.group(4), m.group(3) == "!"


@dataclass
class Layout:
    groups: list[Group]
    group_of: list[int]         # line (1-based; [0] unused) -> its innermost group


def _strip_comments(lines: Sequence[str]) -> list[str]:
    """The lines with comments and string/char literals blanked out (state across lines)."""
    out: list[str] = []
    in_comment = False
    for line in lines:
        res: list[str] = []
        i = 0
        quote = ""
        while i < len(line):
            ch = line[i]
            if in_comment:
                if line.startswith("*/", i):
                    in_comment = False
                    i += 2
                    res.append("  ")
                    continue
                res.append(" ")
            elif quote:
                if ch == "\\":
                    res.append("  ")
                    i += 2
                    continue
                if ch == quote:
                    quote = ""
                res.append(" ")
            elif line.startswith("/*", i):
                in_comment = True
                res.append("  ")
                i += 2
                continue
            elif line.startswith("//", i):
                break
            elif ch in "\"'":
                quote = ch
                res.append(" ")
            else:
                res.append(ch)
            i += 1
        out.append("".join(res))
    return out


def layout(lines: Sequence[str]) -> Layout:
    """The conditional groups of a file's lines; a directive line belongs to the group
    around its conditional."""
    code = _strip_comments(lines)
    groups = [Group("", 0, -1)]
    stack = [0]
    openings: list[str] = [""]
    group_of = [0] * (len(lines) + 1)
    continued = False
    for number, (raw, clean) in enumerate(zip(lines, code), 1):
        here = stack[-1]
        m = None if continued else _DIRECTIVE_RE.match(clean)
        continued = raw.rstrip().endswith("\\")
        if m is not None:
            name = m.group(1)
            text = "#" + name + (" " + " ".join(m.group(2).split()) if m.group(2).strip()
                                 else "")
            if name in ("if", "ifdef", "ifndef"):
                group_of[number] = here
                groups.append(Group(text, number, here))
                stack.append(len(groups) - 1)
                openings.append(text)
                continue
            if name in ("elif", "else", "elifdef", "elifndef") and len(stack) > 1:
                stack.pop()
                parent = stack[-1]
                group_of[number] = parent
                groups.append(Group(text, number, parent, opening=openings[-1]))
                stack.append(len(groups) - 1)
                continue
            if name == "endif" and len(stack) > 1:
                stack.pop()
                openings.pop()
                group_of[number] = stack[-1]
                continue
        group_of[number] = here
        groups[here].lines.append(number)
    return Layout(groups, group_of)


# --- the preprocessed text ------------------------------------------------------------------

def visible_lines(i_text: Iterable[str], build_dir: Path,
                  wanted: dict[str, str]) -> dict[str, set[int]]:
    """From preprocessed output (`-E`, line markers): per file of `wanted` (normalized
    absolute path -> the caller's name), the source lines whose output is not empty, plus
    the `#include` lines that were processed (the marker returning to the file), and 0 when
    the file was read at all."""
    seen: dict[str, set[int]] = {name: set() for name in wanted.values()}
    names: dict[str, str | None] = {}
    current: set[int] | None = None
    line = 0
    for row in i_text:
        if row.startswith("# "):
            m = _MARKER_RE.match(row.rstrip("\n"))
            if m is not None:
                spelled = m.group(2)
                if spelled not in names:
                    full = spelled if spelled.startswith("/") else str(build_dir / spelled)
                    names[spelled] = wanted.get(os.path.normpath(full))
                name = names[spelled]
                current = seen[name] if name is not None else None
                line = int(m.group(1))
                if current is not None:
                    current.add(0)      # the file was read: its top level is compiled
                if current is not None and "2" in m.group(3).split():
                    current.add(line - 1)   # back from an #include on the line before
                continue
        if current is not None and row.strip():
            current.add(line)
        line += 1
    return seen


@dataclass(frozen=True)
class Verdict:
    """What one object's preprocessed output says about a hunk's lines."""

    live: frozenset[int]        # the hunk's lines that were compiled
    dead: dict[int, int]        # the others: line -> the outermost group that is off


def judge(lines: Sequence[int], lay: Layout, visible: set[int]) -> Verdict:
    """Which of `lines` are compiled: their group, or a group inside it, has a visible line
    (the file's top level: the file was read at all, line 0 of `visible`)."""
    children: dict[int, list[int]] = {}
    for index, group in enumerate(lay.groups):
        children.setdefault(group.parent, []).append(index)
    live_group: dict[int, bool] = {}

    def is_live(g: int) -> bool:
        if g not in live_group:
            live_group[g] = (g == 0 and 0 in visible) \
                or any(n in visible for n in lay.groups[g].lines) \
                or any(is_live(c) for c in children.get(g, []))
        return live_group[g]

    live: set[int] = set()
    dead: dict[int, int] = {}
    for n in lines:
        g = lay.group_of[n] if 0 < n < len(lay.group_of) else 0
        if is_live(g):
            live.add(n)
            continue
        outer = g
        while lay.groups[outer].parent >= 0 and not is_live(lay.groups[outer].parent):
            outer = lay.groups[outer].parent
        dead[n] = outer
    return Verdict(frozenset(live), dead)


# --- the compile commands in the build folder -----------------------------------------------

@dataclass(frozen=True)
class ObjectCmd:
    obj: str                    # `kernel/cgroup/cgroup.o`, relative to the build folder
    source: str                 # the compiled file's absolute path
    argv: tuple[str, ...]       # the compiler command (no ccache, no objtool, no -Wp,-MMD)


def parse_cmd_file(text: str) -> ObjectCmd | None:
    """The compiler command of a `.o.cmd` file (`cmd_X.o := ...` or 6.x's `savedcmd_`), or
    None for one that is not a C compile (assembler, link, a command we cannot read)."""
    m = _CMD_RE.search(text)
    if m is None:
        return None
    obj, cmd = m.group(1), m.group(2).replace("$$", "$").replace("\\#", "#")
    lex = shlex.shlex(cmd, posix=True, punctuation_chars=";&|")
    lex.whitespace_split = True
    lex.commenters = ""
    try:
        tokens = list(lex)
    except ValueError:
        return None
    cut = next((i for i, t in enumerate(tokens) if t and set(t) <= set(";&|")), len(tokens))
    argv = [t for t in tokens[:cut] if not t.startswith(("-Wp,-MMD", "-Wp,-MD"))]
    while argv and argv[0] in ("ccache", "distcc"):
        argv = argv[1:]
    src = _SOURCE_RE.search(text)
    source = src.group(1).strip() if src else (argv[-1] if argv else "")
    if not argv or "-c" not in argv or "-o" not in argv or not source.endswith(".c"):
        return None
    return ObjectCmd(obj, source, tuple(argv))


def preprocess_argv(cmd: ObjectCmd, out: Path) -> list[str]:
    """The object's own compile command turned into `-E -dD -o out` (preprocess only,
    `#define`s kept in place, nothing written next to the object)."""
    argv = list(cmd.argv)
    argv.remove("-c")
    at = argv.index("-o")
    argv[at + 1] = str(out)
    return [argv[0], "-E", "-dD", *argv[1:]]


def cmd_files(build_dir: Path) -> list[Path]:
    """Every `.*.o.cmd` in the build folder (Kbuild's record of each object it compiled)."""
    found: list[Path] = []
    for root, dirs, files in os.walk(build_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(root) / f for f in files if f.startswith(".") and f.endswith(".o.cmd"))
    return sorted(found)


# --- why an object was not built ----------------------------------------------------------------

def _makefile_assignments(src: Path, directory: str) -> list[tuple[str, str, list[str]]]:
    """(variable, condition, words) of `VAR-$(CONFIG_X) += a.o b/` lines of a folder's
    Makefile (or Kbuild); condition is the CONFIG_ name, or `y`/`m`/`objs`."""
    for name in ("Kbuild", "Makefile"):
        path = src / directory / name if directory else src / name
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        joined = re.sub(r"\\\n", " ", text)
        found = []
        for row in joined.splitlines():
            m = _ASSIGN_RE.match(row.split("#")[0])
            if m:
                cond = m.group(3) or m.group(2)
                found.append((m.group(1), cond, m.group(4).split()))
        return found
    return []


def object_options(src: Path, obj: str, depth: int = 0) -> tuple[list[str], str]:
    """The options that build `obj` (`kernel/cgroup/cpuset.o`): from `obj-$(CONFIG_X) +=`
    in its folder's Makefile, through composite objects (`foo-$(CONFIG_Y) += obj.o`) and
    folders (`obj-$(CONFIG_Z) += dir/` one level up). Returns (options, where it was found)."""
    directory, name = os.path.split(obj)
    if depth > 4:
        return [], ""
    for var, cond, words in _makefile_assignments(src, directory):
        if name not in words:
            continue
        options = [cond] if cond.startswith("CONFIG_") else []
        where = f"{var}-{'$(' + cond + ')' if cond.startswith('CONFIG_') else cond} " \
                f"+= {name} in {directory or '.'}/Makefile"
        if var != "obj":
            more, _ = object_options(src, os.path.join(directory, var + ".o"), depth + 1)
            return options + [o for o in more if o not in options], where
        if not options and directory:
            parent, leaf = os.path.split(directory)
            for pvar, pcond, pwords in _makefile_assignments(src, parent):
                if pvar == "obj" and leaf + "/" in pwords and pcond.startswith("CONFIG_"):
                    return [pcond], f"obj-$({pcond}) += {leaf}/ in {parent or '.'}/Makefile"
        return options, where
    return [], ""


# --- one variant ----------------------------------------------------------------------------

@dataclass
class HunkResult:
    hunk: Hunk
    compiled: frozenset[int]                 # lines compiled in this variant
    reason: str = ""                         # when not all of them: why
    options: tuple[str, ...] = ()            # options that would compile the rest
    objects: tuple[str, ...] = ()            # the objects that compiled it

    @property
    def ok(self) -> bool:
        """Every line to check was compiled (a hunk with none is never ok: not checked)."""
        return bool(self.hunk.lines) and set(self.hunk.lines) <= self.compiled


@dataclass
class VariantCheck:
    """The check of one variant's build folder."""

    variant: str
    results: list[HunkResult]
    checked: bool = True                     # False: the folder has no Kbuild .cmd files
    note: str = ""                           # why not checked
    seconds: float = 0.0
    preprocessed: list[str] = field(default_factory=list)   # objects preprocessed


def _line_ranges(lines: Iterable[int]) -> str:
    """`3, 7-9` for lines 3, 7, 8 and 9."""
    runs: list[list[int]] = []
    for n in sorted(set(lines)):
        if runs and runs[-1][1] == n - 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


class PreprocessFailed(Exception):
    """An object's own compile command, preprocessing only, failed or timed out."""


def check_build(hunks: Sequence[Hunk], src: Path, build_dir: Path, variant: str,
                log: Callable[[str], None] | None = None,
                timeout: float = PREPROCESS_TIMEOUT) -> VariantCheck:
    """Check every hunk against one build folder (see the module's docstring). `log`, when
    given, is called with one line per preprocessed object."""
    start = time.monotonic()
    root = Path(os.path.realpath(src))
    cmds = cmd_files(build_dir)
    if not cmds:
        return VariantCheck(variant, [], checked=False,
                            note=f"{build_dir} has no Kbuild .o.cmd files: cannot tell what "
                                 f"was compiled", seconds=time.monotonic() - start)
    files = sorted({h.path for h in hunks if h.lines})
    absolute = {f: os.path.normpath(str(root / f)) for f in files}
    wanted = {a: f for f, a in absolute.items()}
    texts: dict[Path, str] = {}

    def read(path: Path) -> str:
        if path not in texts:
            texts[path] = _read(path)
        return texts[path]

    # The touched .c files' own objects first: their .cmd files name the headers they read,
    # so most headers need no look at the other objects' (a ~100 MB read on 6.1).
    own: dict[str, Path] = {}
    for f in files:
        if f.endswith(".c"):
            d, name = os.path.split(f)
            own[f] = build_dir / d / f".{name[:-2]}.o.cmd"
    whole: dict[str, list[ObjectCmd]] = {}      # file -> every object naming it (one pass)

    def users_of(f: str, everything: bool) -> list[ObjectCmd]:
        """Objects whose .cmd names `f`: of the touched .c files, or of the whole build."""
        if everything and not whole:
            for name in files:
                whole[name] = []
            for path in cmds:
                text = read(path) if path in own.values() else _read(path)
                hits = [name for name in files if absolute[name] in text]
                cmd = parse_cmd_file(text) if hits else None
                for name in hits if cmd is not None else []:
                    assert cmd is not None
                    whole[name].append(cmd)
        if everything:
            found = list(whole.get(f, []))
        else:
            found = [cmd for path in sorted(set(own.values())) if path.is_file()
                     and absolute[f] in read(path) and (cmd := parse_cmd_file(read(path)))]
        touched = {absolute[t] for t in own}
        found.sort(key=lambda c: (c.source != absolute[f], c.source not in touched,
                                  os.path.dirname(c.obj) != os.path.dirname(f), c.obj))
        return found

    layouts: dict[str, Layout] = {}
    for f in files:
        layouts[f] = layout((root / f).read_text(errors="replace").splitlines())
    seen: dict[str, dict[str, set[int]]] = {}      # object -> file -> visible lines
    check = VariantCheck(variant, [])
    with tempfile.TemporaryDirectory(prefix="pipeline-compiled-") as tmp:
        def visible_in(cmd: ObjectCmd) -> dict[str, set[int]]:
            if cmd.obj not in seen:
                out = Path(tmp) / (cmd.obj.replace("/", "_") + ".i")
                t0 = time.monotonic()
                done = proc.run(preprocess_argv(cmd, out), cwd=build_dir, timeout=timeout,
                                stderr_apart=True)
                if done.timed_out or done.returncode != 0 or not out.is_file():
                    why = "timed out" if done.timed_out else f"exit {done.returncode}"
                    raise PreprocessFailed(f"preprocessing {cmd.obj} failed ({why}): "
                                           f"{(done.errors or done.output)[-2000:]}")
                with open(out, errors="replace") as handle:
                    seen[cmd.obj] = visible_lines(handle, build_dir, wanted)
                out.unlink()
                check.preprocessed.append(cmd.obj)
                if log is not None:
                    log(f"  compiled: preprocessed {cmd.obj} "
                        f"({time.monotonic() - t0:.1f}s)")
            return seen[cmd.obj]

        for hunk in hunks:
            result = _check_hunk(hunk, src, users_of(hunk.path, False), layouts, visible_in)
            if not result.ok and hunk.lines:
                result = _check_hunk(hunk, src, users_of(hunk.path, True), layouts, visible_in)
            check.results.append(result)
    check.seconds = time.monotonic() - start
    return check


def _check_hunk(hunk: Hunk, src: Path, candidates: list[ObjectCmd],
                layouts: dict[str, Layout],
                visible_in: Callable[[ObjectCmd], dict[str, set[int]]]) -> HunkResult:
    if not hunk.lines:
        return HunkResult(hunk, frozenset(), reason=f"not checked: {hunk.note}")
    if hunk.path.endswith(".c"):
        own = [c for c in candidates if c.obj == hunk.path[:-2] + ".o"]
        candidates = own or candidates
    if not candidates:
        if hunk.path.endswith(".c"):
            obj = hunk.path[:-2] + ".o"
            options, where = object_options(src, obj)
            need = f": needs {' and '.join(options)}" if options else ""
            return HunkResult(hunk, frozenset(), reason=f"{obj} not built"
                              + (f" ({where})" if where else "") + need,
                              options=tuple(options))
        return HunkResult(hunk, frozenset(), reason=f"{hunk.path} is included by no object "
                                                     f"this variant built")
    live: set[int] = set()
    objects: list[str] = []
    dead: dict[int, int] = {}
    tried: list[str] = []
    for cmd in candidates:
        if len(tried) == MAX_HEADER_USERS:
            break
        visible = visible_in(cmd).get(hunk.path, set())
        if 0 not in visible:
            continue    # its .cmd names the file but the preprocessor never read it
        tried.append(cmd.obj)
        verdict = judge(hunk.lines, layouts[hunk.path], visible)
        if verdict.live - live:
            objects.append(cmd.obj)
        live |= verdict.live
        for n, g in verdict.dead.items():
            dead.setdefault(n, g)
        if set(hunk.lines) <= live:
            break
    dead = {n: g for n, g in dead.items() if n not in live}
    result = HunkResult(hunk, frozenset(live), objects=tuple(objects))
    if not result.ok:
        lay = layouts[hunk.path]
        outers = sorted({g for n, g in dead.items()})
        options = list(dict.fromkeys(o for g in outers for o in lay.groups[g].options()))
        under = "; ".join(lay.groups[g].describe() for g in outers if g > 0)
        missing = sorted(set(hunk.lines) - live)
        if not tried:
            result.reason = f"{hunk.path} was read by none of {len(candidates)} objects " \
                            f"whose .cmd names it"
            return result
        result.reason = (f"line(s) {_line_ranges(missing)} compiled out"
                         + (f" by {under}" if under else "") + f" in {', '.join(tried)}"
                         + (f": needs {' and '.join(options)}" if options else ""))
        result.options = tuple(options)
    return result


def variant_cases(check: VariantCheck) -> list[Case]:
    """The `compiled` stage's JUnit cases: one per hunk."""
    if not check.checked:
        return [Case("compiled", SKIPPED, check.seconds, message=f"not checked: {check.note}")]
    cases = []
    for r in check.results:
        if r.ok:
            cases.append(Case(r.hunk.key, PASSED, message=f"{len(r.hunk.lines)} line(s) "
                              f"compiled in {', '.join(r.objects)}"))
        else:
            cases.append(Case(r.hunk.key, SKIPPED, message=f"not compiled here: {r.reason}"))
    if cases:
        cases[0].duration = check.seconds
    return cases


# --- the stage and the run's report -------------------------------------------------------------

def compiled_stage(ctx: VariantContext) -> list[Case]:
    """The variant's `compiled` stage (after build): one case per hunk of the series."""
    assert ctx.src is not None and ctx.config is not None and ctx.series is not None
    build_dir = build_dir_of(ctx)
    hunks = series_hunks(ctx.series.patches, ctx.src)
    with ctx.cache.lock(f"build-{build_dir.name}", f"build folder {build_dir}", ctx.log):
        try:
            check = check_build(hunks, ctx.src, build_dir, ctx.variant.name, ctx.log,
                                timeout=PREPROCESS_TIMEOUT * ctx.variant.timeout_scale)
        except PreprocessFailed as exc:
            raise StageFailed(f"compiled: {str(exc).splitlines()[0]}", str(exc)) from None
    ctx.run.compiled[ctx.variant.name] = check
    if check.checked:
        ok = sum(r.ok for r in check.results)
        ctx.log(f"  compiled: {ok} of {len(check.results)} hunks compiled in this variant "
                f"({len(check.preprocessed)} files preprocessed, {check.seconds:.1f}s)")
    else:
        ctx.log(f"  compiled: {check.note}")
    return variant_cases(check)


@dataclass(frozen=True)
class Never:
    """A hunk with lines no variant compiled."""

    hunk: Hunk
    lines: tuple[int, ...]
    options: tuple[str, ...]
    reasons: tuple[str, ...]          # per variant


def never_compiled(checks: Sequence[VariantCheck]) -> list[Never]:
    """The hunks some of whose lines no checked variant compiled."""
    checked = [c for c in checks if c.checked]
    if not checked:
        return []
    found = []
    for i, r in enumerate(checked[0].results):
        if not r.hunk.lines:
            continue
        pieces = [c.results[i] for c in checked if i < len(c.results)]
        live = set().union(*(p.compiled for p in pieces))
        missing = tuple(sorted(set(r.hunk.lines) - live))
        if missing:
            options = tuple(dict.fromkeys(o for p in pieces for o in p.options))
            reasons = tuple(f"{c.variant}: {c.results[i].reason}" for c in checked)
            found.append(Never(r.hunk, missing, options, reasons))
    return found


@dataclass(frozen=True)
class Accepted:
    """An entry of the series' not-compiled.yaml: a hunk of `file` that only `option` would
    compile (e.g. `CONFIG_KERNFS=n` for a stub no config of the job can have), and why that
    is accepted."""

    file: str
    option: str
    reason: str


def load_accepted(series_folder: Path | None) -> tuple[list[Accepted], str]:
    """The series folder's not-compiled.yaml (none: an mbox series, or no such file), and
    the path it came from; BadInput naming the entry when it is malformed."""
    if series_folder is None or not (series_folder / ACCEPTED_FILE).is_file():
        return [], ""
    path = series_folder / ACCEPTED_FILE
    data, _node = safeyaml.load(path, ACCEPTED_FILE)
    if data is None:
        return [], str(path)
    if not isinstance(data, list):
        raise BadInput(f"{path}: must be a list of {{file, option, reason}}")
    found = []
    for i, entry in enumerate(data, 1):
        if not isinstance(entry, dict) or set(entry) != _ACCEPTED_KEYS \
                or not all(isinstance(v, str) and v.strip() for v in entry.values()):
            raise BadInput(f"{path}: entry {i}: needs exactly file, option and reason, "
                           f"non-empty strings")
        found.append(Accepted(entry["file"], entry["option"], " ".join(entry["reason"].split())))
    return found, str(path)


def report(run: RunContext) -> None:
    """The run-level suite `series.compiled`: a failed case per hunk no variant compiled
    (skipped with its reason when the series' not-compiled.yaml accepts it), a log line,
    and `summary.json` "compiled"."""
    checks = list(run.compiled.values())
    if not checks:
        return
    stage = Stage(SUITE)
    run.report.suites.append(stage)
    checked = [c for c in checks if c.checked]
    summary: dict[str, Any] = {"variants": {
        c.variant: ({"hunks": len(c.results), "compiled": sum(r.ok for r in c.results),
                     "preprocessed": len(c.preprocessed), "seconds": round(c.seconds, 1)}
                    if c.checked else {"checked": False, "note": c.note}) for c in checks}}
    run.report.compiled = summary
    if not checked:
        stage.cases.append(Case("every hunk compiled by some variant", SKIPPED,
                                message=f"not checked: {checks[0].note}"))
        run.log(f"compiled: not checked ({checks[0].note})")
        return
    source = run.series.source if run.series is not None else None
    try:
        accepted, accepted_path = load_accepted(source if source and source.is_dir() else None)
    except BadInput as exc:
        stage.cases.append(Case(ACCEPTED_FILE, FAILED, message=exc.message))
        run.log(f"compiled: {exc.message}")
        accepted, accepted_path = [], ""
    never = never_compiled(checked)
    used: set[Accepted] = set()
    names = ", ".join(c.variant for c in checked)
    failed = []
    for n in never:
        need = f"; would need {' or '.join(n.options)}" if n.options else ""
        what = f"{n.hunk.path} line(s) {_line_ranges(n.lines)}{need}"
        ok = next((a for a in accepted if a.file == n.hunk.path and a.option in n.options),
                  None)
        if ok is not None:
            used.add(ok)
            stage.cases.append(Case(n.hunk.key, SKIPPED, classname=SUITE,
                                    message=f"compiled by no variant ({names}): {what}; "
                                            f"accepted in {accepted_path}: {ok.reason}",
                                    details="\n".join(n.reasons)))
            run.log(f"compiled: not compiled by any variant, accepted: {n.hunk.key}: {what}")
            continue
        failed.append(n)
        stage.cases.append(Case(
            n.hunk.key, FAILED, classname=SUITE,
            message=f"compiled by no variant ({names}): {what}",
            details="\n".join(n.reasons)))
        run.log(f"compiled: NOT compiled by any variant: {n.hunk.key}: {what}")
    stale = [a for a in accepted if a not in used]
    for a in stale:
        run.log(f"compiled: {accepted_path}: {a.file} {a.option} matched no hunk this run "
                f"left uncompiled: remove it?")
    total = sum(1 for r in checked[0].results if r.hunk.lines)
    if not never:
        stage.cases.append(Case("every hunk compiled by some variant", PASSED,
                                message=f"{total} hunks in {names}"))
    run.log(f"compiled: {total - len(never)} of {total} hunks compiled by at least one "
            f"variant ({names})" + (f", {len(never) - len(failed)} accepted as not compiled"
                                    if len(never) > len(failed) else ""))
    summary["hunks"] = total
    summary["never_compiled"] = [
        {"patch": n.hunk.patch, "file": n.hunk.path, "hunk": n.hunk.header,
         "lines": _line_ranges(n.lines), "options": list(n.options),
         "accepted": n not in failed} for n in never]
    if stale:
        summary["accepted_unused"] = [f"{a.file} {a.option}" for a in stale]
