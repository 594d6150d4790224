"""Guest fault: a real kernel panic in the middle of a test (for the host's boot tests).

vm.panic_on_oom=2 turns any OOM, even one confined to a memory cgroup, into
"Kernel panic - not syncing: Out of memory: compulsory panic_on_oom is enabled". A small
v1 memory cgroup makes the OOM cheap. Needs CONFIG_MEMCG (the cgroup-v1 fragment has it).
"""

import ctypes
import os

import pytest

# Fault modules must never run on the host (they hang, OOM, or write to the kernel log):
# the guest init sets PIPELINE_RESULTS, the host never does.
pytestmark = pytest.mark.skipif("PIPELINE_RESULTS" not in os.environ,
                                reason="guest fault module: runs only inside the test guest")


libc = ctypes.CDLL(None, use_errno=True)
ROOT = "/sys/fs/cgroup/fault-memory"


def test_before_panic():
    pass


def test_oom_panics_the_kernel():
    os.makedirs(ROOT, exist_ok=True)
    assert libc.mount(b"cgroup", ROOT.encode(), b"cgroup", 0, b"memory") == 0, os.strerror(
        ctypes.get_errno())
    group = os.path.join(ROOT, "small")
    os.mkdir(group)
    with open(os.path.join(group, "memory.limit_in_bytes"), "w") as f:
        f.write(str(16 << 20))
    with open("/proc/sys/vm/panic_on_oom", "w") as f:
        f.write("2")
    with open(os.path.join(group, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    hog = []
    while True:  # the panic ends it
        hog.append(bytearray(1 << 20))


def test_after_panic():
    pass
