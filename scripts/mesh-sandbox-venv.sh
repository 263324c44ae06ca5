#!/usr/bin/env bash
# Create (or reuse) a Python venv holding NHS Digital's MESH sandbox and reference client.
#
#   bash scripts/mesh-sandbox-venv.sh [VENV_DIR]
#
# VENV_DIR defaults to <repo>/target/mesh-sandbox-venv (repo root is found from this
# script's own location; a relative VENV_DIR argument is taken relative to the cwd).
# Needs only python3 (3.11-3.13, with the venv module) and access to PyPI.
# Idempotent: a marker file records the pinned versions; when it matches, pip is skipped.
# The last line printed is the absolute venv path.
# Env: PYTHON=/path/to/python3 to choose the interpreter.
set -euo pipefail

PINS="mesh-sandbox==1.0.137 mesh-client==5.0.2"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
VENV=${1:-$REPO_ROOT/target/mesh-sandbox-venv}
case "$VENV" in /*) ;; *) VENV=$PWD/$VENV ;; esac
MARKER=$VENV/.mesh-sandbox-pins

# Fast path: marker matches the pins and the venv interpreter still runs.
if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$PINS" ]] \
   && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1 \
   && [[ -x "$VENV/bin/uvicorn" ]]; then
  echo "$VENV"
  exit 0
fi

# mesh-sandbox 1.0.137 requires Python >=3.11,<3.14.
pick_python() {
  local c
  for c in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
    [[ -n "$c" ]] || continue
    command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import sys, venv; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 14) else 1)' >/dev/null 2>&1; then
      echo "$c"; return 0
    fi
  done
  return 1
}
PY=$(pick_python) || { echo "error: need python3 3.11-3.13 with the venv module (set PYTHON=...)" >&2; exit 1; }

# Recreate the venv if its interpreter is missing or broken (e.g. python moved).
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "creating venv $VENV with $("$PY" --version 2>&1)" >&2
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi

rm -f "$MARKER"
echo "installing $PINS into $VENV" >&2
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q $PINS >&2
"$VENV/bin/python" -c 'import mesh_sandbox.api, mesh_client' >/dev/null 2>&1 \
  || { echo "error: mesh_sandbox/mesh_client not importable after install" >&2; exit 1; }
printf '%s' "$PINS" > "$MARKER"

echo "$VENV"
