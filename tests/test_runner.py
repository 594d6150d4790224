"""The orchestrator end to end on a fake kernel tree (a Makefile that plays Kbuild) and a fake
boot back end (pipeline.boot.BootBackend, returning real BootResult objects), so it runs in
seconds."""

import hashlib
import json
import os
import shutil
import signal
import threading
import types
from pathlib import Path

import pytest
from conftest import git, make_tarball, write_fake_kernel
from lxml import etree

from pipeline import cache as cache_mod
from pipeline import runner
from pipeline.boot import BootResult, GuestTest
from pipeline.cli import main
from pipeline.errors import StageFailed
from pipeline.kselftest.suite import FAILED, PASSED

XSD = Path(__file__).parent / "fixtures" / "junit.xsd"


class FakeBoot:
    """Records calls; `behaviour` decides the result."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.probes = 0
        self.behaviour = "pass"

    def probe_accel(self, kernel, settings, log=print):
        self.probes += 1
        return "tcg"

    def run_guest(self, kernel, test_paths, out_dir, settings, python, log=print):
        self.calls.append((kernel, test_paths, out_dir, settings, python))
        (out_dir / "console.log").write_text("console\n")
        cmd = ["qemu-system-x86_64", "-kernel", str(kernel)]
        ok = [GuestTest("test_cg.py::test_mount", "passed", 0.1, kernel_log="[ 1.0] mounted")]
        if self.behaviour == "pass":
            return BootResult(True, True, settings.accel, "7.2.0", 3.0, tests=ok, command=cmd)
        if self.behaviour == "testfail":
            return BootResult(True, True, settings.accel, "7.2.0", 3.0, command=cmd, tests=ok + [
                GuestTest("test_cg.py::test_pool", "failed", 0.2, "WARNING: at x.c:1",
                          "WARNING: at x.c:1\n trace", "[ 2.0] WARNING: at x.c:1")])
        if self.behaviour == "panic":
            return BootResult(True, False, settings.accel, "7.2.0", 3.0, command=cmd,
                              failure="Kernel panic - not syncing: Fatal exception",
                              console_tail="...\nKernel panic - not syncing: Fatal exception",
                              tests=ok + [GuestTest("test_cg.py::test_pool", "error", 0.0,
                                                    "did not run: kernel panic")])
        if self.behaviour == "crash":
            raise RuntimeError("bug in the boot code")
        if self.behaviour == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            threading.Event().wait(5)
        raise AssertionError(self.behaviour)


@pytest.fixture
def fake_boot(monkeypatch):
    """The runner's boot back end (pipeline.runner.default_backend) replaced by a FakeBoot."""
    fake = FakeBoot()
    monkeypatch.setattr(runner, "default_backend", lambda: fake)
    return fake


@pytest.fixture
def project(tmp_path):
    """A fake kernel tarball, a two-patch series for it, fragments, guest tests, a job."""
    parent = tmp_path / "srcparent"
    src = write_fake_kernel(parent / "linux-fake")
    tarball = make_tarball(parent, "linux-fake", tmp_path / "linux-fake.tar.gz")
    git(src, "init", "-q")
    git(src, "add", "-A", "-f")
    git(src, "commit", "-q", "-m", "base")
    (src / "kernel" / "fork.c").write_text("int fork = 1;\n")
    git(src, "commit", "-q", "-am", "fork: one")
    (src / "kernel" / "pool.c").write_text("int pool;\n")
    git(src, "add", "-f", "kernel/pool.c")
    git(src, "commit", "-q", "-m", "cgroup: add pool")
    series = tmp_path / "series"
    git(src, "format-patch", "-q", "-o", str(series), "HEAD~2")
    (series / "series.yaml").write_text("name: pool\nbase: ['6.1']\n")
    (tmp_path / "good.config").write_text("CONFIG_64BIT=y\nCONFIG_INET=y\nCONFIG_9P_FS=y\n")
    (tmp_path / "debug.config").write_text("CONFIG_NR_CPUS=4\n")
    (tmp_path / "guest-tests").mkdir()
    (tmp_path / "job.yaml").write_text(f"""\
tree: {tarball}
series: series
kconfig: [good.config]
tests: [guest-tests]
variants:
  - name: baseline
    series: false
  - name: patched
  - name: debug
    kconfig_extra: [debug.config]
    timeout_scale: 4
timeouts: {{boot: 10, test: 20, total: 100}}
cache_dir: cache
out: out
""")
    return tmp_path


