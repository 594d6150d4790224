"""Host-side tests of `pipeline bench`: statistics, the guest's load generator (imported from
its file, so the real guest code is exercised), report, JUnit and PNG output."""

from __future__ import annotations

import importlib.util
import os
import signal
import struct
import sys
import time
import zlib
from pathlib import Path

import pytest

from pipeline.bench import benchmark as bench
from pipeline.bench import plot as benchplot
from pipeline.bench import stats as benchstats
from pipeline.bench.boot import Machine, qemu_argv
from pipeline.errors import BadInput

GUEST = Path(__file__).resolve().parent.parent / "pipeline" / "bench" / "guest" / "cgbench.py"


@pytest.fixture(scope="module")
def cgbench():
    spec = importlib.util.spec_from_file_location("cgbench_under_test", GUEST)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look the module up by name
    spec.loader.exec_module(mod)
    return mod


# --- statistics -----------------------------------------------------------------------------

def test_percentile_linear_interpolation():
    assert benchstats.percentile([1, 2], 50) == 1.5
    assert benchstats.percentile([3, 1, 2], 0) == 1
    assert benchstats.percentile([3, 1, 2], 100) == 3
    values = list(range(1, 101))  # 1..100
    assert benchstats.percentile(values, 99) == pytest.approx(99.01)
    assert benchstats.percentile([7], 90) == 7
    with pytest.raises(ValueError):
        benchstats.percentile([], 50)
    with pytest.raises(ValueError):
        benchstats.percentile([1], 101)


def test_rep_stats_burst_is_release_to_last_end():
    ms = 1_000_000
    r = benchstats.rep_stats([1 * ms, 2 * ms, 10 * ms], [5 * ms, 0, 1 * ms], {"EEXIST": 1})
    assert r.max == 10 and r.p50 == 2
    assert r.burst == 11  # third op: starts at 1 ms, lasts 10 ms
    assert r.skew == 5
    assert r.ops == 3 and r.errors == {"EEXIST": 1}
    with pytest.raises(ValueError):
        benchstats.rep_stats([1], [])


def test_spread_and_ratio():
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


def test_histogram_log_bins_and_clamps():
    counts = benchstats.histogram_log([0.001, 0.1, 0.5, 1, 5, 10, 1000], 0.1, 10, 2)
    assert counts == [3, 4]  # 0.001 clamps into bin 0, 1000 into the last; 1 starts bin 1
    with pytest.raises(ValueError):
        benchstats.histogram_log([1], 0, 10, 4)


# --- load generator (guest code) ------------------------------------------------------------

def test_duty_window(cgbench):
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
def test_run_duty_cycle_on_a_fake_clock(cgbench, duty):
    """Spinning advances the fake clock by 1 us per read, sleeping by the asked time (plus
    a 0.3 ms overshoot, as real sleeps do): the busy share must still be `duty`."""
    now = [0]
    period = 10_000_000
    end = 100 * period

    def clock():
        now[0] += 1_000
        return now[0]

    def sleep(seconds):
        now[0] += int(seconds * 1e9) + 300_000

    busy = cgbench.run_duty_cycle(duty, period, 0, lambda: now[0] >= end, clock, sleep)
    assert busy / now[0] == pytest.approx(duty, abs=0.02)


def test_loadgen_really_loads_a_cpu(cgbench):
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


def test_plan_scenarios(cgbench):
    plan = cgbench.plan_scenarios(400, 0.4, 100, has_pool=True)
    assert [s.name for s in plan] == ["nopool idle", "nopool loaded", "pool-full idle",
                                      "pool-full loaded", "pool-small idle",
                                      "pool-small loaded"]
    assert [s.pool_size for s in plan] == [0, 0, 400, 400, 100, 100]
    assert [s.name for s in cgbench.plan_scenarios(400, 0.0, 100, False)] == ["nopool idle"]
    with pytest.raises(ValueError):
        cgbench.plan_scenarios(400, 0.4, 400, True)


def test_controller_choice(cgbench):
    table = cgbench.read_proc_cgroups(
        "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t0\t1\t1\ncpuacct\t0\t1\t1\n"
        "pids\t3\t1\t1\n")
    assert cgbench.pick_controller("auto", table) == "cpu,cpuacct"
    del table["cpuacct"]
    with pytest.raises(SystemExit, match="no usable v1 controller"):
        cgbench.pick_controller("auto", table)  # pids is bound to hierarchy 3 already


def test_guest_args_parse_back(cgbench):
    params = bench.BenchParams(n=50, reps=2, ops="mkdir,rmdir")
    a = cgbench.parse_args(params.guest_args())
    assert (a.n, a.reps, a.ops, a.pool_small, a.load) == (50, 2, ["mkdir", "rmdir"], 12, 0.4)


# --- report, markdown, junit, png -----------------------------------------------------------

