"""Per-prefix behaviour for `pipeline check-series --guest-tests`: the kernel built after each
patch is booted and the job's guest tests run on it, through the very boot and guest stages
of `pipeline run` (pipeline.stages), so "patch 1/2 alone breaks rename" is a failed case of
patch 1; then the tests whose verdict changes between consecutive prefixes are listed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import stages
from ..context import RunContext, VariantContext
from ..job import Variant
from ..results import ERROR, FAILED, PASSED, SKIPPED, Case, Stage, VariantReport
from ..series import Series
from ..tree import Tree

BOOT_STAGES = ("boot", "guest")


@dataclass(frozen=True)
class Change:
    """A guest test whose verdict differs from the previous prefix's."""

    test: str                     # module::name
    before: str                   # status at the previous prefix ("absent": not collected)
    after: str
    prefix: str                   # the prefix where it changed (e.g. "0001 kernfs: ...")

    def line(self) -> str:
        return f"{self.prefix}: {self.test}: {self.before} -> {self.after}"


def prefix_name(index: int) -> str:
    """The variant name of a prefix's report: prefix-0000 is the tree without the series."""
    return f"prefix-{index:04d}"


def boot_prefix(run: RunContext, variant: Variant, tree: Tree, series: Series | None,
                index: int, image: Path, src: Path, src_key: str) -> VariantContext:
    """Boot the kernel `image` built from the first `index` patches (in `src`) and run the
    job's guest tests: the boot and guest stages of pipeline.stages, as `pipeline run` runs
    them (the variant's kernel words and timeouts apply). Its report is appended to the
    run's, named prefix_name(index)."""
    vr = VariantReport(prefix_name(index), {
        "tree": run.job.tree, "tree_version": tree.version, "tree_commit": tree.commit,
        "series": f"{series.name} ({series.short}), first {index} patch(es)" if series
        else "none", "accel": run.accel or run.job.qemu.accel, "qemu_version": ""})
    run.report.variants.append(vr)
    out = run.job.out / prefix_name(index)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image, out / "bzImage")
    ctx = VariantContext(run, variant, tree, series, vr, out, src_key, src=src,
                         kernel=out / "bzImage")
    specs = [s for s in stages.STAGES if s.name in BOOT_STAGES]
    stages.run_stages(ctx, specs)
    return ctx


def not_booted(run: RunContext, index: int, reason: str) -> None:
    """The boot and guest stages of a prefix whose kernel was not built, as skipped."""
    vr = VariantReport(prefix_name(index), {"tree": run.job.tree})
    stages.fill_skipped(vr.stages, list(BOOT_STAGES), f"not run: {reason}")
    run.report.variants.append(vr)


def outcomes(vr: VariantReport) -> dict[str, str]:
    """Test id (`path/module.py::name`, as pytest names it) -> status, of the guest tests of
    one prefix's report."""
    found: dict[str, str] = {}
    prefix = f"{vr.name}.guest."
    for stage in vr.stages:
        if stage.name != "guest" or not stage.ran:
            continue
        for case in stage.cases:
            module = case.classname.removeprefix(prefix).replace(".", "/")
            found[f"{module}.py::{case.name}"] = str(case.status)
    return found


def changes(reports: list[tuple[str, VariantReport]]) -> list[Change]:
    """The guest tests whose verdict differs between consecutive booted prefixes, in order;
    `reports` pairs each prefix's label with its report. A prefix that did not boot (no
    guest results) is left out of the comparison rather than turning every test into a
    change."""
    found: list[Change] = []
    previous: dict[str, str] | None = None
    for label, vr in reports:
        current = outcomes(vr)
        if not current:
            continue
        if previous is not None:
            for test in sorted(previous.keys() | current.keys()):
                before, after = previous.get(test, "absent"), current.get(test, "absent")
                if before != after:
                    found.append(Change(test, before, after, label))
        previous = current
    return found


def changes_stage(found: list[Change], booted: int) -> Stage:
    """The check-series suite `guest-changes`: one case per change; a test that passed and
    now fails (or errors) is a failed case of the prefix that changed it, other changes
    (newly skipped, newly passing, new tests) pass with the change as their message."""
    stage = Stage("guest-changes")
    for change in found:
        worse = change.before in (PASSED, SKIPPED, "absent") and change.after in (FAILED, ERROR)
        stage.cases.append(Case(f"{change.prefix}: {change.test}", FAILED if worse else PASSED,
                                message=f"{change.before} -> {change.after}"))
    if not found:
        stage.cases.append(Case("no guest test changes verdict between prefixes", PASSED,
                                message=f"{booted} prefix(es) booted"))
    return stage
