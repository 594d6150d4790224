"""Write the run's results as JUnit XML (one testsuite per variant and stage) and summary.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import junit_xml

from .results import ERROR, FAILED, SKIPPED, RunReport

_CONTROL = {c: None for c in range(32) if c not in (9, 10, 13)}


def _clean(text: str) -> str:
    """XML 1.0 cannot carry most control characters (consoles print them)."""
    return text.translate(_CONTROL) if text else text


def build_suites(report: RunReport) -> list[junit_xml.TestSuite]:
    suites = []
    for variant in report.variants:
        for stage in variant.stages:
            suite_name = f"{variant.name}.{stage.name}"
            cases = []
            for case in stage.cases:
                tc = junit_xml.TestCase(
                    _clean(case.name), classname=case.classname or suite_name,
                    elapsed_sec=round(case.duration, 3), stdout=_clean(case.stdout) or None)
                if case.status == FAILED:
                    tc.add_failure_info(message=_clean(case.message) or "failed",
                                        output=_clean(case.details) or None)
                elif case.status == ERROR:
                    tc.add_error_info(message=_clean(case.message) or "error",
                                      output=_clean(case.details) or None)
                elif case.status == SKIPPED:
                    tc.add_skipped_info(message=_clean(case.message) or "skipped",
                                        output=_clean(case.details) or None)
                cases.append(tc)
            props = dict(variant.properties)
            props["variant"] = variant.name
            props["stage"] = stage.name
            suites.append(junit_xml.TestSuite(suite_name, cases, properties=props))
    return suites


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_junit(report: RunReport, path: Path) -> None:
    _atomic_write(path, junit_xml.to_xml_report_string(build_suites(report), encoding="utf-8"))


def summary(report: RunReport) -> dict:
    variants = []
    for variant in report.variants:
        stages = []
        for stage in variant.stages:
            first_bad = next((c for c in stage.cases if c.status in (FAILED, ERROR)), None)
            counts: dict[str, int] = {}
            for case in stage.cases:
                counts[case.status] = counts.get(case.status, 0) + 1
            stages.append({"stage": stage.name, "status": stage.status,
                           "duration": round(stage.duration, 1), "cases": counts,
                           "message": first_bad.message if first_bad else ""})
        variants.append({"name": variant.name, "exit_code": variant.exit_code(),
                         "properties": variant.properties, "stages": stages})
    return {"exit_code": report.exit_code(), "duration": round(report.duration, 1),
            "interrupted": report.interrupted, "bad_input": report.bad_input,
            "variants": variants}


def write_summary(report: RunReport, path: Path) -> None:
    _atomic_write(path, json.dumps(summary(report), indent=2) + "\n")
