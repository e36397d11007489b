#!/usr/bin/env bash
# Reruns every measurement of docs/BENCHMARKS.md on this machine: release
# build, a private Redis, servers and load generator on loopback. Prints one
# JSON report per line, prefixed by the scenario name. Takes ~9 minutes.
REDIS_PORT=${REDIS_PORT:-6399}
source "$(dirname "$0")/bench-common.sh"
run() { local name=$1; shift; printf '%s ' "$name"; "$B" bench "$@" --json 2>/dev/null; }

# Three ws-server replicas on one Redis. They share two cores here, so
# each runs one runtime thread (tokio reads TOKIO_WORKER_THREADS; by
# default it starts one per core).
start_replicas 310 TOKIO_WORKER_THREADS=1

run fanout-1000x25 ws --url "$U" --pid "$P" --members 1000 --publishers 5 --rate 25 --duration 10s
run fanout-100x250 ws --url "$U" --pid "$P" --members 100 --publishers 10 --rate 250 --duration 10s
for rate in 100 200 250 300 350; do
  run "max-1000x$rate" ws --url "$U" --pid "$P" --members 1000 --publishers 10 --rate "$rate" --duration 10s
done
for members in 10 100 1000 3000 10000; do
  run "curve-$members" ws --url "$U" --pid "$P" --members "$members" --publishers 5 --rate 20 --duration 5s
done
kill ${P//,/ }; wait ${P//,/ } 2>/dev/null || true

# The yardstick: a trivial broadcast server with the same load generator.
"$B" bench trivial-server --listen 127.0.0.1:3900 2>/dev/null & T=$!; pids+=($T)
wait_port 3900
run trivial-1000x25 ws --url ws://127.0.0.1:3900/ws --pid "$T" --members 1000 --publishers 5 --rate 25 --duration 10s
run trivial-100x250 ws --url ws://127.0.0.1:3900/ws --pid "$T" --members 100 --publishers 10 --rate 250 --duration 10s
for rate in 100 200 250 300 350; do
  run "trivial-1000x$rate" ws --url ws://127.0.0.1:3900/ws --pid "$T" --members 1000 --publishers 10 --rate "$rate" --duration 10s
done
kill "$T"

# Memory of idle joined connections, one standalone replica per size.
for n in 1000 5000 10000 19000; do
  "$B" ws-server --listen 127.0.0.1:3110 2>/dev/null & S=$!; pids+=($S)
  wait_port 3110
  run "idle-$n" ws --url ws://127.0.0.1:3110/ws --pid "$S" --idle --members "$n" --duration 3s
  kill "$S"; wait "$S" 2>/dev/null || true
done

# gRPC on Redis: unary GetUser, then ListUsers over 100,000 users.
"$B" grpc-server --listen 127.0.0.1:31600 --redis-url "redis://127.0.0.1:$REDIS_PORT" 2>/dev/null & G=$!; pids+=($G)
wait_port 31600
run grpc-get-16x32 grpc --addr http://127.0.0.1:31600 --pid "$G" --connections 16 --streams 32 --duration 10s
run grpc-get-1x1 grpc --addr http://127.0.0.1:31600 --pid "$G" --connections 1 --streams 1 --duration 5s
run grpc-list-100k grpc --addr http://127.0.0.1:31600 --pid "$G" --rpc list --seed 99998 --connections 1 --streams 1 --count 3
run grpc-list-100k-again grpc --addr http://127.0.0.1:31600 --pid "$G" --rpc list --connections 1 --streams 1 --count 3
kill "$G"

# The same GetUser load on the in-memory store.
"$B" grpc-server --listen 127.0.0.1:31601 2>/dev/null & M=$!; pids+=($M)
wait_port 31601
run grpc-memory-get-16x32 grpc --addr http://127.0.0.1:31601 --pid "$M" --connections 16 --streams 32 --duration 10s
run grpc-memory-get-1x1 grpc --addr http://127.0.0.1:31601 --pid "$M" --connections 1 --streams 1 --duration 5s
kill "$M"

# The replicas again with tokio's default of one runtime thread per core,
# to show what the thread setting above changes.
start_replicas 312
run default-threads-1000x25 ws --url "$U" --pid "$P" --members 1000 --publishers 5 --rate 25 --duration 10s
run default-threads-1000x250 ws --url "$U" --pid "$P" --members 1000 --publishers 10 --rate 250 --duration 10s
