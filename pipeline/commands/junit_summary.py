"""`pipeline junit-summary FILE`: a JUnit report as Markdown, one table row per test case.

For CI pages that show Markdown but read no JUnit (the GitHub Actions job summary):

    .venv/bin/pipeline junit-summary out/junit.xml >> "$GITHUB_STEP_SUMMARY"

Each suite gets a heading with its counts and a row per test case (outcome, name, class,
time, and the first line of a failure's, error's or skip's message); failed and errored cases
are listed again at the top. A missing or unreadable file is said so in the Markdown and exits
0: the step that publishes results must not hide the job's own failure behind its own.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from ..log import Logger

_OUTCOMES = (("failure", "failed"), ("error", "error"), ("skipped", "skipped"))
_MARK = {"passed": "✅", "failed": "❌", "error": "💥", "skipped": "⏭️"}


def _cell(text: str, limit: int = 200) -> str:
    """One line of text, safe inside a Markdown table cell."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    if len(line) > limit:
        line = line[:limit - 1] + "…"
    return line.replace("\\", "\\\\").replace("|", "\\|")


def _outcome(case: ET.Element) -> tuple[str, str]:
    for tag, outcome in _OUTCOMES:
        element = case.find(tag)
        if element is not None:
            return outcome, element.get("message") or element.text or ""
    return "passed", ""


def _row(suite: str, case: ET.Element) -> tuple[str, str]:
    outcome, message = _outcome(case)
    classname = case.get("classname") or suite
    return outcome, (f"| {_MARK[outcome]} {outcome} | {_cell(case.get('name', ''))} | "
                     f"{_cell(classname)} | {case.get('time') or ''} | {_cell(message)} |")


def render(path: Path) -> str:
    """The Markdown for one JUnit file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        return f"**no JUnit report**: {_cell(str(exc))}\n"
    suites = [root] if root.tag == "testsuite" else root.findall(".//testsuite")
    header = "| outcome | test | class | time (s) | message |\n|---|---|---|---|---|"
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    bad: list[str] = []
    sections: list[str] = []
    for suite in suites:
        name = suite.get("name") or "(unnamed suite)"
        rows = []
        local = dict.fromkeys(counts, 0)
        for case in suite.findall("testcase"):
            outcome, row = _row(name, case)
            local[outcome] += 1
            rows.append(row)
            if outcome in ("failed", "error"):
                bad.append(row)
        for key, value in local.items():
            counts[key] += value
        shown = ", ".join(f"{n} {k}" for k, n in local.items() if n)
        sections.append(f"### {_cell(name)} ({shown or 'no test cases'})\n\n"
                        + (header + "\n" + "\n".join(rows) if rows else "") + "\n")
    total = sum(counts.values())
    title = (f"## JUnit: {total} tests, {counts['passed']} passed, {counts['failed']} failed, "
             f"{counts['error']} errors, {counts['skipped']} skipped\n")
    failed = f"\n**Failed**\n\n{header}\n" + "\n".join(bad) + "\n" if bad else ""
    return title + failed + "\n" + "\n".join(sections)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("junit-summary", help="a JUnit report as Markdown, one row per test "
                                             "case (for a CI job summary)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("junit", type=Path, metavar="FILE", help="JUnit XML (e.g. out/junit.xml)")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace, log: Logger) -> int:
    sys.stdout.write(render(args.junit))
    return 0
