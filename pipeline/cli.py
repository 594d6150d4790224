"""Command line: `pipeline run [flags]`, `pipeline shell`, `pipeline exec -- CMD`, and the tools
below (`pipeline COMMAND --help` for each)."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shlex
import shutil
import sys
import traceback
from pathlib import Path

from . import outdir, plan
from .bench import benchmark as bench
from .commands import (
    bisect,
    checkseries,
    devloop,
    junit_summary,
    matrix,
    portdiff,
    rebase,
)
from .commands import series_import as intake
from .errors import BadInput, PipelineError
from .job import (
    ACCELS,
    DEFAULT_JOB,
    INSTALLED,
    PROJECT_ROOT,
    Overrides,
    apply_overrides,
    load_job,
)
from .log import NORMAL, Log
from .preflight import check_before_work
from .results import EXIT_INTERNAL
from .runner import run_job
from .status import ExitCode, run_epilog

ABORT_BISECT = ExitCode.ABORT_BISECT        # git bisect run: stop, judge no commit
NEEDS_GIT = {"run", "bench", "check-series", "rebase", "bisect-step", "bisect", "series",
             "port-diff", "shell", "exec"}

EPILOG = run_epilog()


def _run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="apply, configure, build, boot, test; write OUT/junit.xml",
                       description=_run_description(), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job", type=Path, metavar="FILE",
                   help="job YAML file; its relative paths are relative to its folder "
                        "(default: the embedded default job, see above)")
    p.add_argument("--tree", metavar="SPEC",
                   help="debian:6.1 | debian:6.12 | TARBALL | URL | GIT_CHECKOUT[@REV]")
    p.add_argument("--tree-sha256", metavar="HEX", help="expected sha256 of a URL tarball")
    p.add_argument("--insecure-http", action="store_true", default=None,
                   help="accept a plain http:// tree URL without --tree-sha256")
    p.add_argument("--series", metavar="SPEC",
                   help="series name under patches/, a series folder, an mbox file, or 'none'")
    p.add_argument("--kconfig", action="append", default=[], metavar="FRAGMENT",
                   help="extra kconfig fragment, added after the job's (repeatable)")
    p.add_argument("--tests", action="append", default=[], metavar="PATH",
                   help="extra guest test file or folder (repeatable)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: out/)")
    p.add_argument("--accel", choices=ACCELS, help="QEMU accelerator (auto probes KVM)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME",
                   help="run only this variant of the job (repeatable)")
    p.add_argument("--kselftest", action=argparse.BooleanOptionalAction, default=None,
                   help="run (or not) the kernel's selftests named in the job's kselftest section")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="cache folder (default: $KERNEL_PIPELINE_CACHE or "
                        "~/.cache/kernel-pipeline)")
    p.add_argument("--dry-run", action="store_true",
                   help="resolve and check the job (tree, series, fragments, guest tests, "
                        "variants), print the plan and exit 0: nothing extracted, built, "
                        "booted or written")
    p.add_argument("--cpus", metavar="N",
                   help="guest CPUs, overriding the job's qemu.smp (1 to 255)")
    p.add_argument("--memory", metavar="SIZE",
                   help="guest memory as QEMU's -m takes it (2G, 512M), overriding the job's "
                        "qemu.memory")
    p.set_defaults(func=_cmd_run)


def _run_description() -> str:
    where = ("installed with the package" if INSTALLED
             else "the project checkout the package runs from")
    return (f"Apply the job's series, configure, build and boot each variant, run the guest "
            f"tests.\n\nThe embedded default job (no --job):\n  {DEFAULT_JOB}\n"
            f"Its relative paths (kconfigs/, guest-tests/) and every series given by name "
            f"(patches/NAME)\nresolve to the project data, {where}:\n  {PROJECT_ROOT}")


def _cmd_run(args: argparse.Namespace, log: Log) -> int:
    out = Path(args.out) if args.out else None     # where this run's verdict would go
    try:
        loaded = load_job(args.job)
        out = out or loaded.out
        job = apply_overrides(loaded, Overrides(
            tree=args.tree, series=args.series, kconfig=args.kconfig, tests=args.tests,
            out=args.out, accel=args.accel, variants=args.variant, cache_dir=args.cache_dir,
            tree_sha256=args.tree_sha256, kselftest=args.kselftest,
            insecure_http=args.insecure_http, memory=args.memory, cpus=args.cpus))
        check_before_work(job, dry_run=args.dry_run)
    except BadInput:
        # A refused run (exit 2) must not leave the last run's junit.xml/summary.json in
        # --out looking like its verdict; a run that starts clears them in outdir.start_run.
        if out is not None and not args.dry_run:
            _drop_previous_results(out, log)
        raise
    for name in [v.name for v in loaded.variants if v.optional and v not in job.variants]:
        log(f"optional variant {name} left out (run it with --variant {name})")
    if args.dry_run:
        for line in plan.plan(job):
            print(line)
        return 0
    return run_job(job, log)


def _drop_previous_results(out: Path, log: Log) -> None:
    """Best effort: a read-only or odd --out is the error being reported already."""
    if out.is_dir() and not out.is_symlink():
        try:
            outdir.clear_previous(out, log)
        except OSError:
            pass


def _check_tools(command: str) -> None:
    if command in NEEDS_GIT and shutil.which("git") is None:
        raise BadInput("git is not in PATH: install it with 'apt-get install git'")


def package_version() -> str:
    """The installed distribution's version (pyproject.toml's), or "unknown" when the
    package runs from a tree that was never installed."""
    try:
        return importlib.metadata.version("kernel-pipeline")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _verbosity_options(p: argparse.ArgumentParser, suffix: str) -> None:
    """-v/-q, on the top parser and on every subcommand (`pipeline -v run` and
    `pipeline run -v` both work; the counts add up)."""
    p.add_argument("-v", "--verbose", action="count", dest=f"verbose{suffix}",
                   default=argparse.SUPPRESS if suffix else 0,
                   help="more log output (repeatable: -vv also shows the guest console of "
                        "shell/exec)")
    p.add_argument("-q", "--quiet", action="count", dest=f"quiet{suffix}",
                   default=argparse.SUPPRESS if suffix else 0,
                   help="less log output: only errors and the verdict (-qq: nothing)")


def subparsers(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below `p` (subcommands and their own subcommands), depth first."""
    found = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += [child, *subparsers(child)]
    return found


