#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of every crate
# (unit, property, conformance through the loaded plugin libraries, CLI,
# Hugging Face golden hidden states of tiny models, NeuroX file formats), and
# the HTML report opened in a browser.
# CI runs exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

# The HDF5 plugin links the system HDF5 library; the report test opens
# report.html in headless Chromium.
./scripts/install-system-deps.sh

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
echo "==> report.html in headless Chromium"
# Same package selection as above, so nothing is rebuilt.
cargo test --workspace --locked --test report_html -- --ignored
echo "==> fuzzing the recipe compiler and the file readers (${LCA_FUZZ_SECONDS:-30} s each)"
LCA_FUZZ_SECONDS=${LCA_FUZZ_SECONDS:-30} cargo test --workspace --locked --test fuzz
