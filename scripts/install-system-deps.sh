#!/usr/bin/env bash
# Installs the system libraries that optional parts of lca link: the HDF5
# development library, for the NeuroX HDF5 reader (plugins/hdf5). Nothing
# else needs system packages. Idempotent; uses apt-get (Debian, Ubuntu).
set -euo pipefail
if pkg-config --exists hdf5 2>/dev/null; then
    echo "system: HDF5 $(pkg-config --modversion hdf5) is installed"
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo=sudo
fi
if command -v apt-get >/dev/null; then
    echo "system: installing libhdf5-dev and pkg-config with apt-get"
    $sudo apt-get update -q >/dev/null
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q libhdf5-dev pkg-config >/dev/null
    echo "system: HDF5 $(pkg-config --modversion hdf5) is installed"
else
    echo "error: no apt-get here; install the HDF5 development library yourself" >&2
    echo "       (Fedora: dnf install hdf5-devel; macOS: brew install hdf5) and rerun" >&2
    exit 1
fi
