"""Runs in the guest (e2e): what of the host the guest can read through its 9p root. Passes
only when the job narrowed the root (qemu.root) to a folder without the host's /etc."""

import os


def test_the_hosts_etc_is_not_visible():
    assert os.path.isdir("/usr/bin"), "the narrowed root still has the interpreter's /usr"
    visible = [p for p in ("/etc/shadow", "/etc/hostname") if os.path.exists(p)]
    assert not visible, f"the guest reads host files: {visible}"