def verbosity(args: argparse.Namespace) -> int:
    return (NORMAL + getattr(args, "verbose", 0) + getattr(args, "verbose_sub", 0)
            - getattr(args, "quiet", 0) - getattr(args, "quiet_sub", 0))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="pipeline", description=__doc__, epilog=EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version",
                     version=f"%(prog)s {package_version()}",
                     help="print the pipeline's version and exit")
    _verbosity_options(top, "")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_parser(sub)
    devloop.register(sub)       # pipeline shell, pipeline exec
    bench.register(sub)
    intake.register(sub)        # pipeline series import
    matrix.register(sub)
    junit_summary.register(sub)  # pipeline junit-summary (CI job summaries)
    checkseries.register(sub)   # pipeline check-series
    rebase.register(sub)
    portdiff.register(sub)      # pipeline port-diff
    bisect.register(sub)        # pipeline bisect-step, pipeline bisect
    for child in subparsers(top):
        _verbosity_options(child, "_sub")
    return top


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code. Never 1 for the pipeline's own failure: bad input is 2,
    an unexpected exception 4 (for `bisect-step` every failure of its own is 128, so that
    `git bisect run` stops instead of marking the commit bad)."""
    argv = sys.argv[1:] if argv is None else argv
    bisecting = bool(argv) and argv[0] == "bisect-step"
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:          # argparse: --help (0) or a usage error (2)
        if bisecting and exc.code not in (0, None):
            return ABORT_BISECT
        raise
    # exec: stdout is the guest command's; its log is quieter too (the output is the point)
    log = Log(stream=sys.stderr if getattr(args, "log_to_stderr", False) else sys.stdout,
              verbosity=verbosity(args) - getattr(args, "quieter", 0))
    try:
        _check_tools(args.command)
        code: int = args.func(args, log)
        if code != 0 and getattr(args, "rerun_hint", True):
            log(f"rerun the whole job: cd {shlex.quote(os.getcwd())} && "
                f"{shlex.join([sys.executable, '-m', 'pipeline', *argv])}")
        return code
    except PipelineError as exc:
        log.error(f"error: {exc.message}")
        if exc.details:
            log(exc.details)
        return ABORT_BISECT if bisecting else exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return ABORT_BISECT if bisecting else 3
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        log.error(f"internal error of the pipeline (exit {ABORT_BISECT if bisecting else 4}): "
                  f"{exc.strerror or exc}{where}; the traceback:")
        log.error(traceback.format_exc().rstrip())
        return ABORT_BISECT if bisecting else EXIT_INTERNAL
    except Exception:  # noqa: BLE001 - the last line of defence: never exit 1 for our own bug
        log.error(f"internal error of the pipeline (exit {ABORT_BISECT if bisecting else 4}), "
                  "please report it with this traceback:")
        log.error(traceback.format_exc().rstrip())
        return ABORT_BISECT if bisecting else EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
