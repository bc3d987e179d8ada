"""Compare HDL labeling variants with plain kNN vote and scikit-learn's LabelSpreading.

Default data: a hierarchical Gaussian mixture (20 classes in 5 groups, long-tailed class sizes
with imbalance 100, 1% labels with at least one per class), generated from a fixed seed.
``--features file.npz`` (keys ``feats`` (N, D) and ``labels`` (N,)) runs the same comparison on
precomputed features instead.  Prints a markdown table of accuracy and class-balanced accuracy on
the originally unlabeled samples (samples left unlabeled count as wrong), mean over the seeds.

    python scripts/compare_labeling.py [--seeds 0 1 2] [--features feats.npz] [--label-frac 0.01]
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from hdl.knn import knn_graph
from hdl.labeling import hdl_label, knn_vote

K_GRID = (5, 10, 20, 50)
K_MAX = 50


def make_hierarchical_mixture(seed: int = 0, num_groups: int = 5, classes_per_group: int = 4,
                              dim: int = 32, n_max: int = 2000, imbalance: float = 100.0,
                              group_scale: float = 1.0, class_scale: float = 0.45,
                              noise: float = 0.8, sizes: Optional[np.ndarray] = None):
    """Hierarchical Gaussian mixture: group means, class means around them, samples around those.

    Class c has ``round(n_max * imbalance ** (-r / (C - 1)))`` samples where r is the class's
    rank in a seeded permutation (so every group mixes head and tail classes), or ``sizes[c]``
    when ``sizes`` (C,) is given.
    Returns (feats float32 (N, dim), labels int64 (N,), group_of_class int64 (C,)).
    """
    rng = np.random.default_rng(seed)
    num_classes = num_groups * classes_per_group
    group_of_class = np.repeat(np.arange(num_groups), classes_per_group)
    group_means = rng.normal(0, group_scale, (num_groups, dim))
    class_means = group_means[group_of_class] + rng.normal(0, class_scale, (num_classes, dim))
    rank = rng.permutation(num_classes)
    if sizes is None:
        sizes = np.round(n_max * imbalance ** (-rank / (num_classes - 1))).astype(int)
    labels = np.repeat(np.arange(num_classes), sizes)
    feats = class_means[labels] + rng.normal(0, noise, (labels.size, dim))
    return feats.astype(np.float32), labels.astype(np.int64), group_of_class


def sample_counts(labels: np.ndarray, count, seed: int) -> np.ndarray:
    """Copy of ``labels`` keeping ``count(n_c, c)`` random labels of each class c (of n_c
    samples), else -1; classes in increasing order, one seeded generator."""
    rng = np.random.default_rng(seed + 1000)
    out = np.full_like(labels, -1)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        out[rng.choice(members, min(int(count(members.size, c)), members.size), replace=False)] = c
    return out


def sample_labeled(labels: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """Copy of ``labels`` keeping ``max(1, round(frac * n_c))`` random labels per class, else -1."""
    return sample_counts(labels, lambda n, c: max(1, int(round(frac * n))), seed)


def sample_per_class(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Copy of ``labels`` keeping ``min(per_class, n_c)`` random labels per class, else -1."""
    return sample_counts(labels, lambda n, c: per_class, seed)


