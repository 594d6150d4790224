"""`pipeline check-series` on a fake kernel tree: a patch that breaks the build in the middle
is caught (and the one that fixes it passes), checkpatch findings become failed testcases."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import git, make_tarball, write_fake_kernel

from pipeline.commands.checkseries import check_series
from pipeline.job import Job

# Plays checkpatch.pl: an added line with BADSTYLE is an error.
FAKE_CHECKPATCH = r"""#!/usr/bin/perl
my $file = $ARGV[-1];
open(my $fh, '<', $file) or die;
my $errors = 0;
while (<$fh>) { if (/^\+.*BADSTYLE/) { print "ERROR:BAD: bad style\n"; $errors++; } }
print "total: $errors errors, 0 warnings, 3 lines checked\n";
exit($errors ? 1 : 0);
"""


def make_tree_and_series(tmp_path: Path, steps: list[str]) -> tuple[Path, Path]:
    """A tarball of the fake tree and a series folder whose patch N sets kernel/fork.c to
    steps[N-1]."""
    parent = tmp_path / "srcparent"
    src = write_fake_kernel(parent / "linux-fake-6.1", gitignore=False)
    (src / "scripts" / "checkpatch.pl").write_text(FAKE_CHECKPATCH)
    tarball = make_tarball(parent, "linux-fake-6.1", tmp_path / "linux-fake-6.1.tar.gz")
    git(src, "init", "-q")
    git(src, "add", ".")
    git(src, "commit", "-qm", "base")
    for n, text in enumerate(steps, 1):
        (src / "kernel" / "fork.c").write_text(text)
        git(src, "commit", "-qam", f"fork: step {n}")
    folder = tmp_path / "series"
    git(src, "format-patch", "-q", "-o", str(folder), f"-{len(steps)}")
    (folder / "series.yaml").write_text("name: steps\nbase: [\"6.1\"]\nlink: x\n")
    return tarball, folder


def job_for(tmp_path: Path, tarball: Path, folder: Path) -> Job:
    frag = tmp_path / "frag.config"
    frag.write_text("CONFIG_NR_CPUS=1\n")
    return Job(source=tmp_path / "job.yaml", tree=str(tarball), series=str(folder),
               kconfig=[frag], out=tmp_path / "out", cache_dir=tmp_path / "cache")


def cases(junit: Path, suite: str) -> dict[str, str]:
    root = ET.parse(junit).getroot()
    found = {}
    for s in root.iter("testsuite"):
        if s.get("name") == suite:
            for case in s.iter("testcase"):
                status = "passed"
                for tag in ("failure", "error", "skipped"):
                    if case.find(tag) is not None:
                        status = tag
                found[case.get("name")] = status
    return found


def test_broken_middle_patch_is_caught(tmp_path):
    tarball, folder = make_tree_and_series(tmp_path, [
        "int fork = 1;\n", "int fork = 2;\n#error broken in the middle\n",
        "int fork = 3; /* BADSTYLE */\n"])
    lines: list[str] = []
    code = check_series(job_for(tmp_path, tarball, folder), lines.append)
    assert code == 3
    junit = tmp_path / "out" / "junit.xml"
    assert cases(junit, "check-series.build") == {
        "0000 baseline (no patch)": "passed", "0001 fork: step 1": "passed",
        "0002 fork: step 2": "failure", "0003 fork: step 3": "passed"}
    assert cases(junit, "check-series.checkpatch") == {
        "0001 fork: step 1": "passed", "0002 fork: step 2": "passed",
        "0003 fork: step 3": "failure"}
    text = junit.read_text()
    assert "kernel/fork.c:2:2: error: broken in the middle" in text
    summary = json.loads((tmp_path / "out" / "check-series.json").read_text())
    assert summary["exit_code"] == 3
    assert any("build broken at: 0002 fork: step 2" in line for line in lines)


def test_clean_series_and_checkpatch_only_failure(tmp_path):
    tarball, folder = make_tree_and_series(tmp_path, ["int fork = 1;\n",
                                                      "int fork = 2; /* BADSTYLE */\n"])
    job = job_for(tmp_path, tarball, folder)
    assert check_series(job, lambda _: None, baseline=False) == 1
    assert cases(job.out / "junit.xml", "check-series.build") == {
        "0001 fork: step 1": "passed", "0002 fork: step 2": "passed"}
    assert check_series(job, lambda _: None, checkpatch=False) == 0


def test_new_compiler_warning_fails_its_patch_only(tmp_path):
    tarball, folder = make_tree_and_series(tmp_path, [
        "int fork = 1;\n#warning old habit\n", "int fork = 2;\n\n#warning old habit\n",
        "int fork = 3;\n#warning old habit\n#warning brand new\n"])
    job = job_for(tmp_path, tarball, folder)
    assert check_series(job, lambda _: None, checkpatch=False) == 3
    assert cases(job.out / "junit.xml", "check-series.build") == {
        "0000 baseline (no patch)": "passed", "0001 fork: step 1": "failure",
        "0002 fork: step 2": "passed", "0003 fork: step 3": "failure"}
    text = (job.out / "junit.xml").read_text()
    assert "1 new compiler warning(s): kernel/fork.c:3:2: warning: brand new" in text


class PrefixBoot:
    """A boot back end whose guest test test_rename fails on the kernel of prefix 1 only."""

    def __init__(self) -> None:
        self.booted: list[str] = []

    def probe_accel(self, kernel, settings, log):
        return "tcg"

    def run_guest(self, kernel, test_paths, out_dir, settings, python, log):
        from pipeline.boot import BootResult, GuestTest
        self.booted.append(out_dir.name)
        assert kernel == out_dir / "bzImage" and kernel.read_bytes().startswith(b"fake bzImage")
        broken = out_dir.name == "prefix-0001"
        tests = [GuestTest("test_cg.py::test_mount", "passed", 0.1),
                 GuestTest("test_cg.py::test_rename", "failed" if broken else "passed", 0.1,
                           "rename: EBUSY" if broken else "")]
        return BootResult(True, True, "tcg", "7.2.0", 1.0, tests=tests)


def test_guest_tests_per_prefix_name_the_patch_that_breaks_a_test(tmp_path):
    tarball, folder = make_tree_and_series(tmp_path, ["int fork = 1;\n", "int fork = 2;\n"])
    job = job_for(tmp_path, tarball, folder)
    backend = PrefixBoot()
    lines: list[str] = []
    code = check_series(job, lines.append, checkpatch=False, guest_tests=True, backend=backend)
    assert code == 1
    assert backend.booted == ["prefix-0000", "prefix-0001", "prefix-0002"]
    junit = job.out / "junit.xml"
    assert cases(junit, "prefix-0001.guest") == {"test_mount": "passed", "test_rename": "failure"}
    assert cases(junit, "prefix-0002.guest") == {"test_mount": "passed", "test_rename": "passed"}
    assert cases(junit, "check-series.guest-changes") == {
        "0001 fork: step 1: test_cg.py::test_rename": "failure",
        "0002 fork: step 2: test_cg.py::test_rename": "passed"}
    summary = json.loads((job.out / "check-series.json").read_text())
    assert summary["guest_changes"] == [
        {"prefix": "0001 fork: step 1", "test": "test_cg.py::test_rename", "before": "passed",
         "after": "failed"},
        {"prefix": "0002 fork: step 2", "test": "test_cg.py::test_rename", "before": "failed",
         "after": "passed"}]
    assert any("guest verdict changed at 0001 fork: step 1: test_cg.py::test_rename: passed -> "
               "failed" in line for line in lines)


def test_guest_tests_skip_the_boot_of_a_prefix_that_does_not_build(tmp_path):
    tarball, folder = make_tree_and_series(tmp_path, [
        "int fork = 1;\n#error broken\n", "int fork = 2;\n"])
    job = job_for(tmp_path, tarball, folder)
    backend = PrefixBoot()
    assert check_series(job, lambda _: None, checkpatch=False, guest_tests=True,
                        backend=backend) == 3
    assert backend.booted == ["prefix-0000", "prefix-0002"]
    assert cases(job.out / "junit.xml", "prefix-0001.boot") == {"boot": "skipped"}
