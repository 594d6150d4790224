"""In-guest benchmark: latency of a burst of concurrent cgroup v1 creations, pool vs no pool,
idle vs under background CPU load.

Standalone (stdlib only; it must not import the host package). Not named test_*.py, so the
guest pytest run does not collect it. Two ways to run it:

* as the guest's init (`init=PYTHON -- cgbench.py --pid1 --out-tag TAG ...`, what
  `pipeline bench` does): mounts /proc, /sys, /dev, tmpfs on /tmp /run /sys/fs/cgroup and the
  writable 9p share TAG, runs, writes cgbench.json into the share and powers the guest off;
* as a plain script as root in a guest that is already set up: `python3 cgbench.py --out F`.

What one burst is: N creator processes (or threads, `--workers threads`), forked once, wait
blocked in sigwait(); the parent sends one signal to their process group and every creator
does one operation on its own cgroup P/c<i> under the same parent P, timing just that
system call with CLOCK_MONOTONIC. Operations (`--ops`), each its own burst: mkdir, attach
(the creator moves itself into its cgroup) and rmdir (it moves back to the root first,
untimed). The host (pipeline/bench/stats.py) turns the raw nanoseconds into percentiles.

Why processes by default: with threads every creator must retake the GIL after mkdir returns
before it can read the clock, so the measured latency includes queueing on the GIL, and on
several vCPUs the GIL serialises the user-space half of the burst, which lowers the
contention the kernel sees; processes are also what the RFC's case is made of (one container
runtime per container). `--workers threads` exists to show the difference. Measured on the
dev guest (one vCPU, N=400, idle, 3 reps each): mkdir burst 268-613 ms with threads, 263-1154
ms with processes -- on one vCPU both are dominated by CPU scheduling and the difference is
within the noise, so the GIL effect could not be isolated there.

Scenarios, each idle and loaded, repeated R times, interleaved (rep 1 of every scenario, then
rep 2 ...) so slow drift of the host hits every scenario alike:
  nopool      pool_size 0 on P (the only one on a kernel without the pool series)
  pool-full   pool_size N: 2N members, the whole burst can take the fast path
  pool-small  pool_size S < N (default N/4): 2S members, the rest falls back to the slow path
Before each repetition the pool is disabled, the cgroups are removed, the pool is enabled
again and the benchmark waits (bounded) until /proc/cgroups counts all 2*pool_size members.
A probe cgroup made after the fill tells which creations were served by the pool (smaller
inode number than the probe).

Background load: one process per CPU, pinned to it, busy for `load` of every `period` and
asleep for the rest (see duty_window / run_duty_cycle: pure, unit-tested on the host).
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
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

FORMAT = "cgbench/1"
OPS = ("mkdir", "attach", "rmdir")
POOL_MODES = ("nopool", "pool-full", "pool-small")
CONTROLLER_CHOICES = ("cpu,cpuacct", "pids", "memory")  # tried in this order by "auto"
MNT_RDONLY = 1
RB_AUTOBOOT = 0x01234567
_RECORD = struct.Struct("<iiqqi")  # worker index, op index, t0 ns, t1 ns, errno
_OP_SIGNALS = {"mkdir": signal.SIGUSR1, "attach": signal.SIGUSR2, "rmdir": signal.SIGRTMIN}
_QUIT = signal.SIGRTMIN + 1


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
    pool: str           # one of POOL_MODES
    pool_size: int
    load: float         # 0.0 = idle

    @property
    def name(self) -> str:
        return f"{self.pool} {'loaded' if self.load > 0 else 'idle'}"


def plan_scenarios(n: int, load: float, pool_small: int, has_pool: bool) -> list[Scenario]:
    """Every scenario of one kernel: pool modes x {idle, loaded}; only nopool without the
    series. Idle and loaded alternate so that both see the same drift."""
    if has_pool and not 0 < pool_small < n:
        raise ValueError(f"pool-small size must be within 1..{n - 1}, got {pool_small}")
    if has_pool and n > 4096:
        raise ValueError(f"pool_size is at most 4096, so N must be <= 4096 (got {n})")
    sizes = {"nopool": 0, "pool-full": n, "pool-small": pool_small}
    modes = POOL_MODES if has_pool else ("nopool",)
    loads = [0.0] + ([load] if load > 0 else [])
    return [Scenario(mode, sizes[mode], ld) for mode in modes for ld in loads]


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


def pick_controller(wanted: str, table: dict[str, tuple[int, int, bool]]) -> str:
    """`auto`: the first of CONTROLLER_CHOICES whose controllers all exist, are enabled and
    are not bound to another v1 hierarchy yet."""
    candidates = CONTROLLER_CHOICES if wanted == "auto" else (wanted,)
    for cand in candidates:
        names = cand.split(",")
        if all(n in table and table[n][2] and table[n][0] == 0 for n in names):
            return cand
    raise SystemExit(f"cgbench: no usable v1 controller among {', '.join(candidates)} "
                     f"(/proc/cgroups has: {', '.join(sorted(table)) or 'nothing'})")


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

    def has_pool(self) -> bool:
        return os.path.exists(f"{self.mountpoint}/pool_size")

    def set_pool(self, size: int) -> None:
        path = f"{self.parent}/pool_size"
        if int(_read(path)) != size:
            if size and int(_read(path)):
                _write(path, "0")
            _write(path, str(size))

    def reset(self, pool_size: int, timeout: float = 60.0) -> None:
        """Empty P, wait until the removed cgroups are really freed (their release is
        asynchronous, and /proc/cgroups counts them until then), then enable the pool and
        wait until it holds 2*pool_size members. Every repetition so starts from the same,
        quiet state: only the root and P exist."""
        if self.has_pool():
            self.set_pool(0)
        for name in os.listdir(self.parent):
            child = f"{self.parent}/{name}"
            if os.path.isdir(child):
                for pid in _read(f"{child}/cgroup.procs").split():
                    _write(f"{self.mountpoint}/cgroup.procs", pid)  # left by "attach"
                os.rmdir(child)
        self.wait_count(2, timeout)
        if pool_size:
            self.set_pool(pool_size)
            self.wait_count(2 + 2 * pool_size, timeout)

    def wait_count(self, want: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (have := self.num_cgroups()) != want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"/proc/cgroups: {have} cgroups in {self.controller}, "
                                   f"expected {want} (root, P and the pool) after {timeout}s")
            time.sleep(0.005)


# --- the creators -----------------------------------------------------------------------------

def _do_op(op: str, path: str, root: str, procs_file: str, ident: int) -> tuple[int, int, int]:
    """One timed operation on the worker's cgroup `path`: (t0, t1, errno)."""
    if op == "rmdir":
        try:  # leave the cgroup first (untimed) so rmdir sees it empty
            _write(f"{root}/{procs_file}", str(ident))
        except OSError:
            pass
    err = 0
    t0 = time.monotonic_ns()
    try:
        if op == "mkdir":
            os.mkdir(path)
        elif op == "attach":
            _write(f"{path}/{procs_file}", str(ident))
        else:
            os.rmdir(path)
    except OSError as exc:
        err = exc.errno or -1
    return t0, time.monotonic_ns(), err


