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
from typing import NamedTuple, Optional, Tuple, Union

import torch

from hdl.graph_labels import LabelResult, _check_inputs, reversed_edges


# normalized_affinity: rows per block of the symmetric edge list (bounds the build's temporaries)
AFFINITY_BLOCK_ROWS = 1 << 16
# diffusion_affinity: CPU graphs of at least this many rows are renumbered into a locality order
# before the affinity is built (see its docstring for the measurements)
LOCALITY_MIN_ROWS = 200_000


class Affinity(NamedTuple):
    """A :func:`normalized_affinity` ``matrix`` over renumbered nodes: its row and column ``r``
    stand for the graph's node ``order[r]`` (``order`` None: the graph's own numbering)."""

    matrix: torch.Tensor
    order: Optional[torch.Tensor] = None


def locality_order(graph_idx: torch.Tensor) -> torch.Tensor:
    """Int64 (N,) permutation of the nodes (on ``graph_idx``'s device) that puts neighbours near
    each other: scipy's reverse Cuthill-McKee ordering of the kNN graph's edge pattern (a
    breadth-first search from low-degree nodes, O(edges); ``symmetric_mode=True``, so it follows
    the listed edges without building their transpose)."""
    import numpy as np
    import scipy.sparse as sp
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    n = graph_idx.shape[0]
    idx = graph_idx.detach().cpu()
    valid = idx >= 0
    counts = valid.sum(dim=1)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts.numpy(), out=indptr[1:])
    cols = idx[valid].to(torch.int32).numpy()
    pattern = sp.csr_matrix((np.ones(len(cols), dtype=np.int8), cols, indptr), shape=(n, n))
    order = reverse_cuthill_mckee(pattern, symmetric_mode=True)
    return torch.from_numpy(order.astype(np.int64)).to(graph_idx.device)


def normalized_affinity(graph_sims: torch.Tensor, graph_idx: torch.Tensor, k: int = 50,
                        gamma: float = 3.0, block_rows: int = AFFINITY_BLOCK_ROWS,
                        order: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sparse CSR float32 (N, N) ``D^-1/2 (W + W^T) D^-1/2`` of the top-``k`` graph edges.

    Built row block by row block (``block_rows`` rows each): a block's entries are its rows' own
    edges and the reversed edges that point into it, sorted by (row, column) with an edge present in
    both directions summed, as a coalesced sparse COO tensor holds them; the CSR arrays are written
    directly.  The temporaries are those of one block instead of four int64 copies of all 2E
    entries, and the indices are int32 below 2^31 entries (``python scripts/bench_affinity.py``, a
    random 1M x 50 graph, one thread: 1.78 GiB of peak memory over the inputs and 78 s, against
    6.58 GiB and 98 s through a coalesced COO tensor).

    ``order``: an int64 (N,) permutation of the nodes; the matrix is then that of the renumbered
    graph whose node ``r`` is the graph's node ``order[r]`` (rows read a block at a time, no
    renumbered copy of the graph)."""
    n, width = graph_idx.shape
    k = min(k, width)
    dev = graph_idx.device
    inv = None
    if order is not None:
        order = order.to(dev)
        inv = torch.empty_like(order)
        inv[order] = torch.arange(n, device=dev)

    def kept(a: int, b: int):
        """The edges of rows a..b-1: (neighbour ids, kept mask, weights) of those rows' graph columns."""
        rows = slice(a, b) if order is None else order[a:b]
        w = graph_sims[rows, :k].float().clamp(min=0).pow(gamma)
        blk = graph_idx[rows, :k]
        if inv is not None:
            blk = torch.where(blk >= 0, inv[blk.clamp(min=0)], blk)
        return blk, (blk >= 0) & (w > 0) & (blk != torch.arange(a, b, device=dev).unsqueeze(1)), w

    step = max(1, int(block_rows))
    small = torch.int32 if n < 2 ** 31 else torch.long  # node ids of the edge lists
    # the reversed edges grouped by their row (= the out-edge's column), in source-row order within
    # a group: rr[j] the source row, rv[j] the weight; no copy of all E out-edges and no global
    # sort (their temporaries were the peak)
    in_start, rr, rv, per_row = reversed_edges(n, step, kept, dev)
    in_count = in_start[1:] - in_start[:-1]
    e = int(in_start[n])
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
        blk, bkeep, bw = kept(a, b)
        rows = torch.cat([own, into])
        cs = torch.cat([blk[bkeep], rr[i0:i1].long()])
        vs = torch.cat([bw[bkeep], rv[i0:i1]])
        del own, into, blk, bkeep, bw
        key, perm = torch.sort(rows * n + cs)
        del rows, cs
        vs = vs[perm]
        del perm
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


