#!/usr/bin/env bash
# Prints the Python interpreter of the current-PyTorch environment that the
# extraction benchmark compares against, building it first if needed: a
# venv in .cache/torch-venv with the newest torch, transformers, numpy, gguf
# and accelerate (the last two read GGUF files)
# from PyPI (about 6 GB with torch's CUDA libraries, which a CPU run never
# loads). Python: $PYTHON, default python3 (3.10 or newer).
# Progress goes to stderr; stdout is only the interpreter's path.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(pwd)/.cache/torch-venv
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    echo "==> building the PyTorch environment in $venv (pip install torch transformers numpy; about 6 GB)" >&2
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip >&2
    "$venv/bin/pip" install -q torch transformers numpy gguf accelerate >&2
fi
echo "$venv/bin/python"
