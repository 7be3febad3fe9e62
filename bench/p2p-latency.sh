#!/usr/bin/env bash
# P2P message latency across 1, 3 and 5 overlay hops on loopback, messages
# per second between two nodes, and the idle RSS of a node with 3 rooms.
#
#   bash bench/p2p-latency.sh [HOPS ...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p conifer
cargo bench --locked -p conifer --bench p2p_latency --no-run
driver="$(ls -t target/release/deps/p2p_latency-* | grep -v '\.d$' | head -1)"
CONIFER_BIN=target/release/conifer "$driver" "$@"
