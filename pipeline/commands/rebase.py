"""`pipeline rebase --series S --onto TREE`: try a series on another tree and report each patch.

Each patch goes through `git am --3way` in a worktree the pipeline owns: clean, applied with a
3-way merge, or conflicted (files and hunks). A conflicted patch is skipped and the next ones
are still tried, so one report shows every patch that needs work. When the tree has history,
the upstream commits that touched the conflicting lines (`git log -L`, since `--since REV`
when given, e.g. the series' base tag) are listed. Unless `--old-tree none`, rebase.md also
has the `git range-diff` of the series on its own tree (`--old-tree`, default: the Debian tree
its series.yaml is based on) against the rebased result, as `pipeline port-diff` shows it;
when that cannot be made (no such tree, the series does not apply there) rebase.md says why
and the exit code does not change. Writes OUT/rebase.md and OUT/junit.xml.
Exit 0 every patch applied (clean or 3-way), 3 a patch conflicted, 2 bad input.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import apply as apply_mod
from .. import series as series_mod
from ..cache import Cache, default_cache_root, short_hash
from ..diffs import hunk_header
from ..errors import BadInput, PipelineError
from ..git import git, git_run
from ..job import PROJECT_ROOT, normalize_series_spec, normalize_tree_spec
from ..junit import write_junit
from ..log import Logger, fmt_duration
from ..results import FAILED, PASSED, SKIPPED, Case, RunReport, Stage, VariantReport
from ..tree import Tree, prepare_tree
from . import portdiff

CLEAN, THREE_WAY, CONFLICT = "clean", "3-way", "conflicted"


@dataclass
class PatchReport:
    index: int
    subject: str
    status: str                      # clean | 3-way | conflicted
    files: list[str] = field(default_factory=list)
    hunks: list[str] = field(default_factory=list)
    upstream: dict[str, list[str]] = field(default_factory=dict)   # hunk -> commits
    output: str = ""
    duration: float = 0.0


def hunk_ranges(patch_text: str) -> dict[str, list[tuple[int, int]]]:
    """{file: [(old start, old count)]} of a patch's hunks."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    current = ""
    for line in patch_text.splitlines():
        if line.startswith("--- "):
            name = line[4:].split("\t")[0]
            current = name.removeprefix("a/")
        elif (hunk := hunk_header(line)) and current:
            ranges.setdefault(current, []).append((hunk.old_start, hunk.old_len))
    return ranges


def upstream_commits(repo: Path, head: str, file: str, start: int, count: int,
                     since: str | None, limit: int = 5) -> list[str]:
    """Commits up to `head` that changed lines start..start+count of `file` (newest first)."""
    span = f"{since}..{head}" if since else head
    lo, hi = max(1, start), max(1, start) + max(count, 1) - 1
    done = git_run(repo, "log", "--no-patch", f"--max-count={limit}", "--date=short",
                   "--format=%h %ad %an: %s", f"-L{lo},{hi}:{file}", span, timeout=300)
    if done.returncode != 0:          # e.g. the range is past the end of the file now
        done = git_run(repo, "log", f"--max-count={limit}", "--date=short",
                       "--format=%h %ad %an: %s", span, "--", file, timeout=300)
    return [line for line in done.output.splitlines() if line.strip()] \
        if done.returncode == 0 else []


def _has_history(repo: Path) -> bool:
    done = git_run(repo, "rev-list", "--count", "HEAD", timeout=120)
    return done.returncode == 0 and done.output.strip().isdigit() and int(done.output) > 1


def _load_series(spec: str, version: str) -> series_mod.Series:
    choice = series_mod.locate(spec, PROJECT_ROOT)
    if len(choice.candidates) == 1:
        only = choice.candidates[0]
        return series_mod.load_mbox(only) if only.is_file() else series_mod.load_folder(only)
    try:
        return series_mod.pick(choice, version)
    except BadInput as exc:
        raise BadInput(f"{exc.message}; name the variant to rebase, e.g. --series "
                       f"{choice.candidates[0]}") from None


