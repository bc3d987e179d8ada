"""Plain vs hierarchy-aware HDL votes on feature files with a shipped class tree.

    python scripts/compare_hierarchy_vote.py --features feats.npz --tree fashion_mnist \
        --per-class 4 [--imbalance 100] [--seeds 0 1 2]

Same labeled samples per seed for every variant (``compare_labeling.comparison_set``); prints
accuracy, class-balanced accuracy and the mean LCA height of the mistakes on the unlabeled samples.
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_labeling import comparison_set, scores  # noqa: E402

from hdl.data.formats import FASHION_MNIST_CLASSES  # noqa: E402
from hdl.hierarchy import load_shipped  # noqa: E402
from hdl.knn import knn_graph  # noqa: E402
from hdl.labeling import hdl_label  # noqa: E402
from hdl.sal import sal_similarity_from_hierarchy  # noqa: E402

CLASS_NAMES = {"fashion_mnist": FASHION_MNIST_CLASSES}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", required=True)
    p.add_argument("--tree", default="fashion_mnist", choices=sorted(CLASS_NAMES))
    p.add_argument("--per-class", type=int, default=4)
    p.add_argument("--imbalance", type=float, default=1.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = p.parse_args(argv)
    h = load_shipped(a.tree, CLASS_NAMES[a.tree])
    sim = sal_similarity_from_hierarchy(h).float()
    groups = torch.as_tensor(h.level_ancestor(1), dtype=torch.long)
    groups = torch.unique(groups, return_inverse=True)[1]
    lca = h.lca_height
    variants = {"plain vote": {}, "smooth (S = 1 - h/L)": dict(hierarchy_vote="smooth", class_similarity=sim),
                "coarse to fine (level-1 groups)": dict(hierarchy_vote="coarse_to_fine", class_groups=groups)}
    rows = {n: [] for n in variants}
    for seed in a.seeds:
        feats, truth, labels = comparison_set(a.features, seed, a.imbalance, a.per_class)
        unl = labels < 0
        x = F.normalize(torch.from_numpy(feats), dim=1)
        sims, idx = knn_graph(x, 50)
        for name, opts in variants.items():
            pred = hdl_label(sims, idx, torch.from_numpy(labels), len(CLASS_NAMES[a.tree]), feats=x,
                             **opts).labels.numpy()
            acc, bal = scores(pred, truth, unl)
            wrong = unl & (pred != truth) & (pred >= 0)
            dist = float(lca[truth[wrong], pred[wrong]].mean()) if wrong.any() else 0.0
            rows[name].append((acc, bal, dist))
    print(f"{a.features}, tree {a.tree}, imbalance {a.imbalance:g}, {a.per_class} labels per class, seeds {a.seeds}\n")
    print("| vote | accuracy | class-balanced | mistake distance |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        m = np.mean(r, axis=0)
        print(f"| {name} | {100 * m[0]:.2f} | {100 * m[1]:.2f} | {m[2]:.3f} |")


if __name__ == "__main__":
    main()
