"""`pipeline bisect-step` and `pipeline bisect`: find the commit of a kernel checkout that broke
a guest test.

`bisect-step` is made for `git bisect run` in the user's own checkout: it tests the checkout's
HEAD (or `--tree PATH@REV`) and exits 0 (good), 1 (bad), 125 (skip: the series does not apply,
the tree does not configure or build, or the chosen test skipped) or 128 (abort: bad input or
a broken host, e.g. QEMU missing: a bisect must stop rather than mark commits wrongly).

`bisect --good A --bad B --test NAME` drives `git bisect` itself, in the cache's clone of the
user's repository (`git bisect start --no-checkout`), and prints the first bad commit.

Neither moves the user's HEAD, branches, index or files: the commit under test is checked out
in one worktree the pipeline owns (`worktrees/bisect-<repo>`), reset from commit to commit so
that only the files that differ are rewritten and the build folder of the previous step builds
incrementally. Every step writes its own JUnit file (`OUT/steps/<n>-<sha>/junit.xml`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .. import apply as apply_mod
from ..cache import Cache, default_cache_root
from ..errors import BadInput, PipelineError
from ..git import git_run
from ..job import (
    Job,
    Overrides,
    Variant,
    apply_overrides,
    check_boot_paths,
    load_job,
    normalize_series_spec,
)
from ..log import Log, fmt_duration
from ..qemu import Machine
from ..results import ERROR, FAILED, PASSED, RunReport
from ..runner import run_job_report
from ..status import ExitCode
from ..tree import Tree, UserCheckout, commit_version, resolve_checkout, split_rev, user_clone

# what `git bisect run` reads from bisect-step (pipeline.status has their meanings)
GOOD, BAD, SKIP, ABORT = (ExitCode.OK, ExitCode.TEST_FAILED, ExitCode.BISECT_SKIP,
                          ExitCode.ABORT_BISECT)
MARKS: dict[int, str] = {GOOD: "good", BAD: "bad", SKIP: "skip"}
_BUILD_STAGES = ("apply", "configure", "build")
_FIRST_BAD = re.compile(r"^([0-9a-f]{40}) is the first bad commit", re.MULTILINE)
_ONLY_SKIPPED = "only 'skip'ped commits left"
INTERNAL_PREFIX = "internal error"   # how stages.execute words a case for an unexpected exception


@dataclass(frozen=True)
class Verdict:
    code: int            # GOOD | BAD | SKIP | ABORT
    reason: str

    @property
    def mark(self) -> str:
        return MARKS.get(self.code, "abort")


@dataclass
class StepRecord:
    sha: str
    subject: str
    verdict: str
    reason: str
    duration: float
    out: str


@dataclass
class BisectResult:
    good: str
    bad: str
    first_bad: str = ""                  # commit id, when found
    candidates: list[str] = field(default_factory=list)   # when skips left it ambiguous
    steps: list[StepRecord] = field(default_factory=list)
    log: str = ""                        # `git bisect log`


def verdict_of(report: RunReport) -> Verdict:
    """good / bad / skip from the report of one step's run (one variant)."""
    if report.bad_input:
        return Verdict(ABORT, f"bad input: {report.bad_input}")
    if report.interrupted:
        return Verdict(ABORT, f"interrupted by {report.interrupted}")
    if not report.variants:
        return Verdict(ABORT, "the run reported nothing")
    for stage in report.variants[0].stages:
        broken = next((c for c in stage.cases if c.status in (FAILED, ERROR)
                       and c.message.startswith(INTERNAL_PREFIX)), None)
        if broken is not None:   # the pipeline's own bug is no verdict on the commit
            return Verdict(ABORT, f"{stage.name}: {broken.message}")
    for stage in report.variants[0].stages:
        bad = [c for c in stage.cases if c.status in (FAILED, ERROR)]
        if not bad:
            continue
        first = bad[0]
        if stage.name in _BUILD_STAGES:
            return Verdict(SKIP, f"{stage.name} failed: {first.message}")
        if stage.name == "boot":
            return Verdict(BAD, f"boot failed: {first.message}")
        if stage.name == "guest":
            names = ", ".join(c.name for c in bad[:5])
            return Verdict(BAD, f"{len(bad)} guest test(s) failed: {names}: {first.message}")
    guest = next((s for s in report.variants[0].stages if s.name == "guest"), None)
    if guest is None:
        return Verdict(ABORT, "no guest stage was run")
    passed = [c for c in guest.cases if c.status == PASSED]
    if passed:
        return Verdict(GOOD, f"{len(passed)} guest test(s) passed")
    reasons = sorted({c.message for c in guest.cases if c.message})
    return Verdict(SKIP, "the chosen tests were skipped"
                   + (f": {'; '.join(reasons)[:300]}" if reasons else ""))


