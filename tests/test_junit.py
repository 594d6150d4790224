import json
import os
import re
from pathlib import Path

import pytest
from lxml import etree

from pipeline import junit
from pipeline.results import ERROR, FAILED, PASSED, SKIPPED, Case, RunReport, Stage, VariantReport

XSD = Path(__file__).parent / "fixtures" / "junit.xsd"


def validate(path: Path) -> etree._ElementTree:
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    doc = etree.parse(str(path))
    schema.assertValid(doc)
    return doc


def sample() -> RunReport:
    props = {"tree_version": "6.1.192", "series": "cgroup-pool (abc)", "config_hash": "f" * 64,
             "accel": "tcg", "qemu_version": "7.2.0"}
    ok = VariantReport("baseline", dict(props), [
        Stage("configure", [Case("configure")]),
        Stage("build", [Case("build", duration=151.2)]),
        Stage("boot", [Case("kernel boots"), Case("test session completes")]),
        Stage("guest", [
            Case("test_mount", classname="baseline.guest.test_cgroup_v1", stdout="[ 1.0] ok"),
            Case("test_skip", SKIPPED, message="needs pool"),
            Case("test_warn", FAILED, message="WARNING: at kernel/x.c:1",
                 details="WARNING: at kernel/x.c:1\n\x1b[0m trace", stdout="log\x07"),
            Case("test_hang", ERROR, message="did not run: session timed out"),
        ]),
    ])
    bad = VariantReport("patched", dict(props), [
        Stage("apply", [Case("0001 kernfs: pinned", PASSED),
                        Case("0002 cgroup: pool", FAILED, message="conflicts in kernel/x.c",
                             details="hunks: kernel/x.c:12")]),
        Stage("configure", [Case("configure", SKIPPED, message="not run: apply failed")]),
    ])
    return RunReport([ok, bad], duration=300.0)


def test_junit_shape_is_valid(tmp_path):
    path = tmp_path / "junit.xml"
    junit.write_junit(sample(), path)
    doc = validate(path)
    suites = {s.get("name"): s for s in doc.getroot().iter("testsuite")}
    assert list(suites) == ["baseline.configure", "baseline.build", "baseline.boot",
                            "baseline.guest", "patched.apply", "patched.configure"]
    guest = suites["baseline.guest"]
    assert (guest.get("tests"), guest.get("failures"), guest.get("errors"),
            guest.get("skipped")) == ("4", "1", "1", "1")
    props = {p.get("name"): p.get("value") for p in guest.iter("property")}
    assert props["tree_version"] == "6.1.192" and props["accel"] == "tcg"
    assert props["variant"] == "baseline" and props["stage"] == "guest"
    warn = guest.xpath("testcase[@name='test_warn']")[0]
    assert warn.find("failure").get("message") == "WARNING: at kernel/x.c:1"
    assert "\x1b" not in warn.find("failure").text      # control characters removed
    assert warn.find("system-out").text == "log"
    assert guest.xpath("testcase[@name='test_mount']")[0].get("classname") == \
        "baseline.guest.test_cgroup_v1"
    apply = suites["patched.apply"]
    assert [c.get("name") for c in apply.iter("testcase")] == ["0001 kernfs: pinned",
                                                              "0002 cgroup: pool"]
    assert suites["patched.configure"].find("testcase/skipped") is not None


