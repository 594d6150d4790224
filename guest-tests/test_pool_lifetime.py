"""Lifetime of a pool and of its refill work: the work never outlives its cgroup, root or
not, on every path that frees one (rmdir, umount of an emptied hierarchy, disable).

The first test is the reproducer of the use-after-free found in review: a drained pool on a
hierarchy's root arms its refill, the hierarchy is unmounted with no visible child, and the
refill must not run on a freed root. A correct kernel keeps a hierarchy whose root has a
pool alive (like one with children): it is still there after the umount, a mount with the
same options gets it back with its pool, and disabling the pool lets it go.
A kernel with the bug Oopses in cgroup_pool_supply_workfn a few seconds later, which the
host reports as this test's failure.
"""

from __future__ import annotations

import itertools
import os
import time

import pytest
from cgpool import (
    CGROUP_ROOT,
    NO_POOL,
    errname,
    hierarchy_alive,
    mount_v1,
    read,
    release_named,
    umount,
    write,
)

_tags = itertools.count()
LOOPS = 200


def _named() -> tuple[str, str, str]:
    """(mount options, /proc/self/cgroup key, mount point) of a new named hierarchy."""
    name = f"life-{os.getpid()}-{next(_tags)}"
    return f"none,name={name}", f"name={name}", os.path.join(CGROUP_ROOT, name)


def _need_pool(root: str) -> None:
    if not os.path.exists(os.path.join(root, "pool_size")):
        umount(root)
        os.rmdir(root)
        pytest.skip(NO_POOL)


def _set(path: str, value: str) -> None:
    code = write(path, value)
    assert code == 0, f"echo {value} > {path}: {errname(code)}"


def _drain_and_empty(root: str, names: str = "abc") -> None:
    for n in names:
        os.mkdir(os.path.join(root, n))
    for n in reversed(names):
        os.rmdir(os.path.join(root, n))


@pytest.mark.parametrize("delay_ms", [3000, 0])
def test_drained_root_pool_then_umount(supply_delay, delay_ms):
    supply_delay(delay_ms)
    options, key, root = _named()
    mount_v1(options, root)
    _need_pool(root)
    _set(os.path.join(root, "pool_size"), "1")
    _drain_and_empty(root)                        # the refill is armed (or running)
    time.sleep(1.0)                               # the removed children are released
    umount(root)
    time.sleep(delay_ms / 1000 + 2.5)             # past the refill
    assert hierarchy_alive(key), "a hierarchy whose root has a pool was freed by umount"
    mount_v1(options, root)
    assert read(os.path.join(root, "pool_size")) == "1", "the remount lost the root's pool"
    assert [n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n))] == []
    release_named(options, key, root)


@pytest.mark.parametrize("delay_ms", [0, 20])
def test_root_pool_mount_cycles(supply_delay, delay_ms):
    """Mount, drain, umount in a tight loop; every third round disables the pool first, so
    the hierarchy is really freed while a refill may be pending or running."""
    supply_delay(delay_ms)
    options, key, root = _named()
    mount_v1(options, root)
    _need_pool(root)
    umount(root)
    for i in range(LOOPS):
        mount_v1(options, root)
        size = os.path.join(root, "pool_size")
        if read(size) == "0":
            _set(size, "1")
        _drain_and_empty(root)
        if i % 3 == 0:
            _set(size, "0")
        umount(root)
    release_named(options, key, root)


@pytest.mark.parametrize("delay_ms", [3000, 0])
def test_disable_with_refill_pending_then_rmdir(pool, supply_delay, delay_ms):
    supply_delay(delay_ms)
    for i in range(LOOPS if delay_ms == 0 else 3):
        pool.mkdir("P")
        pool.set_pool("P", 1)
        for n in "abc":
            pool.mkdir(f"P/{n}")
        for n in "abc":
            os.rmdir(pool.path("P", n))
        pool.set_pool("P", 0)
        os.rmdir(pool.path("P"))
        assert not os.path.exists(pool.path("P")), f"round {i}"
    time.sleep(delay_ms / 1000 + 1.0)             # a leftover refill would run now
    assert pool.children("") == []
