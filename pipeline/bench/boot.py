"""Boot a kernel whose init is the cgroup benchmark (pipeline/bench/guest/cgbench.py) and fetch
its JSON.

The benchmark does not run under pytest (run_guest's job), so it gets this small dedicated
boot, but on the very machine the tests boot: the QEMU command line comes from
pipeline.qemu.guest_argv with pipeline/data/qemu.yaml and the job's qemu section (memory,
vCPUs, accel, extra kernel/QEMU words, root), the host / as the read-only 9p root and the
machine's writable out share, where the guest writes cgbench.json. The guest powers off by
itself with reboot(2); -no-reboot makes QEMU exit then.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import proc
from ..boot import BootSettings, probe_accel
from ..errors import StageFailed
from ..job import QemuSettings
from ..log import Logger, rerun_line
from ..qemu import Machine as QemuMachine
from ..qemu import guest_argv
from ..qemu import qemu_version as qemu_version_of

RESULT_NAME = "cgbench.json"
GUEST_SCRIPT = Path(__file__).resolve().parent / "guest" / "cgbench.py"


@dataclass
class Machine:
    """The job's qemu section (pipeline.job.QemuSettings) as the bench boots it."""

    memory: str = "1G"
    smp: int = 2
    accel: str = "tcg"            # "kvm" | "tcg" (resolve "auto" before: see resolve_accel)
    kernel_args: list[str] = field(default_factory=list)
    qemu_args: list[str] = field(default_factory=list)
    root: str = ""                # host folder shown as the guest's / ("": the machine's)

    @classmethod
    def of_job(cls, qemu: QemuSettings) -> Machine:
        return cls(memory=qemu.memory, smp=qemu.smp, accel=qemu.accel,
                   kernel_args=list(qemu.kernel_args), qemu_args=list(qemu.qemu_args),
                   root=str(qemu.root) if qemu.root else "")


@dataclass
class GuestRun:
    ok: bool
    data: dict[str, Any] | None   # the guest's cgbench.json
    duration: float
    failure: str                  # "" when ok
    console: Path
    command: list[str]


def qemu_argv(kernel: Path, machine: Machine, out_dir: Path, python: Path,
              guest_args: list[str], script: Path = GUEST_SCRIPT,
              qemu: QemuMachine | None = None) -> list[str]:
    """QEMU argv (the tests' machine) whose guest init is `python -B script --pid1
    --out-tag=<the machine's out tag> guest_args`: the kernel hands the words after `--` to
    init (at most 32 of them)."""
    qemu = qemu or QemuMachine.load()
    init = [str(python), "-B", str(script), "--pid1", f"--out-tag={qemu.out_tag}", *guest_args]
    if len(init) > 32:
        raise ValueError("too many guest arguments for the kernel's init argv (max 32)")
    return guest_argv(qemu, qemu.binary, kernel, accel=machine.accel, memory=machine.memory,
                      smp=machine.smp, init=init, out_share=out_dir,
                      kernel_args=machine.kernel_args, qemu_args=machine.qemu_args,
                      root=machine.root or None)


def qemu_version() -> str:
    """The version of the machine's QEMU (pipeline.qemu.qemu_version)."""
    return qemu_version_of(QemuMachine.load().binary)


def resolve_accel(accel: str, kernel: Path, log: Logger) -> str:
    """'auto' -> pipeline.boot.probe_accel (a short KVM boot), else `accel` itself."""
    if accel != "auto":
        return accel
    return probe_accel(kernel, BootSettings(accel="auto"), log)


def run_bench_guest(kernel: Path, out_dir: Path, machine: Machine, python: Path,
                    guest_args: list[str], timeout: float,
                    log: Logger) -> GuestRun:
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
        qemu = QemuMachine.load()
        raise StageFailed(f"{qemu.binary} not found (Debian package {qemu.debian_package})",
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
