"""The synthetic world generator (jobs.synthetic): contract conformance, determinism and the
statistical shape of the world. Everything is checked with plain pyarrow/numpy against the files
on disk and core.contract — never with the generator's own helpers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from core.contract import (
    EARLIEST_VALID_TIME,
    ENGAGEMENT_ACTIONS,
    RAW_TABLES,
    arrow_schema,
)
from jobs.synthetic import GenerationSummary, WorldConfig, generate_world

N_USERS = 1500
SEED = 7
END = datetime(2026, 11, 1, tzinfo=UTC)


def _us(dt: datetime) -> int:
    return int((dt - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def read(root: Path, name: str) -> pa.Table:
    parts = sorted((root / "raw" / name).glob("*.parquet"))
    assert parts, f"no parquet parts for {name}"
    return pa.concat_tables([pq.read_table(p) for p in parts])


def read_truth(root: Path, name: str) -> pa.Table:
    p = root / "truth" / name
    if p.is_dir():
        return pa.concat_tables([pq.read_table(f) for f in sorted(p.glob("*.parquet"))])
    return pq.read_table(root / "truth" / f"{name}.parquet")


def np_ts(col) -> np.ndarray:
    """Timestamp column -> int64 microseconds (nulls -> min int)."""
    arr = pc.cast(col, pa.int64()).combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return np.asarray(arr.fill_null(np.iinfo(np.int64).min))


def np_col(t: pa.Table, name: str) -> np.ndarray:
    return t.column(name).to_numpy()


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, GenerationSummary]:
    root = tmp_path_factory.mktemp("world")
    summary = generate_world(WorldConfig(n_users=N_USERS, seed=SEED), out_dir=root)
    return root, summary


@pytest.fixture(scope="module")
def tables(world) -> dict[str, pa.Table]:
    root, _ = world
    return {t.name: read(root, t.name) for t in RAW_TABLES}


# --- API and determinism --------------------------------------------------------------------


def test_config_defaults_are_fixed_and_frozen():
    cfg = WorldConfig()
    assert cfg.end_time == END
    assert cfg.window_days == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_users = 5  # type: ignore[misc]
    with pytest.raises(ValueError):
        WorldConfig(end_time=datetime(2026, 11, 1))  # naive datetimes are refused


def test_summary_matches_files(world, tables):
    root, summary = world
    assert set(summary.rows_per_table) == {t.name for t in RAW_TABLES}
    for name, table in tables.items():
        assert summary.rows_per_table[name] == table.num_rows, name
        assert table.num_rows > 0, name
    assert summary.rows_per_table["users"] == N_USERS
    assert summary.seconds > 0
    assert (root / "raw" / "users" / "part-00000.parquet").is_file()


def test_same_seed_identical_bytes_and_different_seed_differs(tmp_path):
    # Small blocks and files so that multi-part output and block boundaries are exercised too.
    cfg = WorldConfig(n_users=400, seed=3, users_per_block=150, max_rows_per_file=4000, row_group_size=1000)
    a = file_hashes(_gen(cfg, tmp_path / "a"))
    b = file_hashes(_gen(cfg, tmp_path / "b"))
    assert a == b
    assert any(k.startswith("raw/engagements/part-00001") for k in a)
    c = file_hashes(_gen(dataclasses.replace(cfg, seed=4), tmp_path / "c"))
    assert set(c) >= {k for k in a if k.startswith("raw/users")}
    for table in ("users", "follows", "tweets", "engagements"):
        key = f"raw/{table}/part-00000.parquet"
        assert a[key] != c[key], table
    # Regenerating into the same directory replaces the previous world.
    again = file_hashes(_gen(cfg, tmp_path / "c"))
    assert again == a


def _gen(cfg: WorldConfig, out: Path) -> Path:
    generate_world(cfg, out_dir=out)
    return out


# --- the raw data contract ------------------------------------------------------------------


def test_every_part_has_the_contract_schema(world):
    root, _ = world
    for t in RAW_TABLES:
        expected = arrow_schema(t)
        parts = sorted((root / "raw" / t.name).glob("*.parquet"))
        assert parts and parts[0].name == "part-00000.parquet"
        for p in parts:
            schema = pq.read_schema(p)
            assert schema.equals(expected), f"{p}: {schema} != {expected}"
            assert [f.nullable for f in schema] == [f.nullable for f in expected]


def test_non_nullable_columns_have_no_nulls(tables):
    for t in RAW_TABLES:
        for c in t.columns:
            if not c.nullable:
                assert tables[t.name].column(c.name).null_count == 0, f"{t.name}.{c.name}"


def test_keys_are_unique(tables):
    for t in RAW_TABLES:
        table = tables[t.name]
        cols = []
        for k in t.key:
            col = table.column(k)
            if pa.types.is_timestamp(col.type):
                col = pc.cast(col, pa.int64())
            cols.append(col)
        groups = pa.table(dict(zip(t.key, cols))).group_by(list(t.key)).aggregate([])
        assert groups.num_rows == table.num_rows, f"duplicate keys in {t.name}"


def test_references_resolve(tables):
    for t in RAW_TABLES:
        for ref in t.references:
            assert len(ref.columns) == 1
            values = tables[t.name].column(ref.columns[0]).drop_null().to_numpy()
            target = tables[ref.target_table].column(ref.target_columns[0]).to_numpy()
            missing = ~np.isin(values, target)
            assert not missing.any(), f"{t.name}.{ref.columns[0]}: {missing.sum()} dangling"


def test_distinct_columns_no_self_follows_or_blocks(tables):
    for t in RAW_TABLES:
        for a, b in t.distinct_columns:
            x, y = np_col(tables[t.name], a), np_col(tables[t.name], b)
            assert (x != y).all(), f"{t.name}: {a} == {b}"


def test_allowed_values(tables):
    for t in RAW_TABLES:
        for c in t.columns:
            if c.allowed_values:
                values = set(tables[t.name].column(c.name).unique().to_pylist())
                assert values <= set(c.allowed_values), f"{t.name}.{c.name}: {values}"
            if c.min_value is not None:
                col = tables[t.name].column(c.name).drop_null().to_numpy()
                assert (col >= c.min_value).all(), f"{t.name}.{c.name}"
    # Every engagement action and both social actions actually occur.
    actions = set(tables["engagements"].column("action").unique().to_pylist())
    assert actions == set(ENGAGEMENT_ACTIONS)
    assert set(tables["social_actions"].column("action").unique().to_pylist()) == {"block", "mute"}


def test_timestamps_valid_and_ordered(tables):
    lo, end = _us(EARLIEST_VALID_TIME), _us(END)
    for t in RAW_TABLES:
        for c in t.columns:
            if c.dtype == "timestamp":
                v = tables[t.name].column(c.name).drop_null()
                v = np.asarray(pc.cast(v, pa.int64()).to_numpy())
                assert (v > lo).all() and (v <= end).all(), f"{t.name}.{c.name}"
        for later, earlier in t.ordered_timestamps:
            a, b = np_ts(tables[t.name].column(later)), np_ts(tables[t.name].column(earlier))
            has = a != np.iinfo(np.int64).min
            assert (a[has] >= b[has]).all(), f"{t.name}: {later} < {earlier}"
    tw = tables["tweets"]
    deleted = tw.column("deleted_at").drop_null()
    assert 0 < len(deleted) < 0.05 * tw.num_rows
    # Tweets live in the logging window plus its one-day lead-in; engagements in the window.
    created = np_ts(tw.column("created_at"))
    assert created.min() >= _us(END - timedelta(days=8))
    eng_t = np_ts(tables["engagements"].column("created_at"))
    assert eng_t.min() >= _us(END - timedelta(days=7))


def test_engagements_after_their_tweet_and_dwell(tables):
    tw, e = tables["tweets"], tables["engagements"]
    ids, created = np_col(tw, "tweet_id"), np_ts(tw.column("created_at"))
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], np_col(e, "tweet_id"))
    tweet_time = created[order][pos]
    assert (np_ts(e.column("created_at")) >= tweet_time).all()
    action = np.asarray(e.column("action").to_numpy(zero_copy_only=False))
    has_dwell = ~np.asarray(e.column("dwell_ms").is_null())
    assert has_dwell[action == "impression"].mean() > 0.95
    assert has_dwell[action == "click"].all()
    assert not has_dwell[(action != "impression") & (action != "click")].any()


def test_conversations_point_at_earlier_tweets(tables):
    tw = tables["tweets"]
    ids, created = np_col(tw, "tweet_id"), np_ts(tw.column("created_at"))
    index = {int(i): int(c) for i, c in zip(ids, created)}
    counts = {}
    for col in ("in_reply_to_tweet_id", "quoted_tweet_id", "retweet_of_tweet_id"):
        refs = tw.column(col).fill_null(-1).to_numpy()
        mask = ~np.asarray(tw.column(col).is_null())
        counts[col] = int(mask.sum())
        for i in np.flatnonzero(mask):
            assert index[int(refs[i])] <= created[i]
    assert all(c > 0 for c in counts.values()), counts
    # At most one of reply / quote / retweet per tweet.
    n_set = sum((~np.asarray(tw.column(c).is_null())).astype(int) for c in counts)
    assert n_set.max() == 1
    # Retweets point at non-retweets; some replies answer replies (conversations).
    rt = tw.column("retweet_of_tweet_id").drop_null().to_numpy()
    rt_of = dict(zip(ids.tolist(), tw.column("retweet_of_tweet_id").to_pylist()))
    assert all(rt_of[int(x)] is None for x in rt)
    reply_to = dict(zip(ids.tolist(), tw.column("in_reply_to_tweet_id").to_pylist()))
    replies = [v for v in reply_to.values() if v is not None]
    assert sum(reply_to[v] is not None for v in replies) > 0


def test_users_and_tweets_attributes(tables):
    u, tw = tables["users"], tables["tweets"]
    verified = np_col(u, "is_verified")
    assert 0 < verified.mean() < 0.1
    assert 0 < np_col(u, "allow_nsfw").mean() < 0.5
    langs = u.column("lang").value_counts().to_pylist()
    counts = {d["values"]: d["counts"] for d in langs}
    assert counts["en"] == max(counts.values()) and None in counts and len(counts) > 3
    assert 0 < np_col(tw, "is_nsfw").mean() < 0.1
    media, video = np_col(tw, "has_media"), np_col(tw, "has_video")
    assert (media | ~video).all() and video.any()
    assert 0 < tw.column("text").null_count < tw.num_rows
    assert len(set(u.column("handle").to_pylist())) == u.num_rows
    # Verified accounts are the popular ones.
    f = tables["follows"]
    followers = np.bincount(np_col(f, "followee_id"), minlength=N_USERS + 1)[np_col(u, "user_id")]
    assert followers[verified].mean() > 3 * followers[~verified].mean()


def test_lists_and_social_actions(tables):
    lists, members = tables["lists"], tables["list_members"]
    private = np_col(lists, "is_private")
    assert private.any() and not private.all()
    # A member is added after the list exists.
    created = dict(zip(np_col(lists, "list_id").tolist(), np_ts(lists.column("created_at"))))
    added = np_ts(members.column("added_at"))
    assert all(a >= created[int(list_id)] for list_id, a in zip(np_col(members, "list_id"), added))
    sa = tables["social_actions"]
    assert sa.num_rows > 0


# --- the shape of the network ----------------------------------------------------------------


def test_follower_counts_are_heavy_tailed(tables):
    f = tables["follows"]
    followers = np.bincount(np_col(f, "followee_id"), minlength=N_USERS + 1)[1:]
    top = np.sort(followers)[::-1]
    k = max(1, N_USERS // 100)
    # The top 1% hold > 8x their population share of follows (about 9% at 1.5K users, 17% at 100K).
    assert top[:k].sum() / top.sum() > 8 * (k / N_USERS)
    assert top[0] > 20 * max(np.median(followers), 1)
    assert top[0] > 0.05 * N_USERS  # celebrities
    out = np.bincount(np_col(f, "follower_id"), minlength=N_USERS + 1)[1:]
    assert out.max() > 5 * np.median(out)
    # Some reciprocity.
    pairs = set(zip(np_col(f, "follower_id").tolist(), np_col(f, "followee_id").tolist()))
    mutual = sum((b, a) in pairs for a, b in pairs) / len(pairs)
    assert 0.05 < mutual < 0.6


def test_posting_activity_is_heavy_tailed(tables):
    posts = np.bincount(np_col(tables["tweets"], "author_id"), minlength=N_USERS + 1)[1:]
    top = np.sort(posts)[::-1]
    k = max(1, N_USERS // 100)
    assert top[:k].sum() / top.sum() > 5 * (k / N_USERS)
    assert top[0] > 20 * max(np.median(posts), 1)


def test_tweets_follow_a_diurnal_rhythm(tables):
    created = np_ts(tables["tweets"].column("created_at"))
    hours = (created // 3_600_000_000) % 24
    per_hour = np.bincount(hours, minlength=24)
    assert per_hour.max() > 1.5 * per_hour.min()


def test_follows_concentrate_in_home_communities(world, tables):
    root, _ = world
    tu = read_truth(root, "users")
    home = dict(zip(np_col(tu, "user_id").tolist(), np_col(tu, "home_community").tolist()))
    f = tables["follows"]
    h_er = np.array([home[x] for x in np_col(f, "follower_id").tolist()])
    h_ee = np.array([home[x] for x in np_col(f, "followee_id").tolist()])
    same = (h_er == h_ee).mean()
    share = np.bincount(np_col(tu, "home_community")) / tu.num_rows
    k = len(share)
    by_chance = float((share**2).sum())  # same home by chance, given the community sizes
    assert same > 3.0 / k, (same, k)
    assert same > 2.5 * by_chance, (same, by_chance)


# --- impressions and the engagement model -----------------------------------------------------


def _impressions_with_truth(root: Path, tables):
    """Per impression: viewer, tweet, time, and the TRUE interest match computed here from the
    truth interest vectors and tweet topics."""
    e = tables["engagements"]
    action = np.asarray(e.column("action").to_numpy(zero_copy_only=False))
    imp = action == "impression"
    user, tweet = np_col(e, "user_id")[imp], np_col(e, "tweet_id")[imp]
    tu, tt = read_truth(root, "users"), read_truth(root, "tweets")
    uid = np_col(tu, "user_id")
    interest = np.asarray(tu.column("interest").combine_chunks().flatten()).reshape(len(uid), -1)
    tid = np_col(tt, "tweet_id")
    order = np.argsort(tid)
    topic = np_col(tt, "topic")[order][np.searchsorted(tid[order], tweet)]
    u_row = np.searchsorted(uid, user)
    match = interest[u_row, topic]
    return e, action, user, tweet, match


def test_like_rate_rises_with_true_interest(world, tables):
    root, _ = world
    e, action, user, tweet, match = _impressions_with_truth(root, tables)
    liked = set(zip(np_col(e, "user_id")[action == "like"].tolist(), np_col(e, "tweet_id")[action == "like"].tolist()))
    was_liked = np.array([(a, b) in liked for a, b in zip(user.tolist(), tweet.tolist())])
    high, low = match >= 0.5, match == 0
    assert high.sum() > 1000 and low.sum() > 1000
    assert was_liked[high].mean() > 3 * was_liked[low].mean()
    ni = set(
        zip(
            np_col(e, "user_id")[action == "not_interested"].tolist(),
            np_col(e, "tweet_id")[action == "not_interested"].tolist(),
        )
    )
    was_ni = np.array([(a, b) in ni for a, b in zip(user.tolist(), tweet.tolist())])
    assert was_ni[low].mean() > 2 * was_ni[high].mean()


def test_negative_feedback_and_report_exist(tables):
    action = tables["engagements"].column("action").value_counts().to_pylist()
    counts = {d["values"]: d["counts"] for d in action}
    assert counts["not_interested"] > 0 and counts["report"] > 0
    n_imp = counts["impression"]
    assert 0.01 < counts["like"] / n_imp < 0.15
    assert counts["report"] < counts["not_interested"] < counts["like"]


def test_impressions_are_mostly_in_network(tables):
    """Per the logging policy most impressions show tweets of accounts the viewer follows."""
    e, f, tw = tables["engagements"], tables["follows"], tables["tweets"]
    action = np.asarray(e.column("action").to_numpy(zero_copy_only=False))
    imp = action == "impression"
    user, tweet = np_col(e, "user_id")[imp], np_col(e, "tweet_id")[imp]
    t = np_ts(e.column("created_at"))[imp]
    assert len(user) > 30 * N_USERS  # the impression budget is not empty
    ids = np_col(tw, "tweet_id")
    order = np.argsort(ids)
    author = np_col(tw, "author_id")[order][np.searchsorted(ids[order], tweet)]
    assert (author != user).all()  # never your own tweets
    n = N_USERS + 1
    fkey = np_col(f, "follower_id") * n + np_col(f, "followee_id")
    forder = np.argsort(fkey)
    fk, ft = fkey[forder], np_ts(f.column("created_at"))[forder]
    q = user * n + author
    pos = np.minimum(np.searchsorted(fk, q), len(fk) - 1)
    in_net = (fk[pos] == q) & (ft[pos] <= t)
    assert in_net.mean() > 0.5, in_net.mean()
    assert in_net.mean() < 0.95  # and there is exploration


def test_engagements_follow_an_impression(tables):
    e = tables["engagements"]
    action = np.asarray(e.column("action").to_numpy(zero_copy_only=False))
    user, tweet, t = np_col(e, "user_id"), np_col(e, "tweet_id"), np_ts(e.column("created_at"))
    imp = action == "impression"
    first_seen = {}
    for a, b, c in zip(user[imp].tolist(), tweet[imp].tolist(), t[imp].tolist()):
        first_seen[(a, b)] = min(c, first_seen.get((a, b), c))
    other = np.flatnonzero(~imp)
    preceded = [(user[i], tweet[i]) in first_seen and first_seen[(user[i], tweet[i])] <= t[i] for i in other.tolist()]
    assert np.mean(preceded) > 0.97
    video = np_col(tables["tweets"], "tweet_id")[np_col(tables["tweets"], "has_video")]
    assert np.isin(tweet[action == "video_playback50"], video).all()


# --- ground truth -----------------------------------------------------------------------------


def test_truth_files_exist_and_are_separate(world, tables):
    root, summary = world
    truth = root / "truth"
    meta = json.loads((truth / "metadata.json").read_text())
    assert meta["config"]["n_users"] == N_USERS and meta["config"]["seed"] == SEED
    assert "in-network" in " ".join(meta["logging_policy"]["description"])
    assert set(meta["engagement_model"]["coefficients"]) == set(ENGAGEMENT_ACTIONS) - {"impression"}
    assert (truth / "users.parquet").is_file() and (truth / "communities.parquet").is_file()
    tu = read_truth(root, "users")
    assert tu.num_rows == N_USERS
    interest = np.asarray(tu.column("interest").combine_chunks().flatten()).reshape(N_USERS, -1)
    assert np.allclose(interest.sum(axis=1), 1.0, atol=1e-5)
    assert ((interest > 0).sum(axis=1) <= 3).all()
    assert read_truth(root, "tweets").num_rows == tables["tweets"].num_rows
    ti = read_truth(root, "impressions")
    n_imp = int(pc.sum(pc.equal(tables["engagements"].column("action"), "impression")).as_py())
    assert ti.num_rows == n_imp == summary.truth_rows["impressions"]
    for a in ENGAGEMENT_ACTIONS[1:]:
        p = np_col(ti, f"p_{a}")
        assert ((p >= 0) & (p <= 1)).all(), a
    # The raw side knows nothing about the truth.
    raw = root / "raw"
    assert {p.name for p in raw.iterdir()} == {t.name for t in RAW_TABLES}
    for p in raw.rglob("*.parquet"):
        meta = pq.read_metadata(p).metadata or {}
        assert not any(b"truth" in k or b"truth" in v for k, v in meta.items())


def test_true_probabilities_match_observed_rates(world, tables):
    """The logged actions are draws from the truth probabilities: observed counts agree."""
    root, _ = world
    ti = read_truth(root, "impressions")
    counts = {d["values"]: d["counts"] for d in tables["engagements"].column("action").value_counts().to_pylist()}
    for a in ("click", "like", "retweet", "not_interested"):
        expected = float(np_col(ti, f"p_{a}").astype(np.float64).sum())
        observed = counts[a]
        if a == "like":  # a few likes come with no logged impression, by policy
            observed = observed / 1.01
        # Actions that would land after the end of the world are not logged: allow a little.
        tolerance = 5 * np.sqrt(expected) + 0.03 * expected
        assert abs(observed - expected) < tolerance, (a, observed, expected)
    tw = tables["tweets"]
    video = set(np_col(tw, "tweet_id")[np_col(tw, "has_video")].tolist())
    no_video = ~np.isin(np_col(ti, "tweet_id"), list(video))
    assert (np_col(ti, "p_video_playback50")[no_video] == 0).all()


def test_unwanted_nsfw_draws_negative_feedback(tables):
    """NSFW tweets shown to viewers who did not opt in are marked not_interested far more."""
    e, u, tw = tables["engagements"], tables["users"], tables["tweets"]
    action = np.asarray(e.column("action").to_numpy(zero_copy_only=False))
    user, tweet = np_col(e, "user_id"), np_col(e, "tweet_id")
    nsfw = set(np_col(tw, "tweet_id")[np_col(tw, "is_nsfw")].tolist())
    opted = set(np_col(u, "user_id")[np_col(u, "allow_nsfw")].tolist())
    imp = action == "impression"
    unwanted = np.array([b in nsfw and a not in opted for a, b in zip(user[imp].tolist(), tweet[imp].tolist())])
    is_ni = action == "not_interested"
    ni = set(zip(user[is_ni].tolist(), tweet[is_ni].tolist()))
    was_ni = np.array([(a, b) in ni for a, b in zip(user[imp].tolist(), tweet[imp].tolist())])
    assert unwanted.sum() > 50
    assert was_ni[unwanted].mean() > 5 * was_ni[~unwanted].mean()


def test_list_members_mostly_from_the_list_community(world, tables):
    root, _ = world
    tl, tu = read_truth(root, "lists"), read_truth(root, "users")
    community = dict(zip(np_col(tl, "list_id").tolist(), np_col(tl, "community").tolist()))
    interests = dict(zip(np_col(tu, "user_id").tolist(), tu.column("communities").to_pylist()))
    m = tables["list_members"]
    inside = [
        community[list_id] in interests[u]
        for list_id, u in zip(np_col(m, "list_id").tolist(), np_col(m, "user_id").tolist())
    ]
    assert np.mean(inside) > 0.6
