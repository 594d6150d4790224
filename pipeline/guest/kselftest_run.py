#!/usr/bin/env python3
"""Run installed kselftests inside the guest, one binary at a time, and frame their TAP.

Standalone (stdlib only; it must not import the host package). The host
(pipeline/kselftest.py) installs a selftest collection into a folder with a
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

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "kselftest-manifest.json"
DEFAULT_TIMEOUT = 45
CGROUP2_MOUNTS = ("/sys/fs/cgroup/unified", "/run/kselftest-cgroup2")
KILL_GRACE = 10.0  # seconds to collect output after killing a timed-out test
# writable copy: tests create files in their cwd (TMPDIR is the guest init's tmpfs)
WORK_DIR = Path(tempfile.gettempdir()) / "kselftest"


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


def timeout_scale(cmdline: str | None = None) -> float:
    """`kselftest.timeout_scale=F` on the kernel command line stretches every timeout
    (kselftest's 45 s assume real hardware; TCG is several times slower)."""
    if cmdline is None:
        try:
            cmdline = Path("/proc/cmdline").read_text()
        except OSError:
            cmdline = ""
    for word in cmdline.split():
        key, _, value = word.partition("=")
        if key == "kselftest.timeout_scale":
            try:
                return max(float(value), 0.1)
            except ValueError:
                pass
    return 1.0


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
        res = subprocess.run(["mount", "-t", "cgroup2", "none", where], check=False,
                             capture_output=True, text=True, timeout=30)
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


def working_copy(install_dir: Path, collection: str) -> Path:
    """Copy the collection to tmpfs once: the 9p root is read-only, and tests
    such as test_memcontrol create their page-cache files in the cwd."""
    dest = WORK_DIR / collection
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
    start = time.monotonic()
    proc = subprocess.Popen(command(cwd / test.name), cwd=cwd, stdin=subprocess.DEVNULL,
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

_phase: dict[str, object] = {}


def setup_module(module: object) -> None:
    where, ours = mount_cgroup2()
    _phase["mount"] = (where, ours)


def teardown_module(module: object) -> None:
    where, ours = _phase.pop("mount", (None, False))
    if where and ours:
        problems = unmount_cgroup2(where)
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
        where, ours = mount_cgroup2()
        console.line(f"KSELFTEST-PHASE start cgroup2={where} tests={len(tests)}")
        failed = 0
        for test in tests:
            outcome = run_selftest(test, install_dir)
            emit(console, test, outcome)
            failed += outcome.rc not in (0, 4)
        problems = unmount_cgroup2(where) if ours else []
        for p in problems:
            console.line(f"KSELFTEST-PHASE warning {p}")
        console.line(f"KSELFTEST-PHASE end failed={failed}")
    finally:
        console.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
