"""Exceptions of the pipeline; each carries the process exit code it maps to."""


class PipelineError(Exception):
    """Base of every error the pipeline reports to the user (exit code in `exit_code`)."""

    exit_code: int = 3

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details  # long text (compiler errors, command output) for logs and JUnit


class BadInput(PipelineError):
    """The job, a flag, a file or a series is wrong: refused before any work where possible."""

    exit_code = 2


class StageFailed(PipelineError):
    """Apply, configure, build or boot failed."""

    exit_code = 3


class InternalError(PipelineError):
    """A bug of the pipeline (an unexpected exception): exit code 4, never 1 or 3."""

    exit_code = 4
