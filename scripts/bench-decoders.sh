#!/usr/bin/env bash
# Decoder extraction throughput of lca against Python transformers (see
# docs/benchmarks.md): per-word residual states and MLP units of
#   - SmolLM2-135M-Instruct (Llama architecture, 30 blocks), both tools
#     reading the same GGUF file dequantized to f32, residual layers 0, 6, …
#     30 and MLP blocks 6, 12, … 30;
#   - a GPT-2-small-shaped model (12 blocks, 768 wide, random weights, with
#     SmolLM2's tokenizer), residual layers 0, 3, … 12 and MLP blocks 3, 6,
#     9, 12; written once into .cache/models/gpt2-small-random,
# for the first SENTENCES Brown sentences, batch 32, batches sorted by
# length in both tools, at 1 and 2 threads, lca and Python back to back.
#
#   scripts/bench-decoders.sh [SENTENCES]
set -euo pipefail
cd "$(dirname "$0")/.."
sentences=${1:-500}
python=$(scripts/torch-venv.sh)
scripts/fetch-assets.sh >/dev/null
cargo build --release --locked -q
smollm=.cache/models/SmolLM2-135M-Instruct
gpt2=.cache/models/gpt2-small-random
if [ ! -f "$gpt2/model.safetensors" ]; then
    echo "==> writing $gpt2 (random GPT-2-small weights, SmolLM2's tokenizer)"
    "$python" - "$smollm" "$gpt2" <<'PY' 2>/dev/null
import sys, torch, transformers
source, target = sys.argv[1], sys.argv[2]
tokenizer = transformers.AutoTokenizer.from_pretrained(source, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
torch.manual_seed(0)
config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=1024, n_embd=768, n_layer=12, n_head=12)
transformers.GPT2Model(config).save_pretrained(target)
tokenizer.save_pretrained(target)
PY
fi
out=bench/out/decoder-extraction
mkdir -p "$out"
trap 'rm -f bench/decoder-run-*.toml' EXIT
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
flags=$(grep -m1 "^flags" /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512bw|avx512_bf16|amx_tile|f16c)$' | tr '\n' ' ')
echo "==> machine: $cpu; $(nproc) cores; vector extensions: $flags; load $(cut -d' ' -f1-3 /proc/loadavg)"
results=$out/results.jsonl
: > "$results"
# name | lca model path (from bench/) | python model folder | gguf | layers | mlp layers
models=(
    "smollm2|../$smollm/SmolLM2-135M-Instruct.Q4_1.gguf|$smollm|SmolLM2-135M-Instruct.Q4_1.gguf|0,6,12,18,24,30|6,12,18,24,30"
    "gpt2|../$gpt2|$gpt2||0,3,6,9,12|3,6,9,12"
)
for threads in 1 2; do
    for spec in "${models[@]}"; do
        IFS='|' read -r name lca_model py_model gguf layers mlp <<<"$spec"
        recipe=bench/decoder-run-$name.toml
        sed -e "s|MODEL|$lca_model|" -e "s|SENTENCES|$sentences|" -e "s|MLP_LAYERS|[$mlp]|" \
            -e "s|LAYERS|[$layers]|" bench/decoder-extraction.toml > "$recipe"
        run=$out/lca-$name-$threads
        target/release/lca run "$recipe" --threads "$threads" --out "$run" --quiet >/dev/null
        python3 - "$run/results.json" "$threads" "$name" <<'PY' | tee -a "$results"
import json, sys
r = json.load(open(sys.argv[1]))
words = r["sources"]["brown"]["tokens"]
seconds = r["provenance"]["timings"]["source.brown"]
print(json.dumps({"tool": "lca", "model": sys.argv[3], "threads": int(sys.argv[2]), "words": words,
                  "seconds": round(seconds, 3), "words_per_s": round(words / seconds, 1)}))
PY
        extra=()
        [ -n "$gguf" ] && extra=(--gguf "$gguf")
        (cd bench && "$python" extract_hf_decoder.py "../$py_model" ../.cache/data/brown "${extra[@]}" \
            --sentences "$sentences" --threads "$threads" --layers "$layers" --mlp-layers "$mlp" --sort 2>/dev/null) \
            | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r['model']='$name'; print(json.dumps(r))" \
            | tee -a "$results"
    done
done
python3 - "$results" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
best = {(r["tool"], r["model"], r["threads"]): r["words_per_s"] for r in runs}
print("| model | threads | lca words/s | transformers words/s (sorted) | lca ÷ transformers |")
print("|---|---|---|---|---|")
for model in ["smollm2", "gpt2"]:
    for t in (1, 2):
        a, b = best[("lca", model, t)], best[("transformers", model, t)]
        print(f"| {model} | {t} | {a:,.0f} | {b:,.0f} | {a / b:.2f}× |")
PY
