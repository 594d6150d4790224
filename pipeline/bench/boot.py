"""Boot a kernel whose init is the cgroup benchmark (pipeline/bench/guest/cgbench.py) and fetch
its JSON.

The benchmark does not run under pytest (run_guest's job), so it gets this small dedicated
boot: the same machine (memory, vCPUs, accel, extra kernel/QEMU words as the job's qemu
section), the host / as the read-only 9p root, plus a second, writable 9p share of the
output folder where the guest writes cgbench.json. The guest powers off by itself with
reboot(2); -no-reboot makes QEMU exit then.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import proc
from ..errors import StageFailed
from ..log import rerun_line
from ..qemu import Machine as QemuMachine
from ..qemu import fsdev_escape

OUT_TAG = "benchout"
RESULT_NAME = "cgbench.json"
GUEST_SCRIPT = Path(__file__).resolve().parent / "guest" / "cgbench.py"


@dataclass
class Machine:
    """The QEMU machine; fill it from the job's qemu section so tests and bench match."""

    memory: str = "1G"
    smp: int = 2
    accel: str = "tcg"            # "kvm" | "tcg" (resolve "auto" before: see resolve_accel)
    kernel_args: list[str] = field(default_factory=list)
    qemu_args: list[str] = field(default_factory=list)


@dataclass
class GuestRun:
    ok: bool
    data: dict[str, Any] | None   # the guest's cgbench.json
    duration: float
    failure: str                  # "" when ok
    console: Path
    command: list[str]


def qemu_argv(kernel: Path, machine: Machine, out_dir: Path, python: Path,
              guest_args: list[str], script: Path = GUEST_SCRIPT) -> list[str]:
    """QEMU argv whose guest init is `python -B script --pid1 --out-tag ... guest_args`.
    The kernel hands the words after `--` to init (at most 32 of them). The 9p shares take
    their options from the tests' machine (pipeline/data/qemu.yaml): the writable one with
    mapped-xattr, so a root guest cannot plant setuid files or device nodes on the host."""
    shares = QemuMachine.load()
    accel = ["-accel", "kvm", "-cpu", "host"] if machine.accel == "kvm" else ["-accel", "tcg"]
    append = ["console=ttyS0", "root=root", "rootfstype=9p",
              "rootflags=trans=virtio,version=9p2000.L,cache=loose", "ro", "panic=-1",
              f"init={python}", *machine.kernel_args,
              "--", "-B", str(script), "--pid1", f"--out-tag={OUT_TAG}", *guest_args]
    if len(append) - append.index("--") > 31:
        raise ValueError("too many guest arguments for the kernel's init argv (max 32)")
    return ["qemu-system-x86_64", *accel, "-m", machine.memory, "-smp", str(machine.smp),
            "-nographic", "-no-reboot", "-kernel", str(kernel),
            "-fsdev", f"local,id=root,path={fsdev_escape(shares.root_path)},{shares.root_options}",
            "-device", "virtio-9p-pci,fsdev=root,mount_tag=root",
            "-fsdev", f"local,id={OUT_TAG},path={fsdev_escape(str(out_dir))},{shares.out_options}",
            "-device", f"virtio-9p-pci,fsdev={OUT_TAG},mount_tag={OUT_TAG}",
            *machine.qemu_args, "-append", " ".join(append)]


def qemu_version() -> str:
    try:
        out = subprocess.run(["qemu-system-x86_64", "--version"], check=False,
                             capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else "unknown"


def resolve_accel(accel: str, kernel: Path, log: Callable[[str], None]) -> str:
    """'auto' -> pipeline.boot.probe_accel when the boot module is there, else 'tcg'."""
    if accel != "auto":
        return accel
    try:
        from .. import boot  # helper B's module; optional here
    except ImportError:
        log("  accel auto: pipeline.boot is not available to probe KVM; using tcg")
        return "tcg"
    return boot.probe_accel(kernel, boot.BootSettings(accel="auto"), log)


def run_bench_guest(kernel: Path, out_dir: Path, machine: Machine, python: Path,
                    guest_args: list[str], timeout: float,
                    log: Callable[[str], None]) -> GuestRun:
    """Boot, stream the guest's `cgbench:` progress lines to the log, return its JSON.
    Guest-side failures (no JSON, timeout, panic) come back in GuestRun; a missing QEMU
    raises StageFailed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = out_dir / RESULT_NAME
    result.unlink(missing_ok=True)
    console = out_dir / "console.log"
    cmd = qemu_argv(kernel, machine, out_dir, python, guest_args)
    seen = 0

    def progress(_elapsed: float) -> None:
        nonlocal seen
        lines = console.read_text(errors="replace").splitlines()
        for line in lines[seen:]:
            if line.startswith("cgbench:"):
                log(f"  {line}")
        seen = len(lines)

    try:
        with console.open("wb") as f:
            done = proc.run(cmd, timeout=timeout, stdout=f, tick=progress, tick_every=5.0)
    except FileNotFoundError as exc:
        raise StageFailed("qemu-system-x86_64 not found (Debian package qemu-system-x86)",
                          str(exc)) from exc
    progress(0.0)
    failure = ""
    data = None
    if done.timed_out:
        failure = f"timed out after {timeout:.0f}s"
    elif not result.exists():
        tail = console.read_text(errors="replace").splitlines()[-15:]
        failure = (f"the guest wrote no {RESULT_NAME} (qemu exit {done.returncode}); "
                   "console tail:\n" + "\n".join(tail))
    else:
        try:
            data = json.loads(result.read_text())
        except ValueError as exc:
            failure = f"{result}: not JSON: {exc}"
    if failure:
        log(f"  rerun by hand: {rerun_line(cmd)}")
    return GuestRun(not failure, data, done.duration, failure, console, cmd)
