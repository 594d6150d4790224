"""The kselftest stages of a variant and the run's kselftest report.

kselftest-build builds the tree's selftests (cached per sources); kselftest-run runs them in
a fresh boot of the variant's kernel and, on a variant other than baseline, reruns the
candidates on both kernels (regress.decide). Their JUnit cases are only about the work; the
cases per subtest, with the baseline vs patched verdicts and the known issues of the tree's
kernel, come from report() once every variant ran.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ..boot import BootBackend, settings_for
from ..context import RunContext, SelftestKernel, VariantContext
from ..job import KselftestSettings
from ..log import Logger
from ..results import PASSED, Case, Stage
from . import known_issues, regress
from . import suite as kselftest


def build_stage(ctx: VariantContext) -> list[Case]:
    """Build the job's selftest targets of the variant's sources; makes `selftests`."""
    assert ctx.src is not None
    targets = list(ctx.job.kselftest.targets)
    build = kselftest.build_selftests(ctx.src, ctx.cache.dir("kselftest") / ctx.src_key,
                                      targets, ctx.log)
    ctx.selftests = build
    return [Case(f"build {', '.join(targets)}", PASSED, build.duration,
                 message=f"{len(build.tests)} programs"
                 + (" (cached build)" if build.cached else ""))]


def run_stage(ctx: VariantContext) -> list[Case]:
    """Run the selftests in a fresh boot; a patched variant's candidates are rerun on both
    kernels as soon as the baseline's results exist."""
    assert ctx.kernel is not None and ctx.selftests is not None
    run, ks = ctx.run, ctx.job.kselftest
    settings = settings_for(ctx.job, ctx.variant, run.accel)
    here = SelftestKernel(ctx.kernel, ctx.selftests, ctx.out, settings,
                          ctx.variant.timeout_scale * ks.timeout_scale)
    t0 = time.monotonic()
    phase = kselftest.run_phase(here.kernel, here.build, ctx.out / "kselftest", settings,
                                Path(sys.executable), ctx.log, timeout_scale=here.scale,
                                backend=run.backend)
    case = Case(f"run {len(here.build.tests)} programs in a fresh boot", PASSED,
                time.monotonic() - t0)
    if not phase.boot.completed:
        # The programs that did not run are error cases of the kselftest report.
        case.message = f"session ended early: {phase.boot.failure or 'unknown'}"
    cases = [case]
    name, runs = ctx.variant.name, run.kselftest
    runs.results[name] = phase.results
    runs.kernels[name] = here
    base, base_kernel = runs.results.get("baseline"), runs.kernels.get("baseline")
    if name != "baseline" and base is not None and base_kernel is not None:
        t0 = time.monotonic()
        comp = regress.decide(base, phase.results,
                              rerunner(ctx.log, here, base_kernel, run.backend),
                              rerun_policy(ks), log=ctx.log)
        runs.comparisons[name] = comp
        if comp.reruns:
            cases.append(Case(
                f"rerun candidates ({comp.reruns} round(s) on both kernels)", PASSED,
                time.monotonic() - t0,
                message="; ".join(f"{r.key}: {r.verdict} ({r.tally.counts()})"
                                  for r in comp.rows if r.tally is not None)))
    return cases


def rerun_policy(ks: KselftestSettings) -> regress.RerunPolicy:
    return regress.RerunPolicy(max_runs=ks.retries, alpha=ks.alpha, budget=ks.rerun_budget)


def rerun_on(kernel: SelftestKernel, programs: list[str], n: int, log: Logger,
             backend: BootBackend | None = None) -> list[kselftest.CaseResult]:
    """One more boot of `kernel` running only `programs` (round `n` of the reruns)."""
    phase = kselftest.run_phase(kernel.kernel, kernel.build, kernel.out / f"kselftest-rerun-{n}",
                                kernel.settings, Path(sys.executable), log,
                                timeout_scale=kernel.scale, only=programs, backend=backend)
    return phase.results


def rerunner(log: Logger, patched: SelftestKernel, baseline: SelftestKernel,
             backend: BootBackend | None = None) -> regress.Rerun:
    """regress.decide's rerun: a fresh boot of one kernel running only `programs`. Under TCG
    on a shared 2-core machine timing-bound subtests (test_cgfreezer_ptrace, _migrate,
    test_cpucg_stats) fail now and then on either kernel, more often when the host is busy:
    the reruns alternate kernels so both are seen under the same load."""
    def rerun(side: str, programs: list[str], n: int) -> list[kselftest.CaseResult]:
        kernel = patched if side == "patched" else baseline
        return rerun_on(kernel, programs, n, log, backend)
    return rerun


def report(run: RunContext) -> None:
    """JUnit cases for every selftest subtest (a `kselftest` stage per variant that ran
    them), the baseline vs patched verdicts (table, summary.json), with the known issues of
    the tree's kernel applied."""
    runs = run.kselftest
    if not runs.results:
        return
    base = runs.results.get("baseline", [])
    all_known = known_issues.load()
    summary: dict[str, Any] = {"known_issues_file": all_known.source, "variants": {}}
    for vr in run.report.variants:
        results = runs.results.get(vr.name)
        if results is None:
            continue
        version = vr.properties.get("tree_version", "")
        known = all_known.for_kernel(version) if version else all_known
        side = "baseline" if vr.name == "baseline" else "patched"
        if side == "baseline":
            # Flaky or fixed calls from the reruns belong to the baseline's cases too.
            comp = next(iter(runs.comparisons.values()), None) or regress.compare(base, base)
        else:
            comp = runs.comparisons.get(vr.name) or regress.compare(base, results)
        passing = regress.known_passing(comp, side, known)
        info: dict[str, Any] = {"known_issues_passed": passing}
        if side != "baseline" and "baseline" in runs.results:
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

