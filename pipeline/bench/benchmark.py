"""`pipeline bench`: concurrent cgroup v1 "container starts", the strategies of the RFC thread
side by side (baseline, favordynmods, user-space pool, kernel pool, kernel pool +
favordynmods), over a curve of N, idle and loaded, same parent and per-container parents.

Boots each kernel (baseline, patched: same config, same machine) with the in-guest benchmark
pipeline/bench/guest/cgbench.py as init, once per --smp count, then writes
  OUT/bench.json   conditions, per-scenario figures (every repetition and their spread),
                   the headline comparison, the pool's cost; the raw guest data stays in
                   OUT/<kernel>/cgbench.json (OUT/smp<k>/<kernel>/ with several --smp)
  OUT/bench.md     the same as Markdown tables, conditions stated above the numbers
  OUT/bench.png    N curve per strategy, or the latency distribution per scenario
                   (pipeline/bench/plot.py; needs matplotlib, the `bench` extra)
and offers junit_suite() (one testcase per scenario, figures as properties) for the JUnit
report.

Which strategy runs on which kernel: the baseline kernel runs baseline, favordynmods and
the user-space pool; the patched kernel runs baseline (the control: the series with no pool
set must cost nothing) and the two kernel-pool strategies.

Clock (--clock): `icount`, the default under TCG, runs QEMU with `-icount
shift=ICOUNT_SHIFT,sleep=off`: guest time is the count of executed instructions, so the
figures do not depend on what else the host runs. `real` is wall-clock TCG or KVM.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import junit_xml

from ..errors import BadInput, StageFailed
from ..job import Job, Overrides, apply_overrides, load_job, seconds_arg
from ..log import Log, Logger, fmt_duration
from ..runner import run_job
from . import plot as benchplot
from .boot import Machine, qemu_version, resolve_accel, run_bench_guest
from .stats import METRICS, RepStats, Spread, rel_diff, rep_stats, summarize

FORMAT = "cgbench/2"
# Conditions that must be equal before two kernels' numbers may share a table.
SAME_CONDITIONS = ("cpus", "ns", "load", "period_ms", "workers", "hierarchies",
                   "clocksource", "accel", "memory", "smp", "clock")
STRATEGIES = ("baseline", "favordynmods", "uspool", "kpool", "kpool-fdm")
POOL_STRATEGIES = ("kpool", "kpool-fdm")
# the headline's columns: (kernel, strategy), the maintainers' alternatives (a)-(e)
HEADLINE = (("a", "baseline", "baseline"), ("b", "baseline", "favordynmods"),
            ("c", "baseline", "uspool"), ("d", "patched", "kpool"),
            ("e", "patched", "kpool-fdm"))
# Instruction clock: one guest instruction = 2**ICOUNT_SHIFT ns of guest time. Fixed, not
# "auto": auto re-tunes the rate to the host's speed as it runs, which is exactly the
# dependence on the host that the mode removes. 3 (125 M instructions per guest second) is
# about the rate TCG itself runs this guest at on these cores (measured: guest time ~0.6x
# wall time), so the guest's own timeouts, HZ ticks and the loaders' 10 ms duty cycle keep
# roughly the meaning they have in wall-clock mode; a smaller shift would make the busy
# loaders of the loaded scenarios cost 2-8x more host time for no extra information.
ICOUNT_SHIFT = 3
CLOCKS = ("icount", "real")
QUICK_N = 50
QUICK: dict[str, Any] = {"ns": [QUICK_N], "curves": [], "parents": ["same"], "load": 0.0,
                         "reps": 1, "cost": 0}


@dataclass
class BenchParams:
    ns: list[int] = field(default_factory=lambda: [1, 10, 50, 100, 200, 400])
    reps: int = 0                       # 0: 1 under the instruction clock, else 3
    load: float = 0.4
    period_ms: float = 10.0
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    curves: list[str] = field(default_factory=lambda: ["same-idle"])
    parents: list[str] = field(default_factory=lambda: ["same", "per"])
    hierarchies: str = "auto"
    supply_delay_ms: int = -1           # -1: leave the kernel's default
    cost: int = 4096                    # pool members of the cost fill (0: none)
    timeout: float = 1800.0             # seconds for one kernel's guest session

    def guest_args(self, kernel: str, clock: str) -> list[str]:
        """The guest's argv for one kernel ("baseline" or "patched")."""
        mine = [s for s in self.strategies if s == "baseline"
                or (s in POOL_STRATEGIES) == (kernel == "patched")]
        reps = self.reps or (1 if clock == "icount" else 3)
        return [f"--ns={','.join(map(str, self.ns))}", f"--reps={reps}",
                f"--load={self.load}", f"--period-ms={self.period_ms}",
                f"--strategies={','.join(mine)}", f"--curves={','.join(self.curves)}",
                f"--parents={','.join(self.parents)}", f"--hierarchies={self.hierarchies}",
                f"--supply-delay-ms={self.supply_delay_ms}",
                f"--cost={self.cost if kernel == 'patched' else 0}"]

    def check(self) -> None:
        if not self.ns or any(n < 1 or n > 4096 for n in self.ns):
            raise BadInput(f"--n {self.ns}: every N must be within 1..4096 (pool_size limit)")
        if self.reps < 0:
            raise BadInput(f"--reps {self.reps}: must be >= 1")
        if not 0 <= self.load <= 1:
            raise BadInput(f"--load {self.load}: a share of every CPU, within 0..1")
        if self.period_ms <= 0:
            raise BadInput(f"--period-ms {self.period_ms}: must be > 0")
        bad = [s for s in self.strategies if s not in STRATEGIES]
        if bad or not self.strategies:
            raise BadInput(f"--strategies {bad}: choose from {', '.join(STRATEGIES)}")
        cases = [f"{p}-{ld}" for p in ("same", "per") for ld in ("idle", "loaded")]
        if any(c not in cases for c in self.curves):
            raise BadInput(f"--curves {self.curves}: choose from {', '.join(cases)}")
        if not self.parents or any(p not in ("same", "per") for p in self.parents):
            raise BadInput(f"--parents {self.parents}: same and/or per")
        if self.cost < 0 or self.cost % 2 or self.cost > 8192:
            raise BadInput(f"--cost {self.cost}: an even member count within 0..8192")