def run(project: Path, *flags: str) -> tuple[int, dict, etree._ElementTree]:
    code = main(["run", "--job", str(project / "job.yaml"), *flags])
    out = project / "out"
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    doc = etree.parse(str(out / "junit.xml"))
    schema.assertValid(doc)
    return code, json.loads((out / "summary.json").read_text()), doc


def suites(doc) -> dict[str, str]:
    """suite name -> worst status in it"""
    result = {}
    for suite in doc.getroot().iter("testsuite"):
        status = "passed"
        for kind in ("skipped", "failure", "error"):
            if suite.find(f"testcase/{kind}") is not None:
                status = kind
        result[suite.get("name")] = status
    return result


def test_all_variants_pass(project, fake_boot):
    code, summary, doc = run(project)
    assert code == 0, summary
    assert suites(doc) == {f"{v}.{s}": "passed" for v, stages in [
        ("baseline", ["configure", "build", "boot", "guest"]),
        ("patched", ["apply", "configure", "build", "boot", "guest"]),
        ("debug", ["apply", "configure", "build", "boot", "guest"])] for s in stages} | {
        # The fake Kbuild writes no .o.cmd files: what was compiled cannot be told, which
        # is said (skipped), never taken for a pass or a failure.
        "patched.compiled": "skipped", "debug.compiled": "skipped",
        "series.compiled": "skipped"}
    assert fake_boot.probes == 1                     # KVM probe once per run
    settings = {c[2].name: c[3] for c in fake_boot.calls}
    assert settings["debug"].boot_timeout == 40 and settings["debug"].total_timeout == 400
    assert settings["baseline"].boot_timeout == 10 and settings["baseline"].accel == "tcg"
    assert fake_boot.calls[0][1] == [project / "guest-tests"]
    for variant in ("baseline", "patched", "debug"):
        out = project / "out" / variant
        assert (out / "bzImage").is_file() and (out / "build.log").is_file()
        assert (out / "config").is_file() and (out / "console.log").is_file()
    apply = next(s for s in doc.getroot().iter("testsuite") if s.get("name") == "patched.apply")
    assert [c.get("name") for c in apply.iter("testcase")] == ["0001 fork: one",
                                                              "0002 cgroup: add pool"]
    props = {p.get("name"): p.get("value") for p in apply.iter("property")}
    assert props["tree_version"] == "6.1.99" and props["series"].startswith("pool (")
    assert len(props["config_hash"]) == 64 and props["accel"] == "tcg"
    assert props["qemu_version"] == "7.2.0"
    # warm run: everything reused, same result
    code, _, _ = run(project, "--variant", "patched")
    assert code == 0


def kcidb_doc(project: Path) -> dict:
    """OUT/kcidb.json, validated against kcidb-io's KCIDB v5.3 schema."""
    from kcidb_io.schema import V5_3

    data = json.loads((project / "out" / "kcidb.json").read_text())
    V5_3.validate_exactly(data)
    return data


