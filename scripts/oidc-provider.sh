#!/usr/bin/env bash
# Install the loopback OpenID Connect provider used by the web console tests
# (npm `oidc-provider`, pinned in tests/peers/oidc-provider/package-lock.json).
#
#   bash scripts/oidc-provider.sh            # install (npm ci) unless up to date
#   bash scripts/oidc-provider.sh --check    # then run selfcheck.py (real login flow)
#
# Needs node (>= 20.18; 22 LTS is oidc-provider's supported line) and npm with
# access to the npm registry. Idempotent: a marker in node_modules records the
# sha256 of package-lock.json; when it matches, npm is skipped.
# The last line printed is the absolute path of provider.mjs; the tests run
#   node <that path>   with OIDC_PORT, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET,
#   OIDC_REDIRECT_URI and OIDC_ACCOUNTS set, and read "listening <issuer>".
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PEER=$(cd "$SCRIPT_DIR/../tests/peers/oidc-provider" && pwd)
MARKER=$PEER/node_modules/.isa-lock-sha256

command -v node >/dev/null || { echo "oidc-provider.sh: node not found" >&2; exit 1; }
command -v npm >/dev/null || { echo "oidc-provider.sh: npm not found" >&2; exit 1; }
node -e '
  const [maj, min] = process.versions.node.split(".").map(Number);
  if (maj < 20 || (maj === 20 && min < 18)) {
    console.error(`oidc-provider.sh: node ${process.versions.node} is too old (need >= 20.18)`);
    process.exit(1);
  }'

WANT=$(sha256sum "$PEER/package-lock.json" | cut -d' ' -f1)
if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$WANT" && -f "$PEER/node_modules/oidc-provider/package.json" ]]; then
  echo "oidc-provider.sh: node_modules up to date" >&2
else
  echo "oidc-provider.sh: npm ci in $PEER" >&2
  (cd "$PEER" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$WANT" >"$MARKER"
fi

if [[ "${1:-}" == "--check" ]]; then
  python3 "$PEER/selfcheck.py" >&2
fi

echo "$PEER/provider.mjs"
