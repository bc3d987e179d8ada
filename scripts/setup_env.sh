#!/usr/bin/env bash
# Create .venv (if needed) and install the project with its dependencies.
# On machines whose pip finds local torch 2.14.1 / torchvision 0.29.1 wheels those are used;
# elsewhere pip resolves torch and torchvision from the package index.
# As root with apt available, also installs the offline data sets (Fashion-MNIST, WordNet).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  .venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1" || .venv/bin/pip install -q torch torchvision
fi
.venv/bin/pip install -q -e ".[test,semantic]"
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  if [ ! -d /usr/share/datasets/fashion-mnist ] || [ ! -d /usr/share/wordnet ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist wordnet-base wordnet-sense-index >/dev/null) \
      || echo "note: offline data packages could not be installed; tests that need them are skipped"
  fi
fi
