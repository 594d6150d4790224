"""The cache folder (trees, worktrees, builds, ccache, downloads) and its per-entry locks."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import StageFailed

ENV_VAR = "KERNEL_PIPELINE_CACHE"


def default_cache_root() -> Path:
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kernel-pipeline"


def short_hash(*parts: str, length: int = 16) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:length]


@dataclass(frozen=True)
class Cache:
    root: Path

    def dir(self, kind: str) -> Path:
        """A top-level folder of the cache (`trees`, `worktrees`, `builds`, ...), created."""
        path = self.root / kind
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextlib.contextmanager
    def lock(self, name: str, what: str, log: Callable[[str], None],
             timeout: float = 4 * 3600.0, poll: float = 0.5) -> Iterator[None]:
        """Hold an exclusive flock on `locks/<name>.lock`; say what we wait for when another
        run holds it. The lock goes with the process, so a killed run never leaves it held."""
        path = self.dir("locks") / f"{name}.lock"
        with open(path, "a+") as handle:
            start = time.monotonic()
            said = -1.0
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    waited = time.monotonic() - start
                    if waited > timeout:
                        raise StageFailed(f"gave up after {waited:.0f}s waiting for the lock on "
                                          f"{what} ({path})") from None
                    if said < 0 or waited - said >= 30:
                        say = getattr(log, "notice", log)   # shown also with -q
                        say(f"waiting for another pipeline run to finish with {what} "
                            f"(lock {path})")
                        said = waited
                    time.sleep(poll)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
