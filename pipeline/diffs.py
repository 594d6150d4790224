"""Unified-diff hunk headers (`@@ -a,b +c,d @@ context`), as git writes them: one parser for
series import, rebase and the compiled-code check."""

from __future__ import annotations

import re
from dataclasses import dataclass

HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$")


@dataclass(frozen=True)
class HunkHeader:
    old_start: int
    old_len: int          # a missing count means 1
    new_start: int
    new_len: int
    context: str          # what git printed after the second @@ (the function, usually)


def hunk_header(line: str) -> HunkHeader | None:
    """The header of a hunk, or None when `line` is not one."""
    m = HUNK.match(line)
    if m is None:
        return None
    return HunkHeader(int(m.group(1)), int(m.group(2) or 1), int(m.group(3)),
                      int(m.group(4) or 1), m.group(5).strip())
