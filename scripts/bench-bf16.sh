#!/usr/bin/env bash
# What `compute = "bf16"` costs in accuracy (see docs/sources.md): extracts
# all-MiniLM-L6-v2 activations of 2,000 Brown sentences with the dense-layer
# products in f32 and in bf16 (bench/bf16-effect.toml), then compares the
# two matrices, the LCA probe's accuracy and the top-k sets of the LCA,
# correlation and probeless rankings. For scale, a third run keeps f32
# products but stores the activations in f16 (`dtype = "f16"`), a
# perturbation users already accept. Needs a CPU with AVX512-BF16 (on
# others bf16 falls back to f32 and the comparison says so).
#
#   scripts/bench-bf16.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
python=$(scripts/torch-venv.sh)  # for numpy
scripts/fetch-assets.sh >/dev/null
cargo build --release --locked -q
out=bench/out/bf16
mkdir -p "$out"
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
flags=$(grep -m1 "^flags" /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512bw|avx512_bf16|amx_tile|f16c)$' | tr '\n' ' ')
echo "==> machine: $cpu; $(nproc) cores; vector extensions: $flags"
for run in f32:f32:f32 bf16:bf16:f32 f16-storage:f32:f16; do
    IFS=: read -r name compute dtype <<< "$run"
    [ -f "$out/$name/results.json" ] && continue
    sed -e "s/@COMPUTE@/$compute/" -e "s/@DTYPE@/$dtype/" -e "s|@CACHE@|out/bf16/cache-$name|" \
        bench/bf16-effect.toml > "bench/bf16-effect-$name.toml"
    target/release/lca run "bench/bf16-effect-$name.toml" --threads "$threads" \
        --out "$out/$name" --quiet >/dev/null
    rm "bench/bf16-effect-$name.toml"
done
"$python" bench/compare_extractions.py "$out" brown f32 bf16 f16-storage
