"""The heavy ranker: a multi-task network in the spirit of Twitter's Recap ranker.

Dense registry features (signed log1p, then standardised with the training split's moments) and
hashed embeddings of the user and author ids feed a shared bottom MLP; one tower per head
(`features.labels.HEADS`) outputs that action's logit. Training minimises the mean of the heads'
binary cross-entropies with Adam, stopping early on the validation loss. Each head is then
calibrated with Platt scaling fitted on the validation split (a monotone map, so a head's AUC is
unchanged); the final score is Σ weight × calibrated probability with Home Mixer's published
weights (`DEFAULT_HEAD_WEIGHTS`).

Deterministic on CPU for a seed: seeded initialisation and shuffling, a fixed thread count and
`torch.use_deterministic_algorithms` while training (`models.twhin.train.torch_runtime`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.heads import HEADS
from models.twhin.train import torch_runtime

DEFAULT_HEAD_WEIGHTS: dict[str, float] = {
    "like": 0.5,
    "retweet": 1.0,
    "reply": 13.5,
    "good_profile_click": 12.0,
    "video_playback50": 0.005,
    "reply_engaged_by_author": 75.0,
    "good_click": 11.0,
    "negative_feedback": -74.0,
    "report": -369.0,
}
WEIGHTS_FILE, STATE_FILE = "heavy_ranker.json", "heavy_ranker.pt"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class HeavyRankerConfig:
    bottom_sizes: tuple[int, ...] = (256, 128)
    tower_size: int = 64
    id_embedding_dim: int = 8
    id_hash_bits: int = 14  # 16,384 buckets per id kind
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 512
    max_epochs: int = 12
    patience: int = 2  # epochs without a better validation loss before stopping
    seed: int = 0
    num_threads: int | None = 1

    def __post_init__(self) -> None:
        if not self.bottom_sizes or min(self.bottom_sizes) < 1 or self.tower_size < 1:
            raise ValueError("bottom_sizes and tower_size must be positive")
        if self.id_embedding_dim < 0 or not 1 <= self.id_hash_bits <= 24:
            raise ValueError("id_embedding_dim must be >= 0 and id_hash_bits in 1..24")
        if self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1:
            raise ValueError("batch_size, max_epochs and patience must be at least 1")


@dataclass(frozen=True)
class RankerInputs:
    """One split: dense features (rows, features), the user and author ids, labels (rows, heads)."""

    dense: np.ndarray
    user_ids: np.ndarray
    author_ids: np.ndarray
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.dense)


def hash_ids(ids: np.ndarray, bits: int) -> np.ndarray:
    """Fibonacci hashing of int64 ids into 2**bits buckets (stable across processes)."""
    with np.errstate(over="ignore"):
        mixed = np.asarray(ids, dtype=np.int64).view(np.uint64) * _GOLDEN
    return (mixed >> np.uint64(64 - bits)).astype(np.int64)


def signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass(frozen=True)
class Standardizer:
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, dense: np.ndarray) -> Standardizer:
        logged = signed_log1p(np.nan_to_num(dense.astype(np.float64)))
        return cls(mean=logged.mean(axis=0), scale=np.maximum(logged.std(axis=0), 1e-6))

    def transform(self, dense: np.ndarray) -> np.ndarray:
        logged = signed_log1p(np.nan_to_num(dense.astype(np.float64)))
        return ((logged - self.mean) / self.scale).astype(np.float32)


class MultiTaskNet(nn.Module):
    def __init__(self, n_features: int, heads: Sequence[str], config: HeavyRankerConfig):
        super().__init__()
        dim = config.id_embedding_dim
        self.user_embedding = nn.Embedding(2**config.id_hash_bits, dim) if dim else None
        self.author_embedding = nn.Embedding(2**config.id_hash_bits, dim) if dim else None
        layers, width = [], n_features + 2 * dim
        for size in config.bottom_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.bottom = nn.Sequential(*layers)
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(width, config.tower_size), nn.ReLU(), nn.Linear(config.tower_size, 1))
            for _ in heads
        )

    def forward(self, dense: torch.Tensor, users: torch.Tensor, authors: torch.Tensor) -> torch.Tensor:
        parts = [dense]
        if self.user_embedding is not None:
            parts += [self.user_embedding(users), self.author_embedding(authors)]
        shared = self.bottom(torch.cat(parts, dim=1))
        return torch.cat([tower(shared) for tower in self.towers], dim=1)  # (rows, heads) logits


def fit_platt(logits: np.ndarray, labels: np.ndarray, *, iterations: int = 100) -> tuple[float, float]:
    """(a, b) minimising the log loss of sigmoid(a·logit + b) against Platt's smoothed targets
    ((N+ + 1) / (N+ + 2) for positives, 1 / (N- + 2) for negatives, which keeps a separable or tiny
    sample from pushing a to infinity), by Newton steps with a backtracking line search. Falls back
    to the identity (1, 0) for one-class labels or when the fit is not better than the identity."""
    labels = np.asarray(labels, dtype=np.float64)
    positives = labels.sum()
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return 1.0, 0.0
    target = np.where(labels > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    x = np.stack([np.asarray(logits, dtype=np.float64), np.ones(len(labels))], axis=1)

    def loss(w: np.ndarray) -> float:
        z = x @ w  # log(1 + e^z) - t·z, stable for large |z|
        return float(np.mean(np.logaddexp(0.0, z) - target * z))

    w = np.array([1.0, 0.0])
    current = loss(w)
    for _ in range(iterations):
        p = sigmoid(x @ w)
        gradient = x.T @ (p - target) / len(labels)
        hessian = (x * (p * (1 - p))[:, None]).T @ x / len(labels) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-6 and loss(w - scale * step) > current:
            scale /= 2
        if scale <= 1e-6:
            break
        w, previous, current = w - scale * step, current, loss(w - scale * step)
        if previous - current < 1e-12:
            break
    if not np.all(np.isfinite(w)) or current > loss(np.array([1.0, 0.0])):
        return 1.0, 0.0
    return float(w[0]), float(w[1])


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


@dataclass
class HeavyRanker:
    """A trained heavy ranker: the network plus everything needed to score a feature matrix."""

    feature_names: tuple[str, ...]
    heads: tuple[str, ...]
    config: HeavyRankerConfig
    standardizer: Standardizer
    net: MultiTaskNet
    platt: dict[str, tuple[float, float]] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    def logits(self, inputs: RankerInputs, *, batch_size: int = 8192) -> np.ndarray:
        dense = self.standardizer.transform(inputs.dense)
        users = hash_ids(inputs.user_ids, self.config.id_hash_bits)
        authors = hash_ids(inputs.author_ids, self.config.id_hash_bits)
        out = np.empty((len(dense), len(self.heads)), dtype=np.float32)
        self.net.eval()
        with torch.inference_mode():
            for lo in range(0, len(dense), batch_size):
                hi = lo + batch_size
                out[lo:hi] = self.net(
                    torch.from_numpy(dense[lo:hi]), torch.from_numpy(users[lo:hi]), torch.from_numpy(authors[lo:hi])
                ).numpy()
        return out

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        """Each head's Platt-scaled probability from its logit."""
        scale = np.array([self.platt.get(head, (1.0, 0.0))[0] for head in self.heads])
        shift = np.array([self.platt.get(head, (1.0, 0.0))[1] for head in self.heads])
        return sigmoid(logits * scale + shift).astype(np.float32)

    def probabilities(self, inputs: RankerInputs, *, calibrated: bool = True) -> np.ndarray:
        logits = self.logits(inputs)
        return self.calibrated(logits) if calibrated else sigmoid(logits).astype(np.float32)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), directory / STATE_FILE)
        (directory / WEIGHTS_FILE).write_text(
            json.dumps(
                {
                    "feature_names": list(self.feature_names),
                    "heads": list(self.heads),
                    "config": asdict(self.config),
                    "mean": self.standardizer.mean.tolist(),
                    "scale": self.standardizer.scale.tolist(),
                    "platt": {head: list(ab) for head, ab in self.platt.items()},
                    "history": self.history,
                },
                indent=1,
            )
        )

    @classmethod
    def load(cls, directory: Path) -> HeavyRanker:
        spec = json.loads((directory / WEIGHTS_FILE).read_text())
        config_fields = dict(spec["config"])
        config_fields["bottom_sizes"] = tuple(config_fields["bottom_sizes"])
        config = HeavyRankerConfig(**config_fields)
        net = MultiTaskNet(len(spec["feature_names"]), spec["heads"], config)
        net.load_state_dict(torch.load(directory / STATE_FILE, weights_only=True))
        net.eval()
        return cls(
            feature_names=tuple(spec["feature_names"]),
            heads=tuple(spec["heads"]),
            config=config,
            standardizer=Standardizer(np.asarray(spec["mean"]), np.asarray(spec["scale"])),
            net=net,
            platt={head: tuple(ab) for head, ab in spec["platt"].items()},
            history=spec["history"],
        )


