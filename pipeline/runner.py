"""Run a job: tree -> (apply) -> configure -> build -> boot + guest tests, for each variant.

A failed stage stops its variant only (the later stages are reported as skipped with the
reason). OUT/junit.xml, OUT/summary.json and OUT/kcidb.json (pipeline.kcidb) are always
written, also when the run is stopped by SIGINT/SIGTERM: the stage that was running becomes an
error, child processes are stopped (see pipeline.proc) and cache entries are only ever
published complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import apply as apply_mod
from . import build as build_mod
from . import git as git_mod
from . import kcidb, kconfig, outdir
from . import series as series_mod
from .cache import Cache, default_cache_root
from .errors import BadInput, PipelineError, StageFailed
from .job import PROJECT_ROOT, Job, KselftestSettings, Variant
from .junit import write_junit, write_summary
from .log import Log, fmt_duration
from .results import ERROR, FAILED, PASSED, SKIPPED, Case, RunReport, Stage, VariantReport
from .tree import Tree, prepare_tree


class _StopVariant(Exception):
    """A stage failed: the rest of this variant is skipped."""


@dataclass
class _Signals:
    """Turns SIGINT/SIGTERM/SIGHUP into KeyboardInterrupt once, remembering which signal it was."""

    name: str = ""
    saved: dict[int, object] = field(default_factory=dict)

    def _handler(self, signum: int, _frame: object) -> None:
        if self.name:
            return  # already stopping: let the cleanup finish
        self.name = signal.Signals(signum).name
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: a closed terminal
            self.saved[sig] = signal.signal(sig, self._handler)
        try:
            yield
        finally:
            for sig, old in self.saved.items():
                signal.signal(sig, old)


@dataclass
class _Run:
    job: Job
    cache: Cache
    log: Log
    report: RunReport
    accel: str | None = None                  # result of the KVM probe, once per run
    current: tuple[VariantReport, str, float] | None = None   # stage now running
    build_only: bool = False                  # stop after the build (pipeline bench)
    reuse_ready: bool = False                 # skip configure + build for a recorded kernel
    kselftest: dict[str, list] = field(default_factory=dict)  # variant -> selftest results
    kselftest_kernels: dict[str, _KselftestKernel] = field(default_factory=dict)
    kselftest_comp: dict[str, object] = field(default_factory=dict)  # variant -> Comparison
    tree: Tree | None = None                  # once prepared (for kcidb.json)
    series: series_mod.Series | None = None   # once loaded


def _planned(uses_series: bool, build_only: bool = False) -> list[str]:
    return (["apply"] if uses_series else []) + ["configure", "build"] + (
        [] if build_only else ["boot", "guest"])


def _case_from_error(name: str, exc: PipelineError, duration: float) -> Case:
    return Case(name, FAILED, duration, exc.message, exc.details)


@contextlib.contextmanager
def _stage(run: _Run, vr: VariantReport, name: str) -> Iterator[Stage]:
    """Time a stage, log its line, turn a PipelineError into a failed case and stop the variant
    when the stage did not pass."""
    stage = Stage(name, started=time.time())
    vr.stages.append(stage)
    start = time.monotonic()
    run.current = (vr, name, start)
    try:
        yield stage
    except PipelineError as exc:
        stage.cases.append(_case_from_error(name, exc, time.monotonic() - start))
        if exc.details:
            run.log(exc.details)
    except _StopVariant:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug: report it, never end without JUnit
        detail = traceback.format_exc()
        message = f"internal error: {type(exc).__name__}: {exc}"
        stage.cases.append(Case(name, ERROR, time.monotonic() - start, message, detail))
        run.report.internal_error = run.report.internal_error or f"{vr.name} {name}: {message}"
        run.log(detail)
    finally:
        # A stage whose work ran elsewhere (the guest tests run in the boot stage's session)
        # takes at least as long as its cases.
        stage.duration = max(time.monotonic() - start,
                             sum(c.duration for c in stage.cases))
    # Not reached on KeyboardInterrupt: `run.current` then tells which stage was interrupted.
    run.current = None
    bad = next((c for c in stage.cases if c.status in (FAILED, ERROR)), None)
    status = "ok" if bad is None else "FAILED"
    run.log.stage(vr.name, name, status, stage.duration, bad.message if bad else "")
    if bad is not None and name != "guest":
        # "build failed: <first error>" already says which stage failed: say it once.
        said = bad.message.startswith((f"{name} ", f"{name}:"))
        raise _StopVariant(bad.message if said else f"{name} failed: {bad.message}")


def _fill_skipped(vr: VariantReport, planned: list[str], reason: str) -> None:
    done = {s.name for s in vr.stages}
    for name in planned:
        if name not in done:
            vr.stages.append(Stage(name, [Case(name, SKIPPED, message=reason)], ran=False))


# --- stages -----------------------------------------------------------------------------------

def _apply_stage(run: _Run, vr: VariantReport, tree: Tree,
                 series: series_mod.Series) -> Path:
    with _stage(run, vr, "apply") as stage:
        result = apply_mod.apply_series(tree, series, run.cache, run.log)
        for p in result.patches:
            case = Case(f"{p.index:04d} {p.subject}", PASSED, p.duration, stdout=p.output)
            if p.status == apply_mod.APPLIED_3WAY:
                case.message = "applied with 3-way merge"
            elif p.status == apply_mod.CONFLICTED:
                case.status = FAILED
                case.message = (f"patch {p.name} does not apply; conflicts in "
                                f"{', '.join(p.files) or 'unknown files'}")
                case.details = ("hunks: " + ", ".join(p.hunks) + "\n\n" + p.output).strip()
            elif p.status == apply_mod.NOT_APPLIED:
                case.status = SKIPPED
                case.message = "not applied: an earlier patch conflicted"
            stage.cases.append(case)
        vr.properties["series_branch"] = result.branch
        vr.properties["series_head"] = result.head
        if not result.ok and result.rerun:
            run.log.rerun(result.rerun)
    return result.worktree


def _configure_stage(run: _Run, vr: VariantReport, variant: Variant, tree: Tree, src: Path,
                     src_key: str, out: Path) -> kconfig.ConfigResult:
    fragments = run.job.kconfig + variant.kconfig_extra
    work = run.cache.dir("configs") / src_key
    with _stage(run, vr, "configure") as stage:
        result = kconfig.configure(src, work, run.job.base_config, fragments, tree.version,
                                   run.log, out / "configure.log")
        shutil.copyfile(result.config, out / "config")
        vr.properties["config_hash"] = result.config_hash
        case = Case("configure", PASSED, result.duration,
                    stdout="\n".join(["overrides:", *result.overrides]) if result.overrides
                    else "")
        if result.skipped:
            case.message = "skipped fragments: " + ", ".join(p.name for p in result.skipped)
        if not result.ok:
            case.status = FAILED
            first = result.missing[0].option
            case.message = (f"{first.name} (from {first.fragment.name}) did not survive "
                            f"olddefconfig" + (f" (+{len(result.missing) - 1} more)"
                                               if len(result.missing) > 1 else ""))
            case.details = "\n".join(m.describe() for m in result.missing)
            run.log(case.details)
            run.log.rerun(kconfig.make_cmd(src, work, "olddefconfig"))
        stage.cases.append(case)
    return result


def _build_stage(run: _Run, vr: VariantReport, src: Path, src_key: str,
                 config: kconfig.ConfigResult, out: Path) -> Path:
    build_dir = run.cache.dir("builds") / f"{src_key}-{config.config_hash[:12]}"
    with run.cache.lock(f"build-{build_dir.name}", f"build folder {build_dir}", run.log), \
            _stage(run, vr, "build") as stage:
        if kconfig.install_config(config.config, build_dir):
            run.log(f"  new build folder {build_dir}")
        else:
            run.log(f"  incremental build in {build_dir}")
        result = build_mod.build_kernel(src, build_dir, out / "build.log",
                                        run.job.timeouts.build, run.log,
                                        ccache_dir=run.cache.root / "ccache")
        case = Case("build", PASSED, result.duration,
                    message=f"{result.steps} compile/link steps")
        if result.ok and result.image is not None:
            shutil.copyfile(result.image, out / "bzImage")
        else:
            case.status = FAILED
            case.message = result.reason
            case.details = "\n".join(result.errors) + f"\n\nfull log: {result.log_path}"
            run.log("\n".join(f"  {line}" for line in result.errors))
            run.log.rerun(result.command, env=result.env)
        stage.cases.append(case)
    return out / "bzImage"


# --- ready kernels: configure + build skipped when nothing they read changed ---------------------

_READY_CODE = ("kconfig.py", "build.py")   # the pipeline code that makes a kernel of its inputs


def _ready_inputs(run: _Run, variant: Variant, tree: Tree, src: Path) -> str | None:
    """A digest of everything configure and build read: the sources (HEAD of a clean
    checkout), base_config, every fragment's bytes, the tree version, the compiler and the
    pipeline's own configure/build code. None when it cannot be told (a dirty or odd
    checkout): then the stages run as always."""
    try:
        head = git_mod.git(src, "rev-parse", "HEAD", timeout=60).strip()
        dirty = git_mod.git(src, "status", "--porcelain", "--untracked-files=no",
                            timeout=300).strip()
        cc = subprocess.run(["gcc", "--version"], capture_output=True, text=True, timeout=30,
                            check=False).stdout.splitlines()[:1]
        here = Path(__file__).parent
        data = {
            "src": str(src), "head": head, "base_config": run.job.base_config,
            "version": tree.version, "cc": cc,
            "fragments": [[str(f), hashlib.sha256(f.read_bytes()).hexdigest()]
                          for f in [*run.job.kconfig, *variant.kconfig_extra]],
            "code": [hashlib.sha256((here / name).read_bytes()).hexdigest()
                     for name in _READY_CODE]}
    except (OSError, subprocess.SubprocessError, ValueError, PipelineError):
        return None
    if dirty or not head:
        return None
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _ready_record(run: _Run, src_key: str, inputs: str) -> Path:
    return run.cache.dir("ready") / f"{src_key}-{inputs[:24]}.json"


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _record_ready(run: _Run, src_key: str, inputs: str | None, config: kconfig.ConfigResult,
                  kernel: Path) -> None:
    """After a good build: which image these inputs made (pipeline shell/exec reuse it)."""
    if inputs is None or not kernel.is_file():
        return
    build_dir = run.cache.dir("builds") / f"{src_key}-{config.config_hash[:12]}"
    image = build_dir / "arch" / "x86" / "boot" / "bzImage"
    try:
        data = {"inputs": inputs, "build_dir": str(build_dir), "image": str(image),
                "sha256": _file_sha256(kernel), "config_hash": config.config_hash}
        record = _ready_record(run, src_key, inputs)
        tmp = record.with_name(record.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(record)
    except OSError as exc:
        run.log(f"  could not record the ready kernel: {exc}")


def _ready_kernel(run: _Run, vr: VariantReport, src_key: str, inputs: str | None,
                  out: Path) -> Path | None:
    """OUT/<variant>/bzImage from the build folder when a build of exactly these inputs is
    recorded and its image is still the one it made (a later build in that folder replaces
    it); None otherwise. The configure and build stages are then reported as reused."""
    if inputs is None:
        return None
    record = _ready_record(run, src_key, inputs)
    try:
        data = json.loads(record.read_text())
        image, build_dir = Path(data["image"]), Path(data["build_dir"])
        with run.cache.lock(f"build-{build_dir.name}", f"build folder {build_dir}", run.log):
            if data.get("inputs") != inputs or _file_sha256(image) != data.get("sha256"):
                return None
            shutil.copyfile(image, out / "bzImage")
            if (build_dir / ".config").is_file():
                shutil.copyfile(build_dir / ".config", out / "config")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    vr.properties["config_hash"] = str(data.get("config_hash", ""))
    for name in ("configure", "build"):
        vr.stages.append(Stage(name, [Case(name, PASSED, message=f"reused: {image}")],
                               started=time.time()))
    run.log(f"configure + build {vr.name}: reused the kernel built from the same inputs "
            f"({build_dir.name})")
    return out / "bzImage"


def _ready_without_lock(run: _Run, vr: VariantReport, variant: Variant, tree: Tree,
                        series: series_mod.Series | None, src_key: str,
                        out: Path) -> Path | None:
    """pipeline shell/exec: the recorded kernel of these exact inputs, found without the
    sources lock (a run building another variant of the same sources holds it for minutes);
    safe because the image is only taken when its sha256 is the one the build recorded."""
    src = tree.checkout
    if series is not None:
        applied = apply_mod.applied_already(tree, series, run.cache)
        if applied is None:
            return None
        src = applied.worktree
    kernel = _ready_kernel(run, vr, src_key, _ready_inputs(run, variant, tree, src), out)
    if kernel is not None and series is not None:
        vr.stages.insert(0, Stage("apply", [Case("apply", PASSED,
                                                 message=f"reused: {src}")]))
    return kernel


def _boot_settings(run: _Run, variant: Variant, boot):  # boot: the late-imported module
    job = run.job
    scale = variant.timeout_scale
    return boot.BootSettings(
        memory=job.qemu.memory, smp=job.qemu.smp, accel=run.accel or job.qemu.accel,
        boot_timeout=job.timeouts.boot * scale, test_timeout=job.timeouts.test * scale,
        total_timeout=job.timeouts.total * scale,
        kernel_args=[*job.qemu.kernel_args, *variant.kernel_args],
        qemu_args=list(job.qemu.qemu_args),
        root=str(job.qemu.root) if job.qemu.root else "")


def _kselftest_stages(run: _Run, vr: VariantReport, variant: Variant, src: Path, src_key: str,
                      kernel: Path, out: Path) -> None:
    """Build the tree's selftests and run them in a fresh boot of `kernel` (stages
    kselftest-build and kselftest-run: an exception in either is an error case like in any
    other stage); on a variant other than baseline, rerun the candidates on both kernels
    (regress.decide). The JUnit cases come from _kselftest_report() once every variant ran."""
    from . import boot
    from .kselftest import regress
    from .kselftest import suite as kselftest

    ks = run.job.kselftest
    try:
        with _stage(run, vr, "kselftest-build") as stage:
            build = kselftest.build_selftests(src, run.cache.dir("kselftest") / src_key,
                                              list(ks.targets), run.log)
            stage.cases.append(Case(f"build {', '.join(ks.targets)}", PASSED, build.duration,
                                    message=f"{len(build.tests)} programs"
                                    + (" (cached build)" if build.cached else "")))
        with _stage(run, vr, "kselftest-run") as stage:
            settings = _boot_settings(run, variant, boot)
            scale = variant.timeout_scale * ks.timeout_scale
            here = _KselftestKernel(kernel, build, out, settings, scale)
            t0 = time.monotonic()
            phase = kselftest.run_phase(kernel, build, out / "kselftest", settings,
                                        Path(sys.executable), run.log, timeout_scale=scale)
            case = Case(f"run {len(build.tests)} programs in a fresh boot", PASSED,
                        time.monotonic() - t0)
            if not phase.boot.completed:
                # The programs that did not run are error cases of the kselftest stage.
                case.message = f"session ended early: {phase.boot.failure or 'unknown'}"
            stage.cases.append(case)
            results = phase.results
            run.kselftest[variant.name] = results
            run.kselftest_kernels[variant.name] = here
            base = run.kselftest.get("baseline")
            base_kernel = run.kselftest_kernels.get("baseline")
            if variant.name != "baseline" and base is not None and base_kernel is not None:
                t0 = time.monotonic()
                comp = regress.decide(base, results, _rerunner(run, here, base_kernel),
                                      _rerun_policy(ks), log=run.log)
                run.kselftest_comp[variant.name] = comp
                if comp.reruns:
                    stage.cases.append(Case(
                        f"rerun candidates ({comp.reruns} round(s) on both kernels)", PASSED,
                        time.monotonic() - t0,
                        message="; ".join(f"{r.key}: {r.verdict} ({r.tally.counts()})"
                                          for r in comp.rows if r.tally is not None)))
    except _StopVariant:
        return


def _rerun_policy(ks: KselftestSettings):  # -> regress.RerunPolicy (imported late)
    from .kselftest import regress

    return regress.RerunPolicy(max_runs=ks.retries, alpha=ks.alpha, budget=ks.rerun_budget)


def _rerunner(run: _Run, patched: _KselftestKernel,
              baseline: _KselftestKernel) -> Callable[[str, list[str], int], list]:
    """regress.decide's rerun: a fresh boot of one kernel running only `programs`. Under TCG
    on a shared 2-core machine timing-bound subtests (test_cgfreezer_ptrace, _migrate,
    test_cpucg_stats) fail now and then on either kernel, more often when the host is busy:
    the reruns alternate kernels so both are seen under the same load."""
    def rerun(side: str, programs: list[str], n: int) -> list:
        kernel = patched if side == "patched" else baseline
        return kernel.rerun(run, programs, n)
    return rerun


@dataclass(frozen=True)
class _KselftestKernel:
    """What it takes to run a variant's selftests once more."""

    kernel: Path
    build: object                 # kselftest.SelftestBuild
    out: Path
    settings: object              # boot.BootSettings
    scale: float

    def rerun(self, run: _Run, programs: list[str], n: int) -> list:
        from .kselftest import suite as kselftest

        phase = kselftest.run_phase(self.kernel, self.build, self.out / f"kselftest-rerun-{n}",
                                    self.settings, Path(sys.executable), run.log,
                                    timeout_scale=self.scale, only=programs)
        return phase.results


