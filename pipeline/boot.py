"""Boot a built kernel under QEMU, run the guest tests in it, and collect the results.

The console is driven with pexpect. Nothing here waits without a deadline: the boot, each
test and the whole session have timeouts, a kernel panic ends the session at once, and
QEMU is always terminated (then killed) on the way out, also on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pexpect

from . import console as console_mod
from .guest_results import MARK, ConsoleTrack, read_results
from .qemu import Machine, guest_argv, qemu_version

GUEST_DIR = Path(__file__).parent / "guest"
INIT = GUEST_DIR / "init.py"
_MARK_RE = re.compile(re.escape(MARK))
TAIL_LINES = 50
PANIC_GRACE = 3.0  # seconds of console kept after a panic line before QEMU is stopped

Log = Callable[[str], None]


@dataclass
class BootSettings:
    memory: str = "1G"
    smp: int = 2
    accel: str = "auto"
    boot_timeout: float = 120.0
    test_timeout: float = 300.0
    total_timeout: float = 1800.0
    kernel_args: list[str] = field(default_factory=list)
    qemu_args: list[str] = field(default_factory=list)


@dataclass
class GuestTest:
    nodeid: str
    outcome: str
    duration: float
    message: str = ""
    details: str = ""
    kernel_log: str = ""


@dataclass
class BootResult:
    booted: bool
    completed: bool
    accel: str
    qemu_version: str
    duration: float
    failure: str = ""
    console_tail: str = ""
    tests: list[GuestTest] = field(default_factory=list)
    splats: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)


def _stop(child: pexpect.spawn) -> None:
    """Terminate QEMU, then kill it; never leave it behind."""
    if child.isalive():
        child.terminate(force=False)
        deadline = time.monotonic() + 5
        while child.isalive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if child.isalive():
            child.terminate(force=True)
    child.close(force=True)


def probe_accel(kernel: Path, settings: BootSettings, log: Log = print) -> str:
    """'kvm' only if a short KVM boot of `kernel` prints the kernel banner in time."""
    if settings.accel in ("kvm", "tcg"):
        return settings.accel
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        log("  accel: /dev/kvm not usable, using TCG")
        return "tcg"
    machine = Machine.load()
    argv = guest_argv(machine, machine.find_binary(), kernel, accel="kvm", memory="256M",
                      smp=1, init=None, out_share=None, kernel_args=[], qemu_args=[])
    child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", codec_errors="replace",
                          echo=False)
    try:
        child.expect("Linux version", timeout=machine.probe_seconds)
        log("  accel: KVM probe boot printed the kernel banner: using KVM")
        return "kvm"
    except (pexpect.TIMEOUT, pexpect.EOF):
        log(f"  accel: KVM probe boot showed no kernel output in {machine.probe_seconds:.0f} s"
            " (nested virtualisation not usable here): using TCG")
        return "tcg"
    finally:
        _stop(child)


def _request(share: Path, tests: list[Path], python: Path) -> None:
    (share / "request.json").write_text(json.dumps({
        "python": str(python), "plugin_dir": str(GUEST_DIR),
        "tests": [str(Path(t).resolve()) for t in tests]}, indent=1))


def host_collect(python: Path, tests: list[Path], timeout: float = 120.0) -> list[str]:
    """Node ids of the guest tests, collected on the host before the boot (same interpreter,
    same paths, so the same ids), so that tests a dead guest never reached still show up."""
    import subprocess

    argv = [str(python), "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
            *[str(Path(t).resolve()) for t in tests]]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             cwd="/", env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.splitlines() if "::" in line and " " not in line]


def _merge(track: ConsoleTrack, share: Path, failure: str,
           expected: list[str] | None = None) -> list[GuestTest]:
    """Every collected test once: the results file's verdict, a splat in its slice of the
    console, or an error saying it never finished or never ran."""
    results = {}
    collected: list[str] = list(track.collected)
    for ev in read_results(share / "results.jsonl"):
        if ev.event == "collected" and not collected:
            collected = [str(t) for t in ev.fields.get("tests", [])]
        elif ev.event == "result":
            results[str(ev.fields.get("nodeid"))] = ev.fields
        elif ev.event == "collect-error":
            nodeid = str(ev.fields.get("nodeid"))
            results[nodeid] = {"outcome": "error", "duration": 0.0,
                               "message": f"collection failed: {nodeid}",
                               "details": str(ev.fields.get("details", ""))}
            collected.append(nodeid)
    for nodeid in list(track.tests) + list(results) + list(expected or []):
        if nodeid not in collected:
            collected.append(nodeid)
    tests = []
    for nodeid in collected:
        slice_ = track.tests.get(nodeid)
        klog = "\n".join(console_mod.clean(x) for x in slice_.lines) if slice_ else ""
        res = results.get(nodeid)
        if res is not None:
            test = GuestTest(nodeid, str(res.get("outcome", "error")),
                             float(res.get("duration", 0.0)), str(res.get("message", "")),
                             str(res.get("details", "")), klog)
        elif slice_ is not None:
            test = GuestTest(nodeid, "error", 0.0, f"did not finish: {failure or 'unknown'}",
                             klog, klog)
        else:
            test = GuestTest(nodeid, "error", 0.0,
                             f"did not run: {failure or 'the session ended before it'}")
        splats = console_mod.find_splats(slice_.lines) if slice_ else []
        if splats and test.outcome in ("passed", "skipped", "failed"):
            test.outcome = "failed"
            test.message = f"kernel {splats[0].kind}: {splats[0].title}"
            test.details = "\n\n".join(s.text for s in splats) + (
                "\n\n" + test.details if test.details else "")
        tests.append(test)
    return tests


def run_guest(kernel: Path, test_paths: list[Path], out_dir: Path, settings: BootSettings,
              python: Path, log: Log = print) -> BootResult:
    """Boot `kernel`, run pytest on `test_paths` in the guest with `python`, return results.

    Guest-side failures (panic, hang, timeouts) end up in the BootResult; only a QEMU that
    cannot be found raises (StageFailed, naming the Debian package)."""
    machine = Machine.load()
    binary = machine.find_binary()
    accel = "tcg" if settings.accel == "auto" else settings.accel
    out_dir.mkdir(parents=True, exist_ok=True)
    share = out_dir / "guest"
    shutil.rmtree(share, ignore_errors=True)
    share.mkdir()
    _request(share, test_paths, python)
    expected = host_collect(python, test_paths)
    argv = guest_argv(machine, binary, kernel, accel=accel, memory=settings.memory,
                      smp=settings.smp, init=str(INIT), out_share=share,
                      kernel_args=settings.kernel_args, qemu_args=settings.qemu_args)
    result = BootResult(False, False, accel, qemu_version(binary), 0.0, command=argv)
    track = ConsoleTrack()
    lines: list[str] = []
    start = time.monotonic()
    test_started = start
    panic_at: float | None = None
    failure = ""
    child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", codec_errors="replace",
                          echo=False, timeout=None)
    try:
        with open(out_dir / "console.log", "w") as console_log:
            while True:
                now = time.monotonic()
                if panic_at is not None and now - panic_at > PANIC_GRACE:
                    break
                if not track.ready and now - start > settings.boot_timeout:
                    failure = (f"boot timeout: no test runner after {settings.boot_timeout:.0f} s"
                               " (see the console tail)")
                    break
                if track.current is not None and now - test_started > settings.test_timeout:
                    failure = (f"test timeout: {track.current.nodeid} ran longer than "
                               f"{settings.test_timeout:.0f} s")
                    break
                if now - start > settings.total_timeout:
                    failure = f"session timeout after {settings.total_timeout:.0f} s"
                    break
                try:
                    line = _readline(child, 1.0)
                except pexpect.EOF:
                    break
                if line is None:
                    continue
                console_log.write(line + "\n")
                console_log.flush()
                lines.append(line)
                event = track.feed(line)
                if event is not None and event.event == "start":
                    test_started = time.monotonic()
                if panic_at is None and console_mod.is_panic(line):
                    panic_at = time.monotonic()
                    failure = "kernel panic: " + console_mod.clean(line)
    finally:
        _stop(child)
    result.duration = time.monotonic() - start
    result.booted = track.ready
    if not failure and not track.done:
        failure = track.init_error.splitlines()[-1] if track.init_error else \
            "QEMU exited before the test session finished"
    elif not failure and track.exit_code not in (0, 1):
        # 2 interrupted, 3 internal error, 4 usage error, 5 no tests collected
        failure = (f"pytest exited with code {track.exit_code} in the guest "
                   f"(see {share / 'pytest.log'})")
    result.completed = track.done and not failure
    result.failure = failure
    result.console_tail = "\n".join(console_mod.clean(x) for x in lines[-TAIL_LINES:])
    result.tests = _merge(track, share, failure, expected)
    result.splats = [s.text for s in console_mod.find_splats(track.outside, _MARK_RE)]
    log(f"  guest: {'completed' if result.completed else 'FAILED: ' + failure} in "
        f"{result.duration:.1f} s ({accel}); {len(result.tests)} tests")
    return result


def _readline(child: pexpect.spawn, timeout: float) -> str | None:
    """One console line, or None when nothing complete arrived within `timeout`."""
    try:
        index = child.expect(["\r?\n", pexpect.TIMEOUT], timeout=timeout)
    except pexpect.EOF:
        if child.before:
            rest, child.before = child.before, ""
            return rest.rstrip("\r")
        raise
    if index == 1:
        return None
    return child.before.rstrip("\r")
