#!/usr/bin/env bash
# Many rooms: the same total message rate spread over 1, 100 and 10,000
# rooms (2 members each, over three replicas on one private Redis, default
# runtime settings), reporting server and Redis CPU per message and the
# latency tail. Then the highest rate one Redis takes over 10,000 rooms.
#   bash docs/rooms.sh [rate] [path/to/rtchat]
set -euo pipefail
RATE=${1:-2000}
REDIS_PORT=${REDIS_PORT:-6397}
source "$(dirname "$0")/bench-common.sh"
B=${2:-$B}
REDIS_PID=$(redis-cli -p "$REDIS_PORT" info server | tr -d '\r' | sed -n 's/^process_id://p')
run() { local name=$1; shift; printf '%s ' "$name"; "$B" bench ws --url "$U" --pid "$P" --redis-pid "$REDIS_PID" --json "$@" 2>/dev/null; }

start_replicas 330
for rooms in 1 100 10000; do
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  run "rooms-$rooms" --rooms "$rooms" --members $((rooms * 2)) --publishers 20 --rate "$RATE" --duration 10s --connect-concurrency 500
done
for rate in 10000 20000 40000; do
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  run "rooms-10000-at-$rate" --rooms 10000 --members 10000 --publishers 50 --rate "$rate" --duration 10s --connect-concurrency 500
done
