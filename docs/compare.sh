#!/usr/bin/env bash
# Compares two rtchat builds on the rows a refactoring must not move:
# fan-out 1000 x 25 msg/s and 100 x 250 msg/s over three replicas on one
# private Redis, and idle memory of 10,000 joined connections on one
# standalone replica. Alternates the builds twice; the first build given is
# also the load generator for both, so only the servers differ.
#   bash docs/compare.sh path/to/rtchat-a path/to/rtchat-b
set -euo pipefail
A=$1 C=$2
REDIS_PORT=${REDIS_PORT:-6398}
source "$(dirname "$0")/bench-common.sh"
G=$A
run() { local name=$1; shift; printf '%s ' "$name"; "$G" bench "$@" --json 2>/dev/null; }

for round in 1 2; do
  for side in a b; do
    if [ "$side" = a ]; then build=$A; else build=$C; fi
    tag="$side$round"
    B=$build start_replicas 320 TOKIO_WORKER_THREADS=1
    run "$tag fanout-1000x25" ws --url "$U" --pid "$P" --members 1000 --publishers 5 --rate 25 --duration 10s
    run "$tag fanout-100x250" ws --url "$U" --pid "$P" --members 100 --publishers 10 --rate 250 --duration 10s
    kill ${P//,/ }; wait ${P//,/ } 2>/dev/null || true
    "$build" ws-server --listen 127.0.0.1:3120 2>/dev/null & S=$!; pids+=($S)
    wait_port 3120
    run "$tag idle-10000" ws --url ws://127.0.0.1:3120/ws --pid "$S" --idle --members 10000 --duration 3s
    kill "$S"; wait "$S" 2>/dev/null || true
  done
done
