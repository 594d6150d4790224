"""End to end (`-m long`, not in CI): `pipeline check-series --guest-tests` on Debian's 6.1
tree and the cgroup-pool port: every prefix (the tree, patch 1, patches 1-2) is built in one
incremental build folder and booted, and the pool's rename and pool_size tests run in each,
so the per-patch verdicts and the changes between prefixes come from real kernels.

Left out of CI for its cost on a cold machine: the check's own build folder is built three
times over (patch 1 changes include/linux/kernfs.h, which nearly every object includes), about
20 minutes cold on 2 cores. tests/test_checkseries.py runs the same command on the fake tree
with a fake boot back end in every run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from lxml import etree

from pipeline.job import PROJECT_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.long]
TESTS = ("guest-tests/test_pool_rename.py", "guest-tests/test_pool_size.py")


def outcome(case: etree._Element) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return tag
    return "passed"


def test_every_prefix_is_booted_and_the_pool_tests_start_to_run_at_patch_2(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline", "check-series", "--series", "cgroup-pool",
           "--tree", "debian:6.1", "--no-checkpatch", "--guest-tests", "--accel", "tcg",
           "--out", str(out)] + [w for t in TESTS for w in ("--test", t)]
    done = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=3600,
                          check=False)
    print(done.stdout[-8000:], done.stderr[-3000:])
    assert done.returncode == 0
    doc = etree.parse(str(out / "junit.xml"))
    by_prefix = {}
    for prefix in ("prefix-0000", "prefix-0001", "prefix-0002"):
        boot = doc.xpath(f"//testsuite[@name='{prefix}.boot']/testcase")
        assert boot and all(outcome(c) == "passed" for c in boot), prefix
        guest = doc.xpath(f"//testsuite[@name='{prefix}.guest']/testcase")
        by_prefix[prefix] = {c.get("name"): outcome(c) for c in guest}
    # without patch 2 there is no pool: its tests skip; with it they run and pass
    assert set(by_prefix["prefix-0000"].values()) == {"skipped"}
    assert set(by_prefix["prefix-0001"].values()) == {"skipped"}
    assert by_prefix["prefix-0002"] and set(by_prefix["prefix-0002"].values()) == {"passed"}
    summary = json.loads((out / "check-series.json").read_text())
    changes = summary["guest_changes"]
    assert changes and {c["prefix"][:4] for c in changes} == {"0002"}
    assert {(c["before"], c["after"]) for c in changes} == {("skipped", "passed")}
    assert "guest verdict changed at 0002" in done.stdout
