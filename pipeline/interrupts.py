"""SIGINT, SIGTERM and SIGHUP (a closed terminal) as one KeyboardInterrupt, so that a run
that is stopped still writes its partial report (pipeline.runner)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Signals:
    """Turns SIGINT/SIGTERM/SIGHUP into KeyboardInterrupt once, remembering which signal it was."""

    name: str = ""
    saved: dict[int, Any] = field(default_factory=dict)

    def _handler(self, signum: int, _frame: object) -> None:
        if self.name:
            return  # already stopping: let the cleanup finish
        self.name = signal.Signals(signum).name
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self.saved[sig] = signal.signal(sig, self._handler)
        try:
            yield
        finally:
            for signum, old in self.saved.items():
                signal.signal(signum, old)
