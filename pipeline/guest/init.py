#!/usr/bin/python3
"""PID 1 of the test guest (stdlib only: it must not import the host package).

The host boots the kernel with `init=<python> -- -B <this file>`: the kernel hands the words
after `--` to init, so PID 1 is the very interpreter the tests run with (no dependence on
this file's executable bit or shebang, no shell needed in between).

With the host's / as a read-only 9p root, it mounts what the tests need (proc, sysfs,
devtmpfs, tmpfs on /run /dev/shm /sys/fs/cgroup and on /tmp unless the project lives
there (a CI clone under /tmp: then TMPDIR is /run/tmp), the writable `out` share), reads the
host's request from the share, says "ready" (the host's boot timeout ends there), runs
pytest with the guest plugin, says "done", syncs and reboots (QEMU runs with -no-reboot, so
that ends it). The protocol is described in docs/guest-protocol.md.
"""

import ctypes
import json
import os
import subprocess
import sys
import traceback

MARK = "@@PIPELINE:"
OUT = "/run/pipeline-out"
RESULTS = f"{OUT}/results.jsonl"
RB_AUTOBOOT = 0x01234567
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
EBUSY = 16

libc = ctypes.CDLL(None, use_errno=True)

# (source, target, fstype, flags, data, required). /run comes before the out share under it.
# /tmp is not here: see scratch_dir().
MOUNTS = (
    ("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "", True),
    ("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "", True),
    ("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "", True),
    ("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", True),
    ("tmpfs", "/sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755", True),
    ("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", False),
    ("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666",
     False),
    ("out", OUT, "9p", MS_NOSUID | MS_NODEV, "trans=virtio,version=9p2000.L,cache=none", True),
)


def say(event: str, **fields) -> None:
    """A protocol event on the console and, once the share is mounted, in the results file."""
    line = json.dumps({"event": event, **fields})
    print(MARK + line, flush=True)
    if os.path.ismount(OUT):
        try:
            with open(RESULTS, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass


def mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    try:
        os.makedirs(target, exist_ok=True)
    except OSError:
        pass  # /dev/pts on a devtmpfs exists already; the mount call says what is wrong
    if libc.mount(source.encode(), target.encode(), fstype.encode(), flags,
                  data.encode() or None) != 0:
        err = ctypes.get_errno()
        if err != EBUSY:  # already mounted (devtmpfs with CONFIG_DEVTMPFS_MOUNT)
            raise OSError(err, f"mount -t {fstype} {source} {target}: {os.strerror(err)}")


def setup() -> None:
    for source, target, fstype, flags, data, required in MOUNTS:
        try:
            mount(source, target, fstype, flags, data)
        except OSError as exc:
            if required:
                raise
            print(f"pipeline init: optional mount skipped: {exc}", flush=True)


def host_tmp_needed(request: dict) -> bool:
    """Does the request use files under the host's /tmp (e.g. a CI clone there)?"""
    needed = [request["python"], request["plugin_dir"], *request["tests"]]
    return any(os.path.abspath(p) == "/tmp" or os.path.abspath(p).startswith("/tmp/")
               for p in needed)


def scratch_dir(request: dict) -> str:
    """A writable tmpfs for TMPDIR: /tmp, unless a tmpfs there would hide the host files
    the request needs (the interpreter, the tests); then /run/tmp."""
    if host_tmp_needed(request):
        os.makedirs("/run/tmp", mode=0o1777, exist_ok=True)
        os.chmod("/run/tmp", 0o1777)
        return "/run/tmp"
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    return "/tmp"


def run_tests(request: dict, tmp: str) -> int:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": tmp, "TMPDIR": tmp, "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": request["plugin_dir"], "PIPELINE_RESULTS": RESULTS,
        "LANG": "C.UTF-8",
    }
    # No cache provider and no bytecode: / is read-only; pytest's tmp_path goes to TMPDIR.
    argv = [request["python"], "-m", "pytest", "-p", "no:cacheprovider",
            "-p", "pipeline_guest_plugin", "-v", "-rs", *request["tests"]]
    with open(f"{OUT}/pytest.log", "w") as log:
        return subprocess.call(argv, env=env, cwd=tmp, stdin=subprocess.DEVNULL,
                               stdout=log, stderr=subprocess.STDOUT)


def main() -> None:
    try:
        setup()
        with open(f"{OUT}/request.json") as f:
            request = json.load(f)
        tmp = scratch_dir(request)
        say("ready", kernel=os.uname().release)
        rc = run_tests(request, tmp)
        say("done", exit=rc)
    except BaseException:  # noqa: BLE001 - PID 1 must report and power off, whatever happened
        traceback.print_exc()
        say("init-error", details=traceback.format_exc())
    finally:
        sys.stdout.flush()
        os.sync()
        libc.reboot(RB_AUTOBOOT)


if __name__ == "__main__":
    main()
