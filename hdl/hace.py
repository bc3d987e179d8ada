"""HACE: hierarchy-aware cross-entropy over tree nodes (arXiv 2605.06274).

The network emits one logit per node except the root (``N - 1`` logits, nodes ordered as in
:mod:`hdl.hierarchy`: classes first).  ``p = softmax(logits)``; **prediction aggregation**
``q_n = p_n + sum of p over the descendants of n``; **ancestral label smoothing** gives the true
leaf ``d``, its m-th ancestor ``d (1 - d)^m`` and the topmost non-root ancestor the rest
``(1 - d)^T`` (T = its distance from the leaf), so every target row sums to 1.
Loss ``= -sum_n y_n log(q_n + eps)``.  The predicted class is the leaf with the largest ``q``
(for a leaf ``q = p``).

Flat tree: the nodes are exactly the classes, the targets one-hot for every ``d`` and
``q = p``, so HACE is cross-entropy up to ``eps``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .hierarchy import Hierarchy

__all__ = ["hace_target_matrix", "hace_aggregation_matrix", "hace_node_targets", "hace_aggregate",
           "hace_loss", "hace_predict", "HACEHead"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_d(d: float) -> float:
    if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 < d <= 1.0:
        raise ValueError(f"d must be a float in (0, 1], got {d!r}")
    return float(d)


def hace_target_matrix(hierarchy: Hierarchy, d: float = 0.7, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(C, N-1) node targets of every class with ancestral smoothing (rows sum to 1).

    ``d = 1`` puts all mass on the leaf; a class directly under the root gets 1 on its leaf.
    """
    d = _check_d(d)
    t = torch.zeros(hierarchy.num_classes, hierarchy.num_nodes - 1, dtype=torch.float64)
    for c in range(hierarchy.num_classes):
        path = [c] + hierarchy.ancestors(c)[:-1]  # leaf ... topmost non-root ancestor
        for m, node in enumerate(path[:-1]):
            t[c, node] = d * (1.0 - d) ** m
        t[c, path[-1]] = 1.0 - t[c].sum()
    return t.to(dtype)


def hace_aggregation_matrix(hierarchy: Hierarchy, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N-1, N-1) with ``[a, b] = 1`` when node b is a or lies below a (root excluded)."""
    r = hierarchy.root
    return torch.from_numpy(hierarchy.descendant_matrix[:r, :r].copy()).to(dtype)


def hace_node_targets(labels: torch.Tensor, target_matrix: torch.Tensor) -> torch.Tensor:
    """(B, N-1) node targets from class labels.

    Args:
        labels: (B,) int64 class indices, or (B, C) float class distributions (soft labels;
            the result is their mixture of the rows of ``target_matrix``).
        target_matrix: (C, N-1) from :func:`hace_target_matrix`.
    """
    tm = target_matrix.to(labels.device)
    c = tm.shape[0]
    if labels.ndim == 1 and not labels.is_floating_point():
        if labels.numel() and (labels.min() < 0 or labels.max() >= c):
            raise ValueError(f"labels must lie in [0, {c - 1}], got range "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        return tm[labels]
    if labels.ndim == 2 and labels.is_floating_point() and labels.shape[1] == c:
        return labels @ tm.to(labels.dtype)
    raise ValueError(f"labels must be (B,) int class indices or (B, {c}) float distributions, "
                     f"got shape {tuple(labels.shape)} dtype {labels.dtype}")


def hace_aggregate(node_logits: torch.Tensor, aggregation: torch.Tensor) -> torch.Tensor:
    """(B, N-1) aggregated probabilities ``q = softmax(node_logits) @ aggregation.T``."""
    if node_logits.ndim != 2 or node_logits.shape[1] != aggregation.shape[0]:
        raise ValueError(f"node_logits must have shape (B, {aggregation.shape[0]}), got {tuple(node_logits.shape)}")
    p = F.softmax(node_logits, dim=1)
    return p @ aggregation.to(p).T


def hace_loss(node_logits: torch.Tensor, node_targets: torch.Tensor, aggregation: torch.Tensor,
              eps: float = 1e-8, reduction: str = "mean") -> torch.Tensor:
    """``-sum_n y_n log(q_n + eps)`` per sample.

    Args:
        node_logits: (B, N-1) float.
        node_targets: (B, N-1) float, e.g. :func:`hace_node_targets`.
        aggregation: (N-1, N-1) from :func:`hace_aggregation_matrix`.
        eps: > 0 keeps the log finite when q underflows.
        reduction: 'mean', 'sum' or 'none'.  An empty batch gives 0 that supports backward().
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if node_targets.shape != node_logits.shape:
        raise ValueError(f"node_targets must have the shape of node_logits {tuple(node_logits.shape)}, "
                         f"got {tuple(node_targets.shape)}")
    q = hace_aggregate(node_logits, aggregation)
    loss = -(node_targets.to(q) * torch.log(q + eps)).sum(dim=1)
    if reduction == "none":
        return loss
    if loss.numel() == 0:
        return node_logits.sum() * 0.0
    return loss.mean() if reduction == "mean" else loss.sum()


def hace_predict(node_logits: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted class (B,) int64 and class scores (B, C) = the leaves' probabilities.

    The scores do not sum to 1 (internal nodes hold the rest of the mass); their ranking is the
    ranking by aggregated probability, so they serve for top-k metrics.
    """
    scores = F.softmax(node_logits, dim=1)[:, :num_classes]
    return scores.argmax(dim=1), scores


class HACEHead(nn.Module):
    """Linear layer to the ``N - 1`` non-root node logits, with the HACE loss and prediction.

    Args:
        num_features: input width F; ``forward`` maps (B, F) -> (B, N-1) node logits.
        hierarchy: the class tree.
        d: ancestral smoothing in (0, 1]; 0.7 by default.
        eps: log offset of :func:`hace_loss`.
    """

    def __init__(self, num_features: int, hierarchy: Hierarchy, d: float = 0.7, eps: float = 1e-8):
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be an int >= 1, got {num_features!r}")
        self.num_classes = hierarchy.num_classes
        self.eps = eps
        self.fc = nn.Linear(num_features, hierarchy.num_nodes - 1)
        self.register_buffer("target_matrix", hace_target_matrix(hierarchy, d), persistent=False)
        self.register_buffer("aggregation", hace_aggregation_matrix(hierarchy), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)

    def loss(self, node_logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """HACE loss for (B,) int labels or (B, C) float class distributions."""
        return hace_loss(node_logits, hace_node_targets(labels, self.target_matrix), self.aggregation,
                         self.eps, reduction)

    def predict(self, node_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return hace_predict(node_logits, self.num_classes)
