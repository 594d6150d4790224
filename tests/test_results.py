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


def test_an_unexpected_exception_is_exit_4_not_1(monkeypatch, capsys):
    from pipeline import cli

    def boom(args, log):
        raise ValueError("a bug")

    monkeypatch.setattr(cli, "_cmd_run", boom)
    monkeypatch.setattr(cli, "parser", _parser_with(boom))
    assert cli.main(["run"]) == 4


def _parser_with(func):
    import argparse

    def make():
        top = argparse.ArgumentParser()
        sub = top.add_subparsers(dest="command", required=True)
        sub.add_parser("run").set_defaults(func=func)
        return top
    return make