def _kselftest_report(run: _Run) -> None:
    """JUnit cases for every selftest subtest, the baseline vs patched verdicts (table,
    summary.json), with the known issues of the tree's kernel applied."""
    from .kselftest import known_issues, regress

    if not run.kselftest:
        return
    base = run.kselftest.get("baseline", [])
    all_known = known_issues.load()
    summary: dict = {"known_issues_file": all_known.source, "variants": {}}
    for vr in run.report.variants:
        results = run.kselftest.get(vr.name)
        if results is None:
            continue
        version = vr.properties.get("tree_version", "")
        known = all_known.for_kernel(version) if version else all_known
        side = "baseline" if vr.name == "baseline" else "patched"
        if side == "baseline":
            # Flaky or fixed calls from the reruns belong to the baseline's cases too.
            comp = next(iter(run.kselftest_comp.values()), None) or regress.compare(base, base)
        else:
            comp = run.kselftest_comp.get(vr.name) or regress.compare(base, results)
        passing = regress.known_passing(comp, side, known)
        info: dict = {"known_issues_passed": passing}
        if side != "baseline" and "baseline" in run.kselftest:
            path = regress.write_markdown(comp, run.job.out / vr.name, known=known,
                                          passing_known=passing)
            run.report.kselftest_regressions += len(comp.regressions)
            run.log(f"kselftest {vr.name} vs baseline: {comp.counts()}; table {path}")
            info.update(counts=comp.counts(), reruns=comp.reruns,
                        rerun_seconds=round(comp.rerun_seconds, 1),
                        rows=regress.summary_rows(comp))
        for key in passing:
            run.log(f"kselftest {vr.name}: known issue {key} passed: remove it from "
                    f"{all_known.source}?")
        stage = Stage("kselftest")
        if passing:
            stage.properties["known_issues_passed"] = ", ".join(passing)
        for classname, r in regress.junit_rows(comp, side, vr.name, known):
            stage.cases.append(Case(r.key, r.status, r.duration, r.message, r.details,
                                    classname=classname, flaky=r.flaky))
        stage.duration = sum(c.duration for c in stage.cases if ": " not in c.name)
        vr.stages.append(stage)
        summary["variants"][vr.name] = info
    run.report.kselftest = summary


