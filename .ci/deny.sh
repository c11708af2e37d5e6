#!/usr/bin/env bash
# Supply-chain check: licenses on the allow-list, no wildcard versions, crates.io only (deny.toml).
# Installs cargo-deny when missing: a cold `cargo install cargo-deny --locked` took about 6 minutes
# on a 2-core machine, so cache ~/.cargo/bin in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deny --version >/dev/null 2>&1; then
    start=$(date +%s)
    cargo install cargo-deny --locked
    echo "installed cargo-deny in $(( $(date +%s) - start ))s"
fi
cargo deny --version
cargo deny check licenses bans sources
