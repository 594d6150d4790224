"""File and cache names made of free text (series names, tree specs, patch subjects).

Two rules, because their results are stored: `slug` names cache entries and branches (a
changed rule would orphan every cache entry), `patch_file_slug` is the name part git
format-patch gives a patch file (`0001-<slug>.patch`), so imported series look like
format-patch's output.
"""

from __future__ import annotations

import re


def slug(text: str, fallback: str, limit: int | None = None) -> str:
    """Runs of characters other than letters, digits, `_`, `.` and `-` become one `-`; cut
    to `limit` characters, then stripped of `-` at either end; `fallback` if nothing is left."""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
    if limit is not None:
        text = text[:limit]
    return text.strip("-") or fallback


def patch_file_slug(title: str, limit: int = 52) -> str:
    """format-patch's file name part: runs of other characters (`-` included) become one
    `-`, runs of dots one dot, no `-`/`.` at either end, at most `limit` characters."""
    text = re.sub(r"[^A-Za-z0-9._]+", "-", title)
    text = re.sub(r"\.+", ".", text).strip("-.")
    return text[:limit] or "patch"
