#!/usr/bin/env bash
# Extraction throughput of lca against Python transformers: per-word
# activations of all 7 hidden states of all-MiniLM-L6-v2 for the first
# 2,000 Brown sentences, batch 32, at 1 and 2 threads (see
# docs/benchmarks.md). Python runs the newest torch and transformers from
# PyPI (scripts/torch-venv.sh), with the batches sorted by length as lca
# sorts them and in corpus order. Each thread count runs lca and Python
# back to back, twice, and keeps the faster run of each.
#
#   scripts/bench-extraction.sh [SENTENCES]
set -euo pipefail
cd "$(dirname "$0")/.."
sentences=${1:-2000}
python=$(scripts/torch-venv.sh)
scripts/fetch-assets.sh >/dev/null
cargo build --release --locked -q
out=bench/out/extraction
mkdir -p "$out"
sed "s/sentences = 2000/sentences = $sentences/" bench/extraction.toml > bench/extraction-run.toml
trap 'rm -f bench/extraction-run.toml' EXIT
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
flags=$(grep -m1 "^flags" /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512bw|avx512_bf16|amx_tile|f16c)$' | tr '\n' ' ')
echo "==> machine: $cpu; $(nproc) cores; vector extensions: $flags; load $(cut -d' ' -f1-3 /proc/loadavg)"
results=$out/results.jsonl
: > "$results"
for threads in 1 2; do
    for round in 1 2; do
        /usr/bin/time -f "%M" -o "$out/lca-$threads.rss" \
            target/release/lca run bench/extraction-run.toml --threads "$threads" --out "$out/lca-$threads" --quiet >/dev/null
        python3 - "$out/lca-$threads/results.json" "$threads" "$(cat "$out/lca-$threads.rss")" <<'PY' | tee -a "$results"
import json, sys
r = json.load(open(sys.argv[1]))
words = r["sources"]["brown"]["tokens"]
seconds = r["provenance"]["timings"]["source.brown"]
print(json.dumps({"tool": "lca", "threads": int(sys.argv[2]), "sorted": True, "words": words,
                  "seconds": round(seconds, 3), "words_per_s": round(words / seconds, 1),
                  "peak_rss_mb": round(int(sys.argv[3]) / 1024)}))
PY
        for sort in --sort ""; do
            "$python" bench/extract_hf.py .cache/models/all-MiniLM-L6-v2 .cache/data/brown \
                --sentences "$sentences" --batch-size 32 --threads "$threads" $sort | tee -a "$results"
        done
    done
done
python3 - "$results" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
best = {}
for r in runs:
    key = (r["threads"], r["tool"], r["sorted"])
    best[key] = max(best.get(key, 0), r["words_per_s"])
print("| threads | lca words/s | transformers, sorted | transformers, corpus order | lca ÷ sorted | lca ÷ corpus order |")
print("|---|---|---|---|---|---|")
for t in sorted({k[0] for k in best}):
    lca, s, c = best[(t, "lca", True)], best[(t, "transformers", True)], best[(t, "transformers", False)]
    print(f"| {t} | {lca:,.0f} | {s:,.0f} | {c:,.0f} | {lca / s:.2f}× | {lca / c:.2f}× |")
PY
