"""In-guest benchmark: latency of a burst of concurrent "container starts" on cgroup v1, with
the strategies the RFC thread discussed, idle and under background CPU load.

Standalone (stdlib only; it must not import the host package). Not named test_*.py, so the
guest pytest run does not collect it. Two ways to run it:

* as the guest's init (`init=PYTHON -- cgbench.py --pid1 --out-tag TAG ...`, what
  `pipeline bench` does): mounts /proc, /sys, /dev, tmpfs on /tmp /run /sys/fs/cgroup and the
  writable 9p share TAG, runs, writes cgbench.json into the share and powers the guest off;
* as a plain script as root in a guest that is already set up: `python3 cgbench.py --out F`.

One container start (what the RFC's "400 containers start" is made of): make the
container's cgroup in every mounted v1 hierarchy (cpu,cpuacct; memory; pids; freezer;
devices: those the kernel has), then move the process into each of them. Timed with
CLOCK_MONOTONIC in the creator: "mkdir" (all hierarchies), "attach" (all hierarchies) and
"start" (both). cpuset is left out: a new v1 cpuset has empty cpus/mems and refuses tasks
until they are written, which is the runtime's configuration, not cgroup creation.

One burst: max(N) creator processes, forked once, wait blocked in sigwait(), in one process
group per N tier (see tiers()); a burst of n releases the groups of the first n creators
with one killpg() each, and every released creator starts its own container c<i> under
  same  one parent P (every start serialises on P's i_rwsem in every hierarchy), or
  per   its own parent P/p<i> (made beforehand: the pod/slice layout of a real runtime).

Strategies (plan_scenarios): how the cgroup directories come to be
  baseline      plain mkdir(2)
  favordynmods  plain mkdir(2), hierarchies mounted with -o favordynmods (6.0+: the
                cgroup_threadgroup_rwsem write side no longer waits for an RCU grace period)
  uspool        a user-space pool: spare cgroups s<i> pre-made in the parent, claimed with
                rename(2) to c<i> (kernfs_rename: the kernfs rwsem, no cgroup_mutex, no
                creation work)
  kpool         the kernel pool (patch 2/2): pool_size on the parent, then mkdir(2)
  kpool-fdm     the kernel pool on favordynmods mounts
favordynmods takes effect only when a hierarchy's root is created: see Mounts for how it is
applied, and why the scenarios run grouped by it (plain first, then one mount).

Before each repetition every container cgroup is removed, the creators are moved back to the
roots, the benchmark waits until /proc/cgroups counts just what the scenario pre-makes (the
release of removed cgroups is asynchronous), and a probe cgroup made last tells which kernel
pool creations were served by the pool (inode number below the probe's).

Background load: one process per CPU, pinned to it, busy for `load` of every `period` and
asleep for the rest (see duty_window / run_duty_cycle: pure, unit-tested on the host).

Cost (--cost M, kernels with the pool): per hierarchy, Slab and Percpu of /proc/meminfo
before and after one fill of M pool members (pool_size M/2), and the fill's duration.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import mmap
import os
import platform
import select
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FORMAT = "cgbench/2"
OPS = ("mkdir", "attach", "start")
STRATEGIES = ("baseline", "favordynmods", "uspool", "kpool", "kpool-fdm")
POOL_STRATEGIES = ("kpool", "kpool-fdm")
FDM_STRATEGIES = ("favordynmods", "kpool-fdm")
PARENTS = ("same", "per")
# every v1 hierarchy a container runtime gives a container, in mount order
HIERARCHIES = ("cpu,cpuacct", "memory", "pids", "freezer", "devices")
MNT_RDONLY = 1
RB_AUTOBOOT = 0x01234567
_RECORD = struct.Struct("<iqqqii")  # creator, t0, t_mkdir_done, t_attach_done, errno, step
_GO = signal.SIGUSR1
_QUIT = signal.SIGUSR2
# the shared page the creators read after each release: claim mode, parent layout
_MODE_MKDIR, _MODE_RENAME = 0, 1


# --- background load: the duty-cycle logic is pure so the host tests exercise it -------------

def duty_window(now_ns: int, period_ns: int, duty: float, phase_ns: int = 0) -> tuple[int, int]:
    """The busy window of a loader that wakes at `now_ns`.

    Periods start at phase_ns + k*period_ns. Returns (busy_until, next_period_start): the
    loader spins for duty*period from its wake-up (capped at the end of the period), then
    sleeps until the next period starts. Counting the busy part from the wake-up, not from
    the period start, keeps the busy share at `duty` when sleeps overshoot (they do); the
    absolute period grid keeps the loaders from drifting."""
    if period_ns <= 0:
        raise ValueError(f"period must be > 0 ns, got {period_ns}")
    if not 0.0 <= duty <= 1.0:
        raise ValueError(f"duty must be within [0, 1], got {duty}")
    start = now_ns - (now_ns - phase_ns) % period_ns
    end = start + period_ns
    return min(now_ns + round(duty * period_ns), end), end


def run_duty_cycle(duty: float, period_ns: int, phase_ns: int, should_stop: Callable[[], bool],
                   clock: Callable[[], int] = time.monotonic_ns,
                   sleep: Callable[[float], None] = time.sleep) -> int:
    """Busy-loop `duty` of every period until should_stop(); returns the ns spent spinning.
    `clock` and `sleep` are parameters so the host tests can run it on a fake clock."""
    busy = 0
    while not should_stop():
        now = clock()
        busy_until, next_start = duty_window(now, period_ns, duty, phase_ns)
        if now < busy_until:
            t = now
            while t < busy_until:
                t = clock()
            busy += t - now
        rest = next_start - clock()
        if rest > 0:
            sleep(rest / 1e9)
    return busy


@dataclass
class LoadGen:
    """One pinned duty-cycled loader process per CPU; start() forks them, stop() ends them
    and returns the CPU share each really got (process CPU time / wall time)."""

    duty: float
    period_ns: int
    cpus: list[int]
    pids: list[int] = field(default_factory=list)
    pipes: list[int] = field(default_factory=list)

    def start(self) -> None:
        if self.duty <= 0:
            return
        for k, cpu in enumerate(self.cpus):
            rfd, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # loader
                os.close(rfd)
                code = 0
                try:
                    _loader_main(self.duty, self.period_ns,
                                 k * self.period_ns // max(1, len(self.cpus)), cpu, wfd)
                except BaseException:  # noqa: BLE001 - a child never returns into the parent
                    code = 1
                os._exit(code)
            os.close(wfd)
            self.pids.append(pid)
            self.pipes.append(rfd)

    def stop(self, timeout: float = 10.0) -> list[float]:
        shares = []
        for pid in self.pids:
            os.kill(pid, signal.SIGTERM)
        for pid, rfd in zip(self.pids, self.pipes):
            ready, _, _ = select.select([rfd], [], [], timeout)
            data = os.read(rfd, 64) if ready else b""
            os.close(rfd)
            _wait_or_kill(pid, timeout)
            try:
                shares.append(float(data.decode().strip()))
            except ValueError:
                shares.append(-1.0)
        self.pids, self.pipes = [], []
        return shares


def _loader_main(duty: float, period_ns: int, phase_ns: int, cpu: int, wfd: int) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass
    wall0, cpu0 = time.monotonic_ns(), time.process_time_ns()
    run_duty_cycle(duty, period_ns, phase_ns, stop.is_set)
    wall = time.monotonic_ns() - wall0
    share = (time.process_time_ns() - cpu0) / wall if wall > 0 else 0.0
    os.write(wfd, f"{share:.4f}\n".encode())


def _wait_or_kill(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


# --- the plan ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    strategy: str       # one of STRATEGIES
    parents: str        # one of PARENTS
    n: int              # concurrent starts
    load: float         # 0.0 = idle

    @property
    def name(self) -> str:
        return (f"{self.strategy} {self.parents} n={self.n} "
                f"{'loaded' if self.load > 0 else 'idle'}")

    @property
    def favordynmods(self) -> bool:
        return self.strategy in FDM_STRATEGIES

    @property
    def kernel_pool(self) -> bool:
        return self.strategy in POOL_STRATEGIES


def plan_scenarios(strategies: list[str], ns: list[int], load: float, curves: list[str],
                   has_pool: bool) -> list[Scenario]:
    """Every scenario of one kernel. `curves` are "<parents>-<idle|loaded>" cases that get
    the whole N curve; every other (parents, load) case runs at max(N) only. Kernel-pool
    strategies need the pool (they are dropped without it). Grouped by mount options (plain
    mounts, then favordynmods: one remount), and within a group by N, then case, then
    strategy, so that the strategies of one point run next to each other."""
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        raise ValueError(f"unknown strategies {bad} (choose from {', '.join(STRATEGIES)})")
    if not ns or any(n < 1 or n > 4096 for n in ns):
        raise ValueError(f"N values must be within 1..4096, got {ns}")
    if not 0 <= load <= 1:
        raise ValueError(f"load must be within [0, 1], got {load}")
    loads = [0.0] + ([load] if load > 0 else [])
    cases = [(p, ld) for p in PARENTS for ld in loads]
    names = {f"{p}-{'loaded' if ld else 'idle'}": (p, ld) for p, ld in cases}
    unknown = [c for c in curves if c not in names]
    if unknown:
        raise ValueError(f"unknown curve cases {unknown} (choose from {', '.join(names)})")
    usable = [s for s in strategies if has_pool or s not in POOL_STRATEGIES]
    top = max(ns)
    out = []
    for fdm in (False, True):
        for n in sorted(set(ns)):
            for p, ld in cases:
                key = f"{p}-{'loaded' if ld else 'idle'}"
                if n != top and key not in curves:
                    continue
                out += [Scenario(s, p, n, ld) for s in usable
                        if (s in FDM_STRATEGIES) == fdm]
    return out


def tiers(ns: list[int]) -> list[tuple[int, int]]:
    """Creator index ranges [lo, hi) that a burst releases together: a burst of n releases
    exactly the tiers below n, so every N of the curve is a union of whole tiers."""
    bounds = [0] + sorted(set(ns))
    return [(bounds[k], bounds[k + 1]) for k in range(len(bounds) - 1)]


def expected_count(sc: Scenario) -> int:
    """/proc/cgroups' count for one hierarchy once a repetition is set up: root, P, the
    per-container parents, the user-space spares, the kernel pool's 2*pool_size members."""
    parents = sc.n if sc.parents == "per" else 0
    spares = sc.n if sc.strategy == "uspool" else 0
    members = 2 * sc.n if sc.kernel_pool else 0   # pool_size n on P, or 1 on each p<i>
    return 2 + parents + spares + members


