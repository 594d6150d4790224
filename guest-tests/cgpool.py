"""Helpers for the cgroup pool guest tests (stdlib only: this runs inside the test guest).

A `Hierarchy` is a freshly mounted cgroup v1 hierarchy that is torn down completely
afterwards: pools disabled, every cgroup removed, unmounted, and checked gone. The last
step matters: a v1 hierarchy that still has children (visible, hidden pool members, or
removed ones not yet released) survives umount, and the next mount with the same options
silently reuses it. Teardown therefore waits for the hierarchy to vanish from
/proc/self/cgroup and fails the test if it does not.

How a test tells the fast path from the slow path (see the pool semantics brief): a pool
member's inode number (its kernfs id, allocated from a per-hierarchy counter that only
grows) was allocated when the pool was filled, so a directory served from the pool has a
smaller inode than a probe cgroup made after the fill, and a slow-path mkdir gets a larger
one. That is the only difference: a served directory has the mode mkdir asked for (umask
applied) and the caller's owner, like a slow-path one, and `mkdir_fast` checks it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

NO_POOL = "kernel without the cgroup pool series: no pool_size file"
SUPPLY_DELAY = "/proc/sys/kernel/cgroup_supply_delay_time"
CGROUP_ROOT = "/sys/fs/cgroup"          # a tmpfs in the guest
ASKED_MODE = 0o700                      # what the tests ask for: both paths must give it
USER, GROUP = 1000, 1000                # the delegated user of the tests (no capabilities)

_libc = ctypes.CDLL(None, use_errno=True)


def write(path: str, value: str) -> int:
    """Write `value` to a cgroup file in one write(2): 0 on success, else the errno."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        return exc.errno or -1
    try:
        os.write(fd, value.encode())
        return 0
    except OSError as exc:
        return exc.errno or -1
    finally:
        os.close(fd)


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def errname(code: int) -> str:
    """'OK' for 0, else the errno's symbolic name (EPERM, EINVAL, ...)."""
    return errno.errorcode.get(code, str(code)) if code else "OK"


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def _hierarchy_ids(key: str) -> list[str]:
    """Ids of the v1 hierarchies whose /proc/self/cgroup controller field is `key`."""
    ids = []
    for line in read("/proc/self/cgroup").splitlines():
        hid, controllers, _path = line.split(":", 2)
        if controllers == key:
            ids.append(hid)
    return ids


@dataclass(frozen=True)
class Made:
    """A cgroup a test created, with what tells how the kernel created it."""
    path: str
    ino: int
    mode: int


