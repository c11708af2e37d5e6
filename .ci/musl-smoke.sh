#!/usr/bin/env bash
# Builds the static binaries the image ships, each through .ci/build-arch.sh exactly as the
# Dockerfile does, and runs a smoke subset of the integration tests against them (VAULT_LOGIN_BIN):
#   amd64  natively;
#   arm64  under user-mode emulation: VAULT_LOGIN_BIN is a wrapper that execs qemu-aarch64-static,
#          so the tests' signals reach the emulated vault-login itself;
#   armv7  built and started (--version) under qemu-arm-static only, to keep CI short.
# The smoke subset covers login and the token file's mode, renewals, the re-login before max TTL,
# SIGTERM and /readyz. A target whose standard library cannot be installed here is SKIPPED with a
# loud banner (build-arch.sh exit 3), and listed again at the end; any other failure fails CI.
set -euo pipefail
cd "$(dirname "$0")/.."

# Test-name filters (substrings) and the test files that hold them. Each filter must match a test
# that passed: a renamed test must not turn the smoke run into a silent no-op.
SMOKE=(once_writes_the_token_with_mode renews_several_times sigterm_stops_quickly
  readyz_follows_the_token logs_in_again_before_max_ttl)
SMOKE_FILES=(--test once --test sidecar --test sidecar_health)

target_dir=${CARGO_TARGET_DIR:-target}
summary=()
skipped=()

# elapsed SINCE: seconds since SINCE (date +%s).
elapsed() { echo $(($(date +%s) - $1)); }

# build ARCH: builds through build-arch.sh; returns 3 (after recording the skip) if skipped.
build() {
  local arch=$1 t0 rc=0
  t0=$(date +%s)
  bash .ci/build-arch.sh "$arch" || rc=$?
  if [ "$rc" -eq 3 ]; then
    skipped+=("$arch")
    summary+=("$arch: SKIPPED (standard library not installable here; see the banner above)")
    return 3
  elif [ "$rc" -ne 0 ]; then
    echo "musl-smoke: build of $arch failed (exit $rc)" >&2
    exit 1
  fi
  echo "musl-smoke: $arch built in $(elapsed "$t0")s"
}

# smoke LABEL BIN: the smoke subset against BIN; checks that every filter matched a passed test.
smoke() {
  local label=$1 bin=$2 t0 out f
  t0=$(date +%s)
  out=$(mktemp)
  if ! VAULT_LOGIN_BIN="$bin" cargo test --locked "${SMOKE_FILES[@]}" -- "${SMOKE[@]}" 2>&1 | tee "$out"; then
    rm -f "$out"
    echo "musl-smoke: smoke tests against the $label binary FAILED" >&2
    exit 1
  fi
  for f in "${SMOKE[@]}"; do
    if ! grep -Eq "^test [a-z0-9_]*${f}[a-z0-9_]* \.\.\. ok\$" "$out"; then
      rm -f "$out"
      echo "musl-smoke: no passed test matches '$f' ($label): renamed? update SMOKE in $0" >&2
      exit 1
    fi
  done
  rm -f "$out"
  summary+=("$label: smoke tests passed ($(elapsed "$t0")s)")
}

# qemu NAME: the path of qemu-NAME-static (or qemu-NAME), installing Debian's qemu-user-static.
qemu() {
  local name=$1 q
  for q in "qemu-$name-static" "qemu-$name"; do
    if command -v "$q" >/dev/null; then command -v "$q"; return; fi
  done
  echo "musl-smoke: installing qemu-user-static (user-mode emulation)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    qemu-user-static >/dev/null) >&2 ||
    { echo "musl-smoke: cannot install qemu-user-static" >&2; exit 1; }
  command -v "qemu-$name-static"
}

# amd64: what the linux/amd64 image ships, natively.
if build amd64; then
  smoke amd64 "$PWD/$target_dir/x86_64-unknown-linux-musl/release/vault-login"
fi

# The other architectures cost two more LTO builds and a smoke run under emulation (about 8 of
# CI's 20 minutes on 2 cores): run them with VAULT_LOGIN_CI_ALL_ARCHES=1 (the release check, and
# the Dockerfile builds them either way).
if [ "${VAULT_LOGIN_CI_ALL_ARCHES:-0}" != 1 ]; then
  summary+=("arm64, armv7: not built here (set VAULT_LOGIN_CI_ALL_ARCHES=1)")
  echo
  printf 'musl-smoke: %s\n' "${summary[@]}"
  exit 0
fi

# arm64 under qemu. The wrapper execs qemu, so the PID the tests signal is the emulated binary.
if build arm64; then
  qemu_aarch64=$(qemu aarch64)
  wrapper=$PWD/$target_dir/aarch64-unknown-linux-musl/release/vault-login-qemu
  cat >"$wrapper" <<EOF
#!/bin/sh
exec $qemu_aarch64 $PWD/$target_dir/aarch64-unknown-linux-musl/release/vault-login "\$@"
EOF
  chmod +x "$wrapper"
  "$wrapper" --version
  smoke "arm64 (qemu-user)" "$wrapper"
fi

# armv7: built, and started once under qemu.
if build armv7; then
  bin=$target_dir/armv7-unknown-linux-musleabihf/release/vault-login
  version=$("$(qemu arm)" "$bin" --version)
  echo "musl-smoke: armv7 under qemu-arm: $version"
  summary+=("armv7: built, --version under qemu-arm: $version")
fi

echo
printf 'musl-smoke: %s\n' "${summary[@]}"
if [ ${#skipped[@]} -ne 0 ]; then
  bar='!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
  printf '%s\n!!! musl-smoke: SKIPPED on this machine: %s (not built, not tested)\n%s\n' \
    "$bar" "${skipped[*]}" "$bar" >&2
fi
