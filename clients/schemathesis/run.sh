#!/usr/bin/env bash
# schemathesis over the Matrix spec's Client-Server OpenAPI against a running
# homeserver: every generated request must get a non-5xx answer.
#
#   CONIFER_HS_URL=http://127.0.0.1:8008 clients/schemathesis/run.sh [extra schemathesis args]
#
# Identifiers are pinned to local values (a fresh user, its room, the
# server's name) so no request makes the server reach out to another host.
# The spec file comes from SPEC (default: the bundled copy in this folder).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
: "${CONIFER_HS_URL:?set CONIFER_HS_URL, e.g. http://127.0.0.1:8008}"
case "$CONIFER_HS_URL" in http://127.*|http://localhost*|http://\[::1\]*) ;; *) echo "refusing non-loopback $CONIFER_HS_URL" >&2; exit 2 ;; esac
SPEC="${SPEC:-$ROOT/clients/schemathesis/client-server-api.json}"
VENV="${SCHEMATHESIS_VENV:-$ROOT/target/schemathesis-venv}"
OUT="$ROOT/target/clients"
mkdir -p "$OUT"
[ -x "$VENV/bin/schemathesis" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/clients/schemathesis/requirements.txt"; }

user="st$(date +%s%N | tail -c 9)"
reg=$(curl -fsS -XPOST "$CONIFER_HS_URL/_matrix/client/v3/register" \
    -d "{\"username\":\"$user\",\"password\":\"schemathesis-pw\",\"auth\":{\"type\":\"m.login.dummy\"}}")
token=$(echo "$reg" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
user_id=$(echo "$reg" | python3 -c 'import json,sys; print(json.load(sys.stdin)["user_id"])')
device_id=$(echo "$reg" | python3 -c 'import json,sys; print(json.load(sys.stdin)["device_id"])')
server="${user_id#*:}"
room_id=$(curl -fsS -XPOST -H "Authorization: Bearer $token" "$CONIFER_HS_URL/_matrix/client/v3/createRoom" \
    -d '{"room_alias_name":"'"$user"'"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["room_id"])')

config="$OUT/schemathesis.toml"
cat >"$config" <<TOML
[parameters]
"path.userId" = "$user_id"
"path.serverName" = "$server"
"path.roomId" = "$room_id"
"path.roomIdOrAlias" = "$room_id"
"path.roomAlias" = "#$user:$server"
"path.deviceId" = "$device_id"
"path.origin" = "$server"
TOML

# Endpoints that end the session or the account would stop the run early.
exec "$VENV/bin/schemathesis" --config-file "$config" run "$SPEC" --url "$CONIFER_HS_URL" \
    -H "Authorization: Bearer $token" --checks not_a_server_error --seed 1 -n "${SCHEMATHESIS_EXAMPLES:-10}" \
    --exclude-path-regex '/(logout|account/deactivate|account/password|delete_devices|devices/\{deviceId\})' \
    --report junit --report-junit-path "$OUT/schemathesis-junit.xml" "$@"
