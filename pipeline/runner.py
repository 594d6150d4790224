"""Run a job: the tree, then for each variant the stages of pipeline.stages in order
(apply -> configure -> build -> compiled -> boot -> guest -> kselftest-build -> kselftest-run),
then the run-level reports (kselftest verdicts, series.compiled).

A failed stage stops its variant only (the later stages are reported as skipped with the
reason). OUT/junit.xml, OUT/summary.json and OUT/kcidb.json (pipeline.kcidb) are always
written, also when the run is stopped by SIGINT/SIGTERM: the stage that was running becomes an
error, child processes are stopped (see pipeline.proc) and cache entries are only ever
published complete. See docs/architecture.md.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import compiled, kcidb, lockdep, outdir, ready, stages
from . import series as series_mod
from .apply import worktree_key
from .boot import BootBackend, BootSettings, QemuBoot, settings_for
from .cache import Cache, default_cache_root
from .context import RunContext, VariantContext
from .errors import BadInput, InternalError, PipelineError, StageFailed
from .interrupts import Signals
from .job import PROJECT_ROOT, Job, Variant
from .junit import write_junit, write_summary
from .kselftest import stage as kselftest_stage
from .log import Log, fmt_duration
from .results import ERROR, FAILED, Case, RunReport, Stage, VariantReport
from .tree import Tree, prepare_tree


def default_backend() -> BootBackend:
    """The boot back end of `pipeline run`: QEMU (the runner's tests put a fake here)."""
    return QemuBoot()


def held(run: RunContext, variant: Variant) -> set[str]:
    """The stage conditions (pipeline.stages.conditions) that hold for a variant."""
    job = run.job
    return stages.conditions(
        uses_series=bool(variant.series and job.series), build_only=run.build_only,
        kselftest=job.kselftest.enabled and variant.name in job.kselftest.variants)


# --- one variant ------------------------------------------------------------------------------

def run_variant(run: RunContext, variant: Variant, tree: Tree,
                series: series_mod.Series | None) -> VariantContext:
    """Every stage of one variant (its report is appended to the run's)."""
    series = series if variant.series else None
    job = run.job
    vr = VariantReport(variant.name, {
        "tree": job.tree, "tree_version": tree.version, "tree_commit": tree.commit,
        "series": f"{series.name} ({series.short})" if series else "none",
        "base_config": job.base_config,
        "fragments": ", ".join(str(p) for p in job.kconfig + variant.kconfig_extra),
        "accel": run.accel or job.qemu.accel, "qemu_version": "", "config_hash": ""})
    run.report.variants.append(vr)
    out = job.out / variant.name   # the previous run's files: cleared by outdir.start_run
    out.mkdir(parents=True, exist_ok=True)
    src_key = f"{tree.key}-baseline" if series is None else worktree_key(tree, series)
    ctx = VariantContext(run, variant, tree, series, vr, out, src_key,
                         src=tree.checkout if series is None else None)
    run.log(f"variant {variant.name}: " + (f"series {series.name} on {tree.version}"
                                            if series else f"baseline {tree.version}"))
    if run.reuse_ready:
        ready.reuse(ctx)
    stages.run_stages(ctx, stages.planned(held(run, variant)))
    return ctx


# --- the whole run ----------------------------------------------------------------------------

def run_job(job: Job, log: Log | None = None, build_only: bool = False,
            tree: Tree | None = None, backend: BootBackend | None = None) -> int:
    """Run every variant of `job`; returns the exit code (pipeline.status.ExitCode).
    `build_only` stops each variant after its build (OUT/<variant>/bzImage). `tree` is a tree
    the caller already prepared (pipeline bisect), used instead of the job's tree spec."""
    return run_job_report(job, log, build_only, tree, backend).exit_code()


def _context(job: Job, log: Log, backend: BootBackend | None, build_only: bool = False,
             reuse_ready: bool = False) -> RunContext:
    cache = Cache(job.cache_dir or default_cache_root())
    return RunContext(job, cache, log, RunReport(started=time.time()),
                      backend or default_backend(), build_only=build_only,
                      reuse_ready=reuse_ready)


def run_job_report(job: Job, log: Log | None = None, build_only: bool = False,
                   tree: Tree | None = None, backend: BootBackend | None = None) -> RunReport:
    """run_job(), returning the whole report (OUT/junit.xml and summary.json are written)."""
    log = log or Log()
    run = _context(job, log, backend, build_only=build_only)
    start = time.monotonic()
    signals = Signals()
    # Checks that need no work: the series exists (its port is picked once the tree's
    # version is known).
    uses = any(v.series for v in job.variants) and bool(job.series)
    choice = series_mod.locate(job.series, PROJECT_ROOT) if uses and job.series else None
    outdir.start_run(job.out, [v.name for v in job.variants], log)
    log(f"job {job.source}: tree {job.tree}, series {job.series or 'none'}, variants "
        f"{', '.join(v.name for v in job.variants)}; out {job.out}; cache {run.cache.root}")
    with signals.installed():
        try:
            try:
                tree, series = _prepare(run, tree, choice)
            except PipelineError as exc:
                log(f"error: {exc.message}")
                if isinstance(exc, BadInput):
                    run.report.bad_input = exc.message
                _early_failure(run, exc)
                _finish(run, start)
                return run.report
            for variant in job.variants:
                run_variant(run, variant, tree, series)
        except KeyboardInterrupt:
            _record_interrupt(run, signals.name or "SIGINT")
        _finish(run, start)
        return run.report


def _prepare(run: RunContext, tree: Tree | None,
             choice: series_mod.SeriesChoice | None) -> tuple[Tree, series_mod.Series | None]:
    """The tree (unless the caller prepared it) and the series port for its version."""
    t0 = time.monotonic()
    if tree is None:
        tree = prepare_tree(run.job.tree, run.cache, run.log, run.job.tree_sha256)
    run.log(f"tree {tree.spec}: ok ({fmt_duration(time.monotonic() - t0)}), "
            f"kernel {tree.version}")
    run.tree = tree
    series = series_mod.pick(choice, tree.version) if choice else None
    run.series = series
    if series is not None:
        run.log(f"series {series.name}: {series.source} ({len(series.patches)} patches, "
                f"{series.short})")
    return tree, series


def _early_failure(run: RunContext, exc: PipelineError) -> None:
    """The tree or the series failed: every variant's first stage gets the error."""
    for variant in run.job.variants:
        vr = VariantReport(variant.name, {"tree": run.job.tree})
        names = stages.placeholders(held(run, variant))
        vr.stages.append(Stage(names[0], [Case(names[0], ERROR, message=exc.message,
                                               details=exc.details)]))
        stages.fill_skipped(vr.stages, names, f"not run: {exc.message}")
        run.report.variants.append(vr)


def _record_interrupt(run: RunContext, name: str) -> None:
    run.report.interrupted = name
    run.log(f"interrupted by {name}: stopping, writing a partial report")
    reason = f"not run: interrupted by {name}"
    if run.current is not None:
        vr, stage_name, started = run.current
        stage = next((s for s in vr.stages if s.name == stage_name), None)
        if stage is None:
            stage = Stage(stage_name)
            vr.stages.append(stage)
        stage.cases.append(Case(stage_name, ERROR, time.monotonic() - started,
                                message=f"interrupted by {name}"))
    reports = {vr.name: vr for vr in run.report.variants}
    for variant in run.job.variants:
        names = stages.placeholders(held(run, variant))
        found = reports.get(variant.name)
        if found is None:
            found = VariantReport(variant.name, {"tree": run.job.tree})
            if not reports:  # stopped while the tree was prepared: the first stage is the error
                found.stages.append(Stage(names[0], [Case(
                    names[0], ERROR, message=f"interrupted by {name} while preparing tree "
                                             f"{run.job.tree}")]))
            run.report.variants.append(found)
        stages.fill_skipped(found.stages, names, reason)


def _run_report(run: RunContext, what: str, report: Callable[[RunContext], None],
                where: Callable[[Stage], None]) -> None:
    """A run-level report; a bug in it is an internal error (exit 4) and an error case that
    `where` puts into the report, never a run without JUnit."""
    try:
        report(run)
    except Exception as exc:  # noqa: BLE001 - a bug: report it, never end without JUnit
        detail = traceback.format_exc()
        run.log(detail)
        message = f"internal error: {type(exc).__name__}: {exc}"
        run.report.internal_error = run.report.internal_error or f"{what}: {message}"
        where(Stage(what.replace(" ", "-"), [Case(what, ERROR, message=message,
                                                  details=detail)]))


def _finish(run: RunContext, start: float) -> int:
    def per_kselftest_variant(stage: Stage) -> None:
        for vr in run.report.variants:
            if vr.name in run.kselftest.results or vr is run.report.variants[-1]:
                vr.stages.append(Stage(stage.name, list(stage.cases)))

    def compiled_suite(stage: Stage) -> None:
        run.report.suites.append(Stage(compiled.SUITE, stage.cases))

    _run_report(run, "kselftest report", kselftest_stage.report, per_kselftest_variant)
    _run_report(run, "compiled report", compiled.report, compiled_suite)
    lockdep.report(run)   # its own bugs become an error case of its stage
    _write_reports(run, start)
    code = run.report.exit_code()
    for vr in run.report.variants:
        line = ", ".join(f"{s.name} {s.status}" for s in vr.stages)
        run.log(f"variant {vr.name}: {line}")
    run.log.notice(f"wrote {run.job.out / 'junit.xml'}, summary.json and {kcidb.FILE_NAME}; "
                   f"exit {code} ({fmt_duration(time.monotonic() - start)})")
    return code


def _write_reports(run: RunContext, start: float) -> None:
    run.report.duration = time.monotonic() - start
    _write_kcidb(run)
    write_junit(run.report, run.job.out / "junit.xml")
    write_summary(run.report, run.job.out / "summary.json")
    outdir.finish_run(run.job.out)


def _write_kcidb(run: RunContext) -> None:
    """OUT/kcidb.json; a bug here is an internal error (exit 4) but never costs the JUnit."""
    tree, job = run.tree, run.job
    try:
        bench, bench_source = kcidb.find_bench(job.out)
        info = kcidb.RunInfo(
            out=job.out, tree_spec=job.tree, start_time=run.report.started or time.time(),
            tree_commit=tree.commit if tree else "", tree_version=tree.version if tree else "",
            tarball_sha256=job.tree_sha256 or "",
            series=kcidb.series_info(run.series) if run.series is not None else None,
            bench=bench, bench_source=bench_source, compiler=kcidb.gcc_version)
        kcidb.write(run.report, info, job.out / kcidb.FILE_NAME)
    except Exception as exc:  # noqa: BLE001 - a bug: report it, never end without JUnit
        message = f"internal error while writing {kcidb.FILE_NAME}: {type(exc).__name__}: {exc}"
        run.log(f"{message}\n{traceback.format_exc()}")
        run.report.internal_error = run.report.internal_error or message


# --- one kernel for pipeline shell / exec -------------------------------------------------------

@dataclass
class BuiltKernel:
    """A variant's kernel, built (or found in the cache) by the stages of a run."""

    image: Path                   # OUT/<variant>/bzImage
    variant: Variant
    settings: BootSettings        # the machine the tests boot
    version: str                  # the tree's kernel version


def build_variant(job: Job, log: Log) -> BuiltKernel:
    """tree, apply, configure and build of the job's one variant: the very stages of
    run_job (so the same cache entries: a kernel a run built is reused, a no-op build), but
    no reports are written and nothing is booted. The first failed stage raises its error
    (StageFailed / BadInput, InternalError for a bug), with its details."""
    if len(job.variants) != 1:
        raise BadInput(f"build_variant: one variant, not {len(job.variants)}")
    variant = job.variants[0]
    run = _context(job, log, None, build_only=True, reuse_ready=True)
    uses_series = bool(variant.series and job.series)
    choice = series_mod.locate(job.series, PROJECT_ROOT) if uses_series and job.series \
        else None
    tree, series = _prepare(run, None, choice)
    ctx = run_variant(run, variant, tree, series)
    for stage in ctx.report.stages:
        bad = next((c for c in stage.cases if c.status in (FAILED, ERROR)), None)
        if bad is not None:
            said = bad.message.startswith((f"{stage.name} ", f"{stage.name}:"))
            message = bad.message if said else f"{stage.name} failed: {bad.message}"
            if run.report.internal_error:
                raise InternalError(message, bad.details)
            raise StageFailed(message, bad.details)
    return BuiltKernel(job.out / variant.name / "bzImage", variant,
                       settings_for(job, variant, run.accel), tree.version)