def _boot_stages(run: _Run, vr: VariantReport, variant: Variant, kernel: Path,
                 out: Path) -> None:
    try:
        from . import boot  # imported late: the host stages work without the boot side
    except ImportError as exc:
        with _stage(run, vr, "boot"):
            raise StageFailed(f"cannot import pipeline.boot: {exc}")
        return

    job = run.job
    settings = _boot_settings(run, variant, boot)
    result = None
    try:
        with _stage(run, vr, "boot") as stage:
            if settings.accel == "auto":
                run.accel = boot.probe_accel(kernel, settings, run.log)
                run.log(f"  accel: {run.accel} (probed once for this run)")
                settings.accel = run.accel
            result = boot.run_guest(kernel, list(job.tests), out, settings, Path(sys.executable),
                                    log=run.log)
            vr.properties["accel"] = result.accel
            vr.properties["qemu_version"] = result.qemu_version
            booted = Case("kernel boots", PASSED, result.duration)
            if not result.booted:
                booted.status = FAILED
                booted.message = result.failure or "the guest did not reach the test runner"
                booted.details = result.console_tail
            stage.cases.append(booted)
            if result.booted:
                session = Case("test session completes", PASSED)
                if not result.completed:
                    session.status = FAILED
                    session.message = result.failure or "the test session did not finish"
                    session.details = result.console_tail
                stage.cases.append(session)
            if result.splats:
                stage.cases.append(Case("no kernel splats outside tests", FAILED,
                                        message=result.splats[0].splitlines()[0],
                                        details="\n\n".join(result.splats)))
            if not (result.booted and result.completed) and result.command:
                run.log.rerun(result.command)
    except _StopVariant:
        if result is None:  # QEMU could not even start: nothing to report
            raise
    # Guest tests are reported even when the session broke off (those that did not run are
    # errors in BootResult.tests).
    assert result is not None
    guest_tests, failure = result.tests, result.failure
    with _stage(run, vr, "guest") as stage:
        for test in guest_tests:
            module, _, name = test.nodeid.partition("::")
            status = {"passed": PASSED, "failed": FAILED, "skipped": SKIPPED}.get(
                test.outcome, ERROR)
            stage.cases.append(Case(
                name or module, status, test.duration, test.message, test.details,
                stdout=test.kernel_log,
                classname=f"{vr.name}.guest.{module.removesuffix('.py').replace('/', '.')}"))
        if not guest_tests:
            stage.cases.append(Case("guest tests", ERROR,
                                    message="no guest test reported a result"
                                    + (f" ({failure})" if failure else "")))
    bad = [c for c in vr.stages[-1].cases if c.status in (FAILED, ERROR)]
    for case in bad:
        run.log(f"  guest test {case.classname}::{case.name}: {case.status}: {case.message}")


