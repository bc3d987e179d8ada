#!/usr/bin/env bash
# Set up the environment and train the default job: HDL around FixMatch on the bundled digits,
# 40 labels; then print its test accuracy next to the floors and the HDL labels' accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/hdl-train --config configs/digits/hdl_fixmatch.yaml --save_name quickstart --overwrite True "$@"
.venv/bin/python scripts/summary.py saved_models/digits/quickstart
