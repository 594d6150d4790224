"""pipeline.regress: verdicts, table and JUnit rows; synthetic and real 6.1 inputs."""

from pathlib import Path

import pytest

from pipeline import kselftest, regress
from pipeline.kselftest import ERROR, FAILED, PASSED, SKIPPED, CaseResult, Selftest

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


def test_a_regression_that_passes_on_a_retry_is_flaky_not_a_failure():
    base = [r("migrate", PASSED), r("stats", PASSED), r("real", PASSED)]
    first = [r("migrate", FAILED, "isn't frozen"), r("stats", FAILED), r("real", FAILED)]
    comp = regress.compare(base, first)
    assert sorted(x.key for x in comp.regressions) == [
        "test_x: migrate", "test_x: real", "test_x: stats"]
    assert regress.regressed_programs(comp) == ["test_x"]
    retries = [[r("migrate", PASSED), r("stats", FAILED), r("real", FAILED)],
               [r("migrate", FAILED), r("stats", PASSED), r("real", FAILED)]]
    merged = regress.merge_retries(first, comp, retries)
    final = regress.compare(base, merged)
    assert [x.key for x in final.regressions] == ["test_x: real"]   # fails every time
    assert sorted(x.key for x in final.by_verdict(regress.FLAKY)) == [
        "test_x: migrate", "test_x: stats"]
    stats = next(x for x in merged if x.subtest == "stats")
    assert stats.retried == "failed on the first run, passed on retry 2 of 2"
    rows = {res.key: res for _c, res in regress.junit_rows(final, "patched", "patched")}
    assert rows["test_x: migrate"].status == PASSED
    assert rows["test_x: migrate"].message.startswith("[flaky: failed on the first run")
    assert rows["test_x: real"].status == FAILED
    assert "| flaky |" in regress.markdown(final)


def test_retries_do_not_touch_pre_existing_failures():
    base, first = [r("old", FAILED)], [r("old", FAILED)]
    merged = regress.merge_retries(first, regress.compare(base, first), [[r("old", PASSED)]])
    assert regress.compare(base, merged).counts() == {regress.PRE_EXISTING: 1}


def test_runner_retries_regressed_programs_on_both_kernels(monkeypatch, tmp_path):
    import types

    from pipeline import runner
    from pipeline.job import KselftestSettings

    calls: list[tuple[Path, list[str]]] = []
    runs = {  # (kernel, retry) -> results of that fresh boot
        ("patched", 1): [r("migrate", FAILED), r("real", FAILED), r("env", FAILED)],
        ("baseline", 1): [r("migrate", PASSED), r("real", PASSED), r("env", PASSED)],
        ("patched", 2): [r("migrate", PASSED), r("real", FAILED), r("env", FAILED)],
        ("baseline", 2): [r("migrate", PASSED), r("real", PASSED), r("env", FAILED)],
    }

    def fake_phase(kernel, build, out_dir, settings, python, log, timeout_scale=1.0,
                   only=None):
        calls.append((out_dir, only))
        return kselftest.KselftestPhase(None, [], runs[(str(kernel), int(out_dir.name[-1]))])

    monkeypatch.setattr(kselftest, "run_phase", fake_phase)
    run = types.SimpleNamespace(job=types.SimpleNamespace(kselftest=KselftestSettings()),
                                log=lambda _m: None)
    patched = runner._KselftestKernel(Path("patched"), None, tmp_path / "p", None, 6.0)
    baseline = runner._KselftestKernel(Path("baseline"), None, tmp_path / "b", None, 6.0)
    base = [r("migrate", PASSED), r("real", PASSED), r("env", PASSED),
            CaseResult("cgroup", "test_ok", "", PASSED)]
    first = [r("migrate", FAILED), r("real", FAILED), r("env", FAILED),
             CaseResult("cgroup", "test_ok", "", PASSED)]
    merged = runner._retry_regressions(run, patched, baseline, base, first)
    assert calls == [(tmp_path / "p" / "kselftest-retry-1", ["test_x"]),
                     (tmp_path / "b" / "kselftest-retry-1", ["test_x"]),
                     (tmp_path / "p" / "kselftest-retry-2", ["test_x"]),
                     (tmp_path / "b" / "kselftest-retry-2", ["test_x"])]
    final = regress.compare(base, merged)
    assert [x.key for x in final.regressions] == ["test_x: real"]
    assert sorted(x.key for x in final.by_verdict(regress.FLAKY)) == [
        "test_x: env", "test_x: migrate"]
    env = next(x for x in merged if x.subtest == "env")
    assert env.retried == "failed on every run; baseline failed it too on its retry 2 (same load)"
