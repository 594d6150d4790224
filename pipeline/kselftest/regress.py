"""Compare kselftest results of the baseline and the patched kernel, subtest by subtest.

Verdicts (per program and per subtest, matched by collection + key):
- regression:   fails (failed/error) on patched and did not fail on baseline (passed,
                skipped or absent), or passed on baseline and is missing on patched, and the
                reruns (below) showed the difference is significant. Any regression fails
                the job.
- pre-existing: fails on both. Reported apart; does not hide a regression elsewhere.
- fixed:        fails on baseline, passes on patched (significantly so, after reruns).
- flaky:        looked like a regression or a fix on the first run, but the reruns did not
                show a significant difference (it fails on both kernels, or the first
                failure did not come back): reported, not a failure.
- newly skipped: passed on baseline, skipped on patched (reported, not a failure).
- pass / skip / missing: nothing to say beyond the results (skip reasons are kept).

Reruns (`decide`): every program with a candidate (a first-run regression or fix) is run
again, each round one fresh boot of the patched and one of the baseline kernel with only
those programs, until for every candidate a one-sided Fisher exact test on the rerun counts
is significant (p < alpha), or can no longer become significant within the remaining runs,
or the run/time budget is spent. The first run is not counted: it is what selected the
subtest, so counting it would bias the test towards the difference it is meant to check.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

from .known_issues import KnownIssues
from .suite import ERROR, FAILED, PASSED, SKIPPED, CaseResult

REGRESSION, PRE_EXISTING, FIXED = "regression", "pre-existing", "fixed"
NEWLY_SKIPPED, PASS, SKIP, MISSING = "newly skipped", "pass", "skip", "missing"
FLAKY = "flaky"
_ORDER = [REGRESSION, FLAKY, PRE_EXISTING, NEWLY_SKIPPED, FIXED, SKIP, MISSING, PASS]
_BAD = (FAILED, ERROR)
PATCHED, BASELINE = "patched", "baseline"

Key = tuple[str, str]            # (collection, "test: subtest")


# ---- statistics ---------------------------------------------------------------------------

def fisher_one_sided(fail_a: int, runs_a: int, fail_b: int, runs_b: int) -> float:
    """One-sided Fisher exact test: the probability, if A and B fail equally often, of A
    failing `fail_a` or more of its `runs_a` runs given `fail_a + fail_b` failures in all
    (hypergeometric upper tail). Small means A fails more often than B."""
    if not (0 <= fail_a <= runs_a and 0 <= fail_b <= runs_b):
        raise ValueError(f"bad counts {fail_a}/{runs_a}, {fail_b}/{runs_b}")
    total, fails = runs_a + runs_b, fail_a + fail_b
    if runs_a == 0 or runs_b == 0:
        return 1.0
    denom = math.comb(total, runs_a)
    tail = sum(math.comb(fails, x) * math.comb(total - fails, runs_a - x)
               for x in range(fail_a, min(fails, runs_a) + 1))
    return min(1.0, tail / denom)


@dataclass(frozen=True)
class RerunPolicy:
    max_runs: int = 8             # reruns per kernel (fresh boots), the first run not counted
    alpha: float = 0.01           # significance level of the one-sided Fisher test
    budget: float = 1800.0        # seconds of reruns in all, then decide with what is known


@dataclass
class Tally:
    """Rerun counts of one candidate subtest."""

    direction: str                # REGRESSION (patched fails more) or FIXED (baseline does)
    patched_runs: int = 0
    patched_passes: int = 0
    baseline_runs: int = 0
    baseline_passes: int = 0
    verdict: str = ""             # REGRESSION, FIXED or FLAKY once decided
    why: str = ""                 # how the decision was reached

    def add(self, side: str, res: CaseResult | None) -> None:
        passed = res is not None and res.status not in _BAD
        if side == PATCHED:
            self.patched_runs += 1
            self.patched_passes += passed
        else:
            self.baseline_runs += 1
            self.baseline_passes += passed

    def _p(self, extra: int = 0) -> float:
        """p-value now, or in the best case after `extra` more runs on each kernel."""
        pf = self.patched_runs - self.patched_passes
        bf = self.baseline_runs - self.baseline_passes
        pn, bn = self.patched_runs + extra, self.baseline_runs + extra
        if self.direction == REGRESSION:
            return fisher_one_sided(pf + extra, pn, bf, bn)
        return fisher_one_sided(bf + extra, bn, pf, pn)

    @property
    def p(self) -> float:
        return self._p()

    def hopeless(self, runs_left: int, alpha: float) -> bool:
        """Even if every remaining run went the candidate's way, p would stay >= alpha."""
        return self._p(runs_left) >= alpha

    def counts(self) -> str:
        """'patched 0/8, baseline 8/8, p=0.0001' (passes / reruns)."""
        return (f"patched {self.patched_passes}/{self.patched_runs}, baseline "
                f"{self.baseline_passes}/{self.baseline_runs} passed on rerun, p{_p_text(self.p)}")

    def as_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "verdict": self.verdict, "why": self.why,
                "patched_passes": self.patched_passes, "patched_runs": self.patched_runs,
                "baseline_passes": self.baseline_passes, "baseline_runs": self.baseline_runs,
                "p": round(self.p, 6)}


