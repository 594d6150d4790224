"""The output folder of a variant (OUT/<variant>): cleared of what an earlier run wrote, and
of nothing else.

A user may point --out at a folder that holds other files (or, by mistake, at a checkout):
a run removes only the files and folders that the pipeline itself writes there, and refuses
an OUT/<variant> that is a symlink (writing through it would land elsewhere).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from .errors import BadInput

# Everything a run writes into OUT/<variant> (runner, boot, kselftest, regress).
OUTPUT_FILES = ("build.log", "configure.log", "config", "bzImage", "console.log",
                "kselftest-regressions.md")
OUTPUT_DIRS = ("guest", "kselftest")
OUTPUT_DIR_PREFIXES = ("kselftest-retry-",)


def _ours(path: Path) -> bool:
    name = path.name
    return (name in OUTPUT_FILES or name in OUTPUT_DIRS
            or name.startswith(OUTPUT_DIR_PREFIXES))


def clear_variant_out(out: Path, log: Callable[[str], None]) -> None:
    """Make `out` an existing folder without the outputs of an earlier run; anything else in
    it is kept (and named in the log)."""
    if out.is_symlink():
        raise BadInput(f"{out} is a symlink: refused (the run would write through it)")
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    kept = []
    for entry in sorted(out.iterdir()):
        if not _ours(entry):
            kept.append(entry.name)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    if kept:
        log(f"  {out}: keeping {len(kept)} file(s) the pipeline did not write: "
            f"{', '.join(kept[:5])}{' ...' if len(kept) > 5 else ''}")
