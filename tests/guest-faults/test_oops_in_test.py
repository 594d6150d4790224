"""Guest fault: a real kernel Oops in the middle of a test (for the host's boot tests).

On a kernel with the first ports of the cgroup-pool series (before the lifetime fix), a
drained pool on a hierarchy's root arms its refill, the umount of the emptied hierarchy
frees the root, and the refill dereferences it: "BUG: kernel NULL pointer dereference" in
the kernel's worker a few seconds later. The test then sleeps as a real test stuck behind
the dead worker would; the host must end it at the Oops, not at the test timeout.
"""

import ctypes
import os
import time

import pytest

# Fault modules must never run on the host: the guest init sets PIPELINE_RESULTS.
pytestmark = pytest.mark.skipif("PIPELINE_RESULTS" not in os.environ,
                                reason="guest fault module: runs only inside the test guest")

libc = ctypes.CDLL(None, use_errno=True)
ROOT = "/sys/fs/cgroup/fault-oops"


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def test_before_oops():
    pass


def test_root_pool_freed_under_its_refill():
    _write("/proc/sys/kernel/cgroup_supply_delay_time", "3000")
    os.makedirs(ROOT, exist_ok=True)
    assert libc.mount(b"cgroup", ROOT.encode(), b"cgroup", 0, b"none,name=oops") == 0
    _write(os.path.join(ROOT, "pool_size"), "1")
    for n in "abc":
        os.mkdir(os.path.join(ROOT, n))
    for n in "abc":
        os.rmdir(os.path.join(ROOT, n))
    time.sleep(1.0)                     # the removed children are released: the root is empty
    assert libc.umount2(ROOT.encode(), 0) == 0
    time.sleep(3600)


def test_after_oops():
    pass
