#!/usr/bin/env bash
# The top of the fan-out range, where single runs move by ±10 ms of p99:
# each load three times, alternating between rtchat (three replicas on one
# Redis, then one standalone replica) and the trivial broadcast server, so
# that drift of the machine hits all of them alike. Prints one JSON report
# per line, prefixed by server and rate. Takes ~12 minutes.
REDIS_PORT=${REDIS_PORT:-6398}
source "$(dirname "$0")/bench-common.sh"
run() { local name=$1; shift; printf '%s ' "$name"; "$B" bench ws "$@" --members 1000 --publishers 10 --duration 10s --json 2>/dev/null; }
start_replicas 313 TOKIO_WORKER_THREADS=1
"$B" ws-server --listen 127.0.0.1:3134 --rate-limit 100000 --rate-burst 100000 2>/dev/null & S=$!; pids+=($S)
"$B" bench trivial-server --listen 127.0.0.1:3135 2>/dev/null & T=$!; pids+=($T)
wait_port 3134; wait_port 3135

for _ in 1 2 3; do
  for rate in 250 300 350 400; do
    run "replicas-$rate" --url "$U" --pid "$P" --rate "$rate"
    run "standalone-$rate" --url ws://127.0.0.1:3134/ws --pid "$S" --rate "$rate"
    run "trivial-$rate" --url ws://127.0.0.1:3135/ws --pid "$T" --rate "$rate"
  done
done
