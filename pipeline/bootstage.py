"""The boot and guest stages: one guest session of the variant's kernel runs the job's guest
tests (pipeline.boot does the QEMU part, through the run's boot back end); the boot stage
reports the session (booted, completed, splats outside tests), the guest stage a case per
guest test, also when the session broke off (the tests that did not run are errors)."""

from __future__ import annotations

import sys
from pathlib import Path

from .boot import settings_for
from .context import GuestSession, VariantContext
from .results import ERROR, FAILED, PASSED, SKIPPED, Case

OUTCOMES = {"passed": PASSED, "failed": FAILED, "skipped": SKIPPED}


def boot_stage(ctx: VariantContext) -> list[Case]:
    """Boot the kernel once (the accelerator is probed on the run's first boot); makes
    `boot` whenever QEMU ran, so the guest stage reports what the session got to."""
    assert ctx.kernel is not None
    run, vr = ctx.run, ctx.report
    settings = settings_for(ctx.job, ctx.variant, run.accel)
    if settings.accel == "auto":
        run.accel = run.backend.probe_accel(ctx.kernel, settings, ctx.log)
        ctx.log(f"  accel: {run.accel} (probed once for this run)")
        settings.accel = run.accel
    result = run.backend.run_guest(ctx.kernel, list(ctx.job.tests), ctx.out, settings,
                                   Path(sys.executable), ctx.log)
    ctx.boot = result
    vr.properties["accel"] = result.accel
    vr.properties["qemu_version"] = result.qemu_version
    booted = Case("kernel boots", PASSED, result.duration)
    cases = [booted]
    if not result.booted:
        booted.status = FAILED
        booted.message = result.failure or "the guest did not reach the test runner"
        booted.details = result.console_tail
    else:
        session = Case("test session completes", PASSED)
        if not result.completed:
            session.status = FAILED
            session.message = result.failure or "the test session did not finish"
            session.details = result.console_tail
        cases.append(session)
    if result.splats:
        cases.append(Case("no kernel splats outside tests", FAILED,
                          message=result.splats[0].splitlines()[0],
                          details="\n\n".join(result.splats)))
    if not (result.booted and result.completed) and result.command:
        ctx.log.rerun(result.command)
    return cases


def guest_stage(ctx: VariantContext) -> list[Case]:
    """A case per guest test of the boot stage's session, classname
    <variant>.guest.<module path> (<variant>: the name of the variant's report)."""
    assert ctx.boot is not None
    ctx.run.guest_sessions[ctx.report.name] = GuestSession(
        ctx.out / "guest", ctx.boot.completed, ctx.boot.failure)
    cases = []
    for test in ctx.boot.tests:
        module, _, name = test.nodeid.partition("::")
        classname = f"{ctx.report.name}.guest.{module.removesuffix('.py').replace('/', '.')}"
        cases.append(Case(name or module, OUTCOMES.get(test.outcome, ERROR), test.duration,
                          test.message, test.details, stdout=test.kernel_log,
                          classname=classname))
    if not cases:
        failure = ctx.boot.failure
        cases.append(Case("guest tests", ERROR, message="no guest test reported a result"
                          + (f" ({failure})" if failure else "")))
    for case in cases:
        if case.status in (FAILED, ERROR):
            ctx.log(f"  guest test {case.classname}::{case.name}: {case.status}: "
                    f"{case.message}")
    return cases
