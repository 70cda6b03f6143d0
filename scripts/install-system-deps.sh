#!/usr/bin/env bash
# Installs the system packages that parts of lca and its tests need:
#   - the HDF5 development library, for the NeuroX HDF5 reader (plugins/hdf5);
#   - Chromium, which the report test uses to open report.html headless;
#   - prlimit (util-linux), which the larger-than-memory store test runs
#     lca under.
# Idempotent; uses apt-get (Debian, Ubuntu).
set -euo pipefail

missing=()
pkg-config --exists hdf5 2>/dev/null || missing+=(libhdf5-dev pkg-config)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v prlimit >/dev/null 2>&1 || missing+=(util-linux)

if [ ${#missing[@]} -eq 0 ]; then
    echo "system: HDF5 $(pkg-config --modversion hdf5) and $(chromium --version 2>/dev/null | head -1) are installed"
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo=sudo
fi
if command -v apt-get >/dev/null; then
    echo "system: installing ${missing[*]} with apt-get"
    $sudo apt-get update -q >/dev/null
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    echo "system: HDF5 $(pkg-config --modversion hdf5) and $(chromium --version 2>/dev/null | head -1) are installed"
else
    echo "error: no apt-get here; install these yourself and rerun: ${missing[*]}" >&2
    echo "       (Fedora: dnf install hdf5-devel chromium; macOS: brew install hdf5 and Chromium)" >&2
    exit 1
fi
