"""Compare kselftest results of the baseline and the patched kernel, subtest by subtest.

Verdicts (per program and per subtest, matched by collection + key):
- regression:   fails (failed/error) on patched and did not fail on baseline (passed,
                skipped or absent), or passed on baseline and is missing on patched.
                Any regression fails the job.
- pre-existing: fails on both. Reported apart; does not hide a regression elsewhere.
- fixed:        fails on baseline, passes on patched.
- flaky:        a regression that passed when the program was run again on the patched
                kernel, or that the baseline failed too when run again under the same load
                (see `merge_retries`): reported, not a failure.
- newly skipped: passed on baseline, skipped on patched (reported, not a failure).
- pass / skip / missing: nothing to say beyond the results (skip reasons are kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .kselftest import ERROR, FAILED, PASSED, SKIPPED, CaseResult

REGRESSION, PRE_EXISTING, FIXED = "regression", "pre-existing", "fixed"
NEWLY_SKIPPED, PASS, SKIP, MISSING = "newly skipped", "pass", "skip", "missing"
FLAKY = "flaky"
_ORDER = [REGRESSION, FLAKY, PRE_EXISTING, NEWLY_SKIPPED, FIXED, SKIP, MISSING, PASS]
_BAD = (FAILED, ERROR)


@dataclass
class Row:
    collection: str
    key: str                       # "test_core" or "test_core: test_cgcore_destroy"
    baseline: CaseResult | None
    patched: CaseResult | None
    verdict: str

    @property
    def fails_job(self) -> bool:
        return self.verdict == REGRESSION


@dataclass
class Comparison:
    rows: list[Row] = field(default_factory=list)

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


def verdict(baseline: CaseResult | None, patched: CaseResult | None) -> str:
    b = baseline.status if baseline else None
    p = patched.status if patched else None
    if p in _BAD:
        if b in _BAD:
            return PRE_EXISTING
        return FLAKY if patched is not None and patched.retried else REGRESSION
    if p is None:
        return REGRESSION if b == PASSED else MISSING
    if b in _BAD and p == PASSED:
        return FIXED
    if p == SKIPPED:
        return NEWLY_SKIPPED if b == PASSED else SKIP
    return PASS


def compare(baseline: list[CaseResult], patched: list[CaseResult]) -> Comparison:
    def index(results: list[CaseResult]) -> dict[tuple[str, str], CaseResult]:
        return {(r.collection, r.key): r for r in results}

    base, pat = index(baseline), index(patched)
    keys = list(base) + [k for k in pat if k not in base]
    rows = [Row(c, k, base.get((c, k)), pat.get((c, k)), verdict(base.get((c, k)),
                                                                   pat.get((c, k))))
            for c, k in keys]
    rows.sort(key=lambda r: _ORDER.index(r.verdict))  # stable: test order kept inside
    return Comparison(rows)


def regressed_programs(comp: Comparison) -> list[str]:
    """Names of the programs with a regression (the ones worth running again)."""
    names = [(r.patched or r.baseline).test for r in comp.regressions
             if r.patched or r.baseline]
    return list(dict.fromkeys(names))


def merge_retries(results: list[CaseResult], comp: Comparison,
                  retries: list[list[CaseResult]],
                  baseline_retries: list[list[CaseResult]] | None = None) -> list[CaseResult]:
    """`results` with every regression marked as retried (compare() then calls it flaky)
    when it passed in one of `retries` (later runs of the same programs on the patched
    kernel), or failed in one of `baseline_retries` (the same on the baseline kernel, under
    the same load). A failure that fails every time on patched, while baseline keeps
    passing, stays a regression."""
    regressed = {(r.collection, r.key) for r in comp.regressions}

    def first_run(runs: list[list[CaseResult]], statuses: tuple[str, ...]
                  ) -> dict[tuple[str, str], int]:
        found: dict[tuple[str, str], int] = {}
        for n, run in enumerate(runs, 1):
            for res in run:
                if res.status in statuses:
                    found.setdefault((res.collection, res.key), n)
        return found

    passed_in = first_run(retries, (PASSED,))
    base_failed_in = first_run(baseline_retries or [], _BAD)
    out = []
    for res in results:
        key = (res.collection, res.key)
        how = ""
        if key in regressed and res.status in _BAD:
            if key in passed_in:
                how = (f"{res.status} on the first run, passed on retry {passed_in[key]} of "
                       f"{len(retries)}")
            elif key in base_failed_in:
                how = (f"{res.status} on every run; baseline failed it too on its retry "
                       f"{base_failed_in[key]} (same load)")
        if how:
            res = CaseResult(res.collection, res.test, res.subtest, res.status, res.message,
                             res.details, res.duration, retried=how)
        out.append(res)
    return out


def _cell(res: CaseResult | None) -> str:
    if res is None:
        return "—"
    text = res.status
    if res.retried:
        text += f" ({res.retried})"
    if res.message and res.status != PASSED:
        text += f": {res.message}"
    return text.replace("|", "\\|").replace("\n", " ")[:160]


def markdown(comp: Comparison, title: str = "kselftest: baseline vs patched") -> str:
    counts = comp.counts()
    lines = [f"# {title}", ""]
    lines.append("Result: " + ("**FAILED**: " + f"{len(comp.regressions)} regression(s)"
                               if comp.failed else "no regressions"))
    lines.append("")
    lines.append(", ".join(f"{v}: {n}" for v, n in counts.items()) or "no results")
    lines += ["", "| collection | test | baseline | patched | verdict |",
              "|---|---|---|---|---|"]
    for r in comp.rows:
        key = r.key.replace("|", "\\|")
        lines.append(f"| {r.collection} | {key} | {_cell(r.baseline)} | {_cell(r.patched)} "
                     f"| {'**' + r.verdict + '**' if r.fails_job else r.verdict} |")
    return "\n".join(lines) + "\n"


def write_markdown(comp: Comparison, out_dir: Path) -> Path:
    path = out_dir / "kselftest-regressions.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(comp))
    return path


def junit_rows(comp: Comparison, variant: str, label: str) -> list[tuple[str, CaseResult]]:
    """(classname, result) for every result of one side ("baseline" or "patched"); the
    classname is `<label>.kselftest.<collection>`. On the patched side a regression keeps its
    failure and gets the baseline result in its message; a pre-existing failure says so, so
    the JUnit reader sees which failures are new."""
    out = []
    for r in comp.rows:
        res = r.baseline if variant == "baseline" else r.patched
        if res is None and variant != "baseline" and r.baseline is not None \
                and r.verdict == REGRESSION:
            b = r.baseline
            res = CaseResult(b.collection, b.test, b.subtest, FAILED,
                             "missing on patched (passed on baseline)")
        if res is None:
            continue
        if variant != "baseline" and r.verdict in (REGRESSION, PRE_EXISTING):
            before = r.baseline.status if r.baseline else "absent"
            res = CaseResult(res.collection, res.test, res.subtest, res.status,
                             f"[{r.verdict}, baseline: {before}] {res.message}".strip(),
                             res.details, res.duration)
        elif variant != "baseline" and r.verdict == FLAKY:
            # Passed on a retry: a passing testcase that says what happened first.
            res = CaseResult(res.collection, res.test, res.subtest, PASSED,
                             f"[flaky: {res.retried}] first run: {res.message}".strip(),
                             res.details, res.duration, res.retried)
        out.append((f"{label}.kselftest.{res.collection}", res))
    return out
