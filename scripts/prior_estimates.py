"""How close candidate estimates of the unlabeled class distribution come to the truth, on the
EMA model of finished training runs (the input of a loss prior and of the labeler's class weights).

    python scripts/prior_estimates.py RUN_DIR [RUN_DIR ...] [--checkpoint latest] [--out FILE.md]

For each run (made by ``hdl-train`` or ``hdl-bench``): its EMA model embeds every training image
(evaluation transform), its head gives the class probabilities ``p`` of the unlabeled samples, and
the exact cosine kNN graph of the embeddings (k = 50) carries the class-normalised diffusion of
the given labels (``hdl.diffusion``, alpha 0.9, as the labeler's blend).  Estimates, each a
vector of class shares over the unlabeled set:

* ``labels``: the given labels' class shares (what a consistent shape assumes);
* ``model argmax``: the counts of the EMA model's argmax, one pseudo-count per class (``la_prior:
  model``'s rule);
* ``model EM/g``: EM over the unlabeled set (Saerens et al. 2002) with likelihoods ``p / g``, the
  model taken as trained under the labels' class shares ``g``; ``model EM/u``: with likelihoods
  ``p``, the model taken as trained under uniform classes (what a logit-adjusted loss teaches the
  raw logits); ``(1)``: one EM step from uniform shares, ``(50)``: 50 steps;
* ``graph anchor``: the labeler's ACR-style anchor (``hdl.labeling.anchor_prior``) on that graph;
* ``graph soft``: the mean of the row-normalised diffusion scores (one EM step from uniform shares
  on the graph's class-balanced likelihoods);
* ``graph+model EM/u (1)``: one EM step on the mean of the two row-normalised likelihoods.

The table gives the total-variation distance of each estimate to the true unlabeled class shares
(0 = exact, 1 = disjoint) and the run's shape (the truth's nearest of the three anchors).  The
true labels are read from the split only to score the estimates.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Dict, List

import numpy as np
import torch


def em(lik: torch.Tensor, steps: int) -> torch.Tensor:
    """Class shares (C,) after ``steps`` EM steps from uniform shares on likelihoods (N, C) >= 0."""
    c = lik.shape[1]
    pi = torch.full((c,), 1.0 / c, dtype=torch.float64)
    lik = lik.double()
    for _ in range(steps):
        post = lik * pi
        post = post / post.sum(dim=1, keepdim=True).clamp(min=1e-300)
        pi = post.mean(dim=0)
    return pi.float()


def row_normalised(x: torch.Tensor) -> torch.Tensor:
    return x / x.sum(dim=1, keepdim=True).clamp(min=1e-30)


def tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p.double() / p.sum() - q.double() / q.sum()).abs().sum())


@torch.no_grad()
def estimates(run_dir: str, checkpoint: str = "latest") -> Dict[str, object]:
    """The estimates of one run (module docstring) and their distances to the truth."""
    from hdl.algorithms.run.runner import load_run
    from hdl.algorithms.usb.embedding import embed_training_set
    from hdl.diffusion import diffusion_scores
    from hdl.knn import knn_graph
    from hdl.labeling import anchor_prior

    alg = load_run(run_dir, checkpoint, "cpu")
    info = alg.split_info
    index, feats = embed_training_set(alg)
    pos = {int(g): i for i, g in enumerate(index)}
    lb = torch.as_tensor([pos[int(g)] for g in info.lb_idx], dtype=torch.long)
    given = set(info.lb_idx.tolist())
    ulb = torch.as_tensor([pos[int(g)] for g in info.ulb_idx if int(g) not in given], dtype=torch.long)
    rows = torch.cat([lb, ulb])  # labeled rows first, then the unlabeled-only rows
    truth_all = np.asarray(info.train_y)
    truth = torch.as_tensor(truth_all[np.asarray(index)[rows.numpy()]], dtype=torch.long)
    c = alg.num_classes
    labels = torch.full((len(rows),), -1, dtype=torch.long)
    labels[:len(lb)] = truth[:len(lb)]
    net = alg.ema_model
    net.eval()
    probs = torch.softmax(net(feats[rows], only_fc=True).float(), dim=1)
    x = torch.nn.functional.normalize(feats[rows].float(), dim=1)
    sims, idx = knn_graph(x, min(50, len(rows) - 1), backend="torch")
    z = diffusion_scores(sims, idx, labels, c, k=min(50, len(rows) - 1), gamma=3.0, alpha=0.9)
    unl = labels < 0
    true = torch.bincount(truth[unl], minlength=c).float()
    g = torch.bincount(labels[~unl], minlength=c).float()
    p = probs[unl]
    zu = z[unl]
    reached = zu.sum(dim=1) > 0
    graph_lik = row_normalised(zu[reached])
    est = {
        "labels": g,
        "model argmax": torch.bincount(p.argmax(dim=1), minlength=c).float() + 1.0,
        "model EM/g (1)": em(p / (g / g.sum()).clamp(min=1e-12), 1),
        "model EM/g (50)": em(p / (g / g.sum()).clamp(min=1e-12), 50),
        "model EM/u (1)": em(p, 1),
        "model EM/u (50)": em(p, 50),
        "graph anchor": anchor_prior(labels, c, z)[1],
        "graph soft": graph_lik.mean(dim=0),
        "graph+model EM/u (1)": em(0.5 * (row_normalised(p[reached]) + graph_lik), 1),
    }
    return {"run": os.path.basename(os.path.normpath(run_dir)), "setting": os.path.basename(os.path.dirname(
        os.path.normpath(run_dir))), "tv": {k: tv(v, true) for k, v in est.items()}, "true": (true / true.sum()).tolist()}


def main(argv: List[str] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--checkpoint", default="latest", help="latest or best")
    p.add_argument("--out", default=None, help="also write the markdown table here")
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    import hdl.algorithms  # noqa: F401  (registers hdl_*)

    results = []
    for run in a.runs:
        r = estimates(run, a.checkpoint)
        results.append(r)
        print(r["setting"], r["run"], " ".join(f"{k}={v:.3f}" for k, v in r["tv"].items()), flush=True)
    keys = list(results[0]["tv"])
    lines = [f"Total-variation distance of each estimate to the true unlabeled class shares ({a.checkpoint} "
             f"checkpoint; 0 = exact). Made by `python scripts/prior_estimates.py {' '.join(a.runs)}`.", "",
             "| setting | run | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for r in results:
        best = min(r["tv"].values())
        lines.append(f"| {r['setting']} | {r['run']} | " + " | ".join(
            (f"**{v:.3f}**" if v == best else f"{v:.3f}") for v in r["tv"].values()) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