# --- one variant ------------------------------------------------------------------------------

def _run_variant(run: _Run, variant: Variant, tree: Tree,
                 series: series_mod.Series | None) -> None:
    uses_series = variant.series and series is not None
    vr = VariantReport(variant.name, {
        "tree": run.job.tree, "tree_version": tree.version, "tree_commit": tree.commit,
        "series": f"{series.name} ({series.short})" if uses_series and series else "none",
        "base_config": run.job.base_config,
        "fragments": ", ".join(str(p) for p in run.job.kconfig + variant.kconfig_extra),
        "accel": run.accel or run.job.qemu.accel, "qemu_version": "", "config_hash": ""})
    run.report.variants.append(vr)
    planned = _planned(uses_series, run.build_only)
    out = run.job.out / variant.name   # the previous run's files: cleared in run_job_report
    out.mkdir(parents=True, exist_ok=True)
    run.log(f"variant {variant.name}: " + (f"series {series.name} on {tree.version}"
                                            if uses_series and series else
                                            f"baseline {tree.version}"))
    try:
        if uses_series and series is not None:
            src_key = apply_mod.worktree_key(tree, series)
        else:
            src_key = f"{tree.key}-baseline"
        kernel = _ready_without_lock(run, vr, variant, tree, series if uses_series else None,
                                     src_key, out) if run.reuse_ready else None
        if kernel is not None:
            src = tree.checkout   # only the selftests would need it: never after reuse_ready
        else:
            with run.cache.lock(f"src-{src_key}", f"sources {src_key}", run.log):
                src = tree.checkout
                if uses_series and series is not None:
                    src = _apply_stage(run, vr, tree, series)
                inputs = _ready_inputs(run, variant, tree, src)
                config = _configure_stage(run, vr, variant, tree, src, src_key, out)
                kernel = _build_stage(run, vr, src, src_key, config, out)
                _record_ready(run, src_key, inputs, config, kernel)
        if not run.build_only:
            _boot_stages(run, vr, variant, kernel, out)
            if run.job.kselftest.enabled and variant.name in run.job.kselftest.variants:
                _kselftest_stages(run, vr, variant, src, src_key, kernel, out)
    except _StopVariant as stop:
        _fill_skipped(vr, planned, f"not run: {stop}")


