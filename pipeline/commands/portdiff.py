"""`pipeline port-diff A B`: how two versions of a series differ, patch by patch (git range-diff).

A and B are series: a folder with series.yaml, a series name under patches/ (its variant is
picked by the tree's version), a folder of NNNN-*.patch files, or an mbox file. Each is applied
on its own tree (`--tree-a`/`--tree-b`; default: the Debian tree its series.yaml is based on,
or the closest installed one; a series without a base, such as an mbox, takes the other
side's tree), in a scratch git repository in the cache that holds only the files the series
touches, taken from that tree: base A + series A, and an unrelated base B + series B. Then
`git range-diff --no-color baseA..tipA baseB..tipB` pairs the patches by their diffs.

Writes OUT/port-diff.md: one section per pair with both subjects and git's output in a fenced
block (`=` same diff, `!` changed: `-` lines are A's, `+` lines B's; `<` only in A, `>` only
in B). The log ends with one line per pair and the counts.
Exit 0 the diff was written (the series may differ: that is the answer, not a failure),
2 bad input (no patches, unknown series or tree), 3 a patch does not apply to its tree.
A patch that changed much can show as dropped and added (`<` and `>`) instead of `!`: raise
`--creation-factor` (git's, default 60) to pair it.

Example, the two cgroup-pool ports (0.7 s once both trees are cached):
  pipeline port-diff patches/cgroup-pool/6.1 patches/cgroup-pool/6.12
    1 ! 1   kernfs: add pinned nodes that stay deactivated until handed out (-19 +29 lines)
    2 ! 2   cgroup: support cgroup pool in v1 (-35 +41 lines)
  and in out/port-diff.md, section "1 ! 1", kernfs_rename_lock became an rwlock on 6.12:
        @@ fs/kernfs/dir.c: static void kernfs_activate_one(struct kernfs_node *kn)
         +  if (dup) {
        -+          spin_lock_irq(&kernfs_rename_lock);
        ++          write_lock_irq(&kernfs_rename_lock);
  Two versions of a thread on one tree: pipeline port-diff v1.mbox v2.mbox --tree-a debian:6.1
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import apply as apply_mod
from .. import series as series_mod
from ..cache import Cache, default_cache_root
from ..errors import BadInput, StageFailed
from ..git import git
from ..job import PROJECT_ROOT, normalize_series_spec, normalize_tree_spec
from ..log import Logger, fmt_duration
from ..preflight import check_writable_dir
from ..tree import Tree, prepare_tree, version_tuple

DEBIAN_SOURCES = Path("/usr/src")
GIT_TIMEOUT = 600.0
SAME, CHANGED, ONLY_A, ONLY_B = "=", "!", "<", ">"
_HEADER = re.compile(r"^\s*(\d+|-):\s+([0-9a-f]+|-+) ([=!<>]) \s*(\d+|-):\s+([0-9a-f]+|-+) "
                     r"(.*)$")
_DIFF_PATH = re.compile(r"^diff --git (\"?)a/(.+?)\1 (\"?)b/(.+?)\3$")
_FIXED_DATE = "1000000000 +0000"
_BATCH = 400                       # paths per git command   # scratch base commits: the same ids for the same files


# --- parsing and formatting of git range-diff output -----------------------------------------

@dataclass
class Pair:
    """One line of `git range-diff` and the diff-of-diffs below it."""

    a: int | None          # position in A (from 1), None: only in B
    b: int | None          # position in B, None: only in A
    status: str            # = ! < >
    subject: str           # as git prints it
    header: str            # the line itself
    body: list[str] = field(default_factory=list)

    @property
    def removed(self) -> int:
        """Lines of A's version that B does not have (outer `-` lines)."""
        return sum(1 for line in self.body if line.startswith("    -"))

    @property
    def added(self) -> int:
        return sum(1 for line in self.body if line.startswith("    +"))