@dataclass
class PhaseResult:
    release_ns: int
    t0: list[int]
    t1: list[int]
    errors: dict[str, int]


class ProcessCreators:
    """N forked creators in their own process group; a burst is one killpg()."""

    def __init__(self, n: int, parent: str, root: str) -> None:
        self.n, self.pids = n, []
        self.rfd, wfd = os.pipe()
        sigs = [*_OP_SIGNALS.values(), _QUIT]
        signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
        self.pgid = 0
        for i in range(n):
            pid = os.fork()
            if pid == 0:
                os.close(self.rfd)
                code = 0
                try:
                    os.setpgid(0, self.pgid)
                    self._child(i, parent, root, wfd, set(sigs))
                except BaseException:  # noqa: BLE001 - never return into the parent's code
                    code = 1
                os._exit(code)
            try:
                os.setpgid(pid, self.pgid)
            except OSError:
                pass  # the child did it already
            self.pgid = self.pgid or pid
            self.pids.append(pid)
        os.close(wfd)

    @staticmethod
    def _child(i: int, parent: str, root: str, wfd: int, sigs: set[int]) -> None:
        path, me = f"{parent}/c{i}", os.getpid()
        # keyed by the Signals member, looked up with sigwait's int (an IntEnum equals it)
        ops: dict[int, tuple[int, str]] = {sig: (k, op)
                                           for k, (op, sig) in enumerate(_OP_SIGNALS.items())}
        while True:
            sig = signal.sigwait(sigs)
            if sig == _QUIT:
                return
            k, op = ops[sig]
            t0, t1, err = _do_op(op, path, root, "cgroup.procs", me)
            os.write(wfd, _RECORD.pack(i, k, t0, t1, err))

    def burst(self, op: str, timeout: float) -> PhaseResult:
        release = time.monotonic_ns()
        os.killpg(self.pgid, _OP_SIGNALS[op])
        return _collect(self.rfd, self.n, release, timeout)

    def close(self) -> None:
        os.killpg(self.pgid, _QUIT)
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
    res = PhaseResult(release, [0] * n, [0] * n, {})
    for i, _k, t0, t1, err in _RECORD.iter_unpack(buf):
        res.t0[i], res.t1[i] = t0, t1
        if err:
            name = errno.errorcode.get(err, str(err))
            res.errors[name] = res.errors.get(name, 0) + 1
    return res


