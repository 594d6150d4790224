"""OUT/kcidb.json: the run's results as a KCIDB v5 document, checked against kcidb-io's schema
(the newest v5 minor it ships, V5_3) with its format checks (uri, date-time, email) on."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
from kcidb_io.schema import V5_3

from pipeline import kcidb
from pipeline.results import ERROR, FAILED, PASSED, SKIPPED, Case, RunReport, Stage, VariantReport
from pipeline.series import Patch, Series

BENCH = Path(__file__).parent / "fixtures" / "bench" / "bench.json"
SCHEMA = V5_3
COMMIT = "3f2a9c0d1e4b5a6978c0d1e2f3a4b5c6d7e8f901"
START = 1_796_000_000.0
PATH_RE = re.compile(r"^([a-zA-Z0-9_-]+(\.[a-zA-Z0-9_-]+)*)?$")   # the schema's path pattern


def validate(doc: dict) -> dict:
    SCHEMA.validate_exactly(doc)
    return doc


def _props(version: str = "6.1.99", series: str = "none") -> dict[str, str]:
    return {"tree": "debian:6.1", "tree_version": version, "tree_commit": COMMIT,
            "series": series, "base_config": "tinyconfig", "fragments": "kconfigs/base.config",
            "accel": "tcg", "qemu_version": "7.2.19", "config_hash": "ab" * 32}


def _built(name: str, guest: list[Case], series: bool = False) -> VariantReport:
    stages = [Stage("apply", [Case("0001 kernfs: add pinned nodes", PASSED, 0.4),
                              Case("0002 cgroup: support cgroup pool in v1", PASSED, 0.3)],
                    duration=0.8, started=START + 1)] if series else []
    stages += [
        Stage("configure", [Case("configure", PASSED, 2.5)], duration=2.6, started=START + 2),
        Stage("build", [Case("build", PASSED, 250.0, message="2817 compile/link steps")],
              duration=250.1, started=START + 5),
        Stage("boot", [Case("kernel boots", PASSED, 4.0),
                       Case("test session completes", PASSED)], duration=90.0,
              started=START + 260),
        Stage("guest", guest, duration=85.0, started=START + 260),
    ]
    return VariantReport(name, _props(series="cgroup-pool (0123456789ab)" if series else "none"),
                         stages)


def _guest(variant: str, pool: str = PASSED) -> list[Case]:
    cls = f"{variant}.guest.guest-tests"
    return [
        Case("test_mkdir_rmdir[cpu-cpuacct]", PASSED, 0.03,
             classname=f"{cls}.test_cgroup_v1_basic"),
        Case("test_mkdir_rmdir[named]", PASSED, 0.02, classname=f"{cls}.test_cgroup_v1_basic"),
        Case("test_pool_size_limits[4096]", pool, 0.2,
             message="kernel without the cgroup pool series" if pool == SKIPPED else
             ("AssertionError: pool_size 0" if pool == FAILED else ""),
             details="Traceback ...\nAssertionError: pool_size 0" if pool == FAILED else "",
             stdout="[ 12.0] cgroup: pool" if pool == FAILED else "",
             classname=f"{cls}.test_pool_size"),
        Case("TestRename::test_rename_keeps[a.b/c d]", PASSED, 0.1,
             classname=f"{cls}.test_pool_rename"),
    ]


def _kselftest(variant: str, core: str = PASSED) -> Stage:
    cls = f"{variant}.kselftest.cgroup"
    return Stage("kselftest", [
        Case("test_core", core, 1.2, classname=cls),
        Case("test_core: test_cgcore_internal_process_constraint", PASSED, classname=cls),
        Case("test_core: test_cgcore_lesser_euid_open", core,
             message="[regression, baseline: passed; 3/3 failed] not ok 12" if core == FAILED
             else "", classname=cls),
        Case("test_freezer: test_cgfreezer_ptrace", PASSED, flaky="first run: failed",
             message="flaky: failed on the first run", classname=cls),
    ], duration=9.0)


def _report() -> RunReport:
    """baseline (pool tests skip), patched (a guest test and a kselftest regression), a
    variant whose build failed (later stages never ran)."""
    baseline = _built("baseline", _guest("baseline", SKIPPED))
    baseline.stages.append(_kselftest("baseline"))
    patched = _built("patched", _guest("patched", FAILED), series=True)
    patched.stages.append(Stage("kselftest-run", [
        Case("run 12 programs in a fresh boot", PASSED, 30.0)], duration=30.0,
        started=START + 400))
    patched.stages.append(_kselftest("patched", FAILED))
    broken = VariantReport("patched-kasan", _props(series="cgroup-pool (0123456789ab)"), [
        Stage("apply", [Case("0001 a", PASSED), Case("0002 b", PASSED)], started=START + 1),
        Stage("configure", [Case("configure", PASSED, 3.0)], duration=3.0, started=START + 2),
        Stage("build", [Case("build", FAILED, 40.0,
                             message="build failed: mm/kasan.c:3:2: error: boom",
                             details="mm/kasan.c:3:2: error: boom\n\nfull log: build.log")],
              duration=40.0, started=START + 6),
        Stage("boot", [Case("boot", SKIPPED, message="not run: build failed")], ran=False),
        Stage("guest", [Case("guest", SKIPPED, message="not run: build failed")], ran=False),
    ])
    return RunReport([baseline, patched, broken], duration=600.0, kselftest_regressions=1,
                     started=START)


def _series(tmp_path: Path, link: str = "") -> kcidb.SeriesInfo:
    folder = tmp_path / "series"
    folder.mkdir(exist_ok=True)
    patches = []
    for i, subject in enumerate(["kernfs: add pinned nodes", "cgroup: pool"], start=1):
        text = (f"From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
                f"Subject: [PATCH {i}/2] {subject}\n"
                f"In-Reply-To: <cover.1631102579.escape@example.org>\n\n"
                f"diff --git a/k{i}.c b/k{i}.c\n")
        (folder / f"000{i}-p.patch").write_text(text)
        patches.append(Patch(i, f"000{i}-p.patch", subject, text))
    return kcidb.series_info(Series("cgroup-pool", ["6.1"], folder, patches, link=link))


def _out(tmp_path: Path, variants: tuple[str, ...] = ("baseline", "patched", "patched-kasan")
         ) -> Path:
    out = tmp_path / "out"
    for name in variants:
        (out / name).mkdir(parents=True)
        (out / name / "config").write_text(
            'CONFIG_CC_VERSION_TEXT="gcc (Debian 12.2.0-14+deb12u1) 12.2.0"\nCONFIG_64BIT=y\n')
        (out / name / "build.log").write_text("$ make bzImage\n")
        (out / name / "configure.log").write_text("olddefconfig\n")
        if name != "patched-kasan":
            (out / name / "bzImage").write_bytes(b"bz")
            (out / name / "console.log").write_text("Linux version 6.1.99\n")
    return out


def _info(tmp_path: Path, **kw) -> kcidb.RunInfo:
    defaults = {"out": _out(tmp_path), "tree_spec": "debian:6.1", "start_time": START,
                "tree_commit": COMMIT, "tree_version": "6.1.99", "series": _series(tmp_path),
                "compiler": lambda: "gcc (probe) 1"}
    defaults.update(kw)
    return kcidb.RunInfo(**defaults)


def _by(doc: dict, kind: str) -> dict[str, dict]:
    return {obj["id"]: obj for obj in doc[kind]}


def _test(doc: dict, variant: str, path: str) -> dict:
    found = [t for t in doc["tests"] if t["path"] == path and t["build_id"].endswith(variant)]
    assert len(found) == 1, (variant, path, [t["path"] for t in doc["tests"]])
    return found[0]


# --- the document of a run ------------------------------------------------------------------

def test_run_document_validates_and_links(tmp_path):
    doc = validate(kcidb.document(_report(), _info(tmp_path)))
    assert doc["version"] == {"major": 5, "minor": 3}
    for kind in ("checkouts", "builds", "tests"):
        for obj in doc[kind]:
            assert obj["origin"] == kcidb.ORIGIN and obj["id"].startswith(kcidb.ORIGIN + ":")
        assert len(_by(doc, kind)) == len(doc[kind])        # ids unique
    checkouts, builds = _by(doc, "checkouts"), _by(doc, "builds")
    assert {b["checkout_id"] for b in builds.values()} <= set(checkouts)
    assert {t["build_id"] for t in doc["tests"]} <= set(builds)
    run = next(iter(checkouts)).rsplit("/", 1)[0]
    assert re.fullmatch(r"kernel_pipeline:20261130T005320Z-[0-9a-f]{8}", run)
    assert set(builds) == {f"{run}/baseline", f"{run}/patched", f"{run}/patched-kasan"}
    assert all(t["id"] == f"{t['build_id']}/{t['path']}" for t in doc["tests"])
    for test in doc["tests"]:
        assert PATH_RE.match(test["path"]), test["path"]
        assert test["status"] in kcidb.STATUSES


def test_checkouts_base_and_series(tmp_path):
    info = _info(tmp_path)
    doc = validate(kcidb.document(_report(), info))
    base, series = doc["checkouts"]
    assert base["id"].endswith("/base") and series["id"].endswith("/series")
    for c in (base, series):
        assert c["tree_name"] == "debian-6.1" and c["git_commit_hash"] == COMMIT
        assert c["valid"] is True and c["start_time"] == "2026-11-30T00:53:20.000+00:00"
    assert base["patchset_hash"] == "" and "message_id" not in base
    want = hashlib.sha256("".join(hashlib.sha256(p.data).hexdigest() + "\n"
                                  for p in info.series.patches).encode()).hexdigest()
    assert series["patchset_hash"] == want
    assert [f["name"] for f in series["patchset_files"]] == ["0001-p.patch", "0002-p.patch"]
    assert series["patchset_files"][0]["url"].startswith("file:///")
    assert series["message_id"] == "cover.1631102579.escape@example.org"  # In-Reply-To
    assert series["misc"]["variants"] == ["patched", "patched-kasan"]
    builds = _by(doc, "builds")
    assert [b["config_name"] for b in builds.values() if b["checkout_id"] == base["id"]] \
        == ["baseline"]


def test_builds(tmp_path):
    doc = validate(kcidb.document(_report(), _info(tmp_path)))
    builds = {b["config_name"]: b for b in doc["builds"]}
    ok, bad = builds["patched"], builds["patched-kasan"]
    assert ok["status"] == "PASS" and bad["status"] == "FAIL"
    assert ok["architecture"] == "x86_64"
    assert ok["compiler"] == "gcc (Debian 12.2.0-14+deb12u1) 12.2.0"   # CONFIG_CC_VERSION_TEXT
    assert ok["duration"] == pytest.approx(252.7)
    assert ok["start_time"] == kcidb.iso_time(START + 2)
    out = (tmp_path / "out" / "patched").resolve()
    assert ok["config_url"] == (out / "config").as_uri()
    assert ok["log_url"] == (out / "build.log").as_uri()
    assert [f["name"] for f in ok["output_files"]] == ["bzImage", "configure.log"]
    assert ok["comment"] == "2817 compile/link steps"
    assert bad["comment"] == "build: build failed: mm/kasan.c:3:2: error: boom"
    assert bad["log_excerpt"].startswith("mm/kasan.c:3:2: error: boom")
    assert ok["misc"]["config_hash"] == "ab" * 32


def test_guest_and_kselftest_tests(tmp_path):
    doc = validate(kcidb.document(_report(), _info(tmp_path)))
    skipped = _test(doc, "baseline", "cgroup_pool.test_pool_size.test_pool_size_limits.4096")
    assert skipped["status"] == "SKIP"
    assert skipped["comment"] == "kernel without the cgroup pool series"
    failed = _test(doc, "/patched", "cgroup_pool.test_pool_size.test_pool_size_limits.4096")
    assert failed["status"] == "FAIL" and failed["log_excerpt"].startswith("Traceback")
    assert failed["misc"] == {"junit_classname": "patched.guest.guest-tests.test_pool_size",
                              "junit_name": "test_pool_size_limits[4096]",
                              "kernel_log": "[ 12.0] cgroup: pool"}
    assert failed["log_url"].endswith("/out/patched/console.log")
    assert failed["environment"]["misc"] == {"accel": "tcg", "qemu_version": "7.2.19"}
    _test(doc, "baseline", "cgroup_pool.test_cgroup_v1_basic.test_mkdir_rmdir.cpu-cpuacct")
    _test(doc, "baseline", "cgroup_pool.test_pool_rename.TestRename.test_rename_keeps.a_b_c_d")
    assert _test(doc, "baseline", "boot")["status"] == "PASS"
    assert _test(doc, "baseline", "boot")["start_time"] == kcidb.iso_time(START + 260)
    assert _test(doc, "/patched", "kselftest.run")["status"] == "PASS"
    reg = _test(doc, "/patched", "kselftest.cgroup.test_core.test_cgcore_lesser_euid_open")
    assert reg["status"] == "FAIL" and reg["comment"].startswith("[regression")
    assert _test(doc, "/patched", "kselftest.cgroup.test_core")["status"] == "FAIL"
    flaky = _test(doc, "baseline", "kselftest.cgroup.test_freezer.test_cgfreezer_ptrace")
    assert flaky["status"] == "PASS" and flaky["misc"]["flaky"] == "first run: failed"
    # the variant whose build failed: its boot and guest stages never ran, so no tests
    assert not [t for t in doc["tests"] if t["build_id"].endswith("/patched-kasan")]


def test_early_failure_and_interrupt(tmp_path):
    """The tree could not be prepared: invalid checkout, builds MISS; stopped while
    preparing it: validity unknown (left out)."""
    reasons = "tree debian:6.1: /usr/src/linux-source-6.1.tar.xz is missing"
    variants = []
    for name, first in (("baseline", "configure"), ("patched", "apply")):
        stages = [Stage(first, [Case(first, ERROR, message=reasons)])]
        stages += [Stage(s, [Case(s, SKIPPED, message=f"not run: {reasons}")], ran=False)
                   for s in ("configure", "build", "boot", "guest") if s != first]
        variants.append(VariantReport(name, {"tree": "debian:6.1"}, stages))
    report = RunReport(variants, bad_input=reasons, started=START)
    info = _info(tmp_path, tree_commit="", tree_version="", series=None)
    doc = validate(kcidb.document(report, info))
    base, series = doc["checkouts"]
    assert base["valid"] is False and series["valid"] is False
    assert base["log_excerpt"] == reasons and "git_commit_hash" not in base
    assert "patchset_hash" not in series          # the series was never loaded: unknown
    builds = {b["config_name"]: b["status"] for b in doc["builds"]}
    assert builds == {"baseline": "ERROR", "patched": "MISS"}
    assert doc["tests"] == []
    report.interrupted, report.bad_input = "SIGTERM", ""
    doc = validate(kcidb.document(report, info))
    assert all("valid" not in c for c in doc["checkouts"])


def test_a_conflicting_patch_makes_the_series_checkout_invalid(tmp_path):
    report = _report()
    apply = report.variants[1].stages[0]
    apply.cases[1] = Case("0002 cgroup: pool", FAILED, message="patch 0002 does not apply; "
                          "conflicts in kernel/cgroup/cgroup.c", details="hunks: #3")
    doc = validate(kcidb.document(report, _info(tmp_path)))
    base, series = doc["checkouts"]
    assert base["valid"] is True and series["valid"] is False
    assert series["log_excerpt"].startswith("patch 0002 does not apply")


def test_write_is_json_and_compiler_probe_without_config(tmp_path):
    info = _info(tmp_path)
    (info.out / "patched" / "config").unlink()
    data = kcidb.write(_report(), info, info.out / kcidb.FILE_NAME)
    assert json.loads((info.out / "kcidb.json").read_text()) == data
    builds = {b["config_name"]: b for b in validate(data)["builds"]}
    assert builds["patched"]["compiler"] == "gcc (probe) 1" and "config_url" not in builds[
        "patched"]


def test_text_fields_are_cleaned_and_bounded(tmp_path):
    report = _report()
    guest = next(s for s in report.variants[1].stages if s.name == "guest")
    guest.cases[2].details = "x\0y\udcff" + "z" * 20000
    doc = validate(kcidb.document(report, _info(tmp_path)))
    test = _test(doc, "/patched", "cgroup_pool.test_pool_size.test_pool_size_limits.4096")
    assert len(test["log_excerpt"]) == kcidb.EXCERPT_MAX and test["log_excerpt"][:2] == "xy"
    json.dumps(doc, ensure_ascii=False).encode("utf-8")      # no lone surrogate left


def test_the_schema_checks_formats():
    """The validation is worth something only if uri/date-time formats are checked."""
    bad = {"version": {"major": 5, "minor": 3},
           "builds": [{"id": "a:1", "checkout_id": "a:1", "origin": "a", "log_url": "no uri"}]}
    with pytest.raises(jsonschema.ValidationError):
        SCHEMA.validate_exactly(bad)
    bad["builds"][0].update(log_url="file:///x", start_time="yesterday")
    with pytest.raises(jsonschema.ValidationError):
        SCHEMA.validate_exactly(bad)


# --- statuses, paths, hashes ------------------------------------------------------------------

def test_statuses_are_kcidbs_vocabulary():
    """Fails when a status is mapped outside the schema's enum, or a results status is not
    mapped at all."""
    enum = SCHEMA.json["$defs"]["status"]["enum"]
    assert list(kcidb.STATUSES) == enum
    mapped = [*kcidb.CASE_STATUS.values(), kcidb.NOT_RUN_STATUS, *kcidb.BENCH_STATUS.values()]
    assert set(mapped) <= set(enum), set(mapped) - set(enum)
    assert set(kcidb.CASE_STATUS) == {PASSED, FAILED, ERROR, SKIPPED}


@pytest.mark.parametrize("text,part", [
    ("test_x", "test_x"), ("cpu-cpuacct", "cpu-cpuacct"), ("a.b/c d", "a_b_c_d"),
    ("pool-full loaded", "pool-full_loaded"), ("[]", "_"), ("ünïcode", "_n_code"), ("", "_"),
])
def test_path_part(text, part):
    assert kcidb.path_part(text) == part and PATH_RE.match(part)


def test_guest_and_kselftest_paths():
    case = Case("test_x[param]", classname="patched.guest.guest-tests.test_pool_size")
    assert kcidb.guest_path(case, "patched") == "cgroup_pool.test_pool_size.test_x.param"
    nested = Case("TestA::test_b", classname="v.guest.sub.test_mod")
    assert kcidb.guest_path(nested, "v") == "cgroup_pool.sub.test_mod.TestA.test_b"
    none = Case("guest tests", ERROR, message="no guest test reported a result")
    assert kcidb.guest_path(none, "v") == "cgroup_pool"
    sub = Case("test_kmem: a / b c", classname="v.kselftest.cgroup")
    assert kcidb.kselftest_path(sub, "v") == "kselftest.cgroup.test_kmem.a.b_c"


def test_patchset_hash_is_the_shell_recipe(tmp_path):
    """KCIDB: `sha256sum *.patch | cut -c-64 | sha256sum | cut -c-64`."""
    data = [b"first patch\n", b"second \xc3\xa9 patch\n"]
    for i, d in enumerate(data, start=1):
        (tmp_path / f"000{i}.patch").write_bytes(d)
    shell = subprocess.run("sha256sum 0001.patch 0002.patch | cut -c-64 | sha256sum | cut -c-64",
                           shell=True, cwd=tmp_path, capture_output=True, text=True,
                           check=True).stdout.strip()
    assert kcidb.patchset_hash(data) == shell
    assert kcidb.patchset_hash([]) == ""


@pytest.mark.parametrize("link,cover,first,want", [
    ("https://lore.kernel.org/r/20210908.1@host.example", "", "", "20210908.1@host.example"),
    ("https://lore.kernel.org/cgroups/abc@x.org/", "", "", "abc@x.org"),
    ("[RFC PATCH 0/2] support cgroup pool in v1, Yi Tao", "Message-Id: <c@x>\n\nbody", "", "c@x"),
    ("", "", "Subject: s\nMessage-ID: <p1@x>\n\ndiff", "p1@x"),
    ("", "", "Subject: s\n\nMessage-Id: <in-body@x>", ""),
])
def test_series_message_id(link, cover, first, want):
    assert kcidb.series_message_id(link, cover, first) == want


def test_tree_names():
    assert kcidb.tree_name("debian:6.12") == "debian-6.12"
    assert kcidb.tree_name("/srv/linux-6.1.99.tar.xz") == "linux-6.1.99"
    assert kcidb.tree_name("https://cdn.kernel.org/pub/linux-6.6.tar.gz") == "linux-6.6"


# --- the benchmark ------------------------------------------------------------------------------

def _bench() -> dict:
    return json.loads(BENCH.read_text())


def _bench_doc(tests: list[dict]) -> dict:
    return validate({"version": {"major": 5, "minor": 3}, "tests": tests})


def test_bench_json_to_tests():
    bench = _bench()
    ids = {"baseline": "kernel_pipeline:r/baseline", "patched": "kernel_pipeline:r/patched"}
    tests = _bench_doc(kcidb.bench_tests(bench, ids, BENCH))["tests"]
    metrics = len(bench["scenarios"][0]["summary"])
    assert len(tests) == len(bench["scenarios"]) * metrics + len(bench["claim"])
    by_path = {(t["build_id"].rsplit("/", 1)[1], t["path"]): t for t in tests}
    p99 = by_path[("patched", "bench.pool-full_loaded.mkdir.p99")]
    scenario = next(s for s in bench["scenarios"] if s["kernel"] == "patched"
                    and s["scenario"] == "pool-full loaded" and s["op"] == "mkdir")
    assert p99["number"] == {"value": scenario["summary"]["p99"]["median"], "unit": "ms"}
    assert p99["status"] == "DONE" and p99["id"] == "kernel_pipeline:r/patched/" + p99["path"]
    assert p99["misc"]["lo"] == scenario["summary"]["p99"]["lo"]
    assert p99["misc"]["bench_json"] == str(BENCH)
    assert ("baseline", "bench.nopool_idle.rmdir.burst") in by_path
    claim = by_path[("patched", "bench.claim.pool-full_loaded.p99")]
    assert "unit" not in claim["number"] and claim["number"]["value"] < 1
    assert all(t["status"] in kcidb.STATUSES for t in tests)


def test_bench_problems_fail_and_unknown_kernels_are_left_out():
    bench = _bench()
    bench["scenarios"][0]["problems"] = ["rep 1: mkdir errors {'EEXIST': 1}"]
    tests = kcidb.bench_tests(bench, {"baseline": "kernel_pipeline:r/baseline"})
    _bench_doc(tests)
    assert {t["build_id"] for t in tests} == {"kernel_pipeline:r/baseline"}   # no claim rows
    first = [t for t in tests if t["path"].startswith("bench.nopool_idle.mkdir.")]
    assert {t["status"] for t in first} == {"FAIL"}
    assert first[0]["comment"] == "rep 1: mkdir errors {'EEXIST': 1}"
    # a bench of another kernel release than the run's builds: not theirs
    assert kcidb.bench_tests(bench, {"baseline": "kernel_pipeline:r/b"},
                             versions={"baseline": "6.12.3"}) == []
    with pytest.raises(ValueError):
        kcidb.bench_tests({"format": "cgbench/1"}, {})


def test_bench_in_the_run_document(tmp_path):
    info = _info(tmp_path)
    (info.out / "bench").mkdir()
    bench = _bench()
    for c in bench["conditions"].values():
        c["kernel"]["release"] = "6.1.99+"
    (info.out / "bench" / "bench.json").write_text(json.dumps(bench))
    info.bench, info.bench_source = kcidb.find_bench(info.out)
    assert info.bench_source == info.out / "bench" / "bench.json"
    doc = validate(kcidb.document(_report(), info))
    numbers = [t for t in doc["tests"] if "number" in t]
    assert numbers and all(t["path"].startswith("bench.") for t in numbers)
    assert {t["build_id"].rsplit("/", 1)[1] for t in numbers} == {"baseline", "patched"}


def test_no_bench_no_numbers(tmp_path):
    info = _info(tmp_path)
    (info.out / "bench.json").write_text('{"format": "something else"}')
    assert kcidb.find_bench(info.out) == (None, None)
    doc = validate(kcidb.document(_report(), info))
    assert not [t for t in doc["tests"] if "number" in t]


def test_fixture_is_a_bench_report():
    bench = _bench()
    assert bench["format"] == kcidb.BENCH_FORMAT and bench["claim"]
