"""Command line: `pipeline run [flags]` (room for more subcommands)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import traceback
from pathlib import Path

from . import bench, bisect, checkseries, intake, matrix, rebase
from .errors import PipelineError
from .job import ACCELS, Overrides, apply_overrides, load_job
from .log import Log
from .results import EXIT_INTERNAL
from .runner import run_job

EPILOG = """exit codes: 0 all passed, 1 a guest test failed, 2 bad input,
3 apply/configure/build/boot failed (or the run was interrupted),
4 internal error of the pipeline (a bug: please report it with the log)"""


def _run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="apply, configure, build, boot, test; write OUT/junit.xml",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job", type=Path, metavar="FILE",
                   help="job YAML file (default: the embedded pipeline/data/default-job.yaml)")
    p.add_argument("--tree", metavar="SPEC",
                   help="debian:6.1 | debian:6.12 | TARBALL | URL | GIT_CHECKOUT[@REV]")
    p.add_argument("--tree-sha256", metavar="HEX", help="expected sha256 of a URL tarball")
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
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace, log: Log) -> int:
    job = load_job(args.job)
    job = apply_overrides(job, Overrides(
        tree=args.tree, series=args.series, kconfig=args.kconfig, tests=args.tests,
        out=args.out, accel=args.accel, variants=args.variant, cache_dir=args.cache_dir,
        tree_sha256=args.tree_sha256, kselftest=args.kselftest))
    return run_job(job, log)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="pipeline", description=__doc__, epilog=EPILOG)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_parser(sub)
    bench.add_parser(sub)
    intake.register(sub)        # pipeline series import
    matrix.register(sub)
    checkseries.register(sub)   # pipeline check-series
    rebase.register(sub)
    bisect.register(sub)        # pipeline bisect-step, pipeline bisect
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    log = Log()
    try:
        code = args.func(args, log)
        if code != 0:
            log(f"rerun the whole job: cd {shlex.quote(os.getcwd())} && "
                f"{shlex.join([sys.executable, '-m', 'pipeline', *argv])}")
        return code
    except PipelineError as exc:
        log(f"error: {exc.message}")
        if exc.details:
            log(exc.details)
        return exc.exit_code
    except KeyboardInterrupt:
        log("interrupted")
        return 3
    except Exception:  # noqa: BLE001 - the last line of defence: never exit 1 for our own bug
        log("internal error of the pipeline (exit 4), please report it with this traceback:")
        log(traceback.format_exc().rstrip())
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
