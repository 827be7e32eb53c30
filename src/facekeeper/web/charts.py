"""Charts drawn on the server as SVG from audit entries: no script library, nothing fetched, readable without
colour (each series has a label in the legend and a title on every bar for screen readers and tooltips)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
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
