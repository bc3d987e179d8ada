"""kNN graphs for large banks: exact up to a documented size, FAISS IVF or HNSW above it, with
the recall of the approximate graph measured on sampled queries.

``index``:

* ``"exact"``: :func:`hdl.knn.knn_graph` (the chosen backend's exact inner-product search).
* ``"ivf"``: ``faiss.IndexIVFFlat`` (inner product) with ``nlist`` cells (default
  ``4 * sqrt(N)``, at most ``N // 39`` so every cell gets FAISS's minimum of 39 training rows)
  trained on at most ``64 * nlist`` sampled rows, searched with ``nprobe`` cells (default
  ``ceil(nlist / 16)``: about 1/16 of the exact search's work; FAISS's GPU benchmark on 1M SIFT
  vectors reached recall@10 0.90 / 0.955 / 0.984 at nprobe 32 / 64 / 128 of 16,384 cells).
* ``"hnsw"``: ``faiss.IndexHNSWFlat`` (inner product, ``hnsw_m`` links, ``efSearch`` at least
  ``2 * (k + 1)``), CPU only.
* ``"cells"`` (ours): the rows are split into ``nlist`` cells by FAISS's spherical k-means
  (default ``sqrt(N)`` cells, trained on at most ``64 * nlist`` sampled rows), and all rows of a
  cell are searched at once against the rows of the ``nprobe`` cells whose centroids are nearest
  to their own cell's (default ``ceil(nlist / 64)``, itself included), by blocked matrix
  products: ``faiss.knn`` (BLAS and FAISS's top-k selection) for CPU rows, matmul + ``topk`` in
  torch on other devices.  IVF-Flat probes per query and scans
  its lists one vector at a time (at 1M rows on 2 cores 1/16 of the exact flops ran at 1/17 of
  the exact search's rate, results/scale/README.md); a cell's queries share their candidates,
  so the work is matrix products at the BLAS rate.  Probing by the cell rather than by the query
  misses more neighbours of rows near a cell's border: its recall is measured like the others'.
* ``"auto"``: ``"exact"`` up to :data:`EXACT_MAX_ROWS` rows, else ``"ivf"``.

The approximate indexes need faiss; IVF and HNSW search CPU copies of the rows, ``"cells"``
searches on the rows' device; results come back on the input's device.  Sentinels as in :mod:`hdl.knn`: a missing neighbour is index -1 with
similarity -inf.  The row itself is removed from its neighbours when the index returns it, else
the last (worst) column is dropped.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from hdl.knn import ArrayLike, _as_tensor, _drop_self, _import_faiss, knn_graph, knn_search

INDEXES = ("auto", "exact", "ivf", "hnsw", "cells")
# "auto": exact search up to this many rows (a 100k x 128 exact self-search is ~2.6e12 flop:
# seconds on a CPU), an IVF index above it
EXACT_MAX_ROWS = 100_000
IVF_MIN_ROWS_PER_CELL = 39  # FAISS warns below this many training rows per cell
IVF_TRAIN_ROWS_PER_CELL = 64


@dataclass(frozen=True)
class GraphInfo:
    """How a graph was built: ``index`` (exact | ivf | hnsw), its ``params``, ``recall`` (share
    of the exact top-k found, over ``recall_queries`` sampled rows; None when not measured or
    exact), ``seconds`` to build and search, of which ``build_seconds`` built the index (train +
    add; 0 for exact search)."""

    index: str
    params: Dict[str, Any] = field(default_factory=dict)
    recall: Optional[float] = None
    recall_queries: int = 0
    seconds: float = 0.0
    build_seconds: float = 0.0


def resolve_index(index: str, n: int) -> str:
    if index not in INDEXES:
        raise ValueError(f"index must be one of {INDEXES}, got {index!r}")
    if index == "auto":
        return "exact" if n <= EXACT_MAX_ROWS else "ivf"
    return index


def _cell_counts(n: int, nlist: Optional[int], nprobe: Optional[int], per_sqrt: float,
                 probe_share: int) -> Tuple[int, int]:
    """(nlist, nprobe): ``nlist`` default ``per_sqrt * sqrt(n)``, at most ``n // 39`` (FAISS's
    minimum of training rows per cell); ``nprobe`` default ``ceil(nlist / probe_share)``."""
    if nlist is None:
        nlist = int(round(per_sqrt * math.sqrt(n)))
    nlist = max(1, min(nlist, n // IVF_MIN_ROWS_PER_CELL if n >= IVF_MIN_ROWS_PER_CELL else 1))
    if nprobe is None:
        nprobe = math.ceil(nlist / probe_share)
    return nlist, max(1, min(nprobe, nlist))


def ivf_defaults(n: int, nlist: Optional[int] = None, nprobe: Optional[int] = None) -> Tuple[int, int]:
    """(nlist, nprobe) for ``n`` rows (module docstring)."""
    return _cell_counts(n, nlist, nprobe, 4.0, 16)


def cells_defaults(n: int, nlist: Optional[int] = None, nprobe: Optional[int] = None) -> Tuple[int, int]:
    """(nlist, nprobe) of the ``"cells"`` index for ``n`` rows (module docstring)."""
    return _cell_counts(n, nlist, nprobe, 1.0, 64)


CELLS_BLOCK_ENTRIES = 1 << 24  # similarity entries per matrix-product block of the "cells" search
CELLS_FAISS_ON_CPU = True  # "cells" on CPU rows: each block through faiss.knn (else torch matmul + topk)


@torch.no_grad()
def cells_graph(x: torch.Tensor, k: int, nlist: int, nprobe: int, seed: int = 0,
                timings: Optional[Dict[str, float]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Float32 (N, k) similarities and int64 (N, k) indices (self excluded, sorted, sentinels
    -inf / -1) of the ``"cells"`` search (module docstring) of L2-normalised rows ``x`` (N, D),
    on ``x``'s device; the k-means runs in FAISS on a CPU copy of the rows.  ``timings``, when
    given, receives ``"build"``: the seconds of the k-means and the cell assignment."""
    faiss = _import_faiss()
    if faiss is None:
        raise ImportError("index='cells' needs faiss for its k-means (pip install faiss-cpu)")
    t0 = time.perf_counter()
    n, d = x.shape
    dev = x.device
    xn = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
    n_train = min(n, IVF_TRAIN_ROWS_PER_CELL * nlist)
    pick = np.sort(np.random.default_rng(seed).choice(n, n_train, replace=False))
    km = faiss.Kmeans(d, nlist, niter=20, seed=seed, spherical=True, verbose=False)
    km.train(np.ascontiguousarray(xn[pick]))
    _, assign = km.index.search(xn, 1)
    _, probe = km.index.search(km.centroids, min(nprobe, nlist))  # nearest cells first (itself)
    del xn
    assign = torch.from_numpy(assign[:, 0].astype(np.int64)).to(dev)
    order = torch.argsort(assign, stable=True)
    starts = torch.zeros(nlist + 1, dtype=torch.long)
    starts[1:] = torch.bincount(assign.cpu(), minlength=nlist).cumsum(0)
    if timings is not None:
        timings["build"] = time.perf_counter() - t0
    sims_out = torch.full((n, k), float("-inf"), dtype=torch.float32, device=dev)
    idx_out = torch.full((n, k), -1, dtype=torch.int64, device=dev)
    for c in range(nlist):
        q_rows = order[int(starts[c]):int(starts[c + 1])]
        if len(q_rows) == 0:
            continue
        cand = torch.cat([order[int(starts[p]):int(starts[p + 1])] for p in probe[c].tolist() if p >= 0])
        kk = min(k, len(cand) - 1)
        if kk < 1:
            continue
        cx = x[cand].float()
        use_faiss = dev.type == "cpu" and CELLS_FAISS_ON_CPU
        step = max(1, CELLS_BLOCK_ENTRIES // len(cand))
        for a in range(0, len(q_rows), step):
            qr = q_rows[a:a + step]
            if use_faiss:  # FAISS's blocked BLAS search and top-k selection
                s, i = faiss.knn(np.ascontiguousarray(x[qr].float().numpy()), cx.numpy(), kk + 1,
                                 metric=faiss.METRIC_INNER_PRODUCT)
                s, i = torch.from_numpy(s), torch.from_numpy(i)
            else:
                s, i = (x[qr].float() @ cx.T).topk(kk + 1, dim=1)
            ids = torch.where(i >= 0, cand[i.clamp(min=0)], -1)
            s = torch.where(i >= 0, s, torch.full_like(s, float("-inf")))
            sims_out[qr, :kk], idx_out[qr, :kk] = _drop_self(s, ids, kk, own=qr)  # the row itself
    return sims_out, idx_out


def graph_recall(feats: ArrayLike, graph_idx: torch.Tensor, rows: torch.Tensor, backend: str = "auto") -> float:
    """Share of the exact top-k neighbours (self excluded) of ``rows`` that ``graph_idx`` lists."""
    x = _as_tensor(feats, "feats")
    k = graph_idx.shape[1]
    rows = rows.to(x.device)
    s, exact = knn_search(x[rows], x, k + 1, backend=backend)
    _, exact = _drop_self(s, exact, k, own=rows)  # the row itself, or the worst column when ties pushed it out
    got = graph_idx[rows.to(graph_idx.device)].to(exact.device)
    valid = exact >= 0
    hits = (exact.unsqueeze(2) == got.unsqueeze(1)).any(dim=2) & valid
    return float(hits.sum()) / max(1, int(valid.sum()))


def _faiss_index(kind: str, x: np.ndarray, params: Dict[str, Any], seed: int):
    faiss = _import_faiss()
    if faiss is None:
        raise ImportError(f"index={kind!r} needs faiss (pip install faiss-cpu); index='exact' works without it")
    d = x.shape[1]
    if kind == "ivf":
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, params["nlist"], faiss.METRIC_INNER_PRODUCT)
        n_train = min(x.shape[0], IVF_TRAIN_ROWS_PER_CELL * params["nlist"])
        pick = np.random.default_rng(seed).choice(x.shape[0], n_train, replace=False)
        index.train(np.ascontiguousarray(x[np.sort(pick)]))
        index.add(x)
        index.nprobe = params["nprobe"]
    else:
        index = faiss.IndexHNSWFlat(d, params["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = params["ef_search"]
        index.add(x)
    return index


@torch.no_grad()
def build_graph(feats: ArrayLike, k: int, index: str = "auto", backend: str = "auto", *,
                nlist: Optional[int] = None, nprobe: Optional[int] = None, hnsw_m: int = 32,
                ef_search: Optional[int] = None, recall_queries: int = 1000,
                seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor, GraphInfo]:
    """kNN graph of ``feats`` (N, D) (self excluded), exact or approximate (module docstring).

    Returns float32 (N, k) similarities, int64 (N, k) indices (sentinels -1 / -inf) on the
    input's device, and a :class:`GraphInfo`; for an approximate index its recall is measured
    against exact search on ``min(recall_queries, N)`` seeded random rows (0: not measured).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    device = feats.device if isinstance(feats, torch.Tensor) else torch.device("cpu")
    x = _as_tensor(feats, "feats")
    n = x.shape[0]
    kind = resolve_index(index, n)
    t0 = time.perf_counter()
    if kind == "exact" or n <= 1:
        sims, idx = knn_graph(x.to(device), k, backend=backend)
        return sims, idx, GraphInfo("exact", {}, None, 0, time.perf_counter() - t0)
    k_eff = min(k, n - 1)
    sims = torch.full((n, k), float("-inf"), dtype=torch.float32)
    idx = torch.full((n, k), -1, dtype=torch.int64)
    if kind == "cells":
        nl, npb = cells_defaults(n, nlist, nprobe)
        params: Dict[str, Any] = {"nlist": nl, "nprobe": npb}
        timings: Dict[str, float] = {}
        s, i = cells_graph(x, k_eff, nl, npb, seed, timings)
        build_seconds = timings["build"]
    else:
        if kind == "ivf":
            nl, npb = ivf_defaults(n, nlist, nprobe)
            params = {"nlist": nl, "nprobe": npb}
        else:
            params = {"hnsw_m": int(hnsw_m), "ef_search": max(int(ef_search or 0), 2 * (k + 1), 64)}
        xn = np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)
        faiss_index = _faiss_index(kind, xn, params, seed)
        build_seconds = time.perf_counter() - t0
        s, i = faiss_index.search(xn, k_eff + 1)
        del faiss_index, xn
        s, i = torch.from_numpy(s), torch.from_numpy(i).long()
        s = torch.where(i >= 0, s, torch.full_like(s, float("-inf")))
        s, i = _drop_self(s, i, k_eff)
    sims, idx = sims.to(s.device), idx.to(i.device)
    sims[:, :k_eff], idx[:, :k_eff] = s, i
    del s, i
    seconds = time.perf_counter() - t0
    recall = None
    m = min(int(recall_queries), n)
    if m > 0:
        g = torch.Generator().manual_seed(seed)
        rows = torch.randperm(n, generator=g)[:m]
        recall = graph_recall(x, idx.to(x.device), rows, backend=backend if backend != "faiss-gpu" else "auto")
    return sims.to(device), idx.to(device), GraphInfo(kind, params, recall, m, seconds, build_seconds)
