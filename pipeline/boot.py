"""Boot a built kernel under QEMU, run the guest tests in it, and collect the results.

The console is driven with pexpect. Nothing here waits without a deadline: the boot, each
test and the whole session have timeouts, a kernel panic ends the session at once (so does
an Oops, BUG or general protection fault while a test runs: that test fails with the trace,
the tests after it count as not run), and
QEMU is always terminated (then killed) on the way out, also on Ctrl-C / SIGTERM (which
arrive here as KeyboardInterrupt). The guest side and the result format are described in
docs/guest-protocol.md.

Manual use: `python -m pipeline.boot KERNEL TEST_PATH... [--out DIR] [--accel tcg]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import pexpect

from . import console as console_mod
from . import testlist
from .errors import PipelineError, StageFailed
from .guest_results import MARK_LINE, ConsoleTrack, Event, read_results, request_json
from .log import Logger, rerun_line
from .qemu import Machine, guest_argv, qemu_version

if TYPE_CHECKING:
    from .job import Job, Variant

GUEST_DIR = Path(__file__).resolve().parent / "guest"
INIT = GUEST_DIR / "init.py"
TAIL_LINES = 50
PANIC_GRACE = 3.0      # seconds of console kept after a panic line (its backtrace) before stop
POWEROFF_GRACE = 30.0  # seconds QEMU may take to exit after the guest said the session is done
PROGRESS_EVERY = 60.0  # seconds between progress lines during a long session
READ_TICK = 0.25       # seconds the console read waits before the deadlines are checked again
STOP_GRACE = 5.0       # seconds QEMU gets to exit after SIGTERM/SIGHUP before SIGKILL


@dataclass
class BootSettings:
    memory: str = "1G"            # QEMU -m
    smp: int = 2                  # QEMU -smp
    accel: str = "auto"           # "auto" | "kvm" | "tcg"
    boot_timeout: float = 120.0   # seconds from QEMU start to the guest's "ready" marker
    test_timeout: float = 300.0   # seconds one guest test may run
    total_timeout: float = 1800.0 # seconds for the whole guest session
    kernel_args: list[str] = field(default_factory=list)  # extra kernel command line words
    qemu_args: list[str] = field(default_factory=list)    # extra QEMU argv words
    root: str = ""                # host folder shown as the guest's / ("": the machine's)


@dataclass
class GuestTest:
    nodeid: str                   # pytest node id
    outcome: str                  # "passed" | "failed" | "skipped" | "error"
    duration: float               # seconds
    message: str = ""             # short reason
    details: str = ""             # long text (traceback, splat)
    kernel_log: str = ""          # kernel console lines printed while this test ran


@dataclass
class BootResult:
    booted: bool                  # the guest init reached the point where tests start
    completed: bool               # the session finished and the guest powered off by itself
    accel: str                    # "kvm" or "tcg"
    qemu_version: str
    duration: float
    failure: str = ""             # why boot/session failed ("" when completed)
    console_tail: str = ""        # last TAIL_LINES console lines
    tests: list[GuestTest] = field(default_factory=list)  # every test, incl. ones not run
    splats: list[str] = field(default_factory=list)       # kernel splats outside any test
    command: list[str] = field(default_factory=list)      # exact QEMU argv



def settings_for(job: Job, variant: Variant, accel: str | None = None) -> BootSettings:
    """The machine a variant's guest runs on: the job's qemu section, its timeouts stretched
    by the variant's timeout_scale, its kernel words after the job's; `accel` is the run's
    probed accelerator (None: the job's setting)."""
    scale = variant.timeout_scale
    return BootSettings(
        memory=job.qemu.memory, smp=job.qemu.smp, accel=accel or job.qemu.accel,
        boot_timeout=job.timeouts.boot * scale, test_timeout=job.timeouts.test * scale,
        total_timeout=job.timeouts.total * scale,
        kernel_args=[*job.qemu.kernel_args, *variant.kernel_args],
        qemu_args=list(job.qemu.qemu_args),
        root=str(job.qemu.root) if job.qemu.root else "")


class BootBackend(Protocol):
    """What the stages need of a boot: the real one is QemuBoot; the runner's tests pass a
    fake that returns real BootResult objects."""

    def probe_accel(self, kernel: Path, settings: BootSettings, log: Logger) -> str: ...

    def run_guest(self, kernel: Path, test_paths: list[Path], out_dir: Path,
                  settings: BootSettings, python: Path, log: Logger) -> BootResult: ...


class QemuBoot:
    """The real back end: this module's QEMU boots."""

    def probe_accel(self, kernel: Path, settings: BootSettings, log: Logger) -> str:
        return probe_accel(kernel, settings, log)

    def run_guest(self, kernel: Path, test_paths: list[Path], out_dir: Path,
                  settings: BootSettings, python: Path, log: Logger) -> BootResult:
        return run_guest(kernel, test_paths, out_dir, settings, python, log)

# --- QEMU process ---------------------------------------------------------------------------

def spawn(argv: list[str], machine: Machine) -> pexpect.spawn[str]:
    """Start QEMU on a pty (its own session: a terminal's Ctrl-C does not reach it, we stop
    it; if this process dies, the pty closes and QEMU gets SIGHUP)."""
    try:
        return pexpect.spawn(argv[0], argv[1:], encoding="utf-8", codec_errors="replace",
                             echo=False, timeout=None)
    except (pexpect.ExceptionPexpect, OSError) as exc:
        raise StageFailed(f"cannot start {argv[0]}: {exc} (is the Debian package "
                          f"{machine.debian_package} installed?)") from exc


def stop(child: pexpect.spawn[str]) -> str:
    """Stop QEMU if it still runs (SIGHUP/SIGINT, then SIGKILL after STOP_GRACE) and reap
    it; never leaves it behind. Returns how it ended, e.g. 'exit status 0'."""
    try:
        if child.isalive():
            child.kill(signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            while child.isalive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if child.isalive():
                child.kill(signal.SIGKILL)
    except (OSError, pexpect.ExceptionPexpect):
        pass
    finally:
        child.close(force=True)
    if child.signalstatus is not None:
        return f"killed by signal {child.signalstatus}"
    return f"exit status {child.exitstatus}"


def readline(child: pexpect.spawn[str], timeout: float) -> str | None:
    """One console line, or None when nothing complete arrived within `timeout`; raises
    pexpect.EOF once QEMU has exited and everything was read."""
    try:
        index = child.expect(["\r?\n", pexpect.TIMEOUT], timeout=timeout)
    except pexpect.EOF:
        if child.before:
            rest, child.before = str(child.before), ""
            return rest.rstrip("\r")
        raise
    if index == 1:
        return None
    return str(child.before).rstrip("\r")


def probe_accel(kernel: Path, settings: BootSettings, log: Logger = print, *,
                machine: Machine | None = None) -> str:
    """'kvm' only if a short KVM probe boot of `kernel` prints the kernel banner within
    machine.probe_seconds, else 'tcg' (says which and why, once). An explicit 'kvm' or
    'tcg' in `settings` is returned as is. Cached per process by the caller."""
    if settings.accel in ("kvm", "tcg"):
        return settings.accel
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        log("  accel: /dev/kvm missing or not accessible: using TCG")
        return "tcg"
    machine = machine or Machine.load()
    argv = guest_argv(machine, machine.find_binary(), kernel, accel="kvm",
                      memory=machine.probe_memory, smp=1, init=["/bin/true"], out_share=None,
                      kernel_args=[], qemu_args=[])
    start = time.monotonic()
    child = spawn(argv, machine)
    try:
        child.expect_exact(machine.probe_banner, timeout=machine.probe_seconds)
        log(f"  accel: KVM probe boot printed '{machine.probe_banner}' after "
            f"{time.monotonic() - start:.1f} s: using KVM")
        return "kvm"
    except pexpect.TIMEOUT:
        log(f"  accel: KVM probe boot printed no kernel output in {machine.probe_seconds:.0f} s"
            " (KVM present but unusable, e.g. no nested virtualisation): using TCG")
        return "tcg"
    except pexpect.EOF:
        said = (child.before or "").strip().splitlines()
        log("  accel: KVM probe boot: QEMU exited without kernel output"
            + (f" ({console_mod.clean(said[-1])})" if said else "") + ": using TCG")
        return "tcg"
    finally:
        stop(child)


# --- the session ---------------------------------------------------------------------------

@dataclass
class _Watch:
    """Deadlines of one session; `verdict()` says when to stop and why."""

    settings: BootSettings
    start: float
    last_event: float                 # time of the last protocol marker (or QEMU start)
    last_event_name: str = "boot"
    panic_at: float | None = None
    done_at: float | None = None
    failure: str = ""

    def saw(self, event: Event, now: float) -> None:
        self.last_event, self.last_event_name = now, event.event
        if event.event == "done":
            self.done_at = now

    def verdict(self, track: ConsoleTrack, now: float) -> bool:
        """True when the session must be stopped now (self.failure says why, if it failed)."""
        s = self.settings
        if self.panic_at is not None:
            return now - self.panic_at > PANIC_GRACE
        if self.done_at is not None:
            return now - self.done_at > POWEROFF_GRACE  # results are in: not a failure
        if not track.ready and now - self.start > s.boot_timeout:
            self.failure = (f"boot timeout: the guest did not start the tests within "
                            f"{s.boot_timeout:.0f} s (see the console tail)")
        elif track.ready and now - self.last_event > s.test_timeout:
            if track.current is not None:
                self.failure = (f"test timeout: {track.current.nodeid} did not finish within "
                                f"{s.test_timeout:.0f} s")
            else:
                self.failure = (f"test timeout: no progress for {s.test_timeout:.0f} s after "
                                f"the guest's '{self.last_event_name}' marker")
        elif now - self.start > s.total_timeout:
            self.failure = f"session timeout: not finished after {s.total_timeout:.0f} s"
        return bool(self.failure)


def _drive(child: pexpect.spawn[str], console_log: TextIO, track: ConsoleTrack, watch: _Watch,
           lines: list[str], log: Logger) -> None:
    """Read the console until QEMU exits or `watch` says stop."""
    next_progress = watch.start + PROGRESS_EVERY
    while True:
        now = time.monotonic()
        if watch.verdict(track, now):
            return
        if now >= next_progress:
            finished = sum(1 for t in track.tests.values() if t.finished)
            running = f", running {track.current.nodeid}" if track.current else ""
            total = len(track.collected) or "?"
            log(f"  guest: {now - watch.start:.0f} s, {finished}/{total} tests "
                f"finished{running}")
            next_progress = now + PROGRESS_EVERY
        try:
            line = readline(child, READ_TICK)
        except pexpect.EOF:
            return
        if line is None:
            continue
        console_log.write(line + "\n")
        console_log.flush()
        lines.append(line)
        event = track.feed(line)
        now = time.monotonic()
        if event is not None:
            watch.saw(event, now)
            if event.event == "ready":
                log(f"  guest: booted, tests starting after {now - watch.start:.1f} s")
        if watch.panic_at is None and console_mod.is_panic(line):
            watch.panic_at = now
            watch.failure = "kernel panic: " + console_mod.clean(line)
        elif watch.panic_at is None and track.current is not None \
                and console_mod.is_fatal(line):
            # an Oops/BUG during a test: keep its trace for PANIC_GRACE, then stop instead
            # of waiting for the test timeout; the rest of this boot counts as not run
            watch.panic_at = now
            watch.failure = (f"kernel {console_mod.splat_kind(line)} during "
                             f"{track.current.nodeid}: {console_mod.clean(line)}")
            log(f"  guest: {watch.failure}; stopping this boot")


def _session_failure(track: ConsoleTrack, watch: _Watch, lines: list[str], ended: str,
                     share: Path) -> str:
    if watch.failure:
        return watch.failure
    if not track.done:
        if track.init_error:
            return "guest init failed: " + track.init_error.strip().splitlines()[-1]
        if not any("Linux version" in line for line in lines):
            last = next((console_mod.clean(x) for x in reversed(lines) if x.strip()), "")
            return (f"QEMU ended ({ended}) before the kernel printed anything"
                    + (f": {last}" if last else ""))
        return (f"QEMU ended ({ended}) before the test session finished "
                "(no panic message: see the console tail)")
    if track.exit_code not in (0, 1):
        # pytest: 2 interrupted, 3 internal error, 4 usage error, 5 no tests collected
        return (f"pytest exited with code {track.exit_code} in the guest "
                f"(see {share / 'pytest.log'})")
    return ""


def run_guest(kernel: Path, test_paths: list[Path], out_dir: Path, settings: BootSettings,
              python: Path, log: Logger = print, *, machine: Machine | None = None) -> BootResult:
    """Boot `kernel`, run pytest on `test_paths` inside the guest with interpreter `python`
    (a host path, visible in the guest over 9p), write out_dir/console.log and the guest's
    files (out_dir/guest/), return the results.

    Guest-side failures (panic, hang, timeouts) end up in the BootResult; StageFailed is
    raised only when QEMU is missing/unstartable (naming the Debian package) or the kernel
    image does not exist."""
    machine = machine or Machine.load()
    binary = machine.find_binary()
    if not Path(kernel).is_file():
        raise StageFailed(f"kernel image {kernel} does not exist")
    accel = probe_accel(kernel, settings, log, machine=machine) \
        if settings.accel == "auto" else settings.accel
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    share = out_dir / "guest"
    shutil.rmtree(share, ignore_errors=True)
    share.mkdir()
    tests = [Path(t).resolve() for t in test_paths]
    (share / "request.json").write_text(request_json(python, GUEST_DIR, tests))
    # exact ids when nobody can run the collection, else the ids read from the source
    expected = host_collect(python, tests) or testlist.static_ids(tests)
    argv = guest_argv(machine, binary, kernel, accel=accel, memory=settings.memory,
                      smp=settings.smp, init=[str(python), "-B", str(INIT)], out_share=share,
                      kernel_args=settings.kernel_args, qemu_args=settings.qemu_args,
                      root=settings.root or None)
    result = BootResult(False, False, accel, qemu_version(binary), 0.0, command=argv)
    track = ConsoleTrack()
    lines: list[str] = []
    start = time.monotonic()
    watch = _Watch(settings, start, start)
    child = spawn(argv, machine)
    ended = "still running"
    try:
        with open(out_dir / "console.log", "w") as console_log:
            _drive(child, console_log, track, watch, lines, log)
    finally:
        ended = stop(child)
    result.duration = time.monotonic() - start
    events = read_results(share / "results.jsonl")
    track.absorb_file_events(events)
    result.booted = track.ready
    result.failure = _session_failure(track, watch, lines, ended, share)
    result.completed = track.done and not result.failure
    result.console_tail = "\n".join(console_mod.clean(x) for x in lines[-TAIL_LINES:])
    result.tests = merge_tests(track, events, result.failure, expected)
    result.splats = [s.text for s in console_mod.find_splats(track.outside, MARK_LINE)]
    bad = sum(1 for t in result.tests if t.outcome in ("failed", "error"))
    log(f"  guest: {'completed' if result.completed else 'FAILED: ' + result.failure} in "
        f"{result.duration:.1f} s ({accel}); {len(result.tests)} tests, {bad} failed/error")
    return result


NOBODY = 65534        # uid and gid host_collect() runs as when the pipeline is root
PR_SET_NO_NEW_PRIVS = 38


def _no_new_privs() -> Callable[[], None]:
    """A preexec_fn: no setuid binary may give the collecting child its privileges back.
    prctl is looked up here, in the parent: the child runs it after dropping to nobody, who
    may not be able to read the interpreter's own library files any more."""
    import ctypes
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return preexec


def host_collect(python: Path, tests: list[Path], timeout: float = 120.0,
                 unprivileged: bool | None = None) -> list[str]:
    """Node ids of the guest tests, collected on the host before the boot (same interpreter,
    same paths, so the same ids), so that tests a dead guest never reached still show up.

    Collecting imports the test modules and their conftest.py files: code meant to run in the
    guest only. So it never runs as root on the host: a root pipeline collects as nobody
    (uid/gid 65534, no supplementary groups, no new privileges, a minimal environment). When
    nobody cannot read the interpreter or the tests (e.g. a project under /root), there is no
    host list: the guest's own `collected` event still names every test it ran.
    `unprivileged` (default: when running as root) forces the drop on or off (tests)."""
    argv = [str(python), "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
            *[str(t) for t in tests]]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1",
           "LANG": "C.UTF-8", "HOME": "/nonexistent"}
    drop: dict[str, Any] = {}
    if os.geteuid() == 0 if unprivileged is None else unprivileged:
        drop = {"user": NOBODY, "group": NOBODY, "extra_groups": [],
                "preexec_fn": _no_new_privs()}
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             cwd="/", env=env, stdin=subprocess.DEVNULL, check=False,
                             **drop).stdout
    except (OSError, subprocess.TimeoutExpired, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines()
            if "::" in line and not line.startswith((" ", "ERROR", "FAILED", "<"))]


