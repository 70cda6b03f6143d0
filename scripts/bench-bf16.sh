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
"$python" - "$out" <<'PY'
import glob, json, struct, sys
import numpy as np

out = sys.argv[1]

def matrix(compute):
    [path] = glob.glob(f"{out}/cache-{compute}/**/*.safetensors", recursive=True)
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    for name, t in header.items():
        if name != "__metadata__" and len(t["shape"]) == 2:
            start, end = t["data_offsets"]
            dtype = {"F32": "<f4", "F16": "<f2"}[t["dtype"]]
            return np.frombuffer(data[start:end], dtype=dtype).reshape(t["shape"])
    raise SystemExit(f"no matrix in {path}")

def results(compute):
    return json.load(open(f"{out}/{compute}/results.json"))

a = matrix("f32").astype(np.float64)
r32 = results("f32")
print(f"compute actually used: {results('bf16')['sources']['brown']['details']['compute']}")
print(f"rows × neurons: {a.shape[0]:,} × {a.shape[1]:,}; largest |activation| {np.abs(a).max():.3g}")
spread = a.std(axis=0)
print("| against f32 | largest abs. difference | RMS diff. / RMS activation | per-neuron RMS diff. / std: median | largest |")
print("|---|---|---|---|---|")
for name in ("bf16", "f16-storage"):
    diff = np.abs(a - matrix(name).astype(np.float64))
    per_neuron = np.sqrt((diff ** 2).mean(axis=0)) / spread
    print(f"| {name} | {diff.max():.3g} | {np.sqrt((diff ** 2).mean() / (a ** 2).mean()):.3g} "
          f"| {np.median(per_neuron):.3g} | {per_neuron.max():.3g} |")
print("| run | extraction s | LCA probe dev | test | macro F1 test |")
print("|---|---|---|---|---|")
for name in ("f32", "bf16", "f16-storage"):
    r = results(name)
    m = r["evaluations"]["accuracy"]["evaluation"]["metrics"]
    print(f"| {name} | {r['provenance']['timings']['source.brown']:.1f} | {m['accuracy.lca.dev']:.4f} "
          f"| {m['accuracy.lca.test']:.4f} | {m['macro_f1.lca.test']:.4f} |")
ks = (10, 50, 100, 268, 1344)
print("| top-k overlap with f32 | " + " | ".join(f"top {k}" for k in ks) + " |")
print("|---|" + "---|" * len(ks))
for other in ("bf16", "f16-storage"):
    ro = results(other)
    for name in r32["rankings"]:
        o32 = r32["rankings"][name]["ranking"]["order"]
        oo = ro["rankings"][name]["ranking"]["order"]
        cells = [f"{len(set(o32[:k]) & set(oo[:k])) / k:.2f}" for k in ks]
        print(f"| {name}, {other} | " + " | ".join(cells) + " |")
PY
