"""End to end, for real: Debian's trees, real kernel builds, real boots under QEMU.

The first run is slow (tree import ~1 min, a cold build 3-6 min per kernel on 2 cores);
the cache ($KERNEL_PIPELINE_CACHE or ~/.cache/kernel-pipeline) and ccache make later runs
fast. Run by default; deselect with `-m "not e2e"`.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lxml import etree

from pipeline.job import PROJECT_ROOT

pytestmark = pytest.mark.e2e
XSD = Path(__file__).parent / "fixtures" / "junit.xsd"
NO_POOL = "kernel without the cgroup pool series"
POOL_MODULES = ("test_pool_size", "test_pool_rename", "test_pool_fallback")


def pipeline_run(out: Path, *flags: str, timeout: float = 4800) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", "--out", str(out), *flags],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)
    print(done.stdout[-8000:], done.stderr[-3000:])
    return done


def load(out: Path) -> tuple[etree._ElementTree, dict]:
    doc = etree.parse(str(out / "junit.xml"))
    etree.XMLSchema(etree.parse(str(XSD))).assertValid(doc)
    return doc, json.loads((out / "summary.json").read_text())


def cases(doc: etree._ElementTree, suite: str) -> list[etree._Element]:
    return doc.xpath(f"//testsuite[@name='{suite}']/testcase")


def outcome(case: etree._Element) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return tag
    return "passed"


def pool_cases(doc: etree._ElementTree, variant: str) -> list[etree._Element]:
    return [c for c in cases(doc, f"{variant}.guest")
            if any(m in c.get("classname") for m in POOL_MODULES)]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`pipeline run` with no job: baseline, patched and patched-debug 6.1, kselftests."""
    out = tmp_path_factory.mktemp("default-run")
    done = pipeline_run(out)
    doc, summary = load(out)
    return done, doc, summary, out


def test_default_job_passes_every_stage(default_run):
    done, doc, summary, out = default_run
    suites = [s.get("name") for s in doc.getroot().iter("testsuite")]
    for variant in ("baseline", "patched", "patched-debug"):
        for stage in ("configure", "build", "boot", "guest"):
            assert f"{variant}.{stage}" in suites
            for case in cases(doc, f"{variant}.{stage}"):
                assert outcome(case) in ("passed", "skipped"), (variant, stage, case.get("name"))
    assert "patched.apply" in suites and "baseline.apply" not in suites
    assert [outcome(c) for c in cases(doc, "patched.apply")] == ["passed", "passed"]
    assert done.returncode == 0, summary
    props = {p.get("name"): p.get("value")
             for p in doc.xpath("//testsuite[@name='patched.boot']/properties/property")}
    assert props["tree_version"].startswith("6.1.") and props["accel"] in ("kvm", "tcg")
    for variant in ("baseline", "patched", "patched-debug"):
        assert (out / variant / "console.log").stat().st_size > 0


def test_pool_tests_skip_on_baseline_with_the_reason(default_run):
    _done, doc, _summary, _out = default_run
    pool = pool_cases(doc, "baseline")
    assert len(pool) > 40
    for case in pool:
        assert outcome(case) == "skipped", case.get("name")
        assert NO_POOL in case.find("skipped").get("message")


@pytest.mark.parametrize("variant", ["patched", "patched-debug"])
def test_pool_tests_pass_on_the_patched_kernels(default_run, variant):
    _done, doc, _summary, _out = default_run
    pool = pool_cases(doc, variant)
    assert len(pool) > 40
    bad = [(c.get("name"), outcome(c)) for c in pool if outcome(c) != "passed"]
    assert not bad


def test_debug_kernel_really_has_lockdep(default_run):
    _done, _doc, _summary, out = default_run
    assert "CONFIG_PROVE_LOCKING=y" in (out / "patched-debug" / "config").read_text()
    assert "lockdep" in (out / "patched-debug" / "console.log").read_text().lower()


def test_kselftests_ran_on_both_and_no_regression(default_run):
    _done, doc, _summary, out = default_run
    for variant in ("baseline", "patched"):
        ks = cases(doc, f"{variant}.kselftest")
        assert len(ks) > 20, variant
        assert any(outcome(c) == "passed" for c in ks)
    table = (out / "patched" / "kselftest-regressions.md").read_text()
    assert "regression" in table.lower()


def test_6_12_port_passes_the_pool_tests(tmp_path):
    done = pipeline_run(tmp_path, "--tree", "debian:6.12", "--variant", "patched",
                        "--no-kselftest")
    doc, summary = load(tmp_path)
    assert done.returncode == 0, summary
    props = {p.get("name"): p.get("value")
             for p in doc.xpath("//testsuite[@name='patched.boot']/properties/property")}
    assert props["tree_version"].startswith("6.12.")
    pool = pool_cases(doc, "patched")
    assert len(pool) > 40 and all(outcome(c) == "passed" for c in pool)


