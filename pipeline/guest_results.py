"""Read what the guest reported: protocol markers on the console and the results file.

See docs/guest-protocol.md. The results file is authoritative when it has a test's result;
the console markers say which tests were collected and started, which is all that is left
when the guest died in the middle of a test.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARK = "@@PIPELINE:"
MARK_RE = re.compile(re.escape(MARK) + r"(\{.*\})")
MARK_LINE = re.compile(re.escape(MARK))  # any line carrying a marker, even a broken one
RESULTS = "results.jsonl"
REQUEST = "request.json"

# The guest runs the kernel under test as root: everything it writes is untrusted input.
MAX_RESULTS_BYTES = 32 << 20    # the whole results file (a few KiB per test)
MAX_LINE = 1 << 20              # one event
MAX_TEXT = 256 << 10            # one message / details string
MAX_NODEID = 4096
MAX_TESTS = 100_000             # entries of a `collected` list
MAX_DEPTH = 8                   # nesting of an event (the protocol uses 2)
OUTCOMES = ("passed", "failed", "skipped", "error")


@dataclass
class Event:
    event: str
    fields: dict[str, Any]


def request_json(python: Path, plugin_dir: Path, tests: list[Path]) -> str:
    """The host's request.json: what the guest init runs."""
    return json.dumps({"python": str(python), "plugin_dir": str(plugin_dir),
                       "tests": [str(t) for t in tests]}, indent=1)


def command_request_json(python: Path, plugin_dir: Path, *, command: list[str] | None = None,
                         cwd: str = "", term: str = "", hostname: str = "",
                         size: tuple[int, int] = (0, 0)) -> str:
    """request.json of an exec (`command`) or shell boot (pipeline.mode= on the kernel
    command line says which): the command's argv, the host's working folder, $TERM, the
    guest's host name and the terminal's rows and columns."""
    return json.dumps({"python": str(python), "plugin_dir": str(plugin_dir), "tests": [],
                       "command": list(command or []), "cwd": cwd, "term": term,
                       "hostname": hostname, "size": list(size)}, indent=1)


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a decoded JSON value, stopping once it passes `limit`."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = item.values() if isinstance(item, dict) else item \
            if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + f"\n[... {len(text) - MAX_TEXT} characters cut by the host]"
    return text


def _nodeid(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_NODEID else None


def _checked(data: Any) -> Event | None:
    """The event in one decoded JSON object with every field checked and normalised; None
    when it cannot be attributed to anything. A malformed `result` of a known test becomes an
    error result of that test: one bad item fails that item, not the variant's results."""
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        return None
    if _depth(data, MAX_DEPTH) > MAX_DEPTH:
        return None
    kind = data.pop("event")
    if kind in ("start", "collect-error"):
        nodeid = _nodeid(data.get("nodeid"))
        if nodeid is None:
            return None
        fields: dict[str, Any] = {"nodeid": nodeid}
        if kind == "collect-error":
            fields["details"] = _text(data.get("details"))
        return Event(kind, fields)
    if kind == "result":
        nodeid = _nodeid(data.get("nodeid"))
        if nodeid is None:
            return None
        outcome, duration = data.get("outcome"), data.get("duration", 0.0)
        problems = []
        if outcome not in OUTCOMES:
            problems.append(f"outcome {str(outcome)[:40]!r}")
        if (isinstance(duration, bool) or not isinstance(duration, (int, float))
                or not math.isfinite(duration) or duration < 0):
            problems.append(f"duration {str(duration)[:40]!r}")
        if problems:
            return Event("result", {"nodeid": nodeid, "outcome": "error", "duration": 0.0,
                                    "message": "malformed result from the guest: "
                                               + ", ".join(problems),
                                    "details": _text(data.get("details"))})
        return Event("result", {"nodeid": nodeid, "outcome": outcome,
                                "duration": float(duration),
                                "message": _text(data.get("message")),
                                "details": _text(data.get("details"))})
    if kind == "collected":
        tests = data.get("tests")
        if not isinstance(tests, list):
            return None
        return Event(kind, {"tests": [t for t in tests[:MAX_TESTS] if _nodeid(t) is not None]})
    if kind == "done":
        code = data.get("exit")
        return Event(kind, {"exit": code if isinstance(code, int)
                            and not isinstance(code, bool) else None})
    if kind == "exit":
        status = data.get("status")
        return Event(kind, {"status": status if isinstance(status, int)
                            and not isinstance(status, bool) and 0 <= status <= 255 else None})
    if kind == "init-error":
        return Event(kind, {"details": _text(data.get("details")) or "guest init failed"})
    if kind == "ready":
        return Event(kind, {k: _text(v)[:200] for k, v in data.items() if isinstance(k, str)})
    return Event(kind[:100], {})


def _loads(text: str) -> Any:
    if len(text) > MAX_LINE:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):   # RecursionError: "[[[[..." from a hostile guest
        return None