def test_kcidb_json_of_a_run(project, fake_boot):
    code, _summary, _doc = run(project)
    assert code == 0
    data = kcidb_doc(project)
    builds = {b["config_name"]: b for b in data["builds"]}
    assert set(builds) == {"baseline", "patched", "debug"}
    assert {b["status"] for b in builds.values()} == {"PASS"}
    base, series = data["checkouts"]
    assert builds["baseline"]["checkout_id"] == base["id"]
    assert builds["patched"]["checkout_id"] == builds["debug"]["checkout_id"] == series["id"]
    assert base["tree_name"] == "linux-fake" and base["valid"] and series["valid"]
    assert len(base["git_commit_hash"]) == 40 and base["patchset_hash"] == ""
    patches = sorted((project / "series").glob("0*.patch"))
    assert series["patchset_hash"] == hashlib.sha256("".join(
        hashlib.sha256(p.read_bytes()).hexdigest() + "\n" for p in patches).encode()).hexdigest()
    out = (project / "out" / "patched").resolve()
    assert builds["patched"]["log_url"] == (out / "build.log").as_uri()
    assert builds["patched"]["config_url"] == (out / "config").as_uri()
    tests = {(t["build_id"].rsplit("/", 1)[1], t["path"]): t for t in data["tests"]}
    paths = ("boot", "cgroup_pool.test_cg.test_mount")
    # The series' variants also have the compiled check, not possible on the fake tree.
    assert set(tests) == {(v, p) for v in builds for p in paths} | {
        ("patched", "compiled"), ("debug", "compiled")}
    assert {k: t["status"] for k, t in tests.items() if t["status"] != "PASS"} == {
        ("patched", "compiled"): "SKIP", ("debug", "compiled"): "SKIP"}
    assert tests[("debug", "boot")]["log_url"] == (out.parent / "debug" / "console.log").as_uri()


def test_kcidb_json_of_a_failed_build(project, fake_boot):
    patch = min((project / "series").glob("0002-*"))
    patch.write_text(patch.read_text().replace("+int pool;", "+#error pool is broken"))
    code, _summary, _doc = run(project, "--variant", "patched", "--variant", "baseline")
    assert code == 3
    data = kcidb_doc(project)
    builds = {b["config_name"]: b for b in data["builds"]}
    assert builds["patched"]["status"] == "FAIL" and builds["baseline"]["status"] == "PASS"
    assert "kernel/pool.c:1:2: error: pool is broken" in builds["patched"]["log_excerpt"]
    assert data["checkouts"][1]["valid"] is True          # the patches applied
    assert {t["build_id"] for t in data["tests"]} == {builds["baseline"]["id"]}


def test_a_bug_in_the_kcidb_report_is_exit_4_with_junit(project, fake_boot, monkeypatch):
    from pipeline import kcidb

    def broken(report, info):
        raise RuntimeError("bug in the kcidb report")

    monkeypatch.setattr(kcidb, "document", broken)
    code, summary, doc = run(project, "--variant", "baseline")
    assert code == 4 and summary["exit_code"] == 4
    assert suites(doc)["baseline.guest"] == "passed"
    assert not (project / "out" / "kcidb.json").exists()


def test_dropped_option_fails_configure_only_for_that_run(project, fake_boot):
    (project / "bad.config").write_text("CONFIG_9P_FS=y\n# CONFIG_INET is not set\n")
    code, summary, _doc = run(project, "--kconfig", str(project / "bad.config"),
                             "--variant", "baseline")
    assert code == 3
    stages = summary["variants"][0]["stages"]
    assert [(s["stage"], s["status"]) for s in stages] == [
        ("configure", "failed"), ("build", "skipped"), ("boot", "skipped"),
        ("guest", "skipped")]
    assert "CONFIG_9P_FS (from bad.config)" in stages[0]["message"]
    assert fake_boot.calls == []


def test_build_error_is_reported_and_other_variants_go_on(project, fake_boot):
    patch = min((project / "series").glob("0002-*"))
    patch.write_text(patch.read_text().replace("+int pool;", "+#error pool is broken"))
    code, summary, doc = run(project, "--variant", "patched", "--variant", "baseline")
    assert code == 3
    by_name = {v["name"]: v for v in summary["variants"]}
    assert by_name["baseline"]["exit_code"] == 0
    build = next(s for s in by_name["patched"]["stages"] if s["stage"] == "build")
    assert build["status"] == "failed"
    assert "kernel/pool.c:1:2: error: pool is broken" in build["message"]
    failure = doc.xpath("//testsuite[@name='patched.build']/testcase/failure")[0]
    assert "kernel/pool.c:1:2: error: pool is broken" in failure.text
    skipped = doc.xpath("//testsuite[@name='patched.boot']/testcase/skipped")[0]
    assert skipped.get("message").startswith("not run: build failed: ")
    assert "build failed: build failed" not in skipped.get("message")   # said once
    assert skipped.text == skipped.get("message")                       # GitLab reads the text