def diffusion_affinity(graph_sims: torch.Tensor, graph_idx: torch.Tensor, k: int = 50,
                       gamma: float = 3.0) -> Affinity:
    """The :func:`normalized_affinity` :func:`diffusion_scores` solves with, as an :class:`Affinity`:
    on the CPU from :data:`LOCALITY_MIN_ROWS` rows on, over the nodes renumbered by
    :func:`locality_order`, else in the graph's numbering.

    Why: each conjugate-gradient step multiplies the sparse matrix by an (N, C) block, gathering
    a C-float row for each of ~2 N k entries; in the order of a training set (shuffled) those
    reads miss the caches.  At 1M rows x k = 50 (88M entries, C = 20, one thread) a product took
    1.8 s in a shuffled order and 0.69 s after the renumbering, which itself took 1.0 s
    (the graph's rows sorted by class, an order no real data set has: 0.59 s)."""
    order = None
    if graph_idx.device.type == "cpu" and graph_idx.shape[0] >= LOCALITY_MIN_ROWS:
        order = locality_order(graph_idx[:, :k])
    return Affinity(normalized_affinity(graph_sims, graph_idx, k, gamma, order=order), order)


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
                     iters: int = 20,
                     affinity: Union[torch.Tensor, Affinity, None] = None) -> torch.Tensor:
    """Diffused class scores float32 (N, C) >= 0 (module docstring, steps 1-4).  ``affinity``: the
    :func:`diffusion_affinity` (or a :func:`normalized_affinity` tensor, in the graph's numbering)
    of this graph with this ``k`` and ``gamma``, when the caller diffuses several label sets over
    one graph (it does not depend on the labels); built here when None.  A renumbered affinity
    gives the same solution up to float rounding (the sums run in another order)."""
    _check_inputs(graph_sims, graph_idx, labels, num_classes)
    for name, v, ok in (("k", k, isinstance(k, int) and k >= 1), ("gamma", gamma, gamma > 0),
                        ("alpha", alpha, 0 <= alpha < 1), ("iters", iters, isinstance(iters, int) and iters >= 1)):
        if not ok:
            raise ValueError(f"{name} out of range: got {v!r} (k, iters: int >= 1; gamma > 0; 0 <= alpha < 1)")
    n = labels.shape[0]
    if affinity is None:
        affinity = diffusion_affinity(graph_sims, graph_idx, k, gamma)
    wn, order = (affinity.matrix, affinity.order) if isinstance(affinity, Affinity) else (affinity, None)
    y = torch.zeros(n, num_classes, dtype=torch.float32, device=labels.device)
    lab = labels >= 0
    if lab.any():
        counts = torch.bincount(labels[lab], minlength=num_classes).float()
        y[lab.nonzero().squeeze(1), labels[lab]] = 1.0 / counts[labels[lab]]
    if order is not None:
        order = order.to(y.device)
        y = y[order]
    z = conjugate_gradient(lambda v: v - alpha * (wn @ v), y, iters).clamp_(min=0)
    if order is not None:
        z = torch.empty_like(z).index_copy_(0, order, z)  # back to the graph's numbering
    return z


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
