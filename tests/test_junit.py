import json
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
