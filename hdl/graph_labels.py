"""What the labelers share: their result type and the checks of a kNN graph and its labels.

Used by :mod:`hdl.labeling` (HDL, the kNN vote) and :mod:`hdl.diffusion` (label diffusion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Optional

import torch


@dataclass(frozen=True)
class LabelResult:
    """Output of the labeling functions; tensors are on the graph's device.

    labels: int64 (N,), -1 where a sample is left unlabeled.
    level: int64 (N,), 0 = given label, r >= 1 = labeled in round r, -1 = unlabeled.
    agreement: float32 (N,) in [0, 1]; winning vote share (1 for given labels, 0 for unlabeled
        and prototype-fallback samples).
    chosen_k: the k used for the votes.
    rounds: number of labeling rounds run (a fallback step counts as one).
    k_scores: float32 (K,) score of every k = 1..K from the adaptive rule (NaN where it could
        not be judged), or None for a fixed k.
    confidence: float32 (N,) calibrated probability that the label is right
        (:func:`hdl.labeling.calibrate_confidence` of the agreement on held-out given labels; 1 for
        given labels, 0 for unlabeled samples), or None where no held-out labeling was judged
        (a fixed k, another adaptive rule, fewer than ``min_pairs`` held-out labels).
    """

    labels: torch.Tensor
    level: torch.Tensor
    agreement: torch.Tensor
    chosen_k: int
    rounds: int
    k_scores: Optional[torch.Tensor] = None
    confidence: Optional[torch.Tensor] = None


def _is_int(v) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def _check_inputs(graph_sims, graph_idx, labels, num_classes) -> None:
    for name, t in (("graph_sims", graph_sims), ("graph_idx", graph_idx), ("labels", labels)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not _is_int(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    if graph_idx.dim() != 2 or graph_sims.shape != graph_idx.shape:
        raise ValueError(f"graph_sims and graph_idx must both have shape (N, K), got "
                         f"{tuple(graph_sims.shape)} and {tuple(graph_idx.shape)}")
    if graph_idx.dtype != torch.int64 or labels.dtype != torch.int64:
        raise TypeError(f"graph_idx and labels must be int64, got {graph_idx.dtype} and {labels.dtype}")
    if not torch.is_floating_point(graph_sims):
        raise TypeError(f"graph_sims must be floating point, got {graph_sims.dtype}")
    n = graph_idx.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match the graph, got {tuple(labels.shape)}")
    if graph_idx.numel() and (graph_idx.min() < -1 or graph_idx.max() >= n):
        raise ValueError(f"graph_idx values must lie in [-1, {n}), got range "
                         f"[{int(graph_idx.min())}, {int(graph_idx.max())}]")
    if labels.numel() and (labels.min() < -1 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [-1, {num_classes}), got range "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    bad = (graph_idx >= 0) & ~torch.isfinite(graph_sims)
    if bad.any():
        raise ValueError(f"graph_sims has {int(bad.sum())} NaN/inf entries at valid neighbours "
                         "(only idx == -1 entries may be non-finite)")
