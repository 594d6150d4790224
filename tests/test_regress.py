"""pipeline.kselftest.regress: verdicts, table and JUnit rows; synthetic and real 6.1 inputs."""

import random
from pathlib import Path

import pytest

from pipeline.kselftest import regress
from pipeline.kselftest import suite as kselftest
from pipeline.kselftest.suite import ERROR, FAILED, PASSED, SKIPPED, CaseResult, Selftest

FIXTURES = Path(__file__).parent / "fixtures" / "ktap"


def r(sub: str, status: str, msg: str = "") -> CaseResult:
    return CaseResult("cgroup", "test_x", sub, status, msg)


@pytest.mark.parametrize("base,pat,want", [
    (PASSED, FAILED, regress.REGRESSION),
    (PASSED, ERROR, regress.REGRESSION),
    (SKIPPED, FAILED, regress.REGRESSION),
    (None, FAILED, regress.REGRESSION),
    (PASSED, None, regress.REGRESSION),
    (FAILED, FAILED, regress.PRE_EXISTING),
    (ERROR, FAILED, regress.PRE_EXISTING),
    (FAILED, PASSED, regress.FIXED),
    (PASSED, SKIPPED, regress.NEWLY_SKIPPED),
    (SKIPPED, SKIPPED, regress.SKIP),
    (FAILED, None, regress.MISSING),
    (PASSED, PASSED, regress.PASS),
])
def test_verdicts(base, pat, want):
    b = r("a", base) if base else None
    p = r("a", pat) if pat else None
    assert regress.verdict(b, p) == want


def test_pre_existing_failures_do_not_hide_a_regression():
    base = [r("old", FAILED), r("new", PASSED), r("s", SKIPPED, "no swap")]
    pat = [r("old", FAILED), r("new", FAILED, "boom"), r("s", SKIPPED, "no swap")]
    comp = regress.compare(base, pat)
    assert comp.failed
    assert [x.key for x in comp.regressions] == ["test_x: new"]
    assert [x.key for x in comp.by_verdict(regress.PRE_EXISTING)] == ["test_x: old"]
    assert comp.rows[0].verdict == regress.REGRESSION  # regressions lead the table


def test_only_pre_existing_is_not_a_failure():
    comp = regress.compare([r("old", FAILED)], [r("old", FAILED)])
    assert not comp.failed and comp.counts() == {regress.PRE_EXISTING: 1}


def test_markdown_table(tmp_path):
    comp = regress.compare([r("a|b", PASSED)], [r("a|b", FAILED, "x\ny")])
    path = regress.write_markdown(comp, tmp_path)
    text = path.read_text()
    assert path.name == "kselftest-regressions.md"
    assert "**FAILED**: 1 regression(s)" in text
    assert "| cgroup | test_x: a\\|b | passed | failed: x y | **regression** |" in text


def test_junit_rows_label_sides_and_keep_skip_reasons():
    base = [r("a", PASSED), r("b", FAILED), r("s", SKIPPED, "no swap")]
    pat = [r("b", FAILED, "still"), r("s", SKIPPED, "no swap")]
    comp = regress.compare(base, pat)
    b_rows = regress.junit_rows(comp, "baseline", "baseline")
    p_rows = {res.key: (cls, res) for cls, res in regress.junit_rows(comp, "patched", "patched")}
    assert {cls for cls, _ in b_rows} == {"baseline.kselftest.cgroup"}
    assert p_rows["test_x: a"][1].status == FAILED  # passed on baseline, missing on patched
    assert "missing on patched" in p_rows["test_x: a"][1].message
    assert p_rows["test_x: b"][1].message.startswith("[pre-existing, baseline: failed]")
    assert p_rows["test_x: s"][1].status == SKIPPED and p_rows["test_x: s"][1].message == "no swap"
    assert p_rows["test_x: a"][0] == "patched.kselftest.cgroup"


def test_real_6_1_baseline_vs_patched():
    tests = [Selftest("cgroup", n) for n in (
        "test_memcontrol", "test_kmem", "test_core", "test_freezer", "test_kill", "test_cpu",
        "test_stress.sh", "test_cpuset_prs.sh")]

    def results(name: str) -> list[CaseResult]:
        text = (FIXTURES / name).read_text()
        return kselftest.results_of(kselftest.parse_console(text, tests))

    comp = regress.compare(results("b61-console-excerpt.log"), results("p61-console-excerpt.log"))
    # The patched run's test_kmem hit the 45 s timeout before test_percpu_basic, which failed
    # on baseline: missing, not a regression. Nothing that passed on baseline failed.
    assert not comp.failed
    missing = comp.by_verdict(regress.MISSING)
    assert [x.key for x in missing] == ["test_kmem: test_percpu_basic"]
    assert len(comp.by_verdict(regress.PASS)) == 31

    # Turn one baseline pass into a patched failure: the comparison must catch it.
    pat = results("p61-console-excerpt.log")
    for res in pat:
        if res.key == "test_core: test_cgcore_destroy":
            res.status = FAILED
    comp = regress.compare(results("b61-console-excerpt.log"), pat)
    assert [x.key for x in comp.regressions] == ["test_core: test_cgcore_destroy"]


