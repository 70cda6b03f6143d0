# Shared by the real-data benchmarks (bench-neurox-real.sh,
# bench-gaussian.sh): sourced, not run, from the repository root.

# real_matrix SENTENCES TASK OUT PYTHON: all-MiniLM-L6-v2 activations (all 7
# hidden states, last piece per word) of SENTENCES random Brown sentences
# with the TASK labels, extracted by lca and exported through NeuroX's JSON
# format, as OUT/data.acts.npy and OUT/data.labels.txt (kept if present).
# PYTHON needs numpy.
real_matrix() {
    local sentences=$1 task=$2 out=$3 python=$4 root
    root=$(pwd)
    [ -f "$out/data.acts.npy" ] && return 0
    echo "==> extracting $sentences sentences with lca and exporting them for NeuroX"
    sed -e "s|@MODEL@|$root/.cache/models/all-MiniLM-L6-v2|; s|@CORPUS@|$root/.cache/data/brown|" \
        -e "s|@SENTENCES@|$sentences|; s|@TASK@|$task|; s|@EXPORT@|$out/export.json|" \
        bench/real-export.toml > "$out/export.toml"
    target/release/lca run "$out/export.toml" --quiet --out "$out/export" >/dev/null
    "$python" bench/neurox_json_to_npy.py "$out/export.json" "$out/export.labels.txt" "$out/data"
    rm -f "$out/export.json"
}
