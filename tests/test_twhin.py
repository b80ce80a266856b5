"""TwHIN embeddings (models/twhin): scores and loss by hand, determinism, a two-cluster graph,
follow candidates, the Delta round trip (deltalake, Spark, DuckDB) and the Dagster asset."""

from __future__ import annotations

import dataclasses
import math

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from deltalake import write_deltalake

from models.twhin import (
    TwhinConfig,
    build_edges,
    follow_candidates_from_warehouse,
    resolve_device,
    train_twhin,
    twhin_follow_candidates,
)
from models.twhin.export import (
    RELATIONS_TABLE,
    TWEET_EMBEDDINGS_TABLE,
    USER_EMBEDDINGS_TABLE,
    read_embeddings,
    read_translations,
    write_twhin_tables,
)
from models.twhin.model import (
    in_batch_scores,
    in_batch_softmax_loss,
    in_batch_softmax_loss_and_grads,
    translation_score,
)

FAST = TwhinConfig(dim=8, epochs=3, batch_size=16, random_negatives=4, num_threads=1)


def _follows(pairs) -> pa.Table:
    pairs = list(pairs)
    return pa.table(
        {
            "follower_id": pa.array([p[0] for p in pairs], pa.int64()),
            "followee_id": pa.array([p[1] for p in pairs], pa.int64()),
        }
    )


def _engagements(rows) -> pa.Table:
    rows = list(rows)
    return pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int64()),
            "tweet_id": pa.array([r[1] for r in rows], pa.int64()),
            "action": pa.array([r[2] for r in rows], pa.string()),
        }
    )


def _tweets(rows) -> pa.Table:
    """rows: (tweet_id, author_id, in_reply_to_tweet_id, retweet_of_tweet_id)."""
    rows = list(rows)
    return pa.table(
        {
            "tweet_id": pa.array([r[0] for r in rows], pa.int64()),
            "author_id": pa.array([r[1] for r in rows], pa.int64()),
            "in_reply_to_tweet_id": pa.array([r[2] for r in rows], pa.int64()),
            "retweet_of_tweet_id": pa.array([r[3] for r in rows], pa.int64()),
        }
    )


def _small_world(seed: int = 3):
    """40 users, 60 tweets, random follows, likes and replies."""
    rng = np.random.default_rng(seed)
    follows = {(int(a), int(b)) for a, b in rng.integers(1, 41, size=(300, 2)) if a != b}
    tweets = [(1000 + i, int(rng.integers(1, 41)), None, None) for i in range(60)]
    actions = ["like", "retweet", "reply", "impression", "click"]
    engagements = [
        (int(rng.integers(1, 41)), int(rng.integers(1000, 1060)), actions[int(rng.integers(0, 5))]) for _ in range(200)
    ]
    return _follows(sorted(follows)), _engagements(engagements), _tweets(tweets)


# -- the model, by hand ------------------------------------------------------------------------


def test_translation_score_equals_a_hand_computation():
    lhs = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    rhs = torch.tensor([[3.0, -1.0], [2.0, 4.0]])
    t = torch.tensor([0.5, 0.5])
    # dot([1, 2], [3.5, -0.5]) = 2.5; dot([0, -1], [2.5, 4.5]) = -4.5
    assert translation_score(lhs, rhs, t).tolist() == [2.5, -4.5]
    # every lhs against every rhs: [[2.5, 1*2.5 + 2*4.5], [-1*-0.5, -4.5]]
    assert in_batch_scores(lhs, rhs, t).tolist() == [[2.5, 11.5], [0.5, -4.5]]


