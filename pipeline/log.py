"""Human-readable progress log: one line per stage with the elapsed time since the run started."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

# What a function that only writes progress lines takes: a Log, print, or list.append.
Logger = Callable[[str], None]


def fmt_duration(seconds: float) -> str:
    """`12.3s` below a minute, `2m31s` below an hour, `1h02m` above."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def rerun_line(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """A shell line that reruns `cmd` by hand (quoted, with the folder and extra environment)."""
    words = [f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    line = " ".join(words + [shlex.join(cmd)])
    if cwd is not None:
        line = f"cd {shlex.quote(str(cwd))} && {line}"
    return line


QUIET, NORMAL, VERBOSE = -1, 0, 1   # Log.verbosity: -q, default, -v


@dataclass
class Log:
    """Callable logger: `log("text")` prints `[  12.3s] text`.

    `verbosity` (the command line's -v/-q): `log()` lines show at NORMAL and above,
    `log.debug()` lines only at VERBOSE and above, `log.error()` lines always but below
    QUIET (-qq)."""

    stream: TextIO = field(default_factory=lambda: sys.stdout)
    start: float = field(default_factory=time.monotonic)
    verbosity: int = NORMAL

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def _write(self, message: str) -> None:
        prefix = f"[{self.elapsed():7.1f}s] "
        for line in str(message).splitlines() or [""]:
            self.stream.write(prefix + line + "\n")
        self.stream.flush()

    def __call__(self, message: str) -> None:
        if self.verbosity >= NORMAL:
            self._write(message)

    def debug(self, message: str) -> None:
        """Details only -v asks for (e.g. the whole QEMU command line)."""
        if self.verbosity >= VERBOSE:
            self._write(message)

    def error(self, message: str) -> None:
        """What went wrong: shown also with -q (only -qq hides it)."""
        if self.verbosity >= QUIET:
            self._write(message)

    notice = error   # a verdict or a wait the user must know of: shown also with -q

    def stage(self, variant: str, stage: str, status: str, duration: float, reason: str = "") -> None:
        """`build patched: ok (2m31s)` / `build patched: FAILED (4.1s): reason`."""
        text = f"{stage} {variant}: {status} ({fmt_duration(duration)})"
        if reason:
            text += f": {reason}"
        (self(text) if status == "ok" else self.error(text))

    def rerun(self, cmd: list[str], cwd: Path | None = None,
              env: dict[str, str] | None = None) -> None:
        self(f"  rerun by hand: {rerun_line(cmd, cwd, env)}")


@dataclass
class CallbackLog(Log):
    """A Log whose lines go to a plain logger function (the commands that take any Logger,
    e.g. a test's list.append, and run stages, which need the Log methods)."""

    sink: Logger = print

    def _write(self, message: str) -> None:
        for line in str(message).splitlines() or [""]:
            self.sink(line)


def as_log(log: Logger) -> Log:
    """`log` itself when it is a Log, else a CallbackLog writing to it."""
    return log if isinstance(log, Log) else CallbackLog(sink=log)
