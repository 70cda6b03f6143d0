#!/usr/bin/env bash
# Tests the `lca` Python package as a user gets it: builds the wheel
# (scripts/build-wheel.sh), installs it with pytest into a fresh venv
# (.cache/python-test-venv, rebuilt each time), and runs lca-py/tests and
# the examples in examples/python against the `lca` command of the same
# build. Python: $PYTHON, default python3 (3.9 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
wheel=$(scripts/build-wheel.sh)
venv=$(pwd)/.cache/python-test-venv
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q "$wheel[ray]" pytest h5py
export LCA_BIN=$(pwd)/target/release/lca
# From outside the source tree, so `import lca` is the installed wheel.
(cd lca-py/tests && "$venv/bin/python" -m pytest -q -p no:cacheprovider .)
# The notebook-style example, as a script, with its report written.
repo=$(pwd)
out=$(mktemp -d)
(cd "$out" && "$venv/bin/python" "$repo/examples/python/neurox_notebook.py" "$out/notebook")
test -s "$out/notebook/report/report.html"
rm -rf "$out"
