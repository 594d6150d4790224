"""The pool_size file: presence, accepted transitions and values, hidden members, EBUSY,
ENODEV, a user cgroup named like a member, nested pools, and /proc/cgroups accounting."""

from __future__ import annotations

import errno
import os

import pytest
from cgpool import errname, read, wait_until, write

LONG_DELAY_MS = 600_000   # keeps the refill out of a test that counts members


def test_present_everywhere_default_zero(pool):
    pool.mkdir("a")
    pool.mkdir("a/b")
    pool.set_pool("a", 1)
    served = pool.mkdir("a/c")                      # a cgroup served from a pool has one too
    for rel in ("", "a/b", "a/c"):
        assert pool.pool_size(rel) == "0", f"{rel or '/'}/pool_size"
    assert "pool_size" in os.listdir(served.path)


def test_enable_reads_back_and_members_are_hidden(pool):
    pool.mkdir("P")
    pool.set_pool("P", 3)
    assert pool.pool_size("P") == "3"
    entries = os.listdir(pool.path("P"))
    assert pool.children("P") == [], f"pool members visible: {entries}"
    assert not [n for n in entries if n.startswith("pool-")], entries
    for k in range(6):
        member = pool.path("P", f"pool-{k}")
        with pytest.raises(FileNotFoundError):
            os.stat(member)
        with pytest.raises(FileNotFoundError):
            open(os.path.join(member, "cgroup.procs")).close()


@pytest.mark.parametrize("text", ["2\n", " 2 ", "0x2", "02"], ids=["newline", "spaces", "hex", "octal"])
def test_accepted_number_formats(pool, text):
    pool.mkdir("P")
    assert write(pool.path("P", "pool_size"), text) == 0, repr(text)
    assert pool.pool_size("P") == "2"


def test_only_enable_and_disable_transitions(pool):
    pool.mkdir("P")
    p = pool.path("P", "pool_size")
    assert errname(write(p, "0")) == "EPERM", "0 -> 0"
    assert write(p, "2") == 0, "0 -> 2"
    assert pool.pool_size("P") == "2"
    assert errname(write(p, "5")) == "EPERM", "2 -> 5"
    assert errname(write(p, "1")) == "EPERM", "2 -> 1"
    assert errname(write(p, "2")) == "EPERM", "2 -> 2"
    assert pool.pool_size("P") == "2"
    assert write(p, "0") == 0, "2 -> 0"
    assert pool.pool_size("P") == "0"
    assert errname(write(p, "0")) == "EPERM", "0 -> 0 after a disable"
    assert write(p, "1") == 0, "enable again after a disable"
    assert pool.pool_size("P") == "1"


@pytest.mark.parametrize("garbage", [
    "abc", "-1", " ", "\n", "1.5", "4097", "4294967296", "0x", "2 3", "2abc"])
def test_garbage_is_einval(pool, garbage):
    pool.mkdir("P")
    assert errname(write(pool.path("P", "pool_size"), garbage)) == "EINVAL", repr(garbage)
    assert pool.pool_size("P") == "0"
    assert pool.children("P") == []
    # and once enabled, garbage is still EINVAL (not EPERM), and changes nothing
    pool.set_pool("P", 1)
    assert errname(write(pool.path("P", "pool_size"), garbage)) == "EINVAL", repr(garbage)
    assert pool.pool_size("P") == "1"


def test_empty_write_changes_nothing(pool):
    """A zero-length write never reaches the file's handler: cgroup_file_write() returns
    0 for it, for every cgroup file. It must not enable or disable anything."""
    pool.mkdir("P")
    assert write(pool.path("P", "pool_size"), "") == 0
    assert pool.pool_size("P") == "0"
    pool.set_pool("P", 1)
    assert write(pool.path("P", "pool_size"), "") == 0
    assert pool.pool_size("P") == "1"


def test_rmdir_busy_until_disabled(pool):
    pool.mkdir("P")
    pool.set_pool("P", 2)
    assert pool.children("P") == []
    for _ in range(2):
        with pytest.raises(OSError) as exc:
            os.rmdir(pool.path("P"))
        assert exc.value.errno == errno.EBUSY, errname(exc.value.errno)
    assert pool.pool_size("P") == "2", "a failed rmdir changed the pool"
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
        assert exc.value.errno == errno.ENODEV, errname(exc.value.errno)
    finally:
        os.close(fd)


