#!/usr/bin/env bash
# Start a throw-away Synapse on loopback, used to validate the client suites.
#
#   clients/synapse/start.sh [DIR]      (DIR defaults to target/synapse under the repo root)
#
# - installs matrix-synapse (pinned) into a venv: $SYNAPSE_VENV, default target/synapse-venv
# - writes DIR/homeserver.yaml (SQLite, server_name localhost:8448, client API on
#   http://127.0.0.1:$SYNAPSE_PORT, default 8018, plain HTTP, open registration, no federation
#   listener, no key servers, raised rate limits)
# - starts Synapse in the background (pid in DIR/synapse.pid, log in DIR/synapse.log) and waits
#   until /_matrix/client/versions answers.
#
# Set SYNAPSE_FRESH=1 to wipe DIR's database and media before starting.
#
# Set SYNAPSE_FEDERATION_PORT=P to federate: the server name becomes 127.0.0.1:P (unless
# SYNAPSE_SERVER_NAME says otherwise), a TLS listener with a self-signed certificate serves
# federation on P, peers' certificates are not checked and loopback peers are allowed.
set -euo pipefail

SYNAPSE_VERSION=1.163.2
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DIR="${1:-$ROOT/target/synapse}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
VENV="${SYNAPSE_VENV:-$ROOT/target/synapse-venv}"
PORT="${SYNAPSE_PORT:-8018}"
FED_PORT="${SYNAPSE_FEDERATION_PORT:-}"
if [ -n "$FED_PORT" ]; then
    SERVER_NAME="${SYNAPSE_SERVER_NAME:-127.0.0.1:$FED_PORT}"
else
    SERVER_NAME="${SYNAPSE_SERVER_NAME:-localhost:8448}"
fi
URL="http://127.0.0.1:$PORT"

if [ -f "$DIR/synapse.pid" ] && kill -0 "$(cat "$DIR/synapse.pid")" 2>/dev/null; then
    echo "synapse already running (pid $(cat "$DIR/synapse.pid")) at $URL"
    exit 0
fi

if ! "$VENV/bin/python" -c "import sys, importlib.metadata as m; sys.exit(0 if m.version('matrix-synapse') == '$SYNAPSE_VERSION' else 1)" 2>/dev/null; then
    echo "installing matrix-synapse==$SYNAPSE_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "matrix-synapse==$SYNAPSE_VERSION"
fi

if [ "${SYNAPSE_FRESH:-0}" = 1 ]; then
    rm -rf "$DIR/homeserver.db" "$DIR/homeserver.db-"* "$DIR/media"
fi

secret() { "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(24))'; }
if [ ! -f "$DIR/secrets.env" ]; then
    {
        echo "MACAROON=$(secret)"
        echo "FORM=$(secret)"
        echo "REGSECRET=$(secret)"
    } > "$DIR/secrets.env"
fi
# shellcheck disable=SC1091
. "$DIR/secrets.env"

cat > "$DIR/log.yaml" <<EOF
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: $DIR/homeserver.log
    encoding: utf8
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
EOF

if [ -n "$FED_PORT" ]; then
    if [ ! -f "$DIR/tls.crt" ]; then
        "$VENV/bin/python" - "$DIR" <<'PY'
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
d = sys.argv[1]
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256()))
open(f"{d}/tls.crt", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(f"{d}/tls.key", "wb").write(key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption()))
PY
    fi
    FEDERATION_LISTENER="  - port: $FED_PORT
    bind_addresses: [\"127.0.0.1\"]
    type: http
    tls: true
    x_forwarded: false
    resources: [{names: [federation], compress: false}]"
    FEDERATION_SETTINGS="tls_certificate_path: $DIR/tls.crt
tls_private_key_path: $DIR/tls.key
federation_verify_certificates: false
ip_range_blacklist: []
ip_range_whitelist: [\"127.0.0.1/32\", \"::1/128\"]
allow_public_rooms_over_federation: true
send_federation: true"
else
    FEDERATION_LISTENER=""
    FEDERATION_SETTINGS="federation_domain_whitelist: []"
fi

# 1000/s with burst 1000 for every limiter that a bursty test can hit.
RC='{per_second: 1000, burst_count: 1000}'
cat > "$DIR/homeserver.yaml" <<EOF
server_name: "$SERVER_NAME"
public_baseurl: "$URL/"
pid_file: $DIR/homeserver.pid
report_stats: false
listeners:
  - port: $PORT
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources: [{names: [client], compress: false}]
$FEDERATION_LISTENER
database:
  name: sqlite3
  args: {database: $DIR/homeserver.db}
log_config: $DIR/log.yaml
media_store_path: $DIR/media
signing_key_path: $DIR/signing.key
macaroon_secret_key: "$MACAROON"
form_secret: "$FORM"
registration_shared_secret: "$REGSECRET"
enable_registration: true
enable_registration_without_verification: true
# Nothing here may leave loopback: no key servers, no previews, no stats, and
# federation only with loopback peers when it is on at all.
trusted_key_servers: []
suppress_key_server_warning: true
$FEDERATION_SETTINGS
url_preview_enabled: false
enable_metrics: false
# Synapse's default lets nobody publish rooms to the public directory.
room_list_publication_rules: [{action: allow}]
rc_message: $RC
rc_registration: $RC
rc_registration_token_validity: $RC
rc_login:
  address: $RC
  account: $RC
  failed_attempts: $RC
rc_joins:
  local: $RC
  remote: $RC
rc_joins_per_room: $RC
rc_invites:
  per_room: $RC
  per_user: $RC
  per_issuer: $RC
rc_admin_redaction: $RC
rc_3pid_validation: $RC
rc_key_requests: $RC
rc_presence:
  per_user: $RC
rc_delayed_event_mgmt: $RC
rc_room_creation: $RC
rc_reports: $RC
EOF

if [ ! -f "$DIR/signing.key" ]; then
    "$VENV/bin/python" -m synapse.app.homeserver -c "$DIR/homeserver.yaml" --generate-keys >/dev/null
fi

echo "starting synapse $SYNAPSE_VERSION ($SERVER_NAME) at $URL, data in $DIR"
nohup "$VENV/bin/python" -m synapse.app.homeserver -c "$DIR/homeserver.yaml" \
    > "$DIR/synapse.log" 2>&1 < /dev/null &
echo $! > "$DIR/synapse.pid"

for _ in $(seq 1 120); do
    if curl -fsS "$URL/_matrix/client/versions" >/dev/null 2>&1; then
        echo "synapse is up (pid $(cat "$DIR/synapse.pid"))"
        exit 0
    fi
    if ! kill -0 "$(cat "$DIR/synapse.pid")" 2>/dev/null; then
        echo "synapse exited during start-up; last log lines:" >&2
        tail -n 30 "$DIR/synapse.log" "$DIR/homeserver.log" >&2 || true
        exit 1
    fi
    sleep 0.5
done
echo "synapse did not answer within 60 s" >&2
exit 1
