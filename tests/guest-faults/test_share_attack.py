"""Guest side of test_e2e_share.py, run inside the guest (as root): try to plant a setuid-root
file, a device node and a symlink to a host file in the writable share. What the host then
finds there is checked by the host test; here each attempt only has to run."""
import os
import stat

OUT = "/run/pipeline-out"


def test_setuid_file():
    path = os.path.join(OUT, "suid")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nid\n")
    os.chown(path, 0, 0)
    os.chmod(path, 0o4755)
    assert os.stat(path).st_mode & stat.S_ISUID


def test_device_node():
    path = os.path.join(OUT, "mem")
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 1))   # /dev/mem
    except OSError:
        return   # refused: fine too


def test_symlink_to_host_file():
    path = os.path.join(OUT, "shadow-link")
    os.symlink("/etc/shadow", path)
    assert os.path.islink(path)
