"""What the stages of a run share: the run (job, cache, log, boot back end, report) and, per
variant, what one stage hands on to the next (sources, config, kernel, boot result).

The stage list (pipeline.stages) names these fields: a stage `needs` some of them and
`makes` others; the runner skips a stage whose needs are missing, with the reason of the
stage that did not make them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import Cache
from .job import Job, Variant
from .log import Log
from .results import RunReport, VariantReport
from .series import Series
from .tree import Tree

if TYPE_CHECKING:  # the stage modules import this one: only their types are needed here
    from .boot import BootBackend, BootResult, BootSettings
    from .compiled import VariantCheck
    from .kconfig import ConfigResult
    from .kselftest.regress import Comparison
    from .kselftest.suite import CaseResult, SelftestBuild


@dataclass(frozen=True)
class SelftestKernel:
    """What it takes to run one variant's selftests once more (regress.decide's reruns)."""

    kernel: Path
    build: SelftestBuild
    out: Path
    settings: BootSettings
    scale: float


@dataclass
class KselftestRuns:
    """The selftest results of every variant so far: the baseline's are compared with each
    patched variant's as soon as both exist, the JUnit cases are made once all ran."""

    results: dict[str, list[CaseResult]] = field(default_factory=dict)
    kernels: dict[str, SelftestKernel] = field(default_factory=dict)
    comparisons: dict[str, Comparison] = field(default_factory=dict)


@dataclass(frozen=True)
class GuestSession:
    """What the run-level reports need of a variant's guest session (pipeline.lockdep)."""

    share: Path                   # OUT/<variant>/guest: the guest's writable share
    completed: bool
    failure: str


@dataclass
class RunContext:
    """One `pipeline run` (or the build of one variant for shell/exec/bench)."""

    job: Job
    cache: Cache
    log: Log
    report: RunReport
    backend: BootBackend
    build_only: bool = False                  # stop after the build (pipeline bench)
    reuse_ready: bool = False                 # shell/exec: take a recorded kernel as it is
    accel: str | None = None                  # result of the KVM probe, once per run
    current: tuple[VariantReport, str, float] | None = None   # the stage now running
    tree: Tree | None = None                  # once prepared (kcidb.json)
    series: Series | None = None              # once loaded
    kselftest: KselftestRuns = field(default_factory=KselftestRuns)
    compiled: dict[str, VariantCheck] = field(default_factory=dict)  # per variant: what
    #                                                  of the series it compiled (compiled.py)
    guest_sessions: dict[str, GuestSession] = field(default_factory=dict)  # by variant


@dataclass
class VariantContext:
    """One variant: its report, its output folder, and what its stages made so far."""

    run: RunContext
    variant: Variant
    tree: Tree
    series: Series | None                     # None: this variant runs without the series
    report: VariantReport
    out: Path                                 # OUT/<variant>
    src_key: str                              # names its worktree, build folder, config
    stopped: str = ""                         # why the stages after a failed one do not run
    reused: set[str] = field(default_factory=set)   # stages a recorded kernel made unneeded
    # --- products of the stages (None: not made) ---
    src: Path | None = None                   # apply (or the tree itself): the sources
    config: ConfigResult | None = None        # configure
    kernel: Path | None = None                # build: OUT/<variant>/bzImage
    boot: BootResult | None = None            # boot: the guest session (tests in it)
    selftests: SelftestBuild | None = None    # kselftest-build

    @property
    def job(self) -> Job:
        return self.run.job

    @property
    def log(self) -> Log:
        return self.run.log

    @property
    def cache(self) -> Cache:
        return self.run.cache