def test_in_batch_loss_on_a_2x2_batch_equals_the_hand_computed_cross_entropy():
    lhs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    rhs = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    t = torch.zeros(2)
    # scores S = lhs @ rhs.T = [[1, 0], [1, 2]]; targets on the diagonal.
    row0 = -math.log(math.exp(1) / (math.exp(1) + math.exp(0)))
    row1 = -math.log(math.exp(2) / (math.exp(1) + math.exp(2)))
    col0 = -math.log(math.exp(1) / (math.exp(1) + math.exp(1)))
    col1 = -math.log(math.exp(2) / (math.exp(0) + math.exp(2)))
    rows_only = (row0 + row1) / 2
    both = 0.5 * rows_only + 0.5 * (col0 + col1) / 2
    assert in_batch_softmax_loss(lhs, rhs, t, symmetric=False).item() == pytest.approx(rows_only, rel=1e-6)
    assert in_batch_softmax_loss(lhs, rhs, t, symmetric=True).item() == pytest.approx(both, rel=1e-6)
    # A translation moves every column j by dot(lhs_i, t): t = [0, 1] adds lhs_i[1] to row i.
    shifted = in_batch_softmax_loss(lhs, rhs, torch.tensor([0.0, 1.0]), symmetric=False).item()
    assert shifted == pytest.approx(rows_only, rel=1e-6)  # a per-row constant leaves each row's softmax


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("with_negatives", [True, False])
def test_closed_form_gradients_equal_autograd(symmetric, with_negatives):
    g = torch.Generator().manual_seed(0)
    batch, dim, k = 6, 4, 3
    lhs, rhs = (
        torch.randn(batch, dim, generator=g, dtype=torch.float64),
        torch.randn(batch, dim, generator=g, dtype=torch.float64),
    )
    t = torch.randn(dim, generator=g, dtype=torch.float64)
    negatives = torch.randn(k, dim, generator=g, dtype=torch.float64) if with_negatives else None
    rhs_ids, lhs_ids = torch.tensor([0, 1, 1, 2, 3, 3]), torch.tensor([5, 5, 1, 2, 3, 4])
    eye = torch.eye(batch, dtype=torch.bool)
    options = dict(
        negatives=negatives,
        symmetric=symmetric,
        rhs_logit_offset=torch.randn(batch, generator=g, dtype=torch.float64),
        lhs_logit_offset=torch.randn(batch, generator=g, dtype=torch.float64),
        negatives_logit_offset=torch.randn(k, generator=g, dtype=torch.float64) if with_negatives else None,
        rhs_collisions=(rhs_ids[:, None] == rhs_ids[None, :]) & ~eye,
        lhs_collisions=(lhs_ids[:, None] == lhs_ids[None, :]) & ~eye,
    )
    inputs = [x.clone().requires_grad_() for x in (lhs, rhs, t)] + (
        [negatives.clone().requires_grad_()] if with_negatives else []
    )
    reference = in_batch_softmax_loss(*inputs[:3], **{**options, "negatives": inputs[3] if with_negatives else None})
    expected = torch.autograd.grad(reference, inputs)
    loss, grads = in_batch_softmax_loss_and_grads(lhs, rhs, t, **options)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-12)
    for name, want in zip(["lhs", "rhs", "translation", "negatives"], expected):
        assert torch.allclose(grads[name], want, atol=1e-12), name


# -- the graph ----------------------------------------------------------------------------------


def test_build_edges_maps_relations_and_ids():
    follows = _follows([(1, 2), (2, 1), (3, 1), (3, 1)])
    engagements = _engagements(
        [(2, 10, "like"), (2, 10, "impression"), (3, 11, "not_interested"), (1, 11, "retweet"), (3, 10, "reply")]
    )
    tweets = _tweets([(10, 1, None, None), (11, 2, 10, None), (12, 3, None, 10)])
    edges = build_edges(follows, engagements, tweets)
    assert edges.node_ids["user"].tolist() == [1, 2, 3]
    assert edges.node_ids["tweet"].tolist() == [10, 11]  # 12 is a pure retweet: no authored node
    users, tweet_ids = edges.node_ids["user"], edges.node_ids["tweet"]

    def pairs(name, rhs_ids):
        lhs, rhs = edges.relation_edges(name)
        return sorted(zip(users[lhs].tolist(), rhs_ids[rhs].tolist()))

    assert pairs("follow", users) == [(1, 2), (2, 1), (3, 1)]  # duplicates kept once
    assert pairs("like", tweet_ids) == [(2, 10)]  # impressions and other actions ignored
    assert pairs("retweet", tweet_ids) == [(1, 11), (3, 10)]  # engagement + the retweet row of tweets
    assert pairs("reply", tweet_ids) == [(2, 10), (3, 10)]  # the reply row of tweets + engagement
    assert pairs("authored", tweet_ids) == [(1, 10), (2, 11)]
    only_follows = build_edges(follows, engagements, tweets, relations=("follow",))
    assert [r.name for r in only_follows.relations] == ["follow"]
    assert only_follows.node_ids["tweet"].size == 0
    with pytest.raises(ValueError, match="unknown TwHIN relations"):
        build_edges(follows, engagements, tweets, relations=("poke",))


# -- training -----------------------------------------------------------------------------------