def test_conflicting_patch(project, fake_boot):
    patch = min((project / "series").glob("0001-*"))
    patch.write_text(patch.read_text().replace("-int fork;", "-int spoon;"))
    code, _summary, doc = run(project, "--variant", "patched")
    assert code == 3
    cases = doc.xpath("//testsuite[@name='patched.apply']/testcase")
    assert cases[0].find("failure").get("message").startswith("patch 0001-fork-one.patch does "
                                                              "not apply; conflicts in "
                                                              "kernel/fork.c")
    assert cases[1].find("skipped") is not None
    assert suites(doc)["patched.build"] == "skipped"


def test_guest_test_failure_exit_1(project, fake_boot):
    fake_boot.behaviour = "testfail"
    code, _summary, doc = run(project, "--variant", "baseline")
    assert code == 1
    failure = doc.xpath("//testcase[@name='test_pool']/failure")[0]
    assert failure.get("message") == "WARNING: at x.c:1"
    assert doc.xpath("//testcase[@name='test_pool']")[0].get("classname") == \
        "baseline.guest.test_cg"
    assert "[ 2.0] WARNING" in doc.xpath("//testcase[@name='test_pool']/system-out")[0].text


def test_panic_exit_3_with_console_tail(project, fake_boot):
    fake_boot.behaviour = "panic"
    code, _summary, doc = run(project, "--variant", "baseline")
    assert code == 3
    failure = doc.xpath("//testcase[@name='test session completes']/failure")[0]
    assert "Kernel panic" in failure.get("message") and "Kernel panic" in failure.text
    assert doc.xpath("//testcase[@name='test_pool']/error")


def test_unexpected_exception_still_gives_junit(project, fake_boot):
    fake_boot.behaviour = "crash"
    code, summary, doc = run(project, "--variant", "baseline")
    assert code == 4 and summary["exit_code"] == 4     # a bug of ours: never 1 or 3
    error = doc.xpath("//testsuite[@name='baseline.boot']/testcase/error")[0]
    assert error.get("message") == "internal error: RuntimeError: bug in the boot code"
    assert "Traceback" in error.text


def test_sigterm_writes_partial_report(project, fake_boot):
    fake_boot.behaviour = "sigterm"
    code, summary, doc = run(project)
    assert code == 3 and summary["interrupted"] == "SIGTERM"
    assert suites(doc)["baseline.boot"] == "error"
    assert suites(doc)["baseline.guest"] == "skipped"
    assert suites(doc)["patched.apply"] == "skipped"
    error = doc.xpath("//testsuite[@name='baseline.boot']/testcase/error")[0]
    assert error.get("message") == "interrupted by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_sigterm_during_build_kills_make_then_rerun_passes(project, fake_boot, monkeypatch):
    pidfile = project / "build.pid"
    monkeypatch.setenv("FAKE_BUILD_PIDFILE", str(pidfile))
    monkeypatch.setenv("FAKE_BUILD_SLEEP", "60")

    def stop_when_building() -> None:
        for _ in range(200):
            if pidfile.exists() and pidfile.read_text():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            threading.Event().wait(0.05)

    threading.Thread(target=stop_when_building, daemon=True).start()
    code, summary, doc = run(project, "--variant", "patched")
    assert code == 3 and summary["interrupted"] == "SIGTERM"
    assert suites(doc)["patched.build"] == "error"
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)
    monkeypatch.delenv("FAKE_BUILD_PIDFILE")
    code, summary, doc = run(project, "--variant", "patched")
    assert code == 0, summary


