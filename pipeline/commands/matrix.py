"""`pipeline matrix --format gitlab|github`: fan a job out over trees x series x kconfig sets.

The job file's `matrix` section names the axes; every combination (minus `exclude`) becomes one
CI job that runs `pipeline run` with `--tree`, `--series`, `--kconfig` flags on one runner and
keeps OUT/junit.xml as its JUnit report. The pipeline does not schedule anything itself: the CI
engine does (a GitLab child pipeline, a GitHub Actions matrix).

    matrix:
      trees: [debian:6.1, debian:6.12]         # --tree SPEC
      series: [cgroup-pool, none]              # --series SPEC (none: the bare tree)
      kconfig:                                 # named sets of extra fragments (--kconfig)
        default: []
        debug: [kconfigs/debug.config]
      variants: [patched]                      # optional: --variant NAME for every job
      exclude:                                 # optional: drop combinations
        - {tree: debian:6.12, kconfig: debug}
      ccache_dir: .ccache                      # optional: shared ccache (else $CCACHE_DIR)
      cache_dir: .pipeline-cache               # optional: --cache-dir for every job
      accel: tcg                               # optional: --accel
      setup: [bash ci/setup.sh]                # optional: commands before the run
      pipeline: .venv/bin/pipeline             # optional: how to call the pipeline
      image: debian:12                         # optional: GitLab job image (default debian:12)
      tags: [kvm]                              # optional: GitLab runner tags
      runs_on: ubuntu-latest                   # optional: GitHub runs-on
      container_options: --device /dev/kvm     # optional: GitHub container options
      timeout_minutes: 90                      # optional

A relative ccache_dir is inside the checkout, so the CI engine's own cache (GitLab `cache:`,
GitHub `actions/cache`) carries it between runs; an absolute one is a folder the runners share
(an NFS mount, a volume), passed as CCACHE_DIR.

The GitHub jobs run in a container (`image`) that gets the host's /dev/kvm
(`container_options` defaults to `--device /dev/kvm`, or to nothing with `accel: tcg`): with
`accel: auto` the pipeline probes KVM in the guest's QEMU and falls back to TCG on its own.
A runner without /dev/kvm cannot start a container that asks for it: give such runners
`accel: tcg` or `container_options: ""`. GitLab passes devices in the runner's own
configuration (`devices = ["/dev/kvm"]` under `[runners.docker]`), not in the pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import BadInput
from ..job import (
    ACCELS,
    DEFAULT_JOB,
    INSTALLED,
    PROJECT_ROOT,
    Checker,
    load_yaml,
    normalize_series_spec,
    normalize_tree_spec,
)
from ..log import Logger
from ..names import slug

_MATRIX_KEYS = {"trees", "series", "kconfig", "variants", "exclude", "ccache_dir", "cache_dir",
                "accel", "setup", "pipeline", "tags", "runs_on", "timeout_minutes", "image",
                "container_options"}
_EXCLUDE_KEYS = {"tree", "series", "kconfig"}
DEFAULT_SETUP = ["bash ci/setup.sh"]
DEFAULT_PIPELINE = ".venv/bin/pipeline"
KVM_DEVICE = "--device /dev/kvm"
OUT = "out"


@dataclass(frozen=True)
class Entry:
    """One CI job: a combination of the axes and the command it runs."""

    name: str
    tree: str
    series: str
    kconfig: str                 # name of the kconfig set
    command: list[str]


@dataclass(frozen=True)
class Matrix:
    job_file: str                # as the CI jobs pass it to --job (relative to the checkout)
    entries: list[Entry]
    ccache_dir: str = ""
    cache_dir: str = ""
    setup: list[str] = field(default_factory=lambda: list(DEFAULT_SETUP))
    pipeline: str = DEFAULT_PIPELINE
    tags: list[str] = field(default_factory=list)
    image: str = "debian:12"
    runs_on: str = "ubuntu-latest"
    timeout_minutes: int = 90
    container_options: str = KVM_DEVICE


def _slug(text: str) -> str:
    text = re.sub(r"^debian:", "", text)
    text = re.sub(r"^.*/", "", text.rstrip("/")) if "/" in text else text
    return slug(text, "x")


def _checkout() -> Path:
    """The CI jobs' working folder: the project's checkout, or, for an installed pipeline (whose
    PROJECT_ROOT is its own data in site-packages), the folder `pipeline matrix` runs in (the
    CI checkout that generates the jobs)."""
    return Path.cwd().resolve() if INSTALLED else PROJECT_ROOT


def _from_checkout(path: Path) -> str:
    """A path as the CI jobs see it: relative to the checkout (their working folder) when it is
    inside it, else absolute."""
    try:
        return str(path.resolve().relative_to(_checkout()))
    except ValueError:
        return str(path.resolve())


def load_matrix(job_path: Path, ccache_dir: str | None = None) -> Matrix:
    """Read and check the `matrix` section of the job file (names the key and line at fault)."""
    data, lines = load_yaml(job_path)
    check = Checker(job_path, lines)
    if not isinstance(data, dict) or data.get("matrix") is None:
        raise BadInput(f"{job_path}: no `matrix` section (see `pipeline matrix --help`)")
    raw = check.mapping(data["matrix"], "matrix", _MATRIX_KEYS)
    base = job_path.parent if job_path != DEFAULT_JOB else PROJECT_ROOT

    trees = check.strings(raw.get("trees"), "matrix.trees")
    if not trees:
        trees = [check.string(data.get("tree"), "tree")]
    for i, tree in enumerate(trees):
        try:
            spec = normalize_tree_spec(tree, base)
        except ValueError as exc:
            raise check.fail(f"matrix.trees[{i}]", str(exc)) from None
        if spec.startswith("/"):
            path, at, rev = spec.partition("@") if not Path(spec).exists() else (spec, "", "")
            trees[i] = _from_checkout(Path(path)) + at + rev

    series = check.strings(raw.get("series"), "matrix.series")
    if not series:
        series = [str(data.get("series") or "none")]
    for i, spec in enumerate(series):
        try:
            normalized = normalize_series_spec(spec, base)
        except ValueError as exc:
            raise check.fail(f"matrix.series[{i}]", str(exc)) from None
        if normalized is not None and normalized.startswith("/"):
            series[i] = _from_checkout(Path(normalized))
        if spec != "none" and not Path(spec).is_absolute() and "/" not in spec \
                and not (PROJECT_ROOT / "patches" / spec).is_dir():
            raise check.fail(f"matrix.series[{i}]", f"no series {spec!r} under "
                                                   f"{PROJECT_ROOT / 'patches'}")

    sets_raw = raw.get("kconfig")
    if sets_raw is None:
        sets: dict[str, list[str]] = {"default": []}
    else:
        sets = {}
        allowed = set(sets_raw) if isinstance(sets_raw, dict) else set()
        for name, frags in check.mapping(sets_raw, "matrix.kconfig", allowed).items():
            key = f"matrix.kconfig.{name}"
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
                raise check.fail(key, "set names use letters, digits, '.', '_', '-'")
            sets[str(name)] = [
                _from_checkout(check.existing(frag, f"{key}[{j}]", base, "fragment"))
                for j, frag in enumerate(check.strings(frags, key))]
        if not sets:
            raise check.fail("matrix.kconfig", "must name at least one set (e.g. default: [])")

    variants = check.strings(raw.get("variants"), "matrix.variants")
    # the job's variant names as written (raw YAML values: load_job checks them, not this)
    job_variants: list[Any] = [v.get("name") for v in data.get("variants") or []
                               if isinstance(v, dict)]
    for i, name in enumerate(variants):
        if job_variants and name not in job_variants:
            raise check.fail(f"matrix.variants[{i}]", f"the job has no variant {name!r} "
                                                      f"(there are: {', '.join(job_variants)})")
    accel = check.opt_string(raw.get("accel"), "matrix.accel")
    if accel is not None and accel not in ACCELS:
        raise check.fail("matrix.accel", f"{accel!r}: must be one of {', '.join(ACCELS)}")

    excludes = []
    exclude_raw = raw.get("exclude") or []
    if not isinstance(exclude_raw, list):
        raise check.fail("matrix.exclude", "must be a list of {tree, series, kconfig} mappings")
    for i, item in enumerate(exclude_raw):
        rule = check.mapping(item, f"matrix.exclude[{i}]", _EXCLUDE_KEYS)
        axes = {"tree": trees, "series": series, "kconfig": list(sets)}
        for key, value in rule.items():
            if value not in axes[key]:
                raise check.fail(f"matrix.exclude[{i}].{key}",
                                 f"{value!r} is not in the matrix ({', '.join(axes[key])})")
        excludes.append(rule)

    cache_dir = check.opt_string(raw.get("cache_dir"), "matrix.cache_dir") or ""
    ccache = ccache_dir or check.opt_string(raw.get("ccache_dir"), "matrix.ccache_dir") \
        or os.environ.get("CCACHE_DIR", "")
    pipeline = check.opt_string(raw.get("pipeline"), "matrix.pipeline") or DEFAULT_PIPELINE
    container_options = raw.get("container_options")
    if container_options != "":          # "": no options (a runner without /dev/kvm)
        container_options = check.opt_string(container_options, "matrix.container_options")
    if container_options is None:
        container_options = "" if accel == "tcg" else KVM_DEVICE
    job_file = _from_checkout(job_path.resolve())

    entries = []
    for tree in trees:
        for spec in series:
            for set_name, frags in sets.items():
                combo = {"tree": tree, "series": spec, "kconfig": set_name}
                if any(all(combo[k] == v for k, v in rule.items()) for rule in excludes):
                    continue
                cmd = [*shlex.split(pipeline), "run", "--job", job_file, "--tree", tree,
                       "--series", spec, "--out", OUT]
                for frag in frags:
                    cmd += ["--kconfig", frag]
                for name in variants:
                    cmd += ["--variant", name]
                if accel:
                    cmd += ["--accel", accel]
                if cache_dir:
                    cmd += ["--cache-dir", cache_dir]
                name = f"{_slug(tree)}-{_slug(spec)}-{set_name}"
                entries.append(Entry(name, tree, spec, set_name, cmd))
    if not entries:
        raise check.fail("matrix.exclude", "excludes every combination: no job left")
    if len({e.name for e in entries}) != len(entries):
        raise check.fail("matrix", "two combinations get the same job name; give trees or "
                                   "series distinct last path components")
    return Matrix(
        job_file=job_file, entries=entries, ccache_dir=ccache, cache_dir=cache_dir,
        setup=check.strings(raw.get("setup"), "matrix.setup") if "setup" in raw
        else list(DEFAULT_SETUP),
        pipeline=pipeline, tags=check.strings(raw.get("tags"), "matrix.tags"),
        image=check.opt_string(raw.get("image"), "matrix.image") or "debian:12",
        runs_on=check.opt_string(raw.get("runs_on"), "matrix.runs_on") or "ubuntu-latest",
        timeout_minutes=check.integer(raw.get("timeout_minutes", 90), "matrix.timeout_minutes"),
        container_options=container_options)


# --- emitters ---------------------------------------------------------------------------------

def gitlab(matrix: Matrix) -> str:
    """A child-pipeline YAML: one job per entry, JUnit as the report artifact."""
    template: dict[str, Any] = {
        "stage": "test",
        "image": matrix.image,
        "timeout": f"{matrix.timeout_minutes} minutes",
        "before_script": list(matrix.setup),
        "artifacts": {
            "when": "always",
            "expire_in": "2 weeks",
            "paths": [f"{OUT}/"],
            "reports": {"junit": f"{OUT}/junit.xml"},
        },
    }
    if matrix.tags:
        template["tags"] = list(matrix.tags)
    doc: dict[str, Any] = {"stages": ["test"]}
    variables: dict[str, str] = {}
    if matrix.ccache_dir:
        variables["CCACHE_DIR"] = (matrix.ccache_dir if os.path.isabs(matrix.ccache_dir)
                                   else f"$CI_PROJECT_DIR/{matrix.ccache_dir}")
    if variables:
        doc["variables"] = variables
    if matrix.ccache_dir and not os.path.isabs(matrix.ccache_dir):
        template["cache"] = {"key": "ccache-$CI_JOB_NAME", "paths": [matrix.ccache_dir],
                             "when": "always"}
    doc[".pipeline-run"] = template
    for entry in matrix.entries:
        doc[f"run:{entry.name}"] = {
            "extends": ".pipeline-run",
            "variables": {"PIPELINE_TREE": entry.tree, "PIPELINE_SERIES": entry.series,
                          "PIPELINE_KCONFIG_SET": entry.kconfig},
            "script": [shlex.join(entry.command)],
        }
    header = ("# Generated by `pipeline matrix --format gitlab`; do not edit: change the job "
              f"file's matrix section ({matrix.job_file}).\n")
    return header + yaml.safe_dump(doc, sort_keys=False, width=4096)


def github(matrix: Matrix) -> str:
    """The `strategy.matrix` value for `fromJSON` (one `include` item per entry)."""
    include = [{"name": e.name, "tree": e.tree, "series": e.series, "kconfig": e.kconfig,
                "command": shlex.join(e.command), "ccache_dir": matrix.ccache_dir,
                "setup": " && ".join(matrix.setup) or "true",
                "runs_on": matrix.runs_on, "timeout_minutes": matrix.timeout_minutes,
                "image": matrix.image, "container_options": matrix.container_options}
               for e in matrix.entries]
    return json.dumps({"include": include}, separators=(",", ":"))


FORMATS = {"gitlab": gitlab, "github": github}


# --- command line -----------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("matrix", help="emit CI jobs (GitLab child pipeline / GitHub matrix) for "
                                      "the job's matrix section",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", required=True, choices=sorted(FORMATS),
                   help="gitlab: a child-pipeline YAML; github: a strategy.matrix JSON")
    p.add_argument("--job", metavar="FILE", help="job file with a matrix section "
                                                 "(default: ci/matrix-job.yaml)")
    p.add_argument("--ccache-dir", metavar="DIR",
                   help="shared ccache folder (default: the matrix's ccache_dir, else "
                        "$CCACHE_DIR)")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here, not stdout")
    p.set_defaults(func=_cmd_matrix)


def _cmd_matrix(args: argparse.Namespace, log: Logger) -> int:
    job_arg = args.job or "ci/matrix-job.yaml"
    path = Path(job_arg).expanduser()
    if not path.is_absolute():
        path = (Path.cwd() / path) if (Path.cwd() / path).is_file() else PROJECT_ROOT / path
    if not path.is_file():
        raise BadInput(f"--job {job_arg}: no such file")
    matrix = load_matrix(path.resolve(), args.ccache_dir)
    text = FORMATS[args.format](matrix)
    if args.output:
        args.output.write_text(text if text.endswith("\n") else text + "\n")
        print(f"wrote {len(matrix.entries)} jobs to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
