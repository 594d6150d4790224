"""Statistics of the cgroup benchmark: pure functions from raw guest latencies to the figures.

Units: the guest reports nanoseconds; every figure here is in milliseconds (float).
Percentiles use linear interpolation between the two nearest ranks (numpy's default
"linear" method), so p50 of [1, 2] is 1.5 and p99 of 400 values lies between the 396th and
the 397th smallest.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

METRICS = ("p50", "p90", "p99", "max", "burst")
NS_PER_MS = 1e6


def percentile(values: list[float], q: float) -> float:
    """q-th percentile (0..100) of `values` by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


@dataclass
class RepStats:
    """One burst (one repetition of one scenario, one operation)."""

    p50: float
    p90: float
    p99: float
    max: float
    burst: float          # release of the burst -> end of its last operation
    skew: float           # release -> start of the last operation to start
    ops: int
    errors: dict[str, int] = field(default_factory=dict)

    def metric(self, name: str) -> float:
        return float(getattr(self, name))


def rep_stats(lat_ns: list[int], start_ns: list[int], errors: dict[str, int] | None = None
              ) -> RepStats:
    """Figures of one burst from per-operation latencies and start offsets (both ns, the
    offsets relative to the moment the burst was released)."""
    if len(lat_ns) != len(start_ns):
        raise ValueError(f"{len(lat_ns)} latencies but {len(start_ns)} start times")
    lat = [x / NS_PER_MS for x in lat_ns]
    ends = [(s + x) / NS_PER_MS for s, x in zip(start_ns, lat_ns)]
    return RepStats(p50=percentile(lat, 50), p90=percentile(lat, 90), p99=percentile(lat, 99),
                    max=max(lat), burst=max(ends), skew=max(start_ns) / NS_PER_MS,
                    ops=len(lat), errors=dict(errors or {}))


@dataclass
class Spread:
    """A metric across repetitions: median, range and sample standard deviation."""

    median: float
    lo: float
    hi: float
    stdev: float          # 0.0 with a single repetition
    n: int

    def overlaps(self, other: Spread) -> bool:
        return self.lo <= other.hi and other.lo <= self.hi


def spread(values: list[float]) -> Spread:
    if not values:
        raise ValueError("spread of no values")
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return Spread(statistics.median(values), min(values), max(values), sd, len(values))


def summarize(reps: list[RepStats]) -> dict[str, Spread]:
    """Metric name -> its spread across the repetitions."""
    return {m: spread([r.metric(m) for r in reps]) for m in METRICS}


@dataclass
class Ratio:
    """How `subject` compares with `reference` on one metric: ratio of the medians, and
    whether the repetition ranges are apart (a plain, assumption-free reading of "the
    difference is larger than the noise")."""

    metric: str
    ratio: float
    separated: bool

    def verdict(self) -> str:
        if not self.separated:
            return "no clear difference (ranges overlap)"
        return "faster" if self.ratio < 1 else "slower"


def ratio(subject: dict[str, Spread], reference: dict[str, Spread], metric: str) -> Ratio:
    ref = reference[metric].median
    value = subject[metric].median / ref if ref > 0 else math.inf
    return Ratio(metric, value, not subject[metric].overlaps(reference[metric]))


def histogram_log(values_ms: list[float], lo: float, hi: float, bins: int) -> list[int]:
    """Counts of `values_ms` in `bins` logarithmic bins spanning [lo, hi]; values outside
    are clamped into the first/last bin."""
    if not (0 < lo < hi) or bins < 1:
        raise ValueError(f"bad histogram range {lo}..{hi} / {bins} bins")
    counts = [0] * bins
    span = math.log10(hi) - math.log10(lo)
    for v in values_ms:
        x = (math.log10(max(v, lo)) - math.log10(lo)) / span
        counts[min(bins - 1, max(0, int(x * bins)))] += 1
    return counts


def rel_diff(a: float, b: float) -> float:
    """|a - b| relative to the smaller of the two (0 when both are 0): symmetric, and the
    stricter reading of "within x %"."""
    if a == b:
        return 0.0
    lo = min(abs(a), abs(b))
    return abs(a - b) / lo if lo > 0 else float("inf")
