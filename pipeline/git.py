"""Every git command the pipeline runs, through proc.run: each in its own process group, with a
timeout, killed on Ctrl-C/SIGTERM or when the pipeline dies ("a timeout on everything that
waits"). GitPython is not used (see the README, Dependencies).

`git(repo, *args)` is for commands that must work: it returns git's stdout and raises GitError
(a StageFailed: exit 3) naming the command, the folder and git's own message. `git_run(repo,
*args)` returns the whole proc.Completed (stdout and stderr together, as git prints them) for
callers that decide on the exit status themselves (`git am`, `git apply --check`, a probe).
Every command gets the pipeline's identity (commits it makes are by kernel-pipeline).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import IO

from . import proc
from .errors import StageFailed

IDENTITY = ["-c", "user.name=kernel-pipeline", "-c", "user.email=kernel-pipeline@localhost"]
TIMEOUT = 600.0             # seconds; the big steps (add/commit of a tree, clone) pass more
SHOWN_COMMAND = 300         # characters of the command in an error (update-index gets long)


class GitError(StageFailed):
    """A git command failed or timed out; the message names it."""

    def __init__(self, args: tuple[str, ...] | list[str], repo: Path | None,
                 done: proc.Completed, timeout: float, what: str = "") -> None:
        command = shlex.join(["git", *args])
        if len(command) > SHOWN_COMMAND:
            command = command[:SHOWN_COMMAND] + "..."
        why = (f"timed out after {timeout:.0f}s" if done.timed_out
               else (done.errors.strip() or done.output.strip()
                     or f"exit status {done.returncode}"))
        where = f" in {repo}" if repo is not None else ""
        during = f" while {what}" if what else ""
        super().__init__(f"{command} failed{during}{where}: {why}")
        self.returncode = done.returncode


def git_run(repo: Path | None, *args: str, timeout: float = TIMEOUT,
            env: dict[str, str] | None = None, stdin: IO[bytes] | None = None) -> proc.Completed:
    """`git ARGS` in `repo` (None: the current folder); never raises for its exit status.
    `stdin`: a file git reads (`git mailinfo`); default nothing."""
    return proc.run(["git", *IDENTITY, *args], cwd=repo, timeout=timeout, env=env, stdin=stdin)


def git(repo: Path | None, *args: str, timeout: float = TIMEOUT,
        env: dict[str, str] | None = None, what: str = "") -> str:
    """`git ARGS` in `repo`; its stdout, or GitError (`what`: what it was for, for the error)."""
    done = proc.run(["git", *IDENTITY, *args], cwd=repo, timeout=timeout, env=env,
                    stderr_apart=True)
    if done.returncode != 0 or done.timed_out:
        raise GitError(args, repo, done, timeout, what)
    return done.output