# ---- statistics ---------------------------------------------------------------------------

def test_fisher_one_sided_matches_hand_computed_values():
    # 8/8 vs 0/8 failures: one table of C(16, 8) = 12870 is as extreme.
    assert regress.fisher_one_sided(8, 8, 0, 8) == pytest.approx(1 / 12870)
    assert regress.fisher_one_sided(5, 5, 0, 5) == pytest.approx(1 / 252)
    assert regress.fisher_one_sided(4, 4, 0, 4) == pytest.approx(1 / 70)
    # 3 of 4 vs 1 of 4: tables with >= 3 of the 4 failures in A: (C(4,3)C(4,1) + 1) / C(8,4)
    assert regress.fisher_one_sided(3, 4, 1, 4) == pytest.approx(17 / 70)
    assert regress.fisher_one_sided(0, 5, 5, 5) == 1.0            # the wrong direction
    assert regress.fisher_one_sided(2, 2, 0, 0) == 1.0            # nothing to compare with
    with pytest.raises(ValueError):
        regress.fisher_one_sided(3, 2, 0, 2)


def test_tally_counts_text():
    t = regress.Tally(regress.REGRESSION, patched_runs=8, patched_passes=0,
                      baseline_runs=8, baseline_passes=8)
    assert t.counts() == "patched 0/8, baseline 8/8 passed on rerun, p<0.0001"
    t = regress.Tally(regress.REGRESSION, 5, 0, 5, 5)
    assert t.counts() == "patched 0/5, baseline 5/5 passed on rerun, p=0.0040"
    assert regress.Tally(regress.REGRESSION, 4, 3, 4, 3).counts().endswith("p=0.79")


def simulate(p_fail_patched: float, p_fail_baseline: float, seed: int,
             policy: regress.RerunPolicy | None = None, seconds_per_boot: float = 60.0):
    """One job: the first run saw the subtest fail on patched and pass on baseline; the reruns
    fail with the given probabilities. A fake clock advances per boot."""
    rng = random.Random(seed)
    clock = [0.0]
    boots = []

    def rerun(side, programs, n):
        assert programs == ["test_x"]
        boots.append((side, n))
        clock[0] += seconds_per_boot
        p = p_fail_patched if side == regress.PATCHED else p_fail_baseline
        return [r("s", FAILED if rng.random() < p else PASSED), r("steady", PASSED)]

    comp = regress.decide([r("s", PASSED), r("steady", PASSED)],
                          [r("s", FAILED, "isn't frozen"), r("steady", PASSED)],
                          rerun, policy or regress.RerunPolicy(), clock=lambda: clock[0])
    row = next(x for x in comp.rows if x.key == "test_x: s")
    return row, comp, boots


def test_a_subtest_failing_30_percent_on_both_kernels_is_not_a_regression():
    verdicts = [simulate(0.3, 0.3, seed)[0].verdict for seed in range(100)]
    assert verdicts.count(regress.REGRESSION) <= 1
    assert set(verdicts) <= {regress.FLAKY, regress.REGRESSION}


def test_a_subtest_always_failing_on_patched_only_is_a_regression_within_the_budget():
    policy = regress.RerunPolicy()
    for seed in range(100):
        row, comp, boots = simulate(1.0, 0.0, seed, policy)
        assert row.verdict == regress.REGRESSION
        assert comp.reruns <= policy.max_runs and comp.rerun_seconds <= policy.budget
    # Decided as soon as it is significant: 5 reruns, p = 1/C(10,5) = 0.004 < 0.01.
    assert row.tally.counts() == "patched 0/5, baseline 5/5 passed on rerun, p=0.0040"
    assert boots[:2] == [(regress.PATCHED, 1), (regress.BASELINE, 1)]
    assert len(boots) == 10


def test_a_first_failure_that_never_comes_back_stops_early_as_flaky():
    row, comp, _boots = simulate(0.0, 0.0, 1)
    assert row.verdict == regress.FLAKY
    # After 2 passing reruns on patched, 6 more failing ones could not reach p < 0.01.
    assert comp.reruns < regress.RerunPolicy().max_runs
    assert "cannot become significant" in row.tally.why