def test_same_seed_gives_bitwise_identical_embeddings():
    edges = build_edges(*_small_world())
    first, second = train_twhin(edges, FAST), train_twhin(edges, FAST)
    for node_type in ("user", "tweet"):
        assert np.array_equal(first.embeddings(node_type), second.embeddings(node_type))
    assert np.array_equal(first.translations, second.translations)
    assert first.epoch_losses == second.epoch_losses
    other = train_twhin(edges, dataclasses.replace(FAST, seed=1))
    assert not np.array_equal(first.embeddings("user"), other.embeddings("user"))


def test_training_restores_torch_settings():
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    train_twhin(build_edges(*_small_world()), FAST)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def _two_clusters():
    """Users 1-10 and 11-20; each follows the next 6 of its own cluster (cyclically), none across."""
    pairs = []
    for base in (0, 10):
        for i in range(10):
            pairs += [(base + 1 + i, base + 1 + (i + step) % 10) for step in range(1, 7)]
    return _follows(pairs)


def test_two_clusters_rank_same_cluster_accounts_first():
    follows = _two_clusters()
    edges = build_edges(follows, _engagements([]), _tweets([]))
    config = TwhinConfig(dim=8, epochs=40, batch_size=32, learning_rate=0.2, random_negatives=0, num_threads=1)
    result = train_twhin(edges, config)
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    users, matrix = result.ids("user"), result.embeddings("user")
    translation = result.translation("follow")
    cluster = lambda u: (u - 1) // 10  # noqa: E731
    followed = {(a, b) for a, b in zip(follows["follower_id"].to_pylist(), follows["followee_id"].to_pylist())}
    for i, u in enumerate(users):
        scores = matrix[i] @ (matrix + translation).T
        same = [
            scores[j] for j, v in enumerate(users) if v != u and cluster(v) == cluster(u) and (u, v) not in followed
        ]
        other = [scores[j] for j, v in enumerate(users) if cluster(v) != cluster(u)]
        assert min(same) > max(other), f"user {u}"
    # ... so the 3 candidates of every user are the 3 same-cluster accounts it does not follow yet.
    candidates = twhin_follow_candidates((users, matrix), translation, follows, k=3)
    assert candidates.num_rows == 60
    for u, v in zip(candidates["user_id"].to_pylist(), candidates["candidate_id"].to_pylist()):
        assert cluster(u) == cluster(v) and (u, v) not in followed and u != v


def test_devices_resolve_to_cpu_unless_cuda_is_present_and_asked_for():
    assert resolve_device("cpu").type == "cpu"
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    else:
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(ValueError):
        TwhinConfig(device="tpu")


# -- candidates ---------------------------------------------------------------------------------


def test_candidates_exclude_followed_accounts_and_self():
    ids = np.array([5, 1, 3, 2, 4], dtype=np.int64)  # unsorted on purpose
    # One-dimensional in effect: scores are products of lengths, so longer accounts rank first.
    matrix = np.array([[0.1, 0], [1.0, 0], [0.3, 0], [0.9, 0], [0.2, 0]], dtype=np.float32)
    table = pa.table({"user_id": ids, "embedding": pa.array(matrix.tolist(), pa.list_(pa.float32()))})
    follows = _follows([(1, 2), (1, 3), (2, 1)])
    candidates = twhin_follow_candidates(table, [0.0, 0.0], follows, k=2, batch_size=2)
    got = {}
    for u, v, s in zip(*(candidates[c].to_pylist() for c in ("user_id", "candidate_id", "score"))):
        got.setdefault(u, []).append((v, s))
    assert [v for v, _ in got[1]] == [4, 5]  # not itself, not 2 or 3 (followed)
    assert [v for v, _ in got[2]] == [3, 4]  # not 1 (followed), not itself
    assert [v for v, _ in got[3]] == [1, 2]
    assert got[1][0][1] == pytest.approx(1.0 * 0.2)
    assert candidates.num_rows == 10
    for u, pairs in got.items():
        assert u not in [v for v, _ in pairs]
    # Fewer than k left after the exclusions: only what is left comes back.
    assert (
        twhin_follow_candidates(table, [0.0, 0.0], follows, k=10).filter(pc.equal(pc.field("user_id"), 1)).num_rows == 2
    )


