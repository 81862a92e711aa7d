"""The pages' inline SVG charts: the score histogram, lanes as stacked bars (by office, by day) and a
declaration's contributions as diverging bars."""
from __future__ import annotations

import math
from html import escape

import numpy as np
import pandas as pd

from serving.selection import GREEN, RED
from serving.ui.page_data import LANES
from serving.ui.style import COLOURS


def histogram_svg(edges: np.ndarray, counts: dict[str, np.ndarray], cut_offs: dict[str, float]) -> str:
    """The score distribution as stacked bars on a log scale (each bar split by its lanes' shares), with the
    lanes' cut-offs as dashed lines."""
    width, height, left, right, top, bottom = 760, 280, 52, 16, 26, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = sum(counts.values())
    peak = max(int(totals.max()) if len(totals) else 0, 1)
    scale = math.log10(peak + 1)
    y = lambda c: plot_h * math.log10(c + 1) / scale  # noqa: E731 - the bar height of a count
    x = lambda s: left + plot_w * (s - edges[0]) / (edges[-1] - edges[0])  # noqa: E731
    parts = [f'<svg id="score-histogram" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="risk score distribution of the batch">']
    for power in range(int(math.log10(peak)) + 1):  # grid lines at 1, 10, 100…
        gy = top + plot_h - y(10 ** power)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#e3e7eb"/>'
                     f'<text x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end">{10 ** power:,}</text>')
    for i in range(len(edges) - 1):
        total = int(totals[i])
        if not total:
            continue
        bar, x0, w = y(total), x(edges[i]) + 0.5, max(x(edges[i + 1]) - x(edges[i]) - 1, 1)
        base = top + plot_h
        tip = f"{edges[i]:.3f}–{edges[i + 1]:.3f}: {total:,} declarations (" + ", ".join(
            f"{int(counts[lane][i]):,} {lane}" for lane in LANES if counts[lane][i]) + ")"
        for lane in LANES:
            if counts[lane][i]:
                h = bar * counts[lane][i] / total
                base -= h
                parts.append(f'<rect class="bar-{lane}" x="{x0:.1f}" y="{base:.1f}" width="{w:.1f}" height="{h:.1f}" '
                             f'fill="{COLOURS[lane]}"><title>{escape(tip)}</title></rect>')
    for k in range(5):
        value = edges[0] + (edges[-1] - edges[0]) * k / 4
        parts.append(f'<text x="{x(value):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{value:.2f}</text>')
    for lane, value in cut_offs.items():
        parts.append(f'<line class="cut-off" x1="{x(value):.1f}" x2="{x(value):.1f}" y1="{top - 6}" y2="{top + plot_h}" '
                     f'stroke="{COLOURS[lane]}" stroke-width="2" stroke-dasharray="5 3"/>'
                     f'<text x="{x(value) + 4:.1f}" y="{top + (4 if lane == RED else 16)}">{lane} from {value:.3f}</text>')
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#55606c"/>'
                 f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">risk score (P(fraud))</text>'
                 f'<text x="12" y="{top + plot_h / 2}" transform="rotate(-90 12 {top + plot_h / 2})" '
                 f'text-anchor="middle">declarations (log scale)</text></svg>')
    return "".join(parts)


def stacked_bars_svg(table: pd.DataFrame, svg_id: str, label: str, horizontal: bool) -> str:
    """Lane counts per row of a lane table as stacked bars: one bar per office (horizontal) or per day."""
    peak = max(int(table["total"].max()), 1) if len(table) else 1
    if horizontal:
        row_h, left, width = 20, 170, 560
        height = row_h * len(table) + 24
        parts = [f'<svg id="{svg_id}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                 f'role="img" aria-label="{escape(label)}">']
        for i, (name, r) in enumerate(table.iterrows()):
            y0, x0 = 4 + i * row_h, left
            parts.append(f'<text x="{left - 6}" y="{y0 + 13}" text-anchor="end">{escape(str(name))}</text>')
            for lane in LANES:
                w = (width - left - 60) * r[lane] / peak
                if w:
                    parts.append(f'<rect x="{x0:.1f}" y="{y0}" width="{w:.1f}" height="{row_h - 5}" fill="{COLOURS[lane]}">'
                                 f'<title>{escape(str(name))}: {int(r[lane]):,} {lane}</title></rect>')
                x0 += w
            parts.append(f'<text x="{x0 + 4:.1f}" y="{y0 + 13}">{int(r["total"]):,}</text>')
        return "".join(parts) + "</svg>"
    width, height, left, bottom = 760, 220, 44, 34
    plot_w, plot_h = width - left - 10, height - bottom - 10
    bar_w = plot_w / max(len(table), 1)
    every = max(1, math.ceil(len(table) / 8))
    parts = [f'<svg id="{svg_id}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(label)}"><text x="{left - 6}" y="18" text-anchor="end">{peak:,}</text>'
             f'<line x1="{left}" x2="{width - 10}" y1="{10 + plot_h}" y2="{10 + plot_h}" stroke="#55606c"/>']
    for i, (name, r) in enumerate(table.iterrows()):
        x0, base = left + i * bar_w, 10 + plot_h
        for lane in LANES:
            h = plot_h * r[lane] / peak
            if h:
                base -= h
                parts.append(f'<rect x="{x0:.1f}" y="{base:.1f}" width="{max(bar_w - 1, 0.5):.1f}" height="{h:.1f}" '
                             f'fill="{COLOURS[lane]}"><title>{escape(str(name))}: {int(r[lane]):,} {lane}</title></rect>')
        if i % every == 0:
            parts.append(f'<text x="{x0 + bar_w / 2:.1f}" y="{height - 14}" text-anchor="middle">{escape(str(name))}</text>')
    return "".join(parts) + "</svg>"


def contributions_svg(features: pd.DataFrame) -> str:
    """The strongest contributions as diverging bars: right raises the risk, left lowers it."""
    row_h, label_w, width = 20, 250, 720
    peak = max(float(features["contribution"].abs().max()), 1e-9) if len(features) else 1.0
    mid, half = label_w + (width - label_w) / 2, (width - label_w) / 2 - 50
    parts = [f'<svg id="contributions-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{row_h * len(features) + 10}" role="img" aria-label="feature contributions">'
             f'<line x1="{mid}" x2="{mid}" y1="0" y2="{row_h * len(features) + 10}" stroke="#55606c"/>']
    for i, r in enumerate(features.itertuples()):
        y0, w = 4 + i * row_h, half * abs(r.contribution) / peak
        x0 = mid if r.contribution >= 0 else mid - w
        colour = COLOURS[RED] if r.contribution >= 0 else COLOURS[GREEN]
        parts.append(f'<text x="{label_w - 6}" y="{y0 + 13}" text-anchor="end">{escape(r.feature)}</text>'
                     f'<rect x="{x0:.1f}" y="{y0}" width="{max(w, 0.5):.1f}" height="{row_h - 6}" fill="{colour}">'
                     f'<title>{escape(r.feature)}: {r.contribution:+.4f}</title></rect>'
                     f'<text x="{(x0 + w + 4) if r.contribution >= 0 else (x0 - 4):.1f}" y="{y0 + 13}" '
                     f'text-anchor="{"start" if r.contribution >= 0 else "end"}">{r.contribution:+.3f}</text>')
    return "".join(parts) + "</svg>"

