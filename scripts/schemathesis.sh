#!/usr/bin/env bash
# Smoke-tests the running API against docs/openapi.json with schemathesis (PyPI), as each of the
# development systems. Not part of CI (it is a fuzzer: minutes, and its findings need reading).
#
#   bash scripts/schemathesis.sh [max-examples]
#
# Builds the gateway, runs it from a scratch folder with the development profile (its own
# certificates, keys and token issuer) and rate limits out of the way, then runs every check.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
examples=${1:-100}
work=$(mktemp -d)
venv=${SCHEMATHESIS_VENV:-$repo/target/schemathesis-venv}
[ -x "$venv/bin/schemathesis" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q schemathesis; }
cargo build -q
bin=$repo/target/debug/isa-gateway
sed -e "s|agreements_dir = \"isa-templates\"|agreements_dir = \"$repo/isa-templates\"|" \
    -e "s|schemas_dir = \"schemas\"|schemas_dir = \"$repo/schemas\"|" \
    -e "s|^\[limits\]|[limits]\nrequests_per_sec = 100000\nrequest_burst = 100000|" \
    -e "s|127.0.0.1:8443|127.0.0.1:18443|" gateway.toml > "$work/gateway.toml"
cd "$work"
RUST_LOG=warn "$bin" serve --config gateway.toml > gateway.log 2>&1 &
gateway=$!
trap 'kill $gateway 2>/dev/null; rm -rf "$work"' EXIT
sleep 3
token=$("$bin" token dev --config gateway.toml --sub schemathesis \
  --role practitioner --role safeguarding_lead --role director --role dpo --role auditor)
status=0
for system in tt-case-system ig-audit; do
  echo "== as $system"
  "$venv/bin/schemathesis" run "$repo/docs/openapi.json" --url https://127.0.0.1:18443 \
    -H "Authorization: Bearer $token" \
    --request-cert "certs/dev/clients/$system.crt" --request-cert-key "certs/dev/clients/$system.key" \
    --tls-verify certs/dev/ca.crt --checks all -n "$examples" --workers 2 || status=1
done
if grep -qi panic gateway.log; then echo "the gateway panicked"; status=1; fi
exit $status
