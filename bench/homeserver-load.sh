#!/usr/bin/env bash
# Load benchmark: the same workload against Conifer and Synapse (SQLite) in
# one run. N users share a room; all long-poll /sync while all send.
#
#   bench/homeserver-load.sh [USERS] [MESSAGES_PER_USER]
#
# Prints one JSON line per server and the Conifer/Synapse ratios (how many
# times better Conifer is; below 1 means worse). Extra driver flags via
# LOAD_ARGS, e.g. LOAD_ARGS="--rate 20 --seconds 10".
set -euo pipefail
cd "$(dirname "$0")/.."
users="${1:-10}"
messages="${2:-50}"
out="target/bench-load"
mkdir -p "$out"

cargo build --release --locked -p conifer
cargo bench --locked -p conifer-homeserver --bench load --no-run
driver="$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)"

# Synapse: the pinned package in a venv, SQLite, raised rate limits.
SYNAPSE_FRESH=1 SYNAPSE_PORT=18118 clients/synapse/start.sh "$out/synapse" >/dev/null
synapse_pid="$(cat "$out/synapse/synapse.pid")"

data="$(mktemp -d)"
CONIFER_RATE_LIMITS=false target/release/conifer run --server-name localhost:8448 \
    --client-addr 127.0.0.1:18108 --data-dir "$data" >"$out/conifer.log" 2>&1 &
conifer_pid=$!
trap 'kill $conifer_pid 2>/dev/null; clients/synapse/stop.sh "$out/synapse" >/dev/null 2>&1; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -fsS -o /dev/null http://127.0.0.1:18108/_matrix/client/versions && break; sleep 0.1; done
sleep 2 # let both settle before the idle reading

"$driver" --url http://127.0.0.1:18108 --pid "$conifer_pid" --label conifer --users "$users" --messages "$messages" ${LOAD_ARGS:-} | tee "$out/conifer.json"
"$driver" --url http://127.0.0.1:18118 --pid "$synapse_pid" --label synapse --users "$users" --messages "$messages" ${LOAD_ARGS:-} | tee "$out/synapse.json"

python3 - "$out/conifer.json" "$out/synapse.json" <<'PY'
import json, sys
c, s = (json.load(open(p)) for p in sys.argv[1:3])
print(f"{'':30}{'Conifer':>12}{'Synapse':>12}{'ratio':>10}")
print(f"(latency at a paced {c['paced_rate']} msg/s, then throughput with everyone sending back to back)")
for key, better in [("paced_send_to_sync_ms_p50", "low"), ("paced_send_to_sync_ms_p99", "low"),
                    ("messages_per_s", "high"), ("loaded_send_to_sync_ms_p50", "low"), ("loaded_send_to_sync_ms_p99", "low"),
                    ("cpu_s_saturated_phase", "low"), ("idle_rss_mib", "low"), ("peak_rss_mib", "low")]:
    ratio = (c[key] / s[key]) if better == "high" else (s[key] / c[key] if c[key] else float("inf"))
    print(f"{key:30}{c[key]:>12}{s[key]:>12}{ratio:>9.1f}x")
PY