def parse_range_diff(text: str) -> list[Pair]:
    """The pairs of `git range-diff --no-color` output, in git's order; a line before the
    first header (there is none in git's output) is refused as not range-diff output."""
    pairs: list[Pair] = []
    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            a, _, status, b, _, subject = match.groups()
            pairs.append(Pair(None if a == "-" else int(a), None if b == "-" else int(b),
                              status, subject, line))
        elif pairs:
            pairs[-1].body.append(line)
        elif line.strip():
            raise ValueError(f"not git range-diff output: {line[:80]!r}")
    for pair in pairs:
        while pair.body and not pair.body[-1].strip():
            pair.body.pop()
    return pairs


def counts(pairs: list[Pair]) -> dict[str, int]:
    return {status: sum(p.status == status for p in pairs)
            for status in (SAME, CHANGED, ONLY_A, ONLY_B)}


def _fence(lines: list[str]) -> str:
    """A backtick fence longer than any run of backticks in `lines`."""
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _name(series: series_mod.Series, index: int | None) -> str:
    if index is None:
        return "-"
    return series.patches[index - 1].name if 0 < index <= len(series.patches) else str(index)


def _subject(series: series_mod.Series, index: int | None) -> str:
    if index is None or not 0 < index <= len(series.patches):
        return ""
    return series.patches[index - 1].subject


def summary_line(pair: Pair) -> str:
    a = "-" if pair.a is None else str(pair.a)
    b = "-" if pair.b is None else str(pair.b)
    extra = f" (-{pair.removed} +{pair.added} lines)" if pair.status == CHANGED else ""
    return f"{a:>3} {pair.status} {b:<3} {pair.subject}{extra}"


def pair_sections(pairs: list[Pair], series_a: series_mod.Series,
                  series_b: series_mod.Series, level: str = "##") -> list[str]:
    """The pair table and one section per pair (Markdown lines)."""
    lines = ["| A | | B | patch A | patch B | subject | lines -A +B |",
             "|---|---|---|---|---|---|---|"]
    for p in pairs:
        delta = f"-{p.removed} +{p.added}" if p.status == CHANGED else ""
        lines.append(f"| {p.a or '-'} | `{p.status}` | {p.b or '-'} | "
                     f"{_cell(_name(series_a, p.a))} | {_cell(_name(series_b, p.b))} | "
                     f"{_cell(p.subject)} | {delta} |")
    for p in pairs:
        sub_a, sub_b = _subject(series_a, p.a), _subject(series_b, p.b)
        title = sub_b or sub_a or p.subject
        lines += ["", f"{level} {p.a or '-'} {p.status} {p.b or '-'}: {title}", ""]
        name_a, name_b = _name(series_a, p.a), _name(series_b, p.b)
        if p.status == ONLY_A:
            lines.append(f"Only in A: `{name_a}` (B has no patch with a similar diff).")
        elif p.status == ONLY_B:
            lines.append(f"Only in B: `{name_b}` (A has no patch with a similar diff).")
        else:
            what = "the same diff" if p.status == SAME else "changed"
            where = f"`{name_a}` in A and B" if name_a == name_b else \
                f"A `{name_a}`, B `{name_b}`"
            lines.append(f"{where}: {what}.")
        if sub_a and sub_b and sub_a != sub_b:
            lines += ["", f"Subject in A: {sub_a}  ", f"Subject in B: {sub_b}"]
        block = [p.header, *p.body]
        fence = _fence(block)
        lines += ["", fence, *block, fence]
    return lines


@dataclass
class Side:
    label: str                     # "A" or "B"
    series: series_mod.Series
    tree: Tree
    files: list[str] = field(default_factory=list)
    base: str = ""                 # scratch commits
    tip: str = ""


@dataclass
class PortDiff:
    a: Side
    b: Side
    pairs: list[Pair]
    output: str
    duration: float = 0.0


def _describe(side: Side) -> str:
    series = side.series
    return (f"{series.name} ({series.source}, {len(series.patches)} patches) on "
            f"{side.tree.spec} ({side.tree.version})")