def _p_text(p: float) -> str:
    """'=0.0040', '=0.35', '=1'; below 0.0001 '<0.0001'."""
    if p < 0.0001:
        return "<0.0001"
    return "=" + _fmt_p(p)


def _fmt_p(p: float) -> str:
    """4 decimals for small values (0.0040), 2 otherwise (0.35, 1)."""
    return f"{p:.4f}" if p < 0.1 else f"{p:.2f}".rstrip("0").rstrip(".")


# ---- comparison ---------------------------------------------------------------------------

@dataclass
class Row:
    collection: str
    key: str                       # "test_core" or "test_core: test_cgcore_destroy"
    baseline: CaseResult | None
    patched: CaseResult | None
    verdict: str
    tally: Tally | None = None     # rerun counts when the first run made it a candidate

    @property
    def fails_job(self) -> bool:
        return self.verdict == REGRESSION


@dataclass
class Comparison:
    rows: list[Row] = field(default_factory=list)
    reruns: int = 0                # rounds of fresh boots spent on candidates
    rerun_seconds: float = 0.0

    def by_verdict(self, verdict: str) -> list[Row]:
        return [r for r in self.rows if r.verdict == verdict]

    @property
    def regressions(self) -> list[Row]:
        return self.by_verdict(REGRESSION)

    @property
    def failed(self) -> bool:
        return bool(self.regressions)

    def counts(self) -> dict[str, int]:
        return {v: len(self.by_verdict(v)) for v in _ORDER if self.by_verdict(v)}


def verdict(baseline: CaseResult | None, patched: CaseResult | None,
            tally: Tally | None = None) -> str:
    """The first-run verdict, or the rerun decision when `tally` has one."""
    if tally is not None and tally.verdict:
        return tally.verdict
    b = baseline.status if baseline else None
    p = patched.status if patched else None
    if p in _BAD:
        if b in _BAD:
            return PRE_EXISTING
        return REGRESSION
    if p is None:
        return REGRESSION if b == PASSED else MISSING
    if b in _BAD and p == PASSED:
        return FIXED
    if p == SKIPPED:
        return NEWLY_SKIPPED if b == PASSED else SKIP
    return PASS


def _index(results: list[CaseResult]) -> dict[Key, CaseResult]:
    return {(r.collection, r.key): r for r in results}


def compare(baseline: list[CaseResult], patched: list[CaseResult],
            tallies: dict[Key, Tally] | None = None) -> Comparison:
    base, pat = _index(baseline), _index(patched)
    tallies = tallies or {}
    keys = list(base) + [k for k in pat if k not in base]
    rows = [Row(c, k, base.get((c, k)), pat.get((c, k)),
                verdict(base.get((c, k)), pat.get((c, k)), tallies.get((c, k))),
                tallies.get((c, k)))
            for c, k in keys]
    rows.sort(key=lambda r: _ORDER.index(r.verdict))  # stable: test order kept inside
    return Comparison(rows)


def candidates(comp: Comparison) -> dict[Key, Tally]:
    """First-run regressions and fixes worth rerunning (both kernels reported the test)."""
    out = {}
    for r in comp.rows:
        if r.verdict in (REGRESSION, FIXED) and r.baseline is not None:
            out[(r.collection, r.key)] = Tally(r.verdict)
    return out


def _program(key: Key) -> str:
    return key[1].split(": ", 1)[0]


Rerun = Callable[[str, list[str], int], list[CaseResult]]   # (side, programs, round) -> results


