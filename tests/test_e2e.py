"""End to end, for real: Debian's 6.1 tree, a real build, a real boot under QEMU.

Slow the first time (tree import ~1 min, cold build ~3-5 min on 2 cores); the cache
($KERNEL_PIPELINE_CACHE or ~/.cache/kernel-pipeline) makes later runs fast. Run by default;
deselect with `-m "not e2e"`.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from pipeline.job import PROJECT_ROOT

pytestmark = pytest.mark.e2e
XSD = Path(__file__).parent / "fixtures" / "junit.xsd"


def pipeline_run(out: Path, *flags: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "run", "--out", str(out), *flags],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)


def load(out: Path) -> tuple[etree._ElementTree, dict]:
    doc = etree.parse(str(out / "junit.xml"))
    etree.XMLSchema(etree.parse(str(XSD))).assertValid(doc)
    return doc, json.loads((out / "summary.json").read_text())


def test_baseline_builds_boots_and_passes_guest_tests(tmp_path):
    done = pipeline_run(tmp_path, "--variant", "baseline")
    print(done.stdout[-6000:], done.stderr[-3000:])
    doc, summary = load(tmp_path)
    names = [s.get("name") for s in doc.getroot().iter("testsuite")]
    assert names == ["baseline.configure", "baseline.build", "baseline.boot", "baseline.guest"]
    assert done.returncode == 0, summary
    guest = doc.xpath("//testsuite[@name='baseline.guest']/testcase")
    assert guest, "no guest test in the JUnit file"
    assert all(len(case) == 0 or case[0].tag == "system-out" for case in guest)
    props = {p.get("name"): p.get("value")
             for p in doc.xpath("//testsuite[@name='baseline.boot']/properties/property")}
    assert props["tree_version"].startswith("6.1.")
    assert props["accel"] in ("kvm", "tcg") and props["qemu_version"]
    assert (tmp_path / "baseline" / "console.log").stat().st_size > 0
    assert (tmp_path / "baseline" / "build.log").stat().st_size > 0


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
