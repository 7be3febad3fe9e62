#!/usr/bin/env bash
# Real clients against a real Conifer: starts `conifer run` on loopback with a
# fresh data directory, runs one suite against it (matrix-nio with E2EE, the
# Hydrogen web client in headless Chromium, matrix-js-sdk with its Rust crypto
# in Node, a vite + matrix-js-sdk sign-up page in headless Chromium, or
# schemathesis over the spec), then stops the server.
set -uo pipefail
cd "$(dirname "$0")/.."
suite="$1"
port="${CONIFER_CI_CLIENT_PORT:-18008}"
data="$(mktemp -d)"
CONIFER_RATE_LIMITS=false target/debug/conifer run --server-name localhost:8448 \
    --client-addr "127.0.0.1:$port" --data-dir "$data" >"target/clients-conifer-$suite.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
up=0
for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/_matrix/client/versions"; then up=1; break; fi
    sleep 0.2
done
if [ "$up" -ne 1 ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "conifer run did not start; its log:" >&2
    cat "target/clients-conifer-$suite.log" >&2
    exit 1
fi
export CONIFER_HS_URL="http://127.0.0.1:$port"
case "$suite" in
    nio) clients/run-nio.sh -q ;;
    hydrogen) clients/run-hydrogen.sh ;;
    # Tests of bugs Conifer still has are skipped, with the bug as the reason (see
    # clients/js-sdk/test/known-bugs.mjs); against Synapse they all run.
    js-sdk) CONIFER_KNOWN_BUGS=1 clients/run-js-sdk.sh ;;
    uia-web) clients/run-uia-web.sh ;;
    schemathesis) clients/schemathesis/run.sh ;;
    *) echo "unknown suite $suite" >&2; exit 2 ;;
esac
