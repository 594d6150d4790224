"""What a run found, stage by stage and variant by variant (written out by pipeline.junit)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .status import ExitCode, Status, worst

# Short names for the enums' members (pipeline.status has them all).
PASSED, FAILED, ERROR, SKIPPED = Status.PASSED, Status.FAILED, Status.ERROR, Status.SKIPPED
EXIT_OK, EXIT_TEST_FAILED = ExitCode.OK, ExitCode.TEST_FAILED
EXIT_BAD_INPUT, EXIT_STAGE_FAILED, EXIT_INTERNAL = (ExitCode.BAD_INPUT, ExitCode.STAGE_FAILED,
                                                    ExitCode.INTERNAL)


@dataclass
class Case:
    """One JUnit testcase."""

    name: str
    status: str = PASSED          # a pipeline.status.Status
    duration: float = 0.0
    message: str = ""             # one line
    details: str = ""             # long text (compiler errors, traceback, console tail)
    stdout: str = ""              # e.g. the kernel log slice of a guest test
    classname: str = ""           # default: <variant>.<stage>
    flaky: str = ""               # a pass that failed on another run: how (JUnit flakyFailure)


@dataclass
class Stage:
    name: str                     # a stage of pipeline.stages, or a report's own
    cases: list[Case] = field(default_factory=list)
    duration: float = 0.0
    properties: dict[str, str] = field(default_factory=dict)   # JUnit testsuite properties
    started: float = 0.0          # wall clock (time.time()) when it began; 0.0: unknown
    ran: bool = True              # False: a placeholder for a stage that never started

    @property
    def status(self) -> Status:
        return worst({c.status for c in self.cases})


@dataclass
class VariantReport:
    name: str
    properties: dict[str, str] = field(default_factory=dict)
    stages: list[Stage] = field(default_factory=list)

    def exit_code(self) -> int:
        """3 when a stage before the guest tests failed (or the run stopped), 1 when a guest
        test failed or the lockdep report found a new dependency between watched lock
        classes (pipeline.lockdep), 0 otherwise."""
        code = EXIT_OK
        for stage in self.stages:
            if stage.name == "kselftest":
                continue  # judged baseline vs patched: RunReport.kselftest_regressions
            if stage.name in ("guest", "lockdep"):
                if stage.status in (FAILED, ERROR):
                    code = max(code, EXIT_TEST_FAILED)
            elif stage.status in (FAILED, ERROR):
                return EXIT_STAGE_FAILED
        return code


@dataclass
class RunReport:
    variants: list[VariantReport] = field(default_factory=list)
    interrupted: str = ""         # signal name when the run was stopped
    bad_input: str = ""           # message when bad input stopped the run after it started
    duration: float = 0.0
    kselftest_regressions: int = 0   # subtests that pass on baseline and fail on patched
    kselftest: dict[str, Any] = field(default_factory=dict)   # summary.json "kselftest": verdicts, counts
    lockdep: dict[str, Any] = field(default_factory=dict)     # summary.json "lockdep": per variant
    internal_error: str = ""      # a bug of the pipeline: exit 4 (EXIT_INTERNAL)
    started: float = 0.0          # wall clock (time.time()) when the run began; 0.0: unknown
    suites: list[Stage] = field(default_factory=list)   # run-level suites (series.compiled)
    compiled: dict[str, Any] = field(default_factory=dict)    # summary.json "compiled"

    def exit_code(self) -> int:
        if self.bad_input:
            return EXIT_BAD_INPUT
        if self.internal_error:
            return EXIT_INTERNAL
        if self.interrupted:
            return EXIT_STAGE_FAILED
        codes = [v.exit_code() for v in self.variants]
        if self.kselftest_regressions:
            codes.append(EXIT_TEST_FAILED)
        if any(s.status in (FAILED, ERROR) for s in self.suites):
            codes.append(EXIT_TEST_FAILED)   # e.g. a hunk of the series no variant compiled
        if EXIT_STAGE_FAILED in codes:
            return EXIT_STAGE_FAILED
        return max(codes, default=EXIT_OK)
