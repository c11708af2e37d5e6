#!/usr/bin/env bash
# The benchmark harness in --quick mode, so it cannot rot: it runs every section against the
# emulator but asserts no timing (BENCHMARKS.md holds the real figures). Run after
# .ci/musl-smoke.sh, whose static binary it reuses instead of a second release build.
set -euo pipefail
cd "$(dirname "$0")/.."
musl="$PWD/target/x86_64-unknown-linux-musl/release/vault-login"
if [ -x "$musl" ] && [ "${VAULT_LOGIN_CI_ALL_ARCHES:-0}" = 1 ]; then
  VAULT_LOGIN_BENCH_BIN="$musl" cargo run --locked -p vault-login-bench -- --quick
elif [ -x "$musl" ]; then
  # The size section builds arm64 and armv7 too: with VAULT_LOGIN_CI_ALL_ARCHES=1 only.
  VAULT_LOGIN_BENCH_BIN="$musl" cargo run --locked -p vault-login-bench -- --quick --only cold,idle,sim,fleet
else
  echo "bench-smoke: no static musl build here (see musl-smoke); skipping the size and idle sections" >&2
  cargo run --locked -p vault-login-bench -- --quick --only cold,sim,fleet
fi
