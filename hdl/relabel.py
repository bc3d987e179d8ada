"""Stand-alone relabeling: embeddings + partial labels -> HDL labels for every sample.

Python: ``relabel(embeddings, labels, true_labels=None, **options)``.
Command line (console script ``hdl-relabel``)::

    hdl-relabel --embeddings E.npy|E.npz --labels L.npy|L.csv|L.txt [--true-labels T.npy]
                [--k adaptive] [--k-max 50] [--backend auto] --out OUT.csv

An ``.npz`` embeddings file holds ``embeddings`` (or ``feats``) of shape (N, D) and optionally a
``files`` array of N names, copied into the output.  Label files hold one integer per sample
(-1 = unlabeled); a ``.csv`` may have a header row and uses its last column.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from hdl.knn import BACKENDS, knn_graph
from hdl.labeling import ADAPTIVE_RULES, CLASS_PRIORS, FALLBACKS, WEIGHTINGS, hdl_label, validate_options

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
            num_classes: Optional[int] = None, k_max: int = 50, backend: str = "auto",
            **options) -> RelabelResult:
    """Label every sample of ``embeddings`` (N, D) from the partial ``labels`` (N,) (-1 = unlabeled).

    Builds the cosine kNN graph (``k_max`` neighbours, self excluded) and runs
    :func:`hdl.labeling.hdl_label` with ``options`` (its keyword options, e.g. ``k``,
    ``weighting``, ``class_quota``).  ``num_classes`` defaults to max(labels, true_labels) + 1.
    A fixed ``k`` larger than ``k_max`` raises ValueError.
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
    feats = F.normalize(x.float(), dim=1)  # rows with NaN/inf stay non-finite: knn_graph reports them
    sims, idx = knn_graph(feats, k_max, backend=backend)
    res = hdl_label(sims, idx, y, num_classes, feats=feats, **options)
    unl = (y < 0)
    acc = bal = None
    if t is not None and unl.any():
        pred, truth = res.labels[unl], t[unl]
        acc = float((pred == truth).float().mean())
        bal = float(np.mean([float((pred[truth == c] == c).float().mean()) for c in torch.unique(truth)]))
    return RelabelResult(res.labels.cpu().numpy(), res.level.cpu().numpy(),
                         res.agreement.cpu().numpy(), res.chosen_k, res.rounds,
                         int(unl.sum()), acc, bal)


def _load_labels(path: str) -> np.ndarray:
    if path.endswith(".npy"):
        return np.load(path).astype(np.int64).reshape(-1)
    if path.endswith(".npz"):
        data = np.load(path)
        key = "labels" if "labels" in data else data.files[0]
        return data[key].astype(np.int64).reshape(-1)
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and r[-1].strip()]
    try:
        int(rows[0][-1])
    except (ValueError, IndexError):
        rows = rows[1:]  # header
    try:
        return np.array([int(r[-1]) for r in rows], dtype=np.int64)
    except ValueError as err:
        raise ValueError(f"{path}: every row must end with an integer label (-1 = unlabeled): {err}") from err


def _load_embeddings(path: str):
    if path.endswith(".npy"):
        return np.load(path), None
    if path.endswith(".npz"):
        data = np.load(path, allow_pickle=False)
        key = next((k for k in ("embeddings", "feats") if k in data), None)
        if key is None:
            raise ValueError(f"{path}: expected an array named 'embeddings' or 'feats', found {data.files}")
        files = data["files"] if "files" in data else None
        return data[key], files
    raise ValueError(f"--embeddings must be a .npy or .npz file, got {path!r}")


def parse_k(value: str):
    """Command-line value of ``--k``: ``'adaptive'`` or an int."""
    if value == "adaptive":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k must be 'adaptive' or an int, got {value!r}") from None


def add_labeling_arguments(p: argparse.ArgumentParser) -> None:
    """The :func:`hdl.labeling.hdl_label` options both relabeling commands take (unset: the default)."""
    p.add_argument("--weighting", choices=WEIGHTINGS, default=None)
    p.add_argument("--class-quota", type=float, default=None, help="per-class cap factor; <= 0 disables")
    p.add_argument("--class-prior", choices=CLASS_PRIORS, default=None,
                   help="class weights of the quota (see hdl.labeling)")
    p.add_argument("--adaptive-rule", choices=ADAPTIVE_RULES, default=None,
                   help="how --k adaptive chooses k (see hdl.labeling)")
    p.add_argument("--diffusion-weight", type=float, default=None,
                   help="weight of the diffusion posterior in each vote, in [0, 1] (0: plain neighbour vote)")
    p.add_argument("--diffusion-alpha", type=float, default=None, help="diffusion alpha, in [0, 1)")
    p.add_argument("--min-agreement", type=float, default=None)
    p.add_argument("--fallback", choices=FALLBACKS, default=None)


def labeling_options(args: argparse.Namespace) -> dict:
    """The options of :func:`add_labeling_arguments` that were given, as ``hdl_label`` keywords."""
    opts = {name: getattr(args, name) for name in ("weighting", "class_prior", "min_agreement", "fallback",
                                                   "adaptive_rule", "diffusion_weight", "diffusion_alpha")
            if getattr(args, name) is not None}
    if args.class_quota is not None:
        opts["class_quota"] = args.class_quota if args.class_quota > 0 else None
    return opts


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="hdl-relabel", description="Label unlabeled samples from "
                                "embeddings by hierarchical dynamic labeling (HDL).")
    p.add_argument("--embeddings", required=True, help=".npy (N, D) or .npz with 'embeddings'/'feats' "
                   "[and 'files']")
    p.add_argument("--labels", required=True, help=".npy/.csv/.txt, one int per sample, -1 = unlabeled")
    p.add_argument("--true-labels", help="optional ground truth (same formats) to report accuracy")
    p.add_argument("--out", required=True, help="output CSV: index,[file,]label,level,agreement")
    p.add_argument("--k", type=parse_k, default="adaptive", help="'adaptive' (default) or an int")
    p.add_argument("--k-max", type=int, default=50, help="graph neighbours (default 50)")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    add_labeling_arguments(p)
    p.add_argument("--num-classes", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    emb, files = _load_embeddings(args.embeddings)
    labels = _load_labels(args.labels)
    truth = _load_labels(args.true_labels) if args.true_labels else None
    opts = {"k": args.k, **labeling_options(args)}
    try:
        res = relabel(emb, labels, truth, num_classes=args.num_classes, k_max=args.k_max,
                      backend=args.backend, **opts)
    except (ValueError, TypeError) as err:
        p.error(str(err))
    with open(args.out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index"] + (["file"] if files is not None else []) + ["label", "level", "agreement"])
        for i in range(res.labels.shape[0]):
            w.writerow([i] + ([str(files[i])] if files is not None else [])
                       + [int(res.labels[i]), int(res.level[i]), f"{float(res.agreement[i]):.6f}"])
    n_lab = int((res.labels >= 0).sum())
    print(f"labeled {n_lab}/{res.labels.shape[0]} samples ({res.num_unlabeled} originally unlabeled) "
          f"with k={res.chosen_k} in {res.rounds} rounds -> {args.out}")
    if res.accuracy is not None:
        print(f"accuracy on originally unlabeled samples: {100 * res.accuracy:.2f}% "
              f"(class-balanced {100 * res.balanced_accuracy:.2f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
