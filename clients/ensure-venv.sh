#!/usr/bin/env bash
# Create (or reuse) the Python venv of the client suites and print its path.
#
# CONIFER_VENV: where (default target/clients-venv under the repo root). Packages come from
# clients/nio/requirements.txt (matrix-nio with E2EE, pytest); reinstalled only when it changes.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${CONIFER_VENV:-target/clients-venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
REQ="$ROOT/clients/nio/requirements.txt"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" >&2
fi
STAMP="$VENV/.conifer-nio-requirements"
if ! cmp -s "$REQ" "$STAMP" 2>/dev/null; then
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" >&2
    cp "$REQ" "$STAMP"
fi
echo "$VENV"
