"""The boot driver (pipeline.boot) against a fake QEMU that replays real captured consoles.

The fake (tests/fixtures/fake-qemu) prints a console log captured from a real boot of the
6.1 baseline kernel and drops that boot's results file into the out share; or it stays
silent (a hung guest, or KVM hanging at "Booting from ROM"), or it fails like a QEMU with a
bad option. Each test checks that QEMU is gone afterwards.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pipeline import boot
from pipeline.errors import StageFailed
from pipeline.qemu import Machine

FIXTURES = Path(__file__).parent / "fixtures"
CONSOLE = FIXTURES / "console"
FAKE = FIXTURES / "fake-qemu"
PROJECT = Path(__file__).resolve().parent.parent
FAULTS = PROJECT / "tests" / "guest-faults"
BASIC = PROJECT / "guest-tests" / "test_cgroup_v1_basic.py"


_REAL_COLLECT = boot.host_collect
_collected: dict[tuple, list[str]] = {}


def _cached_collect(python, tests, timeout=120.0, unprivileged=None):
    """The real host-side collection, once per set of paths (it costs ~0.7 s each). Run
    without the drop to nobody: these tests are about merging the host's list, and nobody
    may not be able to run this interpreter (a pyenv under /root); the drop itself is
    tested in test_guest_untrusted.py."""
    key = (str(python), *map(str, tests))
    if key not in _collected:
        _collected[key] = _REAL_COLLECT(python, tests, timeout, unprivileged=False)
    return list(_collected[key])


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A Machine whose QEMU is the fake; returns (machine, pidfile, kernel)."""
    machine = Machine.load()
    machine.binary = str(FAKE)
    machine.probe_seconds = 1.0
    pidfile = tmp_path / "qemu.pid"
    monkeypatch.setenv("FAKE_QEMU_PIDFILE", str(pidfile))
    monkeypatch.setattr(boot, "STOP_GRACE", 0.5)
    monkeypatch.setattr(boot, "host_collect", _cached_collect)
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"not really a kernel")
    return machine, pidfile, kernel


def replay(monkeypatch, name: str, mode: str = "replay") -> None:
    monkeypatch.setenv("FAKE_QEMU_MODE", mode)
    monkeypatch.setenv("FAKE_QEMU_CONSOLE", str(CONSOLE / f"{name}.log"))
    results = CONSOLE / f"{name}.results.jsonl"
    if results.exists():
        monkeypatch.setenv("FAKE_QEMU_RESULTS", str(results))


def assert_gone(pidfile: Path) -> None:
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def run(fake, tmp_path, tests, **settings) -> boot.BootResult:
    machine, _, kernel = fake
    logged: list[str] = []
    result = boot.run_guest(kernel, tests, tmp_path / "out",
                            boot.BootSettings(accel="tcg", **settings),
                            Path(sys.executable), logged.append, machine=machine)
    result.logged = logged  # type: ignore[attr-defined]
    return result


def test_clean_session(fake, tmp_path, monkeypatch):
    replay(monkeypatch, "b61-clean-boot-basic-tests")
    # the recorded session's tests only (guest-tests/ may have changed since the capture)
    monkeypatch.setattr(boot, "host_collect", lambda python, tests, timeout=0: [])
    result = run(fake, tmp_path, [BASIC])
    assert result.booted and result.completed and result.failure == ""
    assert [t.outcome for t in result.tests] == ["passed"] * 9
    assert result.tests[0].nodeid.endswith("test_cgroup_v1_basic.py::test_mkdir_rmdir[named]")
    assert result.splats == [] and result.qemu_version == "0.0.0 (fake)"
    assert "reboot: machine restart" in (tmp_path / "out" / "console.log").read_text()
    assert result.command[0] == str(FAKE) and "-no-reboot" in result.command
    assert_gone(fake[1])


def test_done_marker_lost_on_console_is_taken_from_results_file(fake, tmp_path, monkeypatch):
    garbled = tmp_path / "garbled.log"
    garbled.write_text((CONSOLE / "b61-clean-boot-basic-tests.log").read_text().replace(
        '@@PIPELINE:{"event": "done"', '@@PIPELINE:{"event": [    9.1] "done"'))
    monkeypatch.setenv("FAKE_QEMU_MODE", "replay")
    monkeypatch.setenv("FAKE_QEMU_CONSOLE", str(garbled))
    monkeypatch.setenv("FAKE_QEMU_RESULTS",
                       str(CONSOLE / "b61-clean-boot-basic-tests.results.jsonl"))
    monkeypatch.setattr(boot, "host_collect", lambda python, tests, timeout=0: [])
    result = run(fake, tmp_path, [BASIC])
    assert result.completed, result.failure