# --- the whole run ----------------------------------------------------------------------------

def _kcidb_info(run: _Run) -> kcidb.RunInfo:
    tree, job = run.tree, run.job
    bench, bench_source = kcidb.find_bench(job.out)
    return kcidb.RunInfo(
        out=job.out, tree_spec=job.tree, start_time=run.report.started or time.time(),
        tree_commit=tree.commit if tree else "", tree_version=tree.version if tree else "",
        tarball_sha256=job.tree_sha256 or "",
        series=kcidb.series_info(run.series) if run.series is not None else None,
        bench=bench, bench_source=bench_source, compiler=kcidb.gcc_version)


def _write_kcidb(run: _Run) -> None:
    """OUT/kcidb.json; a bug here is an internal error (exit 4) but never costs the JUnit."""
    try:
        kcidb.write(run.report, _kcidb_info(run), run.job.out / kcidb.FILE_NAME)
    except Exception as exc:  # noqa: BLE001 - a bug: report it, never end without JUnit
        message = f"internal error while writing {kcidb.FILE_NAME}: {type(exc).__name__}: {exc}"
        run.log(f"{message}\n{traceback.format_exc()}")
        run.report.internal_error = run.report.internal_error or message


def _write_reports(run: _Run, start: float) -> None:
    run.report.duration = time.monotonic() - start
    _write_kcidb(run)
    write_junit(run.report, run.job.out / "junit.xml")
    write_summary(run.report, run.job.out / "summary.json")
    outdir.finish_run(run.job.out)