def markdown(diff: PortDiff) -> str:
    a, b = diff.a, diff.b
    tally = counts(diff.pairs)
    title = (f"# Port diff: {a.series.name} on {a.tree.version} vs {b.series.name} on "
             f"{b.tree.version}")
    lines = [title, "",
             "| side | series | patches | tree | files the series touches |",
             "|---|---|---|---|---|"]
    for side in (a, b):
        lines.append(f"| {side.label} | {_cell(str(side.series.source))} | "
                     f"{len(side.series.patches)} | {side.tree.spec} ({side.tree.version}) | "
                     f"{len(side.files)} |")
    lines += ["", (f"{len(diff.pairs)} pairs: {tally[SAME]} unchanged (`=`), {tally[CHANGED]} "
                   f"changed (`!`), {tally[ONLY_A]} only in A (`<`), {tally[ONLY_B]} only in B "
                   "(`>`)."), "",
              ("Made with `git range-diff --no-color baseA..tipA baseB..tipB` in a scratch "
               "repository: base A holds the files series A touches as the tree of A has "
               "them, base B (an unrelated commit) those of B; each series applied with "
               "`git am --3way`. In a changed pair, lines starting with `-` after the "
               "indentation are A's version, `+` B's; `@@` lines name the file and function "
               "(hunk line numbers are left out by git, so moved code alone is no change)."),
              ""]
    lines += pair_sections(diff.pairs, a.series, b.series)
    return "\n".join(lines) + "\n"


# --- the scratch repository -------------------------------------------------------------------

def touched_files(patches: list[series_mod.Patch]) -> list[str]:
    """Paths a series reads or writes (both names of a rename), in first-seen order."""
    seen: dict[str, None] = {}
    for patch in patches:
        git_style = False
        for line in patch.text.splitlines():
            if m := _DIFF_PATH.match(line):
                git_style = True
                seen.setdefault(m.group(2))
                seen.setdefault(m.group(4))
            elif line.startswith(("rename from ", "copy from ")):
                seen.setdefault(line.split(" ", 2)[2])
            elif not git_style and line.startswith(("--- ", "+++ ")):
                name = line[4:].split("\t")[0].strip()
                if name != "/dev/null":
                    seen.setdefault(name.split("/", 1)[1] if "/" in name else name)
    return list(seen)


def _objects_dir(repo: Path) -> Path:
    out = git(repo, "rev-parse", "--git-common-dir", timeout=GIT_TIMEOUT,
              what=f"reading {repo}").strip()
    return (repo / out).resolve() / "objects"


def _base_commit(scratch: Path, side: Side) -> str:
    """A root commit in `scratch` with the tree's versions of the files the side's series
    touches (blobs borrowed through the alternates; files the series creates are absent)."""
    tree = side.tree
    index = scratch / ".git" / f"index-{side.label}"
    env = {"GIT_INDEX_FILE": str(index), "GIT_AUTHOR_DATE": _FIXED_DATE,
           "GIT_COMMITTER_DATE": _FIXED_DATE}
    what = f"making base {side.label}"
    found = 0
    # in batches: no path list may reach the argument limit, and no batch may be empty
    # (ls-tree without a path lists the whole tree)
    for at in range(0, len(side.files), _BATCH):
        listing = git(tree.repo, "ls-tree", "-r", "-z", "--full-tree", tree.commit, "--",
                      *side.files[at:at + _BATCH], timeout=GIT_TIMEOUT,
                      what=f"listing the files of series {side.label} in {tree.spec}")
        cacheinfo: list[str] = []
        for entry in filter(None, listing.split("\0")):
            meta, path = entry.split("\t", 1)
            mode, kind, sha = meta.split()
            if kind == "blob":
                cacheinfo += ["--cacheinfo", f"{mode},{sha},{path}"]
        if cacheinfo:
            git(scratch, "update-index", "--add", *cacheinfo, timeout=GIT_TIMEOUT, env=env,
                what=what)
            found += len(cacheinfo) // 2
    written = git(scratch, "write-tree", timeout=GIT_TIMEOUT, env=env, what=what).strip()
    message = (f"base {side.label}: {tree.spec} ({tree.version}), {found} of the files series "
               f"{side.series.name} touches")
    return git(scratch, "commit-tree", written, "-m", message, timeout=GIT_TIMEOUT, env=env,
               what=what).strip()