def _guest_data(pool_support: bool, slow_ms: float, fast: int = 4) -> dict:
    n = 4
    names = [("nopool", 0), ("pool-full", n)] if pool_support else [("nopool", 0)]
    scenarios = []
    for pool, size in names:
        for load in (0.0, 0.4):
            lat = [int((0.1 if pool == "pool-full" else slow_ms) * 1e6 * (i + 1))
                   for i in range(n)]
            rep = {"ops": {"mkdir": {"release_ns": 0, "start_ns": [0] * n, "lat_ns": lat,
                                     "errors": {}}},
                   "fast_path": fast if size else 0, "load_share": [0.4] if load else []}
            scenarios.append({"name": f"{pool} {'loaded' if load else 'idle'}", "pool": pool,
                              "pool_size": size, "load": load, "reps": [rep, rep]})
    return {"format": "cgbench/1", "scenarios": scenarios, "conditions": {
        "kernel": {"release": "6.1", "version": "#1"}, "cpus": 2, "n": n, "reps": 2,
        "load": 0.4, "period_ms": 10.0, "ops": ["mkdir"], "workers": "processes",
        "controller": "cpu,cpuacct", "pool_support": pool_support, "supply_delay_ms": 0,
        "clocksource": "tsc"}}


MACHINE = {"accel": "tcg", "smp": 2, "memory": "1G", "qemu_version": "7.2"}


def test_report_claim_and_outputs(tmp_path):
    raw = {"baseline": _guest_data(False, 2.0), "patched": _guest_data(True, 2.0)}
    report = bench.build_report(raw, MACHINE, {"note": "unit test"})
    assert report["comparable"]
    loaded = [r for r in report["claim"] if r["load"] == "loaded"
              and r["subject"] == "pool-full loaded"]
    assert {r["metric"] for r in loaded} == {"p99", "burst"}
    assert all(r["ratio"] == pytest.approx(0.05) for r in loaded)
    md = bench.render_markdown(report)
    assert "| patched | pool-full loaded |" in md and "RFC claim check" in md
    assert "TCG, 2 vCPU(s)" in md
    paths = bench.write_outputs(report, raw, tmp_path)
    assert [p.name for p in paths] == ["bench.json", "bench.md", "bench.png", "junit.xml"]
    xml = (tmp_path / "junit.xml").read_text()
    assert xml.count("<testcase") == 6 and "<failure" not in xml
    assert 'name="patched pool-full loaded mkdir.p99_ms"' in xml


def test_wrong_fast_path_count_fails_the_scenario():
    raw = {"patched": _guest_data(True, 2.0, fast=1)}
    report = bench.build_report(raw, MACHINE, {})
    bad = [s for s in report["scenarios"] if s["problems"]]
    assert {s["scenario"] for s in bad} == {"pool-full idle", "pool-full loaded"}
    suite = bench.junit_suite(report)
    assert sum(1 for c in suite.test_cases if c.is_failure()) == 2


def test_different_conditions_are_flagged():
    other = _guest_data(True, 2.0)
    other["conditions"]["cpus"] = 1
    report = bench.build_report({"baseline": _guest_data(False, 2.0), "patched": other},
                                MACHINE, {})
    assert not report["comparable"] and report["differing_conditions"] == ["cpus"]
    assert "different conditions (cpus)" in bench.render_markdown(report)


def test_png_is_valid(tmp_path):
    raw = {"patched": _guest_data(True, 2.0)}
    report = bench.build_report(raw, MACHINE, {})
    data = benchplot.draw(report, raw).png()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks[kind] = body
        pos += 12 + length
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    pixels = zlib.decompress(chunks[b"IDAT"])
    assert len(pixels) == height * (1 + 3 * width)
    assert bytes(benchplot.LOADED) in pixels and bytes(benchplot.P99) in pixels


def test_font_file_is_complete():
    font = benchplot._font()
    assert set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-:/%()=;?") <= set(font)
    with pytest.raises(ValueError):
        benchplot.load_font("= A\n#####\n")


# --- host side of the boot ------------------------------------------------------------------

def test_tsc_and_clock_args():
    log = ("[0.0] tsc: Detected 2100.000 MHz processor\n"
           "[1.2] tsc: Refined TSC clocksource calibration: 2099.998 MHz\n")
    assert bench.parse_tsc_khz(log) == 2099998
    assert bench.parse_tsc_khz(log.splitlines()[0]) == 2100000
    assert bench.parse_tsc_khz("nothing") is None
    assert bench.clock_args("tcg", 2099998) == ["tsc_early_khz=2099998", "tsc=reliable"]
    assert bench.clock_args("kvm", 2099998) == []


def test_qemu_argv_passes_guest_args_to_init(tmp_path):
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


def test_params_check():
    with pytest.raises(BadInput, match="--n"):
        bench.BenchParams(n=5000).check()
    with pytest.raises(BadInput, match="--ops"):
        bench.BenchParams(ops="attach").check()
    with pytest.raises(BadInput, match="--pool-small"):
        bench.BenchParams(n=10, pool_small=10).check()
    bench.BenchParams().check()


def test_signal_numbers_fit_the_protocol(cgbench):
    # the creators' op signals must be distinct and not SIGTERM (used by the loaders)
    sigs = list(cgbench._OP_SIGNALS.values()) + [cgbench._QUIT]
    assert len(set(sigs)) == len(sigs) and signal.SIGTERM not in sigs
