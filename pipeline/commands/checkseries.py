"""`pipeline check-series`: apply a series one patch at a time and build after each (catches a
series that breaks the build in the middle: every commit must build for `git bisect`), and run
the tree's scripts/checkpatch.pl on each patch.

Work happens in a worktree and an incremental build folder the pipeline owns (never the user's
checkout); builds use the pipeline's ccache. JUnit: suite `check-series.build` with the baseline
and one testcase per patch, suite `check-series.checkpatch` with one testcase per patch.
A build that prints a compiler warning no earlier build of the check printed (keyed by file
and message, not line) fails that patch's testcase: the series must add no new warnings.
With --guest-tests the kernel of every prefix that built is booted and the job's guest tests
run in it, through the boot and guest stages of `pipeline run` (suites prefix-NNNN.boot and
prefix-NNNN.guest, prefix-0000 being the tree without the series), so a test that patch 1
alone breaks is a failed case of prefix-0001; suite `check-series.guest-changes` lists the
tests whose verdict changes between consecutive prefixes (a pass turning into a failure fails).
Exit 0 all good, 1 only checkpatch complained or a guest test failed, 3 a patch did not apply,
did not build or added a warning (or the tree does not build without the series), or a prefix
did not boot, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .. import apply as apply_mod
from .. import build as build_mod
from .. import kconfig, proc
from .. import series as series_mod
from ..boot import BootBackend, QemuBoot
from ..cache import Cache, default_cache_root, short_hash
from ..context import RunContext
from ..errors import BadInput
from ..job import ACCELS, PROJECT_ROOT, Job, Overrides, Variant, apply_overrides, load_job
from ..junit import write_junit
from ..log import Logger, as_log, fmt_duration
from ..preflight import check_before_work
from ..results import ERROR, FAILED, PASSED, SKIPPED, Case, RunReport, Stage, VariantReport
from ..tree import Tree, prepare_tree
from . import prefixes

_TOTAL = re.compile(r"^total: (\d+) errors, (\d+) warnings(?:, (\d+) checks)?", re.MULTILINE)
_FINDING = re.compile(r"^(ERROR|WARNING|CHECK):", re.MULTILINE)
CHECKPATCH_TIMEOUT = 300.0


@dataclass(frozen=True)
class CheckpatchResult:
    errors: int
    warnings: int
    checks: int
    output: str
    ran: bool = True


def run_checkpatch(src: Path, patch_file: Path, timeout: float = CHECKPATCH_TIMEOUT
                   ) -> CheckpatchResult:
    """The tree's own checkpatch.pl on one patch file (not ran when the tree has none)."""
    script = src / "scripts" / "checkpatch.pl"
    if not script.is_file():
        return CheckpatchResult(0, 0, 0, f"{script} not found", ran=False)
    cmd = ["perl", str(script), f"--root={src}", "--color=never", "--show-types",
           str(patch_file)]
    done = proc.run(cmd, cwd=src, timeout=timeout)
    match = _TOTAL.search(done.output)
    if done.timed_out or match is None:
        why = f"timed out after {timeout:.0f}s" if done.timed_out else "no 'total:' line"
        return CheckpatchResult(1, 0, 0, f"checkpatch.pl failed ({why}):\n{done.output}")
    return CheckpatchResult(int(match.group(1)), int(match.group(2)),
                            int(match.group(3) or 0), done.output)


def _checkpatch_case(patch: series_mod.Patch, result: CheckpatchResult, strict: bool) -> Case:
    name = f"{patch.index:04d} {patch.subject}"
    if not result.ran:
        return Case(name, SKIPPED, message=f"checkpatch: {result.output}")
    counts = f"{result.errors} errors, {result.warnings} warnings, {result.checks} checks"
    bad = result.errors > 0 or (strict and result.warnings > 0)
    findings = [line for line in result.output.splitlines() if _FINDING.match(line)]
    return Case(name, FAILED if bad else PASSED, message=f"checkpatch: {counts}",
                details="\n".join(findings[:20]) if bad else "", stdout=result.output)


def _build_case(name: str, build: build_mod.BuildResult, notes: list[str],
                seen_warnings: dict[tuple[str, str], str]) -> Case:
    """The testcase of one build; a compiler warning that no earlier build of this check
    (the baseline included) printed fails it. `seen_warnings` is updated."""
    case = Case(name, PASSED, build.duration,
                message=f"built ({build.steps} compile/link steps)", stdout="\n".join(notes))
    warnings = build_mod.warning_keys(build.log_path.read_text(errors="replace")
                                      if build.log_path.is_file() else "")
    new = [line for key, line in warnings.items() if key not in seen_warnings]
    seen_warnings.update(warnings)
    if not build.ok:
        case.status = FAILED
        case.message = build.reason
        case.details = "\n".join(build.errors) + f"\n\nfull log: {build.log_path}"
    elif new:
        case.status = FAILED
        case.message = f"{len(new)} new compiler warning(s): {new[0]}"
        case.details = "\n".join(new) + f"\n\nfull log: {build.log_path}"
    return case


