"""Hand-written inline SVG charts for the ranking report (`models/report.py`): line charts (with an
optional y = x reference), grouped bar charts and overlaid step histograms.

No matplotlib, no external resources: each chart is one `<svg>` element as a string. Output is
deterministic (coordinates at fixed precision), and non-finite points are skipped.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Mapping, Sequence

SVG_NS = "http://www.w3.org/2000/svg"
# Okabe-Ito: colour-blind safe, fixed order so colours are stable per series position.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def is_finite_number(v) -> bool:
    """A real number (not a bool) that is neither NaN nor infinite."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _n(v: float) -> str:
    """Coordinate formatting: fixed precision, so output is byte-stable."""
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * mag * (1 + 1e-9):
            return m * mag
    return 10.0 * mag


def _nice_ticks(lo: float, hi: float, n: int = 5) -> tuple[float, float, list[float]]:
    """Domain rounded out to a 1/2/2.5/5 x 10^k step, and the ticks on it."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.1 or 0.5
        lo, hi = lo - pad, hi + pad
    step = _nice_step(hi - lo, n)
    lo_t, hi_t = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    count = int(round((hi_t - lo_t) / step))
    return lo_t, hi_t, [lo_t + i * step for i in range(count + 1)]


def _tick_label(v: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if abs(float(f"{step:.{decimals}f}") - step) > 1e-9 * step:
        decimals += 1  # steps like 0.25
    s = f"{v:.{decimals}f}"
    return "0" if float(s) == 0 else s


class _Canvas:
    """Plot frame: margins, legend rows under the title, linear or log10 axes, axis drawing."""

    def __init__(self, width: int, height: int, title: str, legend: Sequence[str], *, left: int = 58):
        self.width, self.height, self.title = width, height, title
        self.legend = list(legend)
        self.legend_rows = self._layout_legend()
        self.x0, self.x1 = left, width - 14
        self.y0 = 30 + 16 * len(self.legend_rows)
        self.y1 = height - 42
        self.parts: list[str] = []

    def _layout_legend(self) -> list[list[tuple[float, int, str]]]:
        rows: list[list[tuple[float, int, str]]] = [[]]
        x = 58.0
        for i, name in enumerate(self.legend):
            w = 22 + 6.5 * len(name) + 12
            if rows[-1] and x + w > self.width - 10:
                rows.append([])
                x = 58.0
            rows[-1].append((x, i, name))
            x += w
        return [r for r in rows if r]

    def set_x(self, lo: float, hi: float, log: bool = False) -> None:
        self.xlo, self.xhi, self.xlog = lo, hi, log

    def set_y(self, lo: float, hi: float) -> None:
        self.ylo, self.yhi = lo, hi

    def px(self, x: float) -> float:
        if self.xlog:
            x = math.log10(x)
        return self.x0 + (x - self.xlo) / (self.xhi - self.xlo) * (self.x1 - self.x0)

    def py(self, y: float) -> float:
        return self.y1 - (y - self.ylo) / (self.yhi - self.ylo) * (self.y1 - self.y0)

    def axes(
        self, xticks: Sequence[tuple[float, str]], yticks: Sequence[tuple[float, str]], x_label: str, y_label: str
    ) -> None:
        p = self.parts
        for y, label in yticks:
            yy = _n(self.py(y))
            p.append(f'<line x1="{_n(self.x0)}" y1="{yy}" x2="{_n(self.x1)}" y2="{yy}" class="grid"/>')
            p.append(
                f'<text x="{_n(self.x0 - 5)}" y="{yy}" text-anchor="end" dominant-baseline="middle">{_e(label)}</text>'
            )
        for x, label in xticks:
            xx = _n(x)
            p.append(f'<line x1="{xx}" y1="{_n(self.y1)}" x2="{xx}" y2="{_n(self.y1 + 4)}" class="axis"/>')
            p.append(f'<text x="{xx}" y="{_n(self.y1 + 15)}" text-anchor="middle">{_e(label)}</text>')
        p.append(f'<line x1="{_n(self.x0)}" y1="{_n(self.y1)}" x2="{_n(self.x1)}" y2="{_n(self.y1)}" class="axis"/>')
        p.append(f'<line x1="{_n(self.x0)}" y1="{_n(self.y0)}" x2="{_n(self.x0)}" y2="{_n(self.y1)}" class="axis"/>')
        if x_label:
            p.append(
                f'<text x="{_n((self.x0 + self.x1) / 2)}" y="{_n(self.height - 8)}" text-anchor="middle">{_e(x_label)}</text>'
            )
        cy = _n((self.y0 + self.y1) / 2)
        p.append(f'<text x="14" y="{cy}" text-anchor="middle" transform="rotate(-90 14 {cy})">{_e(y_label)}</text>')

    def linear_x_ticks(self, ticks: Sequence[float]) -> list[tuple[float, str]]:
        step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
        return [(self.px(t), _tick_label(t, step)) for t in ticks]

    def linear_y_ticks(self, ticks: Sequence[float]) -> list[tuple[float, str]]:
        step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
        return [(t, _tick_label(t, step)) for t in ticks]

    def render(self, body: Sequence[str], legend_kind: str = "line") -> str:
        out = [
            f'<svg xmlns="{SVG_NS}" width="{self.width}" height="{self.height}" '
            f'viewBox="0 0 {self.width} {self.height}" role="img" aria-label="{_e(self.title)}" class="chart">',
            f'<text x="{_n(self.width / 2)}" y="17" text-anchor="middle" class="title">{_e(self.title)}</text>',
        ]
        for r, row in enumerate(self.legend_rows):
            y = 32 + 16 * r
            for x, i, name in row:
                colour = PALETTE[i % len(PALETTE)]
                if legend_kind == "bar":
                    out.append(f'<rect x="{_n(x)}" y="{y - 5}" width="14" height="10" fill="{colour}"/>')
                else:
                    out.append(
                        f'<line x1="{_n(x)}" y1="{y}" x2="{_n(x + 16)}" y2="{y}" stroke="{colour}" stroke-width="2"/>'
                    )
                out.append(f'<text x="{_n(x + 20)}" y="{y}" dominant-baseline="middle">{_e(name)}</text>')
        out.extend(self.parts)
        out.extend(body)
        out.append("</svg>")
        return "\n".join(out)


def _points(pts) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in pts if is_finite_number(x) and is_finite_number(y)]


def svg_line_chart(
    series: Mapping[str, list[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    diagonal: bool = False,
    width: int = 420,
    height: int = 320,
    log_x: bool = False,
) -> str:
    """Line chart with markers, one colour per series; ``diagonal`` draws the y = x reference.

    Non-finite points (and x <= 0 with ``log_x``) are skipped. With ``diagonal`` both axes share one
    domain starting at 0 (linear), so perfect calibration is the 45° line.
    """
    clean = {name: [(x, y) for x, y in _points(pts) if not log_x or x > 0] for name, pts in series.items()}
    xs = [x for pts in clean.values() for x, _ in pts]
    ys = [y for pts in clean.values() for _, y in pts]
    c = _Canvas(width, height, title, list(clean))
    if log_x:
        lo_e = math.floor(math.log10(min(xs))) if xs else -3
        hi_e = max(math.ceil(math.log10(max(xs))) if xs else 0, lo_e + 1)
        c.set_x(lo_e, hi_e, log=True)
        xticks = [(c.px(10.0**k), f"{10.0**k:g}") for k in range(lo_e, hi_e + 1)]
    if diagonal:  # one shared domain from 0, so y = x is the 45-degree line
        ylo, yhi, yt = _nice_ticks(0.0, max(xs + ys, default=1.0))
        if not log_x:
            c.set_x(ylo, yhi)
            xticks = c.linear_x_ticks(yt)
    else:
        if not log_x:
            xlo, xhi, xt = _nice_ticks(min(xs, default=0.0), max(xs, default=1.0))
            c.set_x(xlo, xhi)
            xticks = c.linear_x_ticks(xt)
        ylo, yhi, yt = _nice_ticks(min(ys, default=0.0), max(ys, default=1.0))
    c.set_y(ylo, yhi)
    c.axes(xticks, c.linear_y_ticks(yt), x_label, y_label)
    body: list[str] = []
    if diagonal:
        grid = [10.0 ** (c.xlo + (c.xhi - c.xlo) * i / 48) for i in range(49)] if log_x else [c.xlo, c.xhi]
        diag = " ".join(f"{_n(c.px(x))},{_n(c.py(x))}" for x in grid if ylo <= x <= yhi)
        if diag:
            body.append(f'<polyline points="{diag}" class="diagonal"/>')
    for i, (name, pts) in enumerate(clean.items()):
        colour = PALETTE[i % len(PALETTE)]
        pts = sorted(pts)
        if len(pts) > 1:
            coords = " ".join(f"{_n(c.px(x))},{_n(c.py(y))}" for x, y in pts)
            body.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in pts:
            body.append(
                f'<circle cx="{_n(c.px(x))}" cy="{_n(c.py(y))}" r="2.5" fill="{colour}">'
                f"<title>{_e(name)}: ({x:.4g}, {y:.4g})</title></circle>"
            )
    return c.render(body)


def svg_bar_chart(
    groups: Mapping[str, Mapping[str, float]], *, title: str, y_label: str, width: int = 520, height: int = 320
) -> str:
    """Grouped bars: ``{group (metric): {series (method): value}}``, one colour per series, legend.

    Non-finite values draw no bar (the slot stays empty).
    """
    methods: list[str] = []
    for values in groups.values():
        methods.extend(m for m in values if m not in methods)
    vals = [float(v) for values in groups.values() for v in values.values() if is_finite_number(v)]
    c = _Canvas(width, height, title, methods)
    c.set_x(0.0, 1.0)
    ylo, yhi, yt = _nice_ticks(min(vals + [0.0]), max(vals + [0.0]) if vals else 1.0)
    c.set_y(ylo, yhi)
    n_groups = max(len(groups), 1)
    group_w = (c.x1 - c.x0) / n_groups
    bar_w = group_w * 0.8 / max(len(methods), 1)
    xticks = [(c.x0 + group_w * (g + 0.5), name) for g, name in enumerate(groups)]
    c.axes(xticks, c.linear_y_ticks(yt), "", y_label)
    body: list[str] = []
    zero = c.py(0.0)
    for g, (metric, values) in enumerate(groups.items()):
        for i, method in enumerate(methods):
            v = values.get(method)
            if not is_finite_number(v):
                continue
            top, x = c.py(float(v)), c.x0 + group_w * (g + 0.1) + bar_w * i
            body.append(
                f'<rect x="{_n(x)}" y="{_n(min(top, zero))}" width="{_n(bar_w * 0.92)}" '
                f'height="{_n(abs(zero - top))}" fill="{PALETTE[i % len(PALETTE)]}">'
                f"<title>{_e(method)} {_e(metric)}: {float(v):.4g}</title></rect>"
            )
    return c.render(body, legend_kind="bar")


def svg_histogram(
    hists: Mapping[str, dict], *, title: str, x_label: str, density: bool = True, width: int = 420, height: int = 300
) -> str:
    """Overlaid step histograms (``{"edges", "counts"}`` each); ``density`` scales each to its share."""
    steps: dict[str, tuple[list[float], list[float]]] = {}
    for name, h in hists.items():
        edges = [float(e) for e in (h or {}).get("edges", [])]
        counts = [float(v) if is_finite_number(v) else 0.0 for v in (h or {}).get("counts", [])]
        if len(edges) != len(counts) + 1 or not counts or not all(map(math.isfinite, edges)):
            continue
        total = sum(counts)
        steps[name] = (edges, [v / total for v in counts] if density and total > 0 else counts)
    c = _Canvas(width, height, title, list(steps))
    xlo, xhi, xt = _nice_ticks(
        min((e[0] for e, _ in steps.values()), default=0.0), max((e[-1] for e, _ in steps.values()), default=1.0)
    )
    ylo, yhi, yt = _nice_ticks(0.0, max((max(v) for _, v in steps.values()), default=1.0) or 1.0)
    c.set_x(xlo, xhi)
    c.set_y(ylo, yhi)
    c.axes(c.linear_x_ticks(xt), c.linear_y_ticks(yt), x_label, "share of rows" if density else "count")
    body: list[str] = []
    for i, (edges, values) in enumerate(steps.values()):
        d = [f"M{_n(c.px(edges[0]))},{_n(c.py(0.0))}"]
        for k, v in enumerate(values):
            d.append(f"L{_n(c.px(edges[k]))},{_n(c.py(v))}L{_n(c.px(edges[k + 1]))},{_n(c.py(v))}")
        d.append(f"L{_n(c.px(edges[-1]))},{_n(c.py(0.0))}")
        body.append(f'<path d="{"".join(d)}" fill="none" stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="1.6"/>')
    return c.render(body)
