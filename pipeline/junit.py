"""Write the run's results as JUnit XML (one testsuite per variant and stage) and summary.json.

The XML is what the CI servers' readers accept, checked against the rules of the Jenkins xUnit
plugin's junit-10 schema (tests/fixtures/junit.xsd carries them) and read back with junitparser
in the tests:

- `testsuites` carries name/tests/failures/errors/time only, `testsuite` adds skipped (no
  `disabled` attribute anywhere), `testcase` name/classname/time;
- times are decimals with three places ("0.300", never "0.30000000000000004" or "1e-05");
- a failure, error or skip has its reason in the `message` attribute *and* as the first line
  of the element text (GitLab shows only the text), followed by the details;
- a passing case that has something to say (a flaky subtest, a known issue that passed) keeps
  it: a `flakyFailure` element (Surefire's rerun format, which Jenkins shows as a flaky pass)
  for a flaky case, and a `note:` first line in `system-out` for every noted pass.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .results import ERROR, FAILED, PASSED, SKIPPED, Case, RunReport, Stage

_CONTROL = {c: None for c in range(32) if c not in (9, 10, 13)}
# keyed by Status, looked up with a case's status string (a StrEnum member equals its value)
_ELEMENT: dict[str, str] = {FAILED: "failure", ERROR: "error", SKIPPED: "skipped"}
_DEFAULT_MESSAGE: dict[str, str] = {FAILED: "failed", ERROR: "error", SKIPPED: "skipped"}


def _clean(text: str) -> str:
    """XML 1.0 cannot carry most control characters (consoles print them); lone surrogates
    from undecodable output neither."""
    if not text:
        return ""
    text = text.translate(_CONTROL)
    return text.encode("utf-8", "replace").decode("utf-8")


def fmt_time(seconds: float) -> str:
    """A JUnit time: non-negative, three decimals, never exponent notation."""
    return f"{max(seconds, 0.0):.3f}"


def _body(message: str, details: str) -> str:
    """Element text: the one-line reason first (readers that ignore `message` show this),
    then the long text unless it already starts with the reason."""
    if not details:
        return message
    if details.startswith(message):
        return details
    return f"{message}\n\n{details}"


def _case_element(case: Case, suite_name: str) -> ET.Element:
    el = ET.Element("testcase", {"name": _clean(case.name),
                                 "classname": _clean(case.classname or suite_name),
                                 "time": fmt_time(case.duration)})
    message = _clean(case.message)
    if case.status in _ELEMENT:
        message = message or _DEFAULT_MESSAGE[case.status]
        result = ET.SubElement(el, _ELEMENT[case.status],
                               {"message": message, "type": case.status})
        result.text = _body(message, _clean(case.details))
    elif case.flaky:
        flaky = ET.SubElement(el, "flakyFailure", {"message": _clean(case.flaky),
                                                   "type": "flaky"})
        flaky.text = _body(_clean(case.flaky), _clean(case.details))
    out = _clean(case.stdout)
    if case.status == PASSED and message:
        out = f"note: {message}" + (f"\n{out}" if out else "")
    if out:
        ET.SubElement(el, "system-out").text = out
    return el


def suite_time(stage: Stage) -> float:
    """The stage's wall time when it was measured, else the sum of its cases."""
    return stage.duration if stage.duration > 0 else sum(c.duration for c in stage.cases)


def build_tree(report: RunReport) -> ET.Element:
    root = ET.Element("testsuites", {"name": "kernel-pipeline"})
    totals = {"tests": 0, FAILED: 0, ERROR: 0}
    total_time = 0.0
    suites = [(f"{variant.name}.{stage.name}", stage,
               {**variant.properties, **stage.properties, "variant": variant.name,
                "stage": stage.name})
              for variant in report.variants for stage in variant.stages]
    # Run-level suites (a verdict over all variants, e.g. series.compiled): named as they are.
    suites += [(stage.name, stage, {**stage.properties, "stage": stage.name})
               for stage in report.suites]
    for suite_name, stage, merged in suites:
        counts = {s: sum(c.status == s for c in stage.cases) for s in (FAILED, ERROR, SKIPPED)}
        seconds = suite_time(stage)
        suite = ET.SubElement(root, "testsuite", {
            "name": suite_name, "tests": str(len(stage.cases)),
            "failures": str(counts[FAILED]), "errors": str(counts[ERROR]),
            "skipped": str(counts[SKIPPED]), "time": fmt_time(seconds)})
        props = ET.SubElement(suite, "properties")
        for name, value in merged.items():
            ET.SubElement(props, "property", {"name": _clean(str(name)),
                                              "value": _clean(str(value))})
        for case in stage.cases:
            suite.append(_case_element(case, suite_name))
        totals["tests"] += len(stage.cases)
        totals[FAILED] += counts[FAILED]
        totals[ERROR] += counts[ERROR]
        total_time += seconds
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals[FAILED]))
    root.set("errors", str(totals[ERROR]))
    root.set("time", fmt_time(report.duration or total_time))
    return root


def to_xml(report: RunReport) -> str:
    root = build_tree(report)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") \
        + "\n"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_junit(report: RunReport, path: Path) -> None:
    _atomic_write(path, to_xml(report))


def summary(report: RunReport) -> dict[str, Any]:
    variants = []
    for variant in report.variants:
        stages = []
        for stage in variant.stages:
            first_bad = next((c for c in stage.cases if c.status in (FAILED, ERROR)), None)
            counts: dict[str, int] = {}
            for case in stage.cases:
                counts[case.status] = counts.get(case.status, 0) + 1
            stages.append({"stage": stage.name, "status": stage.status,
                           "duration": round(suite_time(stage), 1), "cases": counts,
                           "message": first_bad.message if first_bad else ""})
        variants.append({"name": variant.name, "exit_code": variant.exit_code(),
                         "properties": variant.properties, "stages": stages})
    data: dict[str, Any] = {"exit_code": report.exit_code(),
                            "duration": round(report.duration, 1),
                            "interrupted": report.interrupted, "bad_input": report.bad_input,
                            "variants": variants}
    if report.kselftest:
        data["kselftest"] = report.kselftest
    if report.compiled:
        data["compiled"] = report.compiled
    if report.lockdep:
        data["lockdep"] = report.lockdep
    return data


def write_summary(report: RunReport, path: Path) -> None:
    _atomic_write(path, json.dumps(summary(report), indent=2) + "\n")
