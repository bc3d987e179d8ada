"""Mistake-severity metrics over a class hierarchy.

At level ``l`` every class is replaced by its level-``l`` ancestor
(:meth:`Hierarchy.level_ancestor`: ``l`` steps up, never above the root's children; level 0 is
the class itself).  A prediction is a *mistake* at level l when its level-l node differs from the
target's.  Its *distance* is the height of the lowest common ancestor of the two level-l nodes
(heights in the full tree, so distances at all levels share one scale; for a tree with all leaves
at one depth this is the classes' LCA height ``h(i, j)``), and 0 when the nodes coincide.

For each level and each k in ``topk`` (the k highest-ranked predictions of each sample):

* ``top{k}_error``: fraction of samples whose target node is not among the k predicted nodes;
* ``top{k}_mistake_dist``: mean distance over the (sample, rank) pairs that are mistakes;
  **0.0 when there is no mistake** (never NaN; read it together with the error);
* ``top{k}_dist``: mean distance over all N * k (sample, rank) pairs.

For k = 1 these are the usual error rate, hierarchical distance of mistakes and average
hierarchical distance.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from .hierarchy import Hierarchy

__all__ = ["level_distance_matrix", "mistake_severity"]


def level_distance_matrix(hierarchy: Hierarchy, level: int) -> np.ndarray:
    """(C, C) float64 distance between classes at ``level`` (see module docstring)."""
    anc = hierarchy.level_ancestor(level)
    a = np.broadcast_to(anc[:, None], hierarchy.lca_matrix.shape)
    b = np.broadcast_to(anc[None, :], hierarchy.lca_matrix.shape)
    cand = np.stack([a, b, hierarchy.lca_matrix])  # the shallowest of the three is LCA(a, b)
    pick = np.take_along_axis(cand, hierarchy.depth[cand].argmin(axis=0)[None], axis=0)[0]
    return np.where(a == b, 0.0, hierarchy.height[pick].astype(np.float64))


def _ranked(predictions, num_classes: int, kmax: int) -> torch.Tensor:
    p = torch.as_tensor(predictions)
    if p.is_floating_point():
        if p.ndim != 2 or p.shape[1] != num_classes:
            raise ValueError(f"float predictions must be (N, {num_classes}) scores, got shape {tuple(p.shape)}")
        return torch.topk(p.detach().cpu(), min(kmax, num_classes), dim=1).indices
    p = p.detach().cpu().long()
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2:
        raise ValueError(f"int predictions must be (N,) or (N, K) ranked class indices, got shape {tuple(p.shape)}")
    if p.numel() and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predicted classes must lie in [0, {num_classes - 1}]")
    return p


def mistake_severity(predictions, targets, hierarchy: Hierarchy, topk: Sequence[int] = (1, 5),
                     levels: Iterable[int] | None = None, prefix: str = "sev") -> dict[str, float]:
    """Error, mistake distance and distance per level and k, as a flat dict of floats.

    Args:
        predictions: (N, C) float scores (higher is better), or (N,) / (N, K) int class indices
            ranked best first.
        targets: (N,) int true classes in [0, C-1]; N >= 1.
        hierarchy: the class tree.
        topk: the k values.  With scores, k larger than C is skipped; with int predictions, k
            larger than K raises ValueError.
        levels: levels to report; default ``range(hierarchy.num_levels)``.
        prefix: key prefix.
    Returns:
        ``{f"{prefix}/l{l}/top{k}_error" | "_mistake_dist" | "_dist": float}``.
    """
    c = hierarchy.num_classes
    ks = list(topk)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"topk must be a non-empty sequence of ints >= 1, got {topk!r}")
    is_scores = torch.as_tensor(predictions).is_floating_point()
    ranked = _ranked(predictions, c, max(ks))
    if is_scores:
        ks = [k for k in ks if k <= c]
    elif max(ks) > ranked.shape[1]:
        raise ValueError(f"topk {topk!r} needs at least {max(ks)} ranked predictions per sample, "
                         f"got {ranked.shape[1]}")
    t = torch.as_tensor(targets).detach().cpu()
    if t.ndim != 1 or t.is_floating_point() or t.shape[0] != ranked.shape[0] or t.shape[0] == 0:
        raise ValueError(f"targets must be a non-empty (N,) int tensor with N = {ranked.shape[0]}, "
                         f"got shape {tuple(t.shape)} dtype {t.dtype}")
    if t.min() < 0 or t.max() >= c:
        raise ValueError(f"targets must lie in [0, {c - 1}]")
    ranked, t = ranked.numpy(), t.long().numpy()
    levels = range(hierarchy.num_levels) if levels is None else list(levels)
    out: dict[str, float] = {}
    for lev in levels:
        if not isinstance(lev, (int, np.integer)) or not 0 <= lev < hierarchy.num_levels:
            raise ValueError(f"levels must be ints in [0, {hierarchy.num_levels - 1}], got {lev!r}")
        anc = hierarchy.level_ancestor(lev)
        dist = level_distance_matrix(hierarchy, lev)[ranked, t[:, None]]  # (N, K)
        wrong = anc[ranked] != anc[t][:, None]
        for k in ks:
            key = f"{prefix}/l{lev}/top{k}"
            w, d = wrong[:, :k], dist[:, :k]
            out[f"{key}_error"] = float(w.all(axis=1).mean())
            out[f"{key}_mistake_dist"] = float(d[w].mean()) if w.any() else 0.0
            out[f"{key}_dist"] = float(d.mean())
    return out
