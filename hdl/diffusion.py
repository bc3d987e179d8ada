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


# normalized_affinity: rows per block of the symmetric edge list (bounds the build's temporaries)
AFFINITY_BLOCK_ROWS = 1 << 16


def normalized_affinity(graph_sims: torch.Tensor, graph_idx: torch.Tensor, k: int = 50,
                        gamma: float = 3.0, block_rows: int = AFFINITY_BLOCK_ROWS) -> torch.Tensor:
    """Sparse CSR float32 (N, N) ``D^-1/2 (W + W^T) D^-1/2`` of the top-``k`` graph edges.

    Built row block by row block (``block_rows`` rows each): a block's entries are its rows' own
    edges and the reversed edges that point into it, sorted by (row, column) with an edge present in
    both directions summed, as a coalesced sparse COO tensor holds them; the CSR arrays are written
    directly.  The temporaries are those of one block instead of four int64 copies of all 2E
    entries, and the indices are int32 below 2^31 entries (``python scripts/bench_affinity.py``, a
    random 1M x 50 graph, one thread: 1.78 GiB of peak memory over the inputs and 78 s, against
    6.58 GiB and 98 s through a coalesced COO tensor)."""
    n, width = graph_idx.shape
    k = min(k, width)
    dev = graph_idx.device
    idx = graph_idx[:, :k]

    def kept(a: int, b: int):
        """The kept edges of rows a..b-1: (mask, weights) of those rows' graph columns."""
        w = graph_sims[a:b, :k].float().clamp(min=0).pow(gamma)
        blk = idx[a:b]
        return (blk >= 0) & (w > 0) & (blk != torch.arange(a, b, device=dev).unsqueeze(1)), w

    step = max(1, int(block_rows))
    small = torch.int32 if n < 2 ** 31 else torch.long  # node ids of the edge lists
    per_row = torch.zeros(n, dtype=torch.long, device=dev)
    in_count = torch.zeros(n, dtype=torch.long, device=dev)  # kept edges pointing into each node
    for a in range(0, n, step):
        b = min(n, a + step)
        bkeep, _ = kept(a, b)
        per_row[a:b] = bkeep.sum(dim=1)
        in_count += torch.bincount(idx[a:b][bkeep], minlength=n)
        del bkeep
    in_start = torch.zeros(n + 1, dtype=torch.long, device=dev)
    in_start[1:] = in_count.cumsum(0)
    e = int(in_start[n])
    # the reversed edges grouped by their row (= the out-edge's column), in source-row order within
    # a group (a stable counting sort, a block of rows at a time): rr[j] the source row, rv[j] the
    # weight; no copy of all E out-edges and no global sort (their temporaries were the peak)
    rr = torch.empty(e, dtype=small, device=dev)
    rv = torch.empty(e, dtype=torch.float32, device=dev)
    fill = in_start[:n].clone()
    for a in range(0, n, step):
        b = min(n, a + step)
        bkeep, bw = kept(a, b)
        cols = idx[a:b][bkeep]
        order = torch.argsort(cols, stable=True)
        sc = cols[order]
        rank = torch.arange(len(sc), device=dev) - torch.searchsorted(sc, sc)
        pos = fill[sc] + rank
        rr[pos] = torch.repeat_interleave(torch.arange(a, b, device=dev), per_row[a:b])[order].to(small)
        rv[pos] = bw[bkeep][order]
        fill += torch.bincount(cols, minlength=n)
        del bkeep, bw, cols, order, sc, rank, pos
    del fill
    crow = torch.zeros(n + 1, dtype=torch.long, device=dev)
    deg = torch.zeros(n, dtype=torch.float32, device=dev)
    # the blocks write into buffers of the 2E entries before merging (an upper bound of the
    # result's size), used as views of their first entries: no concatenation copy at the end
    col_buf = torch.empty(2 * e, dtype=small, device=dev)
    val_buf = torch.empty(2 * e, dtype=torch.float32, device=dev)
    pos = 0
    for a in range(0, n, step):
        b = min(n, a + step)
        i0, i1 = int(in_start[a]), int(in_start[b])
        own = torch.repeat_interleave(torch.arange(a, b, device=dev), per_row[a:b])
        into = torch.repeat_interleave(torch.arange(a, b, device=dev), in_count[a:b])
        bkeep, bw = kept(a, b)
        rows = torch.cat([own, into])
        cs = torch.cat([idx[a:b][bkeep], rr[i0:i1].long()])
        vs = torch.cat([bw[bkeep], rv[i0:i1]])
        del own, into, bkeep, bw
        key, order = torch.sort(rows * n + cs)
        del rows, cs
        vs = vs[order]
        del order
        first = torch.ones(len(key), dtype=torch.bool, device=dev)
        first[1:] = key[1:] != key[:-1]
        slot = first.cumsum(0) - 1
        summed = torch.zeros(int(first.sum()), dtype=torch.float32, device=dev).index_add_(0, slot, vs)
        ukey = key[first]
        del key, first, slot, vs
        urow = ukey // n
        deg.index_add_(0, urow, summed)  # row by row in column order, as over the coalesced entries
        col_buf[pos:pos + len(ukey)] = ukey % n
        val_buf[pos:pos + len(ukey)] = summed
        pos += len(ukey)
        crow[a + 1:b + 1] = torch.bincount(urow - a, minlength=b - a).cumsum(0)
        crow[a + 1:b + 1] += crow[a]
        del ukey, urow
    del rr, rv
    col, val = col_buf[:pos], val_buf[:pos]
    deg[deg == 0] = 1.0
    dinv = deg.rsqrt()
    for a in range(0, n, step):  # val = val * dinv[row] * dinv[col], a block of rows at a time
        b = min(n, a + step)
        s0, s1 = int(crow[a]), int(crow[b])
        rows = torch.repeat_interleave(torch.arange(a, b, device=dev), crow[a + 1:b + 1] - crow[a:b])
        val[s0:s1] = val[s0:s1] * dinv[rows] * dinv[col[s0:s1].long()]
    if len(val) >= 2 ** 31:
        small = torch.long
    with warnings.catch_warnings():  # "sparse CSR support is in beta"; CSR multiplies 2x faster
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow.to(small), col.to(small), val, (n, n))


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