@dataclass
class Checker:
    job: Job
    tree: Tree
    series: series_mod.Series
    cache: Cache
    log: Logger
    worktree: Path
    build_dir: Path

    def build(self, label: str, log_name: str) -> tuple[build_mod.BuildResult, list[str]]:
        """Configure the worktree as it is now (a patch may add Kconfig options) and build it
        incrementally in the shared build folder."""
        out = self.job.out
        work = self.cache.dir("configs") / f"check-{self.build_dir.name}"
        config = kconfig.configure(self.worktree, work, self.job.base_config, self.job.kconfig,
                                   self.tree.version, self.log, out / "configure.log")
        notes = [m.describe() for m in config.missing]
        kconfig.install_config(config.config, self.build_dir)
        result = build_mod.build_kernel(self.worktree, self.build_dir, out / log_name,
                                        self.job.timeouts.build, self.log,
                                        ccache_dir=self.cache.root / "ccache")
        status = "ok" if result.ok else f"FAILED: {result.reason}"
        self.log(f"build {label}: {status} ({fmt_duration(result.duration)})")
        if not result.ok:
            self.log("\n".join(f"  {line}" for line in result.errors))
        return result, notes


def _load_series(job: Job, tree: Tree) -> series_mod.Series:
    if not job.series:
        raise BadInput("check-series needs a series (--series NAME|FOLDER|MBOX)")
    return series_mod.pick(series_mod.locate(job.series, PROJECT_ROOT), tree.version)


def check_series(job: Job, log: Logger, *, baseline: bool = True, checkpatch: bool = True,
                 strict: bool = False, build: bool = True, guest_tests: bool = False,
                 backend: BootBackend | None = None) -> int:
    """Run the check; writes OUT/junit.xml and OUT/check-series.json; returns the exit code.
    `guest_tests`: boot the kernel of every prefix that built and run the job's guest tests
    in it (the boot and guest stages of `pipeline run`, through `backend`, default QEMU)."""
    start = time.monotonic()
    cache = Cache(job.cache_dir or default_cache_root())
    run = RunContext(job, cache, as_log(log), RunReport(), backend or QemuBoot())
    booted: list[tuple[str, VariantReport]] = []
    variant = Variant("check-series")
    job.out.mkdir(parents=True, exist_ok=True)
    tree = prepare_tree(job.tree, cache, log, job.tree_sha256)
    series = _load_series(job, tree)
    log(f"check-series {series.name} ({len(series.patches)} patches) on {tree.spec} "
        f"({tree.version})")
    key = f"{apply_mod.worktree_key(tree, series)}-check"
    worktree = cache.dir("worktrees") / key
    branch = f"pipeline/check-{short_hash(series.hash, tree.commit, length=12)}"
    build_dir = cache.dir("builds") / f"check-{key}"
    vr = VariantReport("check-series", {"tree": tree.spec, "tree_version": tree.version,
                                        "series": series.name, "series_hash": series.short})
    builds, checks = Stage("build"), Stage("checkpatch")
    vr.stages += [builds, checks]
    stop = ""
    warnings: dict[tuple[str, str], str] = {}
    with cache.lock(f"worktree-{key}", f"worktree {worktree}", log), \
            cache.lock(f"build-{build_dir.name}", f"build folder {build_dir}", log), \
            tempfile.TemporaryDirectory(prefix="pipeline-check-") as tmp:
        apply_mod.reset_worktree(tree.repo, worktree, branch, tree.commit, log)
        checker = Checker(job, tree, series, cache, log, worktree, build_dir)
        def boot(index: int, label: str, result: build_mod.BuildResult) -> None:
            if not guest_tests:
                return
            if not result.ok or result.image is None:
                prefixes.not_booted(run, index, f"{label} did not build")
                return
            ctx = prefixes.boot_prefix(run, variant, tree, series if index else None, index,
                                       result.image, worktree, key)
            booted.append((label, ctx.report))

        if build and baseline:
            result, notes = checker.build("baseline", "build-0000-baseline.log")
            builds.cases.append(_build_case("0000 baseline (no patch)", result, notes,
                                            warnings))
            boot(0, "0000 baseline (no patch)", result)
            if not result.ok:
                stop = "the tree does not build without the series"
        for patch in series.patches:
            name = f"{patch.index:04d} {patch.subject}"
            patch_file = Path(tmp) / f"{patch.index:04d}.patch"
            patch_file.write_text(patch.text)
            if checkpatch:
                checks.cases.append(_checkpatch_case(patch, run_checkpatch(worktree, patch_file),
                                                     strict))
                log(f"checkpatch {patch.index}/{len(series.patches)}: {checks.cases[-1].status} "
                    f"({checks.cases[-1].message})")
            if stop:
                builds.cases.append(Case(name, SKIPPED, message=f"not built: {stop}"))
                continue
            applied = apply_mod.apply_one(worktree, patch, patch_file, job.timeouts.build)
            log(f"apply {patch.index}/{len(series.patches)}: {applied.status}: {patch.subject}")
            if applied.status == apply_mod.CONFLICTED:
                builds.cases.append(Case(
                    name, FAILED, applied.duration,
                    message=apply_mod.conflict_message(applied.name, applied.files),
                    details=("hunks: " + ", ".join(applied.hunks) + "\n\n"
                             + applied.output).strip()))
                stop = f"patch {patch.index} does not apply"
                continue
            if not build:
                builds.cases.append(Case(name, PASSED, applied.duration, message="applied"))
                continue
            result, notes = checker.build(f"after patch {patch.index}",
                                          f"build-{patch.index:04d}.log")
            builds.cases.append(_build_case(name, result, notes, warnings))
            boot(patch.index, name, result)
    changed = prefixes.changes(booted)
    if guest_tests:
        vr.stages.append(prefixes.changes_stage(changed, len(booted)))
        for change in changed:
            log(f"guest verdict changed at {change.line()}")
    report = RunReport([vr, *run.report.variants], duration=time.monotonic() - start)
    write_junit(report, job.out / "junit.xml")
    prefix_stages = [s for v in run.report.variants for s in v.stages]
    boot_bad = any(s.name == "boot" and s.status in (FAILED, ERROR) for s in prefix_stages)
    tests_bad = any(s.status in (FAILED, ERROR) for s in prefix_stages) or \
        any(s.status == FAILED for s in vr.stages if s.name == "guest-changes")
    code = 3 if builds.status == FAILED or boot_bad else \
        1 if checks.status == FAILED or tests_bad else 0
    summary = {"exit_code": code, "series": series.name, "tree": tree.spec,
               "build": [{"case": c.name, "status": c.status, "message": c.message}
                         for c in builds.cases],
               "checkpatch": [{"case": c.name, "status": c.status, "message": c.message}
                              for c in checks.cases]}
    if guest_tests:
        summary["guest"] = {v.name: {s.name: str(s.status) for s in v.stages}
                            for v in run.report.variants}
        summary["guest_changes"] = [{"prefix": c.prefix, "test": c.test, "before": c.before,
                                     "after": c.after} for c in changed]
    (job.out / "check-series.json").write_text(json.dumps(summary, indent=2) + "\n")
    broken = [c.name for c in builds.cases if c.status == FAILED]
    log(f"check-series: {len(series.patches)} patches, "
        f"{'build broken at: ' + '; '.join(broken) if broken else 'every step builds'}; "
        f"wrote {job.out / 'junit.xml'}; exit {code} ({fmt_duration(time.monotonic() - start)})")
    return code


