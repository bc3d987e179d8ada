#!/usr/bin/env bash
# The GPU check: one prepared run of at most 5 minutes on a lent GPU machine (one H200).
#
# Where it runs: the device machine runs a command in a copy of this working tree, with Python 3.12
# and torch for CUDA 13 preinstalled and no network.  What the check needs beyond that travels as
# wheels in a carried, git-ignored folder (64 MiB per call): build it here first with
#     bash scripts/gpu_wheels.sh            # -> .gpu_wheels: the project, semilearn 0.3.2,
#                                           #    ruamel.yaml<0.18, faiss-cpu (cp312); ~19 MiB
# then run on the device, carrying that folder:  bash scripts/gpu_check.sh   (carry: .gpu_wheels)
# The wheels are installed with pip --no-deps --no-index --target .gpusite (on PYTHONPATH, next to
# the machine's own packages: torch).  faiss-gpu does not travel: part 4 prints SKIPPED unless the
# machine has it.  Without the wheel folder the check runs with $PYTHON as it is (for a dry run
# here: PYTHON=.venv/bin/python bash scripts/gpu_check.sh --device cpu --quick).
#
# What it runs, each part under its own time limit inside a total budget (GPU_CHECK_BUDGET,
# default 285 s; a part that no longer fits prints SKIPPED):
#   1. env: python, torch and its CUDA, the device, faiss and faiss.get_num_gpus()
#   2. train: hdl_fixmatch, hdl_freematch, hdl_mixmatch, hdl_remixmatch on digits, 300 iterations
#      each on CUDA, warm-up 100 then a refresh every 100 (kNN backend torch on the GPU), HDL's own
#      per-step code under torch.cuda.set_sync_debug_mode("error"); prints refresh seconds, final
#      pool accuracy and test accuracy per algorithm
#   3. refresh seconds on CUDA, synthetic 128-dim rows: 100k (exact and IVF) and 1M (exact, the
#      torch search in query blocks; IVF if the budget still allows)
#   4. FAISS GPU parity (faiss-gpu vs torch on one CUDA tensor) only if faiss.get_num_gpus() > 0,
#      else "SKIPPED: faiss has no GPU"
# Every result is a PASS:, FAIL: or SKIPPED: line; a summary closes the run; exit status 1 on a FAIL.
# Options (passed to every part): --device DEV (default cuda), --quick (tiny sizes, for the CPU test).
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
QUICK=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        *) echo "gpu_check.sh: unknown option $1 (use --device DEV, --quick)" >&2; exit 2 ;;
    esac
done
BUDGET=${GPU_CHECK_BUDGET:-285}
WHEELS=${HDL_WHEELS:-.gpu_wheels}
LOGS=${OUT:-$(mktemp -d)}/gpu_check
mkdir -p "$LOGS"
REPORT="$LOGS/report.txt"
: > "$REPORT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1  # a part stopped at its limit still shows what it printed
say() { echo "$*" | tee -a "$REPORT"; }

if [ -d "$WHEELS" ] && [ -z "${PYTHON:-}" ]; then
    rm -rf .gpusite
    if "$PY" -m pip install -q --no-deps --no-index --target .gpusite "$WHEELS"/*.whl >"$LOGS/install.log" 2>&1; then
        export PYTHONPATH=$PWD/.gpusite${PYTHONPATH:+:$PYTHONPATH}
        say "INFO: installed $(ls "$WHEELS" | tr '\n' ' ')into .gpusite (${SECONDS}s)"
    else
        say "FAIL: install: pip could not install the wheels of $WHEELS (log: $LOGS/install.log)"
        tail -5 "$LOGS/install.log"
    fi
fi

# part NAME MAX_SECONDS ARGS...: run a part of gpu_check.py within its limit and what is left
part() {
    local name=$1 max=$2 left limit rc
    shift 2
    left=$((BUDGET - SECONDS))
    if [ "$left" -lt 20 ]; then
        say "SKIPPED: $name: the time budget of ${BUDGET}s is spent"
        return
    fi
    limit=$((max < left ? max : left))
    timeout --kill-after=5 "$limit" "$PY" scripts/gpu_check.py "$@" --device "$DEVICE" 2>"$LOGS/$name.err" |
        tee "$LOGS/$name.out"
    rc=${PIPESTATUS[0]}
    cat "$LOGS/$name.out" >> "$REPORT"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        say "FAIL: $name: stopped at its limit of ${limit}s"
    elif [ "$rc" -ne 0 ] && ! grep -q "^FAIL: " "$LOGS/$name.out"; then
        say "FAIL: $name: exit status $rc: $(tail -1 "$LOGS/$name.err")"
    fi
}

if [ -n "$QUICK" ]; then
    part env 60 env
    part train 120 train --quick --algorithms hdl_fixmatch --out "$LOGS/runs"
    part refresh 60 refresh --sizes 2000 --indexes exact ivf
    part parity 60 parity --n 2000
else
    part env 30 env
    part train 160 train --out "$LOGS/runs"
    part refresh-100k 40 refresh --sizes 100000 --indexes exact ivf
    part refresh-1m 70 refresh --sizes 1000000 --indexes exact
    part parity 25 parity
    part refresh-1m-ivf 60 refresh --sizes 1000000 --indexes ivf
fi

pass=$(grep -c "^PASS: " "$REPORT")
fail=$(grep -c "^FAIL: " "$REPORT")
skip=$(grep -c "^SKIPPED: " "$REPORT")
say "SUMMARY: $pass passed, $fail failed, $skip skipped in ${SECONDS}s (budget ${BUDGET}s; logs: $LOGS)"
[ "$fail" -eq 0 ]
