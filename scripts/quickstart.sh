#!/usr/bin/env bash
# Set up the environment and train the default job: FixMatch on the bundled digits, 40 labels.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/hdl-train --config configs/digits/fixmatch.yaml "$@"
