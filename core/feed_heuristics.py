"""Home Mixer's post-scoring heuristics: one user's scored candidates in, that user's For You feed out.

Pure pandas/numpy on the rows of ONE user; the caller runs `rank_user_feed` inside Spark's
`applyInPandas` grouped by user. Two stages:

1. `rescore`: drop candidates whose author got "not interested" too recently (fatigue), scale the
   heavy ranker's score for out-of-network tweets, replies and older fatigue, then decay repeated
   authors (author diversity) into `final_score`.
2. `select_feed`: greedy page assembly by `final_score` under per-page in-network / out-of-network
   caps and a limit on consecutive out-of-network rows.

The result does not depend on the order of the input rows: `rescore` works in `tweet_id` order and
every tie is broken by `tweet_id` ascending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

# Columns `rank_user_feed` needs, with the dtypes an empty input is given.
INPUT_COLUMNS: dict[str, str] = {
    "tweet_id": "int64",
    "author_id": "int64",
    "heavy_score": "float64",
    "is_in_network": "bool",
    "is_reply": "bool",
    "fatigue_days_since": "float64",
}
RESCORE_COLUMNS: tuple[str, ...] = ("fatigue_multiplier", "diversity_multiplier", "final_score")
FEED_COLUMNS: tuple[str, ...] = ("page", "rank")


@dataclass(frozen=True)
class FeedHeuristics:
    """Parameters of the post-scoring heuristics (defaults follow Home Mixer's)."""

    max_rows: int = 200  # rows kept per user
    author_diversity_decay: float = 0.5  # k-th (0-based) tweet of an author in score order is multiplied by
    author_diversity_floor: float = 0.25  #   (1 - floor) * decay**k + floor
    out_of_network_scale: float = 0.75  # multiplies the score of out-of-network candidates
    reply_scale: float = 0.75  # multiplies the score of replies
    page_size: int = 100  # caps below apply per page of this many rows
    in_network_cap: int = 60  # most in-network rows per page
    out_of_network_cap: int = 60  # most out-of-network rows per page
    max_out_of_network_in_a_row: int = 2
    fatigue_drop_days: float = 14.0  # authors given "not interested" within this many days are dropped
    fatigue_recovery_days: float = 140.0  # after that the score is discounted, recovering linearly
    fatigue_floor: float = 0.2  #   from fatigue_floor at fatigue_drop_days to 1.0 at fatigue_recovery_days

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                    raise ValueError(f"FeedHeuristics.{f.name} must be an int, got {value!r}")
            elif (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.integer, np.floating))
                or not math.isfinite(value)
            ):
                raise ValueError(f"FeedHeuristics.{f.name} must be a finite number, got {value!r}")
        for name in ("max_rows", "page_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"FeedHeuristics.{name} must be >= 1, got {getattr(self, name)}")
        # 0 is allowed: a cap of 0 keeps that side out of the feed, a run limit of 0 keeps out-of-network out.
        for name in ("in_network_cap", "out_of_network_cap", "max_out_of_network_in_a_row"):
            if getattr(self, name) < 0:
                raise ValueError(f"FeedHeuristics.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.author_diversity_decay <= 1.0:
            raise ValueError(
                f"FeedHeuristics.author_diversity_decay must be in [0, 1], got {self.author_diversity_decay}"
            )
        # Floors must be > 0: negative scores are divided by the multiplier (see `apply_multiplier`).
        for name in ("author_diversity_floor", "fatigue_floor"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"FeedHeuristics.{name} must be in (0, 1], got {getattr(self, name)}")
        for name in ("out_of_network_scale", "reply_scale"):
            if getattr(self, name) <= 0.0:
                raise ValueError(f"FeedHeuristics.{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.fatigue_drop_days < self.fatigue_recovery_days:
            raise ValueError(
                "FeedHeuristics needs 0 < fatigue_drop_days < fatigue_recovery_days, got "
                f"{self.fatigue_drop_days} and {self.fatigue_recovery_days}"
            )


DEFAULTS = FeedHeuristics()


# ---------------------------------------------------------------------------------------------
# Multipliers
# ---------------------------------------------------------------------------------------------


def apply_multiplier(scores: np.ndarray, multipliers: np.ndarray) -> np.ndarray:
    """`scores` scaled by positive `multipliers` so that a multiplier below 1 always lowers the score.

    Non-negative scores are multiplied; negative scores are divided (score / m), because multiplying
    a negative score by m < 1 would move it towards zero, i.e. reward the row. The sign never changes,
    so applying several multipliers one after another equals applying their product once.
    """
    scores = np.asarray(scores, dtype=np.float64)
    multipliers = np.asarray(multipliers, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # np.where evaluates both branches
        return np.where(scores >= 0.0, scores * multipliers, scores / multipliers)


def fatigue_multiplier(days_since: np.ndarray, h: FeedHeuristics) -> np.ndarray:
    """Multiplier for days since the user's latest "not interested" in the author; 0.0 means drop.

    NaN (no feedback) -> 1.0; under `fatigue_drop_days` -> 0.0; then linear from `fatigue_floor` at
    `fatigue_drop_days` to 1.0 at `fatigue_recovery_days`; 1.0 from there on. Negative days
    (feedback stamped after the build time) count as 0 days, i.e. dropped.
    """
    days = np.maximum(np.asarray(days_since, dtype=np.float64), 0.0)  # NaN stays NaN
    span = h.fatigue_recovery_days - h.fatigue_drop_days
    recovered = np.clip((days - h.fatigue_drop_days) / span, 0.0, 1.0)
    multiplier = h.fatigue_floor + (1.0 - h.fatigue_floor) * recovered
    multiplier = np.where(days < h.fatigue_drop_days, 0.0, multiplier)
    return np.where(np.isnan(days), 1.0, multiplier)


def author_diversity_multipliers(author_ids: np.ndarray, scores: np.ndarray, h: FeedHeuristics) -> np.ndarray:
    """(1 - floor) * decay**k + floor per row, k being the row's 0-based occurrence among its
    author's rows in descending score order (ties: input position); aligned with the input."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if n == 0:
        return np.empty(0, dtype=np.float64)
    by_score = np.argsort(-scores, kind="stable")
    _, codes = np.unique(np.asarray(author_ids)[by_score], return_inverse=True)
    # Group the score-ordered rows by author (stable, so score order holds inside each group);
    # a row's occurrence is its distance from the start of its group.
    by_author = np.argsort(codes, kind="stable")
    grouped = codes[by_author]
    starts = np.r_[True, grouped[1:] != grouped[:-1]]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    occurrence = np.empty(n, dtype=np.int64)
    occurrence[by_score[by_author]] = np.arange(n) - group_start
    floor = h.author_diversity_floor
    return (1.0 - floor) * h.author_diversity_decay**occurrence + floor


# ---------------------------------------------------------------------------------------------
# Rescoring
# ---------------------------------------------------------------------------------------------


def _require_columns(frame: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} needs columns {missing}; got {list(frame.columns)}")


def rescore(candidates: pd.DataFrame, h: FeedHeuristics = DEFAULTS) -> pd.DataFrame:
    """`candidates` without fatigued rows, with `fatigue_multiplier`, `diversity_multiplier` and
    `final_score` added; rows come back in `tweet_id` order.

    In order: rows with a fatigue multiplier of 0 are dropped; score = heavy_score scaled by
    `out_of_network_scale` (out-of-network), `reply_scale` (replies) and the fatigue multiplier;
    author diversity is computed on that score; final_score = score scaled by the diversity
    multiplier. "Scaled by m" means score * m for score >= 0 and score / m for score < 0, so that a
    penalty (m < 1) always lowers the score: heavy_score is a weighted sum with negative heads and
    can be negative, and multiplying it by m < 1 would raise it. All multipliers are > 0 here
    (fatigue 0 rows are gone, floors are > 0), so the division is always finite.
    Working in `tweet_id` order makes diversity ties (same author, same score) break by tweet id.
    """
    _require_columns(candidates, INPUT_COLUMNS, "rescore")
    frame = candidates.sort_values("tweet_id", kind="stable").reset_index(drop=True)
    heavy = frame["heavy_score"].to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(heavy).all():
        raise ValueError("rescore: heavy_score must be finite (no NaN or inf)")
    fatigue = fatigue_multiplier(frame["fatigue_days_since"].to_numpy(dtype=np.float64, na_value=np.nan), h)
    kept = fatigue > 0.0
    frame, heavy, fatigue = frame.loc[kept].reset_index(drop=True), heavy[kept], fatigue[kept]

    in_network = frame["is_in_network"].to_numpy(dtype=bool)
    is_reply = frame["is_reply"].to_numpy(dtype=bool)
    penalty = np.where(in_network, 1.0, h.out_of_network_scale) * np.where(is_reply, h.reply_scale, 1.0) * fatigue
    score = apply_multiplier(heavy, penalty)
    diversity = author_diversity_multipliers(frame["author_id"].to_numpy(), score, h)
    return frame.assign(
        fatigue_multiplier=fatigue, diversity_multiplier=diversity, final_score=apply_multiplier(score, diversity)
    )


# ---------------------------------------------------------------------------------------------
# Page assembly
# ---------------------------------------------------------------------------------------------


def assemble_pages(in_network: list[int], out_of_network: list[int], h: FeedHeuristics) -> tuple[list[int], list[int]]:
    """The greedy walk of `select_feed` on two queues of global ranks (lower = better, each queue
    ascending); returns the picked ranks in feed order and the 1-based page of each."""
    picked: list[int] = []
    pages: list[int] = []
    # Locals, not attribute and len() lookups: this loop runs per row, at serving time per request.
    n_in, n_out, max_rows, page_size = len(in_network), len(out_of_network), h.max_rows, h.page_size
    in_cap, out_cap, run_limit = h.in_network_cap, h.out_of_network_cap, h.max_out_of_network_in_a_row
    i = o = taken = 0
    page, page_rows, page_in, page_oon, oon_run = 1, 0, 0, 0, 0
    while taken < max_rows:
        if page_rows == page_size:
            page, page_rows, page_in, page_oon = page + 1, 0, 0, 0
        in_ok = i < n_in and page_in < in_cap
        # The run limit spaces out-of-network rows between in-network ones; once those are
        # exhausted it would only cut the feed short, so it stops applying.
        oon_ok = o < n_out and page_oon < out_cap and (oon_run < run_limit or i == n_in)
        if not (in_ok or oon_ok):
            if page_rows == 0:
                break  # a fresh page admits nothing: nothing ever will
            # The consecutive out-of-network run deliberately survives the page break.
            page, page_rows, page_in, page_oon = page + 1, 0, 0, 0
            continue
        if in_ok and (not oon_ok or in_network[i] < out_of_network[o]):
            picked.append(in_network[i])
            i, page_in, oon_run = i + 1, page_in + 1, 0
        else:
            picked.append(out_of_network[o])
            o, page_oon, oon_run = o + 1, page_oon + 1, oon_run + 1
        pages.append(page)
        page_rows += 1
        taken += 1
    return picked, pages


def select_feed(rescored: pd.DataFrame, h: FeedHeuristics = DEFAULTS) -> pd.DataFrame:
    """The feed: rows of `rescored` chosen greedily by final_score (ties: tweet_id ascending) under
    the page caps, in feed order, with `page` and `rank` (int32, 1-based) added.

    At each step the best remaining row whose side is allowed is taken: allowed means its side's
    cap on the current page is not reached and, for out-of-network while in-network rows remain,
    fewer than `max_out_of_network_in_a_row` out-of-network rows immediately precede it. When no side is
    allowed a new page starts (page counts reset, the out-of-network run does not); when a fresh
    page admits nothing, or `max_rows` rows are taken, selection stops. A page also ends after
    `page_size` rows. Within a side the order is fixed, so only the two queue heads are compared.
    """
    _require_columns(rescored, ("tweet_id", "final_score", "is_in_network"), "select_feed")
    order = np.lexsort((rescored["tweet_id"].to_numpy(), -rescored["final_score"].to_numpy(dtype=np.float64)))
    in_network = rescored["is_in_network"].to_numpy(dtype=bool)[order]
    picked, pages = assemble_pages(np.flatnonzero(in_network).tolist(), np.flatnonzero(~in_network).tolist(), h)
    rows = order[np.asarray(picked, dtype=np.intp)]
    feed = rescored.iloc[rows].reset_index(drop=True)
    return feed.assign(page=np.asarray(pages, dtype=np.int32), rank=np.arange(1, len(feed) + 1, dtype=np.int32))


def rank_user_feed(candidates: pd.DataFrame, h: FeedHeuristics = DEFAULTS) -> pd.DataFrame:
    """One user's feed: `select_feed(rescore(candidates))`. Output columns: the input's, then
    `fatigue_multiplier`, `diversity_multiplier`, `final_score`, `page`, `rank`; an empty input
    gives an empty frame with those columns."""
    if candidates.empty:
        missing = {c: pd.Series(dtype=d) for c, d in INPUT_COLUMNS.items() if c not in candidates.columns}
        candidates = candidates.assign(**missing).astype(INPUT_COLUMNS)
    return select_feed(rescore(candidates, h), h)