def merge_tests(track: ConsoleTrack, events: list[Event], failure: str,
                expected: list[str] | None = None) -> list[GuestTest]:
    """Every test once: the results file's verdict, failed if a splat is in its slice of the
    console, or an error saying it never finished or never ran (with `failure`)."""
    results: dict[str, dict[str, Any]] = {}
    collected: list[str] = list(track.collected)
    for ev in events:
        if ev.event == "collected" and not collected:
            collected = [str(t) for t in ev.fields.get("tests", [])]
        elif ev.event == "result":
            results[str(ev.fields.get("nodeid"))] = ev.fields
        elif ev.event == "collect-error":
            nodeid = str(ev.fields.get("nodeid"))
            results[nodeid] = {"outcome": "error", "duration": 0.0,
                               "message": f"collection failed: {nodeid}",
                               "details": str(ev.fields.get("details", ""))}
    # the host's list only stands in for the guest's own collection (it may lack the
    # parametrization suffixes: testlist.static_ids)
    for nodeid in [*track.tests, *results, *((expected or []) if not collected else [])]:
        if nodeid not in collected:
            collected.append(nodeid)
    tests = []
    for nodeid in collected:
        slice_ = track.tests.get(nodeid)
        # kernel_log keeps printk timestamps: a kernel developer wants the timing
        klog = "\n".join(x.replace("\r", "").rstrip() for x in slice_.lines) if slice_ else ""
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


