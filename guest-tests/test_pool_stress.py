"""Stress: concurrent mkdir/rmdir/rename/attach, pool toggling, supply-delay changes and
umount/remount of a hierarchy with a root pool, across several hierarchies at once, in
separate processes (so that the kernel really runs them in parallel). No operation may fail
unexpectedly, nothing may hang, and the host fails the test on any kernel splat (lockdep,
KASAN, ODEBUG, WARN, Oops) printed while it runs; teardown checks that every hierarchy goes
away, so nothing leaked.

Its length comes from the kernel command line (`pool_stress_seconds=N`, default 20): the
pipeline's short run uses the default, the long run (`pytest -m stress` on the host)
boots the lockdep and KASAN kernels with several minutes.
"""

from __future__ import annotations

import errno
import itertools
import os
import signal
import time
import traceback
from collections.abc import Callable

import pytest
from cgpool import (
    CGROUP_ROOT,
    NO_POOL,
    SUPPLY_DELAY,
    Hierarchy,
    cmdline_value,
    errname,
    figure,
    mount_v1,
    read,
    release_named,
    umount,
    write,
)

DEFAULT_SECONDS = 20
KINDS = ("named", "pids", "cpu,cpuacct")
CHURNERS = 2                     # per hierarchy
_tags = itertools.count()


def _seconds() -> float:
    return float(cmdline_value("pool_stress_seconds") or DEFAULT_SECONDS)


def _check(code: int, what: str) -> None:
    if code:
        raise OSError(code, f"{what}: {errname(code)}")


def _churn(h: Hierarchy, wid: int, deadline: float) -> None:
    """mkdir, rename, attach this process and back, rmdir, in P and in P's served child."""
    me = str(os.getpid())
    for i in itertools.count():
        if time.monotonic() > deadline:
            return
        base = h.path("P", f"w{wid}-{i}")
        os.mkdir(base, 0o700)
        os.rename(base, base + "r")
        base += "r"
        if i % 3 == 0:
            _check(write(os.path.join(base, "cgroup.procs"), me), f"attach to {base}")
            _check(write(h.path("cgroup.procs"), me), "attach back to the root")
        if i % 5 == 0:
            os.mkdir(os.path.join(base, "sub"))
            os.rmdir(os.path.join(base, "sub"))
        os.rmdir(base)


def _toggle(h: Hierarchy, deadline: float) -> None:
    size = h.path("P", "pool_size")
    for i in itertools.count():
        if time.monotonic() > deadline:
            return
        _check(write(size, str(1 + i % 8)), "enable")
        time.sleep(0.02 * (i % 4))
        _check(write(size, "0"), "disable")


def _delays(deadline: float) -> None:
    for i in itertools.count():
        if time.monotonic() > deadline:
            return
        _check(write(SUPPLY_DELAY, str((0, 5, 50, 0)[i % 4])), "supply delay")
        time.sleep(0.1)


def _mount_cycle(deadline: float) -> None:
    name = f"stress-{os.getpid()}"
    options, key, root = f"none,name={name}", f"name={name}", os.path.join(CGROUP_ROOT, name)
    for i in itertools.count():
        if time.monotonic() > deadline:
            break
        mount_v1(options, root)
        size = os.path.join(root, "pool_size")
        if read(size) == "0":
            _check(write(size, "2"), "enable the root's pool")
        for n in "abc":
            os.mkdir(os.path.join(root, n))
        for n in "cba":
            os.rmdir(os.path.join(root, n))
        if i % 2:
            _check(write(size, "0"), "disable the root's pool")
        umount(root)
    release_named(options, key, root)


def _spawn(name: str, func: Callable[[], None], errors_dir: str) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            func()
        except BaseException:  # noqa: BLE001 - reported through the errors file
            with open(os.path.join(errors_dir, name), "w") as f:
                f.write(traceback.format_exc())
            code = 1
        finally:
            os._exit(code)
    return pid


def test_concurrent_pool_stress(supply_delay):
    seconds = _seconds()
    supply_delay(0)
    tag = f"{os.getpid()}-{next(_tags)}"
    hs = [Hierarchy.mount(kind, f"{tag}-s{i}") for i, kind in enumerate(KINDS)]
    errors_dir = os.path.join("/run", f"stress-{tag}")
    os.makedirs(errors_dir)
    pids: dict[int, str] = {}
    try:
        if not hs[0].has_pool:
            pytest.skip(NO_POOL)
        for h in hs:
            h.mkdir("P")
        deadline = time.monotonic() + seconds
        for i, h in enumerate(hs):
            for w in range(CHURNERS):
                name = f"churn-{h.options}-{w}"
                pids[_spawn(name, lambda h=h, w=w: _churn(h, w, deadline), errors_dir)] = name
            name = f"toggle-{h.options}"
            pids[_spawn(name, lambda h=h: _toggle(h, deadline), errors_dir)] = name
        pids[_spawn("delays", lambda: _delays(deadline), errors_dir)] = "delays"
        pids[_spawn("mount-cycle", lambda: _mount_cycle(deadline), errors_dir)] = "mount-cycle"
        hung: list[str] = []
        end = deadline + 120
        while pids and time.monotonic() < end:
            pid, _status = os.waitpid(-1, os.WNOHANG)
            if pid:
                pids.pop(pid, None)
            else:
                time.sleep(0.1)
        for pid, name in pids.items():
            hung.append(name)
            os.kill(pid, signal.SIGKILL)
        failures = {n: read(os.path.join(errors_dir, n)).splitlines()[-1]
                    for n in sorted(os.listdir(errors_dir))}
        figure(f"stress_seconds={seconds:.0f} workers={len(hs) * (CHURNERS + 1) + 2}")
        assert not hung, f"workers still running 120 s after the deadline: {hung}"
        assert not failures, f"workers failed: {failures}"
        for h in hs:
            children = h.children("P")
            assert children == [], f"{h.options}: left in P: {children[:5]}"
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError as exc:
                if exc.errno not in (errno.ESRCH, errno.ECHILD):
                    raise
        for name in os.listdir(errors_dir):
            os.unlink(os.path.join(errors_dir, name))
        os.rmdir(errors_dir)
        for h in hs:
            h.teardown()
