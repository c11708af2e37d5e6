#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (CI: 30), starting from the committed seed corpus.
# New inputs go to a scratch corpus under fuzz/target, so the committed one stays small; a
# finding stops the script with libFuzzer's report and the input saved in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: fuzz/run.sh SECONDS}

if ! cargo fuzz --version >/dev/null 2>&1; then
    start=$(date +%s)
    cargo install cargo-fuzz --locked
    echo "installed cargo-fuzz in $(( $(date +%s) - start ))s"
fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal

cargo +nightly fuzz build
for target in $(cargo +nightly fuzz list); do
    scratch=target/corpus/$target
    mkdir -p "$scratch" "corpus/$target"
    echo "== $target: ${seconds}s"
    cargo +nightly fuzz run "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1
done
