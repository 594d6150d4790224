"""Fixtures of the guest tests: fresh cgroup v1 hierarchies, the pool sysctl."""

import itertools

import pytest
from cgpool import NO_POOL, SUPPLY_DELAY, Hierarchy, read, write

_counter = itertools.count()


def _hierarchy(options: str):
    h = Hierarchy.mount(options, f"{next(_counter)}")
    try:
        yield h
    finally:
        h.teardown()


@pytest.fixture(params=["none,name=pooltest", "pids"], ids=["named", "pids"])
def hierarchy(request):
    """A fresh v1 hierarchy: a named one without controllers, and one with pids."""
    yield from _hierarchy(request.param)


@pytest.fixture
def pids_hierarchy():
    """A fresh v1 hierarchy with the pids controller (it shows in /proc/cgroups)."""
    yield from _hierarchy("pids")


@pytest.fixture
def pool(hierarchy):
    """`hierarchy`, skipped when the kernel has no cgroup pool."""
    if not hierarchy.has_pool:
        pytest.skip(NO_POOL)
    return hierarchy


@pytest.fixture
def pids_pool(pids_hierarchy):
    if not pids_hierarchy.has_pool:
        pytest.skip(NO_POOL)
    return pids_hierarchy


@pytest.fixture
def supply_delay():
    """Set kernel.cgroup_supply_delay_time (ms) for one test, restored afterwards."""
    old = read(SUPPLY_DELAY)

    def set_delay(ms: int) -> None:
        assert write(SUPPLY_DELAY, str(ms)) == 0

    yield set_delay
    write(SUPPLY_DELAY, old)