def rebase_report(series_spec: str, tree_spec: str, out: Path, log: Logger, *,
                  cache_dir: Path | None = None, since: str | None = None,
                  old_tree: str | None = None) -> int:
    """`old_tree`: the tree the series is compared on (`auto`: from its series.yaml base),
    None: no range-diff section."""
    start = time.monotonic()
    cache = Cache(cache_dir or default_cache_root())
    tree = prepare_tree(tree_spec, cache, log)
    series = _load_series(series_spec, tree.version)
    log(f"rebase {series.name} ({len(series.patches)} patches, base "
        f"{', '.join(series.base) or '?'}) onto {tree.spec} ({tree.version})")
    key = f"{tree.key}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', series.name)}-rebase"
    worktree = cache.dir("worktrees") / key
    branch = f"pipeline/rebase-{short_hash(series.hash, tree.commit, length=12)}"
    history = _has_history(tree.repo)
    if since:
        check = git_run(tree.repo, "rev-parse", "--verify", "--quiet", f"{since}^{{commit}}",
                        timeout=60)
        if check.returncode != 0:
            raise BadInput(f"--since {since}: no such commit in {tree.spec}")
    reports: list[PatchReport] = []
    with cache.lock(f"worktree-{key}", f"worktree {worktree}", log), \
            tempfile.TemporaryDirectory(prefix="pipeline-rebase-") as tmp:
        apply_mod.reset_worktree(tree.repo, worktree, branch, tree.commit, log)
        for patch in series.patches:
            patch_file = Path(tmp) / f"{patch.index:04d}.patch"
            patch_file.write_text(patch.text)
            result = apply_mod.apply_one(worktree, patch, patch_file, 600)
            status = {apply_mod.APPLIED: CLEAN, apply_mod.APPLIED_3WAY: THREE_WAY}.get(
                result.status, CONFLICT)
            report = PatchReport(patch.index, patch.subject, status, result.files,
                                 result.hunks, output=result.output, duration=result.duration)
            if status == CONFLICT and history:
                ranges = hunk_ranges(patch.text)
                for name in result.files:
                    for hunk_start, count in ranges.get(name, [])[:10]:
                        commits = upstream_commits(worktree, tree.commit, name, hunk_start,
                                                   count, since)
                        if commits:
                            report.upstream[f"{name}:{hunk_start},{count}"] = commits
            reports.append(report)
            log(f"  [{patch.index}/{len(series.patches)}] {status}: {patch.subject}"
                + (f" ({', '.join(result.files)})" if result.files else ""))
        range_diff = None if old_tree is None else _range_diff(
            series, old_tree, tree, worktree, reports, cache, log)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rebase.md").write_text(markdown(series, tree.spec, tree.version, reports, history,
                                            since, range_diff))
    write_junit(RunReport([_variant(series, tree.spec, reports)],
                          duration=time.monotonic() - start), out / "junit.xml")
    code = 3 if any(r.status == CONFLICT for r in reports) else 0
    counts = {s: sum(r.status == s for r in reports) for s in (CLEAN, THREE_WAY, CONFLICT)}
    log(f"rebase: {counts[CLEAN]} clean, {counts[THREE_WAY]} 3-way, {counts[CONFLICT]} "
        f"conflicted; wrote {out / 'rebase.md'} and junit.xml; exit {code} "
        f"({fmt_duration(time.monotonic() - start)})")
    return code


def _variant(series: series_mod.Series, tree: str, reports: list[PatchReport]) -> VariantReport:
    stage = Stage("apply")
    for r in reports:
        case = Case(f"{r.index:04d} {r.subject}", PASSED, r.duration, message=r.status,
                    stdout=r.output)
        if r.status == CONFLICT:
            case.status = FAILED
            case.message = apply_mod.conflict_message(f"{r.index:04d}", r.files)
            case.details = "\n".join(["hunks: " + ", ".join(r.hunks)] + [
                f"{hunk} touched upstream by:\n  " + "\n  ".join(commits)
                for hunk, commits in r.upstream.items()])
        stage.cases.append(case)
    if not stage.cases:
        stage.cases.append(Case("no patches", SKIPPED))
    return VariantReport("rebase", {"tree": tree, "series": series.name}, [stage])


