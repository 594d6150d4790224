"""End to end (e2e marker): `pipeline bench --quick` twice on the default job's real 6.1 kernels
(built by the default run before it, so the builds are cache hits). The quick set: 50
concurrent container starts under one parent, idle, every strategy, one repetition, under
the instruction clock (the default under TCG). The second run's p99s must agree with the
first's within AGREEMENT (the deterministic mode really is deterministic where it counts),
every kernel-pool start must have been served by the pool, and the guest's share must be
mapped. The default set (the N curve, load, per-container parents, the cost fill) takes far
longer and is run by hand (README, Benchmark)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.job import PROJECT_ROOT

pytestmark = pytest.mark.e2e

# How far p99 of every start scenario may differ, run against run (relative to the
# smaller). Measured on the 2-core machine, two pairs of --quick runs at host load average
# 7-13 (one run with two extra busy loops): p99 within 4.3 % and 2.9 %. p50 is not held to a
# bound: it moved by up to 20 % (favordynmods, kernel pool), since on one vCPU those starts'
# latencies are bimodal (a start fits between two ticks or is preempted once) and the
# instruction clock takes out the host, not the guest's own scheduling chaos that boot I/O
# seeds. p99 is the RFC's figure; the p50 rows are printed for the record.
AGREEMENT = {"p99": 0.05}


def _quick(out: Path, *extra: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "pipeline", "bench", "--quick", "--out",
                           str(out), *extra], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=3600, check=False)
    print(done.stdout[-6000:], done.stderr[-3000:])
    assert done.returncode == 0
    report: dict[str, Any] = json.loads((out / "bench.json").read_text())
    return report


def test_quick_bench_is_deterministic_serves_every_pooled_start_and_maps_its_share(
        tmp_path: Path) -> None:
    first = _quick(tmp_path / "one")
    report = _quick(tmp_path / "two", "--compare-with", str(tmp_path / "one" / "bench.json"))
    assert {c["clock"] for c in report["conditions"].values()} == {"icount"}
    full = [s for s in report["scenarios"] if s["kernel"] == "patched"
            and s["pool"] == "pool-full" and s["op"] == "mkdir"]
    assert full and all(f == s["n"] == 50 for s in full for f in s["fast_path"]), full
    assert not [s for s in report["scenarios"] if s["problems"]]
    agreement = report["agreement"]
    assert len(agreement["rows"]) == 2 * len([s for s in first["scenarios"]
                                              if s["op"] == "start"])
    for r in agreement["rows"]:
        print(f"agreement {r['kernel']} {r['scenario']} {r['metric']}: {r['rel'] * 100:.2f} %")
    too_far = [r for r in agreement["rows"] if r["rel"] > AGREEMENT.get(r["metric"], 1e9)]
    assert not too_far, too_far
    for s in report["scenarios"]:   # a sane guest clock: no zero, not all starts equal
        if s["op"] == "start":
            assert 0 < s["summary"]["p50"]["median"] < s["summary"]["max"]["median"], s
    for kernel in ("baseline", "patched"):
        result = tmp_path / "two" / kernel / "cgbench.json"
        st = os.lstat(result)
        # written by the guest through the mapped-xattr share: a plain 0600 file of QEMU's
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        assert "user.virtfs.mode" in os.listxattr(result, follow_symlinks=False)
