#!/usr/bin/env bash
# Stop the Synapse started by start.sh.   clients/synapse/stop.sh [DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DIR="${1:-$ROOT/target/synapse}"
PIDFILE="$DIR/synapse.pid"
if [ ! -f "$PIDFILE" ]; then
    echo "no $PIDFILE: nothing to stop"
    exit 0
fi
PID="$(cat "$PIDFILE")"
if kill -0 "$PID" 2>/dev/null; then
    kill "$PID"
    for _ in $(seq 1 40); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$PID" 2>/dev/null; then
        kill -9 "$PID" 2>/dev/null || true
    fi
    echo "synapse (pid $PID) stopped"
else
    echo "synapse (pid $PID) was not running"
fi
rm -f "$PIDFILE"