# --- cgroup plumbing --------------------------------------------------------------------------

def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    os.makedirs(target, exist_ok=True)
    if _libc().mount(source.encode(), target.encode(), fstype.encode(), flags,
                     data.encode() or None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount -t {fstype} -o {data or 'defaults'} {source} {target}: "
                           f"{os.strerror(err)}")


def umount(target: str) -> None:
    if _libc().umount2(target.encode(), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def read_proc_cgroups(text: str) -> dict[str, tuple[int, int, bool]]:
    """/proc/cgroups -> {controller: (hierarchy id, num_cgroups, enabled)}."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, hier, num, enabled = line.split()[:4]
        out[name] = (int(hier), int(num), enabled == "1")
    return out


def pick_hierarchies(wanted: str, table: dict[str, tuple[int, int, bool]]) -> list[str]:
    """`auto`: every one of HIERARCHIES whose controllers all exist and are enabled; else the
    ';'-separated list asked for (each must be usable). None may be bound to a v1
    hierarchy already."""
    asked = list(HIERARCHIES) if wanted == "auto" else [w for w in wanted.split(";") if w]

    def usable(h: str) -> bool:
        return all(c in table and table[c][2] and table[c][0] == 0 for c in h.split(","))

    got = [h for h in asked if usable(h)]
    if not got or (wanted != "auto" and len(got) != len(asked)):
        raise SystemExit(f"cgbench: no usable v1 hierarchy among {'; '.join(asked)} "
                         f"(/proc/cgroups has: {', '.join(sorted(table)) or 'nothing'})")
    return got


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo -> {field: kB}."""
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].isdigit():
            out[name.strip()] = int(words[0])
    return out


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@dataclass
class Hierarchy:
    mountpoint: str
    controller: str

    @property
    def parent(self) -> str:
        return f"{self.mountpoint}/P"

    def num_cgroups(self) -> int:
        first = self.controller.split(",")[0]
        return read_proc_cgroups(_read("/proc/cgroups"))[first][1]

    def hierarchy_id(self) -> int:
        first = self.controller.split(",")[0]
        return read_proc_cgroups(_read("/proc/cgroups"))[first][0]

    def has_pool(self) -> bool:
        return os.path.exists(f"{self.mountpoint}/pool_size")

    def wait_count(self, want: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (have := self.num_cgroups()) != want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"/proc/cgroups: {have} cgroups in {self.controller}, "
                                   f"expected {want} after {timeout}s")
            time.sleep(0.005)