def test_user_cgroup_named_like_a_member(pool, supply_delay):
    supply_delay(LONG_DELAY_MS)                     # no refill: count the members
    pool.mkdir("P")
    mine = pool.mkdir("P/pool-1", 0o700)
    assert write(os.path.join(mine.path, "notify_on_release"), "1") == 0
    pool.set_pool("P", 2)
    assert pool.pool_size("P") == "2"
    assert pool.children("P") == ["pool-1"]
    with pytest.raises(FileExistsError):
        os.mkdir(pool.path("P/pool-1"))
    probe = pool.probe()
    served = [pool.mkdir_fast(f"P/m{i}", probe) for i in range(4)]
    assert served == [True] * 4, f"the pool does not have its four members: {served}"
    pool.set_pool("P", 0)
    st = os.stat(mine.path)
    assert (st.st_ino, st.st_mode & 0o777) == (mine.ino, 0o700), "the user's pool-1 was replaced"
    assert read(os.path.join(mine.path, "notify_on_release")) == "1"
    assert pool.children("P") == ["m0", "m1", "m2", "m3", "pool-1"]


def test_nested_pools(pool):
    pool.mkdir("P")
    pool.mkdir("P/c")                               # made before P has a pool
    pool.set_pool("P", 2)
    pool.set_pool("P/c", 1)
    s = pool.mkdir("P/s")                           # served from P's pool ...
    pool.set_pool("P/s", 1)                         # ... and given a pool of its own
    probe = pool.probe()
    assert s.ino < probe, "P/s was not served from P's pool"
    assert pool.mkdir_fast("P/c/x", probe), "P/c's pool did not serve"
    assert pool.mkdir_fast("P/s/x", probe), "P/s's pool did not serve"
    assert pool.mkdir_fast("P/y", probe), "P's pool did not serve"
    for busy in ("P", "P/c", "P/s"):
        with pytest.raises(OSError) as exc:
            os.rmdir(pool.path(busy))
        assert exc.value.errno == errno.EBUSY, busy
    pool.set_pool("P", 0)                           # the children's pools are their own
    assert (pool.pool_size("P/c"), pool.pool_size("P/s")) == ("1", "1")
    assert pool.mkdir_fast("P/c/z", probe), "disabling P's pool emptied P/c's"
    for rel in ("P/c/x", "P/c/z", "P/s/x", "P/y"):
        os.rmdir(pool.path(rel))
    with pytest.raises(OSError):
        os.rmdir(pool.path("P/c"))
    pool.set_pool("P/c", 0)
    pool.set_pool("P/s", 0)
    for rel in ("P/c", "P/s", "P"):
        os.rmdir(pool.path(rel))


def test_pool_on_the_root(pool):
    pool.mkdir("Q")                                 # probes go here: it has no pool
    pool.set_pool("", 1)
    assert pool.pool_size("") == "1"
    assert pool.children("") == ["Q"]
    probe = pool.probe("Q")
    assert pool.mkdir_fast("a", probe)
    assert pool.mkdir_fast("b", probe)


def test_members_count_in_proc_cgroups(ctl_pool, supply_delay):
    supply_delay(LONG_DELAY_MS)
    h = ctl_pool
    h.mkdir("P")
    h.mkdir("Q")
    assert h.num_cgroups() == 3                    # the root, P, Q
    h.set_pool("P", 4)
    assert h.num_cgroups() == 3 + 8, "members are made before the write returns"
    probe = h.probe("Q")
    assert h.num_cgroups() == 12
    assert h.mkdir_fast("P/a", probe)
    assert h.num_cgroups() == 12, "a fast-path mkdir made a new cgroup"
    assert not h.mkdir_fast("Q/b", probe)
    assert h.num_cgroups() == 13, "a slow-path mkdir is one more cgroup"
    h.set_pool("P", 0)
    # removed cgroups leave the count when they are freed, which is asynchronous
    assert wait_until(lambda: h.num_cgroups() == 13 - 7, timeout=10), \
        f"{h.num_cgroups()} cgroups after disabling the pool, want 6 (7 members removed)"