def _apply(scratch: Path, side: Side, tmp: Path, log: Logger) -> None:
    """Check out base and `git am --3way` each patch; StageFailed naming the first patch that
    does not apply (exit 3)."""
    git(scratch, "checkout", "--quiet", "--force", "--detach", side.base, timeout=GIT_TIMEOUT,
        what=f"checking out base {side.label}")
    git(scratch, "clean", "-q", "-f", "-d", "-x", timeout=GIT_TIMEOUT,
        what=f"cleaning for base {side.label}")
    series = side.series
    for patch in series.patches:
        patch_file = tmp / f"{side.label}-{patch.index:04d}.patch"
        patch_file.write_text(patch.text)
        result = apply_mod.apply_one(scratch, patch, patch_file, GIT_TIMEOUT)
        if result.status == apply_mod.CONFLICTED:
            where = series.source / patch.name if series.source.is_dir() else series.source
            files = ", ".join(result.hunks or result.files) or "git named no file"
            tail = "\n".join(result.output.strip().splitlines()[-20:])
            raise StageFailed(
                f"{side.label}: patch {patch.index}/{len(series.patches)} ({where}: "
                f"{patch.subject}) does not apply to {side.tree.spec} ({side.tree.version}): "
                f"{files}", details=tail)
        if result.status == apply_mod.APPLIED_3WAY:
            log(f"  {side.label}: patch {patch.index} applied with a 3-way merge: "
                f"{patch.subject}")
    side.tip = git(scratch, "rev-parse", "HEAD", timeout=GIT_TIMEOUT,
                   what=f"reading tip {side.label}").strip()


def _one_sided(scratch: Path, a: Side, b: Side) -> str:
    """What git range-diff would print when one range is empty (it refuses to run)."""
    lines = []
    for side in (a, b):
        log = git(scratch, "log", "--reverse", "--no-abbrev-commit", "--format=%H %s",
                  f"{side.base}..{side.tip}", timeout=GIT_TIMEOUT,
                  what=f"listing the commits of {side.label}")
        for number, entry in enumerate(filter(None, log.splitlines()), start=1):
            sha, _, subject = entry.partition(" ")
            here, dash = f"{number}:  {sha[:7]}", "-:  -------"
            lines.append(f"{here} < {dash} {subject}" if side is a
                         else f"{dash} > {here} {subject}")
    return "".join(line + "\n" for line in lines)


def port_diff(series_a: series_mod.Series, tree_a: Tree, series_b: series_mod.Series,
              tree_b: Tree, cache: Cache, log: Logger,
              creation_factor: int | None = None) -> PortDiff:
    """Range-diff of series A on tree A against series B on tree B (see the module doc);
    `creation_factor`: git range-diff's (default 60; higher pairs patches that changed more
    instead of showing them as dropped and added)."""
    start = time.monotonic()
    a = Side("A", series_a, tree_a, touched_files(series_a.patches))
    b = Side("B", series_b, tree_b, touched_files(series_b.patches))
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=cache.dir("port-diff")))
    try:
        git(scratch, "init", "--quiet", str(scratch), timeout=GIT_TIMEOUT,
            what="making the scratch repository")
        alternates = dict.fromkeys(str(_objects_dir(t.repo)) for t in (tree_a, tree_b))
        (scratch / ".git" / "objects" / "info" / "alternates").write_text(
            "".join(f"{path}\n" for path in alternates))
        with tempfile.TemporaryDirectory(prefix="pipeline-port-diff-") as tmp:
            for side in (a, b):
                side.base = _base_commit(scratch, side)
                _apply(scratch, side, Path(tmp), log)
        if a.base != a.tip and b.base != b.tip:
            factor = [] if creation_factor is None else [
                f"--creation-factor={creation_factor}"]
            output = git(scratch, "range-diff", "--no-color", *factor, f"{a.base}..{a.tip}",
                         f"{b.base}..{b.tip}", timeout=GIT_TIMEOUT,
                         what="comparing the two series (git range-diff)")
        else:       # git range-diff refuses an empty range: every commit is one-sided
            output = _one_sided(scratch, a, b)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    try:
        pairs = parse_range_diff(output)
    except ValueError as exc:
        raise StageFailed(f"git range-diff: {exc}", details=output[:4000]) from None
    return PortDiff(a, b, pairs, output, time.monotonic() - start)


