#!/usr/bin/env bash
# Builds the static (musl) release binary for one architecture, on any x86_64 or aarch64 Linux
# host with rustup and python3 (venv), installing what it needs by itself:
#
#   bash .ci/build-arch.sh amd64|arm64|armv7
#
# leaves target/<triple>/release/vault-login (x86_64-unknown-linux-musl, aarch64-unknown-linux-musl,
# armv7-unknown-linux-musleabihf; under $CARGO_TARGET_DIR if set) and checks that it is a static
# ELF for that machine. The Dockerfile and CI (.ci/musl-smoke.sh) both build through this script.
#
# Route: cargo-zigbuild, with zig as the C compiler and linker (both PyPI wheels, pinned below,
# installed into target/zig-venv on first use): ring's C and assembly parts cross-compile without
# a cross gcc, and zig brings musl's C runtime for every target.
# The target's Rust standard library comes from `rustup target add`; where the Rust distribution
# server a machine reaches lacks it, the script builds it from the toolchain's own rust-src with
# -Zbuild-std instead (same sources, same compiler), and says so. If neither is possible it prints
# a loud SKIPPED banner and exits 3, so the caller can skip that target visibly, never silently.
#
# Exit codes: 0 built; 1 build or install failed; 2 bad usage; 3 the target's standard library
# cannot be installed on this machine (skipped).
set -euo pipefail
cd "$(dirname "$0")/.."

PINS=(ziglang==0.17.1 cargo-zigbuild==0.24.1)

usage() {
  echo "usage: bash .ci/build-arch.sh amd64|arm64|armv7" >&2
  exit 2
}
[ $# -eq 1 ] || usage
arch=$1
case "$arch" in
  amd64) triple=x86_64-unknown-linux-musl machine='Advanced Micro Devices X86-64' ;;
  arm64) triple=aarch64-unknown-linux-musl machine=AArch64 ;;
  armv7) triple=armv7-unknown-linux-musleabihf machine=ARM ;;
  *) echo "build-arch: unknown architecture '$arch'" >&2; usage ;;
esac

# A banner that stands out in a long CI log.
loud() {
  local bar='!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
  printf '\n%s\n!!! %s\n%s\n\n' "$bar" "$*" "$bar" >&2
}

target_dir=${CARGO_TARGET_DIR:-target}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# 1. The target's standard library: prebuilt, or else built from rust-src (-Zbuild-std).
build_std=()
build_dir=$target_dir
if ! command -v rustup >/dev/null; then
  sysroot=$(rustc --print sysroot)
  if [ ! -d "$sysroot/lib/rustlib/$triple" ]; then
    loud "build-arch: SKIPPED $arch: no rustup, and the toolchain at $sysroot has no $triple standard library"
    exit 3
  fi
elif rustup target list --installed | grep -qx "$triple"; then
  :
elif rustup target add "$triple" >"$log" 2>&1; then
  echo "build-arch: installed the $triple standard library (rustup target add)"
else
  reason=$(grep -m1 -i 'error' "$log" || tail -n 1 "$log")
  if rustup component add rust-src >"$log" 2>&1; then
    loud "build-arch: NOTE $arch: rustup cannot install the prebuilt $triple standard library here ($reason); building it from this toolchain's rust-src with -Zbuild-std instead"
    # -Zbuild-std is unstable: RUSTC_BOOTSTRAP lets this stable compiler accept it. The std
    # built is the toolchain's own source, so it matches the prebuilt one that is missing.
    export RUSTC_BOOTSTRAP=1
    build_std=(-Zbuild-std=std,panic_abort)
    # Without the prebuilt std there are no self-contained crt objects: zig's musl supplies them.
    var=CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_RUSTFLAGS
    export "$var"="${!var:-} -Clink-self-contained=no"
    # A target directory of its own: build scripts that watch RUSTC_BOOTSTRAP (proc-macro2's)
    # would otherwise make every other build in target/ recompile its host crates, and back.
    build_dir=$target_dir/build-std
  else
    loud "build-arch: SKIPPED $arch: the $triple standard library cannot be installed on this machine ($reason), nor rust-src to build it ($(tail -n 1 "$log"))"
    exit 3
  fi
fi

# 2. zig and cargo-zigbuild, pinned, in a venv of their own (reused while the pins are unchanged).
venv=$target_dir/zig-venv
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
if [ ! -x "$venv/bin/cargo-zigbuild" ] || [ "$(cat "$venv/.pins" 2>/dev/null)" != "${PINS[*]}" ]; then
  t0=$(date +%s)
  rm -rf "$venv"
  python3 -m venv "$venv"
  if ! "$venv/bin/pip" install -q "${PINS[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    echo "build-arch: pip install of ${PINS[*]} failed" >&2
    exit 1
  fi
  printf '%s' "${PINS[*]}" >"$venv/.pins"
  echo "build-arch: installed ${PINS[*]} in $(($(date +%s) - t0))s"
fi
venv=$(cd "$venv" && pwd)
# cargo-zigbuild runs zig as `python3 -m ziglang` when no zig is on PATH: the venv's python3.
export PATH="$venv/bin:$PATH"

# 3. Build.
t0=$(date +%s)
CARGO_TARGET_DIR=$build_dir cargo-zigbuild zigbuild --release --locked --target "$triple" \
  --bin vault-login ${build_std[@]+"${build_std[@]}"}
bin=$target_dir/$triple/release/vault-login
if [ "$build_dir" != "$target_dir" ]; then
  mkdir -p "$(dirname "$bin")"
  cp "$build_dir/$triple/release/vault-login" "$bin"
fi

# 4. Check: an ELF for the right machine, with no interpreter and no shared libraries.
header=$(readelf -h "$bin")
if ! grep -q "Machine: *$machine\$" <<<"$header"; then
  echo "build-arch: $bin is not an ELF for $machine:" >&2
  echo "$header" >&2
  exit 1
fi
if readelf -l "$bin" | grep -q INTERP || readelf -d "$bin" | grep -q NEEDED; then
  echo "build-arch: $bin is dynamically linked:" >&2
  readelf -l -d "$bin" | grep -E 'INTERP|NEEDED|interpreter' >&2
  exit 1
fi
echo "build-arch: $bin: static $machine ELF, $(stat -c %s "$bin") bytes ($(($(date +%s) - t0))s)"
