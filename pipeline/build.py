"""Build bzImage out of tree (`make O=`), with ccache when present, a progress line and a log.

On failure the first compiler/linker errors are extracted for the message and the JUnit text.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import proc, ready
from .kconfig import install_config
from .log import Logger, fmt_duration
from .qemu import Machine
from .results import FAILED, PASSED, Case

if TYPE_CHECKING:
    from .context import VariantContext
_COMPILER_ERR = re.compile(r"^(?P<loc>[^\s:][^:]*:\d+(?::\d+)?): (?:fatal )?error: (?P<msg>.*)$")
_LINKER_ERR = re.compile(r"(undefined reference to|multiple definition of|"
                         r"^ld(?:\.\S+)?: .*(?:error|cannot find|undefined|relocation)|"
                         r"^[^\s:]+\.o: in function|collect2: error)")
_MAKE_ERR = re.compile(r"^make(?:\[\d+\])?: \*\*\* .*$")
_STEP = re.compile(r"^\s+(CC|AS|LD|AR)\s")
NO_SPACE = "No space left on device"
_COMPILER_WARN = re.compile(r"^(?P<file>[^\s:][^:]*):\d+(?::\d+)?: warning: (?P<msg>.*)$")


@dataclass
class BuildResult:
    ok: bool
    image: Path | None
    duration: float
    log_path: Path
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)   # first compiler/linker errors
    reason: str = ""                                  # one line: why it failed
    steps: int = 0                                    # CC/AS/LD/AR lines in the log


def extract_errors(log_text: str, limit: int = 10) -> list[str]:
    """First compiler errors (`file:line:col: error: msg`), else linker errors, else the make
    error lines, else the last lines of the log."""
    lines = log_text.splitlines()
    compiler = [line.strip() for line in lines if _COMPILER_ERR.match(line.strip())]
    if compiler:
        return _unique(compiler)[:limit]
    linker = [line.strip() for line in lines if _LINKER_ERR.search(line.strip())]
    if linker:
        return _unique(linker)[:limit]
    make = [line.strip() for line in lines if _MAKE_ERR.match(line.strip())]
    if make:
        return _unique(make)[:limit]
    return [line for line in lines[-limit:] if line.strip()]


def warning_keys(log_text: str) -> dict[tuple[str, str], str]:
    """Compiler warnings of a build log: (file, message) -> the first full line. The line
    number is left out of the key, so a warning that only moved is not a new one."""
    found: dict[tuple[str, str], str] = {}
    for line in log_text.splitlines():
        m = _COMPILER_WARN.match(line.strip())
        if m:
            found.setdefault((m.group("file"), m.group("msg")), line.strip())
    return found


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def count_steps(text: str) -> int:
    return sum(1 for line in text.splitlines() if _STEP.match(line))


def build_command(src: Path, build_dir: Path, jobs: int, use_ccache: bool) -> list[str]:
    cmd = ["make", "-C", str(src), f"O={build_dir}", f"-j{jobs}"]
    if use_ccache:
        cmd.append("CC=ccache gcc")
    return cmd + ["bzImage"]


class BuildFolderBusy(Exception):
    """Another make (maybe left over from a killed run) still works in the build folder."""


@contextlib.contextmanager
def build_folder_lock(build_dir: Path, log: Logger, timeout: float,
                      poll: float = 0.5) -> Iterator[int]:
    """An exclusive flock on `<build_dir>.lock`, yielding its fd. The fd is handed to make
    (pass_fds), so make and every process it starts hold the same open file: the lock is
    released when the last of them exits, never before (a pipeline killed with SIGKILL no
    longer frees the folder while its compilers still write there), and never later (no pid
    file to go stale)."""
    lock_path = build_dir.with_name(build_dir.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        start = time.monotonic()
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - start > timeout:
                    raise BuildFolderBusy(f"build folder {build_dir} is still in use by "
                                          f"another make after {timeout:.0f}s (lock "
                                          f"{lock_path}; `fuser {lock_path}` names it)") from None
                if not said:
                    log(f"  waiting for another make in {build_dir} to finish (lock {lock_path})")
                    said = True
                time.sleep(poll)
        yield fd
    finally:
        os.close(fd)


def build_kernel(src: Path, build_dir: Path, log_path: Path, timeout: float, log: Logger,
                 ccache_dir: Path | None = None, jobs: int | None = None,
                 lock_timeout: float | None = None) -> BuildResult:
    """Run the build; the full output goes to `log_path`. Never raises for a failed build.
    The build folder is locked for make's whole process tree (see build_folder_lock); waiting
    for it takes at most `lock_timeout` (default: the build timeout)."""
    jobs = jobs or len(os.sched_getaffinity(0))
    use_ccache = shutil.which("ccache") is not None
    env: dict[str, str] = {}
    if use_ccache and "CCACHE_DIR" not in os.environ and ccache_dir is not None:
        env["CCACHE_DIR"] = str(ccache_dir)
    cmd = build_command(src, build_dir, jobs, use_ccache)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    state = {"offset": 0, "steps": 0}

    def progress(elapsed: float) -> None:
        with open(log_path, "rb") as handle:
            handle.seek(state["offset"])
            chunk = handle.read()
        state["offset"] += len(chunk)
        state["steps"] += count_steps(chunk.decode(errors="replace"))
        log(f"  building: {state['steps']} compile/link steps so far, "
            f"{fmt_duration(elapsed)} elapsed")

    try:
        with build_folder_lock(build_dir, log, timeout if lock_timeout is None
                               else lock_timeout) as lock_fd, open(log_path, "wb") as out:
            out.write(f"$ {' '.join(cmd)}\n".encode())
            out.flush()
            done = proc.run(cmd, timeout=timeout, env=env, stdout=out, tick=progress,
                            pass_fds=(lock_fd,))
    except BuildFolderBusy as exc:
        return BuildResult(ok=False, image=None, duration=0.0, log_path=log_path, command=cmd,
                           env=env, reason=str(exc), errors=[str(exc)])
    text = log_path.read_text(errors="replace")
    image = build_dir / Machine.load().image
    result = BuildResult(ok=False, image=None, duration=done.duration, log_path=log_path,
                         command=cmd, env=env, steps=count_steps(text))
    if done.timed_out:
        result.reason = f"build timed out after {fmt_duration(timeout)}"
        result.errors = extract_errors(text)
    elif done.returncode != 0:
        result.errors = extract_errors(text)
        first = result.errors[0] if result.errors else f"make exited {done.returncode}"
        result.reason = f"build failed: {first}"
        if NO_SPACE in text:
            free = shutil.disk_usage(build_dir).free if build_dir.exists() else 0
            result.reason = (f"disk full while building in {build_dir} ({free >> 20} MiB "
                             f"free): free some space and rerun; make removes the half-written "
                             f"files, so the build folder stays usable")
    elif not image.is_file():
        result.reason = f"make succeeded but {image} is missing"
    else:
        result.ok = True
        result.image = image
    return result


def build_dir_of(ctx: VariantContext) -> Path:
    """The variant's build folder: one per sources and final .config (so a changed config
    gets a folder of its own and switching back is incremental)."""
    assert ctx.config is not None
    return ctx.cache.dir("builds") / f"{ctx.src_key}-{ctx.config.config_hash[:12]}"


def build_stage(ctx: VariantContext) -> list[Case]:
    """The build stage: an incremental build in the variant's build folder; makes `kernel`
    (OUT/<variant>/bzImage) when it succeeded."""
    assert ctx.src is not None and ctx.config is not None
    build_dir = build_dir_of(ctx)
    log = ctx.log
    with ctx.cache.lock(f"build-{build_dir.name}", f"build folder {build_dir}", log):
        if install_config(ctx.config.config, build_dir):
            log(f"  new build folder {build_dir}")
        else:
            log(f"  incremental build in {build_dir}")
        result = build_kernel(ctx.src, build_dir, ctx.out / "build.log", ctx.job.timeouts.build,
                              log, ccache_dir=ctx.cache.root / "ccache")
        case = Case("build", PASSED, result.duration, message=f"{result.steps} compile/link steps")
        if result.ok and result.image is not None:
            shutil.copyfile(result.image, ctx.out / "bzImage")
            ctx.kernel = ctx.out / "bzImage"
            ready.record(ctx, ready.inputs(ctx, ctx.src), build_dir, result.image)
            return [case]
    case.status = FAILED
    case.message = result.reason
    case.details = "\n".join(result.errors) + f"\n\nfull log: {result.log_path}"
    log("\n".join(f"  {line}" for line in result.errors))
    log.rerun(result.command, env=result.env)
    return [case]