@dataclass
class Stepper:
    """Tests commits of one user repository in the pipeline's own bisect worktree."""

    job: Job                   # tree, series, fragments, tests, timeouts of every step
    user: UserCheckout
    cache: Cache
    log: Log
    with_series: bool
    clone: Path = field(init=False)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        with self.cache.lock(f"tree-{self.user.clone_key}", f"clone of {self.user.path}",
                             self.log):
            self.clone, clone_key = user_clone(self.user, self.cache, self.log)
        self.key = f"bisect-{clone_key}"

    def tree(self, sha: str) -> Tree:
        """The commit as a Tree whose cache key stays the same from commit to commit (so the
        worktrees and build folders are reused). Without the series, the bisect worktree is
        put on the commit; with it, apply_series does that in its own worktree."""
        version = commit_version(self.clone, sha)
        checkout = self.clone
        if not self.with_series:
            checkout = self.cache.dir("worktrees") / self.key
            apply_mod.reset_worktree(self.clone, checkout, "pipeline/bisect", sha, self.log)
        return Tree(f"{self.user.path}@{sha[:12]}", self.key, self.clone, checkout, sha, version)

    def step(self, sha: str, out: Path) -> Verdict:
        with self.cache.lock(f"worktree-{self.key}", f"bisect worktree of {self.user.path}",
                             self.log):
            try:
                tree = self.tree(sha)
            except BadInput as exc:      # e.g. a commit without a kernel Makefile
                return Verdict(SKIP, exc.message)
            job = replace(self.job, tree=tree.spec, out=out)
            report = run_job_report(job, self.log, tree=tree)
        return verdict_of(report)


def subject_of(repo: Path, sha: str) -> str:
    done = git_run(repo, "log", "-1", "--format=%s", sha, timeout=60)
    return done.output.strip() if done.returncode == 0 else ""