def test_translation_enters_candidate_scores():
    ids = np.array([1, 2, 3], dtype=np.int64)
    matrix = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    candidates = twhin_follow_candidates((ids, matrix), [0.0, 5.0], _follows([]), k=1)
    # user 1: v=2 -> dot([1,1],[2,5]) = 7; v=3 -> dot([1,1],[0,6]) = 6
    first = candidates.filter(pc.equal(pc.field("user_id"), 1)).to_pylist()
    assert first == [{"user_id": 1, "candidate_id": 2, "score": 7.0}]


# -- Delta round trip and the asset --------------------------------------------------------------


def test_delta_round_trip_through_deltalake_spark_and_duckdb(tmp_path, spark):
    from jobs.duckdb_catalog import connect_warehouse

    result = train_twhin(build_edges(*_small_world()), FAST)
    tables_dir = tmp_path / "tables"
    paths = {name: tables_dir / name for name in (USER_EMBEDDINGS_TABLE, TWEET_EMBEDDINGS_TABLE, RELATIONS_TABLE)}
    rows = write_twhin_tables(result, paths)
    write_twhin_tables(result, paths)  # overwriting converges to the same table
    assert rows[USER_EMBEDDINGS_TABLE] == result.ids("user").size

    ids, matrix = read_embeddings(paths[USER_EMBEDDINGS_TABLE], "user_id")
    assert np.array_equal(ids, result.ids("user")) and np.array_equal(matrix, result.embeddings("user"))
    ids, matrix = read_embeddings(paths[TWEET_EMBEDDINGS_TABLE], "tweet_id")
    assert np.array_equal(ids, result.ids("tweet")) and np.array_equal(matrix, result.embeddings("tweet"))
    translations = read_translations(paths[RELATIONS_TABLE])
    assert np.array_equal(translations["follow"], result.translation("follow"))

    frame = spark.read.format("delta").load(str(paths[USER_EMBEDDINGS_TABLE]))
    assert dict(frame.dtypes) == {"user_id": "bigint", "embedding": "array<float>"}
    spark_rows = sorted(frame.collect())
    assert [r.user_id for r in spark_rows] == result.ids("user").tolist()
    assert np.array_equal(np.array([r.embedding for r in spark_rows], dtype=np.float32), result.embeddings("user"))
    relations = {r.relation: r for r in spark.read.format("delta").load(str(paths[RELATIONS_TABLE])).collect()}
    assert np.array_equal(np.array(relations["like"].translation, dtype=np.float32), result.translation("like"))
    assert relations["follow"].edges == result.edges_per_relation["follow"]

    follows = _small_world()[0]
    from_warehouse = follow_candidates_from_warehouse(tables_dir, follows, k=5)
    in_memory = twhin_follow_candidates(
        (result.ids("user"), result.embeddings("user")), result.translation("follow"), follows, k=5
    )
    assert from_warehouse.equals(in_memory)

    con = connect_warehouse(tables_dir)
    ((count, length),) = con.execute("SELECT count(*), max(len(embedding)) FROM twhin_tweet_embeddings").fetchall()
    assert (count, length) == (result.ids("tweet").size, FAST.dim)


def test_asset_writes_the_three_tables(tmp_path):
    from orchestration.assets.twhin import twhin_assets
    from orchestration.resources import TwhinResource, WarehouseResource

    follows, engagements, tweets = _small_world()
    tables_dir = tmp_path / "wh" / "tables"
    for name, table in (("follows", follows), ("engagements", engagements), ("tweets", tweets)):
        write_deltalake(str(tables_dir / name), table)
    result = dg.materialize(
        twhin_assets,
        resources={
            "warehouse": WarehouseResource(path=str(tmp_path / "wh"), raw_input=str(tmp_path / "raw")),
            "twhin": TwhinResource(dim=8, epochs=2, threads=1),
        },
    )
    assert result.success
    materialized = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    assert set(materialized) == {USER_EMBEDDINGS_TABLE, TWEET_EMBEDDINGS_TABLE, RELATIONS_TABLE}
    metadata = materialized[USER_EMBEDDINGS_TABLE].materialization.metadata
    ids, matrix = read_embeddings(tables_dir / USER_EMBEDDINGS_TABLE, "user_id")
    assert metadata["dagster/row_count"].value == ids.size and matrix.shape[1] == 8
    assert metadata["device"].value == "cpu"
    assert math.isfinite(metadata["final_loss"].value)
    spec_kinds = {tuple(sorted(spec.kinds)) for spec in twhin_assets[0].specs}
    assert spec_kinds == {("delta", "pytorch")}
