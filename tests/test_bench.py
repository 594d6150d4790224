"""Host-side tests of `pipeline bench`: statistics, the guest's load generator and scenario
planning (imported from its file, so the real guest code is exercised), the clock and vCPU
choice, argument parsing, report, JUnit and PNG output."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pipeline.bench import benchmark as bench
from pipeline.bench import plot as benchplot
from pipeline.bench import stats as benchstats
from pipeline.bench.boot import Machine, qemu_argv
from pipeline.cli import parser as build_parser
from pipeline.errors import BadInput

GUEST = Path(__file__).resolve().parent.parent / "pipeline" / "bench" / "guest" / "cgbench.py"


@pytest.fixture(scope="module")
def cgbench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cgbench_under_test", GUEST)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look the module up by name
    spec.loader.exec_module(mod)
    return mod


# --- statistics -----------------------------------------------------------------------------

def test_percentile_linear_interpolation() -> None:
    assert benchstats.percentile([1, 2], 50) == 1.5
    assert benchstats.percentile([3, 1, 2], 0) == 1
    assert benchstats.percentile([3.0, 1.0, 2.0], 100) == 3
    values = [float(x) for x in range(1, 101)]  # 1..100
    assert benchstats.percentile(values, 99) == pytest.approx(99.01)
    assert benchstats.percentile([7], 90) == 7
    with pytest.raises(ValueError):
        benchstats.percentile([], 50)
    with pytest.raises(ValueError):
        benchstats.percentile([1], 101)


def test_rep_stats_burst_is_release_to_last_end() -> None:
    ms = 1_000_000
    r = benchstats.rep_stats([1 * ms, 2 * ms, 10 * ms], [5 * ms, 0, 1 * ms], {"EEXIST": 1})
    assert r.max == 10 and r.p50 == 2
    assert r.burst == 11  # third op: starts at 1 ms, lasts 10 ms
    assert r.skew == 5
    assert r.ops == 3 and r.errors == {"EEXIST": 1}
    with pytest.raises(ValueError):
        benchstats.rep_stats([1], [])


def test_spread_and_ratio() -> None:
    s = benchstats.spread([3.0, 1.0, 2.0])
    assert (s.median, s.lo, s.hi, s.n) == (2.0, 1.0, 3.0, 3)
    assert s.stdev == pytest.approx(1.0)
    assert benchstats.spread([5.0]).stdev == 0.0
    fast = {"p99": benchstats.spread([1.0, 2.0])}
    slow = {"p99": benchstats.spread([4.0, 6.0])}
    r = benchstats.ratio(fast, slow, "p99")
    assert r.ratio == pytest.approx(0.3) and r.separated and r.verdict() == "faster"
    near = {"p99": benchstats.spread([3.0, 4.5])}
    assert not benchstats.ratio(near, slow, "p99").separated


def test_histogram_log_bins_and_clamps() -> None:
    counts = benchstats.histogram_log([0.001, 0.1, 0.5, 1, 5, 10, 1000], 0.1, 10, 2)
    assert counts == [3, 4]  # 0.001 clamps into bin 0, 1000 into the last; 1 starts bin 1
    with pytest.raises(ValueError):
        benchstats.histogram_log([1], 0, 10, 4)


# --- load generator (guest code) ------------------------------------------------------------

def test_duty_window(cgbench: ModuleType) -> None:
    assert cgbench.duty_window(0, 10, 0.4) == (4, 10)
    assert cgbench.duty_window(13, 10, 0.4) == (17, 20)       # woke late: busy from waking
    assert cgbench.duty_window(18, 10, 0.4) == (20, 20)       # capped at the period's end
    assert cgbench.duty_window(13, 10, 0.4, phase_ns=5) == (15, 15)  # period [5, 15)
    assert cgbench.duty_window(7, 10, 0.0) == (7, 10)
    assert cgbench.duty_window(7, 10, 1.0) == (10, 10)
    for bad in ((0, 0.5), (10, 1.5), (10, -0.1)):
        with pytest.raises(ValueError):
            cgbench.duty_window(0, *bad)


@pytest.mark.parametrize("duty", [0.0, 0.25, 0.4, 1.0])
def test_run_duty_cycle_on_a_fake_clock(cgbench: ModuleType, duty: float) -> None:
    """Spinning advances the fake clock by 1 us per read, sleeping by the asked time (plus
    a 0.3 ms overshoot, as real sleeps do): the busy share must still be `duty`."""
    now = [0]
    period = 10_000_000
    end = 100 * period

    def clock() -> int:
        now[0] += 1_000
        return now[0]

    def sleep(seconds: float) -> None:
        now[0] += int(seconds * 1e9) + 300_000

    busy = cgbench.run_duty_cycle(duty, period, 0, lambda: now[0] >= end, clock, sleep)
    assert busy / now[0] == pytest.approx(duty, abs=0.02)


def test_loadgen_really_loads_a_cpu(cgbench: ModuleType) -> None:
    """A real loader process for 0.5 s at 40 %: its own CPU accounting says it got roughly
    that (loose bounds: the host is shared)."""
    cpu = min(os.sched_getaffinity(0))
    gen = cgbench.LoadGen(0.4, 10_000_000, [cpu])
    gen.start()
    try:
        time.sleep(0.5)
    finally:
        shares = gen.stop()
    assert len(shares) == 1
    assert 0.15 < shares[0] < 0.6, shares


def test_plan_scenarios(cgbench: ModuleType) -> None:
    plan = cgbench.plan_scenarios(["baseline", "favordynmods", "kpool"], [1, 10, 400], 0.4,
                                  ["same-idle"], has_pool=True)
    names = [s.name for s in plan]
    # plain mounts first, favordynmods last (one mount); the curve only for same-idle
    assert names[:2] == ["baseline same n=1 idle", "kpool same n=1 idle"]
    assert names[-1] == "favordynmods per n=400 loaded"
    assert [s.favordynmods for s in plan] == sorted(s.favordynmods for s in plan)
    assert {(s.parents, s.load) for s in plan if s.n == 10} == {("same", 0.0)}
    assert {(s.parents, s.load) for s in plan if s.n == 400} == {
        ("same", 0.0), ("same", 0.4), ("per", 0.0), ("per", 0.4)}
    assert len(plan) == 3 * (2 + 4)
    # no pool support: the kernel-pool strategies are dropped, the rest stays
    assert {s.strategy for s in cgbench.plan_scenarios(
        ["baseline", "kpool", "kpool-fdm"], [5], 0.0, [], False)} == {"baseline"}
    for bad in ((["nosuch"], [5], 0.0, []), (["baseline"], [0], 0.0, []),
                (["baseline"], [5], 0.0, ["same-busy"]), (["baseline"], [], 0.0, [])):
        with pytest.raises(ValueError):
            cgbench.plan_scenarios(*bad, True)


def test_tiers_release_exactly_n(cgbench: ModuleType) -> None:
    assert cgbench.tiers([400, 1, 10, 10]) == [(0, 1), (1, 10), (10, 400)]
    for n in (1, 10, 400):
        released = [hi - lo for lo, hi in cgbench.tiers([1, 10, 400]) if lo < n]
        assert sum(released) == n


def test_expected_count(cgbench: ModuleType) -> None:
    sc = cgbench.Scenario
    assert cgbench.expected_count(sc("baseline", "same", 50, 0.0)) == 2
    assert cgbench.expected_count(sc("uspool", "same", 50, 0.0)) == 52
    assert cgbench.expected_count(sc("uspool", "per", 50, 0.0)) == 102
    assert cgbench.expected_count(sc("kpool", "same", 50, 0.0)) == 102     # 2N members
    assert cgbench.expected_count(sc("kpool-fdm", "per", 50, 0.0)) == 152  # 2 per parent


def test_hierarchy_choice(cgbench: ModuleType) -> None:
    table = cgbench.read_proc_cgroups(
        "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t0\t1\t1\ncpuacct\t0\t1\t1\n"
        "memory\t0\t1\t1\npids\t3\t1\t1\nfreezer\t0\t1\t0\n")
    # pids is bound already, freezer disabled, devices missing
    assert cgbench.pick_hierarchies("auto", table) == ["cpu,cpuacct", "memory"]
    assert cgbench.pick_hierarchies("memory", table) == ["memory"]
    with pytest.raises(SystemExit, match="no usable v1 hierarchy"):
        cgbench.pick_hierarchies("memory;pids", table)
    with pytest.raises(SystemExit):
        cgbench.pick_hierarchies("auto", {})


def test_parse_meminfo(cgbench: ModuleType) -> None:
    got = cgbench.parse_meminfo("MemFree:  1000 kB\nSlab:  20480 kB\nPercpu:   512 kB\n"
                                "HugePages_Total:       0\n")
    assert got == {"MemFree": 1000, "Slab": 20480, "Percpu": 512, "HugePages_Total": 0}


def test_guest_args_parse_back(cgbench: ModuleType) -> None:
    params = bench.BenchParams(ns=[1, 50], reps=2, strategies=list(bench.STRATEGIES))
    a = cgbench.parse_args(params.guest_args("patched", "icount"))
    assert (a.ns, a.reps, a.load, a.cost) == ([1, 50], 2, 0.4, 4096)
    assert a.strategies == ["baseline", "kpool", "kpool-fdm"]
    b = cgbench.parse_args(params.guest_args("baseline", "icount"))
    assert b.strategies == ["baseline", "favordynmods", "uspool"] and b.cost == 0
    # reps 0: one under the instruction clock (its runs repeat themselves), else three
    assert cgbench.parse_args(bench.BenchParams().guest_args("baseline", "icount")).reps == 1
    assert cgbench.parse_args(bench.BenchParams().guest_args("baseline", "real")).reps == 3
    with pytest.raises(SystemExit):
        cgbench.parse_args(["--parents=sideways"])


def test_icount_words() -> None:
    qemu, kernel = bench.icount_words()
    assert qemu == ["-icount", f"shift={bench.ICOUNT_SHIFT},sleep=off"]
    assert "auto" not in qemu[1] and bench.ICOUNT_SHIFT == 3
    assert kernel[:2] == ["tsc_early_khz=1000000", "tsc=reliable"]   # the icount TSC: 1 GHz
    assert "norandmaps" in kernel and "PYTHONHASHSEED=0" in kernel
    assert bench.icount_words(0)[0] == ["-icount", "shift=0,sleep=off"]
    with pytest.raises(ValueError):
        bench.icount_words(11)


def test_resolve_clock() -> None:
    assert bench.resolve_clock(None, "tcg", [2], False) == ("icount", [1])
    assert bench.resolve_clock(None, "kvm", [2], False) == ("real", [2])
    assert bench.resolve_clock("real", "tcg", [2, 4, 8], True) == ("real", [2, 4, 8])
    assert bench.resolve_clock("icount", "tcg", [1], True) == ("icount", [1])
    with pytest.raises(BadInput, match="needs --accel tcg"):
        bench.resolve_clock("icount", "kvm", [1], False)
    with pytest.raises(BadInput, match="--clock real"):
        bench.resolve_clock(None, "tcg", [2, 4], True)


def test_icount_reaches_the_qemu_argv(tmp_path: Path) -> None:
    qemu, kernel = bench.icount_words()
    argv = qemu_argv(Path("/k/bzImage"), Machine(smp=1, kernel_args=kernel, qemu_args=qemu),
                     tmp_path, Path("/usr/bin/python3"), ["--ns=5"])
    i = argv.index("-icount")
    assert argv[i + 1] == "shift=3,sleep=off" and argv[argv.index("-accel") + 1] == "tcg"
    assert "tsc_early_khz=1000000" in argv[argv.index("-append") + 1].split()


def test_command_line() -> None:
    ns = build_parser().parse_args(["bench", "--n", "1,10,400", "--smp", "2", "4", "8",
                                    "--clock", "real", "--strategies", "baseline,kpool"])
    assert (ns.n, ns.smp, ns.clock, ns.strategies) == ([1, 10, 400], [2, 4, 8], "real",
                                                       ["baseline", "kpool"])
    params = bench.params_of(ns)
    assert params.ns == [1, 10, 400] and params.strategies == ["baseline", "kpool"]
    quick = bench.params_of(build_parser().parse_args(["bench", "--quick", "--n", "7"]))
    assert (quick.ns, quick.parents, quick.load, quick.reps, quick.cost, quick.curves) == (
        [50], ["same"], 0.0, 1, 0, [])
    assert quick.strategies == list(bench.STRATEGIES)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--n", "1,x"])


# --- report, markdown, junit, png -----------------------------------------------------------

def _guest_data(pool_support: bool, slow_ms: float, fast: int = 4, ns: tuple[int, ...] = (4,)
                ) -> dict[str, Any]:
    strategies = ["baseline", "kpool", "kpool-fdm"] if pool_support else \
        ["baseline", "favordynmods", "uspool"]
    scenarios = []
    for n in ns:
        for strategy in strategies:
            for load in (0.0, 0.4):
                ms = 0.1 if strategy.startswith("kpool") else slow_ms
                lat = [int(ms * 1e6 * (i + 1)) for i in range(n)]
                op = {"start_ns": [0] * n, "lat_ns": lat, "errors": {}}
                kp = strategy.startswith("kpool")
                rep = {"ops": {"mkdir": op, "attach": op, "start": op},
                       "fast_path": fast if kp else 0, "load_share": [0.4] if load else []}
                scenarios.append({
                    "name": f"{strategy} same n={n} {'loaded' if load else 'idle'}",
                    "strategy": strategy, "parents": "same", "n": n, "load": load,
                    "pool": "pool-full" if kp else "nopool", "pool_size": n if kp else 0,
                    "reps": [rep, rep]})
    cost = [{"hierarchy": "memory", "members": 4096, "fill_ns": 2_048_000_000,
             "before_kb": {"Slab": 1000, "Percpu": 100, "MemFree": 0},
             "after_kb": {"Slab": 9000, "Percpu": 4100, "MemFree": 0}}] if pool_support else []
    return {"format": "cgbench/2", "scenarios": scenarios, "cost": cost, "conditions": {
        "kernel": {"release": "6.1", "version": "#1"}, "cpus": 1, "ns": list(ns), "reps": 2,
        "load": 0.4, "period_ms": 10.0, "ops": ["mkdir", "attach", "start"],
        "workers": "processes", "hierarchies": ["cpu,cpuacct", "memory"],
        "pool_support": pool_support, "supply_delay_ms": 0 if pool_support else None,
        "clocksource": "tsc"}}


MACHINE = {"accel": "tcg", "smp": 1, "memory": "1G", "qemu_version": "7.2", "clock": "icount"}


def _log(lines: list[str]) -> Callable[[str], None]:
    return lines.append


def test_report_headline_cost_and_outputs(tmp_path: Path) -> None:
    raw = {"baseline": _guest_data(False, 2.0), "patched": _guest_data(True, 2.0)}
    report = bench.build_report(raw, MACHINE, {"note": "unit test"})
    assert report["comparable"]
    rows = {(r["parents"], r["load"]): r for r in report["headline"]}
    idle = rows[("same", 0.0)]
    assert idle["a"] == idle["b"] == idle["c"] == pytest.approx(2.0 * 3.97)  # p99 of 2,4,6,8
    assert idle["d_vs_best"] == pytest.approx(0.05) and idle["best"] == "b"
    (cost,) = report["cost"]
    assert cost["slab_bytes_per_member"] == pytest.approx(8000 * 1024 / 4096)
    assert cost["percpu_bytes_per_member"] == pytest.approx(1000)
    assert cost["fill_us_per_member"] == pytest.approx(500)
    md = bench.render_markdown(report, "Conclusion paragraph.")
    assert md.splitlines()[2] == "Conclusion paragraph."
    assert "| 1 | same | idle | 4 | 5 / 7.94 |" in md and "## Cost of the kernel pool" in md
    assert "TCG, clock icount, 1 vCPU(s)" in md
    logged: list[str] = []
    paths = bench.write_outputs(report, raw, tmp_path, _log(logged))
    assert [p.name for p in paths] == ["bench.json", "bench.md", "bench.png", "junit.xml"]
    xml = (tmp_path / "junit.xml").read_text()
    assert xml.count("<testcase") == 12 * 3 and "<failure" not in xml
    assert 'name="patched smp1 kpool same n=4 idle start.p99_ms"' in xml


def test_wrong_fast_path_count_fails_the_scenario() -> None:
    raw = {"patched": _guest_data(True, 2.0, fast=1)}
    report = bench.build_report(raw, MACHINE, {})
    bad = {(s["scenario"], s["op"]) for s in report["scenarios"] if s["problems"]}
    assert bad == {(f"{k} same n=4 {ld}", "mkdir") for k in ("kpool", "kpool-fdm")
                   for ld in ("idle", "loaded")}
    suite = bench.junit_suite(report)
    assert sum(1 for c in suite.test_cases if c.is_failure()) == 4


def test_different_conditions_are_flagged() -> None:
    other = _guest_data(True, 2.0)
    other["conditions"]["cpus"] = 2
    report = bench.build_report({"baseline": _guest_data(False, 2.0), "patched": other},
                                MACHINE, {})
    assert not report["comparable"] and report["differing_conditions"] == ["cpus"]
    assert "different conditions (cpus)" in bench.render_markdown(report)


def test_agreement_of_two_runs() -> None:
    raw = {"baseline": _guest_data(False, 2.0)}
    a = bench.build_report(raw, MACHINE, {})
    b = bench.build_report({"baseline": _guest_data(False, 2.1)}, MACHINE, {})
    rows = bench.agreement(a, b)
    assert {r["metric"] for r in rows} == {"p50", "p99"} and {r["op"] for r in rows} == {"start"}
    assert len(rows) == 2 * 6
    assert max(r["rel"] for r in rows) == pytest.approx(0.05)
    assert benchstats.rel_diff(100, 105) == pytest.approx(0.05)
    assert benchstats.rel_diff(105, 100) == pytest.approx(0.05)
    assert benchstats.rel_diff(0, 0) == 0.0


def test_png_is_reproducible_byte_for_byte(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    for ns in ((4,), (1, 4, 8)):   # the distribution, then the N curve
        raw = {"baseline": _guest_data(False, 2.0, ns=ns), "patched": _guest_data(True, 2.0, ns=ns)}
        report = bench.build_report(raw, MACHINE, {})
        assert bool(benchplot.curve_cases(report)) == (len(ns) > 1)
        first = benchplot.render_png(report, raw)
        assert first[:8] == b"\x89PNG\r\n\x1a\n"
        assert benchplot.render_png(report, raw) == first
        assert b"Software" not in first and b"matplotlib" not in first
        assert benchplot.write_plot(report, raw, tmp_path / "p.png")
        assert (tmp_path / "p.png").read_bytes() == first


def test_without_matplotlib_the_plot_is_skipped(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else object())
    raw = {"patched": _guest_data(True, 2.0)}
    report = bench.build_report(raw, MACHINE, {})
    logged: list[str] = []
    paths = bench.write_outputs(report, raw, tmp_path, _log(logged))
    assert [p.name for p in paths] == ["bench.json", "bench.md", "junit.xml"]
    assert not (tmp_path / "bench.png").exists()
    assert any("plot skipped: matplotlib is not installed" in line for line in logged)


# --- host side of the boot ------------------------------------------------------------------

def test_tsc_and_clock_args() -> None:
    log = ("[0.0] tsc: Detected 2100.000 MHz processor\n"
           "[1.2] tsc: Refined TSC clocksource calibration: 2099.998 MHz\n")
    assert bench.parse_tsc_khz(log) == 2099998
    assert bench.parse_tsc_khz(log.splitlines()[0]) == 2100000
    assert bench.parse_tsc_khz("nothing") is None
    assert bench.clock_args("tcg", 2099998) == ["tsc_early_khz=2099998", "tsc=reliable"]
    assert bench.clock_args("kvm", 2099998) == []


def test_qemu_argv_passes_guest_args_to_init(tmp_path: Path) -> None:
    argv = qemu_argv(Path("/k/bzImage"), Machine(smp=2, kernel_args=["quiet"]), tmp_path,
                     Path("/usr/bin/python3"), ["--n=5"])
    append = argv[argv.index("-append") + 1].split()
    assert "init=/usr/bin/python3" in append and "quiet" in append
    after = append[append.index("--") + 1:]
    assert after[:2] == ["-B", str(GUEST)] and after[-1] == "--n=5"
    fsdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-fsdev"]
    assert fsdevs[0].startswith("local,id=rootfs,path=/,") and "readonly=on" in fsdevs[0]
    # the writable share cannot become setuid files or device nodes on the host
    assert fsdevs[1] == (f"local,id=outfs,path={tmp_path},"
                         "security_model=mapped-xattr,multidevs=remap")


def test_params_check() -> None:
    with pytest.raises(BadInput, match="--n"):
        bench.BenchParams(ns=[5000]).check()
    with pytest.raises(BadInput, match="--strategies"):
        bench.BenchParams(strategies=["magic"]).check()
    with pytest.raises(BadInput, match="--curves"):
        bench.BenchParams(curves=["same-busy"]).check()
    with pytest.raises(BadInput, match="--cost"):
        bench.BenchParams(cost=3).check()
    bench.BenchParams().check()


def test_signal_numbers_fit_the_protocol(cgbench: ModuleType) -> None:
    # the creators' signals must be distinct and not SIGTERM (used by the loaders)
    sigs = [cgbench._GO, cgbench._QUIT]
    assert len(set(sigs)) == len(sigs) and signal.SIGTERM not in sigs


def test_kcidb_reads_the_container_start_report() -> None:
    from pipeline import kcidb

    raw = {"baseline": _guest_data(False, 2.0), "patched": _guest_data(True, 2.0)}
    report = bench.build_report(raw, MACHINE, {})
    tests = kcidb.bench_tests(report, {"baseline": "kp:r/baseline", "patched": "kp:r/patched"})
    paths = {t["path"] for t in tests}
    assert "bench.kpool_same_n_4_idle.start.p99" in paths
    head = [t for t in tests if t["path"].startswith("bench.headline.")]
    assert {t["path"] for t in head} == {"bench.headline.smp1_same_idle_n4.d_vs_best",
                                        "bench.headline.smp1_same_loaded_n4.d_vs_best"}
    assert head[0]["number"]["value"] == pytest.approx(0.05)


def test_bursts_start_at_one_phase_of_the_tick(cgbench: ModuleType) -> None:
    tick = cgbench.TICK_NS
    for now in (0, 1, tick // 2 - 1, tick // 2, tick - 1, 10 * tick + 123):
        t = cgbench.next_aligned(now)
        assert t % tick == tick // 8 and now + tick // 2 < t <= now + 2 * tick
