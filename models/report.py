"""Self-contained HTML report for the offline ranking evaluation, plus the metric helpers it plots.

One file, no external CSS/JS/fonts/images: plots are inline SVG written by hand (no matplotlib).
Output is deterministic: the same inputs (and the same ``generated_at``) give the same bytes.
Missing, ``None``, NaN and infinite values render as "–"; non-finite plot points are skipped.
"""

from __future__ import annotations

import html
import json
import math
import numbers
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

DASH = "\u2013"
SVG_NS = "http://www.w3.org/2000/svg"
# Okabe-Ito: colour-blind safe, fixed order so colours are stable per series position.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
FEED_CHART_METRICS = ("ndcg_at_35", "recall_at_35")
# Direction of "better" per feed/heads metric; None = descriptive, never bolded.
LOWER_IS_BETTER = ("logloss", "ece", "latency")
NEUTRAL_METRICS = ("in_network_share_at_35",)
_KNOWN_SECTIONS = ("world", "model", "heads", "feed", "light_ranker", "higgs")


# ----------------------------------------------------------------------------- metric helpers


def _clean(probabilities, labels) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities, dtype=float).ravel()
    y = np.asarray(labels, dtype=float).ravel()
    if p.shape != y.shape:
        raise ValueError(f"probabilities and labels differ in length: {p.size} vs {y.size}")
    keep = np.isfinite(p) & np.isfinite(y)
    return np.clip(p[keep], 0.0, 1.0), y[keep]


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 10, strategy: str = "quantile"
) -> list[dict]:
    """Reliability-diagram bins: ``uniform`` splits [0, 1] evenly, ``quantile`` into equal-count bins.

    Each bin: lower, upper (bin edges), mean_predicted, observed_rate, count. Empty bins are omitted;
    with ``quantile``, tied probabilities stay in one bin (so bins may be fewer / unequal on ties).
    """
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    p, y = _clean(probabilities, labels)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        if p.size == 0:
            return []
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
        if edges.size == 1:
            edges = np.array([edges[0], edges[0]])
    else:
        raise ValueError(f"unknown strategy {strategy!r} (expected 'uniform' or 'quantile')")
    # Bins are [e_i, e_{i+1}); the last one is closed on the right.
    idx = np.searchsorted(edges[1:-1], p, side="right")
    bins = []
    for i in range(edges.size - 1):
        mask = idx == i
        count = int(mask.sum())
        if count == 0:
            continue
        bins.append(
            {
                "lower": float(edges[i]),
                "upper": float(edges[i + 1]),
                "mean_predicted": float(p[mask].mean()),
                "observed_rate": float(y[mask].mean()),
                "count": count,
            }
        )
    return bins


def expected_calibration_error(probabilities, labels, n_bins: int = 10, strategy: str = "uniform") -> float:
    """Sum over bins of count/N * |mean_predicted - observed_rate|; NaN when there is no valid row."""
    bins = reliability_bins(probabilities, labels, n_bins=n_bins, strategy=strategy)
    total = sum(b["count"] for b in bins)
    if total == 0:
        return float("nan")
    return float(sum(b["count"] / total * abs(b["mean_predicted"] - b["observed_rate"]) for b in bins))


def histogram(values: np.ndarray, n_bins: int = 30, range_: tuple[float, float] | None = None) -> dict:
    """``{"edges": [n_bins + 1 floats], "counts": [n_bins ints]}`` over the finite values."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if range_ is None:
        range_ = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
    lo, hi = float(range_[0]), float(range_[1])
    if hi <= lo:
        lo, hi = lo - 0.5, lo + 0.5
    counts, edges = np.histogram(v, bins=n_bins, range=(lo, hi))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


# ----------------------------------------------------------------------------- SVG primitives


def _finite(v) -> bool:
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
    return [(float(x), float(y)) for x, y in pts if _finite(x) and _finite(y)]


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
    vals = [float(v) for values in groups.values() for v in values.values() if _finite(v)]
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
            if not _finite(v):
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
        counts = [float(v) if _finite(v) else 0.0 for v in (h or {}).get("counts", [])]
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


# ----------------------------------------------------------------------------- HTML report

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.5em;margin-bottom:4px} h2{font-size:1.2em;margin-top:28px;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right} th{background:#f4f4f4}
td.k,th.k{text-align:left}
.grid-plots{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{background:#fff;border:1px solid #eee;font-size:11px}
svg .title{font-size:13px;font-weight:600} svg .axis{stroke:#444}
svg .grid{stroke:#e6e6e6} svg .diagonal{fill:none;stroke:#999;stroke-dasharray:4 3}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:.8em}
""".strip()


