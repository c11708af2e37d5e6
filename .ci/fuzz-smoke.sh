#!/usr/bin/env bash
# Every fuzz target for a short while from the committed corpus (nightly, cargo-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
bash fuzz/run.sh "${FUZZ_SECONDS:-30}"
