"""The training set on a hand-made log: labels, point-in-time features worked out by hand, the
time split, and the leakage test (events after a moment change no feature of an earlier impression)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from raw_world import as_utc, at

from core.contract import RAW_TABLES_BY_NAME
from core.heads import HEADS
from features.registry import FEATURES
from jobs.follow_graph import mutual_follows
from jobs.ingest import spark_schema
from jobs.training_set import (
    EXAMPLE_KEYS,
    Representations,
    TrainingWindow,
    snapshot_days,
    training_examples,
)

WINDOW = TrainingWindow(start=at(18), end=at(48), validation_start=at(27), test_start=at(40))
SC_HALF_LIFE_HOURS = 8.0  # jobs.simclusters' default, the decay of tweet embeddings
USERS = [1, 2, 3, 4]
FOLLOWS = [(1, 2, -10), (2, 1, -9), (1, 3, 30)]
# tweet, author, created (hours), deleted (hours or None)
TWEETS = [(10, 2, 20, None), (11, 3, 26, None), (12, 2, 40, None), (13, 4, -5, None)]
ENGAGEMENTS = [
    (3, 10, "like", 20.5, None),
    (4, 10, "impression", 20.7, 300),
    (4, 10, "like", 20.8, None),
    (1, 10, "impression", 21, 900),
    (1, 10, "like", 21.1, None),
    (1, 11, "impression", 28, 500),
    (1, 11, "click", 28.1, 12_000),
    (3, 13, "like", 10, None),
    (1, 13, "like", 2, None),
    (1, 13, "impression", 30, 100),
    (1, 12, "impression", 44, 100),
]
# Events after CUT: none of them may change a feature of an impression before CUT.
CUT = at(29.5)
LATER_ENGAGEMENTS = [
    (3, 12, "like", 43.5, None),
    (4, 12, "like", 43.6, None),
    (1, 10, "like", 30.5, None),
    (4, 11, "retweet", 31, None),
    (1, 11, "like", 29.9, None),
    (2, 13, "impression", 33, 50),
]
LATER_FOLLOWS = [(1, 4, 31), (3, 2, 32)]
LATER_TWEETS = [(14, 2, 35, None)]
LATER_SOCIAL = [(1, 3, "mute", 33)]


def _rows(*, later: bool) -> dict[str, list[dict]]:
    """The hand-made log as raw rows per table (with the events after CUT when `later`)."""
    follows = FOLLOWS + (LATER_FOLLOWS if later else [])
    tweets = [t if not (later and t[0] == 10) else (10, 2, 20, 32) for t in TWEETS] + (LATER_TWEETS if later else [])
    engagements = ENGAGEMENTS + (LATER_ENGAGEMENTS if later else [])
    social = LATER_SOCIAL if later else []
    return dict(
        users=[
            dict(user_id=u, handle=f"u{u}", created_at=at(-1000), is_verified=u == 2, allow_nsfw=False, lang=None)
            for u in USERS
        ],
        follows=[dict(follower_id=a, followee_id=b, created_at=at(h)) for a, b, h in follows],
        tweets=[
            dict(
                tweet_id=t,
                author_id=a,
                created_at=at(h),
                text="x" * t,
                in_reply_to_tweet_id=None,
                quoted_tweet_id=None,
                retweet_of_tweet_id=None,
                has_media=t == 12,
                has_video=False,
                is_nsfw=False,
                lang="en",
                deleted_at=None if d is None else at(d),
            )
            for t, a, h, d in tweets
        ],
        engagements=[
            dict(user_id=u, tweet_id=t, action=a, created_at=at(h), dwell_ms=d) for u, t, a, h, d in engagements
        ],
        social_actions=[dict(user_id=u, target_user_id=t, action=a, created_at=at(h)) for u, t, a, h in social],
    )


def _frames(spark, *, later: bool):
    frames = {
        table: spark.createDataFrame(rows, schema=spark_schema(RAW_TABLES_BY_NAME[table]))
        for table, rows in _rows(later=later).items()
    }
    frames["mutual_follows"] = mutual_follows(frames["follows"])
    return frames


def _representations(spark, as_of=WINDOW.start) -> Representations:
    return Representations(
        as_of=as_of,
        realgraph=spark.createDataFrame(
            [(1, 2, 0.7, 1), (1, 4, 0.2, 2)], "user_id bigint, author_id bigint, score double, rank int"
        ),
        simclusters_interested_in=spark.createDataFrame(
            [(1, 5, 1.0), (3, 5, 0.5), (4, 5, 0.8)], "user_id bigint, cluster_id int, score double"
        ),
        twhin_user_embeddings=spark.createDataFrame([(1, [1.0, 0.0])], "user_id bigint, embedding array<float>"),
        twhin_tweet_embeddings=spark.createDataFrame(
            [(10, [1.0, 1.0]), (12, [0.0, 2.0])], "tweet_id bigint, embedding array<float>"
        ),
    )


def _examples(spark, *, later: bool) -> dict[tuple, dict]:
    df = _build(spark, _representations(spark), later=later)
    assert df.columns == [*EXAMPLE_KEYS, *HEADS, *[feature.qualified_name for feature in FEATURES]]
    return {(r["user_id"], r["tweet_id"], as_utc(r["impression_time"])): r.asDict() for r in df.collect()}


@pytest.fixture(scope="module")
def examples(spark):
    return _examples(spark, later=False)


def test_one_example_per_impression_in_the_window_with_its_split_and_snapshot(examples):
    # The like at hour 2 and the other actions are no impressions; every impression is in the window.
    assert {key: (row["split"], as_utc(row["snapshot_time"])) for key, row in examples.items()} == {
        (4, 10, at(20.7)): ("train", at(0)),
        (1, 10, at(21)): ("train", at(0)),
        (1, 11, at(28)): ("validation", at(24)),
        (1, 13, at(30)): ("validation", at(24)),
        (1, 12, at(44)): ("test", at(24)),
    }
    assert examples[(1, 10, at(21))]["like"] == 1
    assert examples[(1, 11, at(28))]["good_click"] == 1
    assert sum(examples[(1, 12, at(44))][label] for label in HEADS) == 0


def test_features_are_as_of_the_impression(examples):
    first = examples[(1, 10, at(21))]
    # Tweet counts over [impression - window, impression): two likes and one impression in the hour before.
    assert first["tweet__likes_1h"] == 2.0
    assert first["tweet__impressions_1h"] == 1.0
    assert first["tweet__like_rate_24h"] == 2.0
    assert first["tweet__age_hours"] == pytest.approx(1.0)
    assert first["tweet__text_length"] == 10
    assert first["tweet__author_is_verified"] is True
    assert first["tweet__author_follower_count"] == 1.0  # user 1 (follows before midnight 0)
    # As of the snapshot at hour 0: user 1 follows 2 (its follow of 3 is at hour 30).
    assert first["user__followee_count"] == 1.0
    assert first["user_author__follows_author"] is True
    assert first["user_author__realgraph_score"] == 0.7
    assert first["user_tweet__twhin_cosine"] == pytest.approx(1 / math.sqrt(2))
    assert first["user_tweet__has_twhin_embedding"] is True
    # Tweet 10 has no engagement before midnight 0: no SimClusters embedding yet.
    assert first["user_tweet__simclusters_dot"] == 0.0
    # Pool features are not known for impressions: defaults.
    assert first["user_tweet__pool_rank"] == -1 and first["user_tweet__from_in_network"] is False

    old = examples[(1, 13, at(30))]
    # Snapshot at hour 24: the follow of 3 (hour 30) is not in it yet; user 1 liked author 4 at hour 2.
    assert old["user__followee_count"] == 1.0
    assert old["user_author__likes_7d"] == 1.0
    assert old["user_author__realgraph_score"] == 0.2
    # SimClusters embedding of tweet 13 at hour 24: the likes of user 3 (hour 10, InterestedIn 0.5) and
    # user 1 (hour 2, InterestedIn 1.0), decayed to hour 24; user 1's InterestedIn is 1.0.
    expected = 1.0 * (0.5 * 0.5 ** (14 / SC_HALF_LIFE_HOURS) + 1.0 * 0.5 ** (22 / SC_HALF_LIFE_HOURS))
    assert old["user_tweet__simclusters_dot"] == pytest.approx(expected)
    assert old["tweet__age_hours"] == pytest.approx(35.0)
    assert old["user__likes_given_7d"] == 2.0  # hours 2 and 21.1, both before hour 24


def test_no_feature_of_an_earlier_impression_sees_later_events(spark, examples):
    later = _examples(spark, later=True)
    feature_names = [feature.qualified_name for feature in FEATURES]
    earlier = [key for key in examples if key[2] < CUT]
    assert len(earlier) == 3
    for key in earlier:
        assert {n: later[key][n] for n in feature_names} == {n: examples[key][n] for n in feature_names}, key
    # The added events do reach the impressions after them (so the comparison above can fail).
    assert examples[(1, 12, at(44))]["tweet__likes_1h"] == 0.0
    assert later[(1, 12, at(44))]["tweet__likes_1h"] == 2.0
    # Labels look forward by design: the like at 29.9 labels the impression at 28.
    assert later[(1, 11, at(28))]["like"] == 1 and examples[(1, 11, at(28))]["like"] == 0


def _build(spark, representations, *, later: bool = False):
    f = _frames(spark, later=later)
    return training_examples(
        f["users"],
        f["follows"],
        f["mutual_follows"],
        f["tweets"],
        f["engagements"],
        f["social_actions"],
        representations,
        window=WINDOW,
    )


def test_representations_built_after_the_impressions_they_serve_are_refused(spark):
    with pytest.raises(ValueError, match="later than the impressions of 2026-10-01"):
        _build(spark, _representations(spark, as_of=WINDOW.start + timedelta(hours=1)))
    # Per day: the second day's build may be as late as its midnight, not later.
    with pytest.raises(ValueError, match="later than the impressions of 2026-10-02"):
        _build(spark, {at(0): _representations(spark), at(24): _representations(spark, as_of=at(25))})
    with pytest.raises(ValueError, match="no representations for the snapshot days"):
        _build(spark, {at(0): _representations(spark)})


def test_each_snapshot_day_reads_its_own_representations(spark):
    second_day = _representations(spark, as_of=at(24))
    second_day = Representations(
        as_of=second_day.as_of,
        realgraph=spark.createDataFrame(
            [(1, 2, 0.1, 1), (1, 4, 0.9, 2)], "user_id bigint, author_id bigint, score double, rank int"
        ),
        simclusters_interested_in=second_day.simclusters_interested_in,
        twhin_user_embeddings=second_day.twhin_user_embeddings,
        twhin_tweet_embeddings=spark.createDataFrame([(13, [3.0, 0.0])], "tweet_id bigint, embedding array<float>"),
    )
    rows = {
        (r["tweet_id"], as_utc(r["impression_time"])): r
        for r in _build(spark, {at(0): _representations(spark), at(24): second_day}).collect()
    }
    assert rows[(10, at(21))]["user_author__realgraph_score"] == 0.7  # day 1: the first build
    assert rows[(13, at(30))]["user_author__realgraph_score"] == 0.9  # day 2: its own build
    assert rows[(13, at(30))]["user_tweet__twhin_cosine"] == pytest.approx(1.0)
    assert rows[(12, at(44))]["user_tweet__has_twhin_embedding"] is False  # not in the second build


def test_window_ending_at_leaves_a_full_label_window_and_checks_its_order():
    window = TrainingWindow.ending_at(at(200), days=6, validation_days=1, test_days=2)
    assert (window.start, window.validation_start, window.test_start, window.end) == (
        at(200 - 24 - 144),
        at(200 - 24 - 72),
        at(200 - 24 - 48),
        at(176),
    )
    with pytest.raises(ValueError):
        TrainingWindow(start=at(10), end=at(20), validation_start=at(15), test_start=at(12))
    with pytest.raises(ValueError):
        TrainingWindow(start=at(10).replace(tzinfo=None), end=at(20), validation_start=at(12), test_start=at(15))
    assert snapshot_days(at(18), at(48)) == [at(0), at(24)]
    assert snapshot_days(at(24), at(48.5)) == [at(24), at(48)]


def test_a_build_records_each_representation_snapshot_and_the_table_in_the_dagster_instance(settings, spark, tmp_path):
    """The hand-made log through `build_training_set`: training_examples refuses to run before the
    snapshots of its cuts exist, naming them; the build materializes every snapshot asset once per cut
    (partitions of `representations_as_of`) and then the table, all recorded in a persistent
    instance; a second build reuses the snapshots (only the raw input is cut again)."""
    import dagster as dg
    from raw_world import write_world

    from orchestration.assets.representation_snapshots import REPRESENTATION_SNAPSHOT_ASSETS
    from orchestration.instance import local_instance
    from orchestration.materialize import materialize_assets
    from orchestration.run import run_assets
    from orchestration.training_set import build_training_set

    raw, warehouse = write_world(tmp_path / "raw", _rows(later=False)), tmp_path / "warehouse"
    run_settings = settings.model_copy(update={"raw_input": raw, "warehouse": warehouse, "as_of": at(72)})
    assert run_assets(run_settings, selection="group:bronze or key:mutual_follows", checks=False).success
    # WINDOW, as the window of a build at hour 72: cuts at its start (hour 18) and the next midnight.
    window = TrainingWindow.ending_at(at(72), days=30 / 24, validation_days=13 / 24, test_days=8 / 24)
    assert window == WINDOW
    partitions = ["20261001T180000Z", "20261002T000000Z"]
    instance = local_instance(tmp_path / "dagster_home")

    config = {"days": 30 / 24, "validation_days": 13 / 24, "test_days": 8 / 24}
    refused = materialize_assets(
        run_settings,
        dg.AssetSelection.assets("training_examples"),
        instance=instance,
        checks=False,
        asset_config={"training_examples": config},
    )
    assert not refused.success
    (failure,) = refused.failures
    assert all(key in failure.message for key in partitions) and "homefeed training-set" in failure.message

    summary = build_training_set(run_settings, spark, window=window, instance=instance)
    assert summary["rows"] == {"train": 2, "validation": 2, "test": 1}
    assert summary["representations_as_of"] == [at(18).isoformat(), at(24).isoformat()]
    assert sorted(instance.get_dynamic_partitions("representations_as_of")) == partitions

    def materialized(key: dg.AssetKey, partition: str | None = None) -> int:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=10
        )
        return len(records.records)

    snapshot_keys = [key for asset in REPRESENTATION_SNAPSHOT_ASSETS for key in asset.keys]
    assert {
        "as_of/raw_input",
        "as_of/engagements",
        "as_of/realgraph",
        "as_of/simclusters_interested_in",
        "as_of/twhin_user_embeddings",
        "as_of/twhin_tweet_embeddings",
    } <= {k.to_user_string() for k in snapshot_keys}
    assert {(key.to_user_string(), p): materialized(key, p) for key in snapshot_keys for p in partitions} == {
        (key.to_user_string(), p): 1 for key in snapshot_keys for p in partitions
    }
    assert materialized(dg.AssetKey("training_examples")) == 1  # the refused run recorded none

    assert build_training_set(run_settings, spark, window=window, instance=instance)["rows"] == summary["rows"]
    assert [materialized(dg.AssetKey(["as_of", "raw_input"]), p) for p in partitions] == [2, 2]
    assert [materialized(dg.AssetKey(["as_of", "realgraph"]), p) for p in partitions] == [1, 1]
    assert materialized(dg.AssetKey("training_examples")) == 2


@pytest.mark.slow  # about 6 minutes: a world through the training set (and the rankers); `make test-slow`
def test_training_set_command_on_a_generated_world(settings, spark, tmp_path, capsys):
    """`homefeed training-set` end to end: the representations come from the input cut at the window's
    start, and the table holds one row per in-window impression counted here from the raw Parquet."""
    import json

    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    from cli.main import main
    from jobs.synthetic import WorldConfig, generate_world
    from orchestration.run import run_assets
    from orchestration.training_set import representations_dir

    config = WorldConfig(n_users=80, seed=5)
    generate_world(config, out_dir=tmp_path / "world")
    raw, warehouse = tmp_path / "world" / "raw", tmp_path / "warehouse"
    built = run_assets(
        settings.model_copy(update={"raw_input": raw, "warehouse": warehouse, "as_of": config.end_time}),
        selection="group:bronze or key:mutual_follows",
    )
    assert built.success, built.failures

    code = main(
        [
            "training-set",
            "--input",
            str(raw),
            "--warehouse",
            str(warehouse),
            "--json",
            "--as-of",
            config.end_time.isoformat(),
            "--days",
            "2",
            "--validation-days",
            "0.5",
            "--test-days",
            "0.5",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out)
    window = TrainingWindow.ending_at(config.end_time, days=2, validation_days=0.5, test_days=0.5)
    assert summary["window"] == window.as_dict()
    # One representation build per snapshot day, each at the day's first impression time.
    build_times = [max(day, window.start) for day in snapshot_days(window.start, window.end)]
    assert summary["representations_as_of"] == [t.isoformat() for t in build_times] and len(build_times) == 2

    engagements = pq.read_table(raw / "engagements").to_pandas()
    tweets = pq.read_table(raw / "tweets", columns=["tweet_id", "author_id"]).to_pandas()
    shown = engagements[engagements.action == "impression"].merge(tweets, on="tweet_id")
    shown = shown[
        (shown.user_id != shown.author_id) & (shown.created_at >= window.start) & (shown.created_at < window.end)
    ].drop_duplicates(["user_id", "tweet_id", "created_at"])
    expected_rows = {
        "train": int((shown.created_at < window.validation_start).sum()),
        "validation": int(
            ((shown.created_at >= window.validation_start) & (shown.created_at < window.test_start)).sum()
        ),
        "test": int((shown.created_at >= window.test_start).sum()),
    }
    assert summary["rows"] == expected_rows and min(expected_rows.values()) > 0

    for built_at in build_times:
        cut_raw = representations_dir(warehouse.resolve(), built_at) / "raw"
        latest = pc.max(pq.read_table(cut_raw / "engagements").column("created_at")).as_py()
        assert built_at - timedelta(hours=2) < latest <= built_at
    history = DeltaTable(str(warehouse / "tables" / "training_examples")).history(1)[0]
    assert json.loads(history["userMetadata"])["representations_as_of"] == summary["representations_as_of"]

    # The Dagster job `training_set` (group `training`), its window given as run config: the same two
    # daily builds, both reused; then the rankers train on the table and the first versions are promoted.
    asset_run = run_assets(
        settings.model_copy(update={"raw_input": raw, "warehouse": warehouse, "as_of": config.end_time}),
        selection="group:training",
        asset_config={"training_examples": {"days": 2.0, "validation_days": 0.5, "test_days": 0.5}},
    )
    assert asset_run.success, asset_run.failures
    assert asset_run.materialized == ("rankers", "training_examples")
    assert asset_run.checks_passed == ("training_examples",)  # its blocking data-quality check ran first
    for model in ("light_ranker", "heavy_ranker"):
        current = json.loads((warehouse / "models" / model / "CURRENT").read_text())
        assert current["version"] == 1 and current["reason"] == "first model"
    metadata = json.loads(DeltaTable(str(warehouse / "tables" / "training_examples")).history(1)[0]["userMetadata"])
    assert metadata["window"] == window.as_dict()
    assert metadata["representations_as_of"] == summary["representations_as_of"]


def test_a_broken_training_set_fails_its_suite(spark, tmp_path):
    """The training_examples suite: a good table (the hand-made log above) passes; a copy with a
    dangling user, a split outside its set, a null author and a repeated impression fails on each."""
    from test_data_quality import breakages, broken_copy

    from data_quality.specs import TABLE_SPECS
    from data_quality.validation import check_table

    f = _frames(spark, later=False)
    table = _build(spark, _representations(spark)).cache()
    read = {"users": f["users"], "tweets": f["tweets"]}.__getitem__
    spec = TABLE_SPECS["training_examples"]
    assert check_table(table, spec, read, as_of=WINDOW.end).success
    changes = breakages(spec)
    result = check_table(broken_copy(table, spec, changes), spec, read, as_of=WINDOW.end)
    failed = [o.description for o in result.failures]
    for words in [w for _, _, w in changes] + ["is unique"]:
        assert any(words in d for d in failed), (words, failed)
    assert [column for column, _, _ in changes] == ["user_id", "split", "author_id"]
