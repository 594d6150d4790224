"""The fast path: mkdir under a pool parent hands out a pre-made member by renaming it.

A member's inode number (its kernfs id) is allocated when the pool is filled, so a served
directory has a smaller inode than a probe cgroup made after the fill; a slow-path mkdir
gets a larger one. A served directory also keeps its fill-time mode (0755).
"""

import os
import stat
import subprocess
import sys
import threading

import pytest
from cgpool import read


def test_mkdir_is_served_from_the_pool(pool):
    pool.mkdir("P")
    pool.set_pool("P", 2)
    probe = pool.probe()
    st = os.stat(pool.mkdir("P/a", 0o700))
    assert st.st_ino < probe, "mkdir did not take a pool member (slow path)"
    assert stat.S_IMODE(st.st_mode) == 0o755, "a served cgroup keeps its fill-time mode"


def test_served_cgroup_is_fully_usable(pool):
    pool.mkdir("P")
    pool.set_pool("P", 1)
    probe = pool.probe()
    a = pool.mkdir("P/a")
    assert os.stat(a).st_ino < probe
    files = set(os.listdir(a))
    assert {"cgroup.procs", "tasks", "notify_on_release", "pool_size"} <= files
    if pool.controller == "pids":
        assert "pids.max" in files
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with open(os.path.join(a, "cgroup.procs"), "w") as f:
            f.write(str(child.pid))
        assert read(os.path.join(a, "cgroup.procs")).split() == [str(child.pid)]
        with open(pool.path("cgroup.procs"), "w") as f:
            f.write(str(child.pid))
        assert read(os.path.join(a, "cgroup.procs")) == ""
    finally:
        child.kill()
        child.wait(timeout=30)
    os.mkdir(os.path.join(a, "nested"))
    os.rmdir(os.path.join(a, "nested"))
    os.rmdir(a)
    assert not os.path.exists(a)


def test_rename_inside_a_pool_parent(pool):
    pool.mkdir("P")
    pool.set_pool("P", 1)
    pool.mkdir("P/a")
    os.rename(pool.path("P/a"), pool.path("P/b"))
    names = {n for n in os.listdir(pool.path("P")) if os.path.isdir(pool.path("P", n))}
    assert names == {"b"}
    assert "cgroup.procs" in os.listdir(pool.path("P/b"))


def test_existing_name_is_eexist_and_loses_no_member(pool):
    pool.mkdir("P")
    pool.set_pool("P", 1)          # two members
    probe = pool.probe()
    assert os.stat(pool.mkdir("P/a")).st_ino < probe
    with pytest.raises(FileExistsError):
        os.mkdir(pool.path("P/a"))
    assert os.stat(pool.mkdir("P/b")).st_ino < probe, "the second member was lost"


def test_member_name_is_served_by_name(pool):
    pool.mkdir("P")
    pool.set_pool("P", 2)
    probe = pool.probe()
    assert os.stat(pool.mkdir("P/pool-1")).st_ino < probe
    assert os.stat(pool.mkdir("P/pool-0")).st_ino < probe


def test_concurrent_mkdir_rmdir(pool):
    pool.mkdir("P")
    pool.set_pool("P", 8)
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def worker(t: int) -> None:
        try:
            start.wait(timeout=60)
            for i in range(20):
                path = pool.path("P", f"t{t}-{i}")
                os.mkdir(path)
                if i % 2:
                    os.rmdir(path)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not errors, errors[:3]
    names = {n for n in os.listdir(pool.path("P")) if os.path.isdir(pool.path("P", n))}
    assert names == {f"t{t}-{i}" for t in range(16) for i in range(0, 20, 2)}