def test_series_without_matching_base_is_bad_input(project, fake_boot):
    (project / "series" / "series.yaml").write_text("name: pool\nbase: ['5.10']\n")
    code, summary, _doc = run(project)
    assert code == 2
    assert "no variant for kernel 6.1.99" in summary["bad_input"]


def test_bad_job_exit_2_before_work(project, fake_boot, capsys):
    (project / "job.yaml").write_text((project / "job.yaml").read_text() + "surprise: 1\n")
    assert main(["run", "--job", str(project / "job.yaml")]) == 2
    assert "surprise: unknown key" in capsys.readouterr().out
    assert not (project / "cache").exists()


def test_lock_wait_says_what_it_waits_for(tmp_path):
    import fcntl
    cache = cache_mod.Cache(tmp_path)
    path = cache.dir("locks") / "tree-x.lock"
    lines: list[str] = []
    with open(path, "a+") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        with pytest.raises(StageFailed, match="gave up"), \
                cache.lock("tree-x", "tree debian:6.1", lines.append, timeout=0.3, poll=0.05):
            pass
    assert "waiting for another pipeline run to finish with tree debian:6.1" in lines[0]
    with cache.lock("tree-x", "tree debian:6.1", lines.append):
        pass


def _interrupt_after(monkeypatch, module, name: str, calls: int = 1) -> None:
    """Make `module.name` send SIGTERM to this process after its `calls`-th call returns."""
    real = getattr(module, name)
    count = {"n": 0}

    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        count["n"] += 1
        if count["n"] == calls:
            os.kill(os.getpid(), signal.SIGTERM)
            threading.Event().wait(5)
        return result

    monkeypatch.setattr(module, name, wrapper)


@pytest.mark.parametrize("where,stage", [
    ("tree.safe_extract", "apply"),        # extracted, not yet committed: tree not cached
    ("apply.apply_one", "apply"),         # 1 of 2 patches applied
    ("kconfig.write_merged", "configure"),  # base config written, olddefconfig not run
    ("build.build_kernel", "build"),        # image built, not yet copied out
])
def test_interrupt_at_each_stage_then_a_clean_run(project, fake_boot, monkeypatch, where,
                                                  stage):
    from pipeline import apply, build, kconfig, tree
    module = {"tree": tree, "apply": apply, "kconfig": kconfig, "build": build}[
        where.split(".")[0]]
    with monkeypatch.context() as m:
        _interrupt_after(m, module, where.split(".")[1])
        code, summary, doc = run(project, "--variant", "patched")
    assert code == 3 and summary["interrupted"] == "SIGTERM"
    assert suites(doc)[f"patched.{stage}"] == "error"
    assert suites(doc)["patched.boot"] == "skipped"
    trees = project / "cache" / "trees"
    assert not list(trees.glob(".tmp-*")), "a half-made tree was left in the cache"
    code, summary, doc = run(project, "--variant", "patched")
    assert code == 0, summary
    assert [c.get("name")[:4] for c in doc.xpath(
        "//testsuite[@name='patched.apply']/testcase")] == ["0001", "0002"]


def test_a_bug_in_the_kselftest_report_still_gives_junit(project, fake_boot, monkeypatch):
    from pipeline.kselftest import stage as kselftest_stage

    def broken(run):
        raise RuntimeError("bug in the report")

    monkeypatch.setattr(kselftest_stage, "report", broken)
    code, _summary, doc = run(project, "--variant", "baseline")
    assert code == 4
    error = doc.xpath("//testsuite[@name='baseline.kselftest-report']/testcase/error")[0]
    assert "bug in the report" in error.get("message")


