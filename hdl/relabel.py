"""Stand-alone relabeling: embeddings + partial labels -> HDL labels for every sample.

Python: ``relabel(embeddings, labels, true_labels=None, **options)``; the command line
``hdl-relabel`` is :mod:`hdl.relabel_cli`.
"""

from __future__ import annotations

import csv
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

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


class RelabelWarning(UserWarning):
    """Legal but questionable input: the message says what the result will lack."""


def input_warnings(x: torch.Tensor, y: torch.Tensor, num_classes: int, declared: bool, k, k_max: int) -> List[str]:
    """What the result of :func:`relabel` on these inputs will lack, one sentence each.

    ``y`` int64 (N,) after the labels outside ``[0, num_classes)`` were set to -1 (``declared``:
    ``num_classes`` was given, not inferred)."""
    out = []
    n = x.shape[0]
    given = y[y >= 0]
    counts = torch.bincount(given, minlength=num_classes)[:num_classes]
    missing = [c for c in range(num_classes) if counts[c] == 0]
    if missing:
        head = ", ".join(str(c) for c in missing[:10]) + (", ..." if len(missing) > 10 else "")
        why = "" if declared else f" (the classes were inferred as 0..{num_classes - 1} from the largest label; " \
                                    f"pass --num-classes to declare them)"
        out.append(f"class(es) {head} have no labeled sample{why}: no sample will be labeled with them")
    if n >= 2:
        spread = float((x.float() - x.float()[0]).abs().max())
        if spread == 0.0:
            out.append(f"all {n} embeddings are identical: their neighbours are arbitrary, so the labels carry no "
                       f"information from the embeddings")
    width = min(k_max, max(n - 1, 1))
    if k != "adaptive" and k > width:
        out.append(f"k={k} is more than the {width} neighbour(s) a sample has here (N={n}); k={width} is used")
    return out


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
    declared = num_classes is not None
    if not bool((y >= 0).any()):
        raise ValueError("labels: no sample is labeled (every label is -1); there is nothing to propagate")
    if (y < -1).any():
        bad = sorted(set(y[y < -1].tolist()))[:5]
        raise ValueError(f"labels: expected class indices >= 0 or -1 for unlabeled, got {bad}")
    if num_classes is None:
        num_classes = int(max(int(y.max()) if y.numel() else -1,
                              int(t.max()) if t is not None and t.numel() else -1)) + 1
        num_classes = max(num_classes, 1)
    elif isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected an int >= 1, got {num_classes!r}")
    outside = y >= num_classes
    if outside.any():
        warnings.warn(f"{int(outside.sum())} sample(s) are labeled outside the declared classes 0..{num_classes - 1} "
                      f"(e.g. {int(y[outside][0])}); they are treated as unlabeled", RelabelWarning, stacklevel=2)
        y = torch.where(outside, torch.full_like(y, -1), y)
        if not bool((y >= 0).any()):
            raise ValueError(f"labels: no sample is labeled within the declared classes 0..{num_classes - 1}")
    for msg in input_warnings(x, y, num_classes, declared, options.get("k", "adaptive"), k_max):
        warnings.warn(msg, RelabelWarning, stacklevel=2)
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


def write_csv_atomic(path: str, header: Sequence[str], rows) -> None:
    """Write a CSV to a temp file next to ``path`` and rename it into place: no partial file is ever
    left.  OSError is re-raised as one line naming the path and the cause."""
    d = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=d)
        with os.fdopen(fd, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise OSError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
