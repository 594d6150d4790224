"""bench.png with matplotlib (the optional `bench` extra: pip install 'kernel-pipeline[bench]').

Two kinds of figure, in ms of guest time:
* when some case ran over several N: the N curve, one panel per (vCPUs, parents, load) case
  with a curve, one line per strategy (solid p99, dotted p50 of the whole container start,
  medians across repetitions), log-log axes;
* otherwise: the latency distribution per scenario, one box (quartiles, whiskers at 1st and
  99th percentile) of every start's latency over all repetitions.

Reproducible byte for byte: the Agg backend, a fixed size and dpi, the bundled DejaVu font,
no date and no "Software" key in the PNG (`metadata`), and nothing taken from the
environment (rc_context over matplotlib's defaults, not the user's matplotlibrc). Without
matplotlib write_plot() returns False and the caller says the plot was skipped.
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from typing import Any

SIZE_IN = (10.0, 6.0)
DPI = 100
PNG_METADATA: dict[str, str | None] = {"Software": None}
# one colour and marker per (kernel, strategy), fixed so every run's plot reads alike
STYLE = {("baseline", "baseline"): ("#4d4d4d", "o"),
         ("baseline", "favordynmods"): ("#1f77b4", "s"),
         ("baseline", "uspool"): ("#2ca02c", "^"),
         ("patched", "baseline"): ("#9467bd", "x"),
         ("patched", "kpool"): ("#d62728", "D"),
         ("patched", "kpool-fdm"): ("#ff7f0e", "v")}


def unavailable() -> str:
    """Why there is no plot ("" when matplotlib can be imported)."""
    return "" if importlib.util.find_spec("matplotlib") else "matplotlib is not installed"


def latencies_ms(raw: dict[str, dict[str, Any]], key: str, scenario: str, op: str
                 ) -> list[float]:
    for sc in raw.get(key, {}).get("scenarios", []):
        if sc["name"] == scenario:
            return [x / 1e6 for rep in sc["reps"] for x in rep["ops"][op]["lat_ns"]]
    return []


def curve_cases(report: dict[str, Any], op: str = "start"
                ) -> dict[tuple[int, str, float], dict[tuple[str, str], list[tuple[int, float, float]]]]:
    """(smp, parents, load) -> (kernel, strategy) -> [(n, p50, p99)] for the cases that ran
    over more than one N (sorted by n)."""
    cases: dict[tuple[int, str, float], dict[tuple[str, str], list[tuple[int, float, float]]]] = {}
    for s in report["scenarios"]:
        if s["op"] != op:
            continue
        pts = cases.setdefault((s["smp"], s["parents"], s["load"]), {}) \
            .setdefault((s["kernel"], s["strategy"]), [])
        pts.append((s["n"], s["summary"]["p50"]["median"], s["summary"]["p99"]["median"]))
    out = {}
    for case, lines in sorted(cases.items()):
        if any(len({p[0] for p in pts}) > 1 for pts in lines.values()):
            out[case] = {k: sorted(v) for k, v in sorted(lines.items())}
    return out


def _title(report: dict[str, Any]) -> str:
    c = next(iter(report["conditions"].values()))
    return (f"cgroup v1 container start ({len(c['hierarchies'])} hierarchies), "
            f"{c['accel']}, clock {c.get('clock', 'real')}, {c['reps']} rep(s)")


def figure(report: dict[str, Any], raw: dict[str, dict[str, Any]]) -> Any:
    """The matplotlib Figure (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    cases = curve_cases(report)
    if cases:
        axes = fig.subplots(1, len(cases), squeeze=False)[0]
        for ax, ((smp, parents, load), lines) in zip(axes, cases.items()):
            for (kernel, strategy), pts in lines.items():
                color, marker = STYLE.get((kernel, strategy), ("black", "."))
                ns = [p[0] for p in pts]
                ax.plot(ns, [p[2] for p in pts], color=color, marker=marker,
                        label=f"{kernel}: {strategy}")
                ax.plot(ns, [p[1] for p in pts], color=color, linestyle=":", linewidth=1)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("N concurrent container starts")
            ax.set_ylabel("start latency, ms (solid p99, dotted p50)")
            ax.set_title(f"{smp} vCPU, {parents} parent, "
                         f"{'idle' if not load else f'{round(load * 100)} % load'}",
                         fontsize=10)
            ax.grid(True, which="both", color="#dddddd", linewidth=0.5)
        axes[0].legend(fontsize=8, loc="upper left")
    else:
        ax = fig.subplots()
        rows = [s for s in report["scenarios"] if s["op"] == "start"]
        data, labels, colors = [], [], []
        for s in rows:
            key = s["kernel"] if s["kernel"] in raw else f"{s['kernel']} smp{s['smp']}"
            data.append(latencies_ms(raw, key, s["scenario"], "start") or [0.0])
            labels.append(f"{s['kernel']}: {s['scenario']}")
            colors.append(STYLE.get((s["kernel"], s["strategy"]), ("black", "."))[0])
        if data:
            horizontal: dict[str, Any] = (  # `vert` is deprecated from matplotlib 3.10 on
                {"orientation": "horizontal"}
                if "orientation" in inspect.signature(ax.boxplot).parameters
                else {"vert": False})
            box = ax.boxplot(data, whis=(1, 99), patch_artist=True, showfliers=True,
                             flierprops={"markersize": 2}, **horizontal)
            for patch, color in zip(box["boxes"], colors):
                patch.set_facecolor(color)
                patch.set_alpha(0.5)
            ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
        ax.set_xlabel("start latency, ms (box: quartiles, whiskers: p1-p99)")
        ax.grid(True, axis="x", color="#dddddd", linewidth=0.5)
    fig.suptitle(_title(report), fontsize=11)
    fig.tight_layout()
    return fig


def render_png(report: dict[str, Any], raw: dict[str, dict[str, Any]]) -> bytes:
    """The PNG bytes, the same for the same input (see the module doc)."""
    import io

    import matplotlib

    with matplotlib.rc_context(rc=matplotlib.rcParamsDefault):
        matplotlib.rcParams["svg.hashsalt"] = "cgbench"
        fig = figure(report, raw)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata=PNG_METADATA)
    return buf.getvalue()


def write_plot(report: dict[str, Any], raw: dict[str, dict[str, Any]], path: Path) -> bool:
    """Write bench.png; False (nothing written) when matplotlib is not installed."""
    if unavailable():
        return False
    path.write_bytes(render_png(report, raw))
    return True
