"""Post-scoring heuristics on tiny hand-made pools; every expected value is worked out by hand here,
and the random-pool test checks the greedy against a naive re-implementation written in this file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import feed_heuristics as fh
from core.feed_heuristics import FeedHeuristics

H = FeedHeuristics()
NAN = float("nan")


def pool(rows) -> pd.DataFrame:
    """rows: (tweet_id, author_id, heavy_score, is_in_network, is_reply[, fatigue_days_since])"""
    return pd.DataFrame(
        [(*r[:5], r[5] if len(r) > 5 else NAN) for r in rows],
        columns=["tweet_id", "author_id", "heavy_score", "is_in_network", "is_reply", "fatigue_days_since"],
    ).astype(fh.INPUT_COLUMNS)


def scored(rows) -> pd.DataFrame:
    """A `select_feed` input. rows: (tweet_id, final_score, is_in_network)"""
    return pd.DataFrame(rows, columns=["tweet_id", "final_score", "is_in_network"])


def by_tweet(frame: pd.DataFrame, column: str) -> dict[int, float]:
    return dict(zip(frame["tweet_id"], frame[column]))


def side_pattern(feed: pd.DataFrame) -> str:
    return "".join("I" if x else "O" for x in feed["is_in_network"])


def assert_feed_invariants(feed: pd.DataFrame, pool_rows: pd.DataFrame, h: FeedHeuristics) -> None:
    n = len(feed)
    assert n <= h.max_rows
    assert feed["rank"].dtype == np.int32 and feed["rank"].tolist() == list(range(1, n + 1))
    assert feed["tweet_id"].is_unique
    # The out-of-network run limit holds while in-network rows remain: up to the feed's last
    # in-network row, or everywhere when some in-network row of the pool was not taken.
    pattern = side_pattern(feed)
    all_in_network_taken = feed["is_in_network"].sum() == pool_rows["is_in_network"].sum()
    limited = pattern[: pattern.rfind("I") + 1] if all_in_network_taken else pattern
    assert "O" * (h.max_out_of_network_in_a_row + 1) not in limited
    pages = feed["page"].tolist()
    assert pages == sorted(pages) and (not pages or pages[0] == 1)
    for _, page in feed.groupby("page"):
        assert len(page) <= h.page_size
        assert page["is_in_network"].sum() <= h.in_network_cap
        assert (~page["is_in_network"]).sum() <= h.out_of_network_cap
    # Within a side the feed is a prefix of that side's (final_score desc, tweet_id asc) order.
    for side in (True, False):
        chosen = feed[feed["is_in_network"] == side]["tweet_id"].tolist()
        ranked = (
            pool_rows[pool_rows["is_in_network"] == side]
            .sort_values(["final_score", "tweet_id"], ascending=[False, True])["tweet_id"]
            .tolist()
        )
        assert chosen == ranked[: len(chosen)]


# --- parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(max_rows=0),
        dict(page_size=0),
        dict(in_network_cap=-1),
        dict(max_out_of_network_in_a_row=-1),
        dict(max_rows=2.5),
        dict(page_size=True),
        dict(author_diversity_decay=1.5),
        dict(author_diversity_floor=0.0),
        dict(fatigue_floor=0.0),
        dict(reply_scale=0.0),
        dict(out_of_network_scale=-1.0),
        dict(fatigue_drop_days=0.0),
        dict(fatigue_recovery_days=14.0),
        dict(reply_scale=float("nan")),
    ],
)
def test_invalid_parameters_raise(kwargs):
    with pytest.raises(ValueError, match="FeedHeuristics"):
        FeedHeuristics(**kwargs)


# --- multipliers -------------------------------------------------------------------------------


def test_author_diversity_multipliers_decay_by_occurrence_in_score_order():
    # Author 7 in score order: 3.0 (k=0: 1.0), 2.0 (k=1: .75*.5+.25 = .625), 1.0 (k=2: .75*.25+.25 = .4375).
    got = fh.author_diversity_multipliers(np.array([7, 8, 7, 7]), np.array([3.0, 5.0, 1.0, 2.0]), H)
    np.testing.assert_allclose(got, [1.0, 1.0, 0.4375, 0.625])


def test_author_diversity_ties_break_by_input_position():
    got = fh.author_diversity_multipliers(np.array([1, 2, 1, 1]), np.array([2.0, 2.0, 2.0, -1.0]), H)
    np.testing.assert_allclose(got, [1.0, 1.0, 0.625, 0.4375])
    assert fh.author_diversity_multipliers(np.array([], dtype=np.int64), np.array([]), H).shape == (0,)


@pytest.mark.parametrize(
    "days, expected",
    [
        (0.0, 0.0),
        (13.9, 0.0),
        (14.0, 0.2),
        (77.0, 0.6),  # 77: 0.2 + 0.8 * (63 / 126)
        (140.0, 1.0),
        (500.0, 1.0),
        (NAN, 1.0),
        (-3.0, 0.0),
    ],
)
def test_fatigue_multiplier(days, expected):
    assert fh.fatigue_multiplier(np.array([days]), H)[0] == pytest.approx(expected)


# --- rescore -----------------------------------------------------------------------------------


def test_rescore_scales_out_of_network_replies_and_fatigue_and_drops_fatigued():
    out = fh.rescore(
        pool(
            [
                (1, 11, 10.0, True, False),
                (2, 12, 10.0, False, False),  # 10 * .75
                (3, 13, 10.0, True, True),  # 10 * .75
                (4, 14, 10.0, False, True),  # 10 * .75 * .75
                (5, 15, 10.0, True, False, 77.0),  # 10 * .6
                (6, 16, 10.0, True, False, 5.0),  # dropped
                (7, 17, 10.0, False, True, 77.0),  # 10 * .75 * .75 * .6
            ]
        ),
        H,
    )
    assert sorted(out["tweet_id"]) == [1, 2, 3, 4, 5, 7]
    assert by_tweet(out, "final_score") == pytest.approx({1: 10.0, 2: 7.5, 3: 7.5, 4: 5.625, 5: 6.0, 7: 3.375})
    assert by_tweet(out, "fatigue_multiplier") == pytest.approx({1: 1, 2: 1, 3: 1, 4: 1, 5: 0.6, 7: 0.6})
    assert set(out["diversity_multiplier"]) == {1.0}


def test_rescore_penalties_make_negative_scores_more_negative():
    out = fh.rescore(
        pool(
            [
                (1, 11, -2.0, True, True),  # reply: -2 / .75
                (2, 12, 4.0, True, False),  # author 12's best: untouched
                (3, 12, -1.0, True, False),  # author 12's second: -1 / .625
                (4, 13, -1.0, False, False, 77.0),  # -1 / (.75 * .6)
            ]
        ),
        H,
    )
    assert by_tweet(out, "final_score") == pytest.approx({1: -2 / 0.75, 2: 4.0, 3: -1.6, 4: -1 / 0.45})
    assert by_tweet(out, "diversity_multiplier") == pytest.approx({1: 1.0, 2: 1.0, 3: 0.625, 4: 1.0})


def test_rescore_diversity_uses_the_scaled_score():
    # Author 5: raw 10 (OON reply -> 5.625) vs raw 7 (in-network -> 7): the in-network one is first.
    out = fh.rescore(pool([(1, 5, 10.0, False, True), (2, 5, 7.0, True, False)]), H)
    assert by_tweet(out, "final_score") == pytest.approx({1: 5.625 * 0.625, 2: 7.0})


# --- select_feed -------------------------------------------------------------------------------


def caps_pool() -> pd.DataFrame:
    """100 in-network rows (tweet ids 1..100, scores 1000..901) above 100 out-of-network rows
    (tweet ids 101..200, scores 100..1)."""
    return scored([(t, 1001.0 - t, True) for t in range(1, 101)] + [(t, 201.0 - t, False) for t in range(101, 201)])


def test_caps_page_pattern():
    h = FeedHeuristics(page_size=100, in_network_cap=60, out_of_network_cap=60, max_out_of_network_in_a_row=2)
    feed = fh.select_feed(caps_pool(), h)
    # Page 1: the 60 best in-network, then 2 out-of-network; the in-network cap and the run limit
    # then block both sides, so page 2 starts: the other 40 in-network. With no in-network left the
    # run limit stops applying: out-of-network fills page 2 to its cap of 60 (100 rows, full), and
    # page 3 takes the remaining 38 up to max_rows 200.
    assert feed["tweet_id"].tolist() == (list(range(1, 61)) + [101, 102] + list(range(61, 101)) + list(range(103, 201)))
    assert feed["page"].tolist() == [1] * 62 + [2] * 100 + [3] * 38
    assert side_pattern(feed) == "I" * 60 + "OO" + "I" * 40 + "O" * 98
    assert_feed_invariants(feed, caps_pool(), h)


def test_caps_pattern_through_rank_user_feed():
    # Distinct authors, no replies or fatigue: OON scores become 75..0.75, still below in-network.
    candidates = pool(
        [(t, t, 1001.0 - t, True, False) for t in range(1, 101)]
        + [(t, t, 201.0 - t, False, False) for t in range(101, 201)]
    )
    feed = fh.rank_user_feed(candidates, FeedHeuristics())
    assert side_pattern(feed) == "I" * 60 + "OO" + "I" * 40 + "O" * 98
    assert feed["final_score"].iloc[60] == pytest.approx(100 * 0.75)


def test_out_of_network_only_pool_is_not_cut_by_the_run_limit():
    feed = fh.select_feed(scored([(t, 10.0 - t, False) for t in range(1, 11)]), H)
    assert feed["tweet_id"].tolist() == list(range(1, 11))


def test_in_network_breaks_the_out_of_network_run():
    # 5 strong OON rows, 1 weak in-network row: O O I, then with no in-network left O O O.
    feed = fh.select_feed(scored([(t, 10.0 - t, False) for t in range(1, 6)] + [(6, 0.0, True)]), H)
    assert feed["tweet_id"].tolist() == [1, 2, 6, 3, 4, 5]
    assert feed["page"].tolist() == [1] * 6


def test_cap_reached_starts_a_new_page_and_max_rows_truncates():
    feed = fh.select_feed(scored([(t, -float(t), True) for t in range(1, 301)]), H)
    assert len(feed) == 200 and feed["tweet_id"].tolist() == list(range(1, 201))
    assert feed.groupby("page").size().tolist() == [60, 60, 60, 20]


def test_page_size_starts_a_new_page():
    h = FeedHeuristics(max_rows=250, page_size=100, in_network_cap=1000, out_of_network_cap=1000)
    feed = fh.select_feed(scored([(t, -float(t), t % 3 != 0) for t in range(1, 301)]), h)
    assert len(feed) == 250
    assert feed["page"].tolist() == [1] * 100 + [2] * 100 + [3] * 50
    # Every third tweet is OON and never two in a row, so the feed is just score order.
    assert feed["tweet_id"].tolist() == list(range(1, 251))


def test_ties_break_by_tweet_id_whatever_the_input_order():
    candidates = pool([(t, t % 3, 1.0, t % 2 == 0, False) for t in range(1, 21)])
    first = fh.rank_user_feed(candidates, H)
    again = fh.rank_user_feed(candidates.sample(frac=1.0, random_state=7), H)
    pd.testing.assert_frame_equal(first, again)
    # Author 1's in-network tweets (4, 10, 16; score 1.0) come before its OON ones (1, 7, 13, 19;
    # score .75) and decay in tweet id order among themselves; the OON ones continue from k=3.
    rescored = fh.rescore(candidates, H)
    author_1 = by_tweet(rescored[rescored["author_id"] == 1], "diversity_multiplier")
    assert author_1 == pytest.approx(
        {4: 1.0, 10: 0.625, 16: 0.4375, 1: 0.34375, 7: 0.296875, 13: 0.2734375, 19: 0.26171875}
    )


def test_empty_input():
    expected_columns = list(fh.INPUT_COLUMNS) + list(fh.RESCORE_COLUMNS) + list(fh.FEED_COLUMNS)
    for empty in (pool([]), pd.DataFrame()):
        feed = fh.rank_user_feed(empty)
        assert feed.empty and list(feed.columns) == expected_columns
        assert feed["rank"].dtype == np.int32 and feed["final_score"].dtype == np.float64
    assert fh.select_feed(scored([]), H).empty


def test_everything_fatigued_gives_an_empty_feed():
    feed = fh.rank_user_feed(pool([(1, 1, 1.0, True, False, 3.0), (2, 1, 1.0, False, False, 0.0)]))
    assert feed.empty and "rank" in feed.columns


# --- random pools ------------------------------------------------------------------------------


def naive_feed(rescored: pd.DataFrame, h: FeedHeuristics) -> list[int]:
    """The selection rules written out directly: scan every remaining row, best first, each step."""
    remaining = rescored.sort_values(["final_score", "tweet_id"], ascending=[False, True])
    remaining = list(zip(remaining["tweet_id"], remaining["is_in_network"]))
    feed: list[int] = []
    rows, counts, run = 0, {True: 0, False: 0}, 0
    while len(feed) < h.max_rows:
        if rows == h.page_size:
            rows, counts = 0, {True: 0, False: 0}
        cap = {True: h.in_network_cap, False: h.out_of_network_cap}
        allowed = [
            c
            for c in remaining
            if counts[c[1]] < cap[c[1]]
            and (c[1] or run < h.max_out_of_network_in_a_row or not any(r[1] for r in remaining))
        ]
        if not allowed:
            if rows == 0:
                break
            rows, counts = 0, {True: 0, False: 0}
            continue
        tweet, in_network = allowed[0]
        remaining.remove(allowed[0])
        feed.append(tweet)
        rows, run = rows + 1, 0 if in_network else run + 1
        counts[in_network] += 1
    return feed


def random_pool(seed: int, n: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    fatigue = np.where(rng.random(n) < 0.15, rng.uniform(-5.0, 200.0, n), np.nan)
    return pd.DataFrame(
        {
            "tweet_id": rng.permutation(np.arange(10_000, 10_000 + 3 * n, 3))[:n],
            "author_id": rng.integers(0, 60, n),
            "heavy_score": np.round(rng.normal(0.5, 1.0, n), 1),  # rounded: plenty of ties
            "is_in_network": rng.random(n) < 0.4,
            "is_reply": rng.random(n) < 0.3,
            "fatigue_days_since": fatigue,
        }
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "h",
    [
        FeedHeuristics(),
        FeedHeuristics(
            max_rows=120, page_size=20, in_network_cap=8, out_of_network_cap=9, max_out_of_network_in_a_row=1
        ),
        FeedHeuristics(
            max_rows=500,
            page_size=50,
            in_network_cap=50,
            out_of_network_cap=10,
            max_out_of_network_in_a_row=3,
            author_diversity_decay=0.0,
        ),
    ],
    ids=["defaults", "tight", "loose"],
)
def test_random_pool_invariants(seed, h):
    candidates = random_pool(seed)
    rescored = fh.rescore(candidates, h)
    feed = fh.rank_user_feed(candidates, h)

    days = candidates["fatigue_days_since"]
    dropped = set(candidates.loc[days.notna() & (days < h.fatigue_drop_days), "tweet_id"])
    assert set(rescored["tweet_id"]) == set(candidates["tweet_id"]) - dropped
    # Every multiplier is a penalty (<= 1) applied sign-aware: the score only goes down, keeps its sign.
    heavy = rescored["heavy_score"].to_numpy()
    final = rescored["final_score"].to_numpy()
    assert (final <= heavy + 1e-12).all()
    assert (np.sign(final) == np.sign(heavy)).all()
    assert (
        (rescored["diversity_multiplier"] >= h.author_diversity_floor) & (rescored["diversity_multiplier"] <= 1.0)
    ).all()

    assert_feed_invariants(feed, rescored, h)
    assert feed["tweet_id"].tolist() == naive_feed(rescored, h)
    assert len(feed) > 0
    pd.testing.assert_frame_equal(feed, fh.rank_user_feed(candidates.iloc[::-1], h))
