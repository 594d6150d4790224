"""The results folder (`--out`): what the pipeline wrote there, and clearing it at the start of
the next run, so that an old junit.xml can never pass for this run's result.

The pipeline owns `junit.xml`, `summary.json`, `kcidb.json` and what it writes under
`<variant>/`; it never deletes a file it did not write. A manifest (`.pipeline-results.json`)
records, per variant folder, the files that were already there (the user's) when the run
started (written before any result, so a run that died half-way is cleared by the next too),
and at the end of the run the files the run wrote: the next run deletes exactly those.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MANIFEST = ".pipeline-results.json"
TOP_FILES = ("junit.xml", "summary.json", "kcidb.json")


def _files(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() or p.is_symlink()}


def _remove_empty_dirs(folder: Path) -> None:
    for d in sorted((p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()),
                    key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()
        except OSError:
            pass  # not empty: something of the user's is in it
    try:
        folder.rmdir()
    except OSError:
        pass


def clear_previous(out: Path, log: object = None) -> list[Path]:
    """Delete the previous run's results in `out` (see the module docstring); returns what
    was deleted. Without a manifest (a folder from an older pipeline) only the TOP_FILES
    (junit.xml, summary.json, kcidb.json) go: the run overwrites them anyway."""
    removed: list[Path] = []
    for name in TOP_FILES:
        path = out / name
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(path)
    manifest = out / MANIFEST
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        data = {}
    for name, info in (data.get("variants") or {}).items():
        folder = out / name
        if not isinstance(info, dict) or "/" in name or name in ("", ".", "..") \
                or not folder.is_dir() or folder.is_symlink():
            continue
        if isinstance(info.get("written"), list):
            doomed = _files(folder) & set(info["written"])
        else:  # the run died before it finished: all but what was there before it
            doomed = _files(folder) - set(info.get("user_files") or [])
        for rel in sorted(doomed):
            path = folder / rel
            path.unlink()
            removed.append(path)
        _remove_empty_dirs(folder)
    if manifest.exists():
        manifest.unlink()
    if log is not None and removed:
        log(f"  cleared {len(removed)} result file(s) of the previous run in {out}")  # type: ignore[operator]
    return removed


def start_run(out: Path, variants: list[str], log: object = None) -> None:
    """Clear the previous results and record the user's files in the variant folders."""
    out.mkdir(parents=True, exist_ok=True)
    clear_previous(out, log)
    data = {"variants": {name: {"user_files": sorted(_files(out / name))} for name in variants}}
    tmp = out / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(out / MANIFEST)


def finish_run(out: Path) -> None:
    """Record, per variant folder, the files this run wrote (all but the user's)."""
    manifest = out / MANIFEST
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return
    for name, info in (data.get("variants") or {}).items():
        info["written"] = sorted(_files(out / name) - set(info.get("user_files") or []))
    tmp = out / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(manifest)