def decide(baseline: list[CaseResult], patched: list[CaseResult], rerun: Rerun,
           policy: RerunPolicy = RerunPolicy(), clock: Callable[[], float] = time.monotonic,
           log: Callable[[str], None] = lambda _m: None) -> Comparison:
    """Compare, then rerun the candidates' programs (patched, then baseline, one fresh boot
    each per round) until each candidate is decided (see the module docstring)."""
    first = compare(baseline, patched)
    tallies = candidates(first)
    if not tallies or policy.max_runs == 0:
        return first
    start = clock()
    open_ = dict(tallies)
    rounds = 0
    while open_ and rounds < policy.max_runs:
        spent = clock() - start
        if spent > policy.budget:
            for t in open_.values():
                t.verdict, t.why = FLAKY, (f"not significant when the rerun budget of "
                                           f"{policy.budget:g} s was spent")
            open_.clear()
            break
        rounds += 1
        programs = list(dict.fromkeys(_program(k) for k in open_))
        log(f"  kselftest: rerun {rounds}/{policy.max_runs} of {', '.join(programs)} on both "
            f"kernels ({len(open_)} undecided subtest(s))")
        for side in (PATCHED, BASELINE):
            found = _index(rerun(side, programs, rounds))
            for key, t in open_.items():
                t.add(side, found.get(key))
        for key, t in list(open_.items()):
            if t.p < policy.alpha:
                t.verdict, t.why = t.direction, f"significant after {rounds} rerun(s)"
            elif t.hopeless(policy.max_runs - rounds, policy.alpha):
                t.verdict = FLAKY
                t.why = (f"cannot become significant within {policy.max_runs} reruns"
                         if rounds < policy.max_runs else f"not significant after {rounds} reruns")
            if t.verdict:
                del open_[key]
    for t in open_.values():
        t.verdict, t.why = FLAKY, f"not significant after {rounds} reruns"
    comp = compare(baseline, patched, tallies)
    comp.reruns, comp.rerun_seconds = rounds, clock() - start
    return comp


def regressed_programs(comp: Comparison) -> list[str]:
    """Names of the programs with a regression."""
    names = [res.test for r in comp.regressions if (res := r.patched or r.baseline)]
    return list(dict.fromkeys(names))


# ---- reports ------------------------------------------------------------------------------

def _cell(res: CaseResult | None, note: str = "") -> str:
    if res is None:
        return "—"
    text = res.status
    if res.message and res.status != PASSED:
        text += f": {res.message}"
    if note:
        text += f" ({note})"
    return text.replace("|", "\\|").replace("\n", " ")[:200]


def _verdict_cell(r: Row) -> str:
    text = f"**{r.verdict}**" if r.fails_job else r.verdict
    if r.tally is not None:
        text += f" ({r.tally.counts()})"
    return text


def markdown(comp: Comparison, title: str = "kselftest: baseline vs patched",
             known: KnownIssues | None = None,
             passing_known: list[str] | None = None) -> str:
    """The table; rows matching `known` say so, `passing_known` lists known issues that
    passed (so the list can shrink)."""
    counts = comp.counts()
    lines = [f"# {title}", ""]
    lines.append("Result: " + ("**FAILED**: " + f"{len(comp.regressions)} regression(s)"
                               if comp.failed else "no regressions"))
    lines.append("")
    lines.append(", ".join(f"{v}: {n}" for v, n in counts.items()) or "no results")
    if comp.reruns:
        lines += ["", (f"Reruns: {comp.reruns} round(s) of fresh boots on both kernels "
                      f"({comp.rerun_seconds:.0f} s); counts are passes / reruns, p is a "
                      f"one-sided Fisher exact test.")]
    for text in passing_known or []:
        lines += ["", f"Known issue passed (remove it from the known-issues file?): {text}"]
    lines += ["", "| collection | test | baseline | patched | verdict |",
              "|---|---|---|---|---|"]
    for r in comp.rows:
        key = r.key.replace("|", "\\|")
        note = "known issue" if known is not None and known.match(r.collection, r.key) \
            else ""
        lines.append(f"| {r.collection} | {key} | {_cell(r.baseline, note)} | "
                     f"{_cell(r.patched, note)} | {_verdict_cell(r)} |")
    return "\n".join(lines) + "\n"


class MarkdownOptions(TypedDict, total=False):
    """The keyword arguments of `markdown` after `comp` (for `write_markdown`)."""

    title: str
    known: KnownIssues | None
    passing_known: list[str] | None


def write_markdown(comp: Comparison, out_dir: Path, **kwargs: Unpack[MarkdownOptions]) -> Path:
    path = out_dir / "kselftest-regressions.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(comp, **kwargs))
    return path


def summary_rows(comp: Comparison) -> list[dict[str, Any]]:
    """summary.json: every row that is not a plain pass/skip, with its rerun counts."""
    out = []
    for r in comp.rows:
        if r.verdict in (PASS, SKIP):
            continue
        row: dict[str, Any] = {"collection": r.collection, "test": r.key,
                               "verdict": r.verdict,
                               "baseline": r.baseline.status if r.baseline else None,
                               "patched": r.patched.status if r.patched else None}
        if r.tally is not None:
            row["reruns"] = r.tally.as_dict()
            row["counts"] = r.tally.counts()
        out.append(row)
    return out


