#!/usr/bin/env bash
# Build the Hydrogen web client and drive it in headless Chromium against a homeserver.
#
#   CONIFER_HS_URL=http://127.0.0.1:8008 clients/run-hydrogen.sh
#
# Steps: npm ci, vite build, serve dist/ on 127.0.0.1:$HYDROGEN_PORT (default 4173), run
# test/hydrogen.test.mjs (node:test + playwright-core with Debian's chromium). Writes
# target/clients/hydrogen.png, target/clients/hydrogen-requests.txt, and exits non-zero on failure.
# CHROMIUM_PATH overrides /usr/bin/chromium; if it is missing and we are root, apt installs it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
: "${CONIFER_HS_URL:?set CONIFER_HS_URL, e.g. http://127.0.0.1:8008}"
PORT="${HYDROGEN_PORT:-4173}"
export CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
cd "$ROOT/clients/hydrogen"

if [ ! -x "$CHROMIUM_PATH" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian's chromium"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "no Chromium at $CHROMIUM_PATH: apt-get install chromium (or set CHROMIUM_PATH)" >&2
        exit 2
    fi
fi

# npm ci removes node_modules itself, but that removal sometimes fails here with ENOTEMPTY on
# overlay file systems: remove it first, and retry once.
clean_ci() {
    rm -rf node_modules 2>/dev/null || { sleep 1; rm -rf node_modules; }
    npm ci --no-audit --no-fund --loglevel=error
}
clean_ci || { echo "npm ci failed; retrying once" >&2; sleep 2; clean_ci; }
npx vite build --logLevel warn

mkdir -p "$ROOT/target/clients"
if ! curl -fsS -o /dev/null "$CONIFER_HS_URL/_matrix/client/versions"; then
    echo "no homeserver answering at $CONIFER_HS_URL" >&2
    exit 2
fi

node test/serve.mjs "$PORT" > "$ROOT/target/clients/hydrogen-serve.log" 2>&1 &
SERVE_PID=$!
trap 'kill "$SERVE_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null && break
    kill -0 "$SERVE_PID" 2>/dev/null || { cat "$ROOT/target/clients/hydrogen-serve.log" >&2; exit 1; }
    sleep 0.1
done

export CONIFER_HS_URL
HYDROGEN_APP_URL="http://127.0.0.1:$PORT/" node \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=junit --test-reporter-destination="$ROOT/target/clients/hydrogen-junit.xml" \
    test/hydrogen.test.mjs
