#!/usr/bin/env bash
# Extraction throughput of lca against Python transformers: per-word
# activations of all 7 hidden states of all-MiniLM-L6-v2 for the first
# 2,000 Brown sentences, batch 32, at 1 and 2 threads (see
# docs/benchmarks.md). Python runs transformers 4.6.1 on torch 1.8.1 from
# the NeuroX environment (scripts/neurox-venv.sh), both in corpus order and
# with lca's length-sorted batching.
#
#   scripts/bench-extraction.sh [SENTENCES]
set -euo pipefail
cd "$(dirname "$0")/.."
sentences=${1:-2000}
python=$(scripts/neurox-venv.sh)
scripts/fetch-assets.sh >/dev/null
cargo build --release --locked -q
out=bench/out/extraction
mkdir -p "$out"
sed "s/sentences = 2000/sentences = $sentences/" bench/extraction.toml > bench/extraction-run.toml
trap 'rm -f bench/extraction-run.toml' EXIT
echo "==> machine: $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
for threads in 1 2; do
    target/release/lca run bench/extraction-run.toml --threads "$threads" --out "$out/lca-$threads" --quiet
    python3 - "$out/lca-$threads/results.json" "$threads" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
words = r["sources"]["brown"]["tokens"]
seconds = r["provenance"]["timings"]["source.brown"]
print(json.dumps({"tool": "lca", "threads": int(sys.argv[2]), "words": words, "seconds": round(seconds, 3),
                  "words_per_s": round(words / seconds, 1)}))
PY
    for sort in "" --sort; do
        "$python" bench/extract_hf.py .cache/models/all-MiniLM-L6-v2 .cache/data/brown \
            --sentences "$sentences" --batch-size 32 --threads "$threads" $sort
    done
done
