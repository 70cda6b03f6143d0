#!/usr/bin/env bash
# An LCA recipe on a store, with the page cache holding it and under a cgroup
# memory limit that holds a fraction of it: what reading from disk costs.
#
# Builds a planted store (TOKENS × NEURONS, 8 classes; f32, or DTYPE=f16 or
# bf16 from the environment), then runs the
# same recipe (elastic-net probe, probe-weight and correlation rankings,
# probe accuracy, ablation at 5%) twice:
#   1. warm: no limit, the store in the page cache (read once beforehand);
#   2. limited: inside a cgroup of LIMIT_MIB, page cache dropped first.
# Prints each step's wall time, the run's wall time, its peak anonymous
# memory (what no cache can give back) and its data read from disk.
# Usage (as root, with a cgroup v1 or v2 memory controller):
#   scripts/bench-store-limit.sh [TOKENS] [NEURONS] [LIMIT_MIB] [THREADS]
#   (default 200000 4096 512 2)
# With SENTENCES=N in the environment, the store holds real activations
# instead: all-MiniLM-L6-v2 (7 × 384 = 2,688 neurons) on N seeded Brown
# sentences, labelled with the simplified Brown POS tags (brown_pos, over
# 100 classes); TOKENS and NEURONS are then ignored. Needs
# scripts/fetch-assets.sh.
# LCA=path/to/lca overrides the binary (default: target/release/lca, built
# here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/store-bench.sh
tokens=${1:-200000}
neurons=${2:-4096}
limit_mib=${3:-512}
threads=${4:-2}
lca=${LCA:-target/release/lca}
dtype=${DTYPE:-f32}
[ -x "$lca" ] || cargo build --release --locked
lca=$(realpath "$lca")
work=$(mktemp -d "${TMPDIR:-/tmp}/lca-bench-limit.XXXX")

if [ -e /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
    group=/sys/fs/cgroup/memory/lca-bench-$$
    mkdir "$group"
    echo $((limit_mib << 20)) > "$group/memory.limit_in_bytes"
else
    group=/sys/fs/cgroup/lca-bench-$$
    mkdir "$group"
    echo $((limit_mib << 20)) > "$group/memory.max"
fi
trap 'rmdir "$group" 2>/dev/null; rm -rf "$work"' EXIT

cpu_line
if [ -n "${SENTENCES:-}" ]; then
    root=$(pwd)
    cat > "$work/source.toml" <<TOML
[run]
seed = 1
threads = $threads
[source.big]
type = "transformer"
model = "$root/.cache/models/all-MiniLM-L6-v2"
corpus = "$root/.cache/data/brown"
task = "brown_pos"
sentences = $SENTENCES
sample = "random"
seed = 11
aggregation = "last"
TOML
    what="all-MiniLM-L6-v2 on $SENTENCES Brown sentences, brown_pos"
    l1=0.001
else
    cat > "$work/source.toml" <<TOML
[run]
seed = 1
[source.big]
type = "synthetic"
tokens = $tokens
neurons = $neurons
layers = 4
classes = 8
per_class = 2
TOML
    what="planted, $tokens tokens × $neurons neurons, 8 classes"
    l1=0.01
fi
"$lca" store create --quiet --dtype "$dtype" --out "$work/store" "$work/source.toml"
bytes=$(du -sb "$work/store" | cut -f1)
echo "store: $((bytes >> 20)) MiB ($what, $dtype); limit: $limit_mib MiB"
{
    cat <<TOML
[run]
seed = 1
threads = $threads
[source.big]
type = "store"
path = "$work/store"
TOML
    analysis_toml "$l1"
    cat <<TOML
[evaluator.ablation]
type = "ablation"
rankings = ["lca", "corr"]
probes = ["lca"]
percent = [5]
TOML
} > "$work/lca.toml"

# run LABEL CGROUP_OR_EMPTY: runs the recipe, sampling the anonymous memory
# of the `lca` process every 50 ms.
run() {
    local label=$1 into=$2 out="$work/out-$1"
    local timed=(/usr/bin/time -f "%e %I" -o "$work/$label.time" "$lca" run --out "$out" "$work/lca.toml")
    if [ -n "$into" ]; then
        sh -c 'echo $$ > "$0" && exec "$@"' "$into/cgroup.procs" "${timed[@]}" > "$work/$label.log" 2>&1 &
    else
        "${timed[@]}" > "$work/$label.log" 2>&1 &
    fi
    local waiter=$! peak
    peak=$(peak_anonymous_kib "$waiter")
    wait "$waiter" || { echo "$label: lca failed"; cat "$work/$label.log"; exit 1; }
    read -r wall inputs < "$work/$label.time"
    echo "== $label: $wall s, peak anonymous memory $((peak >> 10)) MiB," \
         "read from disk $((inputs * 512 >> 20)) MiB"
    grep -E "^ +done" "$work/$label.log"
}
cat "$work/store"/shard-* > /dev/null
run warm ""
sync; echo 3 > /proc/sys/vm/drop_caches
run limited "$group"
python3 - "$work/out-warm/results.json" "$work/out-limited/results.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
same = all(a[k] == b[k] for k in ("probes", "rankings", "evaluations"))
print("same probes, rankings and evaluations warm and limited:", same)
PY
