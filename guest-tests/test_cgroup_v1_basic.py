"""Baseline cgroup v1 behaviour the series must not break: runs on any kernel.

Each test gets its own v1 hierarchy under /sys/fs/cgroup (a tmpfs in the guest): a named one
without controllers (`-o none,name=basic`) and ones with real controllers (pids, and
cpu+cpuacct). It creates, renames and removes cgroups, moves a process in and out through
cgroup.procs (checked in /proc/PID/cgroup too), and unmounts the hierarchy again.
"""

import ctypes
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class V1:
    path: str       # mount point
    proc_key: str   # how the hierarchy shows in /proc/PID/cgroup: "name=basic", "pids", ...

    def cgroup_of(self, pid: int) -> str:
        """The cgroup of `pid` in this hierarchy, from /proc/PID/cgroup (ID:controllers:path)."""
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _id, controllers, path = line.rstrip("\n").split(":", 2)
                if self.proc_key in controllers.split(","):
                    return path
        raise AssertionError(f"no {self.proc_key} hierarchy in /proc/{pid}/cgroup")


def _mount(options: str, target: str) -> None:
    os.makedirs(target, exist_ok=True)
    if libc.mount(b"cgroup", target.encode(), b"cgroup", 0, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount -t cgroup -o {options} cgroup {target}: {os.strerror(err)}")


def _umount(target: str) -> None:
    if libc.umount2(target.encode(), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")
    os.rmdir(target)


HIERARCHIES = {  # mount options -> /proc/PID/cgroup key
    "none,name=basic": "name=basic",
    "pids": "pids",
    "cpu,cpuacct": "cpu",
}


@pytest.fixture(params=list(HIERARCHIES), ids=["named", "pids", "cpu-cpuacct"])
def hierarchy(request):
    target = f"/sys/fs/cgroup/basic-{request.param.replace(',', '-').replace('=', '-')}"
    _mount(request.param, target)
    try:
        yield V1(target, HIERARCHIES[request.param])
    finally:
        for dirpath, dirnames, _ in os.walk(target, topdown=False):
            for d in dirnames:
                os.rmdir(os.path.join(dirpath, d))
        _umount(target)


def test_mkdir_rmdir(hierarchy):
    path = os.path.join(hierarchy.path, "a")
    os.mkdir(path)
    assert "cgroup.procs" in os.listdir(path)
    os.mkdir(os.path.join(path, "b"))
    with pytest.raises(FileExistsError):
        os.mkdir(path)
    with pytest.raises(OSError):
        os.rmdir(path)  # not empty
    os.rmdir(os.path.join(path, "b"))
    os.rmdir(path)
    assert "a" not in os.listdir(hierarchy.path)


def test_move_process_in_and_out(hierarchy):
    path = os.path.join(hierarchy.path, "job")
    os.mkdir(path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(child.pid))
        with open(os.path.join(path, "cgroup.procs")) as f:
            assert str(child.pid) in f.read().split()
        assert hierarchy.cgroup_of(child.pid) == "/job"
        with pytest.raises(OSError):
            os.rmdir(path)  # populated
        with open(os.path.join(hierarchy.path, "cgroup.procs"), "w") as f:
            f.write(str(child.pid))
        with open(os.path.join(path, "cgroup.procs")) as f:
            assert f.read().split() == []
        assert hierarchy.cgroup_of(child.pid) == "/"
    finally:
        child.kill()
        child.wait(timeout=10)
    os.rmdir(path)


def test_rename_inside_parent(hierarchy):
    os.mkdir(os.path.join(hierarchy.path, "old"))
    os.rename(os.path.join(hierarchy.path, "old"), os.path.join(hierarchy.path, "new"))
    assert "new" in os.listdir(hierarchy.path) and "old" not in os.listdir(hierarchy.path)
    os.rmdir(os.path.join(hierarchy.path, "new"))