class ThreadCreators:
    """N threads released by a threading.Barrier (for comparison: see the module doc)."""

    def __init__(self, n: int, parent: str, root: str) -> None:
        self.n, self.parent, self.root = n, parent, root
        self.go = threading.Barrier(n + 1)
        self.op = ""
        self.rfd, self.wfd = os.pipe()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, i: int) -> None:
        path = f"{self.parent}/c{i}"
        while True:
            self.go.wait()
            if self.op == "quit":
                return
            t0, t1, err = _do_op(self.op, path, self.root, "tasks", threading.get_native_id())
            os.write(self.wfd, _RECORD.pack(i, OPS.index(self.op), t0, t1, err))

    def burst(self, op: str, timeout: float) -> PhaseResult:
        self.op = op
        release = time.monotonic_ns()
        self.go.wait(timeout)
        return _collect(self.rfd, self.n, release, timeout)

    def close(self) -> None:
        self.op = "quit"
        self.go.wait(10.0)
        for t in self.threads:
            t.join(10.0)
        os.close(self.rfd)
        os.close(self.wfd)


# --- one repetition ---------------------------------------------------------------------------

def fast_path_count(parent: str, n: int, probe_ino: int) -> int:
    """Creations served by the pool as filled before the burst: inode below the probe's."""
    count = 0
    for i in range(n):
        try:
            if os.stat(f"{parent}/c{i}").st_ino < probe_ino:
                count += 1
        except OSError:
            pass
    return count


def run_rep(h: Hierarchy, creators: ProcessCreators | ThreadCreators, sc: Scenario, n: int,
            ops: list[str], period_ns: int, cpus: list[int], timeout: float) -> dict[str, Any]:
    h.reset(sc.pool_size)
    probe = f"{h.mountpoint}/probe"
    os.mkdir(probe)
    probe_ino = os.stat(probe).st_ino
    load = LoadGen(sc.load, period_ns, cpus)
    rep: dict[str, Any] = {"ops": {}}
    try:
        load.start()
        if sc.load > 0:
            time.sleep(max(0.05, 5 * period_ns / 1e9))  # let the loaders reach their rhythm
        for op in ops:
            if op == "rmdir" and sc.pool_size:
                rep["fast_path"] = fast_path_count(h.parent, n, probe_ino)
            res = creators.burst(op, timeout)
            if op == "mkdir" and "rmdir" not in ops and sc.pool_size:
                rep["fast_path"] = fast_path_count(h.parent, n, probe_ino)
            rep["ops"][op] = {
                "release_ns": res.release_ns,
                "start_ns": [t - res.release_ns for t in res.t0],
                "lat_ns": [b - a for a, b in zip(res.t0, res.t1)],
                "errors": res.errors,
            }
    finally:
        rep["load_share"] = load.stop()
        os.rmdir(probe)
    rep.setdefault("fast_path", 0)
    return rep


