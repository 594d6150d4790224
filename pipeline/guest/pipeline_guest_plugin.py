"""pytest plugin loaded inside the guest (stdlib + pytest only; no host imports).

For every test it prints a start and an end marker on /dev/console, so the host can slice
the kernel log per test and knows which test was running if the guest dies, and appends
one JSON line with the result to $PIPELINE_RESULTS (the authoritative record).
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:       # for the annotations only: nothing of pytest is imported at run time
    import pytest

MARK = "@@PIPELINE:"


class _Reporter:
    def __init__(self) -> None:
        self.console = open("/dev/console", "w")  # noqa: SIM115 - kept for the session
        self.results = open(os.environ["PIPELINE_RESULTS"], "a")  # noqa: SIM115
        self.current: dict[str, dict[str, Any]] = {}

    def emit(self, event: str, **fields: object) -> None:
        line = json.dumps({"event": event, **fields})
        self.results.write(line + "\n")
        self.results.flush()
        os.fsync(self.results.fileno())
        short = {k: v for k, v in fields.items() if k in ("nodeid", "outcome", "tests")}
        self.console.write(MARK + json.dumps({"event": event, **short}) + "\n")
        self.console.flush()

    # --- hooks ---------------------------------------------------------------------------
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.emit("collect-error", nodeid=report.nodeid, details=str(report.longrepr))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.emit("collected", tests=[item.nodeid for item in session.items])

    def pytest_runtest_logstart(self, nodeid: str,
                                location: tuple[str, int | None, str]) -> None:
        self.current[nodeid] = {"outcome": "passed", "duration": 0.0, "message": "",
                                "details": "", "start": time.monotonic()}
        self.emit("start", nodeid=nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        state = self.current.setdefault(report.nodeid, {
            "outcome": "passed", "duration": 0.0, "message": "", "details": "",
            "start": time.monotonic()})
        if report.skipped and state["outcome"] == "passed":
            state["outcome"] = "skipped"
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            state["message"] = reason.removeprefix("Skipped: ")
        elif report.failed:
            state["outcome"] = "failed" if report.when == "call" else "error"
            text = str(report.longrepr)
            state["details"] += text + "\n"
            crash = getattr(report.longrepr, "reprcrash", None)
            if crash is not None:
                state["message"] = crash.message
            else:
                state["message"] = (text.strip().splitlines() or [""])[-1]

    def pytest_runtest_logfinish(self, nodeid: str,
                                 location: tuple[str, int | None, str]) -> None:
        state = self.current.pop(nodeid)
        self.emit("result", nodeid=nodeid, outcome=state["outcome"],
                  duration=round(time.monotonic() - state["start"], 3),
                  message=state["message"][:500], details=state["details"])


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_Reporter(), "pipeline-guest-reporter")