def test_user_checkout_is_untouched_by_a_passing_failing_or_interrupted_run(
        project, fake_boot, monkeypatch, user_repo):
    from conftest import snapshot

    from pipeline import build
    before = snapshot(user_repo)
    flags = ("--variant", "patched", "--tree", f"{user_repo}@v1")
    assert run(project, *flags)[0] == 0
    with monkeypatch.context() as m:
        _interrupt_after(m, build, "build_kernel")
        code, summary, _doc = run(project, *flags)
        assert code == 3 and summary["interrupted"] == "SIGTERM"
    bad = project / "no-inet.config"
    bad.write_text("CONFIG_9P_FS=y\n# CONFIG_INET is not set\n")
    assert run(project, *flags, "--kconfig", str(bad))[0] == 3
    assert snapshot(user_repo) == before


def _enable_kselftest(project: Path, monkeypatch, run_phase) -> None:
    """Turn the job's kselftests on, with a fake build and the given run_phase."""
    from pipeline.kselftest import suite as kselftest

    job = project / "job.yaml"
    job.write_text(job.read_text() + "kselftest: {enabled: true, variants: [baseline, patched]}\n")

    def fake_build(tree, cache_dir, targets, log, **_kw):
        return kselftest.SelftestBuild(tree, cache_dir, [kselftest.Selftest("cgroup", "test_x")],
                                       cache_dir / "log", 1.5)

    monkeypatch.setattr(kselftest, "build_selftests", fake_build)
    monkeypatch.setattr(kselftest, "run_phase", run_phase)


def test_a_bug_in_the_kselftest_phase_is_an_error_case_exit_4(project, fake_boot, monkeypatch):
    def broken(*_a, **_kw):
        raise RuntimeError("bug in the kselftest phase")

    _enable_kselftest(project, monkeypatch, broken)
    code, summary, doc = run(project, "--variant", "baseline", "--variant", "patched")
    assert code == 4 and summary["exit_code"] == 4
    for variant in ("baseline", "patched"):       # every variant's JUnit is written
        error = doc.xpath(f"//testsuite[@name='{variant}.kselftest-run']/testcase/error")[0]
        assert error.get("message") == "internal error: RuntimeError: bug in the kselftest phase"
        assert "Traceback" in error.text
        assert suites(doc)[f"{variant}.guest"] == "passed"
    build = doc.xpath("//testsuite[@name='baseline.kselftest-build']/testcase")[0]
    assert build.get("time") == "1.500"            # the build's own time, not 0


def test_kselftest_results_and_known_issues_reach_junit(project, fake_boot, monkeypatch):
    from pipeline.kselftest import known_issues
    from pipeline.kselftest import suite as kselftest

    def phase(kernel, build, out_dir, settings, python, log, timeout_scale=1.0, only=None,
              backend=None):
        res = [kselftest.CaseResult("cgroup", "test_x", "", FAILED, "exit code 1; failed: "
                                    "known", duration=2.0),
               kselftest.CaseResult("cgroup", "test_x", "known", FAILED, "no swap"),
               kselftest.CaseResult("cgroup", "test_x", "fine", PASSED),
               kselftest.CaseResult("cgroup", "test_x", "fixed-upstream", PASSED)]
        return kselftest.KselftestPhase(types.SimpleNamespace(completed=True, failure=""), [],
                                        res)

    _enable_kselftest(project, monkeypatch, phase)
    known = project / "known.yaml"
    known.write_text("""\
issues:
  - {id: "cgroup/test_x: known", reason: "needs swap", evidence: "no swap device"}
  - {id: "cgroup/test_x: fixed-upstream", reason: "old", evidence: "e", since: "6.0"}
  - {id: "cgroup/test_x: fine", reason: "only on 7", evidence: "e", since: "7.0"}
""")
    real_load = known_issues.load
    monkeypatch.setattr(known_issues, "load", lambda path=None: real_load(known))
    code, summary, doc = run(project, "--variant", "baseline", "--variant", "patched")
    assert code == 0, summary
    for variant in ("baseline", "patched"):
        suite = doc.xpath(f"//testsuite[@name='{variant}.kselftest']")[0]
        assert suite.get("failures") == "0" and suite.get("errors") == "0"
        skipped = suite.xpath("testcase[@name='test_x: known']/skipped")[0]
        assert skipped.get("message") == "known issue: needs swap"
        assert skipped.text.startswith("known issue: needs swap")
        program = suite.xpath("testcase[@name='test_x']")[0]
        assert program.find("failure") is None
        assert "only known issues or flaky subtests failed (known)" in \
            program.find("system-out").text
        props = {p.get("name"): p.get("value") for p in suite.iter("property")}
        assert props["known_issues_passed"] == "cgroup/test_x: fixed-upstream"
        assert suite.get("time") == "2.000"
    assert summary["kselftest"]["variants"]["baseline"]["known_issues_passed"] == [
        "cgroup/test_x: fixed-upstream"]
    table = (project / "out" / "patched" / "kselftest-regressions.md").read_text()
    assert "Known issue passed (remove it from the known-issues file?): " \
           "cgroup/test_x: fixed-upstream" in table


