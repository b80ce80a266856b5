"""The light and heavy rankers as pure numpy/torch models (no Spark)."""

from __future__ import annotations

import numpy as np
import pytest

from core.graph_eval import roc_auc
from core.heads import HEADS
from models.heavy_ranker import (
    DEFAULT_HEAD_WEIGHTS,
    HeavyRanker,
    HeavyRankerConfig,
    RankerInputs,
    final_scores,
    fit_platt,
    hash_ids,
    train_heavy_ranker,
)
from models.light_ranker import LightRanker, LightRankerConfig, train_light_ranker
from models.ranker_features import HEAVY_RANKER_FEATURES, LIGHT_RANKER_FEATURES, POSITIVE_LABELS

FAST = HeavyRankerConfig(
    bottom_sizes=(32,), tower_size=8, id_embedding_dim=2, id_hash_bits=6, max_epochs=12, batch_size=256
)


def planted(rows: int, seed: int, n_features: int = 6) -> tuple[RankerInputs, np.ndarray]:
    """Features; every head's true probability is sigmoid(bias_h + 1.5 x0 - x1), bias_h from -1 to -4."""
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(rows, n_features)).astype(np.float32)
    biases = np.linspace(-1.0, -4.0, len(HEADS))
    truth = 1 / (1 + np.exp(-(biases[None, :] + 1.5 * dense[:, [0]] - dense[:, [1]])))
    labels = (rng.random(truth.shape) < truth).astype(np.float32)
    ids = rng.integers(1, 1000, size=rows)
    return RankerInputs(dense=dense, user_ids=ids, author_ids=ids[::-1].copy(), labels=labels), truth


def test_heavy_ranker_learns_a_planted_signal_close_to_the_true_probabilities():
    names = [f"f{i}" for i in range(6)]
    train, _ = planted(6000, 1)
    validation, _ = planted(2000, 2)
    test, truth = planted(4000, 3)
    model = train_heavy_ranker(train, validation, feature_names=names, config=FAST)
    p = model.probabilities(test)
    for j, head in enumerate(HEADS[:3]):
        ceiling = roc_auc(test.labels[:, j], truth[:, j])
        assert roc_auc(test.labels[:, j], p[:, j]) > ceiling - 0.03, head
    # Calibrated: the mean prediction of the most frequent head is near its observed rate.
    assert abs(p[:, 0].mean() - test.labels[:, 0].mean()) < 0.03


def test_heavy_training_is_deterministic_for_a_seed_and_survives_save_and_load(tmp_path):
    names = [f"f{i}" for i in range(6)]
    train, _ = planted(1500, 4)
    validation, _ = planted(500, 5)
    first = train_heavy_ranker(train, validation, feature_names=names, config=FAST)
    second = train_heavy_ranker(train, validation, feature_names=names, config=FAST)
    np.testing.assert_array_equal(first.probabilities(validation), second.probabilities(validation))
    first.save(tmp_path / "m")
    loaded = HeavyRanker.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.probabilities(validation), first.probabilities(validation))
    assert loaded.feature_names == tuple(names) and loaded.heads == HEADS
    other_seed = train_heavy_ranker(
        train, validation, feature_names=names, config=HeavyRankerConfig(**{**FAST.__dict__, "seed": 1})
    )
    assert not np.array_equal(other_seed.probabilities(validation), first.probabilities(validation))


def test_platt_scaling_recovers_the_logistic_map():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=200_000)
    labels = (rng.random(len(logits)) < 1 / (1 + np.exp(-(2.0 * logits - 1.0)))).astype(float)
    a, b = fit_platt(logits, labels)
    assert a == pytest.approx(2.0, abs=0.05) and b == pytest.approx(-1.0, abs=0.05)
    assert fit_platt(logits, np.zeros(len(logits))) == (1.0, 0.0)


def test_final_score_is_the_weighted_sum_of_probabilities():
    heads = ("like", "reply", "report")
    probabilities = np.array([[0.2, 0.01, 0.001], [0.5, 0.0, 0.0]])
    expected = [0.5 * 0.2 + 13.5 * 0.01 - 369.0 * 0.001, 0.5 * 0.5]
    np.testing.assert_allclose(final_scores(probabilities, heads, DEFAULT_HEAD_WEIGHTS), expected)
    np.testing.assert_allclose(final_scores(probabilities, heads, {"like": 1.0}), [0.2, 0.5])


def test_hashed_ids_are_stable_and_in_range():
    ids = np.array([1, 2, 2, 2116170291116807299, -5])
    buckets = hash_ids(ids, 10)
    assert buckets.min() >= 0 and buckets.max() < 1024 and buckets[1] == buckets[2]
    # Fibonacci hashing by hand for id 1: the top 10 bits of 0x9E3779B97F4A7C15.
    assert buckets[0] == 0x9E3779B97F4A7C15 >> 54


def test_light_ranker_trains_stops_early_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(4000, 3)).astype(np.float32)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-(2 * dense[:, 0] - 2)))).astype(np.float32)
    model = train_light_ranker(
        dense[:3000],
        labels[:3000],
        dense[3000:],
        labels[3000:],
        feature_names=["a", "b", "c"],
        config=LightRankerConfig(max_rounds=200, early_stopping_rounds=5),
    )
    scores = model.predict(dense[3000:])
    assert roc_auc(labels[3000:], scores) > 0.8
    assert model.best_iteration < 199
    model.save(tmp_path / "light")
    np.testing.assert_allclose(LightRanker.load(tmp_path / "light").predict(dense[3000:]), scores, rtol=1e-6)


def test_ranker_feature_lists_leave_out_the_candidate_pool_features():
    assert not any(name.startswith("user_tweet__from_") or name.endswith("pool_rank") for name in HEAVY_RANKER_FEATURES)
    assert set(LIGHT_RANKER_FEATURES) <= set(HEAVY_RANKER_FEATURES)
    assert "negative_feedback" not in POSITIVE_LABELS and "like" in POSITIVE_LABELS


@pytest.mark.parametrize("shift, rate", [(-9.0, 0.01), (3.0, 0.01), (0.0, 0.3)])
def test_platt_scaling_stays_finite_on_shifted_rare_heads(shift, rate):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=5000) + shift
    labels = (rng.random(5000) < rate).astype(float)
    a, b = fit_platt(logits, labels)
    calibrated = 1 / (1 + np.exp(-(a * logits + b)))
    # The labels are independent of the logits: the fit flattens the scores towards the base rate.
    assert abs(a) < 1.0 and abs(calibrated.mean() - labels.mean()) < 0.01


def test_platt_scaling_does_not_blow_up_on_a_separable_head():
    logits = np.concatenate([np.linspace(-3, 0, 500), [2.0, 2.5]])
    labels = np.concatenate([np.zeros(500), [1.0, 1.0]])
    a, b = fit_platt(logits, labels)
    assert np.isfinite(a) and np.isfinite(b) and a < 20


def test_training_without_a_training_set_names_the_command_to_build_it(tmp_path):
    from jobs.train_rankers import train_rankers

    with pytest.raises(FileNotFoundError, match="homefeed training-set"):
        train_rankers(tmp_path)
    assert not (tmp_path / "models").exists()  # nothing registered
