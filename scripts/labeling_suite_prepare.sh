#!/usr/bin/env bash
# Feature files of the real sets R3-R6 of scripts/labeling_suite.py (EMA-model embeddings of the
# training images of three small CPU runs; 607, 584 and 177 s on one thread of the shared 2-core machine):
#   R3/R4  FixMatch, Fashion-MNIST, 40 labels, 1,000 iterations, seed 0 (as scripts/comparison_sets.sh)
#   R5     FixMatch, Fashion-MNIST, USB's long-tailed split (labeled head 150, unlabeled head 3000,
#          imbalance 100 on both, labeled kept out of the unlabeled set: the fmnist_lt_100 setting of
#          configs/bench/fashion_mnist_offline.yaml), 1,000 iterations, seed 0
#   R6     HDL-FreeMatch + ABC on long-tailed digits (the run of issue 10), 400 iterations, seed 0
# Each run writes OUT/<name>/ and OUT/<name>.npz (feats, labels, index; scripts/export_features.py);
# the suite reads the labeled split of R5/R6 from OUT/<name>/splits.npz.  Finished steps are skipped.
# Usage: bash scripts/labeling_suite_prepare.sh [OUT]   (default saved_models/labeling_suite)
# Needs Fashion-MNIST (apt-get install dataset-fashion-mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-saved_models/labeling_suite}"
bin=.venv/bin
[ -x "$bin/python" ] || bin="$(dirname "$(command -v python)")"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$out"
train() {  # name, then hdl-train arguments
  local name=$1; shift
  [ -f "$out/$name/results.json" ] || "$bin/hdl-train" "$@" --seed 0 --device cpu --save_dir "$out" \
    --save_name "$name" --no-progress
  [ -f "$out/$name.npz" ] || "$bin/python" scripts/export_features.py --run "$out/$name" --out "$out/$name.npz"
}
train fmnist_fixmatch --config configs/fashion_mnist/fixmatch.yaml --num_train_iter 1000 --num_eval_iter 250
train fmnist_lt100_fixmatch --config configs/fashion_mnist/fixmatch.yaml --num_labels 150 --lb_imb_ratio 100 \
  --ulb_num_labels 3000 --ulb_imb_ratio 100 --include_lb_to_ulb False --num_train_iter 1000 --num_eval_iter 250
train digits_lt10_hdl_freematch_abc --config configs/digits/hdl_freematch.yaml --imb_algorithm abc --num_labels 30 \
  --lb_imb_ratio 10 --ulb_num_labels 80 --ulb_imb_ratio 10 --num_train_iter 400 --num_eval_iter 50 \
  --hdl_warmup_iter 100 --hdl_refresh_every 100
