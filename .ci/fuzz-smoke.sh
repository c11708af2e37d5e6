#!/usr/bin/env bash
# Every fuzz target for a short while from the committed corpus (nightly, cargo-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup toolchain list | grep -q '^nightly' && ! rustup toolchain install nightly --profile minimal; then
  echo "fuzz-smoke: SKIPPED: no nightly toolchain on this machine (cargo-fuzz needs it)" >&2
  exit 0
fi
bash fuzz/run.sh "${FUZZ_SECONDS:-30}"