def _fmt(v) -> str:
    """Cell text (already escaped): numbers rounded, None/NaN/inf as a dash."""
    if v is None:
        return DASH
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        f = float(v)
        if not math.isfinite(f):
            return DASH
        return f"{f:.1f}" if abs(f) >= 100 else f"{f:.4f}"
    if isinstance(v, str):
        return _e(v) if v else DASH
    text = json.dumps(v, default=str, sort_keys=True)
    return _e(text if len(text) <= 200 else text[:197] + "...")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Header cells are raw text (escaped here); row cells are pre-rendered HTML, the first one a key."""

    def cls(i: int) -> str:
        return ' class="k"' if i == 0 else ""

    out = ["<table>", "<tr>" + "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(header)) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td{cls(i)}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _kv_table(data: Mapping) -> str:
    return _table(["key", "value"], [[_e(k), _fmt(v)] for k, v in data.items()])


def _better(metric: str) -> str | None:
    if metric in NEUTRAL_METRICS:
        return None
    return "min" if any(tag in metric for tag in LOWER_IS_BETTER) else "max"


def _feed_section(name: str, feed: Mapping) -> list[str]:
    rows = {m: v for m, v in feed.items() if isinstance(v, Mapping)}
    if not rows:
        return [f"<h2>{_e(name)}</h2>", "<p>no results</p>"]
    metrics: list[str] = []
    for values in rows.values():
        metrics.extend(k for k in values if k not in metrics)
    best: dict[str, float] = {}
    for metric in metrics:
        finite = [float(v[metric]) for v in rows.values() if _finite(v.get(metric))]
        direction = _better(metric)
        if finite and direction:
            best[metric] = min(finite) if direction == "min" else max(finite)
    body = []
    for method, values in rows.items():
        cells = [_e(method)]
        for metric in metrics:
            v = values.get(metric)
            text = _fmt(v)
            cells.append(f"<b>{text}</b>" if metric in best and _finite(v) and float(v) == best[metric] else text)
        body.append(cells)
    out = [
        f"<h2>{_e(name)}</h2>",
        _table(["method", *metrics], body),
        '<p class="meta">best value per column in bold (lower is better for logloss/ECE; '
        f"{', '.join(NEUTRAL_METRICS)} is descriptive, not ranked)</p>",
    ]
    chart = {m: {method: values.get(m) for method, values in rows.items()} for m in FEED_CHART_METRICS if m in metrics}
    if chart:
        out.append(svg_bar_chart(chart, title=f"{name}: ranking quality vs baselines", y_label="value"))
    return out


def _heads_section(heads: Mapping) -> list[str]:
    rows = []
    for head, h in heads.items():
        h = h if isinstance(h, Mapping) else {}
        auc, ceiling = h.get("auc"), h.get("auc_ceiling")
        gap = float(ceiling) - float(auc) if _finite(auc) and _finite(ceiling) else None
        rows.append(
            [
                _e(head),
                _fmt(h.get("rows")),
                _fmt(h.get("positives")),
                _fmt(auc),
                _fmt(ceiling),
                _fmt(gap),
                _fmt(h.get("logloss")),
                _fmt(h.get("ece_uncalibrated")),
                _fmt(h.get("ece")),
            ]
        )
    return [
        "<h2>Engagement heads</h2>",
        _table(
            [
                "head",
                "rows",
                "positives",
                "auc",
                "auc ceiling",
                "gap",
                "logloss",
                "ECE (uncalibrated)",
                "ECE (calibrated)",
            ],
            rows,
        ),
    ]


def _generic_section(name: str, value) -> list[str]:
    out = [f"<h2>{_e(name)}</h2>"]
    if isinstance(value, Mapping) and value and all(isinstance(v, Mapping) for v in value.values()):
        cols: list[str] = []
        for v in value.values():
            cols.extend(k for k in v if k not in cols)
        out.append(_table(["", *cols], [[_e(k), *(_fmt(v.get(c)) for c in cols)] for k, v in value.items()]))
    elif isinstance(value, Mapping):
        out.append(_kv_table(value))
    else:
        out.append(f"<p>{_fmt(value)}</p>")
    return out


def render_ranking_report(
    evaluation: Mapping,
    *,
    calibration: Mapping[str, Mapping[str, list[dict]]] | None = None,
    score_histograms: Mapping[str, Mapping[str, dict]] | None = None,
    title: str = "homefeed ranking evaluation",
    generated_at: str | None = None,
) -> str:
    """The full HTML document for one ``homefeed eval ranking`` result (see module docstring)."""
    if generated_at is None:
        generated_at = datetime.now(UTC).isoformat(timespec="seconds")
    calibration = calibration or {}
    score_histograms = score_histograms or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>\n{_STYLE}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">world: {_fmt(evaluation.get("world"))} &middot; generated at {_e(generated_at)}</p>',
    ]
    scalars = {k: v for k, v in evaluation.items() if k not in _KNOWN_SECTIONS and not isinstance(v, (Mapping, list))}
    if scalars:
        parts += ["<h2>Summary</h2>", _kv_table(scalars)]
    if isinstance(evaluation.get("model"), Mapping):
        parts += ["<h2>Model</h2>", _kv_table(evaluation["model"])]
    if isinstance(evaluation.get("heads"), Mapping):
        parts += _heads_section(evaluation["heads"])
    if isinstance(evaluation.get("feed"), Mapping):
        parts += _feed_section("Feed ranking", evaluation["feed"])
    if isinstance(evaluation.get("higgs"), Mapping):
        parts += _feed_section("Higgs replay", evaluation["higgs"])
    if evaluation.get("light_ranker") is not None:
        parts += _generic_section("Light ranker", evaluation["light_ranker"])
    for key, value in evaluation.items():
        if key not in _KNOWN_SECTIONS and isinstance(value, (Mapping, list)):
            parts += _generic_section(key, value)
    if calibration:
        head_order = [h for h in (evaluation.get("heads") or {}) if h in calibration]
        head_order += [h for h in calibration if h not in head_order]
        parts += [
            "<h2>Calibration</h2>",
            '<p class="meta">observed positive rate vs mean predicted probability per bin; dashed: perfect calibration</p>',
            '<div class="grid-plots">',
        ]
        for head in head_order:
            series = {
                kind: [(b.get("mean_predicted"), b.get("observed_rate")) for b in bins or []]
                for kind, bins in calibration[head].items()
            }
            parts.append(
                svg_line_chart(series, title=head, x_label="mean predicted", y_label="observed rate", diagonal=True)
            )
        parts.append("</div>")
    if score_histograms:
        parts += ["<h2>Score distributions</h2>", '<div class="grid-plots">']
        for name, hists in score_histograms.items():
            parts.append(svg_histogram(hists, title=name, x_label="score"))
        parts.append("</div>")
    raw = json.dumps(evaluation, indent=2, default=str)
    parts += [
        "<details>",
        "<summary>raw evaluation JSON</summary>",
        f"<pre>{_e(raw)}</pre>",
        "</details>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def write_ranking_report(path: Path, html: str) -> Path:
    """Write ``html`` to ``path`` atomically (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is for anyone who can read the warehouse
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
