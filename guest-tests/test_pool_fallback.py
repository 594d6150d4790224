"""The slow path: an empty or disabled pool falls back to a normal mkdir, and the pool is
refilled kernel.cgroup_supply_delay_time ms after it dropped below its size."""

import os
import stat
import time

from cgpool import wait_until

DELAY_MS = 3000


def _fast(pool, rel: str, probe: int, mode: int = 0o700) -> bool:
    st = os.stat(pool.mkdir(rel, mode))
    fast = st.st_ino < probe
    # the mode tells the same story: a slow-path mkdir honours it
    assert (stat.S_IMODE(st.st_mode) == 0o755) if fast else (stat.S_IMODE(st.st_mode) == mode)
    return fast


def test_beyond_the_pool_then_refilled_after_the_delay(pool, supply_delay):
    supply_delay(DELAY_MS)
    pool.mkdir("P")
    pool.set_pool("P", 2)                      # four members
    probe = pool.probe()
    started = time.monotonic()
    served = [_fast(pool, f"P/c{i}", probe) for i in range(6)]
    assert served == [True] * 4 + [False] * 2, served
    # the refill waits for the delay: still slow right after
    if time.monotonic() - started < DELAY_MS / 1000 / 2:
        assert not _fast(pool, "P/early", pool.probe())
    # after the delay the pool is refilled: a mkdir is fast-path again
    time.sleep(DELAY_MS / 1000)
    attempt = iter(range(100))

    def refilled() -> bool:
        probe2 = pool.probe()
        return _fast(pool, f"P/late{next(attempt)}", probe2)

    assert wait_until(refilled, timeout=30, step=0.5), "the pool was not refilled"


def test_disabled_pool_every_mkdir_is_slow(pool):
    pool.mkdir("P")
    pool.set_pool("P", 2)
    pool.set_pool("P", 0)
    probe = pool.probe()
    assert not any(_fast(pool, f"P/x{i}", probe) for i in range(3))


def test_no_pool_on_the_parent_is_slow(pool):
    pool.mkdir("P")
    pool.mkdir("Q")
    pool.set_pool("P", 2)
    probe = pool.probe()
    assert not _fast(pool, "Q/x", probe)
