"""One refresh: embeddings + given labels -> kNN graph -> HDL labels.

The single labeling path of training (every ``hdl_refresh_every`` iterations), ``hdl-relabel``
and ``hdl-relabel-run``.  A pure function over tensors: no model, no hooks, no ``args``; steps
that follow a refresh in training (the pool update, diagnostics, the PMI rebuild) read its
:class:`Refresh` result.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from hdl.ann import GraphInfo, build_graph
from hdl.labeling import LabelResult, hdl_label, validate_options


@dataclass(frozen=True)
class Refresh:
    """What one refresh computed, over the M rows of its input (same order).

    result: :class:`hdl.labeling.LabelResult` (labels include the given ones).
    given: bool (M,) rows whose label was given.
    graph_sims: float32 (M, K) and graph_idx: int64 (M, K) the kNN graph (rows, self excluded,
        -1 = missing neighbour); K = the ``k_max`` used.
    k_max: the graph width used; backend: the kNN backend that ran; seconds: wall time;
    graph: how the graph was built (:class:`hdl.ann.GraphInfo`: index, parameters, recall).
    """

    result: LabelResult
    given: torch.Tensor
    graph_sims: torch.Tensor
    graph_idx: torch.Tensor
    k_max: int
    backend: str
    seconds: float
    graph: GraphInfo

    @property
    def new(self) -> torch.Tensor:
        """bool (M,): rows that received an HDL label (not given)."""
        return (self.result.labels >= 0) & ~self.given


def refresh(feats: torch.Tensor, labels: torch.Tensor, num_classes: int, *, k_max: int = 50,
            backend: str = "auto", normalize: bool = True, index: str = "auto", **options: Any) -> Refresh:
    """Label the rows of ``feats`` from the given ``labels``.

    Args:
        feats: float (M, D) embeddings (rows with NaN/inf are reported by :func:`hdl.knn.knn_graph`).
        labels: int64 (M,) given labels in [0, num_classes), -1 for unlabeled.
        k_max: graph width; clamped to M - 1 (at least 1).  A fixed ``k`` option larger than the
            clamped width is clamped to it too (a k larger than ``k_max`` as given raises).
        backend: kNN backend (:func:`hdl.knn.resolve_backend`).
        index: ``"exact"``, ``"ivf"``, ``"hnsw"`` or ``"auto"`` (:func:`hdl.ann.build_graph`).
        normalize: L2-normalise ``feats`` first; False for rows that already are (an
            :class:`hdl.bank.EmbeddingBank`'s), which are then used bit for bit (float16 rows are
            upcast to float32, exactly).
        options: :func:`hdl.labeling.hdl_label`'s keyword options.
    """
    validate_options(**options)  # fail before the search
    if isinstance(k_max, bool) or not isinstance(k_max, int) or k_max < 1:
        raise ValueError(f"k_max must be an int >= 1, got {k_max!r}")
    k = options.get("k", "adaptive")
    if k != "adaptive" and k > k_max:
        raise ValueError(f"k={k} is larger than k_max={k_max}")
    t0 = time.perf_counter()
    m = feats.shape[0]
    width = min(k_max, max(m - 1, 1))
    if k != "adaptive":
        options = {**options, "k": min(k, width)}
    # float32 for the search; a float16 bank's rows are upcast here (float32 input: the same tensor)
    x = F.normalize(feats.float(), dim=1) if normalize else feats.float()
    sims, idx, info = build_graph(x, width, index=index, backend=backend)
    res = hdl_label(sims, idx, labels, num_classes, feats=x, **options)
    return Refresh(res, labels >= 0, sims, idx, width, backend, time.perf_counter() - t0, info)
