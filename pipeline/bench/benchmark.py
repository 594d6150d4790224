"""`pipeline bench`: concurrent cgroup creation latency, pool vs no pool, idle vs loaded.

Boots each kernel (baseline, patched: same config, same machine) with the in-guest benchmark
pipeline/bench/guest/cgbench.py as init, then writes
  OUT/bench.json   conditions, per-scenario figures (every repetition and their spread),
                   the RFC-claim check; the raw guest data stays in OUT/<kernel>/cgbench.json
  OUT/bench.md     the same as Markdown tables, conditions stated above the numbers
  OUT/bench.png    latency distribution per scenario (pipeline/bench/plot.py)
and offers junit_suite() (one testcase per scenario, figures as properties) for the JUnit
report.

Comparisons: numbers are compared only within one set of conditions. The claim check (pool
vs no pool, loaded) uses scenarios of the same boot of the patched kernel; the baseline
kernel is shown next to them only when its conditions (vCPUs, clock source, N, load, ...)
are identical.
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
from .stats import METRICS, Ratio, RepStats, Spread, ratio, rep_stats, summarize

FORMAT = "cgbench/1"
# Conditions that must be equal before two kernels' numbers may share a table.
SAME_CONDITIONS = ("cpus", "n", "load", "period_ms", "ops", "workers", "controller",
                   "clocksource", "accel", "memory", "smp")


@dataclass
class BenchParams:
    n: int = 400
    reps: int = 5
    load: float = 0.4
    period_ms: float = 10.0
    pool_small: int = 0                 # 0: N/4
    ops: str = "mkdir,attach,rmdir"
    workers: str = "processes"
    controller: str = "auto"
    supply_delay_ms: int = -1           # -1: leave the kernel's default
    timeout: float = 1200.0             # seconds for one kernel's guest session

    def guest_args(self) -> list[str]:
        return [f"--n={self.n}", f"--reps={self.reps}", f"--load={self.load}",
                f"--period-ms={self.period_ms}", f"--pool-small={self.pool_small}",
                f"--ops={self.ops}", f"--workers={self.workers}",
                f"--controller={self.controller}", f"--supply-delay-ms={self.supply_delay_ms}"]

    def check(self) -> None:
        if self.n < 1 or self.n > 4096:
            raise BadInput(f"--n {self.n}: must be within 1..4096 (pool_size limit)")
        if self.reps < 1:
            raise BadInput(f"--reps {self.reps}: must be >= 1")
        if not 0 <= self.load <= 1:
            raise BadInput(f"--load {self.load}: a share of every CPU, within 0..1")
        if self.period_ms <= 0:
            raise BadInput(f"--period-ms {self.period_ms}: must be > 0")
        if self.pool_small and not 0 < self.pool_small < self.n:
            raise BadInput(f"--pool-small {self.pool_small}: must be within 1..N-1")
        bad = [o for o in self.ops.split(",") if o not in ("mkdir", "attach", "rmdir")]
        if bad or "mkdir" not in self.ops.split(","):
            raise BadInput(f"--ops {self.ops}: a comma list of mkdir, attach, rmdir with mkdir")


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
    name: str                     # e.g. "pool-full loaded"
    pool: str
    pool_size: int
    load: float
    op: str
    reps: list[RepStats]
    summary: dict[str, Spread]
    fast_path: list[int]
    load_share: list[float]       # mean CPU share the loaders got, per repetition
    problems: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.kernel} {self.name} {self.op}"


def expected_fast(pool: str, n: int, pool_size: int, fast: int) -> str:
    """"" when `fast` (creations served by the pre-filled pool) fits the scenario."""
    if pool == "nopool" and fast != 0:
        return f"{fast} of {n} creations took the fast path without a pool"
    if pool == "pool-full" and fast != n:
        return f"only {fast} of {n} creations took the fast path with pool_size {pool_size}"
    if pool == "pool-small" and not 0 < fast <= 2 * pool_size:
        return f"{fast} fast-path creations with pool_size {pool_size} (expected 1..{2 * pool_size})"
    return ""


def scenario_results(label: str, data: dict[str, Any]) -> list[ScenarioResult]:
    """All (scenario, operation) results of one kernel's guest JSON."""
    if data.get("format") != FORMAT:
        raise StageFailed(f"{label}: guest result format {data.get('format')!r}, "
                          f"expected {FORMAT!r}")
    n = data["conditions"]["n"]
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
                    bad = expected_fast(sc["pool"], n, sc["pool_size"], rep["fast_path"])
                    if bad:
                        problems.append(f"rep {k + 1}: {bad}")
            shares = [sum(r["load_share"]) / len(r["load_share"]) if r["load_share"] else 0.0
                      for r in sc["reps"]]
            out.append(ScenarioResult(label, sc["name"], sc["pool"], sc["pool_size"],
                                      sc["load"], op, reps, summarize(reps),
                                      [r["fast_path"] for r in sc["reps"]], shares, problems))
    return out