# --- main -------------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=400, help="concurrent creators per burst")
    p.add_argument("--reps", type=int, default=5, help="repetitions of every scenario")
    p.add_argument("--load", type=float, default=0.4,
                   help="background busy share of every CPU in loaded scenarios (0 = no "
                        "loaded scenarios)")
    p.add_argument("--period-ms", type=float, default=10.0, help="duty-cycle period")
    p.add_argument("--pool-small", type=int, default=0, help="pool-small size (default N/4)")
    p.add_argument("--ops", default=",".join(OPS), help="comma list of " + ",".join(OPS))
    p.add_argument("--workers", choices=("processes", "threads"), default="processes")
    p.add_argument("--controller", default="auto",
                   help="v1 controller list to mount, or auto (" +
                        " / ".join(CONTROLLER_CHOICES) + ")")
    p.add_argument("--supply-delay-ms", type=int, default=-1,
                   help="set kernel.cgroup_supply_delay_time for the run (-1: leave it)")
    p.add_argument("--burst-timeout", type=float, default=120.0)
    p.add_argument("--out", help="write the JSON here (default: stdout)")
    p.add_argument("--pid1", action="store_true",
                   help="act as the guest's init: mount the basics, run, power off")
    p.add_argument("--out-tag", help="with --pid1: 9p tag of the writable output share")
    a = p.parse_args(argv)
    a.ops = [o for o in a.ops.split(",") if o]
    bad = [o for o in a.ops if o not in OPS]
    if bad or "mkdir" not in a.ops:
        p.error(f"--ops: unknown {bad} or mkdir missing (choose from {', '.join(OPS)})")
    a.ops = [o for o in OPS if o in a.ops]
    if a.n < 1 or a.reps < 1 or not 0 <= a.load <= 1 or a.period_ms <= 0:
        p.error("--n and --reps must be >= 1, --load within [0, 1], --period-ms > 0")
    a.pool_small = a.pool_small or max(1, a.n // 4)
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
    controller = pick_controller(a.controller, read_proc_cgroups(_read("/proc/cgroups")))
    h = Hierarchy("/sys/fs/cgroup/cgbench", controller)
    mount("cgroup", h.mountpoint, "cgroup", 0, controller)
    sysctl = "/proc/sys/kernel/cgroup_supply_delay_time"
    has_pool = h.has_pool()
    delay = int(_read(sysctl)) if os.path.exists(sysctl) else None
    if has_pool and a.supply_delay_ms >= 0:
        _write(sysctl, str(a.supply_delay_ms))
        delay = a.supply_delay_ms
    scenarios = plan_scenarios(a.n, a.load, a.pool_small, has_pool)
    result: dict[str, Any] = {
        "format": FORMAT,
        "conditions": {
            "kernel": _kernel(), "cpus": len(cpus), "n": a.n, "reps": a.reps, "load": a.load,
            "period_ms": a.period_ms, "ops": a.ops, "workers": a.workers,
            "controller": controller, "pool_support": has_pool,
            "supply_delay_ms": delay, "python": platform.python_version(),
            "clock": "CLOCK_MONOTONIC", "clocksource": _clocksource(),
        },
        "scenarios": [{"name": s.name, "pool": s.pool, "pool_size": s.pool_size,
                       "load": s.load, "reps": []} for s in scenarios],
    }
    os.mkdir(h.parent)
    kind = ProcessCreators if a.workers == "processes" else ThreadCreators
    t_start = time.monotonic()
    creators = kind(a.n, h.parent, h.mountpoint)
    log(f"cgbench: {a.n} {a.workers} ready in {time.monotonic() - t_start:.1f}s; "
        f"controller {controller}, pool support {'yes' if has_pool else 'no'}, "
        f"{len(cpus)} CPUs, {len(scenarios)} scenarios x {a.reps} reps")
    try:
        for r in range(a.reps):
            for s, entry in zip(scenarios, result["scenarios"]):
                t0 = time.monotonic()
                rep = run_rep(h, creators, s, a.n, a.ops, int(a.period_ms * 1e6), cpus,
                              a.burst_timeout)
                entry["reps"].append(rep)
                m = sorted(rep["ops"]["mkdir"]["lat_ns"])
                burst = max(x + y for x, y in zip(rep["ops"]["mkdir"]["start_ns"],
                                                  rep["ops"]["mkdir"]["lat_ns"]))
                log(f"cgbench: rep {r + 1}/{a.reps} {s.name:18s} mkdir p50 "
                    f"{m[len(m) // 2] / 1e6:.2f}ms max {m[-1] / 1e6:.2f}ms burst "
                    f"{burst / 1e6:.1f}ms fast {rep['fast_path']}/{a.n} load "
                    f"{rep['load_share']} ({time.monotonic() - t0:.1f}s)")
    finally:
        creators.close()
        h.reset(0)
        os.rmdir(h.parent)
        umount(h.mountpoint)
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
