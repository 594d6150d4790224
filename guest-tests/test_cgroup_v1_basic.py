"""Baseline cgroup v1 behaviour the series must not break: runs on any kernel.

Each test mounts its own v1 hierarchy under /sys/fs/cgroup (a tmpfs in the guest), creates
and removes cgroups, and unmounts it again.
"""

import ctypes
import os
import subprocess
import sys

import pytest

libc = ctypes.CDLL(None, use_errno=True)


def _mount(options: str, target: str) -> None:
    os.makedirs(target, exist_ok=True)
    if libc.mount(b"cgroup", target.encode(), b"cgroup", 0, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount -t cgroup -o {options} {target}: {os.strerror(err)}")


def _umount(target: str) -> None:
    if libc.umount2(target.encode(), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")
    os.rmdir(target)


@pytest.fixture(params=["none,name=basic", "pids"])
def hierarchy(request):
    target = f"/sys/fs/cgroup/basic-{request.param.replace(',', '-').replace('=', '-')}"
    _mount(request.param, target)
    yield target
    for dirpath, dirnames, _ in os.walk(target, topdown=False):
        for d in dirnames:
            os.rmdir(os.path.join(dirpath, d))
    _umount(target)


def test_mkdir_rmdir(hierarchy):
    path = os.path.join(hierarchy, "a")
    os.mkdir(path)
    assert "cgroup.procs" in os.listdir(path)
    os.mkdir(os.path.join(path, "b"))
    with pytest.raises(FileExistsError):
        os.mkdir(path)
    with pytest.raises(OSError):
        os.rmdir(path)  # not empty
    os.rmdir(os.path.join(path, "b"))
    os.rmdir(path)
    assert "a" not in os.listdir(hierarchy)


def test_move_process_in_and_out(hierarchy):
    path = os.path.join(hierarchy, "job")
    os.mkdir(path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(child.pid))
        with open(os.path.join(path, "cgroup.procs")) as f:
            assert str(child.pid) in f.read().split()
        with open(os.path.join(hierarchy, "cgroup.procs"), "w") as f:
            f.write(str(child.pid))
        with open(os.path.join(path, "cgroup.procs")) as f:
            assert f.read().split() == []
    finally:
        child.kill()
        child.wait(timeout=10)
    os.rmdir(path)


def test_rename_inside_parent(hierarchy):
    os.mkdir(os.path.join(hierarchy, "old"))
    os.rename(os.path.join(hierarchy, "old"), os.path.join(hierarchy, "new"))
    assert "new" in os.listdir(hierarchy) and "old" not in os.listdir(hierarchy)
    os.rmdir(os.path.join(hierarchy, "new"))
