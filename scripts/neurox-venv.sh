#!/usr/bin/env bash
# Prints the Python interpreter of the NeuroX environment, building it first
# if needed: a Python 3.8 venv in .cache/neurox-venv with `pip install
# neurox` (NeuroX 1.0.9, torch 1.8.1, transformers 4.6.1, h5py; about 2 GB).
# Python 3.8: $PYTHON38, default ~/.pyenv/versions/3.8.18/bin/python.
# Progress goes to stderr; stdout is only the interpreter's path.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(pwd)/.cache/neurox-venv
python38=${PYTHON38:-$HOME/.pyenv/versions/3.8.18/bin/python}
if [ ! -x "$venv/bin/python" ]; then
    if [ ! -x "$python38" ]; then
        echo "error: Python 3.8 not found at $python38; set PYTHON38 (NeuroX's pinned wheels need 3.8)" >&2
        exit 1
    fi
    echo "==> building the NeuroX environment in $venv (pip install neurox; about 2 GB)" >&2
    "$python38" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip >&2
    "$venv/bin/pip" install -q neurox >&2
fi
echo "$venv/bin/python"
