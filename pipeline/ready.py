"""Ready kernels: configure + build skipped when nothing they read changed.

After a good build the build stage records which image these exact inputs made
(CACHE/ready/<src_key>-<digest>.json); `pipeline shell` / `exec` (RunContext.reuse_ready)
then take that image without the sources lock, so a run building another variant of the same
sources does not make them wait for minutes. Safe because the image is only taken when its
sha256 is still the one the build recorded (a later build in that folder replaces it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path

from . import apply
from .context import VariantContext
from .errors import PipelineError
from .git import git
from .results import PASSED, Case, Stage

CODE = ("kconfig.py", "build.py")   # the pipeline code that makes a kernel of its inputs


def inputs(ctx: VariantContext, src: Path) -> str | None:
    """A digest of everything configure and build read: the sources (HEAD of a clean
    checkout), base_config, every fragment's bytes, the tree version, the compiler and the
    pipeline's own configure/build code. None when it cannot be told (a dirty or odd
    checkout): then the stages run as always."""
    job = ctx.job
    try:
        head = git(src, "rev-parse", "HEAD", timeout=60).strip()
        dirty = git(src, "status", "--porcelain", "--untracked-files=no", timeout=300).strip()
        cc = subprocess.run(["gcc", "--version"], capture_output=True, text=True, timeout=30,
                            check=False).stdout.splitlines()[:1]
        here = Path(__file__).parent
        data = {
            "src": str(src), "head": head, "base_config": job.base_config,
            "version": ctx.tree.version, "cc": cc,
            "fragments": [[str(f), hashlib.sha256(f.read_bytes()).hexdigest()]
                          for f in [*job.kconfig, *ctx.variant.kconfig_extra]],
            "code": [hashlib.sha256((here / name).read_bytes()).hexdigest() for name in CODE]}
    except (OSError, subprocess.SubprocessError, ValueError, PipelineError):
        return None
    if dirty or not head:
        return None
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _record_path(ctx: VariantContext, digest: str) -> Path:
    return ctx.cache.dir("ready") / f"{ctx.src_key}-{digest[:24]}.json"


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def record(ctx: VariantContext, digest: str | None, build_dir: Path, image: Path) -> None:
    """After a good build: which image (in `build_dir`) these inputs made."""
    if digest is None or ctx.kernel is None or not ctx.kernel.is_file() \
            or ctx.config is None:
        return
    try:
        data = {"inputs": digest, "build_dir": str(build_dir), "image": str(image),
                "sha256": _sha256(ctx.kernel), "config_hash": ctx.config.config_hash}
        path = _record_path(ctx, digest)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)
    except OSError as exc:
        ctx.log(f"  could not record the ready kernel: {exc}")


def take(ctx: VariantContext, digest: str | None) -> Path | None:
    """OUT/<variant>/bzImage (and config) from the build folder when a build of exactly
    these inputs is recorded and its image is still the one it made; None otherwise. The
    configure and build stages are then reported as reused."""
    if digest is None:
        return None
    try:
        data = json.loads(_record_path(ctx, digest).read_text())
        image, build_dir = Path(data["image"]), Path(data["build_dir"])
        with ctx.cache.lock(f"build-{build_dir.name}", f"build folder {build_dir}", ctx.log):
            if data.get("inputs") != digest or _sha256(image) != data.get("sha256"):
                return None
            shutil.copyfile(image, ctx.out / "bzImage")
            if (build_dir / ".config").is_file():
                shutil.copyfile(build_dir / ".config", ctx.out / "config")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ctx.report.properties["config_hash"] = str(data.get("config_hash", ""))
    for name in ("configure", "build"):
        ctx.report.stages.append(Stage(name, [Case(name, PASSED, message=f"reused: {image}")],
                                       started=time.time()))
    ctx.log(f"configure + build {ctx.variant.name}: reused the kernel built from the same "
            f"inputs ({build_dir.name})")
    return ctx.out / "bzImage"


def reuse(ctx: VariantContext) -> bool:
    """pipeline shell/exec: take the recorded kernel of this variant's exact inputs, found
    without the sources lock; on success ctx.kernel is set and apply/configure/build are
    marked reused (ctx.reused), so the stage loop skips them."""
    src = ctx.tree.checkout
    if ctx.series is not None:
        applied = apply.applied_already(ctx.tree, ctx.series, ctx.cache)
        if applied is None:
            return False
        src = applied.worktree
    kernel = take(ctx, inputs(ctx, src))
    if kernel is None:
        return False
    if ctx.series is not None:
        ctx.report.stages.insert(0, Stage("apply", [Case("apply", PASSED,
                                                         message=f"reused: {src}")]))
    ctx.kernel = kernel
    ctx.reused |= {"apply", "configure", "build"}
    return True
