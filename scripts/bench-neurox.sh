#!/usr/bin/env bash
# Side-by-side benchmark of lca against NeuroX on one planted matrix, one
# thread each (see docs/benchmarks.md for the results and how to read them).
#
#   scripts/bench-neurox.sh [TOKENS NEURONS CLASSES PER_CLASS]
#
# Defaults: 20000 tokens × 9984 neurons (BERT-base sized), 10 classes,
# 3 planted neurons per class. Needs:
#   - the NeuroX harness (neurox_lca.py, make_synthetic.py): $NEUROX_HARNESS,
#     default ../shared/peer;
#   - a Python 3.8 interpreter for NeuroX's pinned wheels: $PYTHON38, default
#     ~/.pyenv/versions/3.8.18/bin/python (the venv is built once, into
#     .cache/neurox-venv, by `pip install neurox`).
# Writes everything under bench/out/ and prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

tokens=${1:-20000}
neurons=${2:-9984}
classes=${3:-10}
per_class=${4:-3}
harness=${NEUROX_HARNESS:-$root/../shared/peer}
out=$root/bench/out
mkdir -p "$out"

python=$(scripts/neurox-venv.sh)

echo "==> building lca (release)"
cargo build --release --locked -q

data=$out/synth
if [ ! -f "$data.acts.npy" ] || [ "$(cat "$data.shape" 2>/dev/null)" != "$tokens $neurons $classes $per_class" ]; then
    echo "==> generating ${tokens}×${neurons}, $classes classes, $per_class planted per class"
    "$python" "$harness/make_synthetic.py" --prefix "$data" --tokens "$tokens" --neurons "$neurons" \
        --classes "$classes" --per-class "$per_class" --shift 1.5 --seed 1234 >/dev/null
    echo "$tokens $neurons $classes $per_class" > "$data.shape"
fi

echo "==> machine: $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"

echo "==> NeuroX (1 thread)"
/usr/bin/time -v -o "$out/neurox.time" "$python" "$harness/neurox_lca.py" \
    --acts "$data.acts.npy" --labels "$data.labels.txt" --test-frac 0.1 --split tail \
    --l1 0.001 --l2 0.001 --threads 1 --planted "$data.planted.json" --minimal \
    --out-prefix "$out/neurox" > "$out/neurox.log"

# The solver's tolerance trades time for convergence: run lca at three.
tolerances=${TOLERANCES:-0.01 0.001 0.0001}
for tol in $tolerances; do
    echo "==> lca (1 thread, tol $tol)"
    sed -e "s|@ACTS@|$data.acts.npy|; s|@LABELS@|$data.labels.txt|; s|@TOL@|$tol|; s|@SOLVER@|fista|; s|@LAMBDA@|0.001|" bench/neurox-protocol.toml > "$out/lca-recipe-$tol.toml"
    /usr/bin/time -v -o "$out/lca-$tol.time" target/release/lca run "$out/lca-recipe-$tol.toml" --threads 1 --out "$out/lca-$tol" --quiet > "$out/lca-$tol.log"
done

"$python" bench/compare.py "$out" "$data.planted.json" "$data.acts.npy" $tolerances
