#!/usr/bin/env bash
# Builds the `lca` Python wheel (abi3: one wheel for CPython 3.9 and later,
# Linux x86_64) into target/wheels, and prints its path.
#
# The wheel holds the extension module and the release builds of the
# plugins in plugins/ (rankers, probes, the transformer and HDF5 sources),
# stripped of debug information, so `pip install` of it gives what `lca`
# does. maturin comes from PyPI into .cache/maturin-venv. Python: $PYTHON,
# default python3. Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
venv=$(pwd)/.cache/maturin-venv
if [ ! -x "$venv/bin/maturin" ]; then
    echo "==> installing maturin into $venv" >&2
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q 'maturin>=1.9,<2' >&2
fi

echo "==> building the plugins (release)" >&2
cargo build --release --locked >&2
# The HDF5 reader is not a default member: it links the system HDF5
# library (scripts/install-system-deps.sh). Without it the wheel has every
# other plugin, and says so.
if ! cargo build --release --locked -p lca-plugin-hdf5 >&2; then
    echo "warning: the HDF5 plugin did not build (is the system HDF5 library installed? scripts/install-system-deps.sh); the wheel will not read NeuroX HDF5 in recipes" >&2
fi
plugins=lca-py/python/lca/plugins
rm -rf "$plugins"
mkdir -p "$plugins"
for crate in plugins/*/; do
    lib=target/release/liblca_plugin_$(basename "$crate" | tr - _).so
    if [ -f "$lib" ]; then
        strip --strip-debug -o "$plugins/$(basename "$lib")" "$lib"
    elif [ "$(basename "$crate")" != hdf5 ]; then
        echo "error: $lib was not built; run \`cargo build --release\` and look for its errors" >&2
        exit 2
    fi
done

echo "==> building the wheel" >&2
rm -f target/wheels/lca-*.whl
"$venv/bin/maturin" build --release --locked -m lca-py/Cargo.toml --out target/wheels \
    --interpreter "$python" --strip >&2
ls target/wheels/lca-*.whl
