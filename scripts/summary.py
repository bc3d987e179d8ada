"""Print a finished run's test accuracy next to the floors on the same split and, for HDL runs,
the accuracy of the HDL labels at the last refresh.

    python scripts/summary.py saved_models/digits/hdl_fixmatch_digits_40_0 [--json]
"""
import json
import os
import sys

import numpy as np
import yaml

from hdl.data import Splits, load_dataset
from hdl.floors import pixel_floors


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    argv = [a for a in argv if a != "--json"]
    if len(argv) != 1:
        print(__doc__)
        return 2
    run = argv[0]
    with open(os.path.join(run, "results.json")) as f:
        res = json.load(f)
    with open(os.path.join(run, "config.yaml")) as f:
        cfg = yaml.safe_load(f)
    data = load_dataset(cfg["dataset"], cfg.get("data_dir"))
    splits = Splits.load(os.path.join(run, "splits.npz"))
    fl = pixel_floors(data.train_x, data.train_y, data.test_x, data.test_y, splits.lb_idx, splits.ulb_idx,
                      seed=int(cfg.get("seed", 0)))
    log = os.path.join(run, "hdl_refresh.jsonl")
    last = None
    if os.path.exists(log):
        with open(log) as f:
            last = [json.loads(line) for line in f if line.strip()][-1]
    if as_json:  # the figures below, as one JSON object
        keys = ("algorithm", "dataset", "seed", "iterations", "wall_seconds", "device", "test_acc_at_best_val",
                "test_acc_final", "test_per_class_acc_at_best_val", "test_worst_class_acc_at_best_val")
        out = {k: res.get(k) for k in keys}
        out.update(labeled_images=int(len(splits.lb_idx)), floor_logreg=fl["logreg"],
                   floor_labelspreading=fl["labelspreading"])
        if last is not None:
            out.update(hdl_pool_acc=last["hdl/pool_acc"], hdl_pool_coverage=last["hdl/pool_coverage"],
                       hdl_logit_acc_equal_coverage=last.get("hdl/logit_acc_equal_coverage"))
        print(json.dumps(out))
        return 0
    head = "" if float(cfg.get("lb_imb_ratio", 1) or 1) == 1 else f" (num_labels {res['num_labels']} is the head class's)"
    print(f"{res['algorithm']} on {res['dataset']}, {len(splits.lb_idx)} labeled images{head}, seed {res['seed']}, "
          f"{res['iterations']} iterations in {res['wall_seconds']:.0f} s on {res['device']}")
    print(f"  test accuracy at best validation : {100 * res['test_acc_at_best_val']:.1f}%")
    print(f"  test accuracy at the end         : {100 * res['test_acc_final']:.1f}%")
    per_class = res.get("test_per_class_acc_at_best_val")
    if per_class:
        worst = int(np.argmin(per_class))
        print(f"  per-class test accuracy (best)   : {' '.join(f'{100 * v:.0f}' for v in per_class)}")
        print(f"  worst class (best checkpoint)    : class {worst}, {100 * per_class[worst]:.1f}%")
    print(f"  floor: logistic regression       : {100 * fl['logreg']:.1f}%")
    print(f"  floor: LabelSpreading (pixels)   : {100 * fl['labelspreading']:.1f}%")
    if last is not None:
        print(f"  HDL labels at the last refresh   : {100 * last['hdl/pool_acc']:.1f}% accurate on "
              f"{100 * last['hdl/pool_coverage']:.0f}% of the unlabeled samples "
              f"(the model's own pseudo-labels at equal coverage: {100 * last.get('hdl/logit_acc_equal_coverage', np.nan):.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
