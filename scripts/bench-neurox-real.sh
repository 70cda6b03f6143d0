#!/usr/bin/env bash
# Side-by-side benchmark of lca against NeuroX on real activations:
# all-MiniLM-L6-v2 (7 hidden states × 384 = 2,688 neurons) on random Brown
# sentences, extracted once by lca and exported in NeuroX's JSON format, so
# both tools read the same matrix. Both hold out the last 10% of tokens,
# train the probe (λ1 = λ2 = LAMBDA), order neurons by LCA and run the
# minimal-subset search on NeuroX's grid. lca runs with `fista` and with
# `working_set`. Results and the machine go to bench/out/real-*/.
#
#   scripts/bench-neurox-real.sh [SENTENCES TASK LAMBDA THREADS]
#
# Defaults: 2000 sentences, brown_pos, 0.001, 1 thread. Needs the assets of
# scripts/fetch-assets.sh and the NeuroX environment of
# scripts/neurox-venv.sh (Python 3.8); the harness is $NEUROX_HARNESS,
# default ../shared/peer.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

sentences=${1:-2000}
task=${2:-brown_pos}
lambda=${3:-0.001}
threads=${4:-1}
harness=${NEUROX_HARNESS:-$root/../shared/peer}
out=$root/bench/out/real-$task-$sentences
mkdir -p "$out"

python=$(scripts/neurox-venv.sh)
echo "==> building lca (release)"
cargo build --release --locked -q
scripts/fetch-assets.sh >/dev/null

cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
flags=$(grep -m1 "^flags" /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512bw|avx512_bf16|amx_tile|f16c)$' | tr '\n' ' ')
echo "==> machine: $cpu; $(nproc) cores; vector extensions: $flags; load $(cut -d' ' -f1-3 /proc/loadavg)"

data=$out/data
# shellcheck source=lib/real-matrix.sh
source scripts/lib/real-matrix.sh
real_matrix "$sentences" "$task" "$out" "$python"

echo "==> NeuroX ($threads thread(s))"
/usr/bin/time -v -o "$out/neurox.time" "$python" "$harness/neurox_lca.py" \
    --acts "$data.acts.npy" --labels "$data.labels.txt" --test-frac 0.1 --split tail \
    --l1 "$lambda" --l2 "$lambda" --threads "$threads" --minimal \
    --out-prefix "$out/neurox" > "$out/neurox.log"

solvers=${SOLVERS:-fista working_set}
for solver in $solvers; do
    echo "==> lca ($threads thread(s), $solver)"
    sed -e "s|@ACTS@|$data.acts.npy|; s|@LABELS@|$data.labels.txt|; s|@TOL@|0.001|" \
        -e "s|@SOLVER@|$solver|; s|@LAMBDA@|$lambda|" bench/neurox-protocol.toml > "$out/lca-recipe-$solver.toml"
    /usr/bin/time -v -o "$out/lca-$solver.time" target/release/lca run "$out/lca-recipe-$solver.toml" \
        --threads "$threads" --out "$out/lca-$solver" --quiet > "$out/lca-$solver.log"
done

echo "$cpu ($flags), $threads thread(s), $task, λ = $lambda"
"$python" bench/compare.py "$out" - "$data.acts.npy" $solvers