def _copy(res: CaseResult, **changes: object) -> CaseResult:
    fields = dict(res.__dict__)
    fields.update(changes)
    return CaseResult(**fields)


def _excused(r: Row, res: CaseResult, known: KnownIssues | None) -> bool:
    """A failing case that is reported as skipped: a known issue that is not a regression."""
    return (known is not None and res.status in _BAD and r.verdict != REGRESSION
            and known.match(r.collection, r.key) is not None)


def junit_rows(comp: Comparison, variant: str, label: str,
               known: KnownIssues | None = None) -> list[tuple[str, CaseResult]]:
    """(classname, result) for every result of one side ("baseline" or "patched"); the
    classname is `<label>.kselftest.<collection>`. On the patched side a regression keeps its
    failure and gets the baseline result and the rerun counts in its message; a pre-existing
    failure says so; a flaky candidate becomes a passing case that keeps its note (`flaky`).
    A failing known issue (see pipeline.kselftest.known_issues) becomes a skipped case with its reason,
    a passing one a passing case that says so; a program whose only failures are excused
    subtests passes with a note naming them."""
    out = []
    excused: dict[tuple[str, str], list[str]] = {}   # (collection, program) -> subtests
    unexcused: set[tuple[str, str]] = set()
    exit_failed: dict[tuple[str, str], str] = {}     # programs failing by their exit code
    for r in comp.rows:
        res = r.baseline if variant == BASELINE else r.patched
        if res is None and variant != BASELINE and r.baseline is not None \
                and r.verdict == REGRESSION:
            b = r.baseline
            res = CaseResult(b.collection, b.test, b.subtest, FAILED,
                             "missing on patched (passed on baseline)")
        if res is None:
            continue
        counts = f"; {r.tally.counts()}" if r.tally is not None else ""
        issue = known.match(r.collection, r.key) if known is not None else None
        if not res.subtest and res.status == FAILED and res.message.startswith("exit code"):
            exit_failed[(res.collection, res.test)] = res.message
        if res.subtest and res.status in _BAD:
            if r.verdict == FLAKY or _excused(r, res, known):
                excused.setdefault((res.collection, res.test), []).append(res.subtest)
            else:
                unexcused.add((res.collection, res.test))
        if _excused(r, res, known) and issue is not None:
            res = _copy(res, status=SKIPPED, message=issue.describe(),
                        details=f"evidence: {issue.evidence}\n\nthis run: {res.status}"
                                + (f": {res.message}" if res.message else "")
                                + (f"\n{res.details}" if res.details else ""))
        elif r.verdict == FLAKY and res.status in _BAD:
            note = (f"flaky: {res.status} on the first run, {r.tally.why if r.tally else ''}"
                    f"{counts}").rstrip(", ")
            res = _copy(res, status=PASSED, message=note,
                        flaky=f"first run: {res.message or res.status}")
        elif variant != BASELINE and r.verdict in (REGRESSION, PRE_EXISTING):
            before = r.baseline.status if r.baseline else "absent"
            res = _copy(res, message=f"[{r.verdict}, baseline: {before}{counts}] "
                                     f"{res.message}".strip())
        elif r.verdict == FLAKY:
            res = _copy(res, message=f"flaky: {r.tally.why if r.tally else ''}{counts}")
        elif issue is not None and res.status == PASSED and not issue.flaky:
            res = _copy(res, message=f"known issue passed (remove it from the known-issues "
                                     f"file?): {issue.reason}")
        out.append((f"{label}.kselftest.{res.collection}", res))
    # Programs failing only because of excused subtests: pass, naming them.
    final = []
    for classname, res in out:
        prog = (res.collection, res.test)
        if not res.subtest and res.status == FAILED and prog in excused \
                and prog not in unexcused and prog in exit_failed:
            res = _copy(res, status=PASSED,
                        message=f"{exit_failed[prog]}: only known issues or flaky subtests "
                                f"failed ({', '.join(excused[prog])})")
        final.append((classname, res))
    return final


def known_passing(comp: Comparison, variant: str, known: KnownIssues | None) -> list[str]:
    """Known issues (not marked flaky) that passed on this side: candidates for removal."""
    if known is None:
        return []
    out = []
    for r in comp.rows:
        res = r.baseline if variant == BASELINE else r.patched
        issue = known.match(r.collection, r.key)
        if res is not None and res.status == PASSED and issue is not None and not issue.flaky:
            out.append(f"{r.collection}/{r.key}")
    return out
