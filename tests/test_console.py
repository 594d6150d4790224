"""Splat detection on real captured console logs and on typical report shapes."""

from pathlib import Path

from pipeline import console

FIXTURES = Path(__file__).parent / "fixtures" / "console"


def _lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def test_clean_boot_has_no_splat():
    assert console.find_splats(_lines("b61-clean-boot-basic-tests.log")) == []


def test_real_panic_is_found_with_its_trace():
    splats = console.find_splats(_lines("p61-panic-no-init.log"))
    assert [s.kind for s in splats] == ["panic"]
    assert splats[0].title.startswith("Kernel panic - not syncing: Requested init")
    assert any("Call Trace" in line for line in splats[0].lines)
    assert any(console.is_panic(line) for line in _lines("p61-panic-no-init.log"))


LOCKDEP = """\
[   12.000001] ============================================
[   12.000002] WARNING: possible recursive locking detected
[   12.000003] 6.1.192+ #1 Not tainted
[   12.000004] --------------------------------------------
[   12.000005] mkdir/77 is trying to acquire lock:
[   12.000006] ffff8880 (&pool->lock){+.+.}-{2:2}, at: cgroup_pool_serve+0x41/0x1a0
[   12.000007]
[   12.000008] other info that might help us debug this:
[   12.000009]  Possible unsafe locking scenario:
[   12.000010] ---[ end trace 0000000000000000 ]---
[   12.100000] random unrelated line
"""


def test_lockdep_report_is_its_own_kind_and_ends_at_end_marker():
    splats = console.find_splats(LOCKDEP.splitlines())
    assert len(splats) == 1
    assert splats[0].kind == "lockdep"
    assert "random unrelated line" not in splats[0].text
    assert "cgroup_pool_serve" in splats[0].text


def test_each_kind_is_recognised():
    samples = {
        "atomic-sleep": "BUG: sleeping function called from invalid context at kernel/x.c:1",
        "bug": "BUG: kernel NULL pointer dereference, address: 0000000000000000",
        "oops": "Oops: 0000 [#1] PREEMPT SMP",
        "warning": "WARNING: CPU: 1 PID: 3 at fs/kernfs/dir.c:41 kernfs_active+0x1/0x2",
        "lockdep": "WARNING: inconsistent lock state",
        "hung-task": "INFO: task kworker/0:1:12 blocked for more than 120 seconds.",
        "list-corruption": "list_add corruption. prev->next should be next",
        "debugobjects": "ODEBUG: free active (active state 0) object type: timer_list",
        "gpf": "general protection fault, probably for non-canonical address",
    }
    for kind, line in samples.items():
        assert console.splat_kind(f"[    1.000000] {line}\r") == kind, line


def test_ordinary_lines_are_not_splats():
    for line in ("rcu: \tRCU lockdep checking is enabled.", "Run /init as init process",
                 "@@PIPELINE:{\"event\": \"start\", \"nodeid\": \"t.py::test_bug\"}"):
        assert console.splat_kind(line) is None
