#!/usr/bin/env bash
# An LCA recipe on a store larger than the machine's memory, against the
# same recipe on a store of the same shape that fits in the page cache.
#
# Writes two planted f32 stores of NEURONS neurons and 8 classes: BIG
# tokens (by default sized past this machine's memory) and BIG/8 tokens.
# Runs the same recipe on each (elastic-net probe, its probe-weight ranking,
# the correlation ranking, probe accuracy): the small one with its store
# read into the page cache first, the big one after dropping the cache.
# Prints each step's time, rows per second and GB per second (the store's
# bytes per step second, so a step that reads the store k times moves k
# times that), the run's peak anonymous memory and peak resident set, and
# what it read from disk. The stores are deleted at the end.
# Usage (as root, for dropping the page cache):
#   scripts/bench-store-ram.sh [BIG_TOKENS] [NEURONS] [THREADS]
#   (default: tokens for 1.15 × MemTotal at 8,192 neurons; 8192; 2)
# Needs free disk for 1.3 × MemTotal. LCA=path/to/lca overrides the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/store-bench.sh
neurons=${2:-8192}
mem_kib=$(awk '/^MemTotal/ {print $2}' /proc/meminfo)
big=${1:-$(( mem_kib * 1024 / 100 * 115 / (neurons * 4) ))}
threads=${3:-2}
small=$(( big / 8 ))
lca=${LCA:-target/release/lca}
[ -x "$lca" ] || cargo build --release --locked
lca=$(realpath "$lca")
work=$(mktemp -d "${TMPDIR:-/tmp}/lca-bench-ram.XXXX")
trap 'rm -rf "$work"' EXIT

cpu_line
echo "memory: $((mem_kib >> 20)) GiB; disk free: $(df -h --output=avail "$work" | tail -1)"

# store NAME TOKENS: writes a planted store and its recipe.
store() {
    local name=$1 tokens=$2
    cat > "$work/$name-source.toml" <<TOML
[run]
seed = 1
threads = $threads
[source.big]
type = "synthetic"
tokens = $tokens
neurons = $neurons
layers = 8
classes = 8
per_class = 2
TOML
    local started=$SECONDS
    "$lca" store create --quiet --out "$work/$name" "$work/$name-source.toml"
    local bytes
    bytes=$(du -sb "$work/$name" | cut -f1)
    echo "$name store: $tokens tokens × $neurons neurons, $((bytes >> 20)) MiB, written in $((SECONDS - started)) s"
    {
        cat <<TOML
[run]
seed = 1
threads = $threads
[source.big]
type = "store"
path = "$work/$name"
TOML
        analysis_toml 0.01
    } > "$work/$name.toml"
}

# run NAME TOKENS: runs the recipe on store NAME, sampling the process's
# anonymous and resident memory every 50 ms.
run() {
    local name=$1 tokens=$2
    /usr/bin/time -f "%e %I %M" -o "$work/$name.time" \
        "$lca" run --out "$work/out-$name" "$work/$name.toml" > "$work/$name.log" 2>&1 &
    local waiter=$! peak
    peak=$(peak_anonymous_kib "$waiter")
    wait "$waiter" || { echo "$name: lca failed"; cat "$work/$name.log"; exit 1; }
    local wall inputs rss bytes
    read -r wall inputs rss < "$work/$name.time"
    bytes=$(du -sb "$work/$name" | cut -f1)
    echo "== $name: $wall s, peak anonymous memory $((peak >> 10)) MiB," \
         "peak resident $((rss >> 10)) MiB, read from disk $((inputs * 512 >> 20)) MiB"
    grep -E "^ +done" "$work/$name.log" | while read -r _ step _ secs; do
        secs=${secs%s}
        awk -v s="$step" -v t="$secs" -v r="$tokens" -v b="$bytes" 'BEGIN {
            if (t > 0) printf "   %-22s %8.2f s  %12.0f rows/s  %6.2f GB/s\n", s, t, r / t, b / t / 1e9
            else printf "   %-22s %8.2f s\n", s, t }'
    done
}

store small "$small"
store big "$big"
cat "$work/small"/shard-* > /dev/null
run small "$small"
sync; echo 3 > /proc/sys/vm/drop_caches
run big "$big"
