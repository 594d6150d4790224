"""One vocabulary of statuses and exit codes (pipeline.status): the README's exit-code table
and the commands' help are made from it, or checked against it here."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline import cli, results
from pipeline.status import RUN_CODES, ExitCode, Status, readme_table, run_epilog, worst

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_exit_code_table_is_the_enums():
    lines = README.read_text().splitlines()
    start = lines.index("| exit code | meaning |")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    assert lines[start:end] == readme_table()


def test_every_exit_code_is_in_the_readme_table():
    numbers = {row.split("|")[1].strip() for row in readme_table()[2:]}
    assert {str(int(code)) for code in ExitCode} <= numbers


def test_run_help_says_the_run_exit_codes():
    text = cli.parser().format_help()
    for code in RUN_CODES:
        assert re.search(rf"\b{int(code)} ", text), code
    run_help = cli.parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert " ".join(run_epilog().split()) in " ".join(run_help.split())


def test_results_names_are_the_enum_members():
    assert (results.PASSED, results.FAILED, results.ERROR, results.SKIPPED) == tuple(Status)
    assert results.EXIT_INTERNAL is ExitCode.INTERNAL and results.EXIT_INTERNAL == 4
    assert Status.FAILED == "failed"      # equal to the plain strings of JSON and JUnit files


def test_worst_status_of_a_stage():
    assert worst(set()) is Status.PASSED
    assert worst({"passed", "skipped"}) is Status.PASSED
    assert worst({"skipped"}) is Status.SKIPPED
    assert worst({"failed", "error", "passed"}) is Status.ERROR
    assert worst({"failed", "skipped"}) is Status.FAILED
