#!/usr/bin/env bash
# Conifer and Synapse federating over TLS on loopback: starts a throw-away Synapse with a
# federation listener (self-signed certificate, loopback peers allowed), then runs the
# federation suite, which starts and restarts `conifer run` itself.
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
dir="$(mktemp -d)"
export SYNAPSE_FEDERATION_PORT=18448 SYNAPSE_PORT=18018 SYNAPSE_FRESH=1
if ! clients/synapse/start.sh "$dir/synapse"; then
    rm -rf "$dir"
    exit 1
fi
trap '"$root/clients/synapse/stop.sh" "$dir/synapse" >/dev/null; rm -rf "$dir"' EXIT
venv="$(clients/ensure-venv.sh)" || exit 1
# test_js_sdk_scrollback.py runs matrix-js-sdk on the js-sdk suite's Node: install it.
clients/run-js-sdk.sh --install-only || exit 1
export SYNAPSE_URL="http://127.0.0.1:18018" SYNAPSE_NAME="127.0.0.1:18448"
export CONIFER_BIN="${CONIFER_BIN:-$PWD/target/debug/conifer}" CONIFER_TEST_DIR="$dir/conifer"
cd clients/federation
"$venv/bin/python" -m pytest -q "$@"
status=$?
if [ "$status" -ne 0 ]; then
    echo "--- conifer log (tail)"; tail -n 60 "$dir/conifer/conifer.log"
    echo "--- synapse log (warnings)"; grep -E "WARNING|ERROR" "$dir/synapse/homeserver.log" | tail -n 30
fi
exit "$status"