def long_tailed_subset(labels: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """Indices keeping ``n_0 * ratio ** (-c / (C - 1))`` samples of class c (class 0 the head)."""
    rng = np.random.default_rng(seed + 2000)
    classes = np.unique(labels)
    n0 = min(int((labels == c).sum()) for c in classes)
    keep = []
    for i, c in enumerate(classes):
        members = np.flatnonzero(labels == c)
        n = max(1, int(n0 * ratio ** (-i / max(1, len(classes) - 1))))
        keep.append(rng.choice(members, n, replace=False))
    return np.sort(np.concatenate(keep))


def comparison_set(features: Optional[str], seed: int, imbalance: float = 1.0, per_class: int = 0,
                   label_frac: float = 0.01):
    """(feats float32 (N, D), truth int64 (N,), given labels int64 (N,), -1 = unlabeled) of one seed:
    the features file (``feats``/``labels``; long-tailed subset when ``imbalance > 1``) or, without
    one, the hierarchical mixture; ``per_class`` labels per class, else a ``label_frac`` of each."""
    if features:
        data = np.load(features)
        feats, truth = data["feats"].astype(np.float32), data["labels"].astype(np.int64)
        if imbalance > 1:
            keep = long_tailed_subset(truth, imbalance, seed)
            feats, truth = feats[keep], truth[keep]
    else:
        feats, truth, _ = make_hierarchical_mixture(seed)
    labels = sample_per_class(truth, per_class, seed) if per_class else sample_labeled(truth, label_frac, seed)
    return feats, truth, labels


def scores(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray):
    """(accuracy, class-balanced accuracy) of ``pred`` on ``mask``; -1 predictions are wrong."""
    p, t = pred[mask], truth[mask]
    acc = float((p == t).mean())
    recalls = [float((p[t == c] == c).mean()) for c in np.unique(t)]
    return acc, float(np.mean(recalls))


def label_spreading(feats: np.ndarray, labels: np.ndarray, k: int,
                    graph_idx: Optional[torch.Tensor] = None) -> np.ndarray:
    """scikit-learn's LabelSpreading(kernel='knn', n_neighbors=k, max_iter=200) transduction.

    With ``graph_idx`` (N, K >= k - 1, self excluded) its kNN connectivity is taken from that
    graph instead of its own search: each row connects to itself and its first k - 1 graph
    neighbours, as scikit-learn's own knn kernel counts the sample itself among its k.
    """
    from scipy import sparse
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.semi_supervised import LabelSpreading

    if graph_idx is None:
        model = LabelSpreading(kernel="knn", n_neighbors=k, max_iter=200)
    else:
        idx = graph_idx[:, : k - 1].cpu().numpy()
        n = idx.shape[0]
        rows = np.repeat(np.arange(n), idx.shape[1])
        ok = idx.reshape(-1) >= 0
        conn = sparse.csr_matrix((np.ones(n + int(ok.sum())), (np.concatenate([np.arange(n), rows[ok]]),
                                  np.concatenate([np.arange(n), idx.reshape(-1)[ok]]))), shape=(n, n))

        class GraphLabelSpreading(LabelSpreading):
            def _get_kernel(self, X, y=None):
                return conn

        model = GraphLabelSpreading(kernel="knn", n_neighbors=k, max_iter=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(feats, labels)
    return model.transduction_


HDL_VARIANTS = {
    "HDL default (adaptive, cosine, quota 0.75, prior auto)": dict(),
    "HDL quota 0.75, prior uniform": dict(class_prior="uniform"),
    "HDL quota 0.75, prior vote": dict(class_prior="vote"),
    "HDL quota 1.0, prior auto": dict(class_quota=1.0),
    "HDL quota 0.5, prior auto": dict(class_quota=0.5),
    "HDL no quota": dict(class_quota=None),
    "HDL uniform weights (auto prior)": dict(weighting="uniform"),
    "HDL cosine^3 weights (auto prior)": dict(weighting="cosine^gamma", gamma=3.0),
    "HDL k=10 (auto prior)": dict(k=10),
    "HDL k=20 (auto prior)": dict(k=20),
    "HDL one shot (level q=0) (auto prior)": dict(level_quantile=0.0),
    "HDL min agreement 0.5 + expand (auto prior)": dict(min_agreement=0.5, fallback="expand"),
    "HDL default + prototype fallback": dict(fallback="prototype"),
}


def run_seed(feats: np.ndarray, truth: np.ndarray, labels: np.ndarray, backend: str):
    num_classes = int(truth.max()) + 1
    unl = labels < 0
    x = F.normalize(torch.from_numpy(feats).float(), dim=1)
    y = torch.from_numpy(labels)
    sims, idx = knn_graph(x, K_MAX, backend=backend)
    rows = {}
    for name, opts in HDL_VARIANTS.items():
        t0 = time.perf_counter()
        res = hdl_label(sims, idx, y, num_classes, feats=x, **opts)
        dt = time.perf_counter() - t0
        rows[name] = (*scores(res.labels.numpy(), truth, unl), res.chosen_k, res.rounds, dt)
    for k in K_GRID:
        res = hdl_label(sims, idx, y, num_classes, k=k, feats=x)
        rows[f"HDL default, k={k}"] = (*scores(res.labels.numpy(), truth, unl), k, res.rounds, 0.0)
        res = knn_vote(x, y, num_classes, k=k, backend=backend)
        rows[f"kNN vote, k={k}"] = (*scores(res.labels.numpy(), truth, unl), k, 1, 0.0)
        pred = label_spreading(x.numpy(), labels, k)
        rows[f"LabelSpreading, k={k}"] = (*scores(pred, truth, unl), k, 0, 0.0)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", help="npz with 'feats' (N, D) and 'labels' (N,)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--label-frac", type=float, default=0.01)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--per-class", type=int, default=0, help="labeled samples per class (overrides --label-frac)")
    parser.add_argument("--imbalance", type=float, default=1.0,
                        help="with --features: keep a long-tailed subset, head/tail size ratio")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    per_seed = []
    for seed in args.seeds:
        feats, truth, labels = comparison_set(args.features, seed, args.imbalance, args.per_class, args.label_frac)
        per_seed.append(run_seed(feats, truth, labels, args.backend))

    names = list(per_seed[0])
    mean = {n: np.mean([r[n] for r in per_seed], axis=0) for n in names}
    src = args.features or "hierarchical Gaussian mixture (20 classes / 5 groups, imbalance 100)"
    lab = f"{args.per_class} labels per class" if args.per_class else f"label fraction {args.label_frac}"
    print(f"data: {src}; imbalance {args.imbalance:g}; {feats.shape[0]} samples; {lab}; "
          f"seeds {args.seeds}\n")
    print("| method | accuracy | class-balanced acc. | k (mean) | rounds (mean) | label time s |")
    print("|---|---|---|---|---|---|")
    for n in names:
        acc, bal, k, r, dt = mean[n]
        print(f"| {n} | {100 * acc:.2f} | {100 * bal:.2f} | {k:.1f} | {r:.1f} | {dt:.3f} |")
    for family in ("kNN vote", "LabelSpreading", "HDL default"):
        best = max(K_GRID, key=lambda k: mean[f"{family}, k={k}"][0])
        acc, bal = mean[f"{family}, k={best}"][:2]
        print(f"\nbest k for {family} (by accuracy, oracle): k={best}: acc {100 * acc:.2f}, "
              f"balanced {100 * bal:.2f}")


if __name__ == "__main__":
    main()
