"""Apply a series with `git am --3way`, one patch at a time, in a worktree the pipeline owns.

The worktree and its branch (`pipeline/<series>-<hash>`) live in the cache's copy of the tree,
never in a user's checkout. There is one worktree per tree and series name: a finished result is
stored as JSON beside it, and a later run with the same series content reuses the worktree when
its HEAD is still the recorded one. A changed series resets the same worktree to the baseline
and applies again, so only the files the patches touch get new mtimes and make rebuilds only
what changed. The caller holds the worktree's lock (`worktree_key`) while it applies and builds.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .cache import Cache, short_hash
from .context import VariantContext
from .errors import StageFailed
from .git import git, git_run
from .log import Logger
from .names import slug
from .results import FAILED, PASSED, SKIPPED, Case
from .series import Patch, Series
from .tree import Tree

APPLIED, APPLIED_3WAY, CONFLICTED, NOT_APPLIED = (
    "applied", "applied-3way", "conflicted", "not-applied")


@dataclass
class PatchResult:
    index: int
    name: str
    subject: str
    status: str                                   # applied | applied-3way | conflicted | not-applied
    files: list[str] = field(default_factory=list)   # conflicting files
    hunks: list[str] = field(default_factory=list)   # "file:line" of failed hunks / conflicts
    output: str = ""                                  # git am output
    duration: float = 0.0


@dataclass
class ApplyResult:
    series: str
    series_hash: str
    branch: str
    worktree: Path
    head: str
    patches: list[PatchResult]
    reused: bool = False
    rerun: list[str] = field(default_factory=list)  # command that reproduces the failure

    @property
    def ok(self) -> bool:
        return all(p.status in (APPLIED, APPLIED_3WAY) for p in self.patches)

    @property
    def failed(self) -> PatchResult | None:
        return next((p for p in self.patches if p.status == CONFLICTED), None)


def worktree_key(tree: Tree, series: Series) -> str:
    """Cache name of the worktree: tree entry + series name."""
    return f"{tree.key}-{slug(series.name, 'series')}"


def branch_name(tree: Tree, series: Series) -> str:
    return (f"pipeline/{slug(series.name, 'series')}-"
            f"{short_hash(series.hash, tree.commit, length=12)}")


def parse_am_output(output: str) -> tuple[list[str], list[str]]:
    """(files, hunks) named by a failed `git am --3way`."""
    files: list[str] = []
    hunks: list[str] = []

    def add(items: list[str], item: str) -> None:
        if item and item not in items:
            items.append(item)

    for line in output.splitlines():
        if m := re.match(r"^error: patch failed: (.+):(\d+)$", line):
            add(files, m.group(1))
            add(hunks, f"{m.group(1)}:{m.group(2)}")
        elif (m := re.match(r"^CONFLICT \([^)]*\): .*?(?:Merge conflict in|in) (\S+)", line)) \
                or (m := re.match(r"^error: (.+?): (?:does not exist in index|patch does not "
                                  r"apply|already exists in (?:index|working directory))$", line)) \
                or (m := re.match(r"^error: sha1 information is lacking or useless \((.+)\)\.$",
                                  line)):
            add(files, m.group(1))
    return files, hunks


def _conflict_markers(worktree: Path, files: list[str]) -> list[str]:
    hunks = []
    for name in files:
        try:
            lines = (worktree / name).read_text(errors="replace").splitlines()
        except OSError:
            continue
        hunks += [f"{name}:{n} (conflict)" for n, text in enumerate(lines, 1)
                  if text.startswith("<<<<<<< ")]
    return hunks


def apply_one(worktree: Path, patch: Patch, patch_file: Path, timeout: float) -> PatchResult:
    """`git am --3way` of one patch file; on a conflict the am is aborted and the result
    names the files and hunks (also used patch by patch by check-series, rebase, port-diff)."""
    start = time.monotonic()
    done = git_run(worktree, "am", "--3way", str(patch_file), timeout=timeout)
    result = PatchResult(patch.index, patch.name, patch.subject, APPLIED, output=done.output)
    if done.returncode == 0 and not done.timed_out:
        if "Falling back to patching base and 3-way merge" in done.output:
            result.status = APPLIED_3WAY
    else:
        result.status = CONFLICTED
        if "could not build fake ancestor" in done.output:
            # The patch's blob ids are not in this repository (another tree), so git am had
            # no base for a 3-way merge and named no hunk: ask git apply which hunks fail.
            check = git_run(worktree, "apply", "--check", "--verbose", str(patch_file),
                            timeout=timeout)
            result.output += "\n$ git apply --check --verbose\n" + check.output
        files, hunks = parse_am_output(result.output)
        unmerged = git_run(worktree, "diff", "--name-only", "--diff-filter=U", timeout=120)
        for name in unmerged.output.split():
            if name not in files:
                files.append(name)
        result.files = files
        result.hunks = hunks + _conflict_markers(worktree, unmerged.output.split())
        if done.timed_out:
            result.output += f"\n(git am timed out after {timeout:.0f}s)"
        git_run(worktree, "am", "--abort", timeout=300)
    result.duration = time.monotonic() - start
    return result


def _load_reusable(worktree: Path, record: Path, base: str,
                   series_hash: str) -> ApplyResult | None:
    """The stored result when the worktree is still exactly what it recorded."""
    if not record.is_file() or not worktree.is_dir():
        return None
    try:
        data = json.loads(record.read_text())
        head = git(worktree, "rev-parse", "HEAD", timeout=60).strip()
        busy = git(worktree, "rev-parse", "--git-path", "rebase-apply", timeout=60).strip()
    except (ValueError, StageFailed):
        return None
    if data.get("head") != head or data.get("base") != base or (worktree / busy).exists() \
            or data.get("series_hash") != series_hash:
        return None
    if git_run(worktree, "status", "--porcelain", "--untracked-files=no",
               timeout=300).output.strip():
        return None
    patches = [PatchResult(**p) for p in data["patches"]]
    return ApplyResult(data["series"], data["series_hash"], data["branch"], worktree, head,
                       patches, reused=True)


def reset_worktree(repo: Path, worktree: Path, branch: str, base: str, log: Logger) -> None:
    """Put the worktree on a new `branch` at `base`: reuse an existing worktree (a checkout
    rewrites only the files that differ, keeping the other mtimes) or make a new one."""
    if worktree.is_dir() and git_run(worktree, "rev-parse", "--git-dir",
                                     timeout=60).returncode == 0:
        busy = git(worktree, "rev-parse", "--git-path", "rebase-apply", timeout=60).strip()
        if (worktree / busy).exists():
            git_run(worktree, "am", "--abort", timeout=300)
        old = git_run(worktree, "symbolic-ref", "--quiet", "--short", "HEAD",
                      timeout=60).output.strip()
        done = git_run(worktree, "checkout", "--quiet", "--force", "-B", branch, base, timeout=1800)
        if done.returncode == 0:
            if old.startswith("pipeline/") and old != branch:
                git_run(worktree, "branch", "-D", old, timeout=60)
            log(f"  worktree {worktree} reset to the baseline on branch {branch}")
            return
        log(f"  cannot reuse worktree {worktree}: {done.output.strip()}")
    if worktree.exists():
        log(f"  removing stale worktree {worktree}")
        git_run(repo, "worktree", "remove", "--force", "--force", str(worktree), timeout=600)
        shutil.rmtree(worktree, ignore_errors=True)
    git_run(repo, "worktree", "prune", timeout=120)
    log(f"  new worktree {worktree} on branch {branch} (in {repo})")
    git(repo, "worktree", "add", "--force", "-B", branch, str(worktree), base, timeout=1800)


def applied_already(tree: Tree, series: Series, cache: Cache) -> ApplyResult | None:
    """The recorded result when the series' worktree is still exactly what a successful
    apply left (read-only: takes no lock, changes nothing); None otherwise."""
    key = worktree_key(tree, series)
    worktree = cache.root / "worktrees" / key
    return _load_reusable(worktree, worktree.with_name(key + ".json"), tree.commit,
                          series.hash)


def apply_series(tree: Tree, series: Series, cache: Cache, log: Logger,
                 timeout: float = 600.0) -> ApplyResult:
    """Apply `series` on the tree's baseline commit; never raises for a conflict (see result)."""
    key = worktree_key(tree, series)
    worktree = cache.dir("worktrees") / key
    record = worktree.with_name(key + ".json")
    branch = branch_name(tree, series)
    reused = _load_reusable(worktree, record, tree.commit, series.hash)
    if reused is not None:
        log(f"  reusing {worktree} (HEAD {reused.head[:12]}, {len(reused.patches)} patches)")
        return reused
    record.unlink(missing_ok=True)
    reset_worktree(tree.repo, worktree, branch, tree.commit, log)
    results: list[PatchResult] = []
    rerun: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pipeline-patches-") as tmp:
        for patch in series.patches:
            if results and results[-1].status == CONFLICTED:
                results.append(PatchResult(patch.index, patch.name, patch.subject, NOT_APPLIED))
                continue
            patch_file = Path(tmp) / f"{patch.index:04d}.patch"
            patch_file.write_text(patch.text)
            result = apply_one(worktree, patch, patch_file, timeout)
            results.append(result)
            log(f"  [{patch.index}/{len(series.patches)}] {result.status}: {patch.subject}")
            if result.status == CONFLICTED:
                source = series.source / patch.name if series.source.is_dir() else series.source
                rerun = ["git", "-C", str(worktree), "am", "--3way", str(source)]
    head = git(worktree, "rev-parse", "HEAD", timeout=60).strip()
    applied = ApplyResult(series.name, series.hash, branch, worktree, head, results, rerun=rerun)
    if applied.ok:
        data = {"series": series.name, "series_hash": series.hash, "branch": branch,
                "base": tree.commit, "head": head, "patches": [asdict(p) for p in results]}
        tmp_record = record.with_name(record.name + ".tmp")
        tmp_record.write_text(json.dumps(data, indent=1))
        tmp_record.replace(record)
    return applied