# --- which series and which tree --------------------------------------------------------------

def debian_versions(root: Path = DEBIAN_SOURCES) -> list[str]:
    """MAJOR.MINOR of every installed Debian linux-source tarball, oldest first."""
    found = []
    for path in root.glob("linux-source-*.tar.xz"):
        version = path.name.removeprefix("linux-source-").removesuffix(".tar.xz")
        if re.fullmatch(r"\d+\.\d+", version):
            found.append(version)
    return sorted(found, key=version_tuple)


def default_tree(base: list[str], root: Path = DEBIAN_SOURCES) -> str | None:
    """`debian:X.Y` for a series based on X.Y (or X.Y.Z), else the installed Debian tree
    closest to its first base (same major first, then the nearest minor, the newer on a
    tie); None without a base or without any Debian tree."""
    available = debian_versions(root)
    wanted = [version_tuple(b)[:2] for b in base if len(version_tuple(b)) >= 2]
    if not available or not wanted:
        return None
    for major_minor in wanted:
        for version in available:
            if version_tuple(version) == major_minor:
                return f"debian:{version}"
    major, minor = wanted[0]

    def distance(version: str) -> tuple[int, int, int]:
        v_major, v_minor = version_tuple(version)[:2]
        return (abs(v_major - major), abs(v_minor - minor), -v_minor)
    return f"debian:{min(available, key=distance)}"


@dataclass
class _Wanted:
    """A side before its tree is known: a loaded series, or variants to pick from."""

    label: str
    spec: str
    series: series_mod.Series | None = None
    choice: series_mod.SeriesChoice | None = None
    tree: str | None = None
    why: str = ""                   # where the tree came from, for the log


def load_spec(spec: str, label: str) -> _Wanted:
    """A normalised series spec (name or absolute path) of side `label`."""
    path = Path(spec)
    if path.is_absolute() and path.is_dir() and not (path / "series.yaml").is_file() \
            and not any(path.glob("*/series.yaml")):
        if not any(path.glob("*.patch")):
            raise BadInput(f"{label}: {path}: no series.yaml and no NNNN-*.patch files: "
                           "not a series")
        return _Wanted(label, spec, series=series_mod.load_patch_folder(path))
    choice = series_mod.locate(spec, PROJECT_ROOT)
    if len(choice.candidates) == 1:
        only = choice.candidates[0]
        loaded = series_mod.load_mbox(only) if only.is_file() else series_mod.load_folder(only)
        return _Wanted(label, spec, series=loaded)
    return _Wanted(label, spec, choice=choice)


def _choose_trees(sides: list[_Wanted], log: Logger) -> None:
    for side in sides:
        if side.tree is None and side.series is not None and side.series.base:
            side.tree = default_tree(side.series.base)
            side.why = f"series.yaml base {', '.join(side.series.base)}"
    for side in sides:
        if side.tree is None:
            other = next(s for s in sides if s is not side)
            if other.tree is not None:
                side.tree, side.why = other.tree, f"the tree of {other.label}"
    for side in sides:
        flag = f"--tree-{side.label.lower()}"
        if side.tree is None:
            if side.choice is not None:
                names = ", ".join(str(c.relative_to(PROJECT_ROOT) if c.is_relative_to(
                    PROJECT_ROOT) else c) for c in side.choice.candidates)
                raise BadInput(f"{side.label}: series {side.spec!r} has variants ({names}): "
                               f"name one, or give {flag} to pick it by the tree's version")
            base = ", ".join(side.series.base) if side.series else ""
            raise BadInput(f"{side.label}: no tree for {side.spec}"
                           + (f" (base {base}, and no /usr/src/linux-source-*.tar.xz)"
                              if base else " (no base: an mbox or plain patch folder)")
                           + f": give {flag}, e.g. {flag} debian:6.1")
        if side.why:
            log(f"{side.label}: tree {side.tree} ({side.why}; {flag} to change it)")


