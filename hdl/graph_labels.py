"""What the labelers share: their result type and the checks of a kNN graph and its labels.

Used by :mod:`hdl.labeling` (HDL, the kNN vote) and :mod:`hdl.diffusion` (label diffusion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Callable, NamedTuple, Optional, Tuple

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
        (a fixed k, fewer than ``min_pairs`` held-out labels).
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


def reversed_edges(n: int, step: int, edges: Callable[[int, int], Tuple[torch.Tensor, torch.Tensor,
                                                                          Optional[torch.Tensor]]],
                   device: torch.device) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """A graph's edges grouped by the node they point to, built a block of rows at a time.

    ``edges(a, b)`` gives the out-edges of rows a..b-1: (targets (b - a, w) int64, kept (b - a, w)
    bool, values (b - a, w) float or None), read twice (a count pass and a fill pass) in blocks
    of ``step`` rows.  Returns ``(start, source, value, out_count)``: the kept edges into node t
    are ``source[start[t]:start[t + 1]]`` (int32 below 2^31 nodes; in increasing source row, the
    row's column order within a row: a stable counting sort, no sort of all edges) with their
    ``value``s (None when ``edges`` gives none), and ``out_count`` (n,) the kept edges of every row.
    """
    small = torch.int32 if n < 2 ** 31 else torch.long
    out_count = torch.zeros(n, dtype=torch.long, device=device)
    in_count = torch.zeros(n, dtype=torch.long, device=device)
    for a in range(0, n, step):
        b = min(n, a + step)
        tgt, keep, _ = edges(a, b)
        out_count[a:b] = keep.sum(dim=1)
        in_count += torch.bincount(tgt[keep], minlength=n)
        del tgt, keep
    start = torch.zeros(n + 1, dtype=torch.long, device=device)
    start[1:] = in_count.cumsum(0)
    e = int(start[n])
    source = torch.empty(e, dtype=small, device=device)
    value = None
    fill = start[:n].clone()
    for a in range(0, n, step):
        b = min(n, a + step)
        tgt, keep, val = edges(a, b)
        cols = tgt[keep]
        perm = torch.argsort(cols, stable=True)
        sc = cols[perm]
        at = torch.arange(len(sc), device=device)
        run = torch.ones(len(sc), dtype=torch.bool, device=device)  # first entry of each target's run
        run[1:] = sc[1:] != sc[:-1]
        pos = fill[sc] + at - torch.where(run, at, torch.zeros_like(at)).cummax(0).values
        source[pos] = torch.repeat_interleave(torch.arange(a, b, device=device), out_count[a:b])[perm].to(small)
        if val is not None:
            if value is None:
                value = torch.empty(e, dtype=val.dtype, device=device)
            value[pos] = val[keep][perm]
        fill += torch.bincount(cols, minlength=n)
        del tgt, keep, val, cols, perm, sc, pos
    return start, source, value, out_count


class NeighbourLists(NamedTuple):
    """The graph's edges grouped by the node they point to (:func:`neighbour_lists`): the rows that
    list node t are ``source[start[t]:start[t + 1]]`` (ascending), each listing it in its column
    ``column[...]``."""

    start: torch.Tensor
    source: torch.Tensor
    column: torch.Tensor


NEIGHBOUR_LISTS_BLOCK_ROWS = 1 << 14  # rows per block of the build (fastest of 2^14-2^18 at 1M x 50)


def neighbour_lists(graph_idx: torch.Tensor) -> NeighbourLists:
    """:class:`NeighbourLists` of a kNN graph's valid entries (``graph_idx >= 0``), built by
    :func:`reversed_edges` (a block of rows at a time: its memory is the lists themselves, 6 bytes
    an edge, and one block's temporaries)."""
    n, width = graph_idx.shape
    col_type = torch.int16 if width < 2 ** 15 else torch.int32
    cols = torch.arange(width, dtype=col_type, device=graph_idx.device)

    def edges(a: int, b: int):
        gi = graph_idx[a:b]
        return gi, gi >= 0, cols.expand(b - a, width)

    start, source, column, _ = reversed_edges(n, NEIGHBOUR_LISTS_BLOCK_ROWS, edges, graph_idx.device)
    if column is None:  # no valid edge at all
        column = torch.empty(0, dtype=col_type, device=graph_idx.device)
    return NeighbourLists(start, source, column)
