"""Self-contained HTML report for the offline ranking evaluation, plus the metric helpers it plots.

One file, no external CSS/JS/fonts/images: plots are inline SVG written by hand (no matplotlib;
`models.svg_charts`). Output is deterministic: the same inputs (and the same ``generated_at``) give the same bytes.
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

from models.svg_charts import is_finite_number, svg_bar_chart, svg_histogram, svg_line_chart

DASH = "\u2013"
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


def _e(text) -> str:
    return html.escape(str(text), quote=True)


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
        finite = [float(v[metric]) for v in rows.values() if is_finite_number(v.get(metric))]
        direction = _better(metric)
        if finite and direction:
            best[metric] = min(finite) if direction == "min" else max(finite)
    body = []
    for method, values in rows.items():
        cells = [_e(method)]
        for metric in metrics:
            v = values.get(metric)
            text = _fmt(v)
            cells.append(
                f"<b>{text}</b>" if metric in best and is_finite_number(v) and float(v) == best[metric] else text
            )
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
        gap = float(ceiling) - float(auc) if is_finite_number(auc) and is_finite_number(ceiling) else None
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
        parts += _calibration_section(calibration, heads=list(evaluation.get("heads") or {}))
    if score_histograms:
        parts += _score_distributions_section(score_histograms)
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


def _calibration_section(calibration: Mapping[str, Mapping[str, list[dict]]], *, heads: list[str]) -> list[str]:
    """One reliability chart per head, in the order of `heads` (the evaluation's), then any others."""
    head_order = [h for h in heads if h in calibration]
    head_order += [h for h in calibration if h not in head_order]
    parts = [
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
    return parts


def _score_distributions_section(score_histograms: Mapping[str, Mapping[str, dict]]) -> list[str]:
    """One chart of overlaid score histograms per entry."""
    parts = ["<h2>Score distributions</h2>", '<div class="grid-plots">']
    for name, hists in score_histograms.items():
        parts.append(svg_histogram(hists, title=name, x_label="score"))
    parts.append("</div>")
    return parts


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
