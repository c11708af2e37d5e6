#!/bin/sh
# The tutorial's init-container login without the 200 MB vault CLI: POST the service-account JWT,
# pull client_token out of the answer, write it to a temp file beside the target, rename it over.
# The cold-start baseline of bench/ (vault-login-bench runs it with a clean environment).
#
# usage: curl-login.sh sed|jq
#   VAULT_ADDR, VAULT_LOGIN_ROLE, VAULT_LOGIN_JWT_FILE, VAULT_LOGIN_TOKEN_FILE as for vault-login.
set -eu
parser=${1:-sed}
jwt=$(cat "$VAULT_LOGIN_JWT_FILE")
answer=$(curl -sS --fail -X POST -H 'X-Vault-Request: true' \
  --data "{\"role\":\"$VAULT_LOGIN_ROLE\",\"jwt\":\"$jwt\"}" \
  "$VAULT_ADDR/v1/auth/kubernetes/login")
case $parser in
  jq) token=$(printf '%s' "$answer" | jq -er .auth.client_token) ;;
  *) token=$(printf '%s' "$answer" | sed -n 's/.*"client_token":"\([^"]*\)".*/\1/p') ;;
esac
[ -n "$token" ] || { echo "curl-login: no client_token in Vault's answer" >&2; exit 1; }
tmp=$(mktemp "$VAULT_LOGIN_TOKEN_FILE.XXXXXX")
printf '%s' "$token" >"$tmp"
mv -f "$tmp" "$VAULT_LOGIN_TOKEN_FILE"
