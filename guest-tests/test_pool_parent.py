"""Hidden members do not change their parent: whatever behaves differently when a cgroup
has children behaves as if only the visible children existed.

Each test does the same to a pool parent P and a control parent Q without a pool and
expects the same result.
"""

from __future__ import annotations

import os
import time

import pytest
from cgpool import errname, read, wait_until, write

AGENT_DIR = "/run"          # a tmpfs the guest can write and execute from


def test_parent_link_count_counts_visible_children(pool):
    for parent in ("P", "Q"):
        pool.mkdir(parent)
    pool.set_pool("P", 3)
    for parent in ("P", "Q"):
        pool.mkdir(f"{parent}/a")
    links = {p: os.stat(pool.path(p)).st_nlink for p in ("P", "Q")}
    assert links == {"P": 3, "Q": 3}, f"nlink of the parents (2 + visible subdirs): {links}"


def test_deny_all_on_a_parent_without_visible_children(devices_pool):
    h = devices_pool
    h.mkdir("P")
    h.mkdir("Q")
    h.set_pool("P", 1)
    got = {p: errname(write(h.path(p, "devices.deny"), "a")) for p in ("P", "Q")}
    assert got == {"P": "OK", "Q": "OK"}, f"echo a > devices.deny: {got}"
    got = {p: errname(write(h.path(p, "devices.allow"), "a")) for p in ("P", "Q")}
    assert got == {"P": "OK", "Q": "OK"}, f"echo a > devices.allow: {got}"


def test_release_agent_runs_when_the_last_visible_child_goes(named_pool):
    pool = named_pool
    log = os.path.join(AGENT_DIR, f"agent-{os.getpid()}.log")
    agent = os.path.join(AGENT_DIR, f"agent-{os.getpid()}.sh")
    with open(agent, "w") as f:
        f.write(f"#!/bin/sh\necho \"$1\" >> {log}\n")
    os.chmod(agent, 0o755)
    try:
        code = write(pool.path("release_agent"), agent)
        assert code == 0, f"release_agent: {errname(code)}"
        for parent in ("P", "Q"):
            pool.mkdir(parent)
            assert write(pool.path(parent, "notify_on_release"), "1") == 0
        pool.set_pool("P", 1)
        for parent in ("P", "Q"):
            pool.mkdir(f"{parent}/c")
            os.rmdir(pool.path(parent, "c"))

        def ran() -> list[str]:
            return read(log).split() if os.path.exists(log) else []

        assert wait_until(lambda: {"/P", "/Q"} <= set(ran()), timeout=10), \
            f"release agent calls: {ran()} (want /P and /Q)"
        pool.set_pool("P", 0)                       # removing members is no release event
        time.sleep(1.0)
        assert sorted(ran()) == ["/P", "/Q"], f"release agent calls: {ran()}"
    finally:
        write(pool.path("release_agent"), "\n")
        for path in (agent, log):
            if os.path.exists(path):
                os.unlink(path)


def _two_cpus() -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs in the guest")


def test_shrinking_cpus_is_not_blocked_by_hidden_members(cpuset_pool, supply_delay):
    """cpuset refuses to shrink a parent below a child's cpus (EBUSY): hidden members,
    cloned with the parent's cpus, are no such child."""
    h = cpuset_pool
    supply_delay(0)
    _two_cpus()
    h.cpuset_parents({"P": "0-1", "Q": "0-1"})
    h.set_pool("P", 2)                              # members cloned with cpus 0-1
    got = {p: errname(write(h.path(p, "cpuset.cpus"), "0")) for p in ("P", "Q")}
    assert got == {"P": "OK", "Q": "OK"}, f"echo 0 > cpuset.cpus with no visible child: {got}"
    assert {p: read(h.path(p, "cpuset.cpus")) for p in ("P", "Q")} == {"P": "0", "Q": "0"}


def test_cpu_exclusive_is_not_refused_for_hidden_siblings(cpuset_pool, supply_delay):
    """An only visible child can be made cpu_exclusive: the hidden members beside it, cloned
    with the same cpus, are no overlapping siblings (EINVAL)."""
    h = cpuset_pool
    supply_delay(0)
    _two_cpus()
    h.cpuset_parents({"P": "0", "Q": "1"})
    for parent in ("P", "Q"):
        code = write(h.path(parent, "cpuset.cpu_exclusive"), "1")
        assert code == 0, f"echo 1 > {parent}/cpuset.cpu_exclusive: {errname(code)}"
    h.set_pool("P", 2)
    for parent in ("P", "Q"):
        h.mkdir(f"{parent}/a")
    got = {p: errname(write(h.path(p, "a", "cpuset.cpu_exclusive"), "1")) for p in ("P", "Q")}
    assert got == {"P": "OK", "Q": "OK"}, f"echo 1 > a/cpuset.cpu_exclusive: {got}"


def test_served_and_hidden_names_do_not_collide(pool, supply_delay):
    """mkdir and rename of names like the members' never fail with EEXIST while stat says
    the name is free, also while refills are creating members."""
    supply_delay(0)
    pool.mkdir("P")
    pool.set_pool("P", 2)
    for k in range(12):                             # the members' would-be names, and more
        name = f"pool-{k}"
        assert not os.path.exists(pool.path("P", name))
        os.mkdir(pool.path("P", f"t{k}"))
        os.rename(pool.path("P", f"t{k}"), pool.path("P", name))
        assert os.path.isdir(pool.path("P", name))
    assert pool.children("P") == sorted(f"pool-{k}" for k in range(12))
    assert read(pool.path("P", "pool_size")) == "2"
