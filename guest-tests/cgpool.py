"""Helpers for the cgroup pool guest tests (stdlib only; runs inside the test guest).

A `Hierarchy` is a freshly mounted cgroup v1 hierarchy that is torn down completely
afterwards: pools disabled, every cgroup removed, unmounted. Thorough teardown matters: a v1
hierarchy that still has children survives umount and would be reused by the next mount
with the same options.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from dataclasses import dataclass, field

libc = ctypes.CDLL(None, use_errno=True)
NO_POOL = "kernel without the cgroup pool series: no pool_size file"
SUPPLY_DELAY = "/proc/sys/kernel/cgroup_supply_delay_time"


def write(path: str, value: str) -> int:
    """Write `value` to a cgroup file; 0 on success, else the errno."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        return exc.errno
    try:
        os.write(fd, value.encode())
        return 0
    except OSError as exc:
        return exc.errno
    finally:
        os.close(fd)


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def errname(code: int) -> str:
    return errno.errorcode.get(code, str(code)) if code else "OK"


@dataclass
class Hierarchy:
    options: str                   # mount options: "none,name=x" or a controller list
    root: str
    controller: str | None         # a controller of /proc/cgroups, or None for a named one
    probes: int = 0
    made: list[str] = field(default_factory=list)

    @classmethod
    def mount(cls, options: str, tag: str) -> Hierarchy:
        root = f"/sys/fs/cgroup/pooltest-{tag}"
        os.makedirs(root, exist_ok=True)
        if libc.mount(b"cgroup", root.encode(), b"cgroup", 0, options.encode()) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mount -t cgroup -o {options} {root}: {os.strerror(err)}")
        controller = None if options.startswith("none,") else options.split(",")[0]
        return cls(options, root, controller)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def has_pool(self) -> bool:
        return os.path.exists(self.path("pool_size"))

    def mkdir(self, rel: str, mode: int = 0o755) -> str:
        path = self.path(rel)
        os.mkdir(path, mode)
        return path

    def probe(self) -> int:
        """Inode number of a new cgroup made now (kernfs ids only grow): anything created
        before it has a smaller one."""
        self.probes += 1
        return os.stat(self.mkdir(f"probe-{self.probes}")).st_ino

    def num_cgroups(self) -> int:
        """This hierarchy's cgroup count from /proc/cgroups (controller hierarchies only)."""
        assert self.controller, "named hierarchies are not in /proc/cgroups"
        for line in read("/proc/cgroups").splitlines()[1:]:
            name, _hier, num, _enabled = line.split()
            if name == self.controller:
                return int(num)
        raise AssertionError(f"{self.controller} not in /proc/cgroups")

    def set_pool(self, rel: str, size: int) -> None:
        code = write(self.path(rel, "pool_size"), str(size))
        assert code == 0, f"pool_size {size} on {rel or '/'}: {errname(code)}"

    def teardown(self) -> None:
        # disable every pool first (a cgroup with a pool cannot be removed), then remove
        # the cgroups bottom-up, then unmount
        for dirpath, _dirs, files in os.walk(self.root):
            if "pool_size" in files and read(os.path.join(dirpath, "pool_size")) != "0":
                write(os.path.join(dirpath, "pool_size"), "0")
        for dirpath, dirnames, _files in os.walk(self.root, topdown=False):
            for d in dirnames:
                os.rmdir(os.path.join(dirpath, d))
        for _ in range(50):
            if libc.umount2(self.root.encode(), 0) == 0:
                break
            time.sleep(0.1)
        else:
            raise OSError(ctypes.get_errno(), f"umount {self.root}")
        os.rmdir(self.root)


def wait_until(predicate, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