def quick_params(params: BenchParams) -> BenchParams:
    """--quick: one N, same parent, idle, one repetition, no cost fill (CI, <= 3 min)."""
    return BenchParams(**{**asdict(params), **QUICK, "strategies": list(STRATEGIES)})


def icount_words(shift: int = ICOUNT_SHIFT) -> tuple[list[str], list[str]]:
    """(QEMU words, kernel words) of the instruction clock. sleep=off: an idle guest's clock
    jumps to the next timer instead of waiting for the host's, so the guest never waits on
    the host's time (timers fire, nothing hangs). Under icount the TSC counts guest
    nanoseconds (measured: the PIT calibration finds 999.9 MHz), so the guest is told a
    1 GHz TSC outright instead of the host's rate. The rest takes randomness out of what the
    guest executes: norandmaps (no address-space layout randomisation of user processes)
    and PYTHONHASHSEED=0 (the kernel hands an unknown `K=V` word to init's environment, so
    the guest's Python hashes, and iterates its sets, the same way every boot)."""
    if not 0 <= shift <= 10:
        raise ValueError(f"icount shift {shift}: must be within 0..10")
    return (["-icount", f"shift={shift},sleep=off"],
            ["tsc_early_khz=1000000", "tsc=reliable", "norandmaps", "PYTHONHASHSEED=0"])


def resolve_clock(clock: str | None, accel: str, smps: list[int], smp_given: bool
                  ) -> tuple[str, list[int]]:
    """The clock and the vCPU counts to run: icount by default under TCG, real otherwise.
    icount needs TCG, and on this QEMU (7.2) an icount guest does not bring up a second x86
    vCPU (measured: the boot hangs in "x86: Booting SMP configuration", CPU1 spinning in
    cpu_init, with shift 0, 3 and 7, sleep on and off), so icount runs one vCPU; asking for
    more with it is an error, and the job's default count gives way to 1."""
    clock = clock or ("icount" if accel == "tcg" else "real")
    if clock not in CLOCKS:
        raise BadInput(f"--clock {clock}: choose from {', '.join(CLOCKS)}")
    if clock == "icount" and accel != "tcg":
        raise BadInput(f"--clock icount needs --accel tcg (got {accel}): instruction "
                       "counting is a TCG feature")
    if clock == "icount":
        if smp_given and any(n != 1 for n in smps):
            raise BadInput(f"--smp {' '.join(map(str, smps))} with --clock icount: QEMU's "
                           "instruction clock cannot boot an SMP x86 guest here; use "
                           "--clock real for several vCPUs")
        return clock, [1]
    return clock, smps


# --- host facts -----------------------------------------------------------------------------

_TSC_RE = re.compile(r"tsc: (?:Refined TSC clocksource calibration: |Detected )"
                     r"([0-9.]+) MHz")


def parse_tsc_khz(kernel_log: str) -> int | None:
    """The host TSC rate from its kernel log (the refined value wins over the first guess)."""
    found = _TSC_RE.findall(kernel_log)
    return round(float(found[-1]) * 1000) if found else None


