"""The offline ranking report: metric helpers and the self-contained HTML (no Spark)."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from models.report import (
    expected_calibration_error,
    histogram,
    reliability_bins,
    render_ranking_report,
    write_ranking_report,
)
from models.svg_charts import svg_bar_chart, svg_histogram, svg_line_chart

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
SVG_XMLNS = "http://www.w3.org/2000/svg"


class _WellFormed(HTMLParser):
    """Every opened non-void tag is closed, in order."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def _check_well_formed(doc: str) -> _WellFormed:
    parser = _WellFormed()
    parser.feed(doc)
    parser.close()
    assert not parser.errors, parser.errors[:5]
    assert not parser.stack, f"unclosed: {parser.stack}"
    return parser


# ----------------------------------------------------------------------------- metrics


def test_ece_perfectly_calibrated_constant():
    p = np.full(10, 0.1)
    y = np.array([1] + [0] * 9)
    assert expected_calibration_error(p, y) == pytest.approx(0.0)


def test_ece_overconfident_constant():
    p = np.full(10, 0.9)
    y = np.array([1] * 5 + [0] * 5)
    assert expected_calibration_error(p, y) == pytest.approx(0.4)


def test_ece_mixed_by_hand():
    # uniform 10 bins: [0.2, 0.3) holds 0.2 x4 with 1 positive -> |0.2 - 0.25| = 0.05, weight 4/10;
    #                  [0.7, 0.8) holds 0.75 x6, all positive  -> |0.75 - 1.0| = 0.25, weight 6/10
    p = np.array([0.2] * 4 + [0.75] * 6)
    y = np.array([1, 0, 0, 0] + [1] * 6)
    expected = 0.4 * 0.05 + 0.6 * 0.25
    assert expected_calibration_error(p, y) == pytest.approx(expected)
    # a single bin pools everything: mean p = 0.53, rate = 0.7
    assert expected_calibration_error(p, y, n_bins=1) == pytest.approx(abs(0.53 - 0.7))


def test_ece_ignores_non_finite_and_handles_empty():
    p = np.array([0.1] * 10 + [np.nan])
    y = np.array([1] + [0] * 9 + [1])
    assert expected_calibration_error(p, y) == pytest.approx(0.0)
    assert math.isnan(expected_calibration_error(np.array([]), np.array([])))


def test_reliability_bins_uniform():
    p = np.array([0.05, 0.05, 0.15, 0.95, 1.0])
    y = np.array([0, 1, 0, 1, 1])
    bins = reliability_bins(p, y, n_bins=10, strategy="uniform")
    assert [b["count"] for b in bins] == [2, 1, 2]  # empty bins omitted; 1.0 lands in the last bin
    assert bins[0]["lower"] == pytest.approx(0.0) and bins[0]["upper"] == pytest.approx(0.1)
    assert bins[0]["observed_rate"] == pytest.approx(0.5)
    assert bins[-1]["mean_predicted"] == pytest.approx(0.975)
    assert set(bins[0]) == {"lower", "upper", "mean_predicted", "observed_rate", "count"}


def test_reliability_bins_quantile_equal_count():
    rng = np.random.default_rng(7)
    p = rng.beta(1, 8, size=1000)
    y = (rng.random(1000) < p).astype(int)
    bins = reliability_bins(p, y, n_bins=10)
    counts = [b["count"] for b in bins]
    assert sum(counts) == 1000
    assert len(bins) == 10
    assert max(counts) - min(counts) <= 2
    assert all(b["lower"] <= b["mean_predicted"] <= b["upper"] for b in bins)
    uniform = reliability_bins(p, y, n_bins=10, strategy="uniform")
    assert sum(b["count"] for b in uniform) == 1000


def test_reliability_bins_quantile_ties_and_errors():
    bins = reliability_bins(np.full(10, 0.3), np.array([1] * 3 + [0] * 7), n_bins=5)
    assert len(bins) == 1 and bins[0]["count"] == 10 and bins[0]["observed_rate"] == pytest.approx(0.3)
    with pytest.raises(ValueError):
        reliability_bins(np.array([0.1]), np.array([1]), strategy="bogus")
    with pytest.raises(ValueError):
        reliability_bins(np.array([0.1, 0.2]), np.array([1]))


