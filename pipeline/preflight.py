"""Checks before any work: what can be refused as bad input (exit 2) without touching a tree,
shared by `pipeline run`, shell/exec and port-diff."""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from pathlib import Path

from . import kconfig
from .cache import default_cache_root
from .errors import BadInput
from .job import Job, check_boot_paths, check_guest_root


def check_before_work(job: Job, dry_run: bool = False) -> None:
    """Everything that can be refused as bad input without touching a tree (exit 2). A dry
    run leaves out the checks that create OUT and the cache to write a probe into them."""
    guest_dir = Path(__file__).resolve().parent / "guest"
    check_boot_paths(Path(sys.executable), guest_dir)
    if not dry_run:
        check_writable_dir(job.out, "--out")
    cache_root = job.cache_dir or default_cache_root()
    check_guest_root(job.qemu.root, [Path(sys.executable), guest_dir, *job.tests,
                                     *([cache_root] if job.kselftest.enabled else [])])
    for variant in job.variants:
        if (job.out / variant.name).is_symlink():
            raise BadInput(f"{job.out / variant.name} is a symlink: refused (the run would "
                           "write through it)")
    if not dry_run:
        check_writable_dir(cache_root, "the cache folder")
    for fragment in dict.fromkeys([*job.kconfig, *(f for v in job.variants
                                                   for f in v.kconfig_extra)]):
        kconfig.parse_fragment(fragment)  # unreadable or not text


def check_writable_dir(path: Path, what: str) -> None:
    """`path` is (or can be made) a folder we can write a file into; BadInput otherwise. Run
    before any work, so that a read-only, full or mistyped --out or cache stops the run at
    once (exit 2) instead of after the build."""
    if path.exists() and not path.is_dir():
        raise BadInput(f"{what} {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".pipeline-write-test-") as probe:
            probe.write(b"x" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        why = {errno.EROFS: "read-only file system", errno.ENOSPC: "no space left",
               errno.EACCES: "permission denied", errno.ENOTDIR: "a parent is not a folder",
               errno.EDQUOT: "disk quota exceeded"}.get(exc.errno or 0, exc.strerror or str(exc))
        raise BadInput(f"{what} {path}: cannot write there ({why})") from None
