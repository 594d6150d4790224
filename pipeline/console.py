"""Find kernel splats (panics, oopses, WARNs, lockdep reports ...) in console text.

Pure functions over lines, so they can be fed captured logs in tests. Console lines may
carry a printk timestamp ("[    1.234567] ") and, on a serial console, stray carriage
returns; both are ignored when matching.

Where a splat ends: at its "---[ end trace" / "---[ end Kernel panic" line when it has one
(WARN, Oops, BUG, panic); otherwise (lockdep, sleeping-in-atomic, hung task ... reports end
with a bare backtrace) at the first line after its "Call Trace:" that does not look like a
backtrace or register dump; at the latest after MAX_SPLAT_LINES lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The first line of every report we treat as a splat; specific kinds before the generic
# BUG:/WARNING: prefixes they are printed with.
SPLAT_STARTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(rx)) for kind, rx in (
        ("lockdep", r"possible recursive locking detected"),
        ("lockdep", r"inconsistent lock state"),
        ("lockdep", r"possible circular locking dependency detected"),
        ("lockdep", r"possible irq lock inversion dependency detected"),
        ("lockdep", r"suspicious RCU usage"),
        ("lockdep", r"bad unlock balance detected"),
        ("lockdep", r"held lock freed"),
        ("lockdep", r"lock held when returning to user space"),
        ("lockdep", r"Nested lock was not taken"),
        ("atomic-sleep", r"sleeping function called from invalid context"),
        ("atomic-sleep", r"BUG: scheduling while atomic"),
        ("hung-task", r"INFO: task .* blocked for more than"),
        ("soft-lockup", r"watchdog: BUG: soft lockup"),
        ("hard-lockup", r"Watchdog detected hard LOCKUP"),
        ("rcu-stall", r"rcu: INFO: .* (detected|self-detected) stalls?"),
        ("list-corruption", r"list_(add|del) corruption"),
        ("debugobjects", r"ODEBUG: "),
        ("ubsan", r"UBSAN: "),
        ("kasan", r"(BUG: )?KASAN: "),
        ("kfence", r"BUG: KFENCE: "),
        ("kcsan", r"BUG: KCSAN: "),
        ("panic", r"Kernel panic - not syncing"),
        ("bug", r"kernel BUG at "),
        ("bug", r"\bBUG: "),
        ("warning", r"\bWARNING: "),
        ("oops", r"\bOops: "),
        ("gpf", r"general protection fault"),
    ))

_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
# printk's caller id ("[    T1] ", "[    C0] ") when CONFIG_PRINTK_CALLER is set.
_CALLER = re.compile(r"^\[\s*[TC]\d+\]\s?")
_END = re.compile(r"---\[ end (trace|Kernel panic)")
_CALL_TRACE = re.compile(r"^\s*Call Trace:|^\s*stack backtrace:|^\s*Backtrace:")
# Lines that still belong to a backtrace / register dump after "Call Trace:".
_TRACE_LINE = re.compile(
    r"^(\s|$)|\+0x[0-9a-f]+/0x[0-9a-f]+|^<\/?(TASK|IRQ|NMI|SOFTIRQ)>|"
    r"^(RIP|RSP|RAX|RDX|RBP|R1[0-5]|R[89]|FS|CS|CR2|DR[0-7]|PKRU|Code|Modules linked in|"
    r"CPU|Hardware name|Kernel Offset|irq event stamp|hardirqs|softirqs)\b")
MAX_SPLAT_LINES = 80


@dataclass
class Splat:
    kind: str
    lines: list[str]

    @property
    def title(self) -> str:
        return self.lines[0] if self.lines else ""

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def clean(line: str) -> str:
    """A console line without carriage returns, printk timestamp and caller id."""
    text = _TIMESTAMP.sub("", line.replace("\r", "").rstrip())
    return _CALLER.sub("", text)


def splat_kind(line: str) -> str | None:
    """The kind of splat whose first line this is, or None."""
    text = clean(line)
    for kind, rx in SPLAT_STARTS:
        if rx.search(text):
            return kind
    return None


def is_panic(line: str) -> bool:
    return "Kernel panic - not syncing" in line


# Splats after which the kernel is not worth running tests on: the faulting task was killed
# with locks held, so the test that triggered it usually hangs until its timeout, and every
# later verdict of that boot is suspect.
FATAL_KINDS = frozenset({"oops", "bug", "gpf", "panic"})


def is_fatal(line: str) -> bool:
    """Is `line` the first line of an Oops, a BUG, a general protection fault or a panic?"""
    return splat_kind(line) in FATAL_KINDS


class _Open:
    """A splat being collected."""

    def __init__(self, kind: str, first: str) -> None:
        self.splat = Splat(kind, [first])
        self.in_trace = bool(_CALL_TRACE.search(first))

    def take(self, text: str) -> bool:
        """Add `text` if it belongs to this splat; False when the splat ended before it."""
        if self.in_trace and not _TRACE_LINE.search(text) and not _END.search(text):
            return False
        self.splat.lines.append(text)
        if _CALL_TRACE.search(text):
            self.in_trace = True
        return not (_END.search(text) or len(self.splat.lines) >= MAX_SPLAT_LINES)


def find_splats(lines: list[str], ignore: re.Pattern[str] | None = None) -> list[Splat]:
    """Every splat in `lines`, each with the lines that belong to it (see the module doc).
    Lines matching `ignore` (the pipeline's own markers) are skipped. A report printed inside
    a panic (the panic's own backtrace) stays part of the panic."""
    splats: list[Splat] = []
    current: _Open | None = None
    for raw in lines:
        if ignore is not None and ignore.search(raw):
            continue
        text = clean(raw)
        kind = splat_kind(text)
        if kind is not None and not (current and current.splat.kind == "panic"):
            current = _Open(kind, text)
            splats.append(current.splat)
            continue
        if current is not None and not current.take(text):
            current = None
    return splats
