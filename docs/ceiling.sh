#!/usr/bin/env bash
# The top of the fan-out range, where single runs move by ±10 ms of p99:
# each load three times, alternating between rtchat (three replicas on one
# Redis, then one standalone replica) and the trivial broadcast server, so
# that drift of the machine hits all of them alike. Prints one JSON report
# per line, prefixed by server and rate. Takes ~7 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
B=target/release/rtchat
export RUST_LOG=warn
REDIS_PORT=${REDIS_PORT:-6398}
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; }
trap cleanup EXIT

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
run() { local name=$1; shift; printf '%s ' "$name"; "$B" bench ws "$@" --members 1000 --publishers 10 --duration 10s --json 2>/dev/null; }

redis-server --port "$REDIS_PORT" --save "" --appendonly no --daemonize yes >/dev/null
wait_port "$REDIS_PORT"
urls=(); cluster=()
for i in 1 2 3; do
  TOKIO_WORKER_THREADS=1 "$B" ws-server --id "server-$i" --listen "127.0.0.1:313$i" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
    --rate-limit 100000 --rate-burst 100000 2>/dev/null &
  pids+=($!); cluster+=($!); urls+=("ws://127.0.0.1:313$i/ws")
  wait_port "313$i"
done
U=$(IFS=,; echo "${urls[*]}"); P=$(IFS=,; echo "${cluster[*]}")
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