def _rev(repo: Path, rev: str, what: str) -> str:
    done = git_run(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if done.returncode != 0:
        raise BadInput(f"{what} {rev}: no such commit in {repo}")
    return done.output.strip()


def bisect(stepper: Stepper, good: str, bad: str, out: Path) -> BisectResult:
    """Run git bisect between `good` and `bad` in the cache's clone, one step per commit git
    picks, until it names the first bad commit (or only skipped commits are left)."""
    clone, log = stepper.clone, stepper.log
    # Names are the user's (their branches and tags, also ones made after our clone): resolve
    # them in their repository (read only), then work with commit ids in the clone.
    good_sha = _rev(stepper.user.path, good, "--good")
    bad_sha = _rev(stepper.user.path, bad, "--bad")
    if git_run(clone, "merge-base", "--is-ancestor", good_sha, bad_sha).returncode != 0:
        raise BadInput(f"--good {good} is not an ancestor of --bad {bad}")
    result = BisectResult(good_sha, bad_sha)
    count = git_run(clone, "rev-list", "--count", f"{good_sha}..{bad_sha}").output.strip()
    log(f"bisect: {count} commits in {good_sha[:12]}..{bad_sha[:12]}")
    git_run(clone, "bisect", "reset")  # an earlier bisect that was interrupted
    started = git_run(clone, "bisect", "start", "--no-checkout", bad_sha, good_sha)
    try:
        output = started.output
        if started.returncode != 0:
            raise BadInput(f"git bisect start failed: {output.strip()}")
        for n in range(1, int(count or 0) + 2):
            found = _FIRST_BAD.search(output)
            if found:
                result.first_bad = found.group(1)
                break
            if _ONLY_SKIPPED in output:
                result.candidates = re.findall(r"^([0-9a-f]{40})$", output, re.MULTILINE)
                break
            sha = git_run(clone, "rev-parse", "BISECT_HEAD").output.strip()
            subject = subject_of(clone, sha)
            step_out = out / "steps" / f"{n:02d}-{sha[:12]}"
            log(f"bisect step {n}: {sha[:12]} {subject}")
            start = time.monotonic()
            verdict = stepper.step(sha, step_out)
            result.steps.append(StepRecord(sha, subject, verdict.mark, verdict.reason,
                                           time.monotonic() - start, str(step_out)))
            log(f"bisect step {n}: {sha[:12]} is {verdict.mark.upper()} ({verdict.reason}) "
                f"in {fmt_duration(time.monotonic() - start)}")
            if verdict.code == ABORT:
                raise BadInput(f"bisect stopped at {sha[:12]}: {verdict.reason}")
            marked = git_run(clone, "bisect", verdict.mark, sha)
            if marked.returncode != 0 and _ONLY_SKIPPED not in marked.output:
                raise BadInput(f"git bisect {verdict.mark} {sha[:12]} failed: "
                               f"{marked.output.strip()}")
            output = marked.output
        result.log = git_run(clone, "bisect", "log").output
    finally:
        git_run(clone, "bisect", "reset")
    return result


def write_report(result: BisectResult, repo: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bisect.json").write_text(json.dumps(asdict(result), indent=1) + "\n")
    lines = [f"# Bisect of {repo}", "",
             f"good {result.good[:12]}, bad {result.bad[:12]}", "",
             "| step | commit | subject | verdict | why | time |", "|---|---|---|---|---|---|"]
    for n, s in enumerate(result.steps, 1):
        why = s.reason.replace("|", "\\|")
        lines.append(f"| {n} | {s.sha[:12]} | {s.subject.replace('|', '/')} | {s.verdict} | "
                     f"{why} | {fmt_duration(s.duration)} |")
    lines.append("")
    if result.first_bad:
        lines.append(f"First bad commit: **{result.first_bad}** "
                     f"{subject_of(repo, result.first_bad)}")
    elif result.candidates:
        lines.append("Skipped commits left it open; the first bad commit is one of: "
                     + ", ".join(c[:12] for c in result.candidates))
    else:
        lines.append("No first bad commit was found.")
    path = out / "bisect.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# --- command line -----------------------------------------------------------------------------

def _common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--test", action="append", required=True, metavar="PATH[::NAME]",
                   help="guest test file, folder or pytest node id that tells good from bad "
                        "(repeatable)")
    p.add_argument("--job", type=Path, metavar="FILE",
                   help="job file for fragments, timeouts and QEMU settings (default: embedded)")
    series = p.add_mutually_exclusive_group()
    series.add_argument("--series", metavar="SPEC",
                        help="series to apply on every commit (default: the job's)")
    series.add_argument("--no-series", action="store_true",
                        help="test the commits as they are, without a series")
    p.add_argument("--variant", metavar="NAME",
                   help="the job variant whose extra fragments and timeout scale to use, e.g. "
                        "patched-debug for lockdep (default: the first that fits)")
    p.add_argument("--kconfig", action="append", default=[], metavar="FRAGMENT",
                   help="extra kconfig fragment (repeatable)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"),
                   help="QEMU accelerator (default: the job's; auto probes KVM)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="cache folder (default: $KERNEL_PIPELINE_CACHE or ~/.cache/kernel-pipeline)")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default: in the cache, never in the checkout)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    step = sub.add_parser(
        "bisect-step", help="test one commit for `git bisect run` (exit 0 good, 1 bad, "
                            "125 skip, 128 abort)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    step.add_argument("--tree", metavar="PATH[@REV]", default=".",
                      help="the checkout and commit to test (default: . at HEAD)")
    _common_args(step)
    step.set_defaults(func=_cmd_step)
    bis = sub.add_parser(
        "bisect", help="find the first bad commit between --good and --bad (git bisect in "
                       "a pipeline-owned clone)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bis.add_argument("--tree", metavar="PATH", default=".",
                     help="the user's kernel checkout (default: .); only read")
    bis.add_argument("--good", required=True, metavar="REV",
                     help="a commit of --tree where the test passes")
    bis.add_argument("--bad", required=True, metavar="REV",
                     help="a commit of --tree where the test fails")
    _common_args(bis)
    bis.set_defaults(func=_cmd_bisect)


