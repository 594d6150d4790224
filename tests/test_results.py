"""Exit codes from stage results, including the kselftest verdicts."""

from pipeline.results import FAILED, PASSED, Case, RunReport, Stage, VariantReport


def _variant(name: str, **stages: str) -> VariantReport:
    return VariantReport(name, stages=[Stage(s, [Case(s, st)]) for s, st in stages.items()])


def test_preexisting_kselftest_failures_do_not_fail_the_job():
    report = RunReport([_variant("baseline", build=PASSED, guest=PASSED, kselftest=FAILED),
                        _variant("patched", build=PASSED, guest=PASSED, kselftest=FAILED)])
    assert report.exit_code() == 0


def test_a_kselftest_regression_fails_the_job_with_1():
    report = RunReport([_variant("patched", build=PASSED, guest=PASSED, kselftest=FAILED)],
                       kselftest_regressions=2)
    assert report.exit_code() == 1


def test_stage_failure_wins_over_test_failure():
    report = RunReport([_variant("a", guest=FAILED), _variant("b", build=FAILED)])
    assert report.exit_code() == 3
    assert RunReport([_variant("a", guest=FAILED)]).exit_code() == 1