def test_hanging_test_hits_the_test_timeout(fake, tmp_path, monkeypatch):
    replay(monkeypatch, "b61-hang-test-timeout", "replay-then-hang")
    result = run(fake, tmp_path, [FAULTS / "test_hang.py"], test_timeout=1.0)
    assert result.booted and not result.completed
    assert result.failure.startswith("test timeout: ") and "test_never_returns" in result.failure
    by_name = {t.nodeid.split("::")[1]: t for t in result.tests}
    assert by_name["test_before_hang"].outcome == "passed"
    assert by_name["test_never_returns"].outcome == "error"
    assert by_name["test_never_returns"].message.startswith("did not finish: test timeout")
    assert by_name["test_after_hang"].message.startswith("did not run: test timeout")
    assert result.duration < 10
    assert_gone(fake[1])


def test_panic_in_a_test(fake, tmp_path, monkeypatch):
    replay(monkeypatch, "b61-panic-oom-in-test")
    result = run(fake, tmp_path, [FAULTS / "test_panic_in_test.py"])
    assert result.booted and not result.completed
    assert result.failure == ("kernel panic: Kernel panic - not syncing: Out of memory: "
                              "compulsory panic_on_oom is enabled")
    outcomes = [(t.nodeid.split("::")[1], t.outcome) for t in result.tests]
    assert outcomes == [("test_before_panic", "passed"), ("test_oom_panics_the_kernel", "error"),
                        ("test_after_panic", "error")]
    assert "mem_cgroup_out_of_memory" in result.tests[1].kernel_log
    assert "Kernel panic" in result.console_tail
    assert_gone(fake[1])


def test_oops_in_a_test_ends_the_boot_at_once(fake, tmp_path, monkeypatch):
    """A real Oops (the first ports' refill running on a freed root) while the test sleeps:
    the test fails with the trace right away, not at its 300 s timeout."""
    replay(monkeypatch, "p61-oops-in-test", "replay-then-hang")
    result = run(fake, tmp_path, [FAULTS / "test_oops_in_test.py"], test_timeout=300.0)
    assert result.booted and not result.completed
    assert result.duration < 30, f"waited {result.duration:.0f} s after the Oops"
    assert result.failure.startswith("kernel bug during ") and \
        "test_root_pool_freed_under_its_refill" in result.failure and \
        "BUG: unable to handle page fault" in result.failure, result.failure
    by_name = {t.nodeid.split("::")[1]: t for t in result.tests}
    assert by_name["test_before_oops"].outcome == "passed"
    oops = by_name["test_root_pool_freed_under_its_refill"]
    assert oops.outcome == "error" and oops.message.startswith("did not finish: kernel bug")
    assert "cgroup_pool_supply_workfn" in oops.kernel_log
    assert by_name["test_after_oops"].outcome == "error"
    assert by_name["test_after_oops"].message.startswith("did not run: kernel bug")
    assert any("stopping this boot" in line for line in result.logged)
    assert_gone(fake[1])


def test_a_warning_in_a_test_does_not_end_the_boot(fake, tmp_path, monkeypatch):
    """Only fatal splats end the boot: a WARN fails its test, the next tests still run."""
    replay(monkeypatch, "b61-kmsg-warn-in-test")
    result = run(fake, tmp_path, [FAULTS / "test_kmsg_warn.py"])
    assert result.completed, result.failure
    assert not any("stopping this boot" in line for line in result.logged)


def test_panic_at_boot_lists_every_test_as_not_run(fake, tmp_path, monkeypatch):
    replay(monkeypatch, "p61-panic-no-init")
    result = run(fake, tmp_path, [FAULTS / "test_hang.py"])
    assert not result.booted and "Requested init /nonexistent failed" in result.failure
    # the test list comes from the host-side collection
    assert [t.nodeid.split("::")[1] for t in result.tests] == [
        "test_before_hang", "test_never_returns", "test_after_hang"]
    assert all(t.outcome == "error" and t.message.startswith("did not run: kernel panic")
               for t in result.tests)
    assert result.splats and result.splats[0].startswith("Kernel panic")