def _range_diff(series: series_mod.Series, old_tree: str, tree: Tree, worktree: Path,
                reports: list[PatchReport], cache: Cache, log: Logger) -> list[str]:
    """Markdown lines: the range-diff of the series on `old_tree` against the commits the
    rebase made in `worktree` (a conflicted patch made none: it shows as `<`), or why there
    is none."""
    lines = ["", "## Range-diff: the series on its own tree against the rebased result", ""]
    spec = portdiff.default_tree(series.base) if old_tree == "auto" else old_tree
    if spec is None:
        base = ", ".join(series.base) or "unknown"
        return lines + [(f"Left out: no tree for the series (base {base}, no Debian tree "
                         "installed); give --old-tree.")]
    try:
        old = prepare_tree(spec, cache, log)
        mbox = git(worktree, "format-patch", "--stdout", "--no-signature",
                   f"{tree.commit}..HEAD", timeout=600, what="writing the rebased series")
        applied = [r for r in reports if r.status != CONFLICT]
        texts = [t for t in series_mod.split_mbox(mbox) if t.strip()]
        patches = [series_mod.Patch(i, series.patches[r.index - 1].name, r.subject, text)
                   for i, (r, text) in enumerate(zip(applied, texts), start=1)]
        rebased = series_mod.Series(f"{series.name} rebased", [tree.version], worktree,
                                    patches)
        diff = portdiff.port_diff(series, old, rebased, tree, cache, log)
    except PipelineError as exc:
        log(f"  range-diff left out: {exc.message}")
        return lines + [f"Left out: {exc.message}"]
    tally = portdiff.counts(diff.pairs)
    log(f"  range-diff against {old.spec}: {tally[portdiff.SAME]} unchanged, "
        f"{tally[portdiff.CHANGED]} changed, {tally[portdiff.ONLY_A]} not rebased")
    lines += [(f"A: the series on {old.spec} ({old.version}); B: the rebased result on "
               f"{tree.spec} ({tree.version}), with `git range-diff` as `pipeline port-diff` "
               f"makes it: {tally[portdiff.SAME]} unchanged (`=`), {tally[portdiff.CHANGED]} "
               f"changed (`!`), {tally[portdiff.ONLY_A]} only in A (`<`: not rebased), "
               f"{tally[portdiff.ONLY_B]} only in B (`>`). In a changed pair `-` lines are "
               "the old version, `+` the rebased one."), ""]
    return lines + portdiff.pair_sections(diff.pairs, series, rebased, level="###")


def markdown(series: series_mod.Series, tree: str, version: str, reports: list[PatchReport],
             history: bool, since: str | None, range_diff: list[str] | None = None) -> str:
    lines = [f"# Rebase of {series.name} onto {tree} ({version})", "",
             (f"Series: {series.source} (base {', '.join(series.base) or 'unknown'}), "
             f"{len(reports)} patches, applied one by one with `git am --3way`; a conflicted "
             "patch is skipped and the next ones are still tried."), "",
             "| # | patch | result | files |", "|---|---|---|---|"]
    for r in reports:
        subject = r.subject.replace("|", "\\|")
        lines.append(f"| {r.index} | {subject} | {r.status} | {', '.join(r.files)} |")
    for r in reports:
        if r.status != CONFLICT:
            continue
        lines += ["", f"## {r.index}: {r.subject}", "",
                  f"Conflicting files: {', '.join(r.files) or 'unknown'}", ""]
        lines += [f"- hunk `{h}`" for h in r.hunks] or ["- (git did not name the hunks)"]
        if r.upstream:
            lines += ["", "Upstream commits that touched these lines"
                      + (f" since {since}:" if since else ":")]
            for hunk, commits in r.upstream.items():
                lines.append(f"- `{hunk}`")
                lines += [f"  - {c}" for c in commits]
        elif not history:
            lines += ["", ("The tree has no history (one baseline commit): no upstream "
                      "commits to show.")]
        tail = "\n".join(r.output.strip().splitlines()[-15:])
        lines += ["", "```", tail, "```"]
    lines += range_diff or []
    return "\n".join(lines) + "\n"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rebase", help="try a series on another tree; Markdown + JUnit report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", required=True, metavar="SPEC",
                   help="series folder, mbox, or name (with one variant, or the one matching "
                        "the tree)")
    p.add_argument("--onto", required=True, metavar="TREE",
                   help="debian:6.12 | TARBALL | URL | GIT_CHECKOUT[@REV]")
    p.add_argument("--since", metavar="REV",
                   help="list upstream commits after REV only (e.g. the series' base tag)")
    p.add_argument("--old-tree", default="auto", metavar="TREE",
                   help="tree the series is based on, for the range-diff against the rebased "
                        "result in rebase.md (default auto: from series.yaml's base; none: "
                        "leave it out)")
    p.add_argument("--out", default="out", metavar="DIR", help="output folder (default: out/)")
    p.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="cache folder (default: $KERNEL_PIPELINE_CACHE or ~/.cache/kernel-pipeline)")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace, log: Logger) -> int:
    cwd = Path.cwd()
    try:
        tree = normalize_tree_spec(args.onto, cwd)
        series = normalize_series_spec(args.series, cwd)
        old_tree = args.old_tree if args.old_tree in ("auto", "none") else \
            normalize_tree_spec(args.old_tree, cwd)
    except ValueError as exc:
        raise BadInput(f"--onto/--series/--old-tree: {exc}") from None
    if series is None:
        raise BadInput("--series none: nothing to rebase")
    return rebase_report(series, tree, (cwd / args.out).resolve(), log,
                         cache_dir=args.cache_dir.resolve() if args.cache_dir else None,
                         since=args.since, old_tree=None if old_tree == "none" else old_tree)
