"""Charts drawn on the server as SVG from audit entries and the last eval's summary: no script library, nothing
fetched, readable without colour (each series has a label in the legend, dashed or solid, and a title for
screen readers and tooltips)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from markupsafe import Markup

DECISIONS = ("match", "unknown / no match", "refused")
CHANGES = ("enrolled", "erased")
COLOURS = {"match": "#1b7f3b", "unknown / no match": "#6b7280", "refused": "#b42318", "enrolled": "#1d4ed8",
           "erased": "#b45309"}


def outcome_class(outcome: str) -> str:
    if outcome == "match":
        return "match"
    if outcome in ("no-match", "unknown"):
        return "unknown / no match"
    return "refused"


def decisions_per_hour(entries: Iterable[dict[str, Any]], now: float, hours: int = 24) -> Markup:
    """Verify and identify decisions in each of the last ``hours`` hours, stacked by outcome."""
    start = (int(now) // 3600 - hours + 1) * 3600
    counts: Counter[tuple[int, str]] = Counter()
    for e in entries:
        if e["action"] in ("verify", "identify") and e["at"] >= start:
            counts[(int(e["at"] - start) // 3600, outcome_class(str(e["outcome"])))] += 1
    labels = [datetime.fromtimestamp(start + i * 3600, UTC).strftime("%H:00") for i in range(hours)]
    return _stacked("Decisions per hour (UTC), by outcome", labels, DECISIONS, counts)


def changes_per_day(entries: Iterable[dict[str, Any]], now: float, days: int = 14) -> Markup:
    """People enrolled and faces erased (by request, withdrawal or the sweep) per day."""
    start = (int(now) // 86400 - days + 1) * 86400
    counts: Counter[tuple[int, str]] = Counter()
    for e in entries:
        if e["at"] < start or (e["outcome"] != "ok" and e["action"] != "sweep"):
            continue
        erased = e["action"] == "subject.erase" or (e["action"] in ("consent.withdraw", "sweep")
                                                     and bool((e.get("detail") or {}).get("receipt")))
        kind = "enrolled" if e["action"] == "enroll" else "erased" if erased else None
        if kind:
            counts[(int(e["at"] - start) // 86400, kind)] += 1
    labels = [datetime.fromtimestamp(start + i * 86400, UTC).strftime("%m-%d") for i in range(days)]
    return _stacked("Enrolments and erasures per day (UTC)", labels, CHANGES, counts)


def _stacked(title: str, labels: Sequence[str], series: Sequence[str], counts: Counter[tuple[int, str]]) -> Markup:
    width, height, left, bottom, top = 640, 220, 36, 34, 28
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max([sum(counts[(i, s)] for s in series) for i in range(len(labels))] + [1])
    step = plot_w / len(labels)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" class="chart"'
             f' aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" stroke="#444"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" class="tick">{peak}</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" class="tick">0</text>']
    for i, label in enumerate(labels):
        y = top + plot_h
        for s in series:
            n = counts[(i, s)]
            if n:
                h = plot_h * n / peak
                y -= h
                parts.append(f'<rect x="{left + i * step + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}"'
                             f' height="{h:.1f}" fill="{COLOURS[s]}"><title>{escape(label)}: {n}'
                             f' {escape(s)}</title></rect>')
        if i % max(1, len(labels) // 8) == 0:
            parts.append(f'<text x="{left + i * step + step / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle"'
                         f' class="tick">{escape(label)}</text>')
    x = left
    for s in series:
        parts.append(f'<rect x="{x}" y="{height - 12}" width="10" height="10" fill="{COLOURS[s]}"/>'
                     f'<text x="{x + 14}" y="{height - 3}" class="tick">{escape(s)}</text>')
        x += 16 + 8 * len(s)
    parts.append("</svg>")
    return Markup("".join(parts))


DET_COLOURS = {"fast": "#1d4ed8", "accurate": "#1b7f3b"}
DET_DASH = {"fast": "", "accurate": ' stroke-dasharray="6 3"'}  # told apart without colour too


def det_curve(curves: Mapping[str, Sequence[Sequence[float]]], genuine_pairs: int, impostor_pairs: int,
              marks: Sequence[tuple[str, float, float]] = (), title: str = "DET curve") -> Markup:
    """The DET curve (log FMR across, log FNMR up) of each mode's (FMR, FNMR) points, with ``marks`` (label,
    FMR, FNMR) at the operating points. Each axis starts at half of one pair's rate, where a rate of 0 is
    drawn (as the eval's PNG does), since a log axis has no 0."""
    width, height, left, bottom, top, right = 640, 360, 56, 40, 28, 16
    plot_w, plot_h = width - left - right, height - bottom - top
    floor_x, floor_y = min(0.5 / max(impostor_pairs, 1), 0.1), min(0.5 / max(genuine_pairs, 1), 0.1)
    lo_x, lo_y = math.log10(floor_x), math.log10(floor_y)  # the axes start at the floors

    def xy(fmr: float, fnmr: float) -> tuple[float, float]:
        fx = (math.log10(max(fmr, floor_x)) - lo_x) / -lo_x
        fy = (math.log10(max(fnmr, floor_y)) - lo_y) / -lo_y
        return left + fx * plot_w, top + plot_h - fy * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" class="chart"'
             f' aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>']
    for exponent in range(math.ceil(lo_x), 1):
        x, _ = xy(10.0 ** exponent, 1)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#ddd"/>'
                     f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle" class="tick">1e{exponent}'
                     f'</text>')
    for exponent in range(math.ceil(lo_y), 1):
        _, y = xy(1, 10.0 ** exponent)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">1e{exponent}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" class="tick">false match'
                 f' rate (FMR)</text><text x="14" y="{top + plot_h / 2}" text-anchor="middle" class="tick"'
                 f' transform="rotate(-90 14 {top + plot_h / 2})">false non-match rate (FNMR)</text>')
    legend_y = top + 14
    for mode, points in curves.items():
        colour = DET_COLOURS.get(mode, "#444")
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(float(f), float(n)) for f, n in points))
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"'
                     f'{DET_DASH.get(mode, "")}><title>{escape(mode)} mode</title></polyline>')
        parts.append(f'<line x1="{left + plot_w - 150}" y1="{legend_y - 4}" x2="{left + plot_w - 126}"'
                     f' y2="{legend_y - 4}" stroke="{colour}" stroke-width="2"{DET_DASH.get(mode, "")}/>'
                     f'<text x="{left + plot_w - 120}" y="{legend_y}" class="tick">{escape(mode)} mode</text>')
        legend_y += 16
    for label, fmr, fnmr in marks:
        x, y = xy(fmr, fnmr)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#b42318"><title>{escape(label)}: FNMR'
                     f' {fnmr:.4g} at FMR {fmr:.3g}</title></circle>'
                     f'<text x="{x + 6:.1f}" y="{y - 6:.1f}" class="tick">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