def test_a_run_clears_the_previous_results_but_not_the_users_files(project, fake_boot,
                                                                     monkeypatch):
    from pipeline import runner

    out = project / "out"
    (out / "baseline").mkdir(parents=True)
    (out / "baseline" / "my-notes.txt").write_text("mine")
    (out / "README.txt").write_text("mine too")
    code, _summary, _doc = run(project, "--variant", "baseline")
    assert code == 0
    assert (out / "baseline" / "config").is_file()
    (out / "baseline" / "added-later.txt").write_text("also mine")

    def broken(*_a, **_kw):
        raise RuntimeError("bug before any stage")

    monkeypatch.setattr(runner, "prepare_tree", broken)
    assert main(["run", "--job", str(project / "job.yaml"), "--variant", "baseline"]) == 4
    # No old junit.xml or summary.json passes for this run's result ...
    assert not (out / "junit.xml").exists() and not (out / "summary.json").exists()
    assert not (out / "baseline" / "config").exists()
    # ... and nothing of the user's is gone.
    assert (out / "baseline" / "my-notes.txt").read_text() == "mine"
    assert (out / "baseline" / "added-later.txt").read_text() == "also mine"
    assert (out / "README.txt").read_text() == "mine too"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_a_hunk_no_variant_compiled_fails_the_run(project, fake_boot, monkeypatch):
    """The compiled stage and report through the runner: the fake Kbuild gets a real .cmd
    record for kernel/fork.o only, so the series' new kernel/pool.c was never compiled."""
    from pipeline import compiled
    real = compiled.check_build

    def with_kbuild_records(hunks, src, build_dir, variant, log=None, timeout=60.0):
        fork = Path(os.path.realpath(src)) / "kernel" / "fork.c"
        (build_dir / "kernel").mkdir(parents=True, exist_ok=True)
        (build_dir / "kernel" / ".fork.o.cmd").write_text(
            f"cmd_kernel/fork.o := gcc -c -o kernel/fork.o {fork}\n\n"
            f"source_kernel/fork.o := {fork}\n")
        return real(hunks, src, build_dir, variant, log, timeout)

    monkeypatch.setattr(compiled, "check_build", with_kbuild_records)
    code, summary, doc = run(project, "--variant", "patched")
    assert code == 1 and summary["exit_code"] == 1
    found = suites(doc)
    assert found["patched.compiled"] == "skipped" and found["series.compiled"] == "failure"
    assert found["patched.guest"] == "passed"
    [never] = summary["compiled"]["never_compiled"]
    assert never["file"] == "kernel/pool.c" and never["patch"].startswith("0002-")
    fork_case = doc.xpath("//testsuite[@name='patched.compiled']/testcase")[0]
    assert fork_case.get("name").startswith("0001-") and fork_case.find("skipped") is None


# --- the lockdep report (pipeline.lockdep): patched vs baseline lockdep kernels ----------------

