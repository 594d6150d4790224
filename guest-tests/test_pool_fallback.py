"""The slow path: an empty or disabled pool falls back to a normal mkdir, and the pool is
refilled kernel.cgroup_supply_delay_time ms after a mkdir dropped it below pool_size.

Fast and slow are told apart as in cgpool: inode against a probe made after the last fill
(both paths give the mode mkdir asked for).
"""

from __future__ import annotations

import time

from cgpool import wait_until

DELAY_MS = 1500
REFILL_TIMEOUT = 10.0   # seconds after the delay within which the refill must be seen
SETTLE = 1.0            # seconds for a refill seen starting to finish (4 cgroups)


def test_beyond_the_pool_then_refilled_after_the_delay(pool, supply_delay):
    supply_delay(DELAY_MS)
    pool.mkdir("P")
    pool.set_pool("P", 2)                           # four members
    probe = pool.probe()
    served = []
    for i in range(7):
        if i == 2:
            below = time.monotonic()                # this mkdir leaves 1 < pool_size
        served.append(pool.mkdir_fast(f"P/c{i}", probe))
    assert served == [True] * 4 + [False] * 3, \
        f"want 4 served then 3 slow-path mkdirs, got {served}"

    # not before the delay (checked only if this machine got here early enough for the
    # check to mean something)
    if time.monotonic() - below < DELAY_MS / 1000 / 2:
        early = pool.probe()
        assert not pool.mkdir_fast("P/early", early), "refilled before the delay"

    # wait for the refill: a mkdir is served again by a member made before a fresh probe
    # (one made while the refill runs counts as slow, so polling goes on until one is done)
    polls = 0

    def served_again() -> bool:
        nonlocal polls
        polls += 1
        return pool.served_now(f"P/poll{polls}")

    assert wait_until(served_again, timeout=DELAY_MS / 1000 + REFILL_TIMEOUT, step=0.1), \
        f"no refill {DELAY_MS / 1000 + REFILL_TIMEOUT:.1f} s after the pool ran low"
    after = time.monotonic() - below
    assert after >= DELAY_MS / 1000 - 0.1, f"refilled after {after:.2f} s, before the delay"

    # the refill is complete: with a probe made now, the pool serves the rest of its
    # 2 x pool_size members, then falls back again. The rest is 3 if the refill had ended
    # before the poll took a member, 4 if the refill was still running and topped it up.
    time.sleep(SETTLE)
    probe = pool.probe()
    refilled = time.monotonic()
    served = [pool.mkdir_fast(f"P/r{i}", probe) for i in range(5)]
    fast = served.count(True)
    if time.monotonic() - refilled < DELAY_MS / 1000 / 2:   # before a second refill
        assert served == [True] * fast + [False] * (5 - fast) and fast in (3, 4), \
            f"after the refill: {served}"
    else:
        assert served[:3] == [True] * 3, f"after the refill: {served}"


def test_refill_counts_in_proc_cgroups(ctl_pool, supply_delay):
    """The refill makes exactly the missing members: /proc/cgroups grows back by them."""
    h = ctl_pool
    supply_delay(DELAY_MS)
    h.mkdir("P")
    h.set_pool("P", 2)
    probe = h.probe()
    full = h.num_cgroups()                          # root, P, probe, 4 members
    assert full == 7
    assert all(h.mkdir_fast(f"P/c{i}", probe) for i in range(3))
    assert h.num_cgroups() == full                  # 3 served, 1 left: refill pending
    assert wait_until(lambda: h.num_cgroups() == full + 3, timeout=DELAY_MS / 1000 + REFILL_TIMEOUT), \
        f"{h.num_cgroups()} cgroups, want {full + 3} after the refill"
    time.sleep(SETTLE)
    assert h.num_cgroups() == full + 3, "the refill made more than 2 x pool_size members"


def test_disabled_pool_every_mkdir_is_slow(pool):
    pool.mkdir("P")
    pool.set_pool("P", 2)
    pool.set_pool("P", 0)
    probe = pool.probe()
    served = [pool.mkdir_fast(f"P/x{i}", probe) for i in range(5)]
    assert served == [False] * 5, f"a disabled pool served: {served}"


def test_no_pool_on_the_parent_is_slow(pool):
    pool.mkdir("P")
    pool.mkdir("Q")
    pool.set_pool("P", 2)
    probe = pool.probe()
    assert not pool.mkdir_fast("Q/x", probe), "Q has no pool but its mkdir was served"
    assert pool.mkdir_fast("P/x", probe)
    assert not pool.mkdir_fast("P/x/y", probe), "a served child has no pool of its own"
