#!/usr/bin/env bash
# Validate the client suites against a fresh Synapse: start it (empty database), run the nio,
# Hydrogen, matrix-js-sdk and sign-up page suites against it, stop it. Exits non-zero if any
# suite fails.
#
#   clients/validate-synapse.sh
#
# Also writes target/clients/synapse-endpoints.txt: every Client-Server request the suites made,
# with IDs normalised and the status Synapse answered, taken from Synapse's access log.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$ROOT/target/synapse-validate"
PORT="${SYNAPSE_PORT:-8018}"

rm -rf "$DIR"
SYNAPSE_FRESH=1 "$ROOT/clients/synapse/start.sh" "$DIR" || exit 1
trap '"$ROOT/clients/synapse/stop.sh" "$DIR"' EXIT
export CONIFER_HS_URL="http://127.0.0.1:$PORT"

rc=0
start=$(date +%s)
"$ROOT/clients/run-nio.sh" || rc=1
mid=$(date +%s)
"$ROOT/clients/run-hydrogen.sh" || rc=1
end=$(date +%s)
echo "nio suite: $((mid - start)) s (including venv check); Hydrogen suite: $((end - mid)) s (including npm ci and build)"
"$ROOT/clients/run-js-sdk.sh" || rc=1
"$ROOT/clients/run-uia-web.sh" || rc=1
echo "js-sdk and sign-up page suites: $(($(date +%s) - end)) s"

# Synapse does not log OPTIONS (CORS preflight) requests; Hydrogen makes one before each
# authenticated or JSON request.
grep -o '[0-9]\{3\} "[A-Z]* /[^ ]*' "$DIR/homeserver.log" \
    | sed -E 's/"//; s/\?.*//;
              s#/(!|%21)[^/]*#/{roomId}#g; s#/(\$|%24)[^/]*#/{eventId}#g; s#/(@|%40)[^/]*#/{userId}#g;
              s#/(%23|\#)[^/]*#/{roomAlias}#g;
              s#/(send|sendToDevice)/([^/]*)/[^/]*#/\1/\2/{txnId}#; s#/redact/\{eventId\}/[^/]*#/redact/{eventId}/{txnId}#;
              s#/filter/[^/]*$#/filter/{filterId}#; s#/devices/[^/]*#/devices/{deviceId}#;
              s#/pushrules/global/(content|override|underride|room|sender)/[^/]*#/pushrules/global/\1/{ruleId}#; s#/(download|thumbnail)/([^/]*)/[^/]*#/\1/{serverName}/{mediaId}#' \
    | awk '{print $2, $3, $1}' | sort | uniq -c | sort -k2,3 > "$ROOT/target/clients/synapse-endpoints.txt"
echo "requests seen by Synapse: target/clients/synapse-endpoints.txt"
exit $rc
