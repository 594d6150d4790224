#!/usr/bin/python3
"""PID 1 of the test guest (stdlib only: it must not import the host package).

The host boots the kernel with `init=<python> -- -B <this file>`: the kernel hands the words
after `--` to init, so PID 1 is the very interpreter the tests run with (no dependence on
this file's executable bit or shebang, no shell needed in between).

With the host's / as a read-only 9p root, it mounts what the tests need (proc, sysfs,
devtmpfs, tmpfs on /run /dev/shm /sys/fs/cgroup and on /tmp unless the project lives
there (a CI clone under /tmp: then TMPDIR is /run/tmp), the writable `out` share), reads the
host's request from the share, says "ready" (the host's boot timeout ends there), runs
pytest with the guest plugin, copies the lockdep files of /proc (a lockdep kernel's lock
classes and dependency chains, for the host's baseline/patched comparison) into the share,
says "done", syncs and reboots (QEMU runs with -no-reboot, so that ends it). The protocol is described in docs/guest-protocol.md.

The kernel command line word `pipeline.mode=` chooses what runs after the mounts:
`tests` (the default: pytest as above), `exec` (the one command of the request, its stdout
and stderr into files of the share, then an "exit" event with its status: `pipeline exec`)
or `shell` (an interactive shell on the console's tty: `pipeline shell`).
"""

import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import traceback
from typing import Any

MARK = "@@PIPELINE:"
OUT = "/run/pipeline-out"
RESULTS = f"{OUT}/results.jsonl"
RB_AUTOBOOT = 0x01234567
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
EBUSY = 16
MODES = ("tests", "exec", "shell")
# /proc files a lockdep kernel (CONFIG_PROVE_LOCKING) has, copied to OUT/lockdep/ after the
# tests; each at most LOCKDEP_MAX bytes (a few hundred KB is usual, 8 MiB is far beyond it).
LOCKDEP_FILES = ("lockdep", "lockdep_chains", "lockdep_stats")
LOCKDEP_MAX = 8 << 20
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

libc = ctypes.CDLL(None, use_errno=True)

