#!/usr/bin/env bash
# Reading an activation store against holding the matrix in memory:
# builds a planted store (ROWS × 1,536 neurons, f32, 256 MiB shards), then
# times, with peak RSS,
#   1. `lca store stats` + `rank` with a cold page cache (when this user may
#      drop it) and a warm one: one block of rows in memory at a time;
#   2. a run of the `correlation` ranker on the `store` source, which maps
#      the f32 store in place and reads it in blocks of rows;
#   3. the IoU ranking (α = 0.005) both ways: two passes of `store stats`
#      (top values, then mask counts at the merged thresholds) + `rank`,
#      and the `iou` ranker in a run on the `store` source.
# Usage: scripts/bench-store.sh [ROWS] [THREADS]   (default 300000 rows, 2)
# LCA=path/to/lca overrides the binary (default: target/release/lca, built
# here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-300000}
threads=${2:-2}
lca=${LCA:-target/release/lca}
[ -x "$lca" ] || cargo build --release --locked
work=$(mktemp -d "${TMPDIR:-/tmp}/lca-bench-store.XXXX")
trap 'rm -rf "$work"' EXIT

echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores;" \
     "vector: $(grep -o -w -E 'avx2|fma|avx512f|avx512bw|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
cat > "$work/planted.toml" <<TOML
[run]
seed = 5
[source.planted]
type = "synthetic"
tokens = $rows
neurons = 1536
layers = 4
classes = 40
per_class = 2
TOML
measure() { # label, command...
    local label=$1; shift
    /usr/bin/time -f "$label: %e s, peak RSS %M KB" "$@" > /dev/null
}
measure "create" "$lca" store create --quiet --threads "$threads" --out "$work/store" "$work/planted.toml"
bytes=$(du -sb "$work/store" | cut -f1)
echo "store: $((bytes / 1048576)) MiB in $(ls "$work/store" | grep -c shard) shards"
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && echo "(page cache dropped)" || echo "(page cache kept: not allowed to drop it)"; }
drop
measure "stats, cold cache" "$lca" store stats "$work/store" --out "$work/stats.json"
measure "stats, warm cache" "$lca" store stats "$work/store" --out "$work/stats.json"
measure "rank from stats" "$lca" store rank "$work/stats.json" --method correlation --out "$work/ranked.json"
store_recipe() { # file, ranker id, ranker type: one ranker on the store source
    cat > "$1" <<TOML
[run]
threads = $threads
[source.s]
type = "store"
path = "$work/store"
[ranker.$2]
type = "$3"
TOML
}
store_recipe "$work/memory.toml" corr correlation
drop
measure "correlation run on the store source, cold cache" "$lca" run --quiet --out "$work/run" "$work/memory.toml"
measure "correlation run on the store source, warm cache" "$lca" run --quiet --out "$work/run" "$work/memory.toml"
measure "IoU pass 1 (top values), warm cache" "$lca" store stats "$work/store" --iou-quantile 0.005 --out "$work/top.json"
measure "IoU pass 2 (mask counts), warm cache" "$lca" store stats "$work/store" --iou-thresholds "$work/top.json" --out "$work/masks.json"
measure "rank IoU from stats" "$lca" store rank "$work/masks.json" --method iou --out "$work/iou.json"
store_recipe "$work/iou.toml" iou iou
measure "iou run on the store source, warm cache" "$lca" run --quiet --out "$work/iou-run" "$work/iou.toml"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
def order(path, name=None):
    d = json.load(open(f"{work}/{path}"))
    return (d["rankings"][name] if name else d)["ranking"]["order"]
print("same correlation ranking from statistics and from the ranker in a run:",
      order("ranked.json") == order("run/results.json", "corr"))
print("same IoU ranking from statistics and from the ranker in a run:",
      order("iou.json") == order("iou-run/results.json", "iou"))
PY