# --- manual use ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline.boot KERNEL TEST_PATH...`: one boot, results on stdout.
    Exit 0 all passed, 1 a test failed, 3 the boot/session failed, 2 bad input."""
    p = argparse.ArgumentParser(prog="python -m pipeline.boot", description=main.__doc__)
    p.add_argument("kernel", type=Path)
    p.add_argument("tests", type=Path, nargs="+")
    p.add_argument("--out", type=Path, default=Path("out/boot"))
    p.add_argument("--python", type=Path, default=Path(sys.executable))
    d = BootSettings()
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default=d.accel)
    p.add_argument("--memory", default=d.memory)
    p.add_argument("--smp", type=int, default=d.smp)
    p.add_argument("--boot-timeout", type=float, default=d.boot_timeout)
    p.add_argument("--test-timeout", type=float, default=d.test_timeout)
    p.add_argument("--total-timeout", type=float, default=d.total_timeout)
    p.add_argument("--kernel-arg", action="append", default=[])
    p.add_argument("--qemu-arg", action="append", default=[])
    a = p.parse_args(argv)
    settings = BootSettings(a.memory, a.smp, a.accel, a.boot_timeout, a.test_timeout,
                            a.total_timeout, a.kernel_arg, a.qemu_arg)

    def on_term(signum: int, frame: object) -> None:  # SIGTERM stops QEMU like Ctrl-C does
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        result = run_guest(a.kernel, a.tests, a.out, settings, a.python)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: QEMU stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old)
    for t in result.tests:
        print(f"{t.outcome.upper():8} {t.nodeid} ({t.duration:.2f} s) {t.message}".rstrip())
    for s in result.splats:
        print(f"SPLAT outside tests: {s.splitlines()[0]}")
    print(f"console: {a.out / 'console.log'}")
    if not result.completed:
        print(f"FAILED: {result.failure}\n--- console tail ---\n{result.console_tail}")
        print(f"rerun QEMU by hand: {rerun_line(result.command)}")
        return 3
    return 1 if any(t.outcome in ("failed", "error") for t in result.tests) else 0


if __name__ == "__main__":
    sys.exit(main())
