#!/usr/bin/env bash
# Build the vite + matrix-js-sdk sign-up page and drive it in headless Chromium against a
# homeserver.
#
#   CONIFER_HS_URL=http://127.0.0.1:8008 clients/run-uia-web.sh
#
# Steps: npm ci, vite build, then test/uia-web.test.mjs (node:test + playwright-core with
# Debian's chromium; it serves dist/ itself on a free loopback port). Screenshots go to
# target/clients/screenshots/, the JUnit report to target/clients/uia-web-junit.xml.
# CHROMIUM_PATH overrides /usr/bin/chromium; if it is missing and we are root, apt installs it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
: "${CONIFER_HS_URL:?set CONIFER_HS_URL, e.g. http://127.0.0.1:8008}"
case "$CONIFER_HS_URL" in
    http://127.*|http://localhost[:/]*|http://localhost|http://\[::1\]*) ;;
    *) echo "CONIFER_HS_URL must be a loopback address: $CONIFER_HS_URL" >&2; exit 2 ;;
esac
export CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
cd "$ROOT/clients/uia-web"

if [ ! -x "$CHROMIUM_PATH" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian's chromium"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "no Chromium at $CHROMIUM_PATH: apt-get install chromium (or set CHROMIUM_PATH)" >&2
        exit 2
    fi
fi

# As in run-hydrogen.sh: remove node_modules first (npm ci's own removal sometimes fails with
# ENOTEMPTY on overlay file systems), and retry once.
clean_ci() {
    rm -rf node_modules 2>/dev/null || { sleep 1; rm -rf node_modules; }
    npm ci --no-audit --no-fund --loglevel=error
}
clean_ci || { echo "npm ci failed; retrying once" >&2; sleep 2; clean_ci; }
npx vite build --logLevel warn

mkdir -p "$ROOT/target/clients/screenshots"
if ! curl -fsS -o /dev/null "$CONIFER_HS_URL/_matrix/client/versions"; then
    echo "no homeserver answering at $CONIFER_HS_URL" >&2
    exit 2
fi
export CONIFER_HS_URL
exec node --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=junit --test-reporter-destination="$ROOT/target/clients/uia-web-junit.xml" \
    --test test/uia-web.test.mjs
