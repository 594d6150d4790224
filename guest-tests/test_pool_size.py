"""The pool_size file: presence, transitions, errors, hidden members, EBUSY, nesting."""

import errno
import os

import pytest
from cgpool import errname, read, wait_until, write


def test_present_everywhere_default_zero(pool):
    pool.mkdir("a")
    pool.mkdir("a/b")
    for rel in ("", "a", "a/b"):
        assert read(pool.path(rel, "pool_size")) == "0", rel


def test_enable_reads_back_and_members_are_hidden(pool):
    pool.mkdir("P")
    pool.set_pool("P", 3)
    assert read(pool.path("P", "pool_size")) == "3"
    children = [n for n in os.listdir(pool.path("P")) if os.path.isdir(pool.path("P", n))]
    assert children == [], f"pool members visible: {children}"
    for k in range(6):
        with pytest.raises(FileNotFoundError):
            os.stat(pool.path("P", f"pool-{k}"))


def test_members_count_in_proc_cgroups(pids_pool):
    # removed cgroups leave the count only when they are freed, which is asynchronous:
    # wait for the hierarchy to hold just its root and P
    pids_pool.mkdir("P")
    assert wait_until(lambda: pids_pool.num_cgroups() == 2, timeout=20), \
        pids_pool.num_cgroups()
    pids_pool.set_pool("P", 4)
    assert pids_pool.num_cgroups() == 2 + 8     # members are made before the write returns
    pids_pool.set_pool("P", 0)
    assert wait_until(lambda: pids_pool.num_cgroups() == 2, timeout=20), \
        pids_pool.num_cgroups()


def test_only_enable_and_disable_transitions(pool):
    pool.mkdir("P")
    p = pool.path("P", "pool_size")
    assert errname(write(p, "0")) == "EPERM", "0 -> 0"
    assert write(p, "2") == 0
    assert errname(write(p, "5")) == "EPERM", "N -> M"
    assert errname(write(p, "2")) == "EPERM", "N -> N"
    assert read(p) == "2"
    assert write(p, "0") == 0
    assert read(p) == "0"
    assert write(p, "1") == 0, "enable again after disable"
    assert read(p) == "1"


@pytest.mark.parametrize("garbage", ["abc", "-1", "\n", "1.5", "4097", "0x", "2 3"])
def test_garbage_is_einval(pool, garbage):
    pool.mkdir("P")
    assert errname(write(pool.path("P", "pool_size"), garbage)) == "EINVAL"
    assert read(pool.path("P", "pool_size")) == "0"


def test_rmdir_busy_until_disabled(pool):
    pool.mkdir("P")
    pool.set_pool("P", 2)
    with pytest.raises(OSError) as exc:
        os.rmdir(pool.path("P"))
    assert exc.value.errno == errno.EBUSY
    pool.set_pool("P", 0)
    os.rmdir(pool.path("P"))
    assert not os.path.exists(pool.path("P"))


def test_removed_cgroup_gives_enodev(pool):
    pool.mkdir("P")
    fd = os.open(pool.path("P", "pool_size"), os.O_WRONLY)
    try:
        os.rmdir(pool.path("P"))
        with pytest.raises(OSError) as exc:
            os.write(fd, b"2")
        assert exc.value.errno == errno.ENODEV
    finally:
        os.close(fd)


def test_user_cgroup_named_like_a_member(pool):
    pool.mkdir("P")
    mine = pool.mkdir("P/pool-1")
    ino = os.stat(mine).st_ino
    pool.set_pool("P", 2)
    assert read(pool.path("P", "pool_size")) == "2"
    assert os.stat(mine).st_ino == ino, "the user's pool-1 was replaced"
    assert [n for n in os.listdir(pool.path("P")) if os.path.isdir(pool.path("P", n))] \
        == ["pool-1"]
    probe = pool.probe()
    for name in ("a", "b", "c", "d"):  # all four members were made despite the clash
        assert os.stat(pool.mkdir(f"P/{name}")).st_ino < probe, name


def test_nested_pools(pool):
    pool.mkdir("P")
    pool.set_pool("P", 2)
    pool.mkdir("P/c")
    pool.set_pool("P/c", 1)
    probe = pool.probe()
    assert os.stat(pool.mkdir("P/c/x")).st_ino < probe
    assert os.stat(pool.mkdir("P/y")).st_ino < probe
    with pytest.raises(OSError):
        os.rmdir(pool.path("P/c"))
    pool.set_pool("P/c", 0)
    pool.set_pool("P", 0)
