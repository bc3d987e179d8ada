"""One-hot vs S-AL vs HACE vs PMI supervised losses for HDL+FixMatch on Fashion-MNIST.

Runs ``hdl-train`` once per (method, seed), one process at a time, from
``configs/fashion_mnist/fixmatch.yaml`` with ``algorithm: hdl_fixmatch`` and the shipped
Fashion-MNIST tree (``semantic_tree: auto``); the seed fixes the labeled/validation split, so every
method sees the same splits.  A run whose ``results.json`` exists is not run again (delete it to
re-run).  Then prints a markdown table (mean +- std over seeds) of the test metrics of the
best-validation checkpoint: accuracy, hierarchical distance of mistakes, average hierarchical
distance and the error at the coarse level (level 1).

    python scripts/compare_semantic.py [--seeds 0 1 2] [--out saved_models/compare_semantic]
        [--dry-run] [--table-only] [-- extra hdl-train overrides, e.g. --num_train_iter 500]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "fashion_mnist", "fixmatch.yaml")
METHODS = {
    "one-hot (CE)": ["--semantic_loss", "none"],
    "S-AL (tree, beta 0.4)": ["--semantic_loss", "sal", "--sal_beta", "0.4"],
    "HACE (d 0.7)": ["--semantic_loss", "hace", "--hace_d", "0.7"],
    "PMI (kNN co-occurrence)": ["--semantic_loss", "pmi"],
}
COLUMNS = [
    ("test acc %", "test_acc_at_best_val", 100.0),
    ("mistake dist (l0)", "best_test/sev/l0/top1_mistake_dist", 1.0),
    ("avg dist (l0)", "best_test/sev/l0/top1_dist", 1.0),
    ("coarse error % (l1)", "best_test/sev/l1/top1_error", 100.0),
    ("top-5 mistake dist (l0)", "best_test/sev/l0/top5_mistake_dist", 1.0),
]


def run_name(method: str, seed: int) -> str:
    tag = METHODS[method][1]
    return f"hdl_fixmatch_{tag}_seed{seed}"


def train(method: str, seed: int, out: str, extra: list, dry_run: bool) -> None:
    name = run_name(method, seed)
    if os.path.exists(os.path.join(out, name, "results.json")):
        print(f"[skip] {name}: results.json exists")
        return
    train_bin = os.path.join(os.path.dirname(sys.executable), "hdl-train")
    cmd = [train_bin, "--config", CONFIG, "--no-progress", "--algorithm", "hdl_fixmatch", "--seed", str(seed),
           "--save_dir", out, "--save_name", name, "--overwrite", "true", *METHODS[method], *extra]
    print("[run] " + " ".join(cmd), flush=True)
    if not dry_run:
        subprocess.run(cmd, check=True, cwd=ROOT)


def value(res: dict, key: str) -> float:
    v = res.get(key, res.get("metrics", {}).get(key))
    return float("nan") if v is None else float(v)


def table(out: str, seeds: list) -> str:
    lines = ["| method | runs | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for method in METHODS:
        rows = []
        for seed in seeds:
            path = os.path.join(out, run_name(method, seed), "results.json")
            if os.path.exists(path):
                with open(path) as f:
                    rows.append(json.load(f))
        cells = []
        for _, key, scale in COLUMNS:
            vals = np.array([value(r, key) * scale for r in rows])
            cells.append("-" if len(vals) == 0 else f"{np.nanmean(vals):.2f} +- {np.nanstd(vals):.2f}")
        lines.append(f"| {method} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default=os.path.join(ROOT, "saved_models", "compare_semantic"))
    p.add_argument("--dry-run", action="store_true", help="print the hdl-train commands only")
    p.add_argument("--table-only", action="store_true", help="only print the table of finished runs")
    args = p.parse_args(own)
    if not args.table_only:
        for seed in args.seeds:
            for method in METHODS:
                train(method, seed, args.out, extra, args.dry_run)
    print(f"\nHDL+FixMatch on Fashion-MNIST ({CONFIG}), seeds {args.seeds}; test metrics of the "
          f"best-validation checkpoint; distances are LCA heights in the shipped tree\n")
    print(table(args.out, args.seeds))


if __name__ == "__main__":
    main()