def final_scores(probabilities: np.ndarray, heads: Sequence[str], weights: Mapping[str, float]) -> np.ndarray:
    """Σ_head weight × probability, heads without a weight counting 0."""
    vector = np.array([weights.get(head, 0.0) for head in heads], dtype=np.float64)
    return probabilities.astype(np.float64) @ vector


def _mean_bce(net: MultiTaskNet, data: tuple[torch.Tensor, ...], batch_size: int) -> float:
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    total, rows = 0.0, len(data[0])
    net.eval()
    with torch.inference_mode():
        for lo in range(0, rows, batch_size):
            dense, users, authors, labels = (t[lo : lo + batch_size] for t in data)
            total += float(loss_fn(net(dense, users, authors), labels))
    return total / max(rows * data[3].shape[1], 1)


def _tensors(inputs: RankerInputs, standardizer: Standardizer, bits: int) -> tuple[torch.Tensor, ...]:
    return (
        torch.from_numpy(standardizer.transform(inputs.dense)),
        torch.from_numpy(hash_ids(inputs.user_ids, bits)),
        torch.from_numpy(hash_ids(inputs.author_ids, bits)),
        torch.from_numpy(np.asarray(inputs.labels, dtype=np.float32)),
    )


def train_heavy_ranker(
    train: RankerInputs,
    validation: RankerInputs,
    *,
    feature_names: Sequence[str],
    heads: Sequence[str] = HEADS,
    config: HeavyRankerConfig = HeavyRankerConfig(),
) -> HeavyRanker:
    """Fit on `train`, stop early and calibrate on `validation`; returns the best epoch's network."""
    if train.labels is None or validation.labels is None:
        raise ValueError("training and validation inputs need labels")
    if len(train) == 0 or len(validation) == 0:
        raise ValueError(f"need training and validation rows (got {len(train)} and {len(validation)})")
    standardizer = Standardizer.fit(train.dense)
    with torch_runtime(num_threads=config.num_threads, deterministic=True):
        torch.manual_seed(config.seed)
        net = MultiTaskNet(len(feature_names), heads, config)
        optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss()
        train_t = _tensors(train, standardizer, config.id_hash_bits)
        valid_t = _tensors(validation, standardizer, config.id_hash_bits)
        order_rng = np.random.default_rng(config.seed)
        best_loss, best_state, stale, history = float("inf"), None, 0, []
        for epoch in range(config.max_epochs):
            net.train()
            order = torch.from_numpy(order_rng.permutation(len(train)))
            for lo in range(0, len(train), config.batch_size):
                rows = order[lo : lo + config.batch_size]
                dense, users, authors, labels = (t[rows] for t in train_t)
                optimizer.zero_grad()
                loss_fn(net(dense, users, authors), labels).backward()
                optimizer.step()
            validation_loss = _mean_bce(net, valid_t, 8192)
            if not np.isfinite(validation_loss):
                raise FloatingPointError(
                    f"heavy ranker: validation loss is {validation_loss} after epoch {epoch + 1} "
                    "(non-finite features or a learning rate too high)"
                )
            history.append({"epoch": epoch + 1, "validation_bce": validation_loss})
            if validation_loss < best_loss - 1e-6:
                best_loss, stale = validation_loss, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= config.patience:
                    break
        net.load_state_dict(best_state)
        net.eval()
    ranker = HeavyRanker(
        feature_names=tuple(feature_names),
        heads=tuple(heads),
        config=config,
        standardizer=standardizer,
        net=net,
        history=history,
    )
    validation_logits = ranker.logits(validation)
    ranker.platt = {head: fit_platt(validation_logits[:, j], validation.labels[:, j]) for j, head in enumerate(heads)}
    return ranker