def conflict_message(patch: str, files: list[str]) -> str:
    """The one-line reason of a patch that does not apply (apply stage, check-series,
    rebase)."""
    return f"patch {patch} does not apply; conflicts in {', '.join(files) or 'unknown files'}"


def apply_stage(ctx: VariantContext) -> list[Case]:
    """The apply stage: the series on the tree's baseline, a case per patch; makes `src`
    (the worktree) when every patch applied."""
    assert ctx.series is not None
    result = apply_series(ctx.tree, ctx.series, ctx.cache, ctx.log)
    cases = []
    for p in result.patches:
        case = Case(f"{p.index:04d} {p.subject}", PASSED, p.duration, stdout=p.output)
        if p.status == APPLIED_3WAY:
            case.message = "applied with 3-way merge"
        elif p.status == CONFLICTED:
            case.status = FAILED
            case.message = conflict_message(p.name, p.files)
            case.details = ("hunks: " + ", ".join(p.hunks) + "\n\n" + p.output).strip()
        elif p.status == NOT_APPLIED:
            case.status = SKIPPED
            case.message = "not applied: an earlier patch conflicted"
        cases.append(case)
    ctx.report.properties["series_branch"] = result.branch
    ctx.report.properties["series_head"] = result.head
    if result.ok:
        ctx.src = result.worktree
    elif result.rerun:
        ctx.log.rerun(result.rerun)
    return cases
