#!/usr/bin/env bash
# Federation benchmark with Synapse as the anchor (see federation-synapse.py), plus Conifer's
# in-process ingest and join benchmark for the same sizes.
#
#   bash bench/federation-synapse.sh [MESSAGES] [MEMBERS]     (defaults 300 and 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
N="${1:-300}"; M="${2:-1000}"
cargo build --release -q -p conifer
dir="$(mktemp -d)"
SYNAPSE_FEDERATION_PORT=18458 SYNAPSE_PORT=18028 SYNAPSE_FRESH=1 clients/synapse/start.sh "$dir/synapse" >/dev/null
mkdir -p "$dir/conifer"
printf '[federation]\ninsecure_skip_verify = ["127.0.0.1:18458"]\nip_range_allow = ["127.0.0.0/8"]\nallowed_servers = ["127.0.0.1:18458"]\n' > "$dir/conifer/conifer.toml"
CONIFER_RATE_LIMITS=false target/release/conifer run --config "$dir/conifer/conifer.toml" \
    --server-name 127.0.0.1:18459 --federation-addr 127.0.0.1:18459 --client-addr 127.0.0.1:18029 \
    --data-dir "$dir/conifer/data" > "$dir/conifer/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; "$root/clients/synapse/stop.sh" "$dir/synapse" >/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -fsS -o /dev/null http://127.0.0.1:18029/_matrix/client/versions && break; sleep 0.1; done
CONIFER_URL=http://127.0.0.1:18029 CONIFER_NAME=127.0.0.1:18459 \
SYNAPSE_URL=http://127.0.0.1:18028 SYNAPSE_NAME=127.0.0.1:18458 \
    python3 bench/federation-synapse.py "$N" "$M"
echo "Conifer in process (verified, auth-checked, persisted; 20 000 PDUs):"
cargo bench -q -p conifer-homeserver --bench federation -- 20000 "$M" 2>/dev/null | grep -E "^(ingest|join)"