# --- command line -----------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check-series", help="apply a series patch by patch, build after each, "
                                            "run checkpatch.pl on each",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job", type=Path, metavar="FILE", help="job file (default: embedded)")
    p.add_argument("--tree", metavar="SPEC", help="tree (as for pipeline run)")
    p.add_argument("--series", metavar="SPEC", help="series name, folder or mbox")
    p.add_argument("--kconfig", action="append", default=[], metavar="FRAGMENT",
                   help="extra kconfig fragment for the builds (repeatable)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: out/)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="cache folder (default: $KERNEL_PIPELINE_CACHE or ~/.cache/kernel-pipeline)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="do not build the tree without the series first")
    p.add_argument("--no-build", dest="build", action="store_false",
                   help="only apply and checkpatch")
    p.add_argument("--no-checkpatch", dest="checkpatch", action="store_false",
                   help="do not run the tree's scripts/checkpatch.pl on the patches")
    p.add_argument("--strict", action="store_true", help="checkpatch warnings fail too")
    p.add_argument("--guest-tests", action="store_true",
                   help="boot the kernel of every prefix that built and run the guest tests "
                        "in it (suites prefix-NNNN.boot/.guest); list the tests whose verdict "
                        "changes between consecutive prefixes (suite check-series.guest-changes)")
    p.add_argument("--test", action="append", default=[], metavar="PATH",
                   help="with --guest-tests: run only these guest test paths (repeatable; "
                        "default: the job's tests)")
    p.add_argument("--accel", choices=ACCELS, help="QEMU accelerator (default: the job's)")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace, log: Logger) -> int:
    loaded = load_job(args.job)
    if args.test and not args.guest_tests:
        raise BadInput("--test needs --guest-tests")
    if args.test:
        loaded = replace(loaded, tests=[])
    job = apply_overrides(loaded, Overrides(
        tree=args.tree, series=args.series, kconfig=args.kconfig, out=args.out,
        cache_dir=args.cache_dir, tests=args.test, accel=args.accel))
    if args.guest_tests:
        if not args.build:
            raise BadInput("--guest-tests needs the builds (drop --no-build)")
        check_before_work(job)
    return check_series(job, log, baseline=args.baseline, checkpatch=args.checkpatch,
                        strict=args.strict, build=args.build, guest_tests=args.guest_tests)
