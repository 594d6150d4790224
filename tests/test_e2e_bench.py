"""End to end (e2e marker): a short `pipeline bench` on the default job's real 6.1 kernels
(built by the default run before it, so the builds are cache hits). The full benchmark
(N=400, 5 repetitions, with load) takes far longer and is run by hand (README, Benchmark)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from pipeline.job import PROJECT_ROOT

pytestmark = pytest.mark.e2e


def test_short_bench_serves_every_pooled_mkdir_and_its_share_is_mapped(tmp_path):
    out = tmp_path / "bench"
    done = subprocess.run([sys.executable, "-m", "pipeline", "bench", "--n", "20", "--reps",
                           "1", "--load", "0", "--out", str(out)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=3600, check=False)
    print(done.stdout[-6000:], done.stderr[-3000:])
    assert done.returncode == 0
    report = json.loads((out / "bench.json").read_text())
    full = [s for s in report["scenarios"] if s["kernel"] == "patched"
            and s["pool"] == "pool-full" and s["op"] == "mkdir"]
    assert full and all(f == 20 for s in full for f in s["fast_path"]), full
    assert not [s for s in report["scenarios"] if s["problems"]]
    for kernel in ("baseline", "patched"):
        result = out / kernel / "cgbench.json"
        st = os.lstat(result)
        # written by the guest through the mapped-xattr share: a plain 0600 file of QEMU's
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        assert "user.virtfs.mode" in os.listxattr(result, follow_symlinks=False)