@dataclass
class Hierarchy:
    options: str                   # mount options, e.g. "none,name=pool-3" or "pids"
    root: str                      # mount point
    controller: str | None         # first controller (its /proc/cgroups line), None if named
    key: str                       # its controller field in /proc/self/cgroup
    probes: int = 0

    # --- setup and teardown --------------------------------------------------------------
    @classmethod
    def mount(cls, kind: str, tag: str) -> Hierarchy:
        """Mount a fresh hierarchy: `kind` "named" (no controller, a unique name) or a
        controller list such as "pids" or "cpu,cpuacct"."""
        if kind == "named":
            options, controller, key = f"none,name=pooltest-{tag}", None, f"name=pooltest-{tag}"
        else:
            options, controller, key = kind, kind.split(",")[0], kind
        root = os.path.join(CGROUP_ROOT, f"pooltest-{tag}")
        try:
            mount_v1(options, root)
        except OSError:
            os.rmdir(root)
            raise
        h = cls(options, root, controller, key)
        leftovers = h.children("")
        assert not leftovers, f"{options}: reused a hierarchy with cgroups {leftovers}"
        return h

    def teardown(self) -> None:
        """Disable every pool, remove every cgroup, unmount, and check the hierarchy is
        gone. Raises AssertionError naming what was left."""
        problems: list[str] = []
        for dirpath, _dirs, files in os.walk(self.root):
            if "pool_size" in files and read(os.path.join(dirpath, "pool_size")) != "0":
                code = write(os.path.join(dirpath, "pool_size"), "0")
                if code:
                    problems.append(f"disable pool of {dirpath}: {errname(code)}")
        for dirpath, dirnames, _files in os.walk(self.root, topdown=False):
            for d in dirnames:
                try:
                    os.rmdir(os.path.join(dirpath, d))
                except OSError as exc:
                    problems.append(f"rmdir {os.path.join(dirpath, d)}: {exc}")
        if self.controller and not problems:
            # removed cgroups are released asynchronously; umount kills the hierarchy
            # only if none is left, so wait for that (named ones: see below)
            wait_until(lambda: self.num_cgroups() == 1, timeout=10)
        problems += self.umount_until_gone()
        assert not problems, "teardown of " + self.options + ": " + "; ".join(problems)

    def umount_until_gone(self, timeout: float = 15.0) -> list[str]:
        """Unmount; if the hierarchy outlives the umount because removed cgroups were not
        released yet (a named hierarchy has no num_cgroups to wait for), mount it again
        (which reuses it) and retry until `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            if _libc.umount2(self.root.encode(), 0) != 0:
                err = ctypes.get_errno()
                return [f"umount {self.root}: {os.strerror(err)}"]
            if wait_until(lambda: not _hierarchy_ids(self.key), timeout=0.3, step=0.02):
                os.rmdir(self.root)
                return []
            if time.monotonic() > deadline:
                os.rmdir(self.root)
                return [(f"hierarchy {self.key} survived umount for {timeout:.0f} s "
                         "(hidden pool members or other cgroups left in it)")]
            try:
                mount_v1(self.options, self.root)
            except OSError as exc:
                os.rmdir(self.root)
                return [f"remount {self.options} to retry the umount: {exc.strerror}"]

    # --- plain access ----------------------------------------------------------------------
    @property
    def has_pool(self) -> bool:
        return os.path.exists(self.path("pool_size"))

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def children(self, rel: str) -> list[str]:
        """Visible child cgroups of `rel`, sorted."""
        d = self.path(rel)
        return sorted(n for n in os.listdir(d) if os.path.isdir(os.path.join(d, n)))

    def mkdir(self, rel: str, mode: int = 0o755) -> Made:
        path = self.path(rel)
        os.mkdir(path, mode)
        st = os.stat(path)
        return Made(path, st.st_ino, stat.S_IMODE(st.st_mode))

    def pool_size(self, rel: str) -> str:
        return read(self.path(rel, "pool_size"))

    def set_pool(self, rel: str, size: int) -> None:
        code = write(self.path(rel, "pool_size"), str(size))
        assert code == 0, f"echo {size} > {rel or '.'}/pool_size: {errname(code)}"

    def num_cgroups(self) -> int:
        """This hierarchy's num_cgroups in /proc/cgroups (controller hierarchies only)."""
        assert self.controller, "a named hierarchy has no line in /proc/cgroups"
        for line in read("/proc/cgroups").splitlines()[1:]:
            name, _hier, num, _enabled = line.split()
            if name == self.controller:
                return int(num)
        raise AssertionError(f"{self.controller} not in /proc/cgroups")

    # --- fast path / slow path -----------------------------------------------------------
    def probe(self, parent: str = "") -> int:
        """Make a new cgroup in `parent` (the root by default; it must have no pool, so
        this is a slow-path mkdir) and return its inode: every kernfs node made before it
        has a smaller one, every node made after it a larger one."""
        self.probes += 1
        return self.mkdir(os.path.join(parent, f"probe-{self.probes}")).ino

    def mkdir_fast(self, rel: str, probe: int) -> bool:
        """mkdir `rel` with mode 0700 and say whether the pool served it (True) or it was
        created on the slow path (False), from its inode against `probe` (made after the
        pool was last filled). Either way it must have the mode asked for."""
        made = self.mkdir(rel, ASKED_MODE)
        fast = made.ino < probe
        assert made.mode == ASKED_MODE, (
            f"{rel}: mkdir asked for mode {ASKED_MODE:o} and got {made.mode:o} on the "
            f"{'fast' if fast else 'slow'} path (inode {made.ino}, probe {probe})")
        return fast

    def served_now(self, rel: str) -> bool:
        """Make a probe, then mkdir `rel`: True if the pool served it (a member made before
        the probe). Safe while a refill runs: a member made after the probe counts as
        slow, so a caller polls until a refill has finished one member."""
        return self.mkdir_fast(rel, self.probe())

    def cpuset_parents(self, cpus: dict[str, str]) -> None:
        """On a cpuset hierarchy: make each parent with mems 0, its cpus and clone_children
        set (its children copy the cpus). Needs as many guest CPUs as the masks name."""
        for parent, mask in cpus.items():
            self.mkdir(parent)
            for name, value in (("cpuset.mems", "0"), ("cpuset.cpus", mask),
                                ("cgroup.clone_children", "1")):
                code = write(self.path(parent, name), value)
                assert code == 0, f"echo {value} > {parent}/{name}: {errname(code)}"