def _test_paths(values: list[str], cwd: Path) -> list[Path]:
    """Absolute test paths; a pytest node id keeps its `::name` part."""
    paths = []
    for value in values:
        file, sep, rest = value.partition("::")
        path = (cwd / file).resolve()
        if not path.exists():
            raise BadInput(f"--test {value}: {path} does not exist")
        paths.append(Path(f"{path}{sep}{rest}"))
    return paths


def _variant(job: Job, name: str | None, with_series: bool) -> Variant:
    """The job variant whose fragments and timeout scale every step uses (--variant, else the
    first one that applies the series, or not, as asked), renamed `bisect`."""
    if name is not None:
        chosen = next((v for v in job.variants if v.name == name), None)
        if chosen is None:
            raise BadInput(f"--variant {name}: {job.source} has no such variant (there are: "
                           f"{', '.join(v.name for v in job.variants)})")
    else:
        chosen = next((v for v in job.variants if v.series == with_series), job.variants[0])
    return replace(chosen, name="bisect", series=with_series)


def _stepper(args: argparse.Namespace, tree_arg: str, log: Log) -> tuple[Stepper, str]:
    """The Stepper and the commit named by `tree_arg` (PATH or PATH@REV)."""
    cwd = Path.cwd()
    path, rev = split_rev(tree_arg)
    user = resolve_checkout((cwd / path).resolve(), rev, tree_arg)
    base = load_job(args.job)
    try:
        series = None if args.no_series else (
            normalize_series_spec(args.series, cwd) if args.series else base.series)
    except ValueError as exc:
        raise BadInput(f"--series: {exc}") from None
    if not args.no_series and series is None:
        raise BadInput("no series: pass --series SPEC, or --no-series to test commits as "
                       "they are")
    job = apply_overrides(base, Overrides(tree=str(user.path), kconfig=args.kconfig,
                                          accel=args.accel, cache_dir=args.cache_dir,
                                          kselftest=False))
    job = replace(job, series=series, tests=_test_paths(args.test, cwd),
                  variants=[_variant(job, args.variant, series is not None)])
    Machine.load().find_binary()  # no QEMU: stop here, before any commit is judged
    check_boot_paths(Path(sys.executable), Path(__file__).resolve().parent.parent / "guest")
    cache = Cache(job.cache_dir or default_cache_root())
    return Stepper(job, user, cache, log, with_series=series is not None), user.sha


def _default_out(args: argparse.Namespace, stepper: Stepper, name: str) -> Path:
    out: str | None = args.out
    if out:
        return (Path.cwd() / out).resolve()
    return stepper.cache.dir("bisect-out") / stepper.key / name


def _cmd_step(args: argparse.Namespace, log: Log) -> int:
    try:
        stepper, sha = _stepper(args, args.tree, log)
        out = _default_out(args, stepper, sha[:12])
        verdict = stepper.step(sha, out)
    except PipelineError as exc:
        log(f"bisect-step: abort: {exc.message}")
        return ABORT
    except Exception:  # noqa: BLE001 - our own bug must stop git bisect, not mark the commit
        log("bisect-step: abort (exit 128): internal error of the pipeline, please report it "
            "with this traceback:")
        log(traceback.format_exc().rstrip())
        return ABORT
    log(f"bisect-step {sha[:12]}: {verdict.mark} ({verdict.reason}); exit {verdict.code}; "
        f"report {out / 'junit.xml'}")
    return verdict.code


def _cmd_bisect(args: argparse.Namespace, log: Log) -> int:
    stepper, _sha = _stepper(args, args.tree, log)
    out = _default_out(args, stepper, f"{args.good}..{args.bad}".replace("/", "_"))
    result = bisect(stepper, args.good, args.bad, out)
    report = write_report(result, stepper.clone, out)
    if result.first_bad:
        log(f"first bad commit: {result.first_bad} {subject_of(stepper.clone, result.first_bad)}"
            f" ({len(result.steps)} steps); report {report}")
        return 0
    log(f"bisect could not name one first bad commit; report {report}")
    return 3
