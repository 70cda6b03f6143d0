#!/usr/bin/env bash
# Extraction throughput of lca against Python transformers: per-word
# activations of all 7 hidden states of all-MiniLM-L6-v2 for the first
# 2,000 Brown sentences, batch 32, at 1 and 2 threads (see
# docs/benchmarks.md). Python runs the newest torch and transformers from
# PyPI (scripts/torch-venv.sh), with the batches sorted by length as lca
# sorts them and in corpus order. Each thread count runs lca and Python
# back to back, twice, and keeps the faster run of each. lca runs in f32
# and with `compute = "bf16"` (on CPUs without AVX512-BF16 that runs in
# f32; the table says which).
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
sed 's/^cache = false/cache = false\ncompute = "bf16"/' bench/extraction-run.toml > bench/extraction-run-bf16.toml
trap 'rm -f bench/extraction-run.toml bench/extraction-run-bf16.toml' EXIT
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
flags=$(grep -m1 "^flags" /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512bw|avx512_bf16|amx_tile|f16c)$' | tr '\n' ' ')
echo "==> machine: $cpu; $(nproc) cores; vector extensions: $flags; load $(cut -d' ' -f1-3 /proc/loadavg)"
results=$out/results.jsonl
: > "$results"
for threads in 1 2; do
    for round in 1 2; do
        for compute in f32 bf16; do
            recipe=bench/extraction-run.toml
            [ "$compute" = bf16 ] && recipe=bench/extraction-run-bf16.toml
            run=$out/lca-$compute-$threads
            /usr/bin/time -f "%M" -o "$run.rss" \
                target/release/lca run "$recipe" --threads "$threads" --out "$run" --quiet >/dev/null
            python3 - "$run/results.json" "$threads" "$(cat "$run.rss")" <<'PY' | tee -a "$results"
import json, sys
r = json.load(open(sys.argv[1]))
source = r["sources"]["brown"]
words = source["tokens"]
seconds = r["provenance"]["timings"]["source.brown"]
print(json.dumps({"tool": "lca", "compute": source["details"]["compute"], "threads": int(sys.argv[2]),
                  "sorted": True, "words": words, "seconds": round(seconds, 3),
                  "words_per_s": round(words / seconds, 1), "peak_rss_mb": round(int(sys.argv[3]) / 1024)}))
PY
        done
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
    tool = f"lca {r['compute']}" if r["tool"] == "lca" else r["tool"]
    key = (r["threads"], tool, r["sorted"])
    best[key] = max(best.get(key, 0), r["words_per_s"])
print("| threads | lca f32 words/s | lca bf16 words/s | transformers, sorted | transformers, corpus order | f32 ÷ sorted | bf16 ÷ sorted | f32 ÷ corpus order |")
print("|---|---|---|---|---|---|---|---|")
for t in sorted({k[0] for k in best}):
    f32, s, c = best[(t, "lca f32", True)], best[(t, "transformers", True)], best[(t, "transformers", False)]
    bf16 = best.get((t, "lca bf16", True))
    cell = f"{bf16:,.0f}" if bf16 else "(no AVX512-BF16: ran in f32)"
    ratio = f"{bf16 / s:.2f}×" if bf16 else "–"
    print(f"| {t} | {f32:,.0f} | {cell} | {s:,.0f} | {c:,.0f} | {f32 / s:.2f}× | {ratio} | {f32 / c:.2f}× |")
PY
