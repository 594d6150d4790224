"""The stages of a variant, in order, as data, and the loop that runs them.

Each stage is a function of its own module that takes the variant's context
(pipeline.context.VariantContext), does its work, stores what it makes on the context and
returns its JUnit cases. What it needs and makes are context fields: a stage whose needs are
missing is not run (reported as skipped, with the reason the earlier stage failed), so a
failed build skips boot and guest, and a boot that produced a session still lets the guest
tests be reported. See docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from . import apply, bootstage, build, compiled, kconfig
from .context import VariantContext
from .errors import PipelineError
from .kselftest import stage as kselftest_stage
from .results import ERROR, FAILED, SKIPPED, Case, Stage

StageFn = Callable[[VariantContext], list[Case]]


@dataclass(frozen=True)
class StageSpec:
    name: str
    run: StageFn
    needs: tuple[str, ...]        # VariantContext fields that must be set
    makes: tuple[str, ...]        # fields it sets when it succeeds
    only: tuple[str, ...] = ()    # conditions (see conditions()) that must all hold
    sources_lock: bool = False    # runs under the lock of its variant's sources
    placeholder: bool = True      # reported as skipped when it does not run
    stops: bool = True            # a failure is logged as the reason later stages do not run


STAGES: tuple[StageSpec, ...] = (
    StageSpec("apply", apply.apply_stage, needs=(), makes=("src",), only=("series",),
              sources_lock=True),
    StageSpec("configure", kconfig.configure_stage, needs=("src",), makes=("config",),
              sources_lock=True),
    StageSpec("build", build.build_stage, needs=("config",), makes=("kernel",),
              sources_lock=True),
    # Every hunk of the series compiled in this variant? Under the sources lock: it reads the
    # worktree and the build folder the build just used. Not reported when it never ran.
    StageSpec("compiled", compiled.compiled_stage, needs=("src", "config", "kernel"), makes=(),
              only=("series",), sources_lock=True, placeholder=False, stops=False),
    StageSpec("boot", bootstage.boot_stage, needs=("kernel",), makes=("boot",), only=("boots",)),
    StageSpec("guest", bootstage.guest_stage, needs=("boot",), makes=(), only=("boots",),
              stops=False),
    StageSpec("kselftest-build", kselftest_stage.build_stage, needs=("src", "boot"),
              makes=("selftests",), only=("boots", "kselftest"), placeholder=False),
    StageSpec("kselftest-run", kselftest_stage.run_stage, needs=("kernel", "selftests"),
              makes=(), only=("boots", "kselftest"), placeholder=False),
)


def conditions(uses_series: bool, build_only: bool, kselftest: bool) -> set[str]:
    """The conditions of StageSpec.only that hold for a variant."""
    held = set()
    if uses_series:
        held.add("series")
    if not build_only:
        held.add("boots")
    if kselftest:
        held.add("kselftest")
    return held


def planned(held: set[str]) -> list[StageSpec]:
    """The stages a variant runs, given the conditions that hold for it."""
    return [s for s in STAGES if set(s.only) <= held]


def placeholders(held: set[str]) -> list[str]:
    """The stage names a report shows for a variant even when they never ran."""
    return [s.name for s in planned(held) if s.placeholder]


def fill_skipped(stages: list[Stage], names: list[str], reason: str) -> None:
    done = {s.name for s in stages}
    for name in names:
        if name not in done:
            stages.append(Stage(name, [Case(name, SKIPPED, message=reason)], ran=False))


def run_stages(ctx: VariantContext, specs: list[StageSpec]) -> None:
    """Run `specs` in order on one variant; the sources lock is held across consecutive
    stages that need it."""
    with contextlib.ExitStack() as locked:
        holding = False
        for spec in specs:
            if spec.sources_lock and not holding and spec.name not in ctx.reused:
                locked.enter_context(ctx.cache.lock(f"src-{ctx.src_key}",
                                                    f"sources {ctx.src_key}", ctx.log))
                holding = True
            elif not spec.sources_lock and holding:
                locked.close()
                holding = False
            if spec.name in ctx.reused:
                continue
            missing = [n for n in spec.needs if getattr(ctx, n) is None]
            if missing:
                if spec.placeholder:
                    fill_skipped(ctx.report.stages, [spec.name],
                                 f"not run: {ctx.stopped or 'no ' + missing[0]}")
                continue
            execute(ctx, spec)


def execute(ctx: VariantContext, spec: StageSpec) -> Stage:
    """Run one stage: time it, log its line, turn a PipelineError into a failed case and a
    bug into an error case; a stage that did not pass gives the reason later stages are
    skipped."""
    run, vr = ctx.run, ctx.report
    stage = Stage(spec.name, started=time.time())
    vr.stages.append(stage)
    start = time.monotonic()
    run.current = (vr, spec.name, start)
    try:
        stage.cases.extend(spec.run(ctx))
    except PipelineError as exc:
        stage.cases.append(Case(spec.name, FAILED, time.monotonic() - start, exc.message,
                                exc.details))
        if exc.details:
            run.log(exc.details)
    except Exception as exc:  # noqa: BLE001 - a bug: report it, never end without JUnit
        detail = traceback.format_exc()
        message = f"internal error: {type(exc).__name__}: {exc}"
        stage.cases.append(Case(spec.name, ERROR, time.monotonic() - start, message, detail))
        run.report.internal_error = run.report.internal_error or f"{vr.name} {spec.name}: " \
                                                                 f"{message}"
        run.log(detail)
    # A stage whose work ran elsewhere (the guest tests run in the boot stage's session)
    # takes at least as long as its cases. Not reached on KeyboardInterrupt: `run.current`
    # then tells which stage was interrupted.
    stage.duration = max(time.monotonic() - start, sum(c.duration for c in stage.cases))
    run.current = None
    bad = next((c for c in stage.cases if c.status in (FAILED, ERROR)), None)
    run.log.stage(vr.name, spec.name, "ok" if bad is None else "FAILED", stage.duration,
                  bad.message if bad else "")
    # What it makes, a stage sets only as far as it succeeded (a boot that failed may still
    # hand on the session of the tests that ran).
    if bad is not None and spec.stops and not ctx.stopped:
        # "build failed: <first error>" already says which stage failed: say it once.
        said = bad.message.startswith((f"{spec.name} ", f"{spec.name}:"))
        ctx.stopped = bad.message if said else f"{spec.name} failed: {bad.message}"
    return stage
