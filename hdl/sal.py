"""S-AL: semantically augmented soft labels (arXiv 2308.00607).

The target of class i is ``y_i = beta * onehot_i + (1 - beta) * q_i`` with
``q_ij = max(s_ij, 0) / sum_j max(s_ij, 0)`` for a class similarity ``s``:

* from a hierarchy (HT-AL): ``s_ij = 1 - h(i, j) / L``, ``h`` the LCA height, ``L = max h``;
* from class-name vectors (WE-AL): ``s_ij`` = cosine of the vectors.

Train with :func:`soft_cross_entropy` on ``targets[labels]``.  ``beta = 1`` is plain one-hot
cross-entropy, and so is a flat hierarchy for every ``beta`` (all off-diagonal ``s`` are 0).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .hierarchy import Hierarchy

__all__ = ["sal_similarity_from_hierarchy", "sal_similarity_from_vectors", "sal_targets",
           "soft_cross_entropy"]

_REDUCTIONS = ("mean", "sum", "none")


def _square(s, name: str) -> torch.Tensor:
    s = torch.from_numpy(np.array(s)) if isinstance(s, np.ndarray) else torch.as_tensor(s)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square (C, C) matrix, got shape {tuple(s.shape)}")
    return s if s.is_floating_point() else s.double()


def sal_similarity_from_hierarchy(h: "Hierarchy | np.ndarray | torch.Tensor") -> torch.Tensor:
    """``s = 1 - h / L`` from the (C, C) LCA heights (or a :class:`Hierarchy`); float64 tensor.

    ``L`` is the largest height; a single class (``L = 0``) gives ``[[1.0]]``.  For a tree whose
    leaves all sit at the same depth this equals the Gram matrix of the L2-normalised rows of
    ``Hierarchy.ancestor_indicator``.
    """
    if isinstance(h, Hierarchy):
        h = h.lca_height
    h = _square(h, "h").double()
    if (h < 0).any() or (h.diagonal() != 0).any():
        raise ValueError("h must be non-negative with a zero diagonal (LCA heights)")
    top = h.max()
    return torch.ones_like(h) if top == 0 else 1.0 - h / top


def sal_similarity_from_vectors(vectors: "np.ndarray | torch.Tensor") -> torch.Tensor:
    """(C, C) cosine similarity of the rows of ``vectors`` (C, D); same float dtype (ints: float64).

    A zero row has similarity 0 with every class, itself included; :func:`sal_targets` then
    gives that class its one-hot target.
    """
    v = torch.from_numpy(np.array(vectors)) if isinstance(vectors, np.ndarray) else torch.as_tensor(vectors)
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValueError(f"vectors must have shape (C, D) with C >= 1, got {tuple(v.shape)}")
    v = v if v.is_floating_point() else v.double()
    v = F.normalize(v, dim=1)
    return v @ v.T


def sal_targets(s: "np.ndarray | torch.Tensor", beta: float = 0.4) -> torch.Tensor:
    """(C, C) soft targets; row i is ``beta * onehot_i + (1 - beta) * q_i`` (rows sum to 1).

    Args:
        s: (C, C) class similarity; negative entries are clipped to 0.  A row whose clipped sum is
            0 uses ``q_i = onehot_i``.
        beta: weight of the one-hot part in [0, 1]; 0.4 was the value chosen on CIFAR-100.
    Returns:
        Tensor of the dtype and device of ``s`` (float64 for integer input).
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be a float in [0, 1], got {beta!r}")
    s = _square(s, "s")
    pos = s.clamp_min(0)
    eye = torch.eye(s.shape[0], dtype=s.dtype, device=s.device)
    total = pos.sum(dim=1, keepdim=True)
    q = torch.where(total > 0, pos / total.clamp_min(torch.finfo(s.dtype).tiny), eye)
    return beta * eye + (1.0 - beta) * q


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``-sum_c targets[b, c] * log_softmax(logits)[b, c]``.

    Args:
        logits: (B, C) float.
        targets: (B, C) float (rows normally sum to 1), e.g. ``sal_targets(s)[labels]``.
        reduction: 'mean' (over B), 'sum' or 'none' ((B,) tensor).  An empty batch gives 0 for
            'mean' and 'sum', still connected to ``logits`` for backward().
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if logits.ndim != 2 or targets.shape != logits.shape:
        raise ValueError(f"logits and targets must both have shape (B, C); got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    loss = -(targets.to(logits.dtype) * F.log_softmax(logits, dim=1)).sum(dim=1)
    if reduction == "none":
        return loss
    if loss.numel() == 0:
        return logits.sum() * 0.0
    return loss.mean() if reduction == "mean" else loss.sum()
