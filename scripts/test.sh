#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of every crate
# (unit, property, conformance through the loaded plugin libraries, CLI).
# CI runs exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
