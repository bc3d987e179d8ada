"""Which HDL labels should training use?  ``hdl_inject`` rules against each other, long-tailed data.

Runs (skipping finished ones; resumable) one setting for two bases: the base, HDL with every pool
label injected (``all``), HDL with the labels the model contradicts more confidently dropped
(``confident``), and HDL with the labels whose calibrated confidence is below the model's threshold
dropped (``calibrated``), HDL with each label blended with the model's probabilities
(``blend_ema``: the labeler's calibrated confidence on its label, the EMA model's head on the
refresh's EMA embedding; ``hdl_blend_prior: none``), and the same with the model's
probabilities divided by their mean over the pool (``blend_balanced``: ``hdl_blend_prior: balanced``,
the default since the Fashion-MNIST LT-100 grid of ``results/fashion_mnist_offline``), and the
unadjusted blend with logit adjustment by the pool's class prior in the unlabeled losses
(``loss_prior``: ``hdl_loss_prior: adjusted``, ``hdl_blend_prior: none``; digits only).
``digits_lt10``: the long-tailed digits setting of the labeler issue (30 labels and 80 unlabeled
images per class at the head, imbalance 10 on both, 400 iterations, refreshes every 100), FixMatch
and FreeMatch + ABC.  ``fmnist_lt100``: the Fashion-MNIST imbalance-100 setting of the offline
benchmark (1,000 iterations, refreshes every 250), FixMatch and FreeMatch.  Writes
``OUT/table.md`` and ``OUT/results.csv``: final test accuracy per run, and at the last two refreshes
the accuracy and coverage of what was injected next to the model's thresholded pseudo-labels
(coverage, and accuracy on as many of its most confident samples as were injected).  The cells of
the blend as first built (``blend``: raw vote shares, the training model's head) went with
``hdl_blend_votes: raw`` in 0.2.0; their numbers stay in ``results/inject_rule``.

    python scripts/compare_inject.py [--setting digits_lt10|fmnist_lt100] [--seeds 0 1] [--runs DIR]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# setting -> (config folder, arguments of every run, arguments of the HDL runs, cells: name -> (config,
# extra arguments))
_DIGITS_HDL = ["--hdl_warmup_iter", "100", "--hdl_refresh_every", "100"]
_FMNIST_HDL = ["--hdl_warmup_iter", "250", "--hdl_refresh_every", "250"]
_BALANCED = ["--hdl_blend_prior", "balanced"]
_UNADJUSTED = ["--hdl_blend_prior", "none"]  # the blend_ema cells: the model's probabilities as they are
# the loss_prior cells: unadjusted blend labels, logit adjustment by the pool's class prior in the unlabeled losses
_LOSS_PRIOR = ["--hdl_loss_prior", "adjusted", "--hdl_blend_prior", "none"]
SETTINGS = {
    # the long-tailed digits run of the labeler issue: 30 / 80 images per class at the head, imbalance 10
    "digits_lt10": ("digits", ["--num_labels", "30", "--lb_imb_ratio", "10", "--ulb_num_labels", "80",
                               "--ulb_imb_ratio", "10", "--num_train_iter", "400", "--num_eval_iter", "50"],
                    _DIGITS_HDL, {
                        "fixmatch": ("fixmatch", []),
                        "hdl_fixmatch_all": ("hdl_fixmatch", ["--hdl_inject", "all"]),
                        "hdl_fixmatch_confident": ("hdl_fixmatch", ["--hdl_inject", "confident"]),
                        "freematch_abc": ("freematch", ["--imb_algorithm", "abc"]),
                        "hdl_freematch_abc_all": ("hdl_freematch", ["--imb_algorithm", "abc", "--hdl_inject", "all"]),
                        "hdl_freematch_abc_confident": ("hdl_freematch", ["--imb_algorithm", "abc", "--hdl_inject",
                                                                          "confident"]),
                        "hdl_fixmatch_calibrated": ("hdl_fixmatch", ["--hdl_inject", "calibrated"]),
                        "hdl_freematch_abc_calibrated": ("hdl_freematch", ["--imb_algorithm", "abc", "--hdl_inject",
                                                                           "calibrated"]),
                        "hdl_fixmatch_blend_ema": ("hdl_fixmatch", ["--hdl_inject", "blend", *_UNADJUSTED]),
                        "hdl_freematch_abc_blend_ema": ("hdl_freematch", ["--imb_algorithm", "abc", "--hdl_inject",
                                                                          "blend", *_UNADJUSTED]),
                        "hdl_fixmatch_blend_balanced": ("hdl_fixmatch", ["--hdl_inject", "blend", *_BALANCED]),
                        "hdl_freematch_abc_blend_balanced": ("hdl_freematch", ["--imb_algorithm", "abc", "--hdl_inject",
                                                                               "blend", *_BALANCED]),
                        "hdl_fixmatch_loss_prior": ("hdl_fixmatch", ["--hdl_inject", "blend", *_LOSS_PRIOR]),
                        "hdl_freematch_abc_loss_prior": ("hdl_freematch", ["--imb_algorithm", "abc", "--hdl_inject",
                                                                           "blend", *_LOSS_PRIOR]),
                    }),
    # the fmnist_lt_100 setting of configs/bench/fashion_mnist_offline.yaml (needs dataset-fashion-mnist)
    "fmnist_lt100": ("fashion_mnist", ["--num_labels", "150", "--lb_imb_ratio", "100", "--ulb_num_labels", "3000",
                                       "--ulb_imb_ratio", "100", "--include_lb_to_ulb", "False",
                                       "--num_train_iter", "1000", "--num_eval_iter", "250"],
                     _FMNIST_HDL, {
                         "fixmatch": ("fixmatch", []),
                         "hdl_fixmatch_all": ("hdl_fixmatch", ["--hdl_inject", "all"]),
                         "hdl_fixmatch_confident": ("hdl_fixmatch", ["--hdl_inject", "confident"]),
                         "freematch": ("freematch", []),
                         "hdl_freematch_all": ("hdl_freematch", ["--hdl_inject", "all"]),
                         "hdl_freematch_confident": ("hdl_freematch", ["--hdl_inject", "confident"]),
                         "hdl_fixmatch_calibrated": ("hdl_fixmatch", ["--hdl_inject", "calibrated"]),
                         "hdl_freematch_calibrated": ("hdl_freematch", ["--hdl_inject", "calibrated"]),
                         "hdl_fixmatch_blend_ema": ("hdl_fixmatch", ["--hdl_inject", "blend", *_UNADJUSTED]),
                         "hdl_freematch_blend_ema": ("hdl_freematch", ["--hdl_inject", "blend", *_UNADJUSTED]),
                         "hdl_fixmatch_blend_balanced": ("hdl_fixmatch", ["--hdl_inject", "blend", *_BALANCED]),
                         "hdl_freematch_blend_balanced": ("hdl_freematch", ["--hdl_inject", "blend", *_BALANCED]),
                     }),
}
FIELDS = ["cell", "seed", "test_acc_final", "test_balanced_acc_final", "refresh_it", "injected_acc",
          "injected_coverage", "model_acc_equal_injected", "model_coverage", "inject_dropped",
          "blend_changed"]


def run_cell(setting: str, name: str, seed: int, runs: str) -> str:
    folder, common, hdl, cells = SETTINGS[setting]
    config, extra = cells[name]
    if config.startswith("hdl_"):
        extra = hdl + extra
    runs = os.path.join(runs, setting)
    run_dir = os.path.join(runs, f"{name}_{seed}")
    if not os.path.isfile(os.path.join(run_dir, "results.json")):
        cmd = [sys.executable, "-c", "import sys; from hdl.commands import hdl_train; sys.exit(hdl_train())", "--config",
               os.path.join(ROOT, "configs", folder, f"{config}.yaml"), *common, *extra, "--device", "cpu",
               "--no-progress", "--seed", str(seed),
               "--save_dir", runs, "--save_name", f"{name}_{seed}", "--overwrite", "True"]
        print(f"running {setting} {name} seed {seed}", flush=True)
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    return run_dir


def rows_of(name: str, seed: int, run_dir: str):
    res = json.load(open(os.path.join(run_dir, "results.json")))
    base = {"cell": name, "seed": seed, "test_acc_final": res["test_acc_final"],
            "test_balanced_acc_final": res["test_balanced_acc_final"]}
    path = os.path.join(run_dir, "hdl_refresh.jsonl")
    if not os.path.isfile(path):
        return [base]
    recs = [json.loads(line) for line in open(path) if line.strip()][-2:]
    return [{**base, "refresh_it": r["it"], "injected_acc": r.get("hdl/injected_acc"),
             "injected_coverage": r.get("hdl/injected_coverage"),
             "model_acc_equal_injected": r.get("hdl/logit_acc_equal_injected"),
             "model_coverage": r.get("hdl/logit_coverage"), "inject_dropped": r.get("hdl/inject_dropped"),
             "blend_changed": r.get("hdl/blend_changed")}
            for r in recs]


def fmt(v, pct=True):
    if v is None or v == "":
        return ""
    return f"{100 * v:.1f}" if pct else f"{v:g}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", choices=sorted(SETTINGS), default="digits_lt10")
    p.add_argument("--out", default=None, help="default: results/inject_rule/SETTING")
    p.add_argument("--runs", default=os.path.join(ROOT, "bench", "inject_rule"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--cells", nargs="+", default=None, help="only these cells (default: all of the setting), in "
                   "this order; finished runs of other cells still enter the table")
    args = p.parse_args(argv)
    args.out = args.out or os.path.join(ROOT, "results", "inject_rule", args.setting)
    os.makedirs(args.out, exist_ok=True)
    rows = []
    cells = SETTINGS[args.setting][3]
    unknown = sorted(set(args.cells or []) - set(cells))
    if unknown:
        p.error(f"--cells: unknown {unknown}; {args.setting} has {sorted(cells)}")
    for seed in args.seeds:
        for name in args.cells or cells:
            run_cell(args.setting, name, seed, args.runs)
        for name in cells:  # the table: every finished run of the setting
            run_dir = os.path.join(args.runs, args.setting, f"{name}_{seed}")
            if os.path.isfile(os.path.join(run_dir, "results.json")):
                rows.extend(rows_of(name, seed, run_dir))
    fd, tmp = tempfile.mkstemp(dir=args.out, suffix=".csv")
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, os.path.join(args.out, "results.csv"))
    lines = ["| cell | seed | test acc | test bal. acc | refresh | injected acc | injected cov. | model acc at "
             "equal coverage | model thresholded cov. | dropped | blend changed |", "|---" * 11 + "|"]
    for r in rows:
        lines.append("| " + " | ".join([r["cell"], str(r["seed"]), fmt(r["test_acc_final"]),
                                        fmt(r["test_balanced_acc_final"]), str(r.get("refresh_it", "")),
                                        fmt(r.get("injected_acc")), fmt(r.get("injected_coverage")),
                                        fmt(r.get("model_acc_equal_injected")), fmt(r.get("model_coverage")),
                                        fmt(r.get("inject_dropped"), pct=False),
                                        fmt(r.get("blend_changed"), pct=False)]) + " |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "table.md.tmp"), "w") as f:
        f.write(text)
    os.replace(os.path.join(args.out, "table.md.tmp"), os.path.join(args.out, "table.md"))
    print(text)


if __name__ == "__main__":
    main()