class LockdepBoot(FakeBoot):
    """A passing session that leaves the lockdep files the guest init copies, per variant
    (`dumps`: variant name -> (lockdep, lockdep_chains) texts; absent: no files)."""

    def __init__(self, dumps: dict[str, tuple[str, str]]) -> None:
        super().__init__()
        self.dumps = dumps

    def run_guest(self, kernel, test_paths, out_dir, settings, python, log=print):
        texts = self.dumps.get(out_dir.name)
        if texts is not None:
            folder = out_dir / "guest" / "lockdep"
            folder.mkdir(parents=True)
            for name, text in zip(("lockdep", "lockdep_chains"), texts):
                (folder / name).write_text(text)
            (folder / "manifest.json").write_text(json.dumps(
                {n: {"bytes": len(t), "truncated": False}
                 for n, t in zip(("lockdep", "lockdep_chains"), texts)}))
        return super().run_guest(kernel, test_paths, out_dir, settings, python, log)


@pytest.fixture
def lockdep_project(project, monkeypatch):
    """The project with a lockdep `debug` variant and its `baseline-debug` counterpart."""
    from test_lockdep import BASE_CHAINS, BASE_LOCKDEP, PATCHED_CHAINS, PATCHED_LOCKDEP
    (project / "debug.config").write_text("CONFIG_NR_CPUS=4\nCONFIG_PROVE_LOCKING=y\n")
    job = project / "job.yaml"
    job.write_text(job.read_text().replace("timeouts:", """\
  - name: baseline-debug
    series: false
    kconfig_extra: [debug.config]
    timeout_scale: 4
timeouts:"""))
    fake = LockdepBoot({"baseline-debug": (BASE_LOCKDEP, BASE_CHAINS),
                        "debug": (PATCHED_LOCKDEP, PATCHED_CHAINS)})
    monkeypatch.setattr(runner, "default_backend", lambda: fake)
    return project, fake


def test_lockdep_report_fails_a_new_watched_dependency(lockdep_project):
    project, _ = lockdep_project
    code, summary, doc = run(project)
    assert code == 1, summary              # a test failure, not a stage failure (3)
    found = suites(doc)
    assert found["debug.lockdep"] == "failure"
    assert "patched.lockdep" not in found and "baseline-debug.lockdep" not in found
    entry = summary["lockdep"]["debug"]
    assert entry["baseline"] == "baseline-debug" and entry["new_edges"] == 4
    # (cgroup_mutex -> &pool->lock is new too, but accepted in pipeline/data/lockdep-watch.yaml)
    assert entry["watched"] == ["&root->kernfs_rwsem -> css_set_lock"]
    assert "| `&root->kernfs_rwsem` | `css_set_lock` | **watched** |" in (
        project / "out" / "debug" / "lockdep-new.md").read_text()


def test_lockdep_report_without_the_baseline_variant_is_skipped(lockdep_project):
    project, _ = lockdep_project
    code, summary, doc = run(project, "--variant", "debug")
    assert code == 0, summary
    case = doc.xpath("//testsuite[@name='debug.lockdep']/testcase/skipped")[0]
    assert "add --variant baseline-debug" in case.get("message")


def test_lockdep_report_with_a_missing_dump_is_skipped_not_passed(lockdep_project):
    project, fake = lockdep_project
    del fake.dumps["baseline-debug"]
    code, summary, doc = run(project)
    assert code == 0, summary
    case = doc.xpath("//testsuite[@name='debug.lockdep']/testcase/skipped")[0]
    assert case.get("message").startswith("baseline-debug: no /proc/lockdep dump")
    assert summary["lockdep"]["debug"]["status"] == "skipped"


def test_a_bug_in_the_lockdep_report_is_exit_4_with_junit(lockdep_project, monkeypatch):
    project, _ = lockdep_project
    from pipeline import lockdep

    def broken(*args):
        raise RuntimeError("bug in compare")
    monkeypatch.setattr(lockdep, "compare", broken)
    code, _, doc = run(project)
    assert code == 4
    assert doc.xpath("//testsuite[@name='debug.lockdep']/testcase/error")