def test_histogram_counts():
    h = histogram(np.array([0.0, 0.1, 0.2, 0.5, 0.9, 1.0, np.nan]), n_bins=2, range_=(0.0, 1.0))
    assert h["edges"] == [0.0, 0.5, 1.0]
    assert h["counts"] == [3, 3]
    h = histogram(np.arange(100.0), n_bins=10)
    assert len(h["edges"]) == 11 and sum(h["counts"]) == 100 and h["counts"] == [10] * 10
    assert sum(histogram(np.array([]), n_bins=5)["counts"]) == 0


# ----------------------------------------------------------------------------- SVG


def test_svg_charts_are_well_formed_and_skip_non_finite():
    line = svg_line_chart(
        {"a <b>": [(0.1, 0.2), (float("nan"), 0.5), (0.5, float("inf")), (0.9, 0.8)]},
        title="t & t",
        x_label="x",
        y_label="y",
        diagonal=True,
    )
    assert line.startswith("<svg") and line.count("<circle") == 2
    assert "a &lt;b&gt;" in line and "t &amp; t" in line
    assert not re.search(r"\b(nan|inf)\b", line, re.I)
    _check_well_formed(line)
    log = svg_line_chart(
        {"s": [(0.001, 0.1), (0.1, 0.2), (0.0, 0.3)]}, title="l", x_label="x", y_label="y", log_x=True, diagonal=True
    )
    assert log.count("<circle") == 2
    _check_well_formed(log)
    bars = svg_bar_chart({"m1": {"x": 0.5, "y": float("nan")}, "m2": {"x": -0.1, "y": 0.3}}, title="b", y_label="v")
    assert bars.count("<rect") == 3 + 2  # three finite bars + two legend swatches
    _check_well_formed(bars)
    hist = svg_histogram(
        {"pos": histogram(np.linspace(0, 1, 50), 10), "neg": {"edges": [], "counts": []}}, title="h", x_label="score"
    )
    assert hist.count("<path") == 1
    _check_well_formed(hist)
    empty = svg_line_chart({}, title="e", x_label="x", y_label="y")
    _check_well_formed(empty)


# ----------------------------------------------------------------------------- report

HEADS = ("like", "reply", "retweet")
METHODS = ("heavy_ranker", "light_ranker", "recency", "random")


def _evaluation(world: str = "small") -> dict:
    return {
        "world": world,
        "model": {"kind": "xgboost", "rounds": 120, "features": ["a", "b"]},
        "heads": {
            "like": {
                "auc": 0.81,
                "auc_ceiling": 0.9,
                "logloss": 0.31,
                "ece": 0.004,
                "ece_uncalibrated": 0.03,
                "positives": 1200,
                "rows": 10000,
            },
            "reply": {
                "auc": 0.7,
                "auc_ceiling": None,
                "logloss": float("nan"),
                "ece": 0.01,
                "ece_uncalibrated": 0.05,
                "positives": 80,
                "rows": 10000,
            },
            "retweet": {"auc": 0.75, "auc_ceiling": 0.8, "logloss": 0.1, "ece": 0.002, "positives": 300, "rows": 10000},
        },
        "feed": {
            "heavy_ranker": {
                "ndcg_at_35": 0.42,
                "recall_at_35": 0.5,
                "distinct_authors_at_35": 21.0,
                "in_network_share_at_35": 0.5,
                "coverage": 0.99,
            },
            "light_ranker": {
                "ndcg_at_35": 0.35,
                "recall_at_35": 0.44,
                "distinct_authors_at_35": 19.0,
                "in_network_share_at_35": 0.55,
                "coverage": 0.99,
            },
            "recency": {
                "ndcg_at_35": 0.2,
                "recall_at_35": 0.3,
                "distinct_authors_at_35": 25.0,
                "in_network_share_at_35": 0.7,
                "coverage": 1.0,
            },
            "random": {
                "ndcg_at_35": 0.1,
                "recall_at_35": None,
                "distinct_authors_at_35": 30.0,
                "in_network_share_at_35": 0.5,
                "coverage": 1.0,
            },
        },
        "light_ranker": {"auc": 0.7, "features": 12},
        "elapsed_s": 12.5,
    }


def _calibration() -> dict:
    rng = np.random.default_rng(3)
    out = {}
    for head in HEADS:
        p = rng.random(500) * 0.3
        y = (rng.random(500) < p).astype(int)
        out[head] = {"uncalibrated": reliability_bins(np.sqrt(p), y), "calibrated": reliability_bins(p, y)}
    return out


def _histograms() -> dict:
    rng = np.random.default_rng(5)
    return {
        "final score": {
            "positives": histogram(rng.random(200), 20, (0, 1)),
            "negatives": histogram(rng.random(800) ** 2, 20, (0, 1)),
        }
    }