def test_dropped_fragment_option_fails_configure_with_exit_3(tmp_path):
    fragment = tmp_path / "no-inet.config"
    fragment.write_text("CONFIG_9P_FS=y\n# CONFIG_INET is not set\n")
    out = tmp_path / "out"
    done = pipeline_run(out, "--variant", "baseline", "--kconfig", str(fragment),
                        timeout=1800)
    assert done.returncode == 3, done.stdout[-4000:]
    doc, _summary = load(out)
    failure = doc.xpath("//testsuite[@name='baseline.configure']/testcase/failure")[0]
    assert "CONFIG_9P_FS" in failure.get("message") and "no-inet.config" in failure.text
    assert doc.xpath("//testsuite[@name='baseline.build']/testcase/skipped")
    assert "CONFIG_9P_FS" in done.stdout


def test_conflicting_patch_fails_apply_with_exit_3(tmp_path):
    series = tmp_path / "broken-series"
    series.mkdir()
    (series / "series.yaml").write_text("name: broken\nbase: ['6.1']\n")
    (series / "0001-touch-a-line-that-is-not-there.patch").write_text(textwrap.dedent("""\
        From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
        From: Test <test@example.invalid>
        Date: Sat, 28 Nov 2026 00:00:00 +0000
        Subject: [PATCH] cgroup: change a line that does not exist

        ---
         kernel/cgroup/cgroup-v1.c | 2 +-
         1 file changed, 1 insertion(+), 1 deletion(-)

        diff --git a/kernel/cgroup/cgroup-v1.c b/kernel/cgroup/cgroup-v1.c
        index 1111111..2222222 100644
        --- a/kernel/cgroup/cgroup-v1.c
        +++ b/kernel/cgroup/cgroup-v1.c
        @@ -1,3 +1,3 @@
         // SPDX-License-Identifier: GPL-2.0-only
        -#include "this line is not in the tree.h"
        +#include "neither is this one.h"
         #include <linux/ctype.h>
        --
        2.39.5
        """))
    out = tmp_path / "out"
    done = pipeline_run(out, "--variant", "patched", "--series", str(series), timeout=1800)
    assert done.returncode == 3, done.stdout[-4000:]
    doc, _summary = load(out)
    failure = doc.xpath("//testsuite[@name='patched.apply']/testcase/failure")
    assert failure, "the conflicting patch is not a failed testcase"
    text = failure[0].get("message") + (failure[0].text or "")
    assert "0001" in text or "does not exist" in text
    assert "kernel/cgroup/cgroup-v1.c" in text
    assert doc.xpath("//testsuite[@name='patched.build']/testcase/skipped")


def _job(tmp_path: Path, extra: str) -> Path:
    job = tmp_path / "job.yaml"
    k = PROJECT_ROOT / "kconfigs"
    job.write_text(textwrap.dedent(f"""\
        tree: debian:6.1
        kconfig: [{k}/virtme-guest.config, {k}/cgroup-v1.config, {k}/kselftest-cgroup.config]
        tests: [{PROJECT_ROOT}/guest-tests]
        variants: [{{name: baseline, series: false}}]
        """) + extra)
    return job


def test_panicking_kernel_fails_boot_and_reports_tests_as_not_run(tmp_path):
    job = _job(tmp_path, "qemu: {kernel_args: [init=/nonexistent]}\n")
    done = pipeline_run(tmp_path / "out", "--job", str(job), timeout=2400)
    assert done.returncode == 3, done.stdout[-4000:]
    doc, _summary = load(tmp_path / "out")
    boot = doc.xpath("//testsuite[@name='baseline.boot']/testcase/failure")
    assert boot and "Kernel panic" in boot[0].get("message")
    guest = cases(doc, "baseline.guest")
    assert len(guest) > 40 and all(outcome(c) == "error" for c in guest)
    assert "did not run" in guest[0].find("error").get("message")
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True,
                          check=False)
    assert left.stdout == "", "a QEMU process was left behind"


def test_hanging_guest_test_is_killed_at_the_test_timeout(tmp_path):
    tests = tmp_path / "hang"
    tests.mkdir()
    (tests / "test_hang.py").write_text(
        "import time\n\ndef test_ok():\n    pass\n\n"
        "def test_never_returns():\n    time.sleep(3600)\n\n"
        "def test_after():\n    pass\n")
    job = _job(tmp_path, "timeouts: {test: 20}\n").read_text().replace(
        f"tests: [{PROJECT_ROOT}/guest-tests]", f"tests: [{tests}]")
    (tmp_path / "job.yaml").write_text(job)
    done = pipeline_run(tmp_path / "out", "--job", str(tmp_path / "job.yaml"), timeout=2400)
    assert done.returncode in (1, 3), done.stdout[-4000:]
    doc, _summary = load(tmp_path / "out")
    by_name = {c.get("name"): c for c in cases(doc, "baseline.guest")}
    assert outcome(by_name["test_ok"]) == "passed"
    hung = by_name["test_never_returns"].find("error")
    assert hung is not None and "test timeout" in hung.get("message")
    assert outcome(by_name["test_after"]) == "error"