def test_schema_rejects_wrong_shape(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text('<testsuites><testsuite name="x"><testcase name="a"/></testsuite>'
                    '</testsuites>')
    with pytest.raises(etree.DocumentInvalid):
        validate(path)


def test_summary_and_exit_codes(tmp_path):
    report = sample()
    assert report.variants[0].exit_code() == 1       # a guest test failed
    assert report.variants[1].exit_code() == 3       # apply failed
    assert report.exit_code() == 3
    junit.write_summary(report, tmp_path / "summary.json")
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["exit_code"] == 3
    assert data["variants"][1]["stages"][0] == {
        "stage": "apply", "status": "failed", "duration": 0.0,
        "cases": {"passed": 1, "failed": 1}, "message": "conflicts in kernel/x.c"}
    report.variants.pop()
    assert report.exit_code() == 1
    report.interrupted = "SIGTERM"
    assert report.exit_code() == 3


# ---- what CI servers read ---------------------------------------------------------------

def flaky_and_odd_times() -> RunReport:
    rep = sample()
    rep.variants[0].stages.append(Stage("kselftest", [
        Case("test_freezer: test_cgfreezer_ptrace", PASSED, 0.1 + 0.2,
             message="flaky: failed on the first run, not significant after 8 reruns; "
                     "patched 6/8, baseline 6/8 passed on rerun, p=0.71",
             classname="baseline.kselftest.cgroup",
             flaky="first run: Cgroup /sys/fs/cgroup/unified/cg_test_ptrace isn't frozen"),
        Case("test_memcontrol: test_memcg_swap_max", SKIPPED, 1e-05,
             message="known issue: no swap device in the guest",
             details="evidence: /proc/swaps is empty"),
        Case("test_kill", ERROR, 0.0, message="did not run: guest session ended (kernel panic)"),
    ], duration=0.0))
    rep.duration = 0.1 + 0.2
    return rep


def test_no_disabled_attribute_and_plain_decimal_times(tmp_path):
    path = tmp_path / "junit.xml"
    junit.write_junit(flaky_and_odd_times(), path)
    doc = validate(path)
    text = path.read_text()
    assert "disabled=" not in text
    times = [el.get("time") for el in doc.iter() if el.get("time") is not None]
    assert times and all(re.fullmatch(r"\d+\.\d{3}", t) for t in times), times
    assert doc.getroot().get("time") == "0.300"


def test_reasons_are_in_the_element_text_too(tmp_path):
    path = tmp_path / "junit.xml"
    junit.write_junit(flaky_and_odd_times(), path)
    doc = validate(path)
    skip = doc.xpath("//testcase[@name='test_memcontrol: test_memcg_swap_max']/skipped")[0]
    assert skip.get("message") == "known issue: no swap device in the guest"
    assert skip.text.splitlines()[0] == "known issue: no swap device in the guest"
    assert "evidence: /proc/swaps is empty" in skip.text
    err = doc.xpath("//testcase[@name='test_kill']/error")[0]
    assert err.text == "did not run: guest session ended (kernel panic)"
    plain = doc.xpath("//testsuite[@name='patched.configure']/testcase/skipped")[0]
    assert plain.text == "not run: apply failed"


def test_a_flaky_pass_keeps_its_note(tmp_path):
    path = tmp_path / "junit.xml"
    junit.write_junit(flaky_and_odd_times(), path)
    doc = validate(path)
    case = doc.xpath("//testcase[@name='test_freezer: test_cgfreezer_ptrace']")[0]
    assert case.find("failure") is None and case.find("skipped") is None   # a pass
    flaky = case.find("flakyFailure")
    assert flaky.get("type") == "flaky" and "isn't frozen" in flaky.get("message")
    assert case.find("system-out").text.startswith("note: flaky: failed on the first run")


def test_a_consumer_reads_it(tmp_path):
    """junitparser, as a CI tool reads the file: counts, results and messages."""
    junitparser = pytest.importorskip("junitparser")
    path = tmp_path / "junit.xml"
    junit.write_junit(flaky_and_odd_times(), path)
    xml = junitparser.JUnitXml.fromfile(str(path))
    suites = {s.name: s for s in xml}
    ks = suites["baseline.kselftest"]
    assert (ks.tests, ks.failures, ks.errors, ks.skipped) == (3, 0, 1, 1)
    cases = {c.name: c for c in ks}
    assert cases["test_freezer: test_cgfreezer_ptrace"].is_passed
    skipped = cases["test_memcontrol: test_memcg_swap_max"].result[0]
    assert isinstance(skipped, junitparser.Skipped)
    assert skipped.message == "known issue: no swap device in the guest"
    assert skipped.text.startswith("known issue: no swap device in the guest")
    assert cases["test_freezer: test_cgfreezer_ptrace"].time == pytest.approx(0.3)
    guest = {c.name: c for c in suites["baseline.guest"]}
    assert isinstance(guest["test_warn"].result[0], junitparser.Failure)
    assert guest["test_mount"].system_out == "[ 1.0] ok"


def test_the_real_junit_10_schema(tmp_path):
    """The Jenkins xUnit plugin's own junit-10.xsd, when JUNIT10_XSD points to a copy."""
    xsd = os.environ.get("JUNIT10_XSD")
    if not xsd:
        pytest.skip("set JUNIT10_XSD to the xUnit plugin's junit-10.xsd to check against it")
    path = tmp_path / "junit.xml"
    junit.write_junit(flaky_and_odd_times(), path)
    etree.XMLSchema(etree.parse(xsd)).assertValid(etree.parse(str(path)))


def test_stage_time_is_measured_or_the_sum_of_its_cases():
    stage = Stage("guest", [Case("a", duration=1.25), Case("b", duration=2.5)])
    assert junit.suite_time(stage) == 3.75
    stage.duration = 10.0
    assert junit.suite_time(stage) == 10.0
