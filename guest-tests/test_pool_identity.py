"""A served cgroup is a normal cgroup: who may enable a pool, and the owner, mode and
inherited settings of what a mkdir gets from it.

Every test compares a pool parent P with a control parent Q that has no pool, after the
same writes: whatever a slow-path mkdir in Q gives, a mkdir in P must give too, whether the
pool served it (told by the inode, see cgpool) or not. Ownership is checked for members of
the first fill and for members made by a refill (the kernel's worker).
"""

from __future__ import annotations

import os
import stat

import pytest
from cgpool import (
    GROUP,
    USER,
    Hierarchy,
    as_user,
    chown_cgroup,
    errname,
    mkdir_and_join,
    read,
    wait_until,
    write,
)

OWNED = ("", "cgroup.procs", "tasks", "notify_on_release")   # the directory and some files


def test_pool_size_needs_cap_sys_admin(pool):
    pool.mkdir("P")
    chown_cgroup(pool.path("P"), USER, GROUP)       # a delegated cgroup: its owner ...
    size = pool.path("P", "pool_size")
    assert os.stat(size).st_uid == USER
    code = as_user(USER, GROUP, lambda: write(size, "2"))
    assert errname(code) == "EPERM", f"the delegated owner enabled a pool: {errname(code)}"
    assert pool.pool_size("P") == "0"
    pool.set_pool("P", 2)                           # ... root may
    code = as_user(USER, GROUP, lambda: write(size, "0"))
    assert errname(code) == "EPERM", f"the delegated owner disabled a pool: {errname(code)}"
    assert pool.pool_size("P") == "2"


def _owners(path: str) -> dict[str, tuple[int, int]]:
    return {name or ".": (st.st_uid, st.st_gid)
            for name in OWNED for st in [os.stat(os.path.join(path, name))]}


def _delegated_pair(pool: Hierarchy) -> None:
    for parent in ("P", "Q"):
        pool.mkdir(parent)
        chown_cgroup(pool.path(parent), USER, GROUP)


def test_delegated_mkdir_gets_the_callers_owner(pool, supply_delay):
    supply_delay(0)
    _delegated_pair(pool)
    pool.set_pool("P", 1)                           # two members, made by root
    probe = pool.probe()
    for rnd in range(4):                            # 2 from the fill, then from refills
        if rnd >= 2:
            _served_after_refill(pool, "P", f"poll{rnd}")   # the refill has made members
            probe = pool.probe()
        got = {}
        for parent in ("P", "Q"):
            path = pool.path(parent, f"u{rnd}")
            code = as_user(USER, GROUP, lambda path=path: mkdir_and_join(path))
            assert code == 0, f"uid {USER}: mkdir {parent}/u{rnd} + join: {errname(code)}"
            got[parent] = _owners(path)
        served = os.stat(pool.path("P", f"u{rnd}")).st_ino < probe
        assert served or rnd > 0, "the first mkdir in P was not served from the pool"
        assert got["P"] == got["Q"] == {k: (USER, GROUP) for k in got["Q"]}, \
            f"round {rnd} ({'served' if served else 'slow path'}): P {got['P']} Q {got['Q']}"


@pytest.mark.parametrize("umask,asked,want", [(0o022, 0o777, 0o755), (0o022, 0o700, 0o700),
                                              (0o077, 0o777, 0o700), (0o002, 0o775, 0o775)])
def test_mode_is_what_mkdir_asked_for(pool, umask, asked, want):
    pool.mkdir("P")
    pool.mkdir("Q")
    pool.set_pool("P", 1)
    probe = pool.probe()

    def make(parent: str) -> int:
        os.mkdir(pool.path(parent, "x"), asked)
        return 0

    for parent in ("P", "Q"):
        assert as_user(0, 0, lambda parent=parent: make(parent), umask=umask) == 0
    modes = {p: stat.S_IMODE(os.stat(pool.path(p, "x")).st_mode) for p in ("P", "Q")}
    assert os.stat(pool.path("P", "x")).st_ino < probe, "P/x was not served from the pool"
    assert modes == {"P": want, "Q": want}, f"umask {umask:o}, mkdir {asked:o}: {modes}"


def _served_after_refill(h: Hierarchy, parent: str, name: str) -> str:
    """mkdir `parent`/`name`-<k> until the pool serves one (its stale members replaced by
    the refill); returns the served path."""
    got: list[str] = []

    def attempt() -> bool:
        rel = f"{parent}/{name}-{len(got)}"
        got.append(rel)
        return h.served_now(rel)

    assert wait_until(attempt, timeout=30, step=0.2), \
        f"{parent}'s pool did not serve again within 30 s after its settings changed"
    return h.path(got[-1])


