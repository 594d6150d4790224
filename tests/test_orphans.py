"""Issue 13 row 6: no child outlives the pipeline, and a build folder stays locked while any
process of its make still runs (a pipeline killed with SIGKILL, or hung up with SIGHUP)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import write_fake_kernel

from pipeline import build
from pipeline.interrupts import Signals

PROJECT = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead (its parent, the init of this container, may reap it late)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(path: Path, seconds: float = 20.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def _gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _pipeline_process(code: str, tmp_path: Path) -> subprocess.Popen:
    """A stand-in for the pipeline: a Python process running `code` with this project."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=PROJECT,
                            env={**os.environ, "PYTHONPATH": str(PROJECT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_child_dies_when_the_pipeline_is_killed(tmp_path):
    pidfile = tmp_path / "child.pid"
    parent = _pipeline_process(f"""
        from pipeline import proc
        proc.run(["sh", "-c", "echo $$ > {pidfile}; exec sleep 60"], timeout=120)
    """, tmp_path)
    child = int(_wait_for(pidfile))
    try:
        parent.kill()                  # SIGKILL: no Python cleanup runs
        parent.wait(timeout=10)
        assert _gone(child), "the child outlived the pipeline (PR_SET_PDEATHSIG missing)"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_build_folder_stays_locked_while_an_orphaned_compiler_runs(tmp_path):
    src = write_fake_kernel(tmp_path / "linux")
    build_dir = tmp_path / "builds" / "b1"
    build_dir.mkdir(parents=True)
    pidfile = tmp_path / "compiler.pid"
    env = {"FAKE_BUILD_PIDFILE": str(pidfile), "FAKE_BUILD_SLEEP": "60"}
    os.environ.update(env)
    try:
        parent = _pipeline_process(f"""
            from pathlib import Path
            from pipeline import build
            build.build_kernel(Path("{src}"), Path("{build_dir}"), Path("{tmp_path}/b.log"),
                               120, print)
        """, tmp_path)
        compiler = int(_wait_for(pidfile))     # make's child, like a cc1 of a real build
    finally:
        for key in env:
            os.environ.pop(key)
    try:
        parent.kill()
        parent.wait(timeout=10)
        assert _alive(compiler)                # a grandchild may finish its step...
        lines: list[str] = []
        second = build.build_kernel(src, build_dir, tmp_path / "b2.log", 60, lines.append,
                                    lock_timeout=1.0)
        assert not second.ok and "still in use" in second.reason   # ...but no second make
        assert any("waiting for another make" in line for line in lines)
    finally:
        if _alive(compiler):
            os.kill(compiler, signal.SIGKILL)
    assert _gone(compiler)
    third = build.build_kernel(src, build_dir, tmp_path / "b3.log", 60, print, lock_timeout=5)
    assert third.ok, third.reason


def test_sighup_stops_the_run_like_sigterm():
    signals = Signals()
    with signals.installed(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(5)
    assert signals.name == "SIGHUP"


def test_qemu_on_its_pty_dies_when_the_pipeline_is_killed(tmp_path):
    """QEMU is not started by proc.popen but by pexpect on a pty (boot.spawn), so it has no
    PR_SET_PDEATHSIG: it relies on the pty's hangup (SIGHUP to the session leader) when the
    pipeline dies. A stand-in for QEMU that, like QEMU, ends on SIGHUP."""
    pidfile = tmp_path / "qemu.pid"
    parent = _pipeline_process(f"""
        import time
        from pipeline import boot
        from pipeline.qemu import Machine
        child = boot.spawn(["sh", "-c", "echo $$ > {pidfile}; exec sleep 60"], Machine.load())
        time.sleep(120)
    """, tmp_path)
    child = int(_wait_for(pidfile))
    try:
        parent.kill()
        parent.wait(timeout=10)
        assert _gone(child), "QEMU's stand-in outlived the pipeline"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
