#!/usr/bin/env bash
# Server API publishes (`rtchat bench api`): one keep-alive connection and
# sixteen, one publish in flight on each, into 100 rooms, against one
# standalone replica and against one replica on a private Redis, with ten
# idle native members joined to each room (who do not read: the runs are
# short enough for their send queues) so every publish is also delivered.
# ~2 minutes.
REDIS_PORT=${REDIS_PORT:-6395}
source "$(dirname "$0")/bench-common.sh"
KEY=bench-api-key
run() { local name=$1; shift; printf '%s ' "$name"; "$B" bench "$@" --json 2>/dev/null; }

for mode in standalone redis; do
  flags=(--listen 127.0.0.1:3601 --api-key "$KEY")
  [ "$mode" = redis ] && flags+=(--redis-url "redis://127.0.0.1:$REDIS_PORT")
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  "$B" ws-server "${flags[@]}" 2>/dev/null & S=$!; pids+=($S)
  wait_port 3601
  # Members to deliver to: `bench ws --idle` keeps 1000 joined for the run.
  "$B" bench ws --idle --url ws://127.0.0.1:3601/ws --members 1000 --rooms 100 --room bench --duration 30s >/dev/null 2>&1 & M=$!
  sleep 8
  for connections in 1 16; do
    run "$mode api-publish-c$connections" api --url http://127.0.0.1:3601 --api-key "$KEY" \
      --connections "$connections" --rooms 100 --duration 5s --pid "$S"
  done
  wait "$M" 2>/dev/null || true
  kill "$S"; wait "$S" 2>/dev/null || true
done