def parse_marker(line: str) -> Event | None:
    """The protocol event on a console line, or None (kernel text mixed into the line may
    break the JSON: such a line is ignored, the results file still has the event)."""
    m = MARK_RE.search(line)
    if not m:
        return None
    return _checked(_loads(m.group(1)))


def read_untrusted(path: Path, limit: int) -> bytes | None:
    """At most `limit` bytes of the regular file `path`, never following a symlink (the guest
    may have made results.jsonl a link to a host file); None when it is not there or not a
    regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, size = [], 0
        while size < limit:
            chunk = os.read(fd, min(1 << 20, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_results(path: Path) -> list[Event]:
    """Events of the results file; a torn line (guest died mid-write), an oversized or
    malformed line is dropped, a malformed result fails only its test (see _checked). The
    file is read up to MAX_RESULTS_BYTES and never through a symlink."""
    data = read_untrusted(path, MAX_RESULTS_BYTES)
    if data is None:
        return []
    events = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        event = _checked(_loads(line))
        if event is not None:
            events.append(event)
    return events


@dataclass
class TestSlice:
    """One test as the console saw it: its kernel log lines and whether it finished."""

    nodeid: str
    lines: list[str] = field(default_factory=list)
    finished: bool = False
    outcome: str = ""


@dataclass
class ConsoleTrack:
    """Follows the console line by line (fed by the boot driver as lines arrive)."""

    ready: bool = False
    done: bool = False
    exit_code: int | None = None
    init_error: str = ""
    collected: list[str] = field(default_factory=list)
    tests: dict[str, TestSlice] = field(default_factory=dict)
    current: TestSlice | None = None
    outside: list[str] = field(default_factory=list)

    def feed(self, line: str) -> Event | None:
        event = parse_marker(line)
        if event is None:
            if MARK not in line:
                (self.current.lines if self.current else self.outside).append(line)
            return None
        self._apply(event)
        return event

    def _apply(self, event: Event) -> None:
        kind, f = event.event, event.fields
        if kind == "ready":
            self.ready = True
        elif kind == "collected":
            self.collected = [str(t) for t in f.get("tests", [])]
        elif kind == "start":
            nodeid = str(f.get("nodeid"))
            self.current = self.tests.setdefault(nodeid, TestSlice(nodeid))
        elif kind == "result":
            nodeid = str(f.get("nodeid"))
            t = self.tests.setdefault(nodeid, TestSlice(nodeid))
            t.finished, t.outcome = True, str(f.get("outcome", ""))
            self.current = None
        elif kind == "done":
            self.done = True
            self.exit_code = f.get("exit")
        elif kind == "init-error":
            self.init_error = str(f.get("details", "guest init failed"))

    def absorb_file_events(self, events: list[Event]) -> None:
        """Session-level events the console missed (a marker line garbled by kernel text)
        taken from the results file: ready, done, init-error."""
        missed = {"ready": not self.ready, "done": not self.done,
                  "init-error": not self.init_error}
        for ev in events:
            if missed.get(ev.event):
                self._apply(ev)