def test_time_budget_ends_the_reruns():
    policy = regress.RerunPolicy(max_runs=8, budget=150.0)
    row, comp, boots = simulate(1.0, 0.0, 3, policy, seconds_per_boot=60.0)
    # Round 1 (120 s), round 2 starts at 120 s < 150 s, then the budget is spent at 240 s.
    assert comp.reruns == 2 and len(boots) == 4
    assert row.verdict == regress.FLAKY and "budget" in row.tally.why


def test_no_reruns_keeps_the_first_run_verdict():
    row, _comp, boots = simulate(1.0, 0.0, 3, regress.RerunPolicy(max_runs=0))
    assert row.verdict == regress.REGRESSION and row.tally is None and not boots


def test_a_fix_is_tested_in_the_other_direction():
    calls = []

    def rerun(side, programs, n):
        calls.append(side)
        return [r("s", FAILED if side == regress.BASELINE else PASSED)]

    comp = regress.decide([r("s", FAILED)], [r("s", PASSED)], rerun)
    assert comp.rows[0].verdict == regress.FIXED
    assert comp.rows[0].tally.counts() == "patched 5/5, baseline 0/5 passed on rerun, p=0.0040"


def test_flaky_rows_in_junit_table_and_summary():
    row, comp, _ = simulate(0.3, 0.3, 7)
    assert row.verdict == regress.FLAKY
    rows = {res.key: res for _c, res in regress.junit_rows(comp, "patched", "patched")}
    flaky = rows["test_x: s"]
    assert flaky.status == PASSED                       # not a failure ...
    assert flaky.message.startswith("flaky: failed on the first run")   # ... but it says so
    assert row.tally.counts() in flaky.message
    assert flaky.flaky == "first run: isn't frozen"
    base_rows = {res.key: res for _c, res in regress.junit_rows(comp, "baseline", "baseline")}
    assert base_rows["test_x: s"].status == PASSED and "flaky" in base_rows["test_x: s"].message
    table = regress.markdown(comp)
    assert f"| flaky ({row.tally.counts()}) |" in table
    summary = regress.summary_rows(comp)
    assert summary[0]["verdict"] == regress.FLAKY and summary[0]["counts"] == row.tally.counts()
    assert summary[0]["reruns"]["patched_runs"] == row.tally.patched_runs


def test_regression_message_carries_the_counts():
    _row, comp, _ = simulate(1.0, 0.0, 0)
    rows = {res.key: res for _c, res in regress.junit_rows(comp, "patched", "patched")}
    assert rows["test_x: s"].status == FAILED
    assert rows["test_x: s"].message == (
        "[regression, baseline: passed; patched 0/5, baseline 5/5 passed on rerun, "
        "p=0.0040] isn't frozen")
    assert "**regression** (patched 0/5, baseline 5/5 passed on rerun, p=0.0040)" in \
        regress.markdown(comp)


def test_runner_reruns_candidates_on_both_kernels(monkeypatch, tmp_path):
    from pipeline.context import SelftestKernel
    from pipeline.kselftest import stage as kselftest_stage

    calls: list[tuple[Path, list[str]]] = []

    def fake_phase(kernel, build, out_dir, settings, python, log, timeout_scale=1.0,
                   only=None, backend=None):
        calls.append((out_dir, only))
        status = FAILED if str(kernel) == "patched" else PASSED
        return kselftest.KselftestPhase(None, [], [r("real", status), r("env", FAILED)])

    monkeypatch.setattr(kselftest, "run_phase", fake_phase)
    patched = SelftestKernel(Path("patched"), None, tmp_path / "p", None, 6.0)
    baseline = SelftestKernel(Path("baseline"), None, tmp_path / "b", None, 6.0)
    rerun = kselftest_stage.rerunner(lambda _m: None, patched, baseline)
    base = [r("real", PASSED), r("env", PASSED), CaseResult("cgroup", "test_ok", "", PASSED)]
    first = [r("real", FAILED), r("env", FAILED), CaseResult("cgroup", "test_ok", "", PASSED)]
    comp = regress.decide(base, first, rerun)
    assert calls[:2] == [(tmp_path / "p" / "kselftest-rerun-1", ["test_x"]),
                         (tmp_path / "b" / "kselftest-rerun-1", ["test_x"])]
    assert [x.key for x in comp.regressions] == ["test_x: real"]
    assert [x.key for x in comp.by_verdict(regress.FLAKY)] == ["test_x: env"]
