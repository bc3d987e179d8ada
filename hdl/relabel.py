"""Stand-alone relabeling: embeddings + partial labels -> HDL labels for every sample.

Python: ``relabel(embeddings, labels, true_labels=None, **options)``; the command line
``hdl-relabel`` is :mod:`hdl.relabel_cli`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

from hdl.labeling import validate_options
from hdl.refresh import refresh

ArrayLike = Union[np.ndarray, torch.Tensor]


@dataclass
class RelabelResult:
    """labels, level: int64 (N,) (-1 = unlabeled); agreement: float32 (N,); chosen_k, rounds:
    as in :class:`hdl.labeling.LabelResult`; accuracy / balanced_accuracy: on the originally
    unlabeled samples when true labels are given (samples left at -1 count as wrong), else None;
    num_unlabeled: count of originally unlabeled samples."""

    labels: np.ndarray
    level: np.ndarray
    agreement: np.ndarray
    chosen_k: int
    rounds: int
    num_unlabeled: int
    accuracy: Optional[float] = None
    balanced_accuracy: Optional[float] = None


def _to_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, torch.Tensor):
        return x.detach()
    raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")


def relabel(embeddings: ArrayLike, labels: ArrayLike, true_labels: Optional[ArrayLike] = None, *,
            num_classes: Optional[int] = None, k_max: int = 50, backend: str = "auto", index: str = "auto",
            **options) -> RelabelResult:
    """Label every sample of ``embeddings`` (N, D) from the partial ``labels`` (N,) (-1 = unlabeled).

    One :func:`hdl.refresh.refresh` (the labeling path of training too): the cosine kNN graph
    (``k_max`` neighbours, self excluded, clamped to N - 1) and :func:`hdl.labeling.hdl_label`
    with ``options`` (its keyword options, e.g. ``k``, ``weighting``, ``class_quota``).
    ``num_classes`` defaults to max(labels, true_labels) + 1.  A fixed ``k`` larger than
    ``k_max`` raises ValueError.
    """
    validate_options(**options)  # fail before building the graph
    if isinstance(k_max, bool) or not isinstance(k_max, int) or k_max < 1:
        raise ValueError(f"k_max must be an int >= 1, got {k_max!r}")
    x = _to_tensor(embeddings, "embeddings")
    y = _to_tensor(labels, "labels")
    if x.dim() != 2 or not torch.is_floating_point(x):
        raise ValueError(f"embeddings must be a float array of shape (N, D), got {tuple(x.shape)} {x.dtype}")
    if y.dim() != 1 or y.shape[0] != x.shape[0] or y.dtype.is_floating_point:
        raise ValueError(f"labels must be integers of shape ({x.shape[0]},), got {tuple(y.shape)} {y.dtype}")
    y = y.to(x.device, torch.int64)
    t = None
    if true_labels is not None:
        t = _to_tensor(true_labels, "true_labels").to(x.device, torch.int64)
        if t.shape != y.shape:
            raise ValueError(f"true_labels must have shape {tuple(y.shape)}, got {tuple(t.shape)}")
    if num_classes is None:
        num_classes = int(max(int(y.max()) if y.numel() else -1,
                              int(t.max()) if t is not None and t.numel() else -1)) + 1
        num_classes = max(num_classes, 1)
    res = refresh(x, y, num_classes, k_max=k_max, backend=backend, index=index, **options).result
    unl = (y < 0)
    acc = bal = None
    if t is not None and unl.any():
        pred, truth = res.labels[unl], t[unl]
        acc = float((pred == truth).float().mean())
        bal = float(np.mean([float((pred[truth == c] == c).float().mean()) for c in torch.unique(truth)]))
    return RelabelResult(res.labels.cpu().numpy(), res.level.cpu().numpy(),
                         res.agreement.cpu().numpy(), res.chosen_k, res.rounds,
                         int(unl.sum()), acc, bal)