def _render(evaluation=None, **kw) -> str:
    return render_ranking_report(
        evaluation or _evaluation(),
        calibration=_calibration(),
        score_histograms=_histograms(),
        generated_at="2025-01-01T00:00:00+00:00",
        **kw,
    )


def test_report_well_formed_and_self_contained():
    doc = _render()
    assert doc.startswith("<!DOCTYPE html>")
    parser = _check_well_formed(doc)
    # one calibration plot per head + one feed bar chart + one histogram
    assert parser.tags.count("svg") == len(HEADS) + 1 + 1
    assert doc.count("<svg") == len(HEADS) + 2
    stripped = doc.replace(SVG_XMLNS, "")
    assert "http://" not in stripped and "https://" not in stripped
    assert not re.search(r"<(script|link|img|iframe)\b", doc)
    assert "url(" not in doc and "@import" not in doc
    for name in (*HEADS, *METHODS):
        assert name in doc
    assert "<details>" in doc and "2025-01-01T00:00:00+00:00" in doc


def test_report_tables_values_and_missing():
    doc = _render()
    # heads table: gap computed, missing ceiling / NaN logloss / missing ece_uncalibrated -> dash
    assert "0.0900" in doc  # like: 0.9 - 0.81
    reply_row = re.search(r"<tr><td class=\"k\">reply</td>.*?</tr>", doc).group(0)
    assert reply_row.count("\u2013") == 3  # ceiling, gap, logloss
    retweet_row = re.search(r"<tr><td class=\"k\">retweet</td>.*?</tr>", doc).group(0)
    assert "\u2013" in retweet_row  # no ece_uncalibrated
    # feed table: best per column in bold, None as dash
    heavy_row = re.search(r"<tr><td class=\"k\">heavy_ranker</td>.*?</tr>", doc).group(0)
    assert "<b>0.4200</b>" in heavy_row and "<b>0.5000</b>" in heavy_row
    random_row = re.search(r"<tr><td class=\"k\">random</td>.*?</tr>", doc).group(0)
    assert "\u2013" in random_row and "<b>30.0000</b>" in random_row
    tables = doc.split("<details>")[0]
    assert not re.search(r"\b(nan|NaN|inf|Infinity|None)\b", tables)


def test_report_escapes_world_and_names():
    evil = "<script>alert(1)</script>"
    ev = _evaluation(world=evil)
    ev["feed"]["<b>x</b>"] = {"ndcg_at_35": 0.01}
    doc = render_ranking_report(ev, calibration={evil: {"calibrated": []}}, score_histograms={}, generated_at="t")
    assert "<script>" not in doc and "alert(1)" in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    assert "<b>x</b>" not in doc
    _check_well_formed(doc)


def test_report_deterministic_given_generated_at():
    assert _render() == _render()
    a = render_ranking_report(_evaluation(), calibration={}, score_histograms={}, generated_at="a")
    b = render_ranking_report(_evaluation(), calibration={}, score_histograms={}, generated_at="b")
    assert a != b and a.replace(">a<", ">b<").replace("generated at a", "generated at b") == b
    default = render_ranking_report(_evaluation(), calibration={}, score_histograms={})
    assert re.search(r"generated at \d{4}-\d\d-\d\dT", default)


def test_report_tolerates_missing_sections():
    doc = render_ranking_report({"world": None}, calibration={}, score_histograms={}, generated_at="x")
    _check_well_formed(doc)
    assert "<svg" not in doc and "world: \u2013" in doc
    ev = _evaluation()
    ev["higgs"] = {"heavy_ranker": {"ndcg_at_35": 0.3, "recall_at_35": float("inf")}, "recency": {"ndcg_at_35": 0.2}}
    ev["extra"] = [1, 2, 3]
    doc = render_ranking_report(ev, calibration={}, score_histograms={}, generated_at="x")
    _check_well_formed(doc)
    assert doc.count("<svg") == 2  # feed + higgs bar charts
    assert "Higgs" in doc and "extra" in doc


def test_write_ranking_report(tmp_path):
    target = tmp_path / "a" / "b" / "report.html"
    doc = _render()
    assert write_ranking_report(target, doc) == target
    assert target.read_text(encoding="utf-8") == doc
    write_ranking_report(target, "<html></html>")
    assert target.read_text(encoding="utf-8") == "<html></html>"
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]
