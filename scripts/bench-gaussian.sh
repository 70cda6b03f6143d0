#!/usr/bin/env bash
# The Gaussian ranker on real activations: greedy selection of every one of
# NEURONS neurons (MiniLM layer 6, units from 0) of the brown_pos matrix of
# bench-neurox-real.sh (2,000 Brown sentences, 87 classes), scored on ROWS
# training rows, at 1 and 2 threads. Prints the machine and the ranker's
# time; results go to bench/out/real-brown_pos-2000/gaussian-*.
#
#   scripts/bench-gaussian.sh [NEURONS ROWS]
#
# Defaults: 200 neurons, 10,000 rows. Needs the assets of
# scripts/fetch-assets.sh and numpy from scripts/neurox-venv.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
neurons=${1:-200}
rows=${2:-10000}
out=$root/bench/out/real-brown_pos-2000
mkdir -p "$out"

python=$(scripts/neurox-venv.sh)
cargo build --release --locked -q
scripts/fetch-assets.sh >/dev/null
# shellcheck source=lib/store-bench.sh
source scripts/lib/store-bench.sh
# shellcheck source=lib/real-matrix.sh
source scripts/lib/real-matrix.sh
real_matrix 2000 brown_pos "$out" "$python"

"$python" - "$out/data.acts.npy" "$out/gaussian.acts.npy" "$neurons" <<'PY'
import sys
import numpy as np
x = np.load(sys.argv[1], mmap_mode="r")
first = 6 * 384
np.save(sys.argv[2], np.ascontiguousarray(x[:, first:first + int(sys.argv[3])]))
PY
sed -e "s|@ACTS@|$out/gaussian.acts.npy|; s|@LABELS@|$out/data.labels.txt|" \
    -e "s|@NEURONS@|$neurons|; s|@ROWS@|$rows|" bench/gaussian.toml > "$out/gaussian.toml"

cpu_line
for threads in 1 2; do
    /usr/bin/time -f "%e s wall, %M KB peak" -o "$out/gaussian-$threads.time" \
        target/release/lca run "$out/gaussian.toml" --threads "$threads" --quiet \
        --out "$out/gaussian-$threads" >/dev/null
    "$python" - "$out/gaussian-$threads/results.json" "$threads" "$(cat "$out/gaussian-$threads.time")" <<'PY'
import json, sys
seconds = json.load(open(sys.argv[1]))["provenance"]["timings"]["ranker.gaussian"]
print(f"{sys.argv[2]} thread(s): the Gaussian ranker took {seconds:.2f} s (run: {sys.argv[3]})")
PY
done
