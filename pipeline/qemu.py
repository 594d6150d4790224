"""Build the QEMU command line for a guest from pipeline/data/qemu.yaml and the job's settings."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import StageFailed

DATA = Path(__file__).parent / "data" / "qemu.yaml"


@dataclass
class Machine:
    """The machine settings file, read once per run."""

    binary: str
    debian_package: str
    machine_args: list[str]
    root_tag: str
    root_path: str
    root_options: str
    out_tag: str
    out_options: str
    kernel_args: list[str]
    probe_seconds: float

    @classmethod
    def load(cls, path: Path = DATA) -> Machine:
        raw = yaml.safe_load(path.read_text())
        return cls(
            binary=raw["binary"], debian_package=raw["debian_package"],
            machine_args=[str(a) for a in raw["machine_args"]],
            root_tag=raw["root_share"]["tag"], root_path=raw["root_share"]["path"],
            root_options=raw["root_share"]["options"],
            out_tag=raw["out_share"]["tag"], out_options=raw["out_share"]["options"],
            kernel_args=[str(a) for a in raw["kernel_args"]],
            probe_seconds=float(raw["probe_seconds"]))

    def find_binary(self) -> str:
        """Absolute path of QEMU, or StageFailed naming the Debian package to install."""
        found = shutil.which(self.binary)
        if not found:
            raise StageFailed(f"{self.binary} not found: install it with "
                              f"'apt-get install {self.debian_package}'")
        return found


def qemu_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = out.splitlines()[0] if out else ""
    return first.removeprefix("QEMU emulator version ").strip() or "unknown"


def guest_argv(machine: Machine, binary: str, kernel: Path, *, accel: str, memory: str,
               smp: int, init: str | None, out_share: Path | None, kernel_args: list[str],
               qemu_args: list[str]) -> list[str]:
    """The whole QEMU argv (a list: nothing goes through a shell)."""
    append = list(machine.kernel_args)
    if init:
        append.append(f"init={init}")
    append += kernel_args
    argv = [binary, "-accel", accel, "-m", memory, "-smp", str(smp), *machine.machine_args,
            "-kernel", str(kernel),
            "-fsdev", f"local,id=rootfs,path={machine.root_path},{machine.root_options}",
            "-device", f"virtio-9p-pci,fsdev=rootfs,mount_tag={machine.root_tag}"]
    if out_share is not None:
        argv += ["-fsdev", f"local,id=outfs,path={out_share},{machine.out_options}",
                 "-device", f"virtio-9p-pci,fsdev=outfs,mount_tag={machine.out_tag}"]
    argv += ["-append", " ".join(append), *qemu_args]
    return argv