def comparable(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Conditions that differ between two kernels' runs (empty: comparable)."""
    return [k for k in SAME_CONDITIONS if a.get(k) != b.get(k)]


def claim_check(results: list[ScenarioResult], label: str = "patched") -> list[dict[str, Any]]:
    """The RFC's claim, read from one boot of the patched kernel: for the mkdir burst,
    pool vs no pool on p99 and burst time, loaded first (the RFC's case), idle for context."""
    by = {(r.name, r.op): r for r in results if r.kernel == label}
    rows = []
    for load in ("loaded", "idle"):
        ref = by.get((f"nopool {load}", "mkdir"))
        if ref is None:
            continue
        for pool in ("pool-full", "pool-small"):
            sub = by.get((f"{pool} {load}", "mkdir"))
            if sub is None:
                continue
            for metric in ("p99", "burst"):
                rt: Ratio = ratio(sub.summary, ref.summary, metric)
                rows.append({"load": load, "subject": sub.name, "reference": ref.name,
                             "metric": metric, "subject_ms": sub.summary[metric].median,
                             "reference_ms": ref.summary[metric].median,
                             "ratio": rt.ratio, "separated": rt.separated,
                             "verdict": rt.verdict()})
    return rows


def build_report(runs: dict[str, dict[str, Any]], machine: dict[str, Any],
                 host: dict[str, Any]) -> dict[str, Any]:
    """bench.json content from each kernel's guest JSON (label -> data)."""
    conditions = {}
    results: list[ScenarioResult] = []
    for label, data in runs.items():
        c = dict(data["conditions"])
        c.update(machine)
        c["clocksource"] = data["conditions"].get("clocksource", "unknown")
        conditions[label] = c
        results += scenario_results(label, data)
    labels = list(runs)
    mismatch = comparable(conditions[labels[0]], conditions[labels[1]]) \
        if len(labels) == 2 else []
    return {
        "format": "pipeline-bench/1",
        "host": host,
        "conditions": conditions,
        "comparable": not mismatch,
        "differing_conditions": mismatch,
        "scenarios": [{
            "kernel": r.kernel, "scenario": r.name, "op": r.op, "pool": r.pool,
            "pool_size": r.pool_size, "load": r.load,
            "summary": {m: asdict(s) for m, s in r.summary.items()},
            "reps": [asdict(x) for x in r.reps], "fast_path": r.fast_path,
            "load_share": r.load_share, "problems": r.problems} for r in results],
        "claim": claim_check(results),
    }


# --- rendering ------------------------------------------------------------------------------

def _fmt(x: float) -> str:
    return f"{x:.3g}" if x < 10 else f"{x:.0f}"


def _cell(s: dict[str, Any]) -> str:
    return f"{_fmt(s['median'])} ({_fmt(s['lo'])}–{_fmt(s['hi'])})"


def render_markdown(report: dict[str, Any]) -> str:
    lines = ["# cgroup creation burst benchmark", ""]
    lines += [("Each figure: median across repetitions (min–max), in ms. p50/p90/p99/max: "
               "per-operation latency within a burst; burst: from the release of the burst "
               "to the end of its last operation. Numbers are comparable only within the "
               "same conditions."), ""]
    host = report["host"]
    lines += [f"Host: {host.get('note', '')}".rstrip(), ""]
    for label, c in report["conditions"].items():
        k = c["kernel"]
        lines.append(
            f"- **{label}**: kernel {k['release']} ({k['version']}); {c['accel'].upper()}, "
            f"{c['cpus']} vCPU(s) seen by the guest (QEMU -smp {c['smp']}, -m {c['memory']}); "
            f"clock source {c['clocksource']}; N={c['n']} {c['workers']}; "
            f"reps {c['reps']}; load {round(c['load'] * 100)} % of every vCPU "
            f"(period {c['period_ms']} ms); controller {c['controller']}; "
            f"pool support {'yes' if c['pool_support'] else 'no'}; supply delay "
            + (f"{c['supply_delay_ms']} ms" if c["supply_delay_ms"] is not None else "n/a")
            + f"; QEMU {c['qemu_version']}")
    if not report["comparable"]:
        lines += ["", ("**The kernels ran under different conditions "
                       f"({', '.join(report['differing_conditions'])}): compare scenarios "
                       "only within one kernel.**")]
    ops = sorted({s["op"] for s in report["scenarios"]}, key=["mkdir", "attach", "rmdir"].index)
    for op in ops:
        lines += ["", f"## {op}", "",
                  "| kernel | scenario | " + " | ".join(METRICS) + " | fast path | problems |",
                  "|---|---|" + "---|" * len(METRICS) + "---|---|"]
        for s in report["scenarios"]:
            if s["op"] != op:
                continue
            fast = "/".join(str(x) for x in s["fast_path"]) if s["pool_size"] else "–"
            lines.append(f"| {s['kernel']} | {s['scenario']} | "
                         + " | ".join(_cell(s["summary"][m]) for m in METRICS)
                         + f" | {fast} | {'; '.join(s['problems']) or 'none'} |")
    if report["claim"]:
        lines += ["", "## RFC claim check (patched kernel, one boot, mkdir burst)", "",
                  ("ratio = median(pool) / median(no pool); below 1 means the pool is "
                   "faster. \"apart\": the repetition ranges do not overlap."), "",
                  "| load | scenario | metric | pool ms | no pool ms | ratio | apart | reading |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in report["claim"]:
            lines.append(f"| {r['load']} | {r['subject']} | {r['metric']} | "
                         f"{_fmt(r['subject_ms'])} | {_fmt(r['reference_ms'])} | "
                         f"{r['ratio']:.2f} | {'yes' if r['separated'] else 'no'} | "
                         f"{r['verdict']} |")
    return "\n".join(lines) + "\n"


def junit_suite(report: dict[str, Any]) -> junit_xml.TestSuite:
    """One testcase per (kernel, scenario, operation); it fails when the scenario did not do
    what it claims (operation errors, fast-path count off). junit-xml 1.9 and the project's
    schema have no testcase properties, so the figures are suite properties named
    `<kernel> <scenario> <op>.<metric>` and are repeated in each testcase's system-out."""
    cases, props = [], {}
    for s in report["scenarios"]:
        key = f"{s['kernel']} {s['scenario']} {s['op']}"
        figures = {f"{m}_ms": round(s["summary"][m]["median"], 4) for m in METRICS}
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
    for r in report["claim"]:
        props[f"claim {r['load']} {r['subject']}.{r['metric']}_ratio"] = f"{r['ratio']:.3f}"
    return junit_xml.TestSuite("bench", cases, properties=props)


def write_outputs(report: dict[str, Any], raw: dict[str, dict[str, Any]],
                  out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "bench.json", out / "bench.md", out / "bench.png", out / "junit.xml"]
    paths[0].write_text(json.dumps(report, indent=1) + "\n")
    paths[1].write_text(render_markdown(report))
    benchplot.write_plot(report, raw, paths[2])
    paths[3].write_text(junit_xml.to_xml_report_string([junit_suite(report)],
                                                      encoding="utf-8"))
    return paths


# --- orchestration --------------------------------------------------------------------------

def run_bench(kernels: list[tuple[str, Path]], params: BenchParams, machine: Machine,
              out: Path, python: Path, log: Logger) -> dict[str, Any]:
    """Boot every (label, bzImage) in turn under the same machine, run the guest benchmark,
    write the outputs; returns the report. Raises StageFailed when a guest run fails."""
    params.check()
    for label, kernel in kernels:
        if not kernel.is_file():
            raise BadInput(f"{label} kernel {kernel}: no such file")
    machine.accel = resolve_accel(machine.accel, kernels[0][1], log)
    tsc = host_tsc_khz() if machine.accel == "tcg" else None
    extra = clock_args(machine.accel, tsc)
    if machine.accel == "tcg" and not tsc:
        log("  warning: host TSC rate unknown (dmesg); the guest may fall back to the "
            "jiffies clock (coarse 4 ms steps): see conditions")
    machine.kernel_args = [*machine.kernel_args, *extra]
    raw: dict[str, dict[str, Any]] = {}
    walls: dict[str, float] = {}
    load_start = os.getloadavg()[0]
    for label, kernel in kernels:
        log(f"bench {label}: booting {kernel} ({machine.accel}, -smp {machine.smp})")
        t0 = time.monotonic()
        run = run_bench_guest(kernel, out / label, machine, python, params.guest_args(),
                              params.timeout, log)
        walls[label] = time.monotonic() - t0
        if not run.ok or run.data is None:
            raise StageFailed(f"bench {label}: {run.failure.splitlines()[0]}", run.failure)
        raw[label] = run.data
        log(f"bench {label}: ok ({fmt_duration(walls[label])})")
    version = qemu_version()
    host = {"tsc_khz": tsc, "guest_wall_s": {k: round(v, 1) for k, v in walls.items()},
            "loadavg": [load_start, os.getloadavg()[0]],
            "note": f"{os.cpu_count()} host CPUs, 1-min load average {load_start:.1f} at "
                    f"the start, {os.getloadavg()[0]:.1f} at the end (other work on the "
                    "host distorts TCG timing)"}
    report = build_report(raw, {"accel": machine.accel, "smp": machine.smp,
                                "memory": machine.memory, "qemu_version": version}, host)
    for path in write_outputs(report, raw, out):
        log(f"  wrote {path}")
    return report


# --- command line ---------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="benchmark concurrent cgroup creation, pool vs no pool")
    p.add_argument("--baseline-kernel", type=Path, metavar="BZIMAGE",
                   help="a built baseline kernel (default: build the job's baseline variant)")
    p.add_argument("--patched-kernel", type=Path, metavar="BZIMAGE",
                   help="a built patched kernel (default: build the job's patched variant)")
    p.add_argument("--job", type=Path, metavar="FILE",
                   help="job whose baseline and patched variants are built (default job)")
    p.add_argument("--tree", metavar="SPEC", help="tree of those builds (default debian:6.1)")
    p.add_argument("--out", type=Path, default=Path("out/bench"), metavar="DIR",
                   help="folder for bench.json, bench.md, bench.png (default %(default)s)")
    d = BenchParams()
    p.add_argument("--n", type=int, default=d.n, help="concurrent creators (default %(default)s)")
    p.add_argument("--reps", type=int, default=d.reps,
                   help="repetitions of every scenario (default %(default)s)")
    p.add_argument("--load", type=float, default=d.load,
                   help="background busy share of every vCPU (default %(default)s)")
    p.add_argument("--period-ms", type=float, default=d.period_ms,
                   help="duty-cycle period of the background load, ms (default %(default)s)")
    p.add_argument("--pool-small", type=int, default=d.pool_small,
                   help="pool size of the pool-small scenario (default N/4)")
    p.add_argument("--ops", default=d.ops,
                   help="comma list of the timed operations, mkdir required "
                        "(default %(default)s)")
    p.add_argument("--workers", choices=("processes", "threads"), default=d.workers,
                   help="creators as processes or as threads of one process "
                        "(default %(default)s)")
    p.add_argument("--controller", default=d.controller,
                   help="v1 controller list the guest mounts, or auto (the first usable; "
                        "default %(default)s)")
    p.add_argument("--supply-delay-ms", type=int, default=d.supply_delay_ms,
                   help="set kernel.cgroup_supply_delay_time for the run (-1: leave the "
                        "kernel's default)")
    p.add_argument("--timeout", type=seconds_arg, default=d.timeout,
                   help="seconds for one kernel's guest session")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"),
                   help="QEMU accelerator (default: the job's qemu.accel; auto: KVM when "
                        "usable)")
    p.add_argument("--smp", type=int, help="guest CPUs (default: the job's qemu.smp)")
    p.add_argument("--memory",
                   help="guest memory as QEMU's -m takes it (default: the job's qemu.memory)")
    p.add_argument("--python", type=Path, default=Path(sys.executable),
                   help="interpreter the guest runs the benchmark with")
    p.set_defaults(func=cmd_bench)


def _bench_job(args: argparse.Namespace) -> Job:
    """The job whose machine the bench boots and whose baseline and patched variants it
    builds: --job (default: the default job) with --tree, --accel, --smp, --memory."""
    return apply_overrides(load_job(args.job), Overrides(
        tree=args.tree, out=str(args.out / "build"), variants=["baseline", "patched"],
        accel=args.accel, memory=args.memory,
        cpus=None if args.smp is None else str(args.smp)))


def _build_kernels(args: argparse.Namespace, job: Job, log: Log) -> int:
    """Build the job's baseline and patched variants (same config) for the kernels not
    given on the command line; fills args.*_kernel."""
    code = run_job(job, log, build_only=True)
    if code == 0:
        args.baseline_kernel = args.baseline_kernel or job.out / "baseline" / "bzImage"
        args.patched_kernel = args.patched_kernel or job.out / "patched" / "bzImage"
    return code


def cmd_bench(args: argparse.Namespace, log: Log) -> int:
    params = BenchParams(n=args.n, reps=args.reps, load=args.load, period_ms=args.period_ms,
                         pool_small=args.pool_small, ops=args.ops, workers=args.workers,
                         controller=args.controller, supply_delay_ms=args.supply_delay_ms,
                         timeout=args.timeout)
    job = _bench_job(args)
    machine = Machine.of_job(job.qemu)
    if args.baseline_kernel is None or args.patched_kernel is None:
        code = _build_kernels(args, job, log)
        if code != 0:
            return code
    report = run_bench([("baseline", args.baseline_kernel), ("patched", args.patched_kernel)],
                       params, machine, args.out, args.python, log)
    failing = [s for s in report["scenarios"] if s["problems"]]
    for s in failing:
        log(f"  scenario {s['kernel']} {s['scenario']} {s['op']}: {s['problems'][0]}")
    return 1 if failing else 0
