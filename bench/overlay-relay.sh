#!/usr/bin/env bash
# Conifer relay vs Go Pinecone relay, same run, inside a private network
# namespace (the Go relay always starts LAN multicast discovery).
set -euo pipefail
cd "$(dirname "$0")/.."
go_bin="$PWD/target/interop/pinecone"
(cd interop/go-pinecone && go build -o "$go_bin" github.com/matrix-org/pinecone/cmd/pinecone)
cargo build --release -p conifer --benches
ns="conifer-bench-$$"
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
ip netns exec "$ns" ip link set lo up
CONIFER_GO_PINECONE="$go_bin" ip netns exec "$ns" cargo bench -p conifer --bench overlay_relay