def set_pool(cgroup: str, size: int) -> None:
    path = f"{cgroup}/pool_size"
    if int(_read(path)) != size:
        if size and int(_read(path)):
            _write(path, "0")
        _write(path, str(size))


def remove_tree(path: str, has_pool: bool) -> None:
    """rmdir every cgroup below `path` (children first), pools disabled first."""
    for name in os.listdir(path):
        child = f"{path}/{name}"
        if os.path.isdir(child):
            if has_pool:
                set_pool(child, 0)
            remove_tree(child, has_pool)
            os.rmdir(child)


class Mounts:
    """The benchmark's v1 hierarchies, mounted once under /sys/fs/cgroup/cgbench-<name>,
    plus, while favordynmods is wanted, one empty named hierarchy mounted
    `none,name=cgbench-fdm,favordynmods`.

    Why a separate hierarchy: favordynmods takes effect only when a root is created, and
    the real hierarchies cannot be re-created reliably (after umount a memory root stays
    alive while offline memcgs are pinned by kernel memory charged to them). What the flag
    does is global: cgroup_favor_dynmods() (kernel/cgroup/cgroup.c) calls rcu_sync_enter()
    on the one cgroup_threadgroup_rwsem, which every attach takes for write and every fork
    and exit for read, whichever root asked for it. So one root with the flag gives every
    hierarchy exactly the behaviour of mounting them all with it."""

    FDM = "/sys/fs/cgroup/cgbench-fdm"

    def __init__(self, controllers: list[str]) -> None:
        self.hs = [Hierarchy(f"/sys/fs/cgroup/cgbench-{c.replace(',', '-')}", c)
                   for c in controllers]
        self.favordynmods: bool | None = None

    def mount(self, favordynmods: bool) -> None:
        if self.favordynmods is None:
            for h in self.hs:
                mount("cgroup", h.mountpoint, "cgroup", 0, h.controller)
                os.mkdir(h.parent)
                if os.path.exists(f"{h.mountpoint}/memory.move_charge_at_immigrate"):
                    # a creator moved back to the root takes its charges along, so its
                    # removed memcg is not pinned by them and really goes away
                    _write(f"{h.mountpoint}/memory.move_charge_at_immigrate", "3")
            self.favordynmods = False
        if favordynmods and not self.favordynmods:
            mount("cgroup", self.FDM, "cgroup", 0, "none,name=cgbench-fdm,favordynmods")
        elif not favordynmods and self.favordynmods:
            umount(self.FDM)   # no children: the root goes, and with it the flag
        self.favordynmods = favordynmods

    def unmount(self) -> None:
        """Remove everything and unmount (the roots go when their last cgroup is freed)."""
        if self.favordynmods is None:
            return
        self.mount(False)
        for h in self.hs:
            if h.has_pool():
                set_pool(h.parent, 0)
            remove_tree(h.parent, h.has_pool())
            os.rmdir(h.parent)
            umount(h.mountpoint)
        self.favordynmods = None