def test_panic_at_boot_without_a_host_collection_lists_tests_from_source(fake, tmp_path,
                                                                         monkeypatch):
    """Where nobody cannot read the project (a private CI folder), the host's list is read
    from the source: still every test, as not run."""
    replay(monkeypatch, "p61-panic-no-init")
    monkeypatch.setattr(boot, "host_collect", lambda python, tests, timeout=0: [])
    result = run(fake, tmp_path, [FAULTS / "test_hang.py"])
    assert [t.nodeid.split("::")[1] for t in result.tests] == [
        "test_before_hang", "test_never_returns", "test_after_hang"]
    assert all(t.message.startswith("did not run: kernel panic") for t in result.tests)


def test_splat_in_a_passing_test_fails_it(fake, tmp_path, monkeypatch):
    replay(monkeypatch, "b61-kmsg-warn-in-test")
    result = run(fake, tmp_path, [FAULTS / "test_kmsg_warn.py"])
    assert result.completed
    warned, clean = result.tests
    assert warned.outcome == "failed"
    assert warned.message.startswith("kernel warning: WARNING: CPU: 0 PID: 123 at kernel/cgroup")
    assert warned.details.rstrip().endswith("---[ end trace 0000000000000000 ]---")
    assert clean.outcome == "passed" and result.splats == []


def test_silent_guest_hits_the_boot_timeout(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "silent")
    result = run(fake, tmp_path, [FAULTS / "test_hang.py"], boot_timeout=3.0)  # see below
    assert not result.booted and result.failure.startswith("boot timeout")
    assert [t.outcome for t in result.tests] == ["error"] * 3
    assert_gone(fake[1])


def test_qemu_ignoring_sigterm_is_killed(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "silent")
    monkeypatch.setenv("FAKE_QEMU_STUBBORN", "1")
    # 3 s: on a loaded 2-core host (load 10) the fake's python took longer than 0.5-1 s to
    # start, and was killed before it could write its pid file
    result = run(fake, tmp_path, [BASIC], boot_timeout=3.0)
    assert result.failure.startswith("boot timeout")
    assert_gone(fake[1])


def test_total_timeout(fake, tmp_path, monkeypatch):
    replay(monkeypatch, "b61-hang-test-timeout", "replay-then-hang")
    result = run(fake, tmp_path, [FAULTS / "test_hang.py"], total_timeout=3.0)
    assert result.failure.startswith("session timeout")
    assert_gone(fake[1])


def test_interrupt_stops_qemu(fake, tmp_path, monkeypatch):
    replay(monkeypatch, "b61-hang-test-timeout", "replay-then-hang")
    machine, pidfile, kernel = fake

    def log(message: str) -> None:
        if "booted" in message:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        boot.run_guest(kernel, [FAULTS / "test_hang.py"], tmp_path / "out",
                       boot.BootSettings(accel="tcg"), Path(sys.executable), log,
                       machine=machine)
    assert_gone(pidfile)


def test_qemu_that_fails_to_start_the_machine(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "error")
    result = run(fake, tmp_path, [BASIC])
    assert not result.booted
    assert result.failure == ("QEMU ended (exit status 1) before the kernel printed anything: "
                              "qemu-system-x86_64: -device virtio-9p-pci: fake configuration "
                              "error")


def test_missing_qemu_is_stage_failed_naming_the_package(fake, tmp_path):
    machine, _, kernel = fake
    machine.binary = "qemu-system-none-such"
    with pytest.raises(StageFailed, match="apt-get install qemu-system-x86"):
        boot.run_guest(kernel, [BASIC], tmp_path / "out", boot.BootSettings(),
                       Path(sys.executable), machine=machine)


def test_probe_picks_tcg_when_kvm_boot_prints_nothing(fake, monkeypatch):
    machine, pidfile, kernel = fake
    monkeypatch.setenv("FAKE_QEMU_MODE", "silent")
    logged: list[str] = []
    assert boot.probe_accel(kernel, boot.BootSettings(), logged.append,
                            machine=machine) == "tcg"
    assert len(logged) == 1 and "TCG" in logged[0]
    if pidfile.exists():
        assert_gone(pidfile)


def test_probe_picks_kvm_when_the_kernel_banner_appears(fake, monkeypatch):
    machine, pidfile, kernel = fake
    monkeypatch.setenv("FAKE_QEMU_MODE", "banner")
    got = boot.probe_accel(kernel, boot.BootSettings(), lambda m: None, machine=machine)
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert got == "kvm"
        assert_gone(pidfile)
    else:
        assert got == "tcg"


def test_explicit_accel_is_not_probed(fake, monkeypatch):
    machine, pidfile, kernel = fake
    assert boot.probe_accel(kernel, boot.BootSettings(accel="tcg"), machine=machine) == "tcg"
    assert not pidfile.exists()