def _new_children_read(h: Hierarchy, name: str) -> dict[str, str]:
    """`name` as read in a child made now in P and in Q, and in one P's pool serves once the
    refill has replaced its stale members."""
    got = {}
    for parent in ("P", "Q"):
        h.mkdir(f"{parent}/now")
        got[parent] = read(h.path(parent, "now", name))
    got["P served"] = read(os.path.join(_served_after_refill(h, "P", "s"), name))
    return got


@pytest.mark.parametrize("flag", ["notify_on_release", "cgroup.clone_children"])
def test_inherited_flags_are_the_parents_at_mkdir_time(pool, supply_delay, flag):
    supply_delay(0)
    pool.mkdir("P")
    pool.mkdir("Q")
    pool.set_pool("P", 2)                           # members made with the flag at 0
    for rnd, value in enumerate(("1", "0", "1")):
        now = {}
        for parent in ("P", "Q"):
            code = write(pool.path(parent, flag), value)
            assert code == 0, f"echo {value} > {parent}/{flag}: {errname(code)}"
        for parent in ("P", "Q"):
            pool.mkdir(f"{parent}/now{rnd}")
            now[parent] = read(pool.path(parent, f"now{rnd}", flag))
        assert now == {"P": value, "Q": value}, f"mkdir right after {flag}={value}: {now}"
        served = _served_after_refill(pool, "P", f"s{rnd}")
        assert read(os.path.join(served, flag)) == value, \
            f"a served cgroup has {flag}={read(os.path.join(served, flag))}, parent has {value}"


def test_cpuset_clone_children_copies_the_parents_cpus_at_mkdir_time(cpuset_pool, supply_delay):
    h = cpuset_pool
    supply_delay(0)
    if os.cpu_count() is None or os.cpu_count() < 2:
        pytest.skip("needs 2 CPUs in the guest")
    h.cpuset_parents({"P": "0", "Q": "0"})
    h.set_pool("P", 2)                              # members cloned with cpus 0
    for parent in ("P", "Q"):                       # growing is allowed with children
        code = write(h.path(parent, "cpuset.cpus"), "0-1")
        assert code == 0, f"echo 0-1 > {parent}/cpuset.cpus: {errname(code)}"
    got = _new_children_read(h, "cpuset.cpus")
    assert set(got.values()) == {"0-1"}, f"cpuset.cpus of new children: {got}"


def test_cpuset_clone_children_stops_while_a_sibling_is_exclusive(cpuset_pool, supply_delay):
    """cpuset copies the parent's cpus into a new child only while no visible sibling is
    cpu_exclusive (then the child gets none): a sibling's cpu_exclusive write makes the
    members cloned before it stale, both ways. (v1 lets a child be exclusive only under an
    exclusive parent, and exclusive siblings must not overlap: P has cpu 0, Q cpu 1.)"""
    h = cpuset_pool
    supply_delay(0)
    if os.cpu_count() is None or os.cpu_count() < 2:
        pytest.skip("needs 2 CPUs in the guest")
    cpus = {"P": "0", "Q": "1"}
    h.cpuset_parents(cpus)
    for parent in cpus:
        code = write(h.path(parent, "cpuset.cpu_exclusive"), "1")
        assert code == 0, f"echo 1 > {parent}/cpuset.cpu_exclusive: {errname(code)}"
    h.set_pool("P", 2)                              # members cloned with P's cpus
    for parent in cpus:
        h.mkdir(f"{parent}/x")                      # cloned: the parent's cpus, mems 0
    for rnd, flag in enumerate(("1", "0")):
        for parent in cpus:
            code = write(h.path(parent, "x", "cpuset.cpu_exclusive"), flag)
            assert code == 0, f"echo {flag} > {parent}/x/cpuset.cpu_exclusive: {errname(code)}"
        got, want = {}, {}
        for parent, mask in cpus.items():
            h.mkdir(f"{parent}/now{rnd}")
            got[parent] = read(h.path(parent, f"now{rnd}", "cpuset.cpus"))
            want[parent] = "" if flag == "1" else mask
        got["P served"] = read(os.path.join(_served_after_refill(h, "P", f"s{rnd}"),
                                            "cpuset.cpus"))
        want["P served"] = want["P"]
        assert got == want, f"cpuset.cpus of new children with x/cpu_exclusive={flag}: {got}"


def test_devices_rules_are_the_parents_at_mkdir_time(devices_pool, supply_delay):
    h = devices_pool
    supply_delay(0)
    h.mkdir("P")
    h.mkdir("Q")
    h.set_pool("P", 2)                              # members allow everything
    for parent in ("P", "Q"):
        for name, value in (("devices.deny", "a"), ("devices.allow", "c 1:3 rwm")):
            code = write(h.path(parent, name), value)
            assert code == 0, f"echo {value} > {parent}/{name}: {errname(code)}"
    got = _new_children_read(h, "devices.list")
    assert set(got.values()) == {"c 1:3 rwm"}, f"devices.list of new children: {got}"
