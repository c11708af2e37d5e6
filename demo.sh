#!/usr/bin/env bash
# The demo: vault-login's full sidecar loop against the in-repo Vault emulator on loopback.
# Needs only cargo. Shows login, renewals, the max-TTL re-login, an outage, SIGHUP and shutdown,
# and the tutorial's KV v2 secret written next to the token (VAULT_LOGIN_SECRET_DB).
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --locked --workspace --bins
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/sa" "$work/out"

echo "== starting the Vault emulator (TTL 6s, max TTL 20s, down from 24s to 34s)"
"$bin/vault-emulator" --ttl 6 --max-ttl 20 --audience vault \
  --jwt-out "$work/sa/token" --addr-out "$work/addr" --down-after 24 --down-for 10 2>&1 |
  sed 's/^/    [vault] /' &
for _ in $(seq 100); do [ -s "$work/addr" ] && break; sleep 0.1; done

echo "== running vault-login as a sidecar for 45s (token file: $work/out/token)"
VAULT_ADDR=$(cat "$work/addr") \
VAULT_LOGIN_ROLE=default \
VAULT_LOGIN_JWT_FILE="$work/sa/token" \
VAULT_LOGIN_TOKEN_FILE="$work/out/token" \
VAULT_LOGIN_MAX_BACKOFF=2s \
VAULT_LOGIN_SECRET_DB=internal/data/database/config \
VAULT_LOGIN_SECRET_DB_PASSWORD='internal/data/database/config#password' \
VAULT_LOGIN_SECRETS_REFRESH=10s \
  "$bin/vault-login" &
pid=$!
sleep 38
echo "== SIGHUP: log in again now"
kill -HUP "$pid"
sleep 7
echo "== token file: $(wc -c <"$work/out/token") bytes, mode $(stat -c %a "$work/out/token")"
echo "== secret files next to it: db ($(stat -c %a "$work/out/db")): $(tr -d '\n' <"$work/out/db" | sed 's/"password":"[^"]*"/"password":"…"/'); db_password: $(wc -c <"$work/out/db_password") bytes"
echo "== SIGTERM"
kill -TERM "$pid"
wait "$pid" && echo "== vault-login exited 0"