def _report_early_failure(run: _Run, variants: list[Variant], uses: dict[str, bool],
                          exc: PipelineError) -> None:
    """The tree or the series failed: every variant's first stage gets the error."""
    for variant in variants:
        vr = VariantReport(variant.name, {"tree": run.job.tree})
        planned = _planned(uses[variant.name])
        vr.stages.append(Stage(planned[0], [Case(planned[0], ERROR, message=exc.message,
                                                 details=exc.details)]))
        _fill_skipped(vr, planned, f"not run: {exc.message}")
        run.report.variants.append(vr)


def run_job(job: Job, log: Log | None = None, build_only: bool = False,
            tree: Tree | None = None) -> int:
    """Run every variant of `job`; returns the exit code (see pipeline.results).
    `build_only` stops each variant after its build (OUT/<variant>/bzImage). `tree` is a tree
    the caller already prepared (pipeline bisect), used instead of the job's tree spec."""
    return run_job_report(job, log, build_only, tree).exit_code()


def run_job_report(job: Job, log: Log | None = None, build_only: bool = False,
                   tree: Tree | None = None) -> RunReport:
    """run_job(), returning the whole report (OUT/junit.xml and summary.json are written)."""
    log = log or Log()
    cache = Cache(job.cache_dir or default_cache_root())
    run = _Run(job, cache, log, RunReport(started=time.time()), build_only=build_only)
    start = time.monotonic()
    signals = _Signals()
    uses = {v.name: bool(v.series and job.series) for v in job.variants}
    # Checks that need no work: the series exists (its variant is picked once the tree's
    # version is known).
    choice = series_mod.locate(job.series, PROJECT_ROOT) \
        if job.series and any(uses.values()) else None
    outdir.start_run(job.out, [v.name for v in job.variants], log)
    log(f"job {job.source}: tree {job.tree}, series {job.series or 'none'}, variants "
        f"{', '.join(v.name for v in job.variants)}; out {job.out}; cache {cache.root}")
    with signals.installed():
        try:
            try:
                t0 = time.monotonic()
                if tree is None:
                    tree = prepare_tree(job.tree, cache, log, job.tree_sha256)
                log(f"tree {tree.spec}: ok ({fmt_duration(time.monotonic() - t0)}), "
                    f"kernel {tree.version}")
                run.tree = tree
                series = series_mod.pick(choice, tree.version) if choice else None
                run.series = series
                if series is not None:
                    log(f"series {series.name}: {series.source} "
                        f"({len(series.patches)} patches, {series.short})")
            except PipelineError as exc:
                log(f"error: {exc.message}")
                if isinstance(exc, BadInput):
                    run.report.bad_input = exc.message
                _report_early_failure(run, job.variants, uses, exc)
                _finish(run, start)
                return run.report
            for variant in job.variants:
                _run_variant(run, variant, tree, series)
        except KeyboardInterrupt:
            _record_interrupt(run, signals.name or "SIGINT", uses)
        _finish(run, start)
        return run.report


