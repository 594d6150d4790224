#!/usr/bin/env python3
"""Run installed kselftests inside the guest, one binary at a time, and frame their TAP.

Standalone (stdlib only; it must not import the host package). The host
(pipeline/kselftest/suite.py) installs a selftest collection into a folder with a
`kselftest-manifest.json` and a copy of this file named `test_kselftest.py`,
so the same code runs two ways:

* as a guest pytest module (what the pipeline does, through run_guest): every
  selftest binary is one parametrized test; setup_module/teardown_module mount
  cgroup2 for the phase and unmount it afterwards;
* as a script: `python3 kselftest_run.py INSTALL_DIR` (handy from a hand-made init).

Each binary runs in its own session with the timeout kselftest's runner uses
(the collection's `settings` file `timeout=`, else 45 s); on timeout its whole
process group is killed, so a hang costs one test, not the suite. Its
stdout+stderr (merged, as runner.sh does) is written to /dev/console framed as

    KSELFTEST-BEGIN <collection> <test> timeout=<s>
    KSELFTEST-LINE <collection> <test> | <one line of output>
    KSELFTEST-END <collection> <test> rc=<rc> secs=<s> timedout=<0|1>

The framing makes the output survive kernel messages interleaved on the
console; the host reassembles it from OUT/console.log (the console is the one
channel every guest has; the 9p root is read-only).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

MANIFEST = "kselftest-manifest.json"
DEFAULT_TIMEOUT = 45
CGROUP2_MOUNTS = ("/sys/fs/cgroup/unified", "/run/kselftest-cgroup2")
# As systemd mounts it: with nsdelegate a cgroup namespace is a delegation boundary, which
# test_core's test_cgcore_lesser_ns_open checks (a write to cgroup.procs opened in a lesser
# namespace must fail with ENOENT; without nsdelegate it succeeds).
CGROUP2_OPTIONS = "nsdelegate"
KILL_GRACE = 10.0  # seconds to collect output after killing a timed-out test
# writable copy: tests create files in their cwd (TMPDIR is the guest init's tmpfs)
WORK_DIR = Path(tempfile.gettempdir()) / "kselftest"
# `kselftest.scratch=/dev/vda` on the kernel command line: an ext2 disk the host made for the
# tests. The programs then run chrooted into it (the host's /usr, /etc, /dev, /proc, /sys
# bound in): their cwd page cache is reclaimable, unlike tmpfs without swap (test_memcontrol's
# min/low/high/max/reclaim), and "/" caches negative dentries, unlike 9p (test_kmem_basic).
SCRATCH_ARG = "kselftest.scratch"
SCRATCH_ROOT = "/run/kselftest-root"
CHROOT_WORK = "/kselftest"
MS_BIND, MS_REC = 4096, 16384
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


@dataclass
class Selftest:
    collection: str
    name: str      # file name in the collection folder, e.g. test_core or test_stress.sh
    timeout: int


@dataclass
class RunOutcome:
    rc: int
    seconds: float
    timed_out: bool
    output: str


def _cmdline_value(name: str, cmdline: str | None = None) -> str | None:
    if cmdline is None:
        try:
            cmdline = Path("/proc/cmdline").read_text()
        except OSError:
            cmdline = ""
    for word in cmdline.split():
        key, _, value = word.partition("=")
        if key == name:
            return value
    return None


def timeout_scale(cmdline: str | None = None) -> float:
    """`kselftest.timeout_scale=F` on the kernel command line stretches every timeout
    (kselftest's 45 s assume real hardware; TCG is several times slower)."""
    value = _cmdline_value("kselftest.timeout_scale", cmdline)
    try:
        return max(float(value), 0.1) if value is not None else 1.0
    except ValueError:
        return 1.0


def scratch_device(cmdline: str | None = None) -> str | None:
    """The block device named by `kselftest.scratch=` (None when not given)."""
    return _cmdline_value(SCRATCH_ARG, cmdline) or None


def load_manifest(install_dir: Path) -> list[Selftest]:
    data = json.loads((install_dir / MANIFEST).read_text())
    scale = timeout_scale()
    return [Selftest(t["collection"], t["name"],
                     max(1, round(int(t.get("timeout", DEFAULT_TIMEOUT)) * scale)))
            for t in data["tests"]]


class Console:
    """Line writer to /dev/console (stdout when there is none)."""

    def __init__(self) -> None:
        try:
            self.fd = os.open("/dev/console", os.O_WRONLY | os.O_NOCTTY)
            self.own = True
        except OSError:
            self.fd = sys.stdout.fileno()
            self.own = False

    def line(self, text: str) -> None:
        # One write per line keeps our lines whole between kernel messages.
        os.write(self.fd, (text.replace("\r", "") + "\n").encode(errors="replace"))

    def close(self) -> None:
        if self.own:
            os.close(self.fd)


def find_cgroup2() -> str | None:
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return fields[1]
    return None


def mount_cgroup2() -> tuple[str, bool]:
    """Return (mount point, mounted by us). Raises OSError if none can be mounted."""
    existing = find_cgroup2()
    if existing:
        return existing, False
    errors = []
    for where in CGROUP2_MOUNTS:
        try:
            os.makedirs(where, exist_ok=True)
        except OSError as e:
            errors.append(f"{where}: {e}")
            continue
        res = subprocess.run(["mount", "-t", "cgroup2", "-o", CGROUP2_OPTIONS, "none", where],
                             check=False, capture_output=True, text=True, timeout=30)
        if res.returncode == 0:
            return where, True
        errors.append(f"{where}: {res.stderr.strip()}")
    raise OSError("cannot mount cgroup2: " + "; ".join(errors))


def _remove_children(root: str) -> list[str]:
    """rmdir every cgroup below root, deepest first; kill what is left in them."""
    problems = []
    dirs = [d for d, _, _ in os.walk(root)][1:]
    for d in sorted(dirs, key=lambda p: p.count("/"), reverse=True):
        try:
            with open(os.path.join(d, "cgroup.kill"), "w") as f:
                f.write("1")
        except OSError:
            pass
        for _ in range(20):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                err = e
                time.sleep(0.1)
        else:
            problems.append(f"rmdir {d}: {err}")
    return problems


def unmount_cgroup2(where: str) -> list[str]:
    """Tear the phase down so a v1 mount of the same controllers works later."""
    problems = _remove_children(where)
    res = subprocess.run(["umount", where], check=False, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        problems.append(f"umount {where}: {res.stderr.strip()}")
    return problems


def loopback_up() -> str:
    """Bring `lo` up (the tiny init does not): test_memcg_sock talks TCP to localhost.
    Returns a problem, or ""."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sk:
            req = struct.pack("16sH14x", b"lo", 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(sk.fileno(), SIOCGIFFLAGS, req))[1]
            if not flags & IFF_UP:
                fcntl.ioctl(sk.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo",
                                                                   flags | IFF_UP))
    except OSError as exc:
        return f"cannot bring lo up: {exc}"
    return ""


def _mount(source: str, target: str, fstype: str | None, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    os.makedirs(target, exist_ok=True)
    if libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                  flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} {target}: {os.strerror(err)}")


def make_chroot(device: str, root: str = SCRATCH_ROOT) -> str:
    """Mount the scratch ext2 disk at `root` and make it a root the programs can run in:
    the host's /usr and /etc, and the guest's /dev, /proc and /sys bound in (recursively, so
    the cgroup2 mount is there too), /bin, /lib, ... as on the host. Returns `root`."""
    _mount(device, root, "ext2", 0)
    for top in ("usr", "etc"):
        _mount(f"/{top}", f"{root}/{top}", None, MS_BIND)
    for top in ("dev", "proc", "sys"):
        _mount(f"/{top}", f"{root}/{top}", None, MS_BIND | MS_REC)
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / top
        mine = Path(root) / top
        if host.is_symlink() and not mine.is_symlink():
            os.symlink(os.readlink(host), mine)
        elif host.is_dir() and not host.is_symlink():
            _mount(str(host), str(mine), None, MS_BIND)
    for top in ("tmp", CHROOT_WORK.strip("/")):
        os.makedirs(f"{root}/{top}", mode=0o1777, exist_ok=True)
        os.chmod(f"{root}/{top}", 0o1777)
    return root


def working_copy(install_dir: Path, collection: str) -> Path:
    """Copy the collection once to somewhere writable: the 9p root is read-only, and tests
    such as test_memcontrol create their page-cache files in the cwd. On the scratch disk
    when there is one (see make_chroot), else on the guest's tmpfs."""
    root = _phase.get("chroot")
    base = Path(f"{root}{CHROOT_WORK}") if root else WORK_DIR
    dest = base / collection
    if not dest.is_dir():
        shutil.copytree(install_dir / collection, dest, symlinks=True)
    return dest


def command(path: Path) -> list[str]:
    """Line-buffer the test's stdout: with a pipe, stdio buffers fully, and
    children forked by the test flush copies of the parent's pending lines
    (duplicated "ok N" lines). kselftest's runner has the same problem."""
    stdbuf = shutil.which("stdbuf")
    return [stdbuf, "-oL", "-eL", str(path)] if stdbuf else [str(path)]


def run_selftest(test: Selftest, install_dir: Path) -> RunOutcome:
    cwd = working_copy(install_dir, test.collection)
    root = _phase.get("chroot")
    argv = command(cwd / test.name)
    if isinstance(root, str):
        inside = "/" + str(cwd.relative_to(root))
        argv = ["chroot", root, "/bin/sh", "-c", 'cd "$0" && exec "$@"', inside,
                *command(Path(inside) / test.name)]
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=test.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            out, _ = proc.communicate(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            out = b""  # stuck in D state; the host sees timedout=1 and no output
    seconds = time.monotonic() - start
    rc = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    return RunOutcome(rc, seconds, timed_out, out.decode(errors="replace"))


def emit(console: Console, test: Selftest, outcome: RunOutcome) -> None:
    tag = f"{test.collection} {test.name}"
    console.line(f"KSELFTEST-BEGIN {tag} timeout={test.timeout}")
    for text in outcome.output.splitlines():
        console.line(f"KSELFTEST-LINE {tag} | {text}")
    console.line(f"KSELFTEST-END {tag} rc={outcome.rc} secs={outcome.seconds:.3f} "
                 f"timedout={int(outcome.timed_out)}")


# ---- pytest mode (this file copied as test_kselftest.py next to the manifest) ----

class _Phase(TypedDict, total=False):
    mount: tuple[str, bool]     # mount_cgroup2(): where, and whether this phase mounted it
    chroot: str                 # make_chroot(): the scratch disk's root


_phase: _Phase = {}


def setup_phase() -> list[str]:
    """Mount cgroup2, bring lo up, make the chroot on the scratch disk when there is one.
    Returns notes on what could not be done (the tests then say what they miss)."""
    notes = []
    where, ours = mount_cgroup2()
    _phase["mount"] = (where, ours)
    problem = loopback_up()
    if problem:
        notes.append(problem)
    device = scratch_device()
    if device:
        try:
            _phase["chroot"] = make_chroot(device)
        except OSError as exc:
            notes.append(f"no scratch disk ({exc}): the programs run on tmpfs")
    return notes


def teardown_phase() -> list[str]:
    problems = []
    root = _phase.pop("chroot", None)
    if root:
        res = subprocess.run(["umount", "-R", "-l", str(root)], check=False,
                             capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            problems.append(f"umount {root}: {res.stderr.strip()}")
    where, ours = _phase.pop("mount", (None, False))
    if where and ours:
        problems += unmount_cgroup2(where)
    return problems


def setup_module(module: object) -> None:
    for note in setup_phase():
        print("kselftest setup:", note, file=sys.stderr)


def teardown_module(module: object) -> None:
    problems = teardown_phase()
    if problems:
        print("kselftest teardown:", "; ".join(problems), file=sys.stderr)


def pytest_generate_tests(metafunc: object) -> None:
    if "selftest" in metafunc.fixturenames:  # type: ignore[attr-defined]
        tests = load_manifest(Path(__file__).resolve().parent)
        metafunc.parametrize("selftest", tests,  # type: ignore[attr-defined]
                             ids=[f"{t.collection}:{t.name}" for t in tests])


def test_selftest(selftest: Selftest) -> None:
    install_dir = Path(__file__).resolve().parent
    outcome = run_selftest(selftest, install_dir)
    console = Console()
    try:
        emit(console, selftest, outcome)
    finally:
        console.close()
    tail = "\n".join(outcome.output.splitlines()[-30:])
    if outcome.timed_out:
        raise AssertionError(f"TIMEOUT {selftest.timeout} seconds\n{tail}")
    if outcome.rc == 4:  # KSFT_SKIP
        import pytest
        pytest.skip(tail.splitlines()[-1] if tail else "KSFT_SKIP")
    assert outcome.rc == 0, f"exit code {outcome.rc}\n{tail}"


# ---- script mode ----

def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} INSTALL_DIR", file=sys.stderr)
        return 2
    install_dir = Path(argv[1])
    tests = load_manifest(install_dir)
    console = Console()
    try:
        notes = setup_phase()
        where, _ours = _phase["mount"]
        console.line(f"KSELFTEST-PHASE start cgroup2={where} tests={len(tests)} "
                     f"root={_phase.get('chroot', '/')}")
        for note in notes:
            console.line(f"KSELFTEST-PHASE warning {note}")
        failed = 0
        for test in tests:
            outcome = run_selftest(test, install_dir)
            emit(console, test, outcome)
            failed += outcome.rc not in (0, 4)
        problems = teardown_phase()
        for p in problems:
            console.line(f"KSELFTEST-PHASE warning {p}")
        console.line(f"KSELFTEST-PHASE end failed={failed}")
    finally:
        console.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
