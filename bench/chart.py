#!/usr/bin/env python3
"""Draws the save and load rows of a benchmark run as an SVG bar chart (Python 3 stdlib only).

    python3 bench/chart.py [results.json] [chart.svg]

Defaults: target/tmp/persist-bench/results.json (written by `cargo bench`) and
bench/results/chart.svg. One panel per operation and workload; a bar per contender, its length
the median time of that contender in the panel, its label the time and the ratio to the
hand-written baseline (median of the per-round ratios, as in the table).
"""

import json
import statistics
import sys
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target/tmp/persist-bench/results.json"
OUTPUT = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "bench/results/chart.svg"

PANEL_WIDTH = 560
LABEL_WIDTH = 230
BAR_HEIGHT = 16
BAR_GAP = 6
PANEL_GAP = 30
TITLE_HEIGHT = 26


def colour(name):
    if name.startswith("hand-written"):
        return "#6b7280"
    if name.startswith("persist"):
        return "#2563eb" if name in ("persist", "persist async") else "#93c5fd"
    return {"rustbreak": "#dc2626", "confy": "#ea580c", "native_model": "#16a34a"}.get(
        name.split()[0], "#a855f7"
    )


def human(seconds):
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def human_bytes(n):
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / 1024:.1f} KiB"
    return f"{n} B"


def panel(row, x, y):
    """SVG elements of one row's panel at (x, y), and the panel's height."""
    medians = [statistics.median(times) for times in row["times"]]
    reference = row["times"][row["contenders"].index(row["reference"])]
    longest = max(medians)
    parts = [
        f'<text x="{x}" y="{y + 16}" class="title">{escape(row["operation"])} · '
        f'{escape(row["workload"])} ({human_bytes(row["file_bytes"])})</text>'
    ]
    top = y + TITLE_HEIGHT
    bar_space = PANEL_WIDTH - LABEL_WIDTH - 130
    for i, (name, median) in enumerate(zip(row["contenders"], medians)):
        ratio = statistics.median(a / b for a, b in zip(row["times"][i], reference))
        by = top + i * (BAR_HEIGHT + BAR_GAP)
        width = max(1.0, bar_space * median / longest)
        parts.append(
            f'<text x="{x + LABEL_WIDTH - 6}" y="{by + 12}" class="label">{escape(name)}</text>'
        )
        parts.append(
            f'<rect x="{x + LABEL_WIDTH}" y="{by}" width="{width:.1f}" height="{BAR_HEIGHT}" '
            f'fill="{colour(name)}"/>'
        )
        parts.append(
            f'<text x="{x + LABEL_WIDTH + width + 5:.1f}" y="{by + 12}" class="value">'
            f"{human(median)} ({ratio:.2f}x)</text>"
        )
    height = TITLE_HEIGHT + len(medians) * (BAR_HEIGHT + BAR_GAP)
    return parts, height


def main():
    report = json.loads(SOURCE.read_text())
    rows = [r for r in report["rows"] if r["operation"] in ("save", "load")]
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    parts = []
    y = 50
    for workload in workloads:
        heights = []
        for column, operation in enumerate(("save", "load")):
            for row in rows:
                if row["workload"] == workload and row["operation"] == operation:
                    elements, height = panel(row, 20 + column * (PANEL_WIDTH + 20), y)
                    parts += elements
                    heights.append(height)
        y += max(heights, default=0) + PANEL_GAP
    width = 2 * PANEL_WIDTH + 60
    header = (
        f'<text x="20" y="28" class="heading">persist vs hand-written code vs peers '
        f'(median time; ratio to hand-written, median of per-round ratios; '
        f'{escape(report["mode"])} run)</text>'
    )
    svg = "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
            f'viewBox="0 0 {width} {y}" font-family="sans-serif">',
            "<style>.heading{font-size:15px;font-weight:bold}.title{font-size:13px;"
            "font-weight:bold}.label{font-size:11px;text-anchor:end}.value{font-size:11px}"
            "</style>",
            f'<rect width="{width}" height="{y}" fill="white"/>',
            header,
            *parts,
            "</svg>",
        ]
    )
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(svg + "\n")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