def _record_interrupt(run: _Run, name: str, uses: dict[str, bool]) -> None:
    run.report.interrupted = name
    run.log(f"interrupted by {name}: stopping, writing a partial report")
    if run.current is not None:
        vr, stage_name, started = run.current
        stage = next((s for s in vr.stages if s.name == stage_name), None)
        if stage is None:
            stage = Stage(stage_name)
            vr.stages.append(stage)
        stage.cases.append(Case(stage_name, ERROR, time.monotonic() - started,
                                message=f"interrupted by {name}"))
    seen = {vr.name for vr in run.report.variants}
    for vr in run.report.variants:
        _fill_skipped(vr, _planned(uses.get(vr.name, False)), f"not run: interrupted by {name}")
    for variant in run.job.variants:
        if variant.name not in seen:
            vr = VariantReport(variant.name, {"tree": run.job.tree})
            planned = _planned(uses[variant.name], run.build_only)
            if not seen:  # stopped while the tree was prepared: the first stage is the error
                vr.stages.append(Stage(planned[0], [Case(
                    planned[0], ERROR, message=f"interrupted by {name} while preparing tree "
                                               f"{run.job.tree}")]))
            _fill_skipped(vr, planned, f"not run: interrupted by {name}")
            run.report.variants.append(vr)


