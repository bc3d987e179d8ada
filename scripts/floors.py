"""Floors every semi-supervised result must clear, on the same splits as hdl-train:
logistic regression on the labeled images alone, and scikit-learn's LabelSpreading(kernel='knn')
on raw pixels (labeled + unlabeled), both scored on the test set.

    python scripts/floors.py --dataset digits --num_labels 40 --seeds 0 1 2 [--num_val 10]
        [--lb_imb_ratio 10 --ulb_imb_ratio 10 --ulb_num_labels 80]

With ``--lb_imb_ratio`` above 1, ``--num_labels`` is the head class's count (as in hdl-train).
"""
import argparse
import json

import numpy as np

from hdl.data import load_dataset, make_splits
from hdl.floors import pixel_floors


def floors(dataset, num_labels, seed, num_val=0, data_dir=None, lb_imb_ratio=1.0, ulb_imb_ratio=1.0,
           ulb_num_labels=None, max_unlabeled=10000):
    d = load_dataset(dataset, data_dir)
    s = make_splits(d.train_y, d.num_classes, num_labels, ulb_num_labels=ulb_num_labels, lb_imb_ratio=lb_imb_ratio,
                    ulb_imb_ratio=ulb_imb_ratio, include_lb_to_ulb=False, num_val=num_val, seed=seed)
    f = pixel_floors(d.train_x, d.train_y, d.test_x, d.test_y, s.lb_idx, s.ulb_idx, max_unlabeled=max_unlabeled,
                     seed=seed)
    return f["logreg"], f["labelspreading"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--num_labels", type=int, default=40)
    p.add_argument("--num_val", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lb_imb_ratio", type=float, default=1.0)
    p.add_argument("--ulb_imb_ratio", type=float, default=1.0, help="<= -1: reversed")
    p.add_argument("--ulb_num_labels", type=int, default=None, help="unlabeled head-class count")
    a = p.parse_args()
    rows = [floors(a.dataset, a.num_labels, s, a.num_val, a.data_dir, a.lb_imb_ratio, a.ulb_imb_ratio,
                   a.ulb_num_labels) for s in a.seeds]
    lr, ls = np.array(rows).T
    print(json.dumps({"dataset": a.dataset, "num_labels": a.num_labels, "seeds": a.seeds,
                      "logreg_mean": round(float(lr.mean()), 4), "logreg_std": round(float(lr.std()), 4),
                      "labelspreading_mean": round(float(ls.mean()), 4), "labelspreading_std": round(float(ls.std()), 4),
                      "per_seed": [[round(u, 4), round(v, 4)] for u, v in rows]}))


if __name__ == "__main__":
    main()
