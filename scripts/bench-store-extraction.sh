#!/usr/bin/env bash
# Extraction with the store writer on and off: per-word activations of all
# 7 hidden states of all-MiniLM-L6-v2 for Brown sentences (bench/extraction.toml,
# batch 32, no cache), extracted by `lca run` into memory (writer off; the
# `source.brown` step of results.json) and streamed to a store by
# `lca store create` (writer on: shards encoded, hashed and written to disk
# between blocks; the command's wall time, model loading included as in
# the run's step). At 1 and 2 threads, each pair back to back, ROUNDS
# times (the two alternate, so a slow spell of a shared machine hits
# both). Prints the best and the median words/s of each, their ratios, CPU
# seconds and peak RSS (see docs/benchmarks.md).
#
#   scripts/bench-store-extraction.sh [SENTENCES] [SHARD_MIB] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
sentences=${1:-2000}
shard_mib=${2:-256}
rounds=${3:-3}
scripts/fetch-assets.sh >/dev/null
cargo build --release --locked -q
out=bench/out/store-extraction
rm -rf "$out"
mkdir -p "$out"
recipe=bench/store-extraction-run.toml
sed "s/sentences = 2000/sentences = $sentences/" bench/extraction.toml > "$recipe"
trap 'rm -f "$recipe"' EXIT
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
flags=$(grep -m1 "^flags" /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512bw|avx512_bf16|amx_tile|f16c)$' | tr '\n' ' ')
echo "==> machine: $cpu; $(nproc) cores; vector extensions: $flags; load $(cut -d' ' -f1-3 /proc/loadavg)"
results=$out/results.jsonl
: > "$results"
for threads in 1 2; do
    for round in $(seq "$rounds"); do
        run=$out/run-$threads
        rm -rf "$run"
        /usr/bin/time -f "%M %U %S" -o "$run.rss" \
            target/release/lca run "$recipe" --threads "$threads" --out "$run" --quiet >/dev/null
        python3 - "$run/results.json" "$threads" $(cat "$run.rss") <<'PY' | tee -a "$results"
import json, sys
r = json.load(open(sys.argv[1]))
words = r["sources"]["brown"]["tokens"]
seconds = r["provenance"]["timings"]["source.brown"]
print(json.dumps({"writer": "off (lca run)", "threads": int(sys.argv[2]), "words": words,
                  "seconds": round(seconds, 3), "words_per_s": round(words / seconds, 1),
                  "cpu_s": round(float(sys.argv[4]) + float(sys.argv[5]), 1),
                  "peak_rss_mb": round(int(sys.argv[3]) / 1024)}))
PY
        store=$out/store-$threads
        rm -rf "$store"
        start=$(date +%s.%N)
        /usr/bin/time -f "%M %U %S" -o "$store.rss" \
            target/release/lca store create "$recipe" --out "$store" --threads "$threads" \
            --shard-mib "$shard_mib" --quiet >/dev/null
        end=$(date +%s.%N)
        python3 - "$store/manifest.json" "$threads" "$start" "$end" $(cat "$store.rss") <<'PY' | tee -a "$results"
import json, sys
m = json.load(open(sys.argv[1]))
seconds = float(sys.argv[4]) - float(sys.argv[3])
print(json.dumps({"writer": "on (lca store create)", "threads": int(sys.argv[2]), "words": m["rows"],
                  "seconds": round(seconds, 3), "words_per_s": round(m["rows"] / seconds, 1),
                  "cpu_s": round(float(sys.argv[6]) + float(sys.argv[7]), 1),
                  "shards": len(m["shards"]), "peak_rss_mb": round(int(sys.argv[5]) / 1024)}))
PY
    done
done
python3 - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print("| threads | writer | best words/s | median words/s | median CPU s | peak RSS | on / off, best | on / off, median |")
print("|---|---|---|---|---|---|---|---|")
for threads in (1, 2):
    rows = {}
    for writer in ("off (lca run)", "on (lca store create)"):
        mine = [r for r in runs if r["threads"] == threads and r["writer"] == writer]
        rows[writer] = (max(r["words_per_s"] for r in mine),
                        statistics.median(r["words_per_s"] for r in mine),
                        statistics.median(r["cpu_s"] for r in mine),
                        max(r["peak_rss_mb"] for r in mine))
    off = rows["off (lca run)"]
    for writer, (best, median, cpu, rss) in rows.items():
        ratios = (f"{best / off[0]:.2f} | {median / off[1]:.2f}" if writer.startswith("on") else " | ")
        print(f"| {threads} | {writer} | {best:,.0f} | {median:,.0f} | {cpu:.1f} | {rss} MB | {ratios} |")
PY