# --- raw mounts, other users --------------------------------------------------------------

def mount_v1(options: str, root: str) -> None:
    """mount -t cgroup -o `options` cgroup `root` (made if missing)."""
    os.makedirs(root, exist_ok=True)
    if _libc.mount(b"cgroup", root.encode(), b"cgroup", 0, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount -t cgroup -o {options} cgroup {root}: {os.strerror(err)}")


def umount(root: str) -> None:
    if _libc.umount2(root.encode(), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {root}: {os.strerror(err)}")


def hierarchy_alive(key: str) -> bool:
    """Does a v1 hierarchy whose /proc/self/cgroup controller field is `key` exist?"""
    return bool(_hierarchy_ids(key))


def mkdir_and_join(path: str) -> int:
    """mkdir `path` and move this process into it (run as the delegated user through
    as_user): 0 or the errno."""
    try:
        os.mkdir(path, 0o755)
    except OSError as exc:
        return exc.errno or 254
    return write(os.path.join(path, "cgroup.procs"), str(os.getpid()))


def chown_cgroup(path: str, uid: int, gid: int) -> None:
    """Delegate a cgroup the documented v1 way: the directory and its files."""
    os.chown(path, uid, gid)
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if not os.path.isdir(full):
            os.chown(full, uid, gid)


def in_child(setup: Callable[[], None], func: Callable[[], int], what: str,
             timeout: float = 60.0) -> int:
    """Run `setup` and then `func` in a child process; returns what `func` returned
    (0..255), 255 if either raised. `what` names the child in the timeout error."""
    pid = os.fork()
    if pid == 0:  # child: never return into the test runner
        code = 255
        try:
            setup()
            code = int(func())
        except BaseException:  # noqa: BLE001 - reported through the exit code
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code & 0xFF)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"child {what} did not finish in {timeout:.0f} s")
        time.sleep(0.01)


def as_user(uid: int, gid: int, func: Callable[[], int], umask: int = 0o022,
            timeout: float = 60.0) -> int:
    """Run `func` in a child process with uid/gid `uid`/`gid`, no supplementary groups and
    so no capabilities; returns what `func` returned (0..255), 255 if it raised."""
    def become() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        os.umask(umask)

    return in_child(become, func, f"as uid {uid}", timeout)


def figure(text: str) -> None:
    """Record a measured figure: a line in figures.log beside the results file in the
    output share (the host keeps it in OUT/<variant>/guest/), and on stdout."""
    print("FIGURE " + text)
    results = os.environ.get("PIPELINE_RESULTS")
    if results:
        with open(os.path.join(os.path.dirname(results), "figures.log"), "a") as f:
            f.write(text + "\n")


def release_named(options: str, key: str, root: str, timeout: float = 15.0) -> None:
    """Mount the named hierarchy again if needed, disable its root's pool, unmount, and wait
    for it to be freed (Hierarchy.umount_until_gone). Removes the mount point."""
    if not os.path.ismount(root):
        mount_v1(options, root)
    if read(os.path.join(root, "pool_size")) != "0":
        code = write(os.path.join(root, "pool_size"), "0")
        assert code == 0, f"disable the pool of {root}: {errname(code)}"
    problems = Hierarchy(options, root, None, key).umount_until_gone(timeout)
    assert not problems, "; ".join(problems)


def cmdline_value(name: str) -> str | None:
    """The value of `name=value` on the kernel command line (how a job scales a guest test,
    e.g. pool_stress_seconds=300), or None."""
    for word in read("/proc/cmdline").split():
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None
