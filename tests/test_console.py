"""Splat detection on real captured console logs and on typical report shapes."""

import re
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


def test_real_oom_panic_during_a_test():
    lines = _lines("b61-panic-oom-in-test.log")
    splats = console.find_splats(lines)
    assert [s.kind for s in splats] == ["panic"]
    panic = splats[0]
    assert panic.title == ("Kernel panic - not syncing: Out of memory: compulsory panic_on_oom "
                           "is enabled")
    assert panic.lines[-1] == "Kernel Offset: disabled"
    assert "mem_cgroup_out_of_memory" in panic.text
    # the OOM report before it ("invoked oom-killer", memory stats) is not a splat
    assert not any("oom-killer" in line for line in panic.lines)


def test_real_console_warn_report_ends_at_its_end_marker():
    splats = console.find_splats(_lines("b61-kmsg-warn-in-test.log"))
    assert [s.kind for s in splats] == ["warning"]
    assert splats[0].lines[-1] == "---[ end trace 0000000000000000 ]---"
    assert len(splats[0].lines) == 15


def test_real_hang_and_clean_consoles_have_no_splat():
    for name in ("b61-hang-test-timeout.log", "b61-clean-boot-basic-tests.log"):
        assert console.find_splats(_lines(name)) == [], name


HUNG_TASK = """\
[  130.100000] INFO: task mkdir:88 blocked for more than 120 seconds.
[  130.100001]       Not tainted 6.1.192+ #1
[  130.100002] "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
[  130.100003] task:mkdir           state:D stack:0     pid:88    ppid:1      flags:0x00004000
[  130.100004] Call Trace:
[  130.100005]  <TASK>
[  130.100006]  __schedule+0x2c5/0x8a0
[  130.100007]  schedule+0x5d/0xe0
[  130.100008]  </TASK>
[  130.100009] 9pnet: a line that has nothing to do with it
[  130.100010] more unrelated text
"""


def test_report_without_end_marker_ends_after_its_backtrace():
    (splat,) = console.find_splats(HUNG_TASK.splitlines())
    assert splat.kind == "hung-task"
    assert splat.lines[-1] == " </TASK>"
    assert "9pnet" not in splat.text


def test_markers_inside_a_splat_are_skipped_with_ignore():
    lines = ["WARNING: CPU: 0 PID: 1 at a.c:1 f+0x1/0x2", '@@PIPELINE:{"event": "x"}',
             "---[ end trace 0 ]---"]
    (splat,) = console.find_splats(lines, re.compile("@@PIPELINE:"))
    assert splat.lines == [lines[0], lines[2]]


def test_more_kinds():
    samples = {
        "bug": "kernel BUG at mm/slub.c:123!",
        "soft-lockup": "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [mkdir:77]",
        "rcu-stall": "rcu: INFO: rcu_sched self-detected stall on CPU",
        "atomic-sleep": "BUG: scheduling while atomic: mkdir/77/0x00000002",
        "lockdep": "WARNING: possible circular locking dependency detected",
        "ubsan": "UBSAN: shift-out-of-bounds in kernel/cgroup/cgroup.c:10:5",
        "kasan": "BUG: KASAN: use-after-free in cgroup_mkdir+0x1/0x2",
        "panic": "Kernel panic - not syncing: Fatal exception",
    }
    for kind, line in samples.items():
        assert console.splat_kind(f"[    1.000000] {line}") == kind, line
    assert console.clean("[    1.000000][    T1] BUG: x") == "BUG: x"
