"""End to end (e2e marker): a real guest, root in there, tries to plant a setuid-root file, a
device node and a symlink to /etc/shadow in the writable 9p share; on the host they must all
be plain files without setuid bits (QEMU security_model=mapped-xattr). Boots an already built
kernel from the cache (it builds none); skipped when there is none yet."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import boot
from pipeline.cache import default_cache_root

pytestmark = pytest.mark.e2e
GUEST = Path(__file__).resolve().parent / "guest-faults" / "test_share_attack.py"
ROOT_VIEW = GUEST.with_name("test_root_view.py")
PROJECT = Path(__file__).resolve().parent.parent


def _cached_kernel() -> Path | None:
    images = sorted(default_cache_root().glob("builds/*/arch/x86/boot/bzImage"))
    return images[0] if images else None


def test_guest_cannot_plant_setuid_devices_or_symlinks_on_the_host(tmp_path):
    kernel = _cached_kernel()
    if kernel is None:
        pytest.skip("no kernel built in the cache yet (run the pipeline once)")
    result = boot.run_guest(kernel, [GUEST], tmp_path / "out",
                            boot.BootSettings(accel="auto", boot_timeout=300,
                                              total_timeout=900),
                            Path(sys.executable), print)
    assert result.completed, result.failure
    share = tmp_path / "out" / "guest"
    for name in ("suid", "shadow-link"):
        st = os.lstat(share / name)
        assert stat.S_ISREG(st.st_mode), (name, oct(st.st_mode))
        assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), (name, oct(st.st_mode))
        assert "user.virtfs.mode" in os.listxattr(share / name, follow_symlinks=False)
    if os.path.lexists(share / "mem"):
        assert stat.S_ISREG(os.lstat(share / "mem").st_mode)


@contextlib.contextmanager
def _narrow_root(root: Path):
    """A guest root with only what the guest runs: /usr (and the merged-/usr links), the
    interpreter's prefix and the project, bind-mounted read-only; no /etc, no /root."""
    binds = [Path("/usr"), Path(sys.base_prefix).resolve(), PROJECT]
    for name in ("proc", "sys", "dev", "run", "tmp"):
        (root / name).mkdir(parents=True)
    for entry in Path("/").iterdir():
        if entry.is_symlink() and entry.name.startswith(("bin", "lib", "sbin")):
            (root / entry.name).symlink_to(os.readlink(entry))
    mounted: list[Path] = []
    try:
        for src in dict.fromkeys(binds):
            dst = root / src.relative_to("/")
            if any(dst.is_relative_to(m) for m in mounted):
                continue
            dst.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "--bind", str(src), str(dst)], check=True, timeout=30)
            mounted.append(dst)
            subprocess.run(["mount", "-o", "remount,bind,ro", str(dst)], check=True,
                           timeout=30)
        yield root
    finally:
        for dst in reversed(mounted):
            subprocess.run(["umount", "-l", str(dst)], check=False, timeout=30)


def test_a_narrowed_root_hides_the_hosts_files(tmp_path):
    """qemu.root: with the host's / the guest reads /etc/shadow (the guest test fails), with a
    folder holding only /usr, the interpreter and the project it does not (it passes)."""
    kernel = _cached_kernel()
    if kernel is None:
        pytest.skip("no kernel built in the cache yet (run the pipeline once)")
    if os.geteuid() != 0:
        pytest.skip("bind mounts need root")
    settings = {"accel": "auto", "boot_timeout": 300, "total_timeout": 900}
    whole = boot.run_guest(kernel, [ROOT_VIEW], tmp_path / "whole",
                           boot.BootSettings(**settings), Path(sys.executable), print)
    assert whole.completed, whole.failure
    assert [t.outcome for t in whole.tests] == ["failed"], whole.tests
    assert "/etc/shadow" in whole.tests[0].message + whole.tests[0].details
    with _narrow_root(tmp_path / "root") as root:
        narrow = boot.run_guest(kernel, [ROOT_VIEW], tmp_path / "narrow",
                                boot.BootSettings(**settings, root=str(root)),
                                Path(sys.executable), print)
    assert narrow.completed, narrow.failure
    assert [t.outcome for t in narrow.tests] == ["passed"], narrow.tests
