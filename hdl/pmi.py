"""Information-theoretic label embeddings from pointwise mutual information (Chollet 2016).

``PMI_ij = log p(i, j) / (p(i) p(j))`` from class co-occurrence counts; on single-label data the
co-occurrence comes from kNN neighbourhoods in embedding space (:func:`cooccurrence_from_knn`)
or any given matrix (e.g. a confusion matrix).  The symmetric eigendecomposition
``PMI = U S U^T`` restricted to positive eigenvalues gives ``E = U sqrt(S)``, so ``E E^T`` is the
positive-semidefinite part of PMI.  A sample's target is its label's row of E, L2-normalised;
the network regresses it with ``loss = 1 - cos(e_pred, e)``; decoding picks the class whose
embedding has the largest cosine with the prediction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cooccurrence_from_knn", "ppmi", "pmi_embeddings", "pmi_targets", "pmi_loss", "pmi_decode"]

_REDUCTIONS = ("mean", "sum", "none")


def cooccurrence_from_knn(neighbors, labels, num_classes: int, symmetric: bool = True) -> torch.Tensor:
    """(C, C) float64 counts of (label of sample, label of neighbour) over labeled pairs.

    Args:
        neighbors: (N, k) int neighbour indices into the N samples; -1 marks a missing neighbour.
        labels: (N,) int class per sample; -1 marks an unknown label.  A pair counts only when
            both the sample and the neighbour are labeled.
        num_classes: C.
        symmetric: return ``(M + M^T) / 2`` so the matrix does not depend on the graph's direction.
    Returns:
        float64 tensor on the device of ``neighbors``.
    """
    nb = torch.as_tensor(neighbors)
    lab = torch.as_tensor(labels, device=nb.device)
    if nb.ndim != 2 or nb.is_floating_point():
        raise ValueError(f"neighbors must be an (N, k) int tensor, got shape {tuple(nb.shape)} dtype {nb.dtype}")
    if lab.shape != (nb.shape[0],) or lab.is_floating_point():
        raise ValueError(f"labels must be an ({nb.shape[0]},) int tensor, got shape {tuple(lab.shape)} dtype {lab.dtype}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    if nb.numel() and (nb.min() < -1 or nb.max() >= nb.shape[0]):
        raise ValueError(f"neighbors must lie in [-1, {nb.shape[0] - 1}]")
    if lab.numel() and (lab.min() < -1 or lab.max() >= num_classes):
        raise ValueError(f"labels must lie in [-1, {num_classes - 1}], got [{int(lab.min())}, {int(lab.max())}]")
    nb, lab = nb.long(), lab.long()
    src = lab[:, None].expand_as(nb)
    dst = torch.where(nb >= 0, lab[nb.clamp_min(0)], torch.full_like(nb, -1))
    ok = (src >= 0) & (dst >= 0)
    flat = src[ok] * num_classes + dst[ok]
    m = torch.bincount(flat, minlength=num_classes * num_classes).double().view(num_classes, num_classes)
    return (m + m.T) / 2 if symmetric else m


def ppmi(cooccurrence, smoothing: float = 1.0, positive: bool = True) -> torch.Tensor:
    """(C, C) float64 (positive) PMI of a non-negative co-occurrence matrix.

    ``p_ij = (M_ij + smoothing) / (sum(M) + smoothing C^2)``, ``p_i = sum_j p_ij``,
    ``p_j = sum_i p_ij``.  With ``positive`` (default) negative PMI is set to 0 (PPMI), which also
    covers zero counts; with ``smoothing = 0`` a zero count gives PMI 0 under ``positive`` and a
    ValueError otherwise.  ``smoothing`` is in count units (add-one by default).
    """
    m = torch.as_tensor(cooccurrence).double()
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"cooccurrence must be a non-empty (C, C) matrix, got shape {tuple(m.shape)}")
    if (m < 0).any() or not torch.isfinite(m).all():
        raise ValueError("cooccurrence must be finite and non-negative")
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or smoothing < 0:
        raise ValueError(f"smoothing must be a float >= 0, got {smoothing!r}")
    c = m.shape[0]
    total = m.sum() + smoothing * c * c
    if total <= 0:
        raise ValueError("cooccurrence is all zero and smoothing is 0: nothing to estimate")
    p = (m + smoothing) / total
    pi, pj = p.sum(dim=1, keepdim=True), p.sum(dim=0, keepdim=True)
    zero = p == 0
    if zero.any() and not positive:
        raise ValueError("zero co-occurrences give PMI = -inf: use smoothing > 0 or positive=True")
    pmi = torch.log(p.where(~zero, torch.ones_like(p))) - torch.log(pi.clamp_min(1e-300)) - torch.log(pj.clamp_min(1e-300))
    pmi = pmi.masked_fill(zero, 0.0)
    return pmi.clamp_min(0.0) if positive else pmi


def pmi_embeddings(pmi, dim: int | None = None, tol: float = 1e-10) -> torch.Tensor:
    """(C, r) float64 embeddings ``E = U sqrt(S)`` from the positive eigenvalues of ``pmi``.

    Args:
        pmi: (C, C) symmetric matrix.
        dim: keep at most this many largest eigenvalues; ``None`` keeps all positive ones.
        tol: eigenvalues ``<= tol * max|eigenvalue|`` count as zero.
    Returns:
        Columns ordered by decreasing eigenvalue, each signed so its largest-magnitude entry is
        positive; ``r = min(dim, number of positive eigenvalues)``.  ``E @ E.T`` is the positive
        part of ``pmi`` when ``dim`` is None.
    """
    a = torch.as_tensor(pmi).double()
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ValueError(f"pmi must be a non-empty (C, C) matrix, got shape {tuple(a.shape)}")
    if not torch.allclose(a, a.T, rtol=1e-8, atol=1e-10):
        raise ValueError("pmi must be symmetric (symmetrise the co-occurrence counts first)")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ValueError(f"dim must be None or an int >= 1, got {dim!r}")
    vals, vecs = torch.linalg.eigh((a + a.T) / 2)
    order = torch.argsort(vals, descending=True)
    vals, vecs = vals[order], vecs[:, order]
    keep = vals > tol * vals.abs().max().clamp_min(torch.finfo(vals.dtype).tiny)
    if not keep.any():
        raise ValueError("pmi has no positive eigenvalue: no embedding can be built")
    vals, vecs = vals[keep], vecs[:, keep]
    if dim is not None:
        vals, vecs = vals[:dim], vecs[:, :dim]
    big = vecs.abs().argmax(dim=0)
    signs = torch.sign(vecs[big, torch.arange(vecs.shape[1])])
    return vecs * signs.where(signs != 0, torch.ones_like(signs)) * vals.sqrt()


def pmi_targets(labels: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """(B, r) L2-normalised targets: ``E[labels]`` for (B,) int labels, or the normalised
    ``labels @ E`` for (B, C) float (multi-hot or soft) labels.  A zero row stays zero.
    """
    e = embeddings.to(labels.device)
    c = e.shape[0]
    if labels.ndim == 1 and not labels.is_floating_point():
        if labels.numel() and (labels.min() < 0 or labels.max() >= c):
            raise ValueError(f"labels must lie in [0, {c - 1}]")
        t = e[labels]
    elif labels.ndim == 2 and labels.is_floating_point() and labels.shape[1] == c:
        t = labels.to(e.dtype) @ e
    else:
        raise ValueError(f"labels must be (B,) int or (B, {c}) float, got shape {tuple(labels.shape)} "
                         f"dtype {labels.dtype}")
    return F.normalize(t, dim=1)


def pmi_loss(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``1 - cos(pred, target)`` per row; pred and target (B, r).  Empty batch -> 0 for mean/sum."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if pred.ndim != 2 or target.shape != pred.shape:
        raise ValueError(f"pred and target must both be (B, r); got {tuple(pred.shape)} and {tuple(target.shape)}")
    loss = 1.0 - F.cosine_similarity(pred, target.to(pred), dim=1, eps=1e-8)
    if reduction == "none":
        return loss
    if loss.numel() == 0:
        return pred.sum() * 0.0
    return loss.mean() if reduction == "mean" else loss.sum()


def pmi_decode(pred: torch.Tensor, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class (B,) int64 with the largest cosine, and the (B, C) cosine scores."""
    e = F.normalize(embeddings.to(pred), dim=1)
    scores = F.normalize(pred, dim=1) @ e.T
    return scores.argmax(dim=1), scores
