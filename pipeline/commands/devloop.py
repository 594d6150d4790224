"""`pipeline shell` and `pipeline exec`: a kernel developer's daily loop.

Both take one variant of the job through the stages of `pipeline run` (tree, apply,
configure, build: pipeline.runner.build_variant, so a kernel a run built comes from the
cache with a no-op build) and boot it on the tests' machine (pipeline/data/qemu.yaml, the
job's qemu: section, the host's / as the read-only 9p root), with the guest init in another
mode (`pipeline.mode=` on the kernel command line, docs/guest-protocol.md):

- `pipeline shell`: an interactive shell on the serial console, driven with pexpect's
  interact(); `exit` or Ctrl-D powers the guest off, Ctrl-] leaves at once (QEMU stopped).
- `pipeline exec -- CMD...`: one command; its stdout and stderr (files of the writable
  share, copied out while they grow) on the host's stdout and stderr, its exit status as
  the exit code. A kernel panic or a guest that ends without reporting the status exits
  EXIT_GUEST_LOST (255), a --timeout EXIT_TIMEOUT (124), both after QEMU was stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pexpect

from .. import boot
from .. import console as console_mod
from ..boot import GUEST_DIR, INIT, readline, spawn, stop
from ..errors import BadInput
from ..guest_results import RESULTS, command_request_json, parse_marker, read_results
from ..job import Overrides, apply_overrides, load_job, seconds_arg
from ..log import VERBOSE, Log, fmt_duration
from ..preflight import check_before_work
from ..qemu import Machine, guest_argv
from ..runner import BuiltKernel, build_variant
from ..status import ExitCode

EXIT_TIMEOUT = ExitCode.TIMEOUT          # --timeout: QEMU was killed (as timeout(1) exits)
EXIT_GUEST_LOST = ExitCode.GUEST_LOST    # kernel panic, or the guest ended without the status
DEFAULT_TIMEOUT = 300.0     # seconds for an exec session (boot + command)
ESCAPE = "\x1d"             # Ctrl-]: leave the shell, stop QEMU (as telnet's escape)
MODE_WORD = "pipeline.mode="

EXIT_CODES = f"""exit codes: the command's own exit status (128+N when signal N killed it,
127 command not found in the guest); {EXIT_TIMEOUT} --timeout reached (QEMU killed);
{EXIT_GUEST_LOST} kernel panic, or the guest died before it reported the status; before the
guest runs: 2 bad input, 3 apply/configure/build failed or QEMU could not start (or
interrupted), 4 internal error of the pipeline"""

SHELL_EXIT_CODES = f"""exit codes: the guest shell's exit status (0 after `exit` or Ctrl-D);
{EXIT_GUEST_LOST} kernel panic, the guest died, or you left with Ctrl-] (QEMU stopped); before
the shell starts: 2 bad input, 3 apply/configure/build/boot failed, 4 internal error"""


# --- what a session ended with ---------------------------------------------------------------

@dataclass
class Outcome:
    """How a shell or exec session ended."""

    status: int | None = None     # the command's exit status as the guest reported it
    panic: str = ""               # the kernel panic line, if there was one
    timed_out: bool = False       # --timeout (or the boot timeout) stopped QEMU
    escaped: bool = False         # the user left the shell with Ctrl-]
    failure: str = ""             # why there is no status (empty when there is one)
    booted: bool = False          # the guest init said "ready"
    duration: float = 0.0
    qemu_ended: str = ""          # e.g. "exit status 0", "killed by signal 9"


def exit_code(outcome: Outcome) -> int:
    """The process exit code of a session: a panic beats everything (even a status the
    command reported before the kernel died), then a timeout, then a missing status."""
    if outcome.panic:
        return EXIT_GUEST_LOST
    if outcome.timed_out:
        return EXIT_TIMEOUT
    if outcome.status is None:
        return EXIT_GUEST_LOST
    return outcome.status


def describe(outcome: Outcome) -> str:
    """One line for the log when the session did not end with a status."""
    if outcome.panic:
        return f"kernel panic in the guest: {outcome.panic}"
    return outcome.failure or "the guest ended without reporting the exit status"


# --- the guest's output files ------------------------------------------------------------------

class OutputPump:
    """Copies what the guest appends to one file of the share to a host file descriptor.

    The file is opened once it exists, never through a symlink and only if it is a regular
    file (the guest is untrusted); a reader that goes away (`| head`) stops the copying but
    not the session."""

    def __init__(self, path: Path, dest: int) -> None:
        self.path, self.dest = path, dest
        self.fd: int | None = None
        self.copied = 0
        self.broken = False

    def pump(self) -> int:
        """Copy what is new; returns the number of bytes copied."""
        if self.fd is None:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                             | os.O_CLOEXEC)
            except OSError:
                return 0
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return 0
            self.fd = fd
        total = 0
        while True:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return total
            total += len(chunk)
            self.copied += len(chunk)
            if not self.broken:
                try:
                    _write_all(self.dest, chunk)
                except BrokenPipeError:
                    self.broken = True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# --- following the console --------------------------------------------------------------------

@dataclass
class ExecWatch:
    """Reads an exec session's console lines against its deadlines; `stop_now()` says when
    to end the session (QEMU gone, panic trace kept, status in and the guest given time to
    power off, or a deadline)."""

    boot_timeout: float
    timeout: float
    start: float
    outcome: Outcome = field(default_factory=Outcome)
    panic_at: float | None = None
    status_at: float | None = None
    panic_grace: float = 3.0
    poweroff_grace: float = 30.0

    def feed(self, line: str, now: float) -> None:
        event = parse_marker(line)
        if event is not None:
            if event.event == "ready":
                self.outcome.booted = True
            elif event.event == "exit" and self.outcome.status is None:
                self.outcome.status = event.fields.get("status")
                self.status_at = now
            elif event.event == "init-error":
                lines = str(event.fields.get("details", "")).strip().splitlines()
                self.outcome.failure = "guest init failed" + (f": {lines[-1]}" if lines
                                                              else "")
            return
        if self.panic_at is None and console_mod.is_panic(line):
            self.panic_at = now
            self.outcome.panic = console_mod.clean(line)

    def stop_now(self, now: float) -> bool:
        if self.panic_at is not None:
            return now - self.panic_at > self.panic_grace
        if self.status_at is not None:
            return now - self.status_at > self.poweroff_grace
        if not self.outcome.booted and now - self.start > self.boot_timeout:
            self.outcome.timed_out = True
            self.outcome.failure = (f"boot timeout: the guest did not start the command "
                                    f"within {self.boot_timeout:.0f} s")
            return True
        if self.timeout and now - self.start > self.timeout:
            self.outcome.timed_out = True
            self.outcome.failure = (f"timeout: the command did not finish within "
                                    f"{self.timeout:g} s (--timeout): QEMU stopped")
            return True
        return False


# --- the sessions -------------------------------------------------------------------------------

@dataclass
class Session:
    """What a shell or exec boot needs besides the kernel."""

    memory: str
    smp: int
    accel: str                    # "kvm" or "tcg" (already probed)
    boot_timeout: float
    kernel_args: list[str]
    qemu_args: list[str]
    root: str = ""
    python: Path = Path(sys.executable)


def _machine_argv(machine: Machine, kernel: Path, session: Session, share: Path, mode: str,
                  interactive: bool = False) -> list[str]:

    return guest_argv(machine, machine.find_binary(), kernel, accel=session.accel,
                      memory=session.memory, smp=session.smp,
                      init=[str(session.python), "-B", str(INIT)], out_share=share,
                      kernel_args=[*session.kernel_args, MODE_WORD + mode],
                      qemu_args=session.qemu_args, root=session.root or None,
                      interactive=interactive)


def _fresh_share(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    share = out_dir / "guest"
    if share.is_symlink() or share.is_file():
        share.unlink()
    shutil.rmtree(share, ignore_errors=True)
    share.mkdir()
    return share


def guest_cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return ""


def run_exec(kernel: Path, command: list[str], session: Session, out_dir: Path, log: Log, *,
             timeout: float, stdout: int = 1, stderr: int = 2,
             machine: Machine | None = None) -> Outcome:
    """Boot `kernel` in exec mode, run `command` in the guest, copy its output to the `stdout`
    and `stderr` descriptors as it comes; OUT_DIR/console.log has the console. QEMU is
    stopped on every way out (timeout, panic, Ctrl-C)."""

    machine = machine or Machine.load()
    share = _fresh_share(out_dir)
    (share / "request.json").write_text(command_request_json(
        session.python, GUEST_DIR, command=command, cwd=guest_cwd(),
        term=os.environ.get("TERM", "")))
    argv = _machine_argv(machine, kernel, session, share, "exec")
    log.debug(f"  qemu: {' '.join(argv)}")
    pumps = [OutputPump(share / "stdout", stdout), OutputPump(share / "stderr", stderr)]
    start = time.monotonic()
    watch = ExecWatch(session.boot_timeout, timeout, start)
    child = spawn(argv, machine)
    try:
        with open(out_dir / "console.log", "w") as console_log:
            while not watch.stop_now(time.monotonic()):
                try:
                    line = readline(child, 0.05)
                except pexpect.EOF:
                    break
                for p in pumps:
                    p.pump()
                if line is None:
                    continue
                console_log.write(line + "\n")
                if log.verbosity > VERBOSE:
                    log.debug(f"  console: {console_mod.clean(line)}")
                was_booted = watch.outcome.booted
                watch.feed(line, time.monotonic())
                if watch.outcome.booted and not was_booted:
                    log.debug(f"  guest: command starting after "
                              f"{time.monotonic() - start:.1f} s")
    finally:
        watch.outcome.qemu_ended = stop(child)
        for p in pumps:
            try:
                p.pump()
            finally:
                p.close()
    outcome = watch.outcome
    outcome.duration = time.monotonic() - start
    for event in read_results(share / RESULTS):   # markers the console garbled
        if event.event == "ready":
            outcome.booted = True
        elif event.event == "exit" and outcome.status is None:
            outcome.status = event.fields.get("status")
    if outcome.status is None and not outcome.failure:
        outcome.failure = (f"QEMU ended ({outcome.qemu_ended}) before the guest reported the "
                           "command's exit status" if outcome.booted else
                           f"QEMU ended ({outcome.qemu_ended}) before the guest started the "
                           "command")
    if outcome.status is not None and not outcome.panic:
        outcome.timed_out = False     # the status came in; stopping QEMU after it is fine
    return outcome


def banner(variant: str, version: str, accel: str, seconds: float) -> str:
    return (f"pipeline shell: {variant} kernel {version} ({accel}), booted in "
            f"{seconds:.1f} s. The host's / is the read-only root; $TMPDIR is scratch.\n"
            "Leave with `exit` or Ctrl-D (the guest powers off), or Ctrl-] at any time "
            "(QEMU is stopped).\n")


def run_shell(kernel: Path, session: Session, out_dir: Path, log: Log, *, variant: str,
              version: str, hostname: str, machine: Machine | None = None,
              interact: Callable[[pexpect.spawn[str], BinaryIO], bool] | None = None) -> Outcome:
    """Boot `kernel` in shell mode, wait for the guest's "ready" (the boot log goes to
    OUT_DIR/console.log only, -vv shows it), print the banner and hand the console to the
    user (pexpect interact: the host terminal in raw mode, Ctrl-] leaves)."""

    machine = machine or Machine.load()
    share = _fresh_share(out_dir)
    size = shutil.get_terminal_size((0, 0))
    (share / "request.json").write_text(command_request_json(
        session.python, GUEST_DIR, cwd=guest_cwd(), term=os.environ.get("TERM", ""),
        hostname=hostname, size=(size.lines, size.columns)))
    argv = _machine_argv(machine, kernel, session, share, "shell", interactive=True)
    log.debug(f"  qemu: {' '.join(argv)}")
    start = time.monotonic()
    watch = ExecWatch(session.boot_timeout, 0.0, start)
    child = spawn(argv, machine)
    try:
        with open(out_dir / "console.log", "wb") as console_log:
            while not watch.outcome.booted and not watch.stop_now(time.monotonic()):
                try:
                    line = readline(child, 0.05)
                except pexpect.EOF:
                    break
                if line is None:
                    continue
                console_log.write((line + "\n").encode())
                if log.verbosity > VERBOSE:
                    log.debug(f"  console: {console_mod.clean(line)}")
                watch.feed(line, time.monotonic())
            if watch.outcome.booted and child.isalive():
                sys.stdout.write(banner(variant, version, session.accel,
                                        time.monotonic() - start))
                sys.stdout.flush()
                watch.outcome.escaped = (interact or _interact)(child, console_log)
    finally:
        watch.outcome.qemu_ended = stop(child)
    outcome = watch.outcome
    outcome.duration = time.monotonic() - start
    text = (out_dir / "console.log").read_text(errors="replace")
    panic = next((console_mod.clean(x) for x in text.splitlines() if console_mod.is_panic(x)),
                 "")
    outcome.panic = outcome.panic or panic
    for event in read_results(share / RESULTS):
        if event.event == "exit" and outcome.status is None:
            outcome.status = event.fields.get("status")
    if outcome.escaped:
        outcome.status = None
        outcome.failure = "left with Ctrl-]: QEMU stopped"
    elif outcome.status is None and not outcome.failure:
        outcome.failure = (f"QEMU ended ({outcome.qemu_ended}) before the guest shell "
                           + ("ended" if outcome.booted else "started"))
    return outcome


def _interact(child: pexpect.spawn[str], console_log: BinaryIO) -> bool:
    """The console to the user until QEMU exits or Ctrl-]; everything shown is logged.
    True when the user left with Ctrl-]."""
    out = sys.stdout.fileno()
    if child.buffer:   # console bytes read together with the "ready" line: show them first
        rest = child.buffer.encode()
        child.buffer = ""
        console_log.write(rest)
        _write_all(out, rest)
    escaped = False

    def keep(data: bytes) -> bytes:
        console_log.write(data)
        return data

    def watch_keys(data: bytes) -> bytes:
        nonlocal escaped
        escaped = escaped or ESCAPE.encode() in data
        return data

    # interact() hands its filters the raw bytes it read (pexpect's __interact_copy), whatever
    # the spawn's encoding; types-pexpect types them as str for a spawn[str]
    child.interact(escape_character=ESCAPE, input_filter=watch_keys,  # type: ignore[arg-type]
                   output_filter=keep)  # type: ignore[arg-type]
    if not escaped:   # QEMU is gone: what it wrote last (the power-off lines)
        while True:
            try:
                data = os.read(child.child_fd, 1 << 16)
            except OSError:
                break
            if not data:
                break
            keep(data)
            _write_all(out, data)
    return escaped


# --- the command line ---------------------------------------------------------------------------

def _common_options(p: argparse.ArgumentParser, out_default: str) -> None:
    p.add_argument("--job", type=Path, metavar="FILE",
                   help="job YAML file (default: the embedded pipeline/data/default-job.yaml)")
    p.add_argument("--variant", metavar="NAME",
                   help="the job's variant to boot (default: patched, else the job's first)")
    p.add_argument("--tree", metavar="SPEC",
                   help="debian:6.1 | debian:6.12 | TARBALL | URL | GIT_CHECKOUT[@REV]")
    p.add_argument("--tree-sha256", metavar="HEX", help="expected sha256 of a URL tarball")
    p.add_argument("--series", metavar="SPEC",
                   help="series name under patches/, a series folder, an mbox file, or 'none'")
    p.add_argument("--kconfig", action="append", default=[], metavar="FRAGMENT",
                   help="extra kconfig fragment, added after the job's (repeatable)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"),
                   help="QEMU accelerator (default: the job's; auto probes KVM)")
    p.add_argument("--cpus", metavar="N", help="guest CPUs (default: the job's qemu.smp)")
    p.add_argument("--memory", metavar="SIZE",
                   help="guest memory, e.g. 2G (default: the job's qemu.memory)")
    p.add_argument("--out", metavar="DIR",
                   help=f"folder for the build logs, bzImage and console.log (default: "
                        f"{out_default})")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="cache folder (default: $KERNEL_PIPELINE_CACHE or "
                        "~/.cache/kernel-pipeline)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    shell = sub.add_parser(
        "shell", help="boot a variant's kernel (built first if needed) with an interactive "
                      "shell on its console",
        description="Boot the built kernel of a variant on the tests' machine and rootfs and "
                    "give an interactive shell on its serial console. `exit` or Ctrl-D "
                    "powers the guest off; Ctrl-] leaves at once.",
        epilog=SHELL_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common_options(shell, "out/shell")
    shell.set_defaults(func=cmd_shell, rerun_hint=False, log_to_stderr=True)
    ex = sub.add_parser(
        "exec", help="run one command in a variant's guest; its output and exit code",
        description="Boot the built kernel of a variant (built first if needed) and run "
                    "CMD in it: its stdout/stderr on the host's stdout/stderr, its exit "
                    "status as the exit code. The pipeline's own log goes to stderr and is "
                    "quiet unless -v.",
        usage="pipeline exec [options] -- CMD [ARG...]",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common_options(ex, "out/exec")
    ex.add_argument("--timeout", type=_timeout_arg, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                    help=f"stop QEMU after this long, boot included (exit {EXIT_TIMEOUT}; "
                         f"default {DEFAULT_TIMEOUT:g}; 0: no limit)")
    ex.add_argument("guest_command", nargs=argparse.REMAINDER, metavar="CMD",
                    help="the command and its arguments (after --), run in the guest")
    ex.set_defaults(func=cmd_exec, rerun_hint=False, log_to_stderr=True, quieter=1)


def _timeout_arg(text: str) -> float:

    return 0.0 if text.strip() in ("0", "0.0") else seconds_arg(text)


def exec_command(words: list[str]) -> list[str]:
    """The guest command of `pipeline exec [options] -- CMD...`; BadInput when none."""
    command = words[1:] if words and words[0] == "--" else list(words)
    if not command:
        raise BadInput("pipeline exec: no command (usage: pipeline exec [options] -- CMD...)")
    if not command[0]:
        raise BadInput("pipeline exec: the command is an empty word")
    return command


def default_variant(names: list[str]) -> str:
    return "patched" if "patched" in names else names[0]


def _prepare(args: argparse.Namespace, log: Log,
             out_default: str) -> tuple[BuiltKernel, Session, Path]:
    """The job narrowed to one variant, checked, its kernel built; (BuiltKernel, Session)."""

    loaded = load_job(args.job)
    variant = args.variant or default_variant([v.name for v in loaded.variants])
    job = apply_overrides(loaded, Overrides(
        tree=args.tree, series=args.series, kconfig=args.kconfig,
        out=args.out or out_default, accel=args.accel, variants=[variant],
        cache_dir=args.cache_dir, tree_sha256=args.tree_sha256, kselftest=False,
        memory=args.memory, cpus=args.cpus))
    check_before_work(job)
    t0 = time.monotonic()
    built = build_variant(job, log)
    log(f"kernel {built.variant.name} ready ({fmt_duration(time.monotonic() - t0)}): "
        f"{built.image}")
    settings = built.settings
    accel = settings.accel
    if accel == "auto":
        accel = boot.probe_accel(built.image, settings, log)
    session = Session(memory=settings.memory, smp=settings.smp, accel=accel,
                      boot_timeout=settings.boot_timeout, kernel_args=settings.kernel_args,
                      qemu_args=settings.qemu_args, root=settings.root)
    return built, session, job.out / built.variant.name


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    """SIGTERM/SIGHUP arrive as KeyboardInterrupt, so QEMU is stopped on the way out."""
    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    saved = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def cmd_exec(args: argparse.Namespace, log: Log) -> int:
    command = exec_command(args.guest_command)
    t0 = time.monotonic()
    with _sigterm_stops():
        built, session, out_dir = _prepare(args, log, "out/exec")
        outcome = run_exec(built.image, command, session, out_dir, log, timeout=args.timeout)
    code = exit_code(outcome)
    log.debug(f"exec {built.variant.name}: exit {code} in {fmt_duration(time.monotonic() - t0)}"
              f" (guest {outcome.duration:.1f} s, QEMU {outcome.qemu_ended})")
    if outcome.panic or outcome.timed_out or outcome.status is None:
        log.error(f"pipeline exec: {describe(outcome)} (exit {code}); console: "
                  f"{out_dir / 'console.log'}")
    return code


def cmd_shell(args: argparse.Namespace, log: Log) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise BadInput("pipeline shell needs a terminal on stdin and stdout (for a command "
                       "without one: pipeline exec -- CMD)")
    with _sigterm_stops():
        built, session, out_dir = _prepare(args, log, "out/shell")
        log(f"booting {built.variant.name} ({session.accel}); console log "
            f"{out_dir / 'console.log'}")
        outcome = run_shell(built.image, session, out_dir, log, variant=built.variant.name,
                            version=built.version, hostname=f"pipeline-{built.variant.name}")
    code = exit_code(outcome)
    if outcome.panic or outcome.status is None:
        log.error(f"pipeline shell: {describe(outcome)} (exit {code}); console: "
                  f"{out_dir / 'console.log'}")
    else:
        log(f"pipeline shell: the guest powered off, shell exit status {outcome.status} "
            f"({outcome.duration:.1f} s)")
    return code
