"""End to end (e2e marker): `pipeline port-diff` of the two real cgroup-pool ports, each on its
Debian tree (/usr/src/linux-source-6.1.tar.xz and -6.12.tar.xz, extracted and cached by the
tree stage: ~2 minutes for a tree not cached yet, then seconds). It builds no kernel.

The range-diff must show the API differences docs/cgroup-pool-port.md names, as lines of the
6.1 port (`-+`) against lines of the 6.12 port (`++`) in the kernfs patch, and a series
compared with itself must give `=` for every pair."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.job import PROJECT_ROOT

pytestmark = pytest.mark.e2e
SUBJECTS = ["kernfs: add pinned nodes that stay deactivated until handed out",
            "cgroup: support cgroup pool in v1"]


def _port_diff(*args: str) -> subprocess.CompletedProcess:
    for version in ("6.1", "6.12"):
        if not Path(f"/usr/src/linux-source-{version}.tar.xz").is_file():
            pytest.skip(f"/usr/src/linux-source-{version}.tar.xz is not installed")
    done = subprocess.run([sys.executable, "-m", "pipeline", "port-diff", *args],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800,
                          check=False)
    print(done.stdout[-8000:], done.stderr[-3000:])
    return done


def _section(report: str, title: str) -> str:
    start = report.index(title)
    end = report.find("\n## ", start + len(title))
    return report[start:end if end > 0 else len(report)]


def test_port_diff_of_the_6_1_and_6_12_ports_shows_the_api_differences(tmp_path):
    done = _port_diff("patches/cgroup-pool/6.1", "patches/cgroup-pool/6.12",
                      "--out", str(tmp_path / "ports"))
    assert done.returncode == 0, done.stdout[-3000:]
    assert "A: tree debian:6.1 (series.yaml base 6.1" in done.stdout
    assert "B: tree debian:6.12 (series.yaml base 6.12" in done.stdout
    summary = [line.split("] ", 1)[1].strip() for line in done.stdout.splitlines()
               if re.search(r"\] +\d+ [=!] \d+ ", line)]
    assert [line.split(" (")[0] for line in summary] == [f"1 ! 1   {SUBJECTS[0]}",
                                                          f"2 ! 2   {SUBJECTS[1]}"]
    assert "port-diff: 2 pairs: 0 unchanged (=), 2 changed (!), 0 only in A (<), 0 only in B " \
           "(>)" in done.stdout
    report = (tmp_path / "ports" / "port-diff.md").read_text()
    assert report.startswith("# Port diff: cgroup-pool on 6.1.")
    assert "| A | " + str(PROJECT_ROOT / "patches/cgroup-pool/6.1") + " | 2 | debian:6.1 (6.1." \
        in report
    kernfs = _section(report, f"## 1 ! 1: {SUBJECTS[0]}")
    # kernfs_rename_lock: a spinlock on 6.1, an rwlock on 6.12
    assert "    -+\t\tspin_lock_irq(&kernfs_rename_lock);\n" in kernfs
    assert "    ++\t\twrite_lock_irq(&kernfs_rename_lock);\n" in kernfs
    assert "    -+\t\tspin_unlock_irq(&kernfs_rename_lock);\n" in kernfs
    assert "    ++\t\twrite_unlock_irq(&kernfs_rename_lock);\n" in kernfs
    # simple_xattrs_free() takes a second argument on 6.12
    assert "    -+\tsimple_xattrs_free(&attrs->xattrs);\n" \
           "    ++\tsimple_xattrs_free(&attrs->xattrs, NULL);\n" in kernfs
    # 6.12 links and unlinks siblings under kernfs_iattr_rwsem
    assert "    ++\t\t\tdown_write(&root->kernfs_iattr_rwsem);\n" in kernfs
    assert "    @@ fs/kernfs/dir.c: static int kernfs_link_sibling(struct kernfs_node *kn)" \
        in kernfs
    cgroup = _section(report, f"## 2 ! 2: {SUBJECTS[1]}")
    # cpuset's v1 checks moved to cpuset-v1.c on 6.12
    assert "    - ## kernel/cgroup/cpuset.c ##\n    -@@ kernel/cgroup/cpuset.c: static int " \
           "validate_change_legacy(" in cgroup
    assert "    + ## kernel/cgroup/cpuset-v1.c ##\n    +@@ kernel/cgroup/cpuset-v1.c: int " \
           "cpuset1_validate_change(" in cgroup
    # 6.12's sysctl tables have no sentinel; cgroup_create() sets the owner itself
    assert "    -+\t{ }\n" in cgroup
    assert "    - \tret = cgroup_kn_set_ugid(cgrp->kn);\n" in cgroup
    assert "-:  ------- >" not in report and "< -:  -------" not in report


def test_port_diff_of_a_series_against_itself_is_all_unchanged(tmp_path):
    done = _port_diff("patches/cgroup-pool/6.12", "cgroup-pool", "--tree-b", "debian:6.12",
                      "--out", str(tmp_path / "self"))
    assert done.returncode == 0, done.stdout[-3000:]
    assert "port-diff: 2 pairs: 2 unchanged (=), 0 changed (!), 0 only in A (<), 0 only in B " \
           "(>)" in done.stdout
    report = (tmp_path / "self" / "port-diff.md").read_text()
    assert f"## 1 = 1: {SUBJECTS[0]}\n" in report and f"## 2 = 2: {SUBJECTS[1]}\n" in report
    assert not re.search(r"^\s*\d+:\s+[0-9a-f]+ [!<>] ", report, re.MULTILINE)
