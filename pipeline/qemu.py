"""Build the QEMU command line for a guest from pipeline/data/qemu.yaml and the job's settings."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import safeyaml
from .errors import BadInput, StageFailed

DATA = Path(__file__).parent / "data" / "qemu.yaml"


@dataclass
class Machine:
    """The machine settings file (data, not code), read once per boot."""

    binary: str
    debian_package: str
    machine_args: list[str]
    accel_args: dict[str, list[str]]
    root_tag: str
    root_path: str
    root_options: str
    out_tag: str
    out_options: str
    kernel_args: list[str]
    probe_seconds: float
    probe_memory: str
    probe_banner: str
    interactive_serial: list[str] = field(default_factory=list)
    image: str = "arch/x86/boot/bzImage"   # the built kernel, relative to the build folder
    default_memory: str = "1G"     # what a job's qemu: section does not set
    default_smp: int = 2
    default_accel: str = "auto"

    @classmethod
    def load(cls, path: Path = DATA) -> Machine:
        try:
            raw, _ = safeyaml.load(path, "QEMU settings file")
            defaults = raw.get("defaults") or {}
            return cls(
                binary=str(raw["binary"]), debian_package=str(raw["debian_package"]),
                machine_args=[str(a) for a in raw["machine_args"]],
                accel_args={str(k): [str(a) for a in v]
                            for k, v in (raw.get("accel_args") or {}).items()},
                root_tag=raw["root_share"]["tag"], root_path=raw["root_share"]["path"],
                root_options=raw["root_share"]["options"],
                out_tag=raw["out_share"]["tag"], out_options=raw["out_share"]["options"],
                kernel_args=[str(a) for a in raw["kernel_args"]],
                probe_seconds=float(raw["probe_seconds"]),
                probe_memory=str(raw.get("probe_memory", "256M")),
                probe_banner=str(raw.get("probe_banner", "Linux version")),
                interactive_serial=[str(a) for a in raw.get("interactive_serial") or []],
                image=str(raw.get("image", "arch/x86/boot/bzImage")),
                default_memory=str(defaults.get("memory", "1G")),
                default_smp=int(defaults.get("smp", 2)),
                default_accel=str(defaults.get("accel", "auto")))
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise BadInput(f"{path}: bad QEMU settings file: {exc!r}") from exc

    def find_binary(self) -> str:
        """Absolute path of QEMU, or StageFailed naming the Debian package to install."""
        found = shutil.which(self.binary)
        if not found:
            raise StageFailed(f"{self.binary} not found in PATH: install it with "
                              f"'apt-get install {self.debian_package}'")
        return found


def qemu_version(binary: str) -> str:
    """'7.2.x' from `qemu-system-x86_64 --version`, or 'unknown'."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = out.splitlines()[0] if out else ""
    return first.removeprefix("QEMU emulator version ").strip() or "unknown"


def fsdev_escape(value: str) -> str:
    """A value inside a QEMU -fsdev option list: commas are doubled."""
    return value.replace(",", ",,")


def guest_argv(machine: Machine, binary: str, kernel: Path, *, accel: str, memory: str,
               smp: int, init: list[str] | None, out_share: Path | None,
               kernel_args: list[str], qemu_args: list[str],
               root: str | None = None, interactive: bool = False) -> list[str]:
    """The whole QEMU argv (a list: nothing goes through a shell).

    `init` is the guest's PID 1 as an argv: its first word becomes `init=`, the rest are
    handed to it after `--` on the kernel command line (the kernel passes everything after
    `--` to init). The job's kernel_args come after the machine's, before `--`, so a job
    may override any of them (the kernel keeps the last value of a parameter). `root` is
    the host folder exported as the guest's / (default: the machine's, the host's /).
    `interactive` (pipeline shell): the machine's interactive_serial instead of its
    `-serial stdio`, so that Ctrl-C goes to the guest."""
    append = list(machine.kernel_args)
    if init:
        append.append(f"init={init[0]}")
    append += kernel_args
    if init and len(init) > 1:
        append += ["--", *init[1:]]
    for word in append:
        if not word or any(c.isspace() for c in word):
            raise BadInput(f"kernel command line word {word!r} is empty or has white space "
                           "(the kernel splits its command line at spaces)")
    root_path = fsdev_escape(root or machine.root_path)
    machine_args = list(machine.machine_args)
    if interactive and machine.interactive_serial:
        machine_args = _replace_serial(machine_args, machine.interactive_serial)
    argv = [binary, "-accel", accel, *machine.accel_args.get(accel, []),
            "-m", memory, "-smp", str(smp), *machine_args,
            "-kernel", str(kernel),
            "-fsdev", f"local,id=rootfs,path={root_path},{machine.root_options}",
            "-device", f"virtio-9p-pci,fsdev=rootfs,mount_tag={machine.root_tag}"]
    if out_share is not None:
        out_path = fsdev_escape(str(out_share))
        argv += ["-fsdev", f"local,id=outfs,path={out_path},{machine.out_options}",
                 "-device", f"virtio-9p-pci,fsdev=outfs,mount_tag={machine.out_tag}"]
    argv += ["-append", " ".join(append), *qemu_args]
    return argv


def _replace_serial(args: list[str], serial: list[str]) -> list[str]:
    """`args` with its `-serial stdio` replaced by `serial` (appended if there is none)."""
    for i in range(len(args) - 1):
        if args[i] == "-serial" and args[i + 1] == "stdio":
            return [*args[:i], *serial, *args[i + 2:]]
    return [*args, *serial]
