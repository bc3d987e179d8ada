"""Label diffusion over a kNN graph, as in Iscen et al., "Label Propagation for Deep
Semi-supervised Learning", CVPR 2019 (the rules of the authors' ``lp/db_semisuper.py``).

Pure functions over tensors, on the graph's device.  Procedure of :func:`diffusion_scores`:

1. Affinity ``W[i, j] = s_ij ** gamma`` on the top-``k`` graph edges of every row (gamma = 3),
   ``W + W^T``, zero diagonal; ``Wn = D^-1/2 W D^-1/2`` with D the row sums (a row without edges
   keeps degree 1).
2. Class-normalised seeds: ``Y[i, c] = 1 / |L_c|`` for the given labels of class c.
3. Solve ``(I - alpha Wn) Z = Y`` by conjugate gradient (``iters`` steps, alpha = 0.99), all
   classes at once (each column has its own step sizes, as separate CG runs would).
4. Negative scores (numerical error) are set to 0.

*Ours* (not in the paper's code): negative similarities count as 0 before the power (the paper's
features are non-negative after a ReLU, so its cosines never are); a sample whose scores are all
0 (no path to any labeled sample) gets no label (-1) instead of class 0.

:func:`diffusion_label` turns the scores into labels: the argmax per row, with the certainty
``1 - H(p) / log C`` of the row-normalised scores (divided by its maximum, as in the paper).
Graph sentinels: ``graph_idx == -1`` marks a missing neighbour (ignored).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Tuple

import torch

from hdl.graph_labels import LabelResult, _check_inputs


def normalized_affinity(graph_sims: torch.Tensor, graph_idx: torch.Tensor, k: int = 50,
                        gamma: float = 3.0) -> torch.Tensor:
    """Sparse CSR float32 (N, N) ``D^-1/2 (W + W^T) D^-1/2`` of the top-``k`` graph edges."""
    n, width = graph_idx.shape
    k = min(k, width)
    idx = graph_idx[:, :k]
    valid = idx >= 0
    w = graph_sims[:, :k].float().clamp(min=0).pow(gamma)
    rows = torch.arange(n, device=idx.device).unsqueeze(1).expand(-1, k)
    keep = valid & (idx != rows) & (w > 0)
    r, c, v = rows[keep], idx[keep], w[keep]
    ii = torch.cat([r, c])
    jj = torch.cat([c, r])
    w_sym = torch.sparse_coo_tensor(torch.stack([ii, jj]), torch.cat([v, v]), (n, n),
                                    check_invariants=False).coalesce()
    deg = torch.zeros(n, dtype=torch.float32, device=idx.device)
    deg.index_add_(0, w_sym.indices()[0], w_sym.values())
    deg[deg == 0] = 1.0
    dinv = deg.rsqrt()
    i2 = w_sym.indices()
    vals = w_sym.values() * dinv[i2[0]] * dinv[i2[1]]
    out = torch.sparse_coo_tensor(i2, vals, (n, n), check_invariants=False, is_coalesced=True)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"; CSR multiplies 2x faster
        warnings.simplefilter("ignore", UserWarning)
        return out.to_sparse_csr()


def conjugate_gradient(matvec, b: torch.Tensor, iters: int = 20, tol: float = 1e-6) -> torch.Tensor:
    """Solve ``A X = B`` column by column for a symmetric positive definite ``A`` given as
    ``matvec(X) -> A X`` (X float (N, C)); ``iters`` steps at most, a column stops once its
    residual norm is below ``tol`` times that of its right-hand side."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum(dim=0)
    stop = rs.sqrt() <= tol * b.norm(dim=0).clamp(min=1e-30)
    for _ in range(iters):
        if bool(stop.all()):
            break
        ap = matvec(p)
        denom = (p * ap).sum(dim=0)
        a = torch.where(stop | (denom == 0), torch.zeros_like(rs), rs / denom.where(denom != 0, torch.ones_like(denom)))
        x = x + a * p
        r = r - a * ap
        rs_new = (r * r).sum(dim=0)
        beta = torch.where(rs > 0, rs_new / rs.clamp(min=1e-30), torch.zeros_like(rs))
        p = r + beta * p
        rs = rs_new
        stop = stop | (rs.sqrt() <= tol * b.norm(dim=0).clamp(min=1e-30))
    return x


@torch.no_grad()
def diffusion_scores(graph_sims: torch.Tensor, graph_idx: torch.Tensor, labels: torch.Tensor,
                     num_classes: int, k: int = 50, gamma: float = 3.0, alpha: float = 0.99,
                     iters: int = 20, affinity: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Diffused class scores float32 (N, C) >= 0 (module docstring, steps 1-4).  ``affinity``: the
    :func:`normalized_affinity` of this graph with this ``k`` and ``gamma``, when the caller diffuses
    several label sets over one graph (it does not depend on the labels)."""
    _check_inputs(graph_sims, graph_idx, labels, num_classes)
    for name, v, ok in (("k", k, isinstance(k, int) and k >= 1), ("gamma", gamma, gamma > 0),
                        ("alpha", alpha, 0 <= alpha < 1), ("iters", iters, isinstance(iters, int) and iters >= 1)):
        if not ok:
            raise ValueError(f"{name} out of range: got {v!r} (k, iters: int >= 1; gamma > 0; 0 <= alpha < 1)")
    n = labels.shape[0]
    wn = normalized_affinity(graph_sims, graph_idx, k, gamma) if affinity is None else affinity
    y = torch.zeros(n, num_classes, dtype=torch.float32, device=labels.device)
    lab = labels >= 0
    if lab.any():
        counts = torch.bincount(labels[lab], minlength=num_classes).float()
        y[lab.nonzero().squeeze(1), labels[lab]] = 1.0 / counts[labels[lab]]
    z = conjugate_gradient(lambda v: v - alpha * (wn @ v), y, iters)
    return z.clamp(min=0)


@torch.no_grad()
def diffusion_label(graph_sims: torch.Tensor, graph_idx: torch.Tensor, labels: torch.Tensor,
                    num_classes: int, k: int = 50, gamma: float = 3.0, alpha: float = 0.99,
                    iters: int = 20) -> Tuple[LabelResult, torch.Tensor]:
    """Labels from :func:`diffusion_scores`: given labels kept, the rest the argmax of the scores
    (-1 where all scores are 0).  Returns (:class:`LabelResult` with level 1 for the diffused
    samples and ``agreement`` = the paper's certainty weight, scores float32 (N, C))."""
    z = diffusion_scores(graph_sims, graph_idx, labels, num_classes, k, gamma, alpha, iters)
    lab = labels >= 0
    p = z / z.sum(dim=1, keepdim=True).clamp(min=1e-30)
    ent = -(p * p.clamp(min=1e-30).log()).sum(dim=1)
    cert = 1 - ent / math.log(num_classes) if num_classes > 1 else torch.ones_like(ent)
    cert = cert / cert.max().clamp(min=1e-30)
    reached = z.sum(dim=1) > 0
    out = torch.where(lab, labels, torch.where(reached, z.argmax(dim=1), torch.full_like(labels, -1)))
    level = torch.where(lab, torch.zeros_like(labels), torch.where(reached, 1, -1))
    agreement = torch.where(lab, torch.ones_like(cert), torch.where(reached, cert, torch.zeros_like(cert)))
    return LabelResult(out, level, agreement.float(), min(k, graph_idx.shape[1]), 1), z
