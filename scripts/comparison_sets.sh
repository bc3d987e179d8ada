#!/usr/bin/env bash
# The fixed comparison sets of HDL's labeling (accuracy and class-balanced accuracy on the unlabeled
# samples, HDL variants vs kNN vote vs scikit-learn's LabelSpreading, mean over seeds 0-2):
#   1. the hierarchical Gaussian mixture of scripts/compare_labeling.py (20 classes in 5 groups,
#      imbalance 100, 1% labels);
#   2. EMA-model features of Fashion-MNIST from a small network trained here (FixMatch, cnn_small,
#      40 labels, 1,000 iterations, seed 0), with 4 labels per class, on all 59,000 training images
#      and on a long-tailed subset (imbalance 100).
# Usage: bash scripts/comparison_sets.sh [OUT_DIR]   (default saved_models/comparison_sets)
# Needs Fashion-MNIST (apt-get install dataset-fashion-mnist); the training takes a few CPU-minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-saved_models/comparison_sets}"
py=.venv/bin/python
[ -x "$py" ] || py=python
mkdir -p "$out"
"$py" scripts/compare_labeling.py | tee "$out/set1_gaussian_mixture.md"
if [ ! -f "$out/fashion_mnist_fixmatch/results.json" ]; then
  "$py" -m hdl.algorithms.run.cli --config configs/fashion_mnist/fixmatch.yaml --num_train_iter 1000 \
    --num_eval_iter 250 --seed 0 --device cpu --save_dir "$out" --save_name fashion_mnist_fixmatch --no-progress
fi
[ -f "$out/features.npz" ] || "$py" scripts/export_features.py --run "$out/fashion_mnist_fixmatch" --out "$out/features.npz"
"$py" scripts/compare_labeling.py --features "$out/features.npz" --per-class 4 | tee "$out/set2_balanced.md"
"$py" scripts/compare_labeling.py --features "$out/features.npz" --per-class 4 --imbalance 100 | tee "$out/set2_imbalance100.md"