# --- the creators -----------------------------------------------------------------------------

def start_container(i: int, mode: int, per_parent: bool, mountpoints: list[str],
                    me: int) -> tuple[int, int, int, int, int]:
    """One container start: (t0, mkdirs done, attaches done, errno, failed step: 0 none,
    1 mkdir/rename, 2 attach). Paths are built before t0."""
    base = [f"{m}/P/p{i}" if per_parent else f"{m}/P" for m in mountpoints]
    dirs = [f"{b}/c{i}" for b in base]
    spares = [f"{b}/s{i}" for b in base]
    procs = [f"{d}/cgroup.procs" for d in dirs]
    pid = str(me).encode()
    t0 = time.monotonic_ns()
    try:
        if mode == _MODE_RENAME:
            for s, d in zip(spares, dirs):
                os.rename(s, d)
        else:
            for d in dirs:
                os.mkdir(d)
    except OSError as exc:
        t = time.monotonic_ns()
        return t0, t, t, exc.errno or -1, 1
    t1 = time.monotonic_ns()
    try:
        for p in procs:
            fd = os.open(p, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
    except OSError as exc:
        return t0, t1, time.monotonic_ns(), exc.errno or -1, 2
    return t0, t1, time.monotonic_ns(), 0, 0


@dataclass
class PhaseResult:
    release_ns: int
    t0: list[int]
    t1: list[int]
    t2: list[int]
    errors: dict[str, dict[str, int]]     # op -> errno name -> count


class Creators:
    """max(N) forked creators, one process group per tier; a burst of n is one killpg()
    per tier below n. The shared page tells them how to claim their cgroups."""

    def __init__(self, ns: list[int], mountpoints: list[str]) -> None:
        self.tiers = tiers(ns)
        self.n = self.tiers[-1][1]
        self.page = mmap.mmap(-1, mmap.PAGESIZE)
        self.pids: list[int] = []
        self.groups: list[int] = []
        self.released = 0          # creators of the last burst (attached somewhere)
        self.rfd, wfd = os.pipe()
        signal.pthread_sigmask(signal.SIG_BLOCK, [_GO, _QUIT])
        for lo, hi in self.tiers:
            pgid = 0
            for i in range(lo, hi):
                pid = os.fork()
                if pid == 0:
                    os.close(self.rfd)
                    code = 0
                    try:
                        os.setpgid(0, pgid)
                        self._child(i, mountpoints, wfd)
                    except BaseException:  # noqa: BLE001 - never return into the parent
                        code = 1
                    os._exit(code)
                try:
                    os.setpgid(pid, pgid)
                except OSError:
                    pass  # the child did it already
                pgid = pgid or pid
                self.pids.append(pid)
            self.groups.append(pgid)
        os.close(wfd)

    def _child(self, i: int, mountpoints: list[str], wfd: int) -> None:
        me = os.getpid()
        while True:
            sig = signal.sigwait({_GO, _QUIT})
            if sig == _QUIT:
                return
            mode, per = self.page[0], self.page[1]
            t0, t1, t2, err, step = start_container(i, mode, bool(per), mountpoints, me)
            os.write(wfd, _RECORD.pack(i, t0, t1, t2, err, step))

    def burst(self, n: int, mode: int, per_parent: bool, timeout: float) -> PhaseResult:
        self.page[0], self.page[1] = mode, int(per_parent)
        groups = [g for (lo, _hi), g in zip(self.tiers, self.groups) if lo < n]
        self.released = max(self.released, n)
        release = time.monotonic_ns()
        for g in groups:
            os.killpg(g, _GO)
        return _collect(self.rfd, n, release, timeout)

    def close(self) -> None:
        for g in self.groups:
            os.killpg(g, _QUIT)
        for pid in self.pids:
            _wait_or_kill(pid, 10.0)
        os.close(self.rfd)


def _collect(rfd: int, n: int, release: int, timeout: float) -> PhaseResult:
    buf = b""
    deadline = time.monotonic() + timeout
    while len(buf) < n * _RECORD.size:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([rfd], [], [], max(0.0, left))
        if not ready:
            raise RuntimeError(f"burst: only {len(buf) // _RECORD.size} of {n} creators "
                               f"answered within {timeout}s")
        buf += os.read(rfd, 65536)
    res = PhaseResult(release, [0] * n, [0] * n, [0] * n, {op: {} for op in OPS})
    for i, t0, t1, t2, err, step in _RECORD.iter_unpack(buf):
        res.t0[i], res.t1[i], res.t2[i] = t0, t1, t2
        if err:
            name = errno.errorcode.get(err, str(err))
            for op in (OPS[step - 1], "start"):
                res.errors[op][name] = res.errors[op].get(name, 0) + 1
    return res


# --- one repetition ---------------------------------------------------------------------------

def setup_rep(m: Mounts, sc: Scenario, timeout: float) -> dict[str, int]:
    """The state before a burst: only root and P, then the scenario's pre-made cgroups.
    Returns the removed cgroups still not freed after `timeout` (per hierarchy; none
    expected: a lingering one would be counted as a pool member)."""
    lingering = {}
    for h in m.hs:
        pool = h.has_pool()
        if pool:
            set_pool(h.parent, 0)
        remove_tree(h.parent, pool)
    for h in m.hs:
        try:
            h.wait_count(2, timeout)
        except RuntimeError:
            lingering[h.controller] = h.num_cgroups() - 2
        bases = [f"{h.parent}/p{i}" for i in range(sc.n)] if sc.parents == "per" \
            else [h.parent]
        if sc.parents == "per":
            for b in bases:
                os.mkdir(b)
        if sc.strategy == "uspool":
            for i in range(sc.n):
                os.mkdir(f"{bases[i if sc.parents == 'per' else 0]}/s{i}")
        if sc.kernel_pool:
            for b in bases:
                set_pool(b, sc.n if sc.parents == "same" else 1)
        h.wait_count(expected_count(sc) + lingering.get(h.controller, 0), timeout)
    return lingering


def fast_path_count(m: Mounts, sc: Scenario, probes: list[int]) -> int:
    """Containers whose every cgroup was served by the pool as filled before the burst
    (inode below the probe's of that hierarchy)."""
    count = 0
    for i in range(sc.n):
        try:
            if all(os.stat(f"{h.parent}{f'/p{i}' if sc.parents == 'per' else ''}/c{i}").st_ino
                   < probe for h, probe in zip(m.hs, probes)):
                count += 1
        except OSError:
            pass
    return count


# Before a burst the guest idles this long, so that the asynchronous work of the setup (the
# release of the last repetition's cgroups: css offlining, RCU callbacks, pool refills) is
# over instead of running into the burst at a varying point. Idle time is free under the
# instruction clock (sleep=off skips it).
QUIESCE_S = 0.5
TICK_NS = 4_000_000        # HZ=250 (the bench kernels' config); only the phase matters
PR_SET_TIMERSLACK = 29


def next_aligned(now_ns: int, period_ns: int = TICK_NS, offset_ns: int = TICK_NS // 8) -> int:
    """The first time after now_ns + period/2 that is `offset_ns` past a multiple of
    `period_ns`: every burst is released at the same phase of the guest's clock."""
    t = now_ns + period_ns // 2
    return t - t % period_ns + period_ns + offset_ns


def align_to_tick() -> None:
    """Sleep until next_aligned(): under the instruction clock (sleep=off) the idle guest's
    clock jumps straight there, so what happened before (boot I/O, setup) no longer shifts
    the burst against the periodic tick. Timer slack 1 ns: the wake-up is not coalesced."""
    _libc().prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    now = time.monotonic_ns()
    time.sleep((next_aligned(now) - now) / 1e9)


def warm_up(m: Mounts, creators: Creators, timeout: float) -> None:
    """One untimed start of every creator, so that no measured burst is the first to fault
    the creators' code in over 9p (host I/O would land at a host-dependent guest time)."""
    m.mount(False)
    creators.burst(creators.n, _MODE_MKDIR, False, timeout)
    to_roots(m, creators)


def to_roots(m: Mounts, creators: Creators) -> None:
    """The creators of the last burst back into the roots (they are attached to their
    containers), so that the containers can be removed."""
    if m.favordynmods is not None:
        for h in m.hs:
            for pid in creators.pids[:creators.released]:
                _write(f"{h.mountpoint}/cgroup.procs", str(pid))
    creators.released = 0


def run_rep(m: Mounts, creators: Creators, sc: Scenario, period_ns: int, cpus: list[int],
            timeout: float) -> dict[str, Any]:
    to_roots(m, creators)
    m.mount(sc.favordynmods)
    lingering = setup_rep(m, sc, 20.0)
    probes = []
    for h in m.hs:
        os.mkdir(f"{h.mountpoint}/probe")
        probes.append(os.stat(f"{h.mountpoint}/probe").st_ino)
    load = LoadGen(sc.load, period_ns, cpus)
    rep: dict[str, Any] = {}
    try:
        load.start()
        if sc.load > 0:
            time.sleep(max(0.05, 5 * period_ns / 1e9))  # let the loaders reach their rhythm
        mode = _MODE_RENAME if sc.strategy == "uspool" else _MODE_MKDIR
        time.sleep(QUIESCE_S)
        align_to_tick()
        res = creators.burst(sc.n, mode, sc.parents == "per", timeout)
    finally:
        rep["load_share"] = load.stop()
        for h in m.hs:
            os.rmdir(f"{h.mountpoint}/probe")
    rel = res.release_ns
    rep["ops"] = {
        "mkdir": {"start_ns": [t - rel for t in res.t0],
                  "lat_ns": [b - a for a, b in zip(res.t0, res.t1)],
                  "errors": res.errors["mkdir"]},
        "attach": {"start_ns": [t - rel for t in res.t1],
                   "lat_ns": [b - a for a, b in zip(res.t1, res.t2)],
                   "errors": res.errors["attach"]},
        "start": {"start_ns": [t - rel for t in res.t0],
                  "lat_ns": [b - a for a, b in zip(res.t0, res.t2)],
                  "errors": res.errors["start"]},
    }
    rep["lingering"] = lingering
    rep["fast_path"] = fast_path_count(m, sc, probes) if sc.kernel_pool else 0
    return rep


def measure_cost(m: Mounts, members: int, timeout: float) -> list[dict[str, Any]]:
    """Per hierarchy: kernel memory and time of one fill of `members` pool members."""
    out = []
    for h in m.hs:
        cg = f"{h.mountpoint}/cost"
        os.mkdir(cg)
        base = h.num_cgroups()
        before = parse_meminfo(_read("/proc/meminfo"))
        t0 = time.monotonic_ns()
        _write(f"{cg}/pool_size", str(members // 2))
        h.wait_count(base + members, timeout)
        fill_ns = time.monotonic_ns() - t0
        after = parse_meminfo(_read("/proc/meminfo"))
        set_pool(cg, 0)
        os.rmdir(cg)
        h.wait_count(base - 1, timeout)
        out.append({"hierarchy": h.controller, "members": members, "fill_ns": fill_ns,
                    "before_kb": {k: before.get(k, 0) for k in ("Slab", "Percpu", "MemFree")},
                    "after_kb": {k: after.get(k, 0) for k in ("Slab", "Percpu", "MemFree")}})
    return out


# --- main -------------------------------------------------------------------------------------

def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--ns", type=_ints, default=[1, 10, 50, 100, 200, 400],
                   help="comma list of concurrent starts per burst (the curve)")
    p.add_argument("--strategies", default="baseline,favordynmods,uspool,kpool,kpool-fdm",
                   help="comma list of " + ",".join(STRATEGIES))
    p.add_argument("--curves", default="same-idle",
                   help="comma list of <same|per>-<idle|loaded> cases run over the whole "
                        "curve; the other cases run at max(N) only")
    p.add_argument("--parents", default="same,per", help="comma list of same, per")
    p.add_argument("--reps", type=int, default=3, help="repetitions of every scenario")
    p.add_argument("--load", type=float, default=0.4,
                   help="background busy share of every CPU in loaded scenarios (0 = no "
                        "loaded scenarios)")
    p.add_argument("--period-ms", type=float, default=10.0, help="duty-cycle period")
    p.add_argument("--hierarchies", default="auto",
                   help="';'-separated v1 hierarchies to mount, or auto (" +
                        "; ".join(HIERARCHIES) + ": those the kernel has)")
    p.add_argument("--supply-delay-ms", type=int, default=-1,
                   help="set kernel.cgroup_supply_delay_time for the run (-1: leave it)")
    p.add_argument("--cost", type=int, default=0,
                   help="pool members of the cost fill per hierarchy (0: no cost run)")
    p.add_argument("--burst-timeout", type=float, default=300.0)
    p.add_argument("--out", help="write the JSON here (default: stdout)")
    p.add_argument("--pid1", action="store_true",
                   help="act as the guest's init: mount the basics, run, power off")
    p.add_argument("--out-tag", help="with --pid1: 9p tag of the writable output share")
    a = p.parse_args(argv)
    a.strategies = [s for s in a.strategies.split(",") if s]
    a.curves = [c for c in a.curves.split(",") if c]
    a.parents = [x for x in a.parents.split(",") if x]
    if any(x not in PARENTS for x in a.parents) or not a.parents:
        p.error(f"--parents: a comma list of {', '.join(PARENTS)}")
    if a.reps < 1 or not 0 <= a.load <= 1 or a.period_ms <= 0 or a.cost < 0 or a.cost % 2:
        p.error("--reps must be >= 1, --load within [0, 1], --period-ms > 0, --cost even")
    try:
        plan_scenarios(a.strategies, a.ns, a.load, a.curves, True)
    except ValueError as exc:
        p.error(str(exc))
    return a


def _clocksource() -> str:
    """jiffies here means 4 ms steps at HZ=250: the host warns about it."""
    try:
        return _read("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    except OSError:
        return "unknown"


def _kernel() -> dict[str, Any]:
    u = os.uname()
    return {"release": u.release, "version": u.version, "machine": u.machine}


def benchmark(a: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    controllers = pick_hierarchies(a.hierarchies, read_proc_cgroups(_read("/proc/cgroups")))
    m = Mounts(controllers)
    m.mount(False)
    has_pool = m.hs[0].has_pool()
    sysctl = "/proc/sys/kernel/cgroup_supply_delay_time"
    delay = int(_read(sysctl)) if os.path.exists(sysctl) else None
    if has_pool and a.supply_delay_ms >= 0:
        _write(sysctl, str(a.supply_delay_ms))
        delay = a.supply_delay_ms
    scenarios = [s for s in plan_scenarios(a.strategies, a.ns, a.load, a.curves, has_pool)
                 if s.parents in a.parents]
    result: dict[str, Any] = {
        "format": FORMAT,
        "conditions": {
            "kernel": _kernel(), "cpus": len(cpus), "ns": sorted(set(a.ns)), "reps": a.reps,
            "load": a.load, "period_ms": a.period_ms, "ops": list(OPS),
            "workers": "processes", "hierarchies": controllers, "pool_support": has_pool,
            "supply_delay_ms": delay, "python": platform.python_version(),
            "clock": "CLOCK_MONOTONIC", "clocksource": _clocksource(),
            "cmdline": _read("/proc/cmdline").split(" -- ")[0],
        },
        "scenarios": [{"name": s.name, "strategy": s.strategy, "parents": s.parents,
                       "n": s.n, "load": s.load,
                       "pool": "pool-full" if s.kernel_pool else "nopool",
                       "pool_size": (s.n if s.parents == "same" else 1) if s.kernel_pool
                       else 0, "reps": []} for s in scenarios],
        "cost": [],
    }
    t_start = time.monotonic()
    creators = Creators(a.ns, [h.mountpoint for h in m.hs])
    log(f"cgbench: {creators.n} creators ready in {time.monotonic() - t_start:.1f}s; "
        f"hierarchies {'; '.join(controllers)}, pool support {'yes' if has_pool else 'no'}, "
        f"{len(cpus)} CPUs, {len(scenarios)} scenarios x {a.reps} reps, clock "
        f"{_clocksource()}")
    try:
        warm_up(m, creators, a.burst_timeout)
        # repetitions inside one mount group: the flag's switch costs an RCU grace period
        # and the groups stay apart in time (no drift to spread under the instruction clock)
        for fdm in (False, True):
            group = [(s, e) for s, e in zip(scenarios, result["scenarios"])
                     if s.favordynmods == fdm]
            for r in range(a.reps):
                for s, entry in group:
                    t0 = time.monotonic()
                    rep = run_rep(m, creators, s, int(a.period_ms * 1e6), cpus,
                                  a.burst_timeout)
                    entry["reps"].append(rep)
                    st = sorted(rep["ops"]["start"]["lat_ns"])
                    log(f"cgbench: rep {r + 1}/{a.reps} {s.name:32s} start p50 "
                        f"{st[len(st) // 2] / 1e6:.2f}ms max {st[-1] / 1e6:.2f}ms fast "
                        f"{rep['fast_path']}/{s.n} ({time.monotonic() - t0:.1f}s)")
        if a.cost and has_pool:
            to_roots(m, creators)
            m.mount(False)
            result["cost"] = measure_cost(m, a.cost, 600.0)
            for c in result["cost"]:
                log(f"cgbench: cost {c['hierarchy']}: {c['members']} members in "
                    f"{c['fill_ns'] / 1e9:.2f}s")
    finally:
        to_roots(m, creators)
        creators.close()
        m.unmount()
    return result


def _pid1_setup(out_tag: str | None) -> str | None:
    os.environ.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    for src, target, fs in (("proc", "/proc", "proc"), ("sys", "/sys", "sysfs"),
                            ("dev", "/dev", "devtmpfs"), ("tmp", "/tmp", "tmpfs"),
                            ("run", "/run", "tmpfs"), ("cg", "/sys/fs/cgroup", "tmpfs")):
        try:
            mount(src, target, fs)
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
    if not out_tag:
        return None
    mount(out_tag, "/run/out", "9p", 0, "trans=virtio,version=9p2000.L")
    return "/run/out/cgbench.json"


def main(argv: list[str] | None = None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)

    def log(msg: str) -> None:
        print(msg, flush=True)

    code = 1
    try:
        out = _pid1_setup(a.out_tag) if a.pid1 else None
        out = a.out or out
        result = benchmark(a, log)
        text = json.dumps(result, separators=(",", ":"))
        if out:
            with open(out, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            log(f"cgbench: wrote {out} ({len(text)} bytes)")
        else:
            print(text, flush=True)
        code = 0
    except BaseException as exc:  # as init: report and power off instead of a panic
        import traceback
        traceback.print_exc()
        log(f"cgbench: FAILED: {type(exc).__name__}: {exc}")
        if not a.pid1:
            raise
    finally:
        if a.pid1:
            log(f"cgbench: exit {code}")
            os.sync()
            _libc().reboot(RB_AUTOBOOT)
    return code


if __name__ == "__main__":
    sys.exit(main())
