"""Failure paths of the pool: a fill, a refill or a hand-out that fails.

Allocations are made to fail with failslab (CONFIG_FAILSLAB), filtered to kernfs's two slab
caches: the kernel is booted with `slub_debug=A,kernfs_node_cache,kernfs_iattrs_cache`
(the machine's kernel_args in pipeline/data/qemu.yaml), which marks just those caches, and cache-filter=Y
fails only marked caches. A new cgroup allocates one kernfs node per directory and file, a
hand-out to another owner one kernfs_iattrs per node, so the n-th failure lands where the
test means it to, and `times` (the failures left) going to 0 proves it happened.

Whatever fails, the result must be what a kernel without a pool gives: mkdir succeeds (on the
slow path), a fill returns the error and leaves nothing behind (pool_size 0, /proc/cgroups
back to its earlier count), a refill is retried.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from cgpool import (
    GROUP,
    USER,
    as_user,
    chown_cgroup,
    errname,
    mkdir_and_join,
    read,
    wait_until,
    write,
)

DEBUGFS = "/sys/kernel/debug"
FAILSLAB = f"{DEBUGFS}/failslab"
CACHES = ("kernfs_node_cache", "kernfs_iattrs_cache")
BOOT_ARG = "slub_debug=A," + ",".join(CACHES)


def _set(name: str, value: str) -> None:
    code = write(os.path.join(FAILSLAB, name), value)
    assert code == 0, f"echo {value} > {FAILSLAB}/{name}: {errname(code)}"


@pytest.fixture
def failslab() -> Iterator[Callable[[int, int], None]]:
    """arm(times, skip_nodes): fail the next `times` allocations from kernfs's caches after
    `skip_nodes` kernfs nodes' worth of them succeeded. Disarmed after the test."""
    if not os.path.isdir(FAILSLAB):
        if os.path.isdir(DEBUGFS) and not os.listdir(DEBUGFS):
            subprocess.run(["mount", "-t", "debugfs", "debugfs", DEBUGFS], timeout=30,
                           check=False, stdin=subprocess.DEVNULL)
        if not os.path.isdir(FAILSLAB):
            pytest.skip("no failslab (needs CONFIG_FAILSLAB and CONFIG_FAULT_INJECTION_DEBUG_FS)")
    for cache in CACHES:
        marked = f"/sys/kernel/slab/{cache}/failslab"
        if not os.path.exists(marked) or read(marked) != "1":
            pytest.skip(f"{cache} is not marked for failslab: boot with {BOOT_ARG}")
    node_size = int(read(f"/sys/kernel/slab/{CACHES[0]}/object_size"))

    def arm(times: int, skip_nodes: int = 0) -> None:
        for name, value in (("probability", "0"), ("cache-filter", "Y"),
                            ("ignore-gfp-wait", "N"), ("task-filter", "N"), ("interval", "1"),
                            ("verbose", "1"), ("space", str(skip_nodes * node_size)),
                            ("times", str(times)), ("probability", "100")):
            _set(name, value)

    try:
        yield arm
    finally:
        _set("probability", "0")
        _set("space", "0")
        _set("times", "1")


def _left() -> int:
    """Failures still to inject: `times` counts down on each one."""
    return int(read(os.path.join(FAILSLAB, "times")))


@pytest.mark.parametrize("skip", [0, 50], ids=["first-member", "later-member"])
def test_failed_fill_returns_the_error_and_leaves_nothing(ctl_pool, failslab, skip):
    h = ctl_pool
    h.mkdir("P")
    before = h.num_cgroups()
    failslab(1, skip)
    code = write(h.path("P", "pool_size"), "16")    # 32 members: ~350 kernfs nodes
    left = _left()
    failslab(0)
    assert left == 0, "no allocation was made to fail during the fill"
    assert errname(code) == "ENOMEM", f"echo 16 > P/pool_size with a failed allocation: {errname(code)}"
    assert h.pool_size("P") == "0"
    # removed cgroups leave the count when they are freed, which is asynchronous
    assert wait_until(lambda: h.num_cgroups() == before, timeout=10), \
        f"/proc/cgroups: {h.num_cgroups()} cgroups, {before} before the failed fill"
    h.set_pool("P", 16)                              # and the pool still works
    assert h.num_cgroups() == before + 32


def test_failed_refill_is_retried(ctl_pool, failslab, supply_delay):
    h = ctl_pool
    supply_delay(0)
    h.mkdir("P")
    h.set_pool("P", 1)                              # 2 members
    probe = h.probe()
    full = h.num_cgroups()                          # P, the probe, 2 members
    failslab(1)
    for name in ("a", "b"):                         # served; the second arms the refill,
        made = h.mkdir(f"P/{name}")                 # whose first kernfs node fails
        assert made.ino < probe, f"P/{name} was not served from the pool"
    assert wait_until(lambda: _left() == 0, timeout=10), "the refill made no allocation fail"
    # the retry (after at least a second) makes the pool full again: 2 new members
    assert wait_until(lambda: h.num_cgroups() == full + 2, timeout=15), \
        f"/proc/cgroups: {h.num_cgroups()} cgroups, want {full + 2} (the pool refilled)"
    assert h.served_now("P/c"), "the refilled pool did not serve"


def test_failed_hand_out_falls_back_to_the_slow_path(ctl_pool, failslab, supply_delay):
    """A hand-out to a delegated user sets the owner of every node of the member; when that
    fails, the member is removed and the mkdir made on the slow path, with the right owner."""
    h = ctl_pool
    supply_delay(600_000)                           # no refill during the test
    h.mkdir("P")
    chown_cgroup(h.path("P"), USER, GROUP)
    h.set_pool("P", 1)
    before = h.num_cgroups()
    probe = h.probe()
    failslab(1)
    code = as_user(USER, GROUP, lambda: mkdir_and_join(h.path("P", "u")))
    left = _left()
    failslab(0)
    assert code == 0, f"uid {USER}: mkdir P/u + join: {errname(code)}"
    assert left == 0, "the hand-out made no allocation fail"
    st = os.stat(h.path("P", "u"))
    assert st.st_ino > probe, "P/u was served although its hand-out failed"
    assert (st.st_uid, st.st_gid) == (USER, GROUP)
    # one cgroup made, one member removed (freed asynchronously; the probe is one more)
    assert wait_until(lambda: h.num_cgroups() == before + 1, timeout=10), \
        f"/proc/cgroups: {h.num_cgroups()} cgroups, want {before + 1}"


def test_fill_killed_by_sigkill_rolls_back(ctl_pool):
    h = ctl_pool
    h.mkdir("P")
    before = h.num_cgroups()
    pid = os.fork()
    if pid == 0:  # child: fill a large pool until killed
        with contextlib.suppress(BaseException):
            write(h.path("P", "pool_size"), "4096")
        os._exit(0)
    grown = wait_until(lambda: h.num_cgroups() > before + 10, timeout=30, step=0.01)
    os.kill(pid, signal.SIGKILL)
    _pid, status = os.waitpid(pid, 0)
    assert grown, "the fill made no member within 30 s"
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
        "the fill of 4096 finished before SIGKILL"
    time.sleep(0.2)
    assert h.pool_size("P") == "0"
    assert wait_until(lambda: h.num_cgroups() == before, timeout=10), \
        f"/proc/cgroups: {h.num_cgroups()} cgroups, {before} before the killed fill"
    os.rmdir(h.path("P"))                            # nothing hidden keeps it busy
