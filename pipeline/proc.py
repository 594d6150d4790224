"""Run child processes with a timeout, in their own process group, killed on any exit path.

Children get their own session so that the pipeline decides when they stop: on a timeout, on
Ctrl-C, SIGTERM or SIGHUP (which the runner turns into KeyboardInterrupt) the whole group is
killed before the exception travels on. When the pipeline itself dies without running any
cleanup (SIGKILL, the OOM killer) the kernel kills each direct child (PR_SET_PDEATHSIG), so no
`make` is left running under PID 1; what such a child had started itself may still finish its
current step, which is why a build folder is locked by a file descriptor the whole make
process tree inherits (see pipeline.build), not by the pipeline process alone.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


@dataclass
class Completed:
    cmd: list[str]
    returncode: int
    output: str           # stdout and stderr together (empty when written to a file)
    duration: float
    timed_out: bool = False
    errors: str = ""      # stderr, when run(..., stderr_apart=True) (then output is stdout)


PR_SET_PDEATHSIG = 1      # <linux/prctl.h>


def _die_with(parent: int) -> Callable[[], None]:
    """preexec_fn for Popen: the child gets SIGKILL when the pipeline's thread that started it
    exits; if the pipeline already died between fork and here, the child stops at once.
    prctl is looked up here, in the parent: the child after fork only calls it (no dlopen,
    which could wait on a lock another thread held at fork time)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(128 + signal.SIGKILL)
    return preexec


def popen(cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """subprocess.Popen in a new session, killed by the kernel if the pipeline dies."""
    preexec = _die_with(os.getpid())
    return subprocess.Popen(cmd, start_new_session=True,
                            preexec_fn=preexec, **kwargs)  # noqa: PLW1509 - only prctl


def kill_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it is still there after `grace`."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run(cmd: list[str], *, cwd: Path | None = None, timeout: float,
        env: dict[str, str] | None = None, stdout: IO[bytes] | None = None,
        tick: Callable[[float], None] | None = None, tick_every: float = 15.0,
        pass_fds: Sequence[int] = (), stderr_apart: bool = False,
        stdin: IO[bytes] | None = None) -> Completed:
    """Run `cmd`; capture its output (or write it to `stdout`), call `tick(elapsed)` periodically.

    Never raises for a non-zero exit or a timeout (see `Completed`); a missing program raises
    FileNotFoundError, an interrupt propagates after the child group is killed. `pass_fds`
    stay open in the child (e.g. a lock the child's whole process tree must hold).
    `stderr_apart` captures stderr on its own (`Completed.errors`; `output` is then stdout
    only), for output that is parsed; not with `stdout` or `tick`. `stdin`: a file the child
    reads (default: nothing, /dev/null).
    """
    if tick is not None and stdout is None:
        raise ValueError("tick needs stdout= (a pipe read only at the end could fill up)")
    if stderr_apart and (stdout is not None or tick is not None):
        raise ValueError("stderr_apart captures both streams: not with stdout= or tick=")
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    start = time.monotonic()
    proc = popen(
        cmd, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL if stdin is None else stdin,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE if stderr_apart else subprocess.STDOUT, pass_fds=tuple(pass_fds),
    )
    try:
        if stdout is None and tick is None:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                out, err = proc.communicate()
                return Completed(cmd, -9, out.decode(errors="replace"),
                                 time.monotonic() - start, timed_out=True,
                                 errors=(err or b"").decode(errors="replace"))
            return Completed(cmd, proc.returncode, out.decode(errors="replace"),
                             time.monotonic() - start,
                             errors=(err or b"").decode(errors="replace"))
        next_tick = start + tick_every
        while True:
            now = time.monotonic()
            if now - start > timeout:
                kill_group(proc)
                return Completed(cmd, -9, "", now - start, timed_out=True)
            try:
                proc.wait(timeout=min(1.0, max(0.05, next_tick - now)))
                break
            except subprocess.TimeoutExpired:
                pass
            if tick is not None and time.monotonic() >= next_tick:
                tick(time.monotonic() - start)
                next_tick += tick_every
        out = b""
        if proc.stdout is not None:
            out = proc.stdout.read()
        return Completed(cmd, proc.returncode, out.decode(errors="replace"),
                         time.monotonic() - start)
    finally:
        # Reached with an exception (KeyboardInterrupt) while the child still runs.
        kill_group(proc)
