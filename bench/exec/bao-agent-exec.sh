#!/bin/bash
# bao agent's exec mode: time from exec to the child's start, RSS while it runs.
set -u
REPO=${REPO:-$PWD}
mkdir -p "${WORK:-/tmp/exec-bench}"
cd ${WORK:-/tmp/exec-bench}
pkill_id=""
/tmp/bao/bao server -dev -dev-root-token-id=root -dev-listen-address=127.0.0.1:18200 > bao-server.log 2>&1 &
srv=$!
export VAULT_ADDR=http://127.0.0.1:18200 BAO_ADDR=http://127.0.0.1:18200
for i in $(seq 50); do /tmp/bao/bao status >/dev/null 2>&1 && break; sleep 0.1; done
BAO_TOKEN=root /tmp/bao/bao kv put secret/app password=first >/dev/null
echo -n root > token
cat > agent.hcl <<HCL
vault { address = "http://127.0.0.1:18200" }
auto_auth {
  method "token_file" { config = { token_file_path = "${WORK:-/tmp/exec-bench}/token" } }
}
template_config { static_secret_render_interval = "5m" }
env_template "DB_PASSWORD" {
  contents = "{{ with secret \"secret/data/app\" }}{{ .Data.data.password }}{{ end }}"
  error_on_missing_key = true
}
exec {
  command = ["sh", "-c", "date +%s%N > ${WORK:-/tmp/exec-bench}/started; exec sleep 30"]
  restart_on_secret_changes = "always"
}
HCL
for i in $(seq 10); do
  rm -f started
  t0=$(date +%s%N)
  /tmp/bao/bao agent -config=agent.hcl > agent.log 2>&1 &
  ag=$!
  while [ ! -s started ]; do sleep 0.005; done
  t1=$(cat started)
  sleep 2
  rss=$(grep VmRSS /proc/$ag/status | awk '{print $2}')
  echo "bao-agent start_ms=$(( (t1 - t0) / 1000000 )) rss_kib=$rss"
  kill -TERM $ag; wait $ag 2>/dev/null
done
kill $srv; wait $srv 2>/dev/null
