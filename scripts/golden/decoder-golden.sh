#!/usr/bin/env bash
# Regenerates the tiny decoder fixtures (GPT-2, Llama 3, Llama 2, Mistral,
# Qwen2, Qwen3) and the per-site reference activations of every tiny model:
#   plugins/transformer/tests/fixtures/tiny-{gpt2,llama,llama2,mistral,qwen2,qwen3}/
#   plugins/transformer/tests/golden/tiny-*.json, tiny-*-sites.json
#
#   scripts/golden/decoder-golden.sh
#
# Needs the current-PyTorch environment of scripts/torch-venv.sh (torch and
# transformers from PyPI). CI does not: the outputs are committed.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=$(scripts/torch-venv.sh)
"$python" scripts/golden/decoder_fixtures.py plugins/transformer/tests/fixtures plugins/transformer/tests/golden
(cd scripts/golden && "$python" gguf_fixtures.py ../../plugins/transformer/tests/fixtures ../../plugins/transformer/tests/golden)
