"""`pipeline run --dry-run`: what a run of the job would use, resolved and checked, and nothing
done: no tree extracted or cloned, nothing built, booted or written (not even OUT).

The tree's kernel version is known without work for `debian:X.Y` and for a git checkout (its
top Makefile, read with `git show`); then the series variant is picked and the fragments whose
`min-version` is above it are named as skipped, as the run would. For a tarball or a URL the
version is only known after extracting it: the plan lists the series' candidates.
"""

from __future__ import annotations

from pathlib import Path

from . import kconfig
from . import series as series_mod
from .cache import default_cache_root
from .job import DEFAULT_JOB, INSTALLED, PROJECT_ROOT, Job
from .testlist import static_ids
from .tree import commit_version, debian_tarball, resolve_checkout, split_rev, version_tuple


def _tree(job: Job) -> tuple[list[str], str | None]:
    """Lines about the tree, and its kernel version when known without work."""
    spec = job.tree
    if spec.startswith("debian:"):
        version = spec.split(":", 1)[1]
        tarball = debian_tarball(version)
        state = "present" if tarball.is_file() else \
            f"missing: the run would stop (apt-get install linux-source-{version})"
        return [f"tree {spec}: {tarball} ({state}), kernel {version}"], version
    if spec.startswith(("http://", "https://")):
        sha = f", sha256 {job.tree_sha256}" if job.tree_sha256 else ""
        return [f"tree {spec}: downloaded at the run{sha}; version known after extracting"], None
    path, rev = split_rev(spec)
    if path.is_dir():
        user = resolve_checkout(path, rev, spec)
        version = commit_version(path, user.sha)
        return [f"tree {spec}: git checkout {path}, commit {user.sha[:12]}, kernel {version}"], \
            version
    return [f"tree {spec}: tarball {path}; version known after extracting"], None


def plan(job: Job) -> list[str]:
    """The lines `pipeline run --dry-run` prints; BadInput as the run would raise it."""
    lines = [f"job {job.source}" + (" (the embedded default job)" if job.source == DEFAULT_JOB
                                    else "")]
    lines.append(f"project data {PROJECT_ROOT} ("
                 + ("installed with the package" if INSTALLED else "the checkout") + ")")
    tree_lines, version = _tree(job)
    lines += tree_lines
    if job.series and any(v.series for v in job.variants):
        choice = series_mod.locate(job.series, PROJECT_ROOT)
        if version is not None:
            series = series_mod.pick(choice, version)
            lines.append(f"series {job.series}: {series.source} ({len(series.patches)} "
                         f"patches, {series.short})")
        else:
            lines.append(f"series {job.series}: one of "
                         + ", ".join(str(c) for c in choice.candidates))
    else:
        lines.append("series none")
    fragments = list(dict.fromkeys([*job.kconfig, *(f for v in job.variants
                                                    for f in v.kconfig_extra)]))
    for path in fragments:
        fragment = kconfig.parse_fragment(path)
        note = ""
        if fragment.min_version and version is not None \
                and version_tuple(version) < version_tuple(fragment.min_version):
            note = f" (skipped: needs kernel >= {fragment.min_version})"
        lines.append(f"fragment {path}{note}")
    for path in job.tests:
        lines.append(f"guest tests {path} ({len(static_ids([path]))} test functions "
                     "before parametrization)")
    lines.append(f"base config {job.base_config}")
    for variant in job.variants:
        parts = ["series" if variant.series and job.series else "no series"]
        parts += [f"+{Path(f).name}" for f in variant.kconfig_extra]
        if variant.timeout_scale != 1:
            parts.append(f"timeouts x{variant.timeout_scale:g}")
        if variant.kernel_args:
            parts.append("kernel args " + " ".join(variant.kernel_args))
        lines.append(f"variant {variant.name}: {', '.join(parts)}")
    ks = job.kselftest
    if ks.enabled:
        lines.append(f"kselftest {', '.join(ks.targets)} on {', '.join(ks.variants)}")
    lines.append(f"out {job.out}; cache {job.cache_dir or default_cache_root()}")
    lines.append("dry run: nothing extracted, built, booted or written")
    return lines
