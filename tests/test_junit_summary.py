"""`pipeline junit-summary`: a JUnit report as Markdown, one table row per test case (the
GitHub job summary of ci/github/workflows/kernel-matrix.yml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _summary(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "junit-summary", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


JUNIT = """\
<?xml version="1.0" encoding="utf-8"?>
<testsuites name="kernel-pipeline" tests="4" failures="1" errors="0" time="3.000">
  <testsuite name="patched.boot" tests="1" failures="0" errors="0" skipped="0" time="1.000">
    <testcase name="boot" classname="patched.boot" time="1.000"/>
  </testsuite>
  <testsuite name="patched.tests" tests="3" failures="1" errors="0" skipped="1" time="2.000">
    <testcase name="test_a" classname="patched.tests.test_x" time="0.500"/>
    <testcase name="test_b|pipe" classname="patched.tests.test_x" time="1.000">
      <failure message="assert 1 == 2">assert 1 == 2
details</failure>
    </testcase>
    <testcase name="test_c" classname="patched.tests.test_x" time="0.000">
      <skipped message="kernel without SELinux"/>
    </testcase>
  </testsuite>
</testsuites>
"""


def test_job_summary_lists_every_test_case(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "junit.xml").write_text(JUNIT)
    done = _summary(tmp_path / "out/junit.xml")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for name in ("boot", "test_a", r"test_b\|pipe", "test_c"):   # a `|` is escaped
        assert f" | {name} | " in text, f"no row for {name}:\n{text}"
    row_b = next(line for line in text.splitlines() if "test_b" in line)
    assert "failed" in row_b and "assert 1 == 2" in row_b and "details" not in row_b
    assert "kernel without SELinux" in text
    assert "4 tests" in text and "1 failed" in text and "1 skipped" in text


def test_summary_of_a_missing_file_says_so(tmp_path):
    done = _summary(tmp_path / "none.xml")
    assert done.returncode == 0
    assert "no JUnit report" in done.stdout
