# Shared by the store benchmarks (bench-store-limit.sh, bench-store-ram.sh):
# sourced, not run.

# cpu_line: the CPU model, core count and the vector extensions the kernels
# dispatch on.
cpu_line() {
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores;" \
         "vector: $(grep -o -w -E 'avx2|fma|avx512f|avx512bw|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
}

# analysis_toml L1: the recipe steps both benchmarks run on a store named
# `big`: an elastic-net probe, its probe-weight ranking, the correlation
# ranking and the probe's accuracy.
analysis_toml() {
    cat <<TOML
[probe.lca]
type = "elastic_net"
l1 = $1
l2 = 0.001
[ranker.lca]
type = "probe_weights"
probe = "lca"
[ranker.corr]
type = "correlation"
[evaluator.accuracy]
type = "probe_accuracy"
probes = ["lca"]
TOML
}

# peak_anonymous_kib WAITER: samples the anonymous memory of the newest
# `lca` process every 50 ms until the process WAITER ends; prints the
# largest sample in KiB.
peak_anonymous_kib() {
    local waiter=$1 peak=0 anon pid=""
    while kill -0 "$waiter" 2>/dev/null; do
        [ -n "$pid" ] || pid=$(pgrep -n -x lca || true)
        anon=$([ -n "$pid" ] && awk '/^RssAnon/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        [ -n "$anon" ] && [ "$anon" -gt "$peak" ] && peak=$anon
        sleep 0.05
    done
    echo "$peak"
}
