#!/usr/bin/env bash
# Put the wheels scripts/gpu_check.sh installs on a lent GPU machine into one folder (default
# .gpu_wheels, git-ignored; pass it to the device run as a carried path).
#
# The device runs in a copy of this working tree with Python 3.12 and torch for CUDA 13 already
# installed and no network, so what the check needs beyond that travels as wheels, 64 MiB per call
# in all: this project (built here), semilearn 0.3.2, ruamel.yaml<0.18 (semilearn's config loader),
# progress (semilearn imports it) and faiss-cpu for Python 3.12; the rest semilearn needs is on the
# machine (torch, torchvision, timm, scikit-learn, scipy, ...), except wandb and aim, for which
# gpu_check.py puts empty stand-ins (semilearn imports them for hooks hdl-train never uses).  faiss-gpu does not travel (its CUDA wheel is far larger): the
# FAISS GPU parity part of the check prints SKIPPED unless the machine has it.
#
#   bash scripts/gpu_wheels.sh [DIR] [EXTRA_REQUIREMENT ...]   # e.g. timm==0.9.16 for a bare machine
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.gpu_wheels}
shift || true
PY=${PYTHON:-.venv/bin/python}
rm -rf "$DIR" && mkdir -p "$DIR"
# the project itself, and progress (imported by semilearn; an sdist only): pure python
"$PY" -m pip wheel --no-deps --no-build-isolation -q -w "$DIR" . progress==1.6.1
# pure-python wheels: any interpreter
"$PY" -m pip download -q --no-deps -d "$DIR" semilearn==0.3.2 'ruamel.yaml<0.18' "$@"
# compiled wheels for the device's interpreter
"$PY" -m pip download -q --no-deps -d "$DIR" --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    'faiss-cpu>=1.7.4' 'ruamel.yaml.clib>=0.2.6'
ls -l "$DIR"
total=$(du -cb "$DIR"/* | tail -1 | cut -f1)
echo "total: $((total / 1048576)) MiB in $DIR (limit 64 MiB per device call)"
if [ "$total" -gt $((64 * 1048576)) ]; then
    echo "gpu_wheels: $DIR is over 64 MiB; it will not travel" >&2
    exit 1
fi
