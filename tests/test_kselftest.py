"""pipeline.kselftest.suite: console reassembly, program/subtest results, build helpers."""

import importlib.util
import json
import sys
import types
from pathlib import Path

from pipeline.kselftest import suite as kselftest
from pipeline.kselftest.suite import ERROR, FAILED, PASSED, SKIPPED, Selftest

FIXTURES = Path(__file__).parent / "fixtures" / "ktap"
CGROUP_61 = ["test_memcontrol", "test_kmem", "test_core", "test_freezer", "test_kill",
             "test_cpu", "test_stress.sh", "test_cpuset_prs.sh"]


def cgroup_61() -> list[Selftest]:
    return [Selftest("cgroup", n) for n in CGROUP_61]


def guest_runner():
    """The standalone guest module, loaded by path as the guest does."""
    spec = importlib.util.spec_from_file_location("kselftest_run", kselftest.GUEST_RUNNER)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["kselftest_run"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def by_key(results):
    return {r.key: r for r in results}


def test_real_console_baseline_6_1():
    runs = kselftest.parse_console((FIXTURES / "b61-console-excerpt.log").read_text(),
                                   cgroup_61())
    assert all(r.ran and r.finished for r in runs)
    kill = next(r for r in runs if r.test.name == "test_kill")
    assert kill.timed_out and kill.rc == -9
    res = by_key(kselftest.results_of(runs))
    assert res["test_kill"].status == FAILED and res["test_kill"].message == "TIMEOUT 45 seconds"
    assert res["test_core"].status == FAILED
    assert "test_cgcore_lesser_ns_open" in res["test_core"].message
    assert res["test_core: test_cgcore_destroy"].status == PASSED
    assert res["test_memcontrol: test_memcg_swap_max"].status == SKIPPED
    assert res["test_memcontrol: test_memcg_reclaim"].message.startswith("failed to allocate")
    assert res["test_cpuset_prs.sh"].status == PASSED
    subtests = [r for r in res.values() if r.subtest]
    assert len(subtests) == 14 + 6 + 12 + 10 + 8 + 12


def test_real_console_patched_6_1_timeout_mid_program():
    runs = kselftest.parse_console((FIXTURES / "p61-console-excerpt.log").read_text(),
                                   cgroup_61())
    res = by_key(kselftest.results_of(runs))
    assert res["test_kmem"].status == FAILED and "TIMEOUT" in res["test_kmem"].message
    assert "test_kmem: test_percpu_basic" not in res  # killed before it reported


def test_frames_survive_kernel_text_and_cr():
    console = ("KSELFTEST-BEGIN cgroup test_core timeout=45\r\n"
               "[   3.1] random: crng init doneKSELFTEST-LINE cgroup test_core | ok 1 a\r\n"
               "KSELFTEST-LINE cgroup test_core | \r\n"
               "KSELFTEST-LINE cgroup test_core | not ok 2 b # TIMEOUT 5 seconds\r\n"
               "KSELFTEST-END cgroup test_core rc=1 secs=0.5 timedout=0\r\n")
    (run,) = kselftest.parse_console(console, [Selftest("cgroup", "test_core")])
    assert run.output == ["ok 1 a", "", "not ok 2 b # TIMEOUT 5 seconds"]
    res = by_key(kselftest.results_of([run]))
    assert res["test_core: b"].status == FAILED
    assert res["test_core: b"].message == "TIMEOUT 5 seconds"


def test_program_that_never_ran_or_never_ended():
    console = "KSELFTEST-BEGIN cgroup test_kill timeout=45\nKSELFTEST-LINE cgroup test_kill | ok 1 x\n"
    runs = kselftest.parse_console(console, [Selftest("cgroup", "test_kill"),
                                             Selftest("cgroup", "test_cpu")])
    res = by_key(kselftest.results_of(runs, "kernel panic"))
    assert res["test_kill"].status == ERROR and "kernel panic" in res["test_kill"].message
    assert res["test_cpu"].status == ERROR and res["test_cpu"].message.startswith("did not run")
    assert res["test_kill: x"].status == PASSED


def test_ksft_skip_exit_code_keeps_the_reason():
    console = ("KSELFTEST-BEGIN cgroup test_zswap timeout=45\n"
               "KSELFTEST-LINE cgroup test_zswap | TAP version 13\n"
               "KSELFTEST-LINE cgroup test_zswap | 1..0 # SKIP zswap isn't configured\n"
               "KSELFTEST-END cgroup test_zswap rc=4 secs=0.1 timedout=0\n")
    runs = kselftest.parse_console(console, [Selftest("cgroup", "test_zswap")])
    (res,) = kselftest.results_of(runs)
    assert res.status == SKIPPED and res.message == "zswap isn't configured"


def test_skip_reason_prefers_diagnostics_over_repeated_name():
    console = ("KSELFTEST-BEGIN cgroup t timeout=45\n"
               "KSELFTEST-LINE cgroup t | # no swap device\n"
               "KSELFTEST-LINE cgroup t | ok 1 # SKIP test_swap\n"
               "KSELFTEST-END cgroup t rc=0 secs=0.1 timedout=0\n")
    res = by_key(kselftest.results_of(kselftest.parse_console(console, [Selftest("cgroup", "t")])))
    assert res["t: test_swap"].message == "no swap device"


def test_incomplete_tap_with_exit_zero_fails_the_program():
    console = ("KSELFTEST-BEGIN cgroup t timeout=45\n"
               "KSELFTEST-LINE cgroup t | 1..3\nKSELFTEST-LINE cgroup t | ok 1 a\n"
               "KSELFTEST-END cgroup t rc=0 secs=0.1 timedout=0\n")
    res = by_key(kselftest.results_of(kselftest.parse_console(console, [Selftest("cgroup", "t")])))
    assert res["t"].status == FAILED and "planned 3" in res["t"].message


def test_read_timeout(tmp_path):
    assert kselftest.read_timeout(tmp_path) == 45
    (tmp_path / "settings").write_text("# comment\ntimeout=300\n")
    assert kselftest.read_timeout(tmp_path) == 300


def test_guest_time_budget():
    per, total = kselftest.guest_time_budget([Selftest("c", "a", 45), Selftest("c", "b", 90)],
                                             scale=2.0)
    assert per == 195.0 and total == (90 + 15) + (180 + 15) + 120


def test_failed_program_named_from_make_output():
    text = ("test_kill.c:12:5: error: unknown type name 'foo'\n"
            "make[1]: *** [../lib.mk:145: /c/build/kselftest/cgroup/test_kill] Error 1\n")
    assert kselftest._failed_program(text) == "test_kill"
    assert kselftest._failed_program("cgroup_util.c:3:1: error: x\n") == "cgroup_util"


def test_guest_runner_manifest_and_timeout_scale(tmp_path):
    mod = guest_runner()
    assert mod.timeout_scale("console=ttyS0 kselftest.timeout_scale=3 ro") == 3.0
    assert mod.timeout_scale("console=ttyS0") == 1.0
    (tmp_path / kselftest.MANIFEST).write_text(json.dumps(
        {"tests": [{"collection": "cgroup", "name": "test_core", "timeout": 45}]}))
    (t,) = mod.load_manifest(tmp_path)
    assert (t.collection, t.name) == ("cgroup", "test_core")


def test_guest_runner_kills_a_hanging_test(tmp_path):
    mod = guest_runner()
    coll = tmp_path / "cgroup"
    coll.mkdir()
    hang = coll / "test_hang.sh"
    hang.write_text("#!/bin/sh\necho 'ok 1 started'\nsleep 60 &\nsleep 60\n")
    hang.chmod(0o755)
    mod.WORK_DIR = tmp_path / "work"
    out = mod.run_selftest(mod.Selftest("cgroup", "test_hang.sh", 1), tmp_path)
    assert out.timed_out and out.seconds < 10 and "ok 1 started" in out.output


def test_real_console_fragment_kernel_pytest_mode():
    # 6.1 built with kselftest-cgroup.config, guest module run under pytest (frames on
    # /dev/console): INOTIFY_USER and CFS_BANDWIDTH turn freezer, kill and cpu.max green.
    runs = kselftest.parse_console(
        (FIXTURES / "k61-fragment-console-excerpt.log").read_text(), cgroup_61())
    res = by_key(kselftest.results_of(runs))
    assert res["test_freezer"].status == PASSED and res["test_kill"].status == PASSED
    assert res["test_cpu: test_cpucg_max"].status == PASSED
    assert res["test_memcontrol: test_memcg_sock"].status == SKIPPED


def test_guest_runner_scratch_disk_and_cgroup2_options(monkeypatch, tmp_path):
    mod = guest_runner()
    assert mod.scratch_device("console=ttyS0 kselftest.scratch=/dev/vda quiet") == "/dev/vda"
    assert mod.scratch_device("console=ttyS0") is None
    calls = []

    def fake_run(argv, **kw):
        calls.append(argv)
        return types.SimpleNamespace(returncode=0, stderr="")

    monkeypatch.setattr(mod, "find_cgroup2", lambda: None)
    monkeypatch.setattr(mod.subprocess, "run", fake_run)
    monkeypatch.setattr(mod, "CGROUP2_MOUNTS", (str(tmp_path / "cg"),))
    assert mod.mount_cgroup2() == (str(tmp_path / "cg"), True)
    # test_cgcore_lesser_ns_open needs namespaces to be delegation boundaries
    assert calls == [["mount", "-t", "cgroup2", "-o", "nsdelegate", "none", str(tmp_path / "cg")]]


def test_guest_runner_runs_programs_chrooted_on_the_scratch_disk(monkeypatch, tmp_path):
    mod = guest_runner()
    install = tmp_path / "install"
    (install / "cgroup").mkdir(parents=True)
    (install / "cgroup" / "test_x").write_text("#!/bin/sh\necho ok\n")
    root = tmp_path / "root"
    (root / "kselftest").mkdir(parents=True)
    seen = {}

    class FakePopen:
        def __init__(self, argv, **kw):
            seen["argv"], seen["cwd"] = argv, kw["cwd"]
            self.pid, self.returncode = 1, 0

        def communicate(self, timeout=None):
            return b"ok 1 x\n", b""

    monkeypatch.setattr(mod.subprocess, "Popen", FakePopen)
    monkeypatch.setitem(mod._phase, "chroot", str(root))
    out = mod.run_selftest(mod.Selftest("cgroup", "test_x", 10), install)
    assert out.rc == 0
    assert (root / "kselftest" / "cgroup" / "test_x").is_file()     # copied onto the disk
    argv = seen["argv"]
    assert argv[:3] == ["chroot", str(root), "/bin/sh"]
    assert argv[5] == "/kselftest/cgroup" and argv[-1] == "/kselftest/cgroup/test_x"


def test_scratch_disk_image_is_ext2(tmp_path):
    logs = []
    image = kselftest.make_scratch_disk(tmp_path / "s", logs.append)
    if image is None:
        assert "no mkfs.ext2" in logs[0]
        return
    assert image.stat().st_size == kselftest.SCRATCH_SIZE
    assert image.stat().st_blocks * 512 < 64 << 20          # sparse
    with open(image, "rb") as f:
        f.seek(1024 + 0x38)
        assert f.read(2) == b"\x53\xef"                       # the ext2 superblock magic
    kargs, qargs = kselftest.scratch_boot_args(image)
    assert kargs == ["kselftest.scratch=/dev/vda"]
    assert qargs == ["-drive", f"file={image},format=raw,if=virtio,cache=unsafe"]
