"""Read what the guest reported: protocol markers on the console and the results file.

See docs/guest-protocol.md. The results file is authoritative when it has a test's result;
the console markers say which tests were collected and started, which is all that is left
when the guest died in the middle of a test.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

MARK = "@@PIPELINE:"
MARK_RE = re.compile(re.escape(MARK) + r"(\{.*\})")
MARK_LINE = re.compile(re.escape(MARK))  # any line carrying a marker, even a broken one
RESULTS = "results.jsonl"
REQUEST = "request.json"


@dataclass
class Event:
    event: str
    fields: dict


def request_json(python: Path, plugin_dir: Path, tests: list[Path]) -> str:
    """The host's request.json: what the guest init runs."""
    return json.dumps({"python": str(python), "plugin_dir": str(plugin_dir),
                       "tests": [str(t) for t in tests]}, indent=1)


def parse_marker(line: str) -> Event | None:
    """The protocol event on a console line, or None (kernel text mixed into the line may
    break the JSON: such a line is ignored, the results file still has the event)."""
    m = MARK_RE.search(line)
    if not m:
        return None
    try:
        data = json.loads(m.group(1))
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or "event" not in data:
        return None
    return Event(str(data.pop("event")), data)


def read_results(path: Path) -> list[Event]:
    """Events of the results file; a torn line (guest died mid-write) is dropped."""
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "event" in data:
            events.append(Event(str(data.pop("event")), data))
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
