"""Every status and exit code the pipeline reports, in one place.

`Status` is the outcome of one JUnit case (and of a stage, the worst of its cases).
`ExitCode` is what a command returns; its `meaning` is the text of the README's exit-code
table and of the commands' help (tests/test_status.py checks the README against it). Both are
str/int enums, so they compare equal to the plain values found in JSON and JUnit files.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"          # the check itself could not run (an interrupt, a crash, a bug)
    SKIPPED = "skipped"


class ExitCode(IntEnum):
    OK = 0
    TEST_FAILED = 1
    BAD_INPUT = 2
    STAGE_FAILED = 3
    INTERNAL = 4             # a bug of the pipeline: never 1 ("a test failed") nor 3
    TIMEOUT = 124            # exec --timeout: QEMU was stopped (as timeout(1) exits)
    BISECT_SKIP = 125        # bisect-step: git bisect run skips the commit (cannot be tested)
    ABORT_BISECT = 128       # bisect-step: git bisect run stops instead of judging
    GUEST_LOST = 255         # exec/shell: kernel panic, or the guest died

    @property
    def meaning(self) -> str:
        return _MEANING[self]


_MEANING = {
    ExitCode.OK: "every stage and every guest test passed",
    ExitCode.TEST_FAILED: "a guest test failed (or a kernel splat happened during a test), a "
                          "kselftest subtest regressed on patched, a hunk of the series is "
                          "compiled by no variant (`series.compiled`), or patched-debug took a "
                          "new lock dependency between watched classes that "
                          "`pipeline/data/lockdep-watch.yaml` does not accept",
    ExitCode.BAD_INPUT: "bad input: job file, flag, missing tree/fragment/test path, series "
                        "folder, no series variant for the tree's version",
    ExitCode.STAGE_FAILED: "apply, configure, build or boot failed, or the run was interrupted "
                           "(Ctrl-C / SIGTERM)",
    ExitCode.INTERNAL: "internal error of the pipeline itself (a bug; the log has the "
                       "traceback): never reported as 1 or 3",
    ExitCode.TIMEOUT: "`exec` only: `--timeout` reached, QEMU was stopped",
    ExitCode.BISECT_SKIP: "`bisect-step` only: skip the commit (the series does not apply, "
                          "the tree does not configure or build, or the chosen tests "
                          "skipped)",
    ExitCode.ABORT_BISECT: "`bisect-step` only: abort (bad input, internal error, interrupt, "
                           "usage error), so that `git bisect run` stops instead of marking "
                           "the commit",
    ExitCode.GUEST_LOST: "`exec` and `shell`: kernel panic, or the guest died before it "
                         "reported the command's exit status (`shell`: also leaving with "
                         "Ctrl-])",
}
# The exit codes of `pipeline run` and of the commands built on it (help epilogs).
RUN_CODES = (ExitCode.OK, ExitCode.TEST_FAILED, ExitCode.BAD_INPUT, ExitCode.STAGE_FAILED,
             ExitCode.INTERNAL)
GUEST_STATUS_MEANING = ("`exec` and `shell`: the guest command's own exit status (128+N when "
                        "signal N killed it, 127 command not found); `exec` reports 2, 3, 4 "
                        "as above only before the guest runs, and says so on stderr")


def worst(statuses: set[str]) -> Status:
    """A stage's status from its cases': error, then failed; skipped only when every case was
    skipped; passed otherwise (also with no case at all)."""
    for status in (Status.ERROR, Status.FAILED):
        if status in statuses:
            return status
    if statuses and statuses <= {Status.SKIPPED}:
        return Status.SKIPPED
    return Status.PASSED


def readme_table() -> list[str]:
    """The README's exit-code table, row by row (markdown), in the order the README keeps."""
    order = [*RUN_CODES, ExitCode.BISECT_SKIP, ExitCode.ABORT_BISECT, ExitCode.TIMEOUT,
             ExitCode.GUEST_LOST]
    rows = ["| exit code | meaning |", "| --- | --- |"]
    rows += [f"| {int(code)} | {code.meaning} |" for code in order]
    rows.append(f"| other | {GUEST_STATUS_MEANING} |")
    return rows


def run_epilog() -> str:
    """The `exit codes:` epilog of `pipeline run --help` (and the top-level help)."""
    short = {ExitCode.OK: "all passed", ExitCode.TEST_FAILED: "a guest test failed",
             ExitCode.BAD_INPUT: "bad input",
             ExitCode.STAGE_FAILED: "apply/configure/build/boot failed (or the run was "
                                    "interrupted)",
             ExitCode.INTERNAL: "internal error of the pipeline (a bug: please report it "
                                "with the log)"}
    lines = ",\n".join(f"{int(c)} {short[c]}" for c in RUN_CODES)
    return (f"exit codes: {lines};\nexec and shell: the guest command's status, "
            f"{int(ExitCode.TIMEOUT)} --timeout, {int(ExitCode.GUEST_LOST)} kernel panic or\n"
            f"the guest died (see `pipeline exec --help`)")
