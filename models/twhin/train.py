"""Training TwHIN embeddings with in-batch negatives and row-wise Adagrad.

    edges = build_edges(follows, engagements, tweets)
    result = train_twhin(edges, TwhinConfig(dim=64, epochs=4))
    result.embeddings("user"), result.translation("follow")

Each epoch shuffles every relation's edges, cuts them into batches of one relation, and visits the
batches in a shuffled order (numpy's PCG64 seeded by `config.seed`). A step gathers the batch's
embedding rows, computes the in-batch softmax loss (`model.in_batch_softmax_loss`) and its
gradients with respect to the gathered rows only, and updates those rows with row-wise Adagrad (one
accumulator per embedding row, as the TwHIN project's fused embedding optimizer); the relation
vectors get element-wise Adagrad. Only the touched rows move, so a step costs O(batch * dim), not
O(table).

Deterministic on CPU: the same edges, config and seed give bitwise-identical embeddings (a fixed
thread count, `torch.use_deterministic_algorithms(True)` while training, seeded generators, no
global RNG). On CUDA the row gathers' gradient accumulation is not bitwise reproducible.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from models.twhin.graph import RelationSpec, TwhinEdges
from models.twhin.model import in_batch_softmax_loss_and_grads

DEVICES = ("cpu", "cuda", "auto")
OPTIMIZERS = ("rowwise_adagrad", "adagrad", "adam")


@dataclass(frozen=True)
class TwhinConfig:
    dim: int = 64
    epochs: int = 5
    batch_size: int = 512
    learning_rate: float = 0.2
    optimizer: str = "rowwise_adagrad"  # rowwise_adagrad | adagrad | adam (embeddings and relation vectors)
    # Extra uniformly drawn rhs negatives shared by every row of a batch (0: in-batch only).
    random_negatives: int = 512
    # Subtract each candidate's log expected count in the batch from its training logit, so that
    # in-batch negatives (drawn in proportion to degree) do not teach the model to demote popular
    # nodes (sampled-softmax logQ correction).
    logq_correction: bool = True
    # Also softmax over the lhs of each column (corrupt the lhs), as the TwHIN paper does.
    symmetric: bool = True
    # Mask cells where a "negative" is the positive's own node, repeated in the batch.
    mask_collisions: bool = True
    init_std: float = 0.1
    eps: float = 1e-8
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | auto (cuda when present)
    # Intra-op threads while training; fixed so that CPU results are reproducible. None: leave as is.
    num_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"TwHIN device {self.device!r} is not one of {DEVICES}")
        if self.dim < 1 or self.epochs < 0 or self.batch_size < 2 or self.learning_rate <= 0:
            raise ValueError(f"bad TwHIN config {self}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TwHIN optimizer {self.optimizer!r} is not one of {OPTIMIZERS}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError("num_threads must be at least 1")


@dataclass(frozen=True)
class TwhinEmbeddings:
    """Trained embeddings: per node type the sorted ids and a (n, dim) float32 matrix; per relation a
    translation vector."""

    node_ids: dict[str, np.ndarray]
    node_embeddings: dict[str, np.ndarray]
    relations: tuple[RelationSpec, ...]
    translations: np.ndarray  # (R, dim) float32
    edges_per_relation: dict[str, int]
    epoch_losses: list[float] = field(default_factory=list)
    relation_losses: dict[str, float] = field(default_factory=dict)  # last epoch, mean per relation
    seconds: float = 0.0
    device: str = "cpu"

    @property
    def dim(self) -> int:
        return int(self.translations.shape[1])

    @property
    def final_loss(self) -> float:
        return self.epoch_losses[-1] if self.epoch_losses else float("nan")

    def ids(self, node_type: str) -> np.ndarray:
        return self.node_ids[node_type]

    def embeddings(self, node_type: str) -> np.ndarray:
        return self.node_embeddings[node_type]

    def translation(self, relation: str) -> np.ndarray:
        index = next(i for i, r in enumerate(self.relations) if r.name == relation)
        return self.translations[index]


def resolve_device(requested: str) -> torch.device:
    """cpu unless CUDA is asked for ("cuda", or "auto" when a GPU is present)."""
    if requested not in DEVICES:
        raise ValueError(f"TwHIN device {requested!r} is not one of {DEVICES}")
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        raise RuntimeError("TwHIN device 'cuda' was asked for but torch sees no CUDA device; use 'cpu' or 'auto'")
    return torch.device("cpu")


@contextlib.contextmanager
def torch_runtime(*, num_threads: int | None, deterministic: bool) -> Iterator[None]:
    """Fix the intra-op thread count and deterministic algorithms for a block, then restore them."""
    threads = torch.get_num_threads()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    try:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        if deterministic:
            torch.use_deterministic_algorithms(True)
            # Deterministic mode also NaN-fills every new tensor, which costs more than the step;
            # nothing here reads uninitialized memory.
            torch.utils.deterministic.fill_uninitialized_memory = False
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(was_deterministic, warn_only=warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = fill


class SparseRowOptimizer:
    """Updates the rows of embedding tables that a step touched (repeats allowed in `index`).

    rowwise_adagrad: one accumulator per row (mean squared gradient), as TwHIN's fused embedding
    optimizer; adagrad: one per element; adam: lazy Adam (only touched rows' moments move, the
    bias correction counts steps globally, as torch's SparseAdam).
    """

    def __init__(
        self,
        kind: str,
        tables: dict[str, torch.Tensor],
        *,
        lr: float,
        eps: float,
        betas: tuple[float, float] = (0.9, 0.999),
    ) -> None:
        if kind not in OPTIMIZERS:
            raise ValueError(f"TwHIN optimizer {kind!r} is not one of {OPTIMIZERS}")
        self.kind, self.lr, self.eps, self.betas = kind, lr, eps, betas
        self.steps = 0
        self.state: dict[str, tuple[torch.Tensor, ...]] = {}
        for name, table in tables.items():
            if kind == "rowwise_adagrad":
                self.state[name] = (torch.zeros(table.shape[0], dtype=table.dtype, device=table.device),)
            elif kind == "adagrad":
                self.state[name] = (torch.zeros_like(table),)
            else:
                self.state[name] = (torch.zeros_like(table), torch.zeros_like(table))

    def step(self) -> None:
        """Call once per training step, before its updates (Adam's bias correction)."""
        self.steps += 1

    def update(self, name: str, table: torch.Tensor, index: torch.Tensor, grad: torch.Tensor) -> None:
        rows, inverse = torch.unique(index, return_inverse=True)
        summed = torch.zeros((rows.shape[0], table.shape[1]), dtype=table.dtype, device=table.device)
        summed.index_add_(0, inverse, grad)
        self.update_unique(name, table, rows, summed)

    def update_unique(self, name: str, table: torch.Tensor, rows: torch.Tensor, grad: torch.Tensor) -> None:
        """Update distinct `rows` of `table` with their (summed) gradients `grad`."""
        if self.kind == "rowwise_adagrad":
            (state,) = self.state[name]
            accumulated = state.index_select(0, rows) + grad.pow(2).mean(dim=1)
            state.index_copy_(0, rows, accumulated)
            step = grad / (accumulated.sqrt() + self.eps)[:, None]
            table.index_add_(0, rows, step, alpha=-self.lr)
        elif self.kind == "adagrad":
            (state,) = self.state[name]
            accumulated = state.index_select(0, rows) + grad.pow(2)
            state.index_copy_(0, rows, accumulated)
            table.index_add_(0, rows, grad / (accumulated.sqrt() + self.eps), alpha=-self.lr)
        else:
            beta1, beta2 = self.betas
            first, second = self.state[name]
            m = first.index_select(0, rows).mul_(beta1).add_(grad, alpha=1 - beta1)
            v = second.index_select(0, rows).mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            first.index_copy_(0, rows, m)
            second.index_copy_(0, rows, v)
            correction1 = 1 - beta1 ** max(self.steps, 1)
            correction2 = 1 - beta2 ** max(self.steps, 1)
            step = (m / correction1) / ((v / correction2).sqrt() + self.eps)
            table.index_add_(0, rows, step, alpha=-self.lr)


def _log_frequency(index: np.ndarray, size: int) -> np.ndarray:
    """log(count / total) of each node in `index` (nodes that never occur get log(1 / total))."""
    counts = np.bincount(index, minlength=size).astype(np.float64)
    return np.log(np.maximum(counts, 1.0) / max(index.shape[0], 1)).astype(np.float32)


def train_twhin(
    edges: TwhinEdges, config: TwhinConfig = TwhinConfig(), *, log: Callable[[str], None] | None = None
) -> TwhinEmbeddings:
    """Train TwHIN embeddings on `edges`; `log` receives one line per epoch."""
    device = resolve_device(config.device)
    started = time.monotonic()
    with torch_runtime(num_threads=config.num_threads, deterministic=device.type == "cpu"):
        result = _train(edges, config, device, log)
    return TwhinEmbeddings(
        node_ids=edges.node_ids,
        node_embeddings=result["embeddings"],
        relations=edges.relations,
        translations=result["translations"],
        edges_per_relation=edges.edges_per_relation(),
        epoch_losses=result["epoch_losses"],
        relation_losses=result["relation_losses"],
        seconds=round(time.monotonic() - started, 3),
        device=str(device),
    )


def _train(edges: TwhinEdges, config: TwhinConfig, device: torch.device, log) -> dict:
    rng = np.random.Generator(np.random.PCG64(config.seed))
    init = torch.Generator().manual_seed(config.seed)
    dim, lr, eps = config.dim, config.learning_rate, config.eps

    node_types = list(edges.node_ids)
    tables = {
        t: (torch.randn((edges.num_nodes(t), dim), generator=init) * config.init_std).to(device) for t in node_types
    }
    translations = (torch.randn((len(edges.relations), dim), generator=init) * config.init_std).to(device)
    optimizer = SparseRowOptimizer(config.optimizer, {**tables, "_translations": translations}, lr=lr, eps=eps)

    relation_data = _relation_data(edges, device)

    relation_rows = [torch.tensor([r], device=device) for r in range(len(edges.relations))]
    epoch_losses: list[float] = []
    relation_losses: dict[str, float] = {}
    for epoch in range(config.epochs):
        epoch_started = time.monotonic()
        shuffled, plan, negatives_plan = _epoch_plan(edges, relation_data, config, rng, device)

        loss_sums = torch.zeros(len(relation_data), dtype=torch.float64, device=device)
        batch_counts = np.zeros(len(relation_data), dtype=np.int64)
        for step, (r, start, end) in enumerate(plan):
            data = relation_data[r]
            spec: RelationSpec = data["spec"]
            lhs_index = shuffled[r][0][start:end]
            rhs_index = shuffled[r][1][start:end]
            negative_index = torch.from_numpy(negatives_plan[step]).to(device) if negatives_plan is not None else None
            loss, grads = _step_gradients(
                tables, translations, r, spec, lhs_index, rhs_index, negative_index, data, config
            )
            loss_sums[r] += loss.detach()
            batch_counts[r] += 1
            _apply_gradients(
                optimizer,
                tables,
                translations,
                relation_rows[r],
                spec,
                grads,
                lhs_index=lhs_index,
                rhs_index=rhs_index,
                negative_index=negative_index,
            )

        per_relation = loss_sums.cpu().numpy() / np.maximum(batch_counts, 1)
        relation_losses = {
            d["spec"].name: round(float(per_relation[r]), 6) for r, d in enumerate(relation_data) if batch_counts[r]
        }
        mean_loss = float(loss_sums.sum().item() / max(int(batch_counts.sum()), 1))
        epoch_losses.append(round(mean_loss, 6))
        if log is not None:
            log(
                f"twhin epoch {epoch + 1}/{config.epochs}: loss {mean_loss:.4f} {relation_losses} "
                f"({len(plan)} batches, {time.monotonic() - epoch_started:.1f}s on {device})"
            )

    return {
        "embeddings": {t: tables[t].cpu().numpy().astype(np.float32, copy=False) for t in node_types},
        "translations": translations.cpu().numpy().astype(np.float32, copy=False),
        "epoch_losses": epoch_losses,
        "relation_losses": relation_losses,
    }


def _relation_data(edges: TwhinEdges, device: torch.device) -> list[dict]:
    """Per relation: its edges and the log frequency of each node on each side (device tensors)."""
    relation_data = []
    for spec in edges.relations:
        lhs, rhs = edges.relation_edges(spec.name)
        relation_data.append(
            {
                "spec": spec,
                "lhs": lhs,
                "rhs": rhs,
                "lhs_logf": torch.from_numpy(_log_frequency(lhs, edges.num_nodes(spec.lhs_type))).to(device),
                "rhs_logf": torch.from_numpy(_log_frequency(rhs, edges.num_nodes(spec.rhs_type))).to(device),
            }
        )
    return relation_data


def _epoch_plan(
    edges: TwhinEdges, relation_data: list[dict], config: TwhinConfig, rng: np.random.Generator, device: torch.device
) -> tuple[list, list, list | None]:
    """One epoch's order: each relation's edges shuffled and cut into batches, the batches shuffled,
    and each batch's random negatives (None without them)."""
    shuffled, plan = [], []
    for r, data in enumerate(relation_data):
        n = data["lhs"].shape[0]
        order = rng.permutation(n)
        shuffled.append(
            (
                torch.from_numpy(data["lhs"][order]).to(device),
                torch.from_numpy(data["rhs"][order]).to(device),
            )
        )
        plan += [
            (r, start, min(start + config.batch_size, n))
            for start in range(0, n, config.batch_size)
            if min(start + config.batch_size, n) - start >= 2
        ]
    plan = [plan[i] for i in rng.permutation(len(plan))]
    negatives_plan = (
        [
            rng.integers(0, edges.num_nodes(relation_data[r]["spec"].rhs_type), config.random_negatives)
            for r, _, _ in plan
        ]
        if config.random_negatives > 0
        else None
    )
    return shuffled, plan, negatives_plan


def _apply_gradients(
    optimizer,
    tables: dict,
    translations,
    relation_row,
    spec: RelationSpec,
    grads: dict,
    *,
    lhs_index,
    rhs_index,
    negative_index,
) -> None:
    """One optimizer step over the rows a batch touched and its relation's translation."""
    updates: dict[str, tuple[list, list]] = {t: ([], []) for t in tables}
    updates[spec.lhs_type][0].append(lhs_index)
    updates[spec.lhs_type][1].append(grads["lhs"])
    updates[spec.rhs_type][0].append(rhs_index)
    updates[spec.rhs_type][1].append(grads["rhs"])
    if negative_index is not None:
        updates[spec.rhs_type][0].append(negative_index)
        updates[spec.rhs_type][1].append(grads["negatives"])
    optimizer.step()
    for t, (indices, row_grads) in updates.items():
        if indices:
            optimizer.update(t, tables[t], torch.cat(indices), torch.cat(row_grads))
    optimizer.update_unique("_translations", translations, relation_row, grads["translation"][None, :])


def _step_gradients(tables, translations, r, spec, lhs_index, rhs_index, negative_index, data, config):
    """The loss of one batch and its gradients w.r.t. the gathered rows and the relation vector."""
    lhs = tables[spec.lhs_type].index_select(0, lhs_index)
    rhs = tables[spec.rhs_type].index_select(0, rhs_index)
    negatives = tables[spec.rhs_type].index_select(0, negative_index) if negative_index is not None else None
    batch = lhs_index.shape[0]
    rhs_offset = lhs_offset = negatives_offset = None
    if config.logq_correction:
        rhs_offset = data["rhs_logf"].index_select(0, rhs_index) + math.log(batch)
        lhs_offset = data["lhs_logf"].index_select(0, lhs_index) + math.log(batch)
        if negatives is not None:
            expected = math.log(config.random_negatives / tables[spec.rhs_type].shape[0])
            negatives_offset = torch.full((negatives.shape[0],), expected, device=negatives.device)
    rhs_collisions = lhs_collisions = None
    if config.mask_collisions:
        eye = torch.eye(batch, dtype=torch.bool, device=lhs.device)
        rhs_collisions = (rhs_index[:, None] == rhs_index[None, :]).logical_and_(~eye)
        lhs_collisions = (lhs_index[:, None] == lhs_index[None, :]).logical_and_(~eye) if config.symmetric else None
    return in_batch_softmax_loss_and_grads(
        lhs,
        rhs,
        translations[r],
        negatives=negatives,
        symmetric=config.symmetric,
        rhs_logit_offset=rhs_offset,
        lhs_logit_offset=lhs_offset,
        negatives_logit_offset=negatives_offset,
        rhs_collisions=rhs_collisions,
        lhs_collisions=lhs_collisions,
    )
