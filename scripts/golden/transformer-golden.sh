#!/usr/bin/env bash
# Regenerates the Hugging Face reference hidden states that the transformer
# source is tested against:
#   plugins/transformer/tests/fixtures/tiny-{bert,roberta,distilbert}/   tiny random models (from Rust)
#   plugins/transformer/tests/golden/tiny-{bert,roberta,distilbert}.json  every unit of every state
#   plugins/transformer/tests/golden/minilm.json               all-MiniLM-L6-v2, 8 units per state
#
#   scripts/golden/transformer-golden.sh
#
# Needs the NeuroX Python environment (Python 3.8, torch 1.8.1, transformers
# 4.6.1; built by scripts/neurox-venv.sh) and the model from
# scripts/fetch-assets.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=$(scripts/neurox-venv.sh)
fixtures=plugins/transformer/tests/fixtures
golden=plugins/transformer/tests/golden
mkdir -p "$fixtures" "$golden"
for family in bert roberta distilbert; do
    cargo run -q -p lca-plugin-transformer --example tiny-model -- "$fixtures/tiny-$family" "$family" 7
    "$python" scripts/golden/hf_hidden_states.py "$fixtures/tiny-$family" "$golden/tiny-$family.json"
done
model=.cache/models/all-MiniLM-L6-v2
[ -f "$model/model.safetensors" ] || scripts/fetch-assets.sh
"$python" scripts/golden/hf_hidden_states.py "$model" "$golden/minilm.json" \
    --dims 0,1,2,63,127,191,255,383 --sentences scripts/golden/minilm-sentences.json
