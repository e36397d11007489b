#!/usr/bin/env bash
# Many rooms: the same total message rate spread over 1, 100 and 10,000
# rooms (2 members each, 1 in the 10,000-room run), over three replicas on
# one private Redis with default runtime settings, reporting server and
# Redis CPU per message and the latency tail; then 10,000 rooms at higher
# rates, up to what two cores generate and serve over WebSocket. What one
# Redis carries on its own: `rtchat bench log` (docs/BENCHMARKS.md).
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
  # Two members a room, one in the 10,000-room run: a generator holds at
  # most about 20,000 sockets under the usual open-file limit.
  members=$((rooms * 2)); [ "$rooms" -ge 10000 ] && members=$rooms
  run "rooms-$rooms" --rooms "$rooms" --members "$members" --publishers 20 --rate "$RATE" --duration 10s --connect-concurrency 500
done
for rate in 5000 10000; do
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  run "rooms-10000-at-$rate" --rooms 10000 --members 10000 --publishers 50 --rate "$rate" --duration 10s --connect-concurrency 500
done
