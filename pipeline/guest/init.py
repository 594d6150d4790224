#!/usr/bin/python3
"""PID 1 of the test guest (stdlib only: it must not import the host package).

The kernel runs this with the host's / as a read-only 9p root. It mounts what the tests
need, reads the host's request from the writable `out` share, runs pytest there with the
guest plugin, and reboots (QEMU runs with -no-reboot, so a reboot ends it). The protocol is
described in docs/guest-protocol.md.
"""

import ctypes
import json
import os
import subprocess
import sys
import traceback

MARK = "@@PIPELINE:"
OUT = "/run/pipeline-out"
RB_AUTOBOOT = 0x01234567
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8

libc = ctypes.CDLL(None, use_errno=True)


def say(event: str, **fields) -> None:
    print(MARK + json.dumps({"event": event, **fields}), flush=True)


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    os.makedirs(target, exist_ok=True)
    if libc.mount(source.encode(), target.encode(), fstype.encode(), flags,
                  data.encode() or None) != 0:
        err = ctypes.get_errno()
        if err != 16:  # EBUSY: already mounted (devtmpfs with DEVTMPFS_MOUNT)
            raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}")


def setup() -> dict:
    """Mount what the tests need; return the host's request."""
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID)
    for where in ("/run", "/sys/fs/cgroup", "/dev/shm"):
        mount("tmpfs", where, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    mount("out", OUT, "9p", 0, "trans=virtio,version=9p2000.L,cache=none")
    with open(f"{OUT}/request.json") as f:
        request = json.load(f)
    return request


def host_tmp_needed(request: dict) -> bool:
    """Does the request use files under the host's /tmp (e.g. a CI clone there)?"""
    needed = [request["python"], request["plugin_dir"], *request["tests"]]
    return any(os.path.abspath(p) == "/tmp" or os.path.abspath(p).startswith("/tmp/")
               for p in needed)


def scratch_dir(request: dict) -> str:
    """A writable tmpfs for TMPDIR: /tmp, unless a tmpfs there would hide the host files
    the request needs; then /run/tmp."""
    if host_tmp_needed(request):
        os.makedirs("/run/tmp", mode=0o1777, exist_ok=True)
        return "/run/tmp"
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    return "/tmp"


def run_tests(request: dict) -> int:
    tmp = scratch_dir(request)
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": tmp, "TMPDIR": tmp, "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": request["plugin_dir"], "PIPELINE_RESULTS": f"{OUT}/results.jsonl",
        "LANG": "C.UTF-8",
    }
    argv = [request["python"], "-m", "pytest", "-p", "no:cacheprovider",
            "-p", "pipeline_guest_plugin", "-v", "-rs", *request["tests"]]
    with open(f"{OUT}/pytest.log", "w") as log:
        return subprocess.call(argv, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)


def main() -> None:
    try:
        request = setup()
        say("ready", kernel=os.uname().release)
        rc = run_tests(request)
        say("done", exit=rc)
    except Exception:  # noqa: BLE001 - PID 1 must report and power off, whatever happened
        traceback.print_exc()
        say("init-error", details=traceback.format_exc())
    finally:
        sys.stdout.flush()
        os.sync()
        libc.reboot(RB_AUTOBOOT)


if __name__ == "__main__":
    main()
