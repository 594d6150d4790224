"""End to end: `pipeline exec` and `pipeline shell` really boot the patched 6.1 kernel.

They build it like `pipeline run --variant patched` does (from the cache and its recorded
ready kernel after a run: seconds; a cold build otherwise) and boot it under TCG.
"""

import os
import subprocess
import sys
import textwrap
import time

import pexpect
import pytest

from pipeline.commands.devloop import EXIT_GUEST_LOST
from pipeline.job import PROJECT_ROOT

pytestmark = pytest.mark.e2e
COLD = 3600   # seconds: room for a cold build of the kernel when the cache has none


def pipeline_exec(tmp_path, *command: str, timeout: float = COLD) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "pipeline", "exec", "--accel", "tcg",
                           "--out", str(tmp_path / "out"), "--", *command],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)
    print(done.stdout[-4000:], done.stderr[-4000:])
    return done


def test_exec_output_and_exit_status(tmp_path):
    done = pipeline_exec(tmp_path, "sh", "-c", "echo hi; echo to-stderr >&2; exit 7")
    assert done.returncode == 7
    assert done.stdout == "hi\n"                   # nothing of the pipeline's on stdout
    assert "to-stderr" in done.stderr


def test_exec_runs_in_the_guest_kernel(tmp_path):
    done = pipeline_exec(tmp_path, "cat", "/proc/cmdline")
    assert done.returncode == 0
    words = done.stdout.split()
    assert "pipeline.mode=exec" in words and "root=root" in words and "console=ttyS0" in words
    release = pipeline_exec(tmp_path, "uname", "-r")
    assert release.returncode == 0 and release.stdout.strip() != os.uname().release
    assert release.stdout.startswith("6.1.")


# CONFIG_MAGIC_SYSRQ is off in the tiny config, so no `echo c > /proc/sysrq-trigger`: an OOM
# in a small v1 memory cgroup with vm.panic_on_oom=2 panics the kernel instead.
OOM_PANIC = textwrap.dedent("""\
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    root = "/sys/fs/cgroup/exec-memory"
    os.makedirs(root, exist_ok=True)
    assert libc.mount(b"cgroup", root.encode(), b"cgroup", 0, b"memory") == 0
    os.mkdir(root + "/small")
    open(root + "/small/memory.limit_in_bytes", "w").write(str(16 << 20))
    open("/proc/sys/vm/panic_on_oom", "w").write("2")
    print("about to panic", flush=True)
    open(root + "/small/cgroup.procs", "w").write(str(os.getpid()))
    hog = []
    while True:
        hog.append(bytearray(1 << 20))
""")


def test_exec_kernel_panic_has_its_own_exit_code(tmp_path):
    done = pipeline_exec(tmp_path, sys.executable, "-c", OOM_PANIC)
    assert done.returncode == EXIT_GUEST_LOST
    assert "about to panic" in done.stdout
    assert "kernel panic in the guest: Kernel panic - not syncing" in done.stderr
    console = (tmp_path / "out" / "patched" / "console.log").read_text()
    assert "panic_on_oom" in console


def test_exec_timeout_kills_qemu(tmp_path):
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pipeline", "exec", "--accel", "tcg",
                           "--out", str(tmp_path / "out"), "--timeout", "60", "--",
                           "sleep", "600"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=COLD, check=False)
    print(done.stdout, done.stderr)
    assert done.returncode == 124 and "--timeout" in done.stderr
    assert time.monotonic() - start < COLD


def test_shell_interactive_session(tmp_path):
    pipeline_exec(tmp_path, "true")     # a cold build, if any, outside the shell's timeouts
    child = pexpect.spawn(sys.executable, ["-m", "pipeline", "shell", "--accel", "tcg",
                                           "--out", str(tmp_path / "out")],
                          cwd=str(PROJECT_ROOT), encoding="utf-8", timeout=300,
                          dimensions=(30, 100))
    child.logfile_read = sys.stdout
    try:
        child.expect("Ctrl-]")                      # the banner says how to leave
        child.expect(r"# $")
        child.sendline("uname -r")
        child.expect(r"6\.1\.[0-9]+")
        child.expect(r"# $")
        child.sendline("exit")
        child.expect(pexpect.EOF, timeout=120)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
