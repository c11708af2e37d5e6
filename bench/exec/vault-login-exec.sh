#!/bin/bash
# vault-login exec: time from exec to the child's start, RSS while it runs (emulator on loopback).
set -u
REPO=${REPO:-$PWD}
mkdir -p "${WORK:-/tmp/exec-bench}"
cd ${WORK:-/tmp/exec-bench}
bin=${1:-$REPO/target/release/vault-login}
rm -f addr
$REPO/target/debug/vault-emulator --ttl 3600 --max-ttl 86400 --audience vault --jwt-out ${WORK:-/tmp/exec-bench}/jwt --addr-out ${WORK:-/tmp/exec-bench}/addr --quiet > emu.log 2>&1 &
emu=$!
while [ ! -s addr ]; do sleep 0.05; done
for i in $(seq 10); do
  rm -f started
  t0=$(date +%s%N)
  env -i PATH=/usr/bin:/bin VAULT_ADDR=$(cat addr) VAULT_LOGIN_ROLE=default VAULT_LOGIN_JWT_FILE=${WORK:-/tmp/exec-bench}/jwt \
    VAULT_LOGIN_ENV_DB_PASSWORD=internal/data/database/config#password VAULT_LOGIN_LOG=warn \
    "$bin" exec -- sh -c 'date +%s%N > started; exec sleep 30' &
  vl=$!
  while [ ! -s started ]; do sleep 0.005; done
  t1=$(cat started)
  sleep 2
  rss=$(grep VmRSS /proc/$vl/status | awk '{print $2}')
  echo "vault-login start_ms=$(( (t1 - t0) / 1000000 )).$(( (t1 - t0) / 100000 % 10 )) rss_kib=$rss"
  kill -TERM $vl; wait $vl 2>/dev/null
done
# The same start with no vault-login: the shell's own start, for reference.
for i in 1 2 3; do rm -f started; t0=$(date +%s%N); sh -c 'date +%s%N > started'; echo "bare sh start_ms=$(( ($(cat started) - t0) / 1000000 ))"; done
kill $emu; wait $emu 2>/dev/null
