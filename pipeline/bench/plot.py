"""bench.png: the latency distribution of every benchmark scenario, drawn without a plotting
library.

Why no matplotlib: it is not a project dependency, and the plot is simple (one log-scale
histogram strip per scenario, three markers, some text). A 60-line RGB canvas, a PNG writer
(zlib + struct) and a 5x7 bitmap font (pipeline/data/font5x7.txt) keep `pipeline bench`
dependency-free and its output byte-for-byte reproducible.

Layout: one panel per operation (mkdir, attach, rmdir), one row per (kernel, scenario): bars
= histogram of every operation's latency over all repetitions on a log axis (blue idle,
orange loaded); black tick = p50, red tick = p99, green line = burst time (medians across
repetitions).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .stats import histogram_log

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
GRID: Color = (215, 215, 215)
IDLE: Color = (70, 120, 200)
LOADED: Color = (230, 140, 40)
P99: Color = (210, 30, 30)
BURST: Color = (30, 150, 60)


def load_font(text: str) -> dict[str, list[str]]:
    """Parse the font file: `= C` then 7 rows of 5 cells."""
    glyphs: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("#") and current is None:
            continue
        if line.startswith("="):
            current = glyphs.setdefault(line[2:3] or " ", [])
        elif current is not None and line.strip():
            current.append(line.strip())
            if len(current) == 7:
                current = None
    bad = [c for c, rows in glyphs.items() if len(rows) != 7 or any(len(r) != 5 for r in rows)]
    if bad:
        raise ValueError(f"font5x7.txt: glyphs {bad} are not 7 rows of 5 cells")
    return glyphs


def _font() -> dict[str, list[str]]:
    return load_font(resources.files("pipeline").joinpath("data/font5x7.txt").read_text())


@dataclass
class Canvas:
    width: int
    height: int
    pixels: bytearray
    font: dict[str, list[str]]

    @classmethod
    def new(cls, width: int, height: int, font: dict[str, list[str]]) -> Canvas:
        return cls(width, height, bytearray(WHITE * (width * height)), font)

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        """Fill [x0, x1) x [y0, y1), clipped to the canvas."""
        x0, x1 = max(0, x0), min(self.width, x1)
        for y in range(max(0, y0), min(self.height, y1)):
            start = (y * self.width + x0) * 3
            self.pixels[start:start + (x1 - x0) * 3] = bytes(color) * max(0, x1 - x0)

    def text(self, x: int, y: int, s: str, color: Color = BLACK, scale: int = 2) -> int:
        """Draw `s` (upper-cased; unknown characters as '?'); returns the x after it."""
        for ch in s.upper():
            rows = self.font.get(ch) or self.font["?"]
            for r, row in enumerate(rows):
                for c, cell in enumerate(row):
                    if cell == "#":
                        self.rect(x + c * scale, y + r * scale, x + (c + 1) * scale,
                                  y + (r + 1) * scale, color)
            x += 6 * scale
        return x

    def png(self) -> bytes:
        return png_bytes(self.width, self.height, bytes(self.pixels))


def png_bytes(width: int, height: int, rgb: bytes) -> bytes:
    """An 8-bit RGB PNG of `rgb` (rows top to bottom, 3 bytes per pixel)."""
    if len(rgb) != width * height * 3:
        raise ValueError(f"{len(rgb)} bytes for {width}x{height} RGB")
    stride = width * 3
    raw = b"".join(b"\x00" + rgb[y * stride:(y + 1) * stride] for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


# --- the plot -------------------------------------------------------------------------------

LEFT, RIGHT, ROW, BINS = 340, 1180, 34, 80


def latencies_ms(raw: dict[str, dict[str, Any]], kernel: str, scenario: str,
                 op: str) -> list[float]:
    for sc in raw[kernel]["scenarios"]:
        if sc["name"] == scenario:
            return [x / 1e6 for rep in sc["reps"] for x in rep["ops"][op]["lat_ns"]]
    return []


def decade_range(values: list[float]) -> tuple[float, float]:
    positive = [v for v in values if v > 0] or [1.0]
    lo = 10 ** math.floor(math.log10(max(min(positive), 1e-3)))
    hi = 10 ** math.ceil(math.log10(max(positive)))
    return lo, hi if hi > lo else lo * 10


def draw(report: dict[str, Any], raw: dict[str, dict[str, Any]]) -> Canvas:
    scenarios = report["scenarios"]
    ops = [op for op in ("mkdir", "attach", "rmdir") if any(s["op"] == op for s in scenarios)]
    rows = {op: [s for s in scenarios if s["op"] == op] for op in ops}
    everything = [v for s in scenarios for v in latencies_ms(raw, s["kernel"], s["scenario"],
                                                             s["op"])]
    everything += [s["summary"]["burst"]["median"] for s in scenarios]
    lo, hi = decade_range(everything)
    height = 90 + sum(40 + ROW * len(r) + 30 for r in rows.values())
    cv = Canvas.new(LEFT + (RIGHT - LEFT) + 30, height, _font())
    span = math.log10(hi) - math.log10(lo)

    def xpos(ms: float) -> int:
        return LEFT + round((math.log10(max(ms, lo)) - math.log10(lo)) / span * (RIGHT - LEFT))

    c = next(iter(report["conditions"].values()))
    cv.text(10, 10, f"cgroup burst latency: N={c['n']} {c['workers']}, {c['accel']}, "
                    f"{c['cpus']} vCPU, load {round(c['load'] * 100)}%, {c['reps']} reps")
    cv.text(10, 34, "bars: histogram (log ms, all reps); black p50, red p99, green burst "
                    "(medians)", scale=1)
    cv.text(10, 46, "blue: idle   orange: loaded", scale=1)
    y = 70
    for op in ops:
        cv.text(10, y, op, scale=2)
        y += 24
        top = y
        for s in rows[op]:
            values = latencies_ms(raw, s["kernel"], s["scenario"], s["op"])
            cv.text(10, y + 10, f"{s['kernel']} {s['scenario']}", scale=2)
            counts = histogram_log(values, lo, hi, BINS) if values else [0] * BINS
            peak = max(counts) or 1
            color = LOADED if s["load"] > 0 else IDLE
            for b, count in enumerate(counts):
                if count:
                    x0 = LEFT + b * (RIGHT - LEFT) // BINS
                    x1 = LEFT + (b + 1) * (RIGHT - LEFT) // BINS
                    h = max(1, round(count / peak * (ROW - 6)))
                    cv.rect(x0, y + ROW - 2 - h, max(x0 + 1, x1 - 1), y + ROW - 2, color)
            for metric, col in (("p50", BLACK), ("p99", P99)):
                x = xpos(s["summary"][metric]["median"])
                cv.rect(x - 1, y + 2, x + 2, y + ROW - 2, col)
            x = xpos(s["summary"]["burst"]["median"])
            for yy in range(y + 2, y + ROW - 2, 4):
                cv.rect(x - 1, yy, x + 1, yy + 2, BURST)
            cv.rect(LEFT, y + ROW - 1, RIGHT, y + ROW, GRID)
            y += ROW
        exp = math.floor(math.log10(lo))
        while 10 ** exp <= hi * 1.0001:
            x = xpos(10 ** exp)
            cv.rect(x, top, x + 1, y, GRID)
            label = f"{10 ** exp:g} ms"
            cv.text(x - len(label) * 3, y + 6, label, scale=1)
            exp += 1
        y += 30
    return cv


def write_plot(report: dict[str, Any], raw: dict[str, dict[str, Any]], path: Path) -> None:
    path.write_bytes(draw(report, raw).png())
