"""End to end (e2e marker): a real guest, root in there, tries to plant a setuid-root file, a
device node and a symlink to /etc/shadow in the writable 9p share; on the host they must all
be plain files without setuid bits (QEMU security_model=mapped-xattr). Boots an already built
kernel from the cache (it builds none); skipped when there is none yet."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from pipeline import boot
from pipeline.cache import default_cache_root

pytestmark = pytest.mark.e2e
GUEST = Path(__file__).resolve().parent / "guest-faults" / "test_share_attack.py"


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
