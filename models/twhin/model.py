"""The TwHIN scoring model: one embedding table per node type, one translation vector per relation.

score(lhs, rel, rhs) = dot(lhs_emb, rhs_emb + t_rel), as in the-algorithm-ml's TwHIN project
(`projects/twhin/models/models.py`): the rhs embedding is translated by the relation's vector and
compared with the lhs embedding by a dot product.

Training contrasts each positive edge with the other edges of its batch (in-batch negatives):
for a batch of B positive edges of one relation, every lhs is scored against every rhs (plus
optional random rhs negatives); softmax cross-entropy with the diagonal as the targets, over the
rows (corrupting the rhs) and, when `symmetric`, over the columns too (corrupting the lhs), as the
TwHIN paper corrupts both ends of an edge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def translation_score(lhs: torch.Tensor, rhs: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Row-wise score of aligned pairs: sum(lhs * (rhs + t), -1). lhs, rhs: (..., d); t: (d,)."""
    return (lhs * (rhs + translation)).sum(dim=-1)


def in_batch_scores(lhs: torch.Tensor, rhs: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """(B, C) scores of every lhs (B, d) against every rhs (C, d): lhs @ (rhs + t).T."""
    return lhs @ (rhs + translation).T


def in_batch_softmax_loss(
    lhs: torch.Tensor,
    rhs: torch.Tensor,
    translation: torch.Tensor,
    *,
    negatives: torch.Tensor | None = None,
    symmetric: bool = True,
    rhs_logit_offset: torch.Tensor | None = None,
    lhs_logit_offset: torch.Tensor | None = None,
    negatives_logit_offset: torch.Tensor | None = None,
    rhs_collisions: torch.Tensor | None = None,
    lhs_collisions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy of a batch of positive edges (lhs[i], rhs[i]) against in-batch negatives.

    Row i of S = lhs @ (rhs + t).T is a softmax over candidate rhs for lhs[i], whose target is
    column i. `negatives` (K, d) adds K shared random rhs columns to every row. With `symmetric`,
    column j is also a softmax over candidate lhs for rhs[j] (target row j); the loss is then the
    mean of the two directions.

    Offsets are subtracted from the logits during training only (sampled-softmax "logQ"
    correction: the log expected count of each candidate in the batch), one per column for the rhs
    direction (`rhs_logit_offset`, B), per row for the lhs direction (`lhs_logit_offset`, B) and
    per random negative (`negatives_logit_offset`, K). `rhs_collisions` (B, B, bool) marks cells
    (i, j), i != j, whose rhs[j] is the same node as rhs[i] (not a negative for row i);
    `lhs_collisions` likewise cells whose lhs[i] is lhs[j] (not a negative for column j). Both are
    masked out of their direction's softmax.
    """
    scores = in_batch_scores(lhs, rhs, translation)
    targets = torch.arange(scores.shape[0], device=scores.device)

    rows = scores if rhs_collisions is None else scores.masked_fill(rhs_collisions, float("-inf"))
    if rhs_logit_offset is not None:
        rows = rows - rhs_logit_offset[None, :]
    if negatives is not None and negatives.shape[0] > 0:
        extra = in_batch_scores(lhs, negatives, translation)
        if negatives_logit_offset is not None:
            extra = extra - negatives_logit_offset[None, :]
        rows = torch.cat([rows, extra], dim=1)
    loss = F.cross_entropy(rows, targets)
    if not symmetric:
        return loss
    columns = scores if lhs_collisions is None else scores.masked_fill(lhs_collisions, float("-inf"))
    columns = columns.T
    if lhs_logit_offset is not None:
        columns = columns - lhs_logit_offset[None, :]
    return 0.5 * (loss + F.cross_entropy(columns, targets))


def _softmax_(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax of `logits` along `dim`, in place; returns the log-sum-exp along `dim`."""
    peak = logits.amax(dim=dim, keepdim=True)
    logits.sub_(peak).exp_()
    total = logits.sum(dim=dim, keepdim=True)
    logits.div_(total)
    return (peak + total.log()).squeeze(dim)


def in_batch_softmax_loss_and_grads(
    lhs: torch.Tensor,
    rhs: torch.Tensor,
    translation: torch.Tensor,
    *,
    negatives: torch.Tensor | None = None,
    symmetric: bool = True,
    rhs_logit_offset: torch.Tensor | None = None,
    lhs_logit_offset: torch.Tensor | None = None,
    negatives_logit_offset: torch.Tensor | None = None,
    rhs_collisions: torch.Tensor | None = None,
    lhs_collisions: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`in_batch_softmax_loss` and its gradients, computed in closed form (what training runs).

    The gradient of softmax cross-entropy with respect to the logits is (softmax - onehot) / B;
    the rest is two matrix products. Fewer passes over the (B, B) scores than autograd, and no
    graph; tests check it against autograd on `in_batch_softmax_loss`.
    Returns (loss, {"lhs", "rhs", "translation", "negatives" (when given)}).
    """
    batch = lhs.shape[0]
    shifted = rhs + translation
    scores = lhs @ shifted.T
    diagonal = scores.diagonal().clone()
    row_weight = 0.5 if symmetric else 1.0

    columns = None
    if symmetric:
        columns = scores - lhs_logit_offset[:, None] if lhs_logit_offset is not None else scores.clone()
        if lhs_collisions is not None:
            columns.masked_fill_(lhs_collisions, float("-inf"))

    rows = scores  # reused in place
    row_target = diagonal.clone()
    if rhs_logit_offset is not None:
        rows.sub_(rhs_logit_offset[None, :])
        row_target -= rhs_logit_offset
    if rhs_collisions is not None:
        rows.masked_fill_(rhs_collisions, float("-inf"))
    has_negatives = negatives is not None and negatives.shape[0] > 0
    if has_negatives:
        shifted_negatives = negatives + translation
        extra = lhs @ shifted_negatives.T
        if negatives_logit_offset is not None:
            extra.sub_(negatives_logit_offset[None, :])
        rows = torch.cat([rows, extra], dim=1)
    row_lse = _softmax_(rows, dim=1)
    loss = (row_lse - row_target).mean() * row_weight
    rows.diagonal().sub_(1.0)  # the first B columns: softmax - onehot
    rows.mul_(row_weight / batch)
    grad_scores = rows[:, :batch]
    if symmetric:
        column_target = diagonal - lhs_logit_offset if lhs_logit_offset is not None else diagonal
        column_lse = _softmax_(columns, dim=0)
        loss = loss + 0.5 * (column_lse - column_target).mean()
        columns.diagonal().sub_(1.0)
        grad_scores = grad_scores + columns.mul_(0.5 / batch)

    grads = {
        "lhs": grad_scores @ shifted,
        "rhs": grad_scores.T @ lhs,
    }
    grads["translation"] = grads["rhs"].sum(dim=0)
    if has_negatives:
        grad_extra = rows[:, batch:]
        grads["lhs"] = grads["lhs"] + grad_extra @ shifted_negatives
        grads["negatives"] = grad_extra.T @ lhs
        grads["translation"] = grads["translation"] + grads["negatives"].sum(dim=0)
    return loss, grads
