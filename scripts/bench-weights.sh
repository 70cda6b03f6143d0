#!/usr/bin/env bash
# What `weights = "bf16"` and `weights = "quantized"` cost and save (see
# docs/sources.md): extracts SmolLM2-135M activations (GGUF Q4_1) of 600
# Brown sentences with the dense-layer weights held in f32, in bfloat16 and
# as the file's blocks (bench/weights-effect.toml), each run timed with its
# peak memory, then compares the matrices, the LCA probe's accuracy and the
# top-k sets of the LCA, correlation and probeless rankings with f32's.
# numpy comes from a small venv in .cache/numpy-venv.
#
#   scripts/bench-weights.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
venv=.cache/numpy-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q numpy >&2
fi
scripts/fetch-assets.sh >/dev/null
cargo build --release --locked -q
out=bench/out/weights
mkdir -p "$out"
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
flags=$(grep -m1 "^flags" /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512bw|avx512_bf16|amx_tile|f16c)$' | tr '\n' ' ')
echo "==> machine: $cpu; $(nproc) cores; vector extensions: $flags; $threads threads"
for weights in f32 bf16 quantized; do
    [ -f "$out/$weights/results.json" ] && continue
    sed -e "s/@WEIGHTS@/$weights/" -e "s|@CACHE@|out/weights/cache-$weights|" \
        bench/weights-effect.toml > "bench/weights-effect-$weights.toml"
    /usr/bin/time -v target/release/lca run "bench/weights-effect-$weights.toml" \
        --threads "$threads" --out "$out/$weights" --quiet >/dev/null 2> "$out/$weights.time"
    rm "bench/weights-effect-$weights.toml"
done
"$venv/bin/python" bench/compare_extractions.py "$out" brown f32 bf16 quantized