# (source, target, fstype, flags, data, required). /run comes before the out share under it.
# /tmp is not here: see scratch_dir().
MOUNTS = (
    ("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "", True),
    ("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "", True),
    ("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "", True),
    ("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", True),
    ("tmpfs", "/sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755", True),
    ("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", False),
    ("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666",
     False),
    ("out", OUT, "9p", MS_NOSUID | MS_NODEV, "trans=virtio,version=9p2000.L,cache=none", True),
)


def say(event: str, console: bool = True, **fields: object) -> None:
    """A protocol event on the console (unless `console` is false: in shell mode the console
    is the user's terminal) and, once the share is mounted, in the results file."""
    line = json.dumps({"event": event, **fields})
    if console:
        print(MARK + line, flush=True)
    if os.path.ismount(OUT):
        try:
            with open(RESULTS, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass


def mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    try:
        os.makedirs(target, exist_ok=True)
    except OSError:
        pass  # /dev/pts on a devtmpfs exists already; the mount call says what is wrong
    if libc.mount(source.encode(), target.encode(), fstype.encode(), flags,
                  data.encode() or None) != 0:
        err = ctypes.get_errno()
        if err != EBUSY:  # already mounted (devtmpfs with CONFIG_DEVTMPFS_MOUNT)
            raise OSError(err, f"mount -t {fstype} {source} {target}: {os.strerror(err)}")


def setup() -> None:
    for source, target, fstype, flags, data, required in MOUNTS:
        try:
            mount(source, target, fstype, flags, data)
        except OSError as exc:
            if required:
                raise
            print(f"pipeline init: optional mount skipped: {exc}", flush=True)


def host_tmp_needed(request: dict[str, Any]) -> bool:
    """Does the request use files under the host's /tmp (e.g. a CI clone there)?"""
    needed = [request["python"], request["plugin_dir"], *request["tests"]]
    needed += [p for p in (request.get("cwd"), *(request.get("command") or [])[:1])
               if isinstance(p, str) and p.startswith("/")]
    return any(os.path.abspath(p) == "/tmp" or os.path.abspath(p).startswith("/tmp/")
               for p in needed)


def scratch_dir(request: dict[str, Any]) -> str:
    """A writable tmpfs for TMPDIR: /tmp, unless a tmpfs there would hide the host files
    the request needs (the interpreter, the tests); then /run/tmp."""
    if host_tmp_needed(request):
        os.makedirs("/run/tmp", mode=0o1777, exist_ok=True)
        os.chmod("/run/tmp", 0o1777)
        return "/run/tmp"
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    return "/tmp"


def boot_mode(cmdline: str) -> str:
    """The value of `pipeline.mode=` on the kernel command line (the last one wins, as for
    the kernel's own parameters); "tests" when absent. Words after `--` are init's argv."""
    mode = "tests"
    for word in cmdline.split():
        if word == "--":
            break
        if word.startswith("pipeline.mode="):
            mode = word.partition("=")[2]
    if mode not in MODES:
        raise ValueError(f"pipeline.mode={mode}: must be one of {', '.join(MODES)}")
    return mode


def exit_status(returncode: int) -> int:
    """A shell's $? for a child's return code: 128+N when signal N killed it."""
    return 128 - returncode if returncode < 0 else returncode & 0xFF


def command_env(request: dict[str, Any], tmp: str) -> dict[str, str]:
    env = {"PATH": PATH, "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1"}
    term = request.get("term")
    if isinstance(term, str) and term and term.isprintable():
        env["TERM"] = term
    return env


def command_cwd(request: dict[str, Any], tmp: str) -> str:
    """The host's working folder when the guest sees it (the host's / is the guest's), else
    the scratch folder."""
    cwd = request.get("cwd")
    return cwd if isinstance(cwd, str) and os.path.isdir(cwd) else tmp


def run_command(request: dict[str, Any], tmp: str) -> int:
    """exec mode: the request's argv with stdin /dev/null, stdout and stderr into files of the
    share (the host copies them out as they grow); its status as a shell reports it (127 not
    found, 126 not executable)."""
    argv = [str(a) for a in request["command"]]
    with open(f"{OUT}/stdout", "wb", buffering=0) as out, \
            open(f"{OUT}/stderr", "wb", buffering=0) as err:
        try:
            proc = subprocess.Popen(argv, env=command_env(request, tmp),
                                    cwd=command_cwd(request, tmp), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True)
        except FileNotFoundError:
            err.write(f"pipeline guest: {argv[0]}: command not found\n".encode())
            return 127
        except PermissionError:
            err.write(f"pipeline guest: {argv[0]}: permission denied\n".encode())
            return 126
        return exit_status(proc.wait())


def console_tty() -> str:
    """/dev/<tty> of the kernel console (/dev/console itself can never be a controlling
    terminal: no job control, no Ctrl-C there)."""
    try:
        with open("/sys/class/tty/console/active") as f:
            names = f.read().split()
    except OSError:
        names = []
    for name in reversed(names):   # the last console= is /dev/console
        if os.path.exists(f"/dev/{name}"):
            return f"/dev/{name}"
    return "/dev/console"


def shell_child(tty: str, rows: int, cols: int) -> None:
    """In the forked child: a new session with `tty` as its controlling terminal and stdio."""
    os.setsid()
    fd = os.open(tty, os.O_RDWR)   # the first tty a session leader opens becomes its ctty
    try:
        fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
    except OSError:
        pass
    if rows > 0 and cols > 0:
        try:
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        except OSError:
            pass
    for target in (0, 1, 2):
        os.dup2(fd, target)
    if fd > 2:
        os.close(fd)


def run_shell(request: dict[str, Any], tmp: str) -> int:
    """shell mode: an interactive login-less shell on the console tty; its exit status."""
    shell = next((s for s in ("/bin/bash", "/bin/sh") if os.access(s, os.X_OK)), "/bin/sh")
    env = command_env(request, tmp)
    env.setdefault("TERM", "linux")
    hostname = request.get("hostname")
    if isinstance(hostname, str) and 0 < len(hostname) <= 64 and hostname.isprintable():
        try:
            socket.sethostname(hostname)
        except OSError:
            pass
    raw_size = request.get("size")
    size = raw_size if isinstance(raw_size, list) else []
    rows, cols = (size + [0, 0])[:2] if all(isinstance(n, int) for n in size) else (0, 0)
    tty = console_tty()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # the shell
        try:
            shell_child(tty, rows, cols)
            os.chdir(command_cwd(request, tmp))
            os.execve(shell, [shell, "-i"], env)
        except BaseException:  # noqa: BLE001 - never return into PID 1's code
            traceback.print_exc()
        os._exit(127)
    # PID 1 reaps orphans until the shell itself ends (a background job may outlive it).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            done, status = os.wait()
        except ChildProcessError:
            return 0
        if done == pid:
            return exit_status(os.waitstatus_to_exitcode(status))


def run_tests(request: dict[str, Any], tmp: str) -> int:
    env = {
        "PATH": PATH,
        "HOME": tmp, "TMPDIR": tmp, "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": request["plugin_dir"], "PIPELINE_RESULTS": RESULTS,
        "LANG": "C.UTF-8",
    }
    # No cache provider and no bytecode: / is read-only; pytest's tmp_path goes to TMPDIR.
    argv = [request["python"], "-m", "pytest", "-p", "no:cacheprovider",
            "-p", "pipeline_guest_plugin", "-v", "-rs", *request["tests"]]
    with open(f"{OUT}/pytest.log", "w") as log:
        return subprocess.call(argv, env=env, cwd=tmp, stdin=subprocess.DEVNULL,
                               stdout=log, stderr=subprocess.STDOUT)


def copy_lockdep(proc: str = "/proc", out: str = OUT,
                 limit: int = LOCKDEP_MAX) -> dict[str, Any]:
    """Copy the lockdep files of `proc` into `out`/lockdep/ (each cut at `limit` bytes) and
    write `out`/lockdep/manifest.json: {name: {"bytes": N, "truncated": bool, "seconds": S}}
    for each file copied, {name: {"error": "..."}} for one that could not be read. Nothing
    when the kernel has no /proc/lockdep. Never raises: a failed copy must not cost the session."""
    manifest: dict[str, Any] = {}
    try:
        if not os.path.exists(f"{proc}/lockdep"):
            return manifest
        folder = f"{out}/lockdep"
        os.makedirs(folder, exist_ok=True)
        for name in LOCKDEP_FILES:
            start = time.monotonic()
            try:
                with open(f"{proc}/{name}", "rb") as src:
                    data = src.read(limit + 1)
                with open(f"{folder}/{name}", "wb") as dst:
                    dst.write(data[:limit])
                manifest[name] = {"bytes": min(len(data), limit),
                                  "truncated": len(data) > limit,
                                  "seconds": round(time.monotonic() - start, 3)}
            except OSError as exc:
                manifest[name] = {"error": f"{type(exc).__name__}: {exc}"}
        with open(f"{folder}/manifest.json", "w") as f:
            json.dump(manifest, f)
    except Exception:  # noqa: BLE001 - the report is a bonus, the session is what counts
        traceback.print_exc()
    return manifest


def main() -> None:
    try:
        setup()
        with open(f"{OUT}/request.json") as f:
            request = json.load(f)
        with open("/proc/cmdline") as f:
            mode = boot_mode(f.read())
        tmp = scratch_dir(request)
        say("ready", kernel=os.uname().release, mode=mode)
        if mode == "exec":
            say("exit", status=run_command(request, tmp))
        elif mode == "shell":
            say("exit", console=False, status=run_shell(request, tmp))
        else:
            rc = run_tests(request, tmp)
            copy_lockdep()
            say("done", exit=rc)
    except BaseException:  # noqa: BLE001 - PID 1 must report and power off, whatever happened
        traceback.print_exc()
        say("init-error", details=traceback.format_exc())
    finally:
        sys.stdout.flush()
        os.sync()
        libc.reboot(RB_AUTOBOOT)


if __name__ == "__main__":
    main()
