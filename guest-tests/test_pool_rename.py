"""The fast path: a mkdir under a pool parent takes a pre-made (pinned, hidden) member and
renames it to the requested name.

How the fast path is told from the slow one (cgpool): a member's inode number was allocated
at fill time, so it is smaller than that of a probe cgroup made after the fill, while a
slow-path mkdir gets a larger one. Nothing else may tell them apart: the mode is the one
mkdir asked for on both paths.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading

import pytest
from cgpool import ASKED_MODE, read, wait_until, write

LONG_DELAY_MS = 600_000   # keeps the refill out of tests that count members


def _proc_cgroup(pid: int, key: str) -> str:
    """The path of `pid` in the hierarchy whose /proc/<pid>/cgroup controller field is `key`."""
    for line in read(f"/proc/{pid}/cgroup").splitlines():
        _hid, controllers, path = line.split(":", 2)
        if controllers == key:
            return path
    raise AssertionError(f"no {key} line in /proc/{pid}/cgroup")


def test_mkdir_is_served_from_the_pool(pool):
    pool.mkdir("P")
    pool.set_pool("P", 2)
    probe = pool.probe()
    os.mkdir(pool.path("P/a"), ASKED_MODE)
    st = os.stat(pool.path("P/a"))
    assert st.st_ino < probe, f"slow path: inode {st.st_ino} > probe {probe}"
    assert stat.S_IMODE(st.st_mode) == ASKED_MODE, \
        f"mode {stat.S_IMODE(st.st_mode):o}: a served cgroup must have the mode mkdir asked for"
    assert os.stat(pool.path("P/a/cgroup.procs")).st_ino < probe, "its files are new"
    assert pool.children("P") == ["a"]


def test_served_cgroup_is_fully_usable(pool):
    pool.mkdir("P")
    pool.set_pool("P", 1)
    probe = pool.probe()
    a = pool.mkdir("P/a")
    assert a.ino < probe, "P/a was not served from the pool"
    files = set(os.listdir(a.path))
    want = {"cgroup.procs", "tasks", "notify_on_release", "cgroup.clone_children", "pool_size"}
    want |= {"pids": {"pids.max", "pids.current"}, "cpu": {"cpu.shares", "cpuacct.usage"},
             None: set()}[pool.controller]
    assert want <= files, f"missing control files: {sorted(want - files)}"
    if pool.controller == "pids":
        assert write(os.path.join(a.path, "pids.max"), "5") == 0
        assert read(os.path.join(a.path, "pids.max")) == "5"

    child = subprocess.Popen(["sleep", "60"])
    try:
        assert write(os.path.join(a.path, "cgroup.procs"), str(child.pid)) == 0
        assert read(os.path.join(a.path, "cgroup.procs")).split() == [str(child.pid)]
        assert str(child.pid) in read(os.path.join(a.path, "tasks")).split()
        assert _proc_cgroup(child.pid, pool.key) == "/P/a", "the member's old name leaked"
        assert write(pool.path("cgroup.procs"), str(child.pid)) == 0
        assert read(os.path.join(a.path, "cgroup.procs")) == ""
        assert _proc_cgroup(child.pid, pool.key) == "/"
    finally:
        child.kill()
        child.wait(timeout=30)

    nested = pool.mkdir("P/a/nested")
    assert "cgroup.procs" in os.listdir(nested.path)
    os.rmdir(nested.path)
    os.rmdir(a.path)
    assert not os.path.exists(a.path)
    assert pool.children("P") == []


def test_rename_inside_a_pool_parent(pool):
    pool.mkdir("P")
    pool.mkdir("P/old")                             # a slow-path child, made before the pool
    pool.set_pool("P", 1)
    probe = pool.probe()
    assert pool.mkdir_fast("P/a", probe)
    os.rename(pool.path("P/a"), pool.path("P/b"))   # a served child
    os.rename(pool.path("P/old"), pool.path("P/new"))
    assert pool.children("P") == ["b", "new"]
    for name in ("b", "new"):
        assert "cgroup.procs" in os.listdir(pool.path("P", name))
    assert pool.mkdir_fast("P/c", probe), "the pool stopped serving after a rename"
    os.rename(pool.path("P/c"), pool.path("P/d"))
    assert pool.children("P") == ["b", "d", "new"]


def test_existing_name_is_eexist_and_loses_no_member(pool, supply_delay):
    supply_delay(LONG_DELAY_MS)
    pool.mkdir("P")
    pool.set_pool("P", 1)                           # two members
    probe = pool.probe()
    count = pool.num_cgroups() if pool.controller else None
    assert pool.mkdir_fast("P/a", probe)
    for _ in range(3):
        with pytest.raises(FileExistsError):
            os.mkdir(pool.path("P/a"))
    assert pool.mkdir_fast("P/b", probe), "the failed mkdirs lost a member"
    if count is not None:
        assert pool.num_cgroups() == count, "a member was removed or a cgroup made"
    assert not pool.mkdir_fast("P/c", probe), "the pool had more than 2 x pool_size members"
    assert pool.children("P") == ["a", "b", "c"]


def test_member_like_names_are_ordinary_names(pool, supply_delay):
    """Hidden members have names no mkdir or rename can ask for (they contain a newline), so
    a name like pool-<k> is an ordinary name: served like any other, never EEXIST, and a
    rename onto it works."""
    supply_delay(LONG_DELAY_MS)
    pool.mkdir("P")
    pool.set_pool("P", 3)                           # six members
    probe = pool.probe()
    names = ["pool-0", "pool-4", "pool-7", "x", "y"]
    for name in names:
        assert pool.mkdir_fast(f"P/{name}", probe), f"P/{name} took the slow path"
    os.rename(pool.path("P/x"), pool.path("P/pool-5"))
    os.rename(pool.path("P/y"), pool.path("P/pool-1"))
    assert pool.mkdir_fast("P/pool-3", probe), "the sixth member was not served"
    assert not pool.mkdir_fast("P/w", probe), "the pool had more than 6 members"
    assert pool.children("P") == sorted(["pool-0", "pool-1", "pool-3", "pool-4", "pool-5",
                                         "pool-7", "w"])


def test_concurrent_mkdir_rmdir_rename(pool):
    threads, ops, size = 16, 20, 8
    pool.mkdir("P")
    pool.set_pool("P", size)
    probe = pool.probe()
    errors: list[str] = []
    inos: list[int] = []
    start = threading.Barrier(threads)

    def worker(t: int) -> None:
        try:
            start.wait(timeout=60)
            for i in range(ops):
                path = pool.path("P", f"t{t}-{i}")
                os.mkdir(path, ASKED_MODE)
                st = os.stat(path)
                assert stat.S_IMODE(st.st_mode) == ASKED_MODE, f"{path}: {st.st_mode:o}"
                inos.append(st.st_ino)
                if i % 2:
                    os.rmdir(path)
                elif i % 4 == 0:
                    os.rename(path, path + "r")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(f"thread {t}: {exc!r}")

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert not any(w.is_alive() for w in workers), "mkdir/rmdir hung"
    assert not errors, errors[:3]
    want = {f"t{t}-{i}" + ("r" if i % 4 == 0 else "")
            for t in range(threads) for i in range(0, ops, 2)}
    assert set(pool.children("P")) == want
    for name in want:
        assert os.path.exists(pool.path("P", name, "cgroup.procs")), name
    served = sum(1 for ino in inos if ino < probe)
    assert served >= 2 * size, f"only {served} of {len(inos)} mkdirs were served by the pool"
    if pool.controller:
        pool.set_pool("P", 0)
        # the root, P, the probe and the visible children
        assert wait_until(lambda: pool.num_cgroups() == 3 + len(want), timeout=10), \
            f"{pool.num_cgroups()} cgroups, want {3 + len(want)}: members leaked"


def test_mkdir_while_the_pool_is_toggled(pool):
    """Enable/disable races with mkdir, the fast path and the refill: every mkdir must
    succeed (from the pool or not), and nothing may be left behind (teardown checks that
    the hierarchy goes away)."""
    pool.mkdir("P")
    stop = threading.Event()
    errors: list[str] = []
    made: list[str] = []

    def maker(t: int) -> None:
        i = 0
        try:
            while not stop.is_set():
                name = f"t{t}-{i}"
                os.mkdir(pool.path("P", name))
                made.append(name)
                i += 1
        except OSError as exc:
            errors.append(f"maker {t}: {exc!r}")

    workers = [threading.Thread(target=maker, args=(t,)) for t in range(4)]
    for w in workers:
        w.start()
    try:
        for n in range(30):
            pool.set_pool("P", 1 + n % 3)
            pool.set_pool("P", 0)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=120)
    assert not any(w.is_alive() for w in workers), "mkdir hung"
    assert not errors, errors[:3]
    assert pool.pool_size("P") == "0"
    assert set(pool.children("P")) == set(made)
