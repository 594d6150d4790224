"""Guest fault: a WARNING-shaped report on the console while a test passes.

A real WARN cannot be triggered from user space on a correct baseline kernel without
debugfs/sysrq/lkdtm, so this writes one into /dev/kmsg: the kernel prints it on the console
like any printk, and the host must fail this test with it (a splat during a test fails the
test even if pytest passed it). The text is a real x86-64 6.1 WARN layout.
"""
import os

import pytest

# Fault modules must never run on the host (they hang, OOM, or write to the kernel log):
# the guest init sets PIPELINE_RESULTS, the host never does.
pytestmark = pytest.mark.skipif("PIPELINE_RESULTS" not in os.environ,
                                reason="guest fault module: runs only inside the test guest")


REPORT = """\
------------[ cut here ]------------
WARNING: CPU: 0 PID: 123 at kernel/cgroup/cgroup.c:1234 cgroup_mkdir+0x3c/0x460
Modules linked in:
CPU: 0 PID: 123 Comm: python Not tainted 6.1.192+ #1
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
RIP: 0010:cgroup_mkdir+0x3c/0x460
Call Trace:
 <TASK>
 kernfs_iop_mkdir+0x51/0x80
 vfs_mkdir+0x8d/0x120
 do_mkdirat+0x10c/0x140
 __x64_sys_mkdir+0x41/0x60
 do_syscall_64+0x3b/0x90
 entry_SYSCALL_64_after_hwframe+0x63/0xcd
 </TASK>
---[ end trace 0000000000000000 ]---"""


def test_passes_but_warns():
    # One write is one printk record (printed line by line), so /dev/kmsg's rate limit of
    # 10 records per burst does not cut the report short.
    with open("/dev/kmsg", "w") as kmsg:
        kmsg.write(REPORT + "\n")


def test_after_warn_is_clean():
    pass