def run_port_diff(spec_a: str, spec_b: str, out: Path, log: Logger, *,
                  tree_a: str | None = None, tree_b: str | None = None,
                  cache_dir: Path | None = None, creation_factor: int | None = None) -> int:
    start = time.monotonic()
    sides = [load_spec(spec_a, "A"), load_spec(spec_b, "B")]
    sides[0].tree, sides[1].tree = tree_a, tree_b
    _choose_trees(sides, log)
    cache = Cache(cache_dir or default_cache_root())
    trees: dict[str, Tree] = {}
    picked: list[tuple[series_mod.Series, str]] = []     # each side's series and tree spec
    for side in sides:
        tree = side.tree
        assert tree is not None             # _choose_trees raised BadInput otherwise
        if tree not in trees:
            trees[tree] = prepare_tree(tree, cache, log)
        if side.series is None:
            assert side.choice is not None  # load_spec gives a series or a choice
            side.series = series_mod.pick(side.choice, trees[tree].version)
        picked.append((side.series, tree))
    (sa, ta), (sb, tb) = picked
    log(f"port-diff A: {sa.name} ({sa.source}, {len(sa.patches)} patches) "
        f"on {ta}; B: {sb.name} ({sb.source}, {len(sb.patches)} "
        f"patches) on {tb}")
    diff = port_diff(sa, trees[ta], sb, trees[tb], cache, log, creation_factor)
    out.mkdir(parents=True, exist_ok=True)
    (out / "port-diff.md").write_text(markdown(diff))
    for pair in diff.pairs:
        log("  " + summary_line(pair))
    tally = counts(diff.pairs)
    log(f"port-diff: {len(diff.pairs)} pairs: {tally[SAME]} unchanged (=), {tally[CHANGED]} "
        f"changed (!), {tally[ONLY_A]} only in A (<), {tally[ONLY_B]} only in B (>); wrote "
        f"{out / 'port-diff.md'} ({fmt_duration(time.monotonic() - start)})")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("port-diff", help="how two versions of a series differ, per patch "
                                         "(git range-diff); OUT/port-diff.md",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", metavar="A", help="series folder, name under patches/, patch folder "
                                          "or mbox (the old version)")
    p.add_argument("b", metavar="B", help="the same for the new version")
    for label in ("a", "b"):
        p.add_argument(f"--tree-{label}", metavar="TREE",
                       help=f"tree of {label.upper()}: debian:6.12 | TARBALL | URL | "
                            "GIT_CHECKOUT[@REV] (default: from its series.yaml base, "
                            "else the other side's)")
    p.add_argument("--creation-factor", type=int, metavar="N",
                   help="git range-diff's creation factor (default 60): raise it when a patch "
                        "that changed a lot shows as dropped (<) and added (>)")
    p.add_argument("--out", default="out", metavar="DIR", help="output folder (default: out/)")
    p.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="cache folder (default: $KERNEL_PIPELINE_CACHE or ~/.cache/kernel-pipeline)")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace, log: Logger) -> int:

    cwd = Path.cwd()
    specs: list[str] = []
    trees: list[str | None] = []
    for label, spec, tree in (("A", args.a, args.tree_a), ("B", args.b, args.tree_b)):
        try:
            series = normalize_series_spec(spec, cwd)
            trees.append(normalize_tree_spec(tree, cwd) if tree else None)
        except ValueError as exc:
            raise BadInput(f"{label}: {exc}") from None
        if series is None:
            raise BadInput(f"{label}: 'none' is no series to compare")
        specs.append(series)
    if args.creation_factor is not None and not 0 <= args.creation_factor <= 10000:
        raise BadInput(f"--creation-factor {args.creation_factor}: expected 0..10000")
    out = (cwd / args.out).resolve()
    check_writable_dir(out, "--out")
    return run_port_diff(specs[0], specs[1], out, log, tree_a=trees[0], tree_b=trees[1],
                         cache_dir=args.cache_dir.resolve() if args.cache_dir else None,
                         creation_factor=args.creation_factor)
