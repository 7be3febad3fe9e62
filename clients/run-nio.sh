#!/usr/bin/env bash
# Run the matrix-nio suite against a homeserver.
#
#   CONIFER_HS_URL=http://127.0.0.1:8008 clients/run-nio.sh [extra pytest args]
#
# CONIFER_VENV: the venv to create/reuse (default target/clients-venv under the repo root).
# Writes a JUnit report to target/clients/nio-junit.xml. Exits with pytest's status.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
: "${CONIFER_HS_URL:?set CONIFER_HS_URL, e.g. http://127.0.0.1:8008}"
VENV="$("$ROOT/clients/ensure-venv.sh")"

mkdir -p "$ROOT/target/clients"
if ! curl -fsS -o /dev/null "$CONIFER_HS_URL/_matrix/client/versions"; then
    echo "no homeserver answering at $CONIFER_HS_URL" >&2
    exit 2
fi
cd "$ROOT/clients/nio"
export CONIFER_HS_URL
exec "$VENV/bin/python" -m pytest -p no:cacheprovider \
    --junitxml="$ROOT/target/clients/nio-junit.xml" -o junit_suite_name=conifer-nio "$@"