def _finish(run: _Run, start: float) -> int:
    try:
        _kselftest_report(run)
    except Exception as exc:  # noqa: BLE001 - a bug: report it, never end without JUnit
        detail = traceback.format_exc()
        run.log(detail)
        message = f"internal error: {type(exc).__name__}: {exc}"
        run.report.internal_error = run.report.internal_error or f"kselftest report: {message}"
        for vr in run.report.variants:
            if vr.name in run.kselftest or vr is run.report.variants[-1]:
                vr.stages.append(Stage("kselftest-report", [Case(
                    "kselftest report", ERROR, message=message, details=detail)]))
    _write_reports(run, start)
    code = run.report.exit_code()
    for vr in run.report.variants:
        line = ", ".join(f"{s.name} {s.status}" for s in vr.stages)
        run.log(f"variant {vr.name}: {line}")
    run.log.notice(f"wrote {run.job.out / 'junit.xml'}, summary.json and {kcidb.FILE_NAME}; "
                   f"exit {code} ({fmt_duration(time.monotonic() - start)})")
    return code



# --- one kernel for pipeline shell / exec -------------------------------------------------------

@dataclass
class BuiltKernel:
    """A variant's kernel, built (or found in the cache) by the stages of a run."""

    image: Path                   # OUT/<variant>/bzImage
    variant: Variant
    settings: object              # boot.BootSettings: the machine the tests boot
    version: str                  # the tree's kernel version


def build_variant(job: Job, log: Log) -> BuiltKernel:
    """tree, apply, configure and build of the job's one variant: the very stages of
    run_job (so the same cache entries: a kernel a run built is reused, a no-op build), but
    no reports are written and nothing is booted. The first failed stage raises its error
    (StageFailed / BadInput, InternalError for a bug), with its details."""
    from . import boot
    from .errors import InternalError

    if len(job.variants) != 1:
        raise BadInput(f"build_variant: one variant, not {len(job.variants)}")
    variant = job.variants[0]
    cache = Cache(job.cache_dir or default_cache_root())
    run = _Run(job, cache, log, RunReport(started=time.time()), build_only=True,
               reuse_ready=True)
    uses_series = bool(variant.series and job.series)
    choice = series_mod.locate(job.series, PROJECT_ROOT) if uses_series else None
    t0 = time.monotonic()
    tree = prepare_tree(job.tree, cache, log, job.tree_sha256)
    log(f"tree {tree.spec}: ok ({fmt_duration(time.monotonic() - t0)}), kernel {tree.version}")
    series = series_mod.pick(choice, tree.version) if choice else None
    _run_variant(run, variant, tree, series)
    vr = run.report.variants[0]
    for stage in vr.stages:
        bad = next((c for c in stage.cases if c.status in (FAILED, ERROR)), None)
        if bad is not None:
            said = bad.message.startswith((f"{stage.name} ", f"{stage.name}:"))
            message = bad.message if said else f"{stage.name} failed: {bad.message}"
            if run.report.internal_error:
                raise InternalError(message, bad.details)
            raise StageFailed(message, bad.details)
    return BuiltKernel(job.out / variant.name / "bzImage", variant,
                       _boot_settings(run, variant, boot), tree.version)
