"""Fixtures of the cgroup pool guest tests: fresh v1 hierarchies, the supply-delay sysctl.

Every pool test runs on a named hierarchy (no controller) and on hierarchies with real
controllers, each mounted for that test alone and torn down fully afterwards (see
cgpool.Hierarchy). On a kernel without the pool series the pool fixtures skip.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator

import pytest
from cgpool import NO_POOL, SUPPLY_DELAY, Hierarchy, errname, read, write

# a named hierarchy, and real controllers (they have a /proc/cgroups line). Not memory:
# a removed memcg stays alive while pages are charged to it, so its hierarchy outlives
# umount on any kernel, and teardown could not tell that from a leaked pool member.
KINDS = ["named", "pids", "cpu,cpuacct"]
CONTROLLERS = [k for k in KINDS if k != "named"]

_tags = itertools.count()


@contextlib.contextmanager
def _mounted(kind: str) -> Iterator[Hierarchy]:
    h = Hierarchy.mount(kind, f"{os.getpid()}-{next(_tags)}")
    try:
        yield h
    finally:
        h.teardown()


def _with_pool(kind: str) -> Iterator[Hierarchy]:
    with _mounted(kind) as h:
        if not h.has_pool:
            pytest.skip(NO_POOL)
        yield h


@pytest.fixture(params=KINDS)
def pool(request) -> Iterator[Hierarchy]:
    """A fresh v1 hierarchy of each kind; skips on a kernel without the pool series."""
    yield from _with_pool(request.param)


@pytest.fixture(params=CONTROLLERS)
def ctl_pool(request) -> Iterator[Hierarchy]:
    """A fresh v1 hierarchy with a controller (counted in /proc/cgroups); skips on a
    kernel without the pool series."""
    yield from _with_pool(request.param)


@pytest.fixture
def named_pool() -> Iterator[Hierarchy]:
    """One fresh named hierarchy (for tests that need only one kind)."""
    yield from _with_pool("named")


@pytest.fixture
def cpuset_pool() -> Iterator[Hierarchy]:
    """A fresh v1 cpuset hierarchy (not in KINDS: its children need cpus and mems)."""
    yield from _with_pool("cpuset")


@pytest.fixture
def devices_pool() -> Iterator[Hierarchy]:
    """A fresh v1 devices hierarchy (not in KINDS: only some tests need its rules)."""
    yield from _with_pool("devices")


@pytest.fixture
def supply_delay() -> Iterator[Callable[[int], None]]:
    """Set kernel.cgroup_supply_delay_time (ms) for one test; restored afterwards."""
    if not os.path.exists(SUPPLY_DELAY):
        pytest.skip(NO_POOL + f" (no {SUPPLY_DELAY})")
    old = read(SUPPLY_DELAY)

    def set_delay(ms: int) -> None:
        code = write(SUPPLY_DELAY, str(ms))
        assert code == 0, f"echo {ms} > {SUPPLY_DELAY}: {errname(code)}"
        assert read(SUPPLY_DELAY) == str(ms)

    yield set_delay
    code = write(SUPPLY_DELAY, old)
    assert code == 0 and read(SUPPLY_DELAY) == old, f"restoring {SUPPLY_DELAY} to {old}"
