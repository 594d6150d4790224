"""Find kernel splats (panics, oopses, WARNs, lockdep reports ...) in console text.

Pure functions over lines, so they can be fed captured logs in tests. Console lines may
carry a printk timestamp ("[    1.234567] ") and, on a serial console, stray carriage
returns; both are ignored when matching.
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
        ("atomic-sleep", r"sleeping function called from invalid context"),
        ("hung-task", r"INFO: task .* blocked for more than"),
        ("rcu-stall", r"rcu: INFO: .* detected stalls"),
        ("list-corruption", r"list_(add|del) corruption"),
        ("debugobjects", r"ODEBUG: "),
        ("ubsan", r"UBSAN: "),
        ("kasan", r"KASAN: "),
        ("panic", r"Kernel panic - not syncing"),
        ("bug", r"\bBUG: "),
        ("warning", r"\bWARNING: "),
        ("oops", r"\bOops: "),
        ("gpf", r"general protection fault"),
    ))

_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
_END = re.compile(r"---\[ end (trace|Kernel panic)")
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
    """A console line without carriage returns and printk timestamp."""
    return _TIMESTAMP.sub("", line.replace("\r", "").rstrip())


def splat_kind(line: str) -> str | None:
    """The kind of splat whose first line this is, or None."""
    text = clean(line)
    for kind, rx in SPLAT_STARTS:
        if rx.search(text):
            return kind
    return None


def is_panic(line: str) -> bool:
    return "Kernel panic - not syncing" in line


def find_splats(lines: list[str], ignore: re.Pattern[str] | None = None) -> list[Splat]:
    """Every splat in `lines`, each with the lines that follow it up to its end marker (or
    the next splat, or MAX_SPLAT_LINES). Lines matching `ignore` (the pipeline's own markers)
    are skipped."""
    splats: list[Splat] = []
    current: Splat | None = None
    for raw in lines:
        if ignore is not None and ignore.search(raw):
            continue
        text = clean(raw)
        kind = splat_kind(text)
        if kind is not None and not (current and current.kind == "panic"):
            current = Splat(kind, [text])
            splats.append(current)
            continue
        if current is None:
            continue
        current.lines.append(text)
        if _END.search(text) or len(current.lines) >= MAX_SPLAT_LINES:
            current = None
    return splats