def host_tsc_khz() -> int | None:
    try:
        text = subprocess.run(["dmesg"], check=False, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_tsc_khz(text)


def clock_args(accel: str, tsc_khz: int | None) -> list[str]:
    """Kernel words that give a TCG guest a fine clock.

    A tiny guest kernel without ACPI has no HPET/PM timer to calibrate the TSC against, and
    under TCG the PIT calibration fails too: it falls back to the jiffies clocksource (4 ms
    steps at HZ=250), useless for latencies of microseconds. Under TCG the guest TSC ticks
    at the host's TSC rate, so telling the guest that rate (and that the TSC is reliable)
    gives it the `tsc` clocksource. Under KVM the guest has kvm-clock."""
    if accel != "tcg" or not tsc_khz:
        return []
    return [f"tsc_early_khz={tsc_khz}", "tsc=reliable"]


# --- turning guest data into the report -----------------------------------------------------

@dataclass
class ScenarioResult:
    kernel: str                   # label: baseline / patched
    smp: int
    name: str                     # e.g. "kpool same n=400 idle"
    strategy: str
    parents: str
    n: int
    pool: str                     # nopool / pool-full (the kernel pool serves every start)
    pool_size: int
    load: float
    op: str                       # mkdir / attach / start
    reps: list[RepStats]
    summary: dict[str, Spread]
    fast_path: list[int]
    load_share: list[float]       # mean CPU share the loaders got, per repetition
    problems: list[str] = field(default_factory=list)


def expected_fast(pool: str, n: int, fast: int) -> str:
    """"" when `fast` (containers whose every cgroup came from the pool) fits the scenario."""
    if pool == "nopool" and fast != 0:
        return f"{fast} of {n} starts took the fast path without a pool"
    if pool == "pool-full" and fast != n:
        return f"only {fast} of {n} starts were served by the pool in every hierarchy"
    return ""


def scenario_results(label: str, smp: int, data: dict[str, Any]) -> list[ScenarioResult]:
    """All (scenario, operation) results of one kernel's guest JSON."""
    if data.get("format") != FORMAT:
        raise StageFailed(f"{label}: guest result format {data.get('format')!r}, "
                          f"expected {FORMAT!r}")
    out = []
    for sc in data["scenarios"]:
        for op in data["conditions"]["ops"]:
            reps, problems = [], []
            for k, rep in enumerate(sc["reps"]):
                o = rep["ops"][op]
                reps.append(rep_stats(o["lat_ns"], o["start_ns"], o["errors"]))
                if o["errors"]:
                    problems.append(f"rep {k + 1}: {op} errors {o['errors']}")
                if op == "mkdir":
                    bad = expected_fast(sc["pool"], sc["n"], rep["fast_path"])
                    if bad:
                        problems.append(f"rep {k + 1}: {bad}")
            if not reps:
                continue
            shares = [sum(r["load_share"]) / len(r["load_share"]) if r["load_share"] else 0.0
                      for r in sc["reps"]]
            out.append(ScenarioResult(label, smp, sc["name"], sc["strategy"], sc["parents"],
                                      sc["n"], sc["pool"], sc["pool_size"], sc["load"], op,
                                      reps, summarize(reps),
                                      [r["fast_path"] for r in sc["reps"]], shares, problems))
    return out


def comparable(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Conditions that differ between two kernels' runs (empty: comparable)."""
    return [k for k in SAME_CONDITIONS if a.get(k) != b.get(k)]


def headline(scenarios: list[dict[str, Any]], metric: str = "p99") -> list[dict[str, Any]]:
    """One row per (smp, parents, load, n) of the container start: the median `metric` of
    each of the alternatives (a)-(e), and the kernel pool (d) against the best of the
    alternatives that need no new kernel code, (b) favordynmods and (c) the user-space pool
    (ratio < 1: the kernel pool is faster)."""
    cells: dict[tuple[int, str, float, int], dict[str, dict[str, Any]]] = {}
    for s in scenarios:
        if s["op"] != "start":
            continue
        for col, kernel, strategy in HEADLINE:
            if s["kernel"] == kernel and s["strategy"] == strategy:
                key = (s["smp"], s["parents"], s["load"], s["n"])
                cells.setdefault(key, {})[col] = s["summary"]
    rows = []
    order = {"same": 0, "per": 1}
    for (smp, parents, load, n), got in sorted(cells.items(),
                                               key=lambda kv: (kv[0][0], order[kv[0][1]],
                                                               kv[0][2], kv[0][3])):
        row: dict[str, Any] = {"smp": smp, "parents": parents, "load": load, "n": n}
        for col, _k, _s in HEADLINE:
            row[col] = got[col][metric]["median"] if col in got else None
            row[f"{col}_p50"] = got[col]["p50"]["median"] if col in got else None
        others = [(row[c], c) for c in ("b", "c") if row[c] is not None]
        if row["d"] is not None and others:
            best, which = min(others)
            row["d_vs_best"] = row["d"] / best if best > 0 else None
            row["best"] = which
        else:
            row["d_vs_best"], row["best"] = None, None
        rows.append(row)
    return rows


def cost_rows(raw: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Kernel memory per pool member and the fill time, per hierarchy (patched kernel)."""
    rows = []
    for label, data in raw.items():
        for c in data.get("cost", []):
            members = c["members"]
            d = {k: c["after_kb"][k] - c["before_kb"][k] for k in ("Slab", "Percpu")}
            rows.append({"kernel": label, "hierarchy": c["hierarchy"], "members": members,
                         "slab_bytes_per_member": d["Slab"] * 1024 / members,
                         "percpu_bytes_per_member": d["Percpu"] * 1024 / members,
                         "fill_s": c["fill_ns"] / 1e9,
                         "fill_us_per_member": c["fill_ns"] / 1e3 / members})
    return rows


def build_report(runs: dict[str, dict[str, Any]], machine: dict[str, Any],
                 host: dict[str, Any]) -> dict[str, Any]:
    """bench.json content from each run's guest JSON. Keys of `runs`: the kernel label, or
    "<label> smp<k>" with several vCPU counts; machine["smp_of"] maps them to the count."""
    conditions = {}
    results: list[ScenarioResult] = []
    for key, data in runs.items():
        label = key.split(" ")[0]
        smp = machine.get("smp_of", {}).get(key, machine.get("smp", 1))
        c = dict(data["conditions"])
        c.update({k: v for k, v in machine.items() if k != "smp_of"})
        c["smp"] = smp
        c["clocksource"] = data["conditions"].get("clocksource", "unknown")
        conditions[key] = c
        results += scenario_results(label, smp, data)
    keys = list(runs)
    mismatch: list[str] = []
    for a in keys:
        for b in keys:
            if a < b and a.split(" ")[1:] == b.split(" ")[1:]:
                mismatch += [k for k in comparable(conditions[a], conditions[b])
                             if k not in mismatch]
    scenarios = [{
        "kernel": r.kernel, "smp": r.smp, "scenario": r.name, "strategy": r.strategy,
        "parents": r.parents, "n": r.n, "op": r.op, "pool": r.pool,
        "pool_size": r.pool_size, "load": r.load,
        "summary": {m: asdict(s) for m, s in r.summary.items()},
        "reps": [asdict(x) for x in r.reps], "fast_path": r.fast_path,
        "load_share": r.load_share, "problems": r.problems} for r in results]
    return {
        "format": "pipeline-bench/2",
        "host": host,
        "conditions": conditions,
        "comparable": not mismatch,
        "differing_conditions": mismatch,
        "scenarios": scenarios,
        "headline": headline(scenarios),
        "cost": cost_rows(runs),
    }


def agreement(a: dict[str, Any], b: dict[str, Any], ops: tuple[str, ...] = ("start",),
              metrics: tuple[str, ...] = ("p50", "p99")) -> list[dict[str, Any]]:
    """How two reports of the same scenarios agree: per (kernel, smp, scenario, op, metric)
    both medians and their relative difference |a-b| / min(a, b)."""
    def index(r: dict[str, Any]) -> dict[tuple[str, int, str, str], dict[str, Any]]:
        return {(s["kernel"], s["smp"], s["scenario"], s["op"]): s for s in r["scenarios"]}

    ia, ib = index(a), index(b)
    rows = []
    for key in sorted(set(ia) & set(ib)):
        if key[3] not in ops:
            continue
        for m in metrics:
            x, y = ia[key]["summary"][m]["median"], ib[key]["summary"][m]["median"]
            rows.append({"kernel": key[0], "smp": key[1], "scenario": key[2], "op": key[3],
                         "metric": m, "a": x, "b": y, "rel": rel_diff(x, y)})
    return rows


# --- rendering ------------------------------------------------------------------------------

def _fmt(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3g}" if x < 10 else f"{x:.0f}"


def _cell(s: dict[str, Any]) -> str:
    return f"{_fmt(s['median'])} ({_fmt(s['lo'])}–{_fmt(s['hi'])})"


def _load_name(load: float) -> str:
    return f"{round(load * 100)} % load" if load else "idle"


def render_headline(rows: list[dict[str, Any]]) -> list[str]:
    lines = [("| vCPUs | parents | load | N | (a) baseline | (b) favordynmods | "
             "(c) user-space pool | (d) kernel pool | (e) kernel pool + fdm | "
             "(d) / best of (b),(c) |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = (f"{r['d_vs_best']:.2f} vs ({r['best']})" if r["d_vs_best"] is not None
                 else "–")
        lines.append(f"| {r['smp']} | {r['parents']} | {_load_name(r['load'])} | {r['n']} | "
                     + " | ".join(f"{_fmt(r[c + '_p50'])} / {_fmt(r[c])}"
                                  for c in "abcde") + f" | {ratio} |")
    return lines


def render_markdown(report: dict[str, Any], conclusion: str = "") -> str:
    lines = ["# cgroup v1 container-start benchmark", ""]
    if conclusion:
        lines += [conclusion.strip(), ""]
    lines += [("Each figure: median across repetitions (min–max), in ms of guest time. "
               "One start = a mkdir in every mounted v1 hierarchy, then the move of the "
               "process into each; mkdir/attach/start are its two halves and the whole. "
               "p50/p90/p99/max: per-start latency within one burst of N concurrent "
               "starts; burst: from the release of the burst to the end of its last start. "
               "Numbers are comparable only within the same conditions."), ""]
    host = report["host"]
    lines += [f"Host: {host.get('note', '')}".rstrip(), ""]
    for label, c in report["conditions"].items():
        k = c["kernel"]
        lines.append(
            f"- **{label}**: kernel {k['release']} ({k['version']}); {c['accel'].upper()}, "
            f"clock {c.get('clock', 'real')}, {c['cpus']} vCPU(s) seen by the guest "
            f"(QEMU -smp {c['smp']}, -m {c['memory']}); guest clock source "
            f"{c['clocksource']}; hierarchies {'; '.join(c['hierarchies'])}; "
            f"N {', '.join(map(str, c['ns']))}; reps {c['reps']}; load "
            f"{round(c['load'] * 100)} % of every vCPU (period {c['period_ms']} ms); "
            f"pool support {'yes' if c['pool_support'] else 'no'}; supply delay "
            + (f"{c['supply_delay_ms']} ms" if c["supply_delay_ms"] is not None else "n/a")
            + f"; QEMU {c['qemu_version']}")
    if not report["comparable"]:
        lines += ["", ("**The kernels ran under different conditions "
                       f"({', '.join(report['differing_conditions'])}): compare scenarios "
                       "only within one kernel.**")]
    if report["headline"]:
        lines += ["", "## Headline: the whole container start, p50 / p99 ms", "",
                  ("(a)-(c) on the baseline kernel, (d)-(e) on the patched one (same tree, "
                   "same config, same machine). Last column: p99 of the kernel pool over "
                   "the better p99 of favordynmods and the user-space pool; below 1 the "
                   "kernel pool is faster."), ""]
        lines += render_headline(report["headline"])
    if report.get("agreement"):
        ag = report["agreement"]
        worst = max(ag["rows"], key=lambda r: r["rel"])
        lines += ["", "## Reproducibility", "",
                  (f"Against {ag['other']}: {len(ag['rows'])} start p50/p99 figures, "
                   f"largest relative difference {worst['rel'] * 100:.2f} % "
                   f"({worst['kernel']} {worst['scenario']} {worst['metric']}: "
                   f"{_fmt(worst['a'])} vs {_fmt(worst['b'])} ms); median "
                   f"{sorted(r['rel'] for r in ag['rows'])[len(ag['rows']) // 2] * 100:.2f} %."
                   + (f" {ag['note']}" if ag.get("note") else ""))]
    if report["cost"]:
        lines += ["", "## Cost of the kernel pool", "",
                  ("Kernel memory of one fill (pool_size M/2 gives M hidden members), from "
                   "Slab and Percpu of /proc/meminfo before and after, per member; and the "
                   "fill's duration (guest time)."), "",
                  ("| hierarchy | members | Slab B/member | Percpu B/member | fill s | "
                  "µs/member |"), "|---|---|---|---|---|---|"]
        for r in report["cost"]:
            lines.append(f"| {r['hierarchy']} | {r['members']} | "
                         f"{r['slab_bytes_per_member']:.0f} | "
                         f"{r['percpu_bytes_per_member']:.0f} | {r['fill_s']:.2f} | "
                         f"{r['fill_us_per_member']:.0f} |")
    for op in ("start", "mkdir", "attach"):
        rows = [s for s in report["scenarios"] if s["op"] == op]
        if not rows:
            continue
        lines += ["", f"## {op}", "",
                  "| kernel | vCPUs | scenario | " + " | ".join(METRICS)
                  + " | served by pool | problems |",
                  "|---|---|---|" + "---|" * len(METRICS) + "---|---|"]
        for s in rows:
            fast = "/".join(str(x) for x in s["fast_path"]) if s["pool_size"] else "–"
            lines.append(f"| {s['kernel']} | {s['smp']} | {s['scenario']} | "
                         + " | ".join(_cell(s["summary"][m]) for m in METRICS)
                         + f" | {fast} | {'; '.join(s['problems']) or 'none'} |")
    return "\n".join(lines) + "\n"


def junit_suite(report: dict[str, Any]) -> junit_xml.TestSuite:
    """One testcase per (kernel, vCPUs, scenario, operation); it fails when the scenario did
    not do what it claims (operation errors, pool-served count off). junit-xml 1.9 and the
    project's schema have no testcase properties, so the figures are suite properties named
    `<kernel> smp<k> <scenario> <op>.<metric>` and are repeated in each testcase's
    system-out."""
    cases, props = [], {}
    for s in report["scenarios"]:
        key = f"{s['kernel']} smp{s['smp']} {s['scenario']} {s['op']}"
        figures: dict[str, Any] = {f"{m}_ms": round(s["summary"][m]["median"], 4)
                                   for m in METRICS}
        figures.update({f"{m}_ms_range": f"{s['summary'][m]['lo']:.4f}..{s['summary'][m]['hi']:.4f}"
                        for m in METRICS})
        figures["fast_path"] = "/".join(str(x) for x in s["fast_path"])
        for name, value in figures.items():
            props[f"{key}.{name}"] = str(value)
        tc = junit_xml.TestCase(key, classname=f"bench.{s['kernel']}",
                                elapsed_sec=0.0,
                                stdout="\n".join(f"{k}={v}" for k, v in figures.items()))
        if s["problems"]:
            tc.add_failure_info(message=s["problems"][0], output="\n".join(s["problems"]))
        cases.append(tc)
    for r in report["headline"]:
        if r["d_vs_best"] is not None:
            props[f"headline smp{r['smp']} {r['parents']} {_load_name(r['load'])} "
                  f"n={r['n']}.d_vs_best"] = f"{r['d_vs_best']:.3f}"
    return junit_xml.TestSuite("bench", cases, properties=props)


def write_outputs(report: dict[str, Any], raw: dict[str, dict[str, Any]], out: Path,
                  log: Logger, conclusion: str = "") -> list[Path]:
    """bench.json, bench.md, junit.xml and (with matplotlib) bench.png; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "bench.json", out / "bench.md"]
    paths[0].write_text(json.dumps(report, indent=1) + "\n")
    paths[1].write_text(render_markdown(report, conclusion))
    png = out / "bench.png"
    if benchplot.write_plot(report, raw, png):
        paths.append(png)
    else:
        png.unlink(missing_ok=True)
        log(f"  plot skipped: {benchplot.unavailable()} (install the `bench` extra: "
            "pip install 'kernel-pipeline[bench]'); bench.json and bench.md are complete")
    junit = out / "junit.xml"
    junit.write_text(junit_xml.to_xml_report_string([junit_suite(report)], encoding="utf-8"))
    paths.append(junit)
    return paths


# --- orchestration --------------------------------------------------------------------------

def run_dir(out: Path, label: str, smp: int, smps: list[int]) -> Path:
    """Where one kernel's guest data goes: OUT/<label>, or OUT/smp<k>/<label> with several
    vCPU counts."""
    return out / label if len(smps) == 1 else out / f"smp{smp}" / label


def run_bench(kernels: list[tuple[str, Path]], params: BenchParams, machine: Machine,
              out: Path, python: Path, log: Logger, clock: str | None = None,
              smps: list[int] | None = None, smp_given: bool = False,
              compare_with: Path | None = None) -> dict[str, Any]:
    """Boot every (label, bzImage) in turn under the same machine, once per vCPU count, run
    the guest benchmark, write the outputs; returns the report. Raises StageFailed when a
    guest run fails."""
    params.check()
    for label, kernel in kernels:
        if not kernel.is_file():
            raise BadInput(f"{label} kernel {kernel}: no such file")
    machine.accel = resolve_accel(machine.accel, kernels[0][1], log)
    clock, smps = resolve_clock(clock, machine.accel, smps or [machine.smp], smp_given)
    if clock == "icount":
        qwords, kwords = icount_words()
        tsc = None
        log(f"bench: instruction clock (QEMU {' '.join(qwords)}), 1 vCPU")
    else:
        qwords = []
        tsc = host_tsc_khz() if machine.accel == "tcg" else None
        kwords = clock_args(machine.accel, tsc)
        if machine.accel == "tcg" and not tsc:
            log("  warning: host TSC rate unknown (dmesg); the guest may fall back to the "
                "jiffies clock (coarse 4 ms steps): see conditions")
    machine.kernel_args = [*machine.kernel_args, *kwords]
    machine.qemu_args = [*machine.qemu_args, *qwords]
    raw: dict[str, dict[str, Any]] = {}
    walls: dict[str, float] = {}
    smp_of: dict[str, int] = {}
    load_start = os.getloadavg()[0]
    for smp in smps:
        machine.smp = smp
        for label, kernel in kernels:
            key = label if len(smps) == 1 else f"{label} smp{smp}"
            log(f"bench {key}: booting {kernel} ({machine.accel}, clock {clock}, -smp {smp})")
            t0 = time.monotonic()
            run = run_bench_guest(kernel, run_dir(out, label, smp, smps), machine, python,
                                  params.guest_args(label, clock), params.timeout, log)
            walls[key] = time.monotonic() - t0
            if not run.ok or run.data is None:
                raise StageFailed(f"bench {key}: {run.failure.splitlines()[0]}", run.failure)
            raw[key] = run.data
            smp_of[key] = smp
            log(f"bench {key}: ok ({fmt_duration(walls[key])})")
    version = qemu_version()
    host = {"tsc_khz": tsc, "guest_wall_s": {k: round(v, 1) for k, v in walls.items()},
            "loadavg": [load_start, os.getloadavg()[0]],
            "note": f"{os.cpu_count()} host CPUs, 1-min load average {load_start:.1f} at "
                    f"the start, {os.getloadavg()[0]:.1f} at the end"
                    + (" (under the instruction clock other work on the host changes the "
                       "wall time only, not the figures)" if clock == "icount" else
                       " (other work on the host distorts TCG timing)")}
    report = build_report(raw, {"accel": machine.accel, "smp_of": smp_of,
                                "memory": machine.memory, "qemu_version": version,
                                "clock": clock,
                                "icount_shift": ICOUNT_SHIFT if clock == "icount" else None},
                          host)
    if compare_with is not None:
        other = json.loads(compare_with.read_text())
        rows = agreement(report, other)
        if rows:
            report["agreement"] = {"other": str(compare_with), "rows": rows,
                                   "max_rel": max(r["rel"] for r in rows),
                                   "note": f"(that run's host load average: "
                                           f"{other['host'].get('loadavg')}; this one's: "
                                           f"{host['loadavg']})"}
    conclusion = ""
    if (out / "conclusion.md").is_file():
        conclusion = (out / "conclusion.md").read_text()
    for path in write_outputs(report, raw, out, log, conclusion):
        log(f"  wrote {path}")
    return report


# --- command line ---------------------------------------------------------------------------

def _ns_arg(text: str) -> list[int]:
    try:
        ns = [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma list of integers") from None
    if not ns:
        raise argparse.ArgumentTypeError("no N given")
    return ns


def _list_arg(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="benchmark concurrent cgroup v1 container starts: "
                                     "baseline, favordynmods, user-space and kernel pool")
    p.add_argument("--baseline-kernel", type=Path, metavar="BZIMAGE",
                   help="a built baseline kernel (default: build the job's baseline variant)")
    p.add_argument("--patched-kernel", type=Path, metavar="BZIMAGE",
                   help="a built patched kernel (default: build the job's patched variant)")
    p.add_argument("--job", type=Path, metavar="FILE",
                   help="job whose baseline and patched variants are built (default job)")
    p.add_argument("--tree", metavar="SPEC", help="tree of those builds (default debian:6.1)")
    p.add_argument("--out", type=Path, default=Path("out/bench"), metavar="DIR",
                   help="folder for bench.json, bench.md, bench.png (default %(default)s); "
                        "a conclusion.md there opens bench.md")
    d = BenchParams()
    p.add_argument("--quick", action="store_true",
                   help=f"the short set for CI: {QUICK_N} concurrent starts, same "
                        "parent, idle, one repetition, every strategy, no cost fill")
    p.add_argument("--n", type=_ns_arg, default=d.ns, metavar="N[,N...]",
                   help="concurrent starts per burst, a comma list: the curve "
                        "(default 1,10,50,100,200,400)")
    p.add_argument("--reps", type=int, default=d.reps,
                   help="repetitions of every scenario (default: 1 under the instruction "
                        "clock, whose runs repeat themselves, 3 otherwise)")
    p.add_argument("--load", type=float, default=d.load,
                   help="background busy share of every vCPU (default %(default)s; 0: no "
                        "loaded scenarios)")
    p.add_argument("--period-ms", type=float, default=d.period_ms,
                   help="duty-cycle period of the background load, ms (default %(default)s)")
    p.add_argument("--strategies", type=_list_arg, default=d.strategies,
                   help="comma list of " + ", ".join(STRATEGIES) + " (default: all)")
    p.add_argument("--curves", type=_list_arg, default=d.curves,
                   help="comma list of <same|per>-<idle|loaded> cases that run over every N; "
                        "the others run at the largest N only (default %(default)s)")
    p.add_argument("--parents", type=_list_arg, default=d.parents,
                   help="same (one parent for every container) and/or per (a parent per "
                        "container) (default same,per)")
    p.add_argument("--hierarchies", default=d.hierarchies,
                   help="';'-separated v1 hierarchies, or auto (every one of cpu,cpuacct; "
                        "memory; pids; freezer; devices that the kernel has)")
    p.add_argument("--cost", type=int, default=d.cost,
                   help="pool members of the cost fill per hierarchy, patched kernel "
                        "(default %(default)s; 0: none)")
    p.add_argument("--supply-delay-ms", type=int, default=d.supply_delay_ms,
                   help="set kernel.cgroup_supply_delay_time for the run (-1: leave the "
                        "kernel's default)")
    p.add_argument("--timeout", type=seconds_arg, default=d.timeout,
                   help="seconds for one kernel's guest session")
    p.add_argument("--clock", choices=CLOCKS,
                   help="icount: guest time counts instructions (deterministic; default "
                        "under TCG; one vCPU); real: wall-clock time (TCG or KVM)")
    p.add_argument("--compare-with", type=Path, metavar="BENCH_JSON",
                   help="an earlier run's bench.json of the same scenarios: bench.md states "
                        "how far the two agree")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"),
                   help="QEMU accelerator (default: the job's qemu.accel; auto: KVM when "
                        "usable)")
    p.add_argument("--smp", type=int, nargs="+", metavar="K",
                   help="guest CPUs, one machine per count (default: the job's qemu.smp; "
                        "1 under the instruction clock)")
    p.add_argument("--memory",
                   help="guest memory as QEMU's -m takes it (default: the job's qemu.memory)")
    p.add_argument("--python", type=Path, default=Path(sys.executable),
                   help="interpreter the guest runs the benchmark with")
    p.set_defaults(func=cmd_bench)


def params_of(args: argparse.Namespace) -> BenchParams:
    params = BenchParams(ns=args.n, reps=args.reps, load=args.load,
                         period_ms=args.period_ms, strategies=args.strategies,
                         curves=args.curves, parents=args.parents,
                         hierarchies=args.hierarchies, supply_delay_ms=args.supply_delay_ms,
                         cost=args.cost, timeout=args.timeout)
    return quick_params(params) if args.quick else params


def _bench_job(args: argparse.Namespace) -> Job:
    """The job whose machine the bench boots and whose baseline and patched variants it
    builds: --job (default: the default job) with --tree, --accel, --smp, --memory."""
    return apply_overrides(load_job(args.job), Overrides(
        tree=args.tree, out=str(args.out / "build"), variants=["baseline", "patched"],
        accel=args.accel, memory=args.memory,
        cpus=None if args.smp is None else str(args.smp[0])))


def _build_kernels(args: argparse.Namespace, job: Job, log: Log) -> int:
    """Build the job's baseline and patched variants (same config) for the kernels not
    given on the command line; fills args.*_kernel."""
    code = run_job(job, log, build_only=True)
    if code == 0:
        args.baseline_kernel = args.baseline_kernel or job.out / "baseline" / "bzImage"
        args.patched_kernel = args.patched_kernel or job.out / "patched" / "bzImage"
    return code


def cmd_bench(args: argparse.Namespace, log: Log) -> int:
    params = params_of(args)
    job = _bench_job(args)
    machine = Machine.of_job(job.qemu)
    if args.baseline_kernel is None or args.patched_kernel is None:
        code = _build_kernels(args, job, log)
        if code != 0:
            return code
    report = run_bench([("baseline", args.baseline_kernel), ("patched", args.patched_kernel)],
                       params, machine, args.out, args.python, log, clock=args.clock,
                       smps=args.smp, smp_given=args.smp is not None,
                       compare_with=args.compare_with)
    failing = [s for s in report["scenarios"] if s["problems"]]
    for s in failing:
        log(f"  scenario {s['kernel']} {s['scenario']} {s['op']}: {s['problems'][0]}")
    return 1 if failing else 0
