#!/usr/bin/env bash
# Redis CPU per published message and fan-out throughput on one Redis
# against a Redis Cluster of three primaries, at the same load: the Redis
# log alone (`rtchat bench log`: publishes in flight, three subscribed
# replicas receiving every message) over 1, 100 and 10,000 rooms. Redis CPU
# is every primary's summed. The cluster has no replicas here, so both
# sides do the same work; docs/BENCHMARKS.md has what a replica adds.
#   bash docs/shards.sh [duration] [concurrency]
set -euo pipefail
DURATION=${1:-5s}
CONCURRENCY=${2:-64}
cd "$(dirname "$0")/.."
cargo build --release --locked -q
B=target/release/rtchat
export RUST_LOG=warn
dir=$(mktemp -d)
ports=(6521 6522 6523)
single=6520
cleanup() {
  for p in "$single" "${ports[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
wait_ping() { for _ in $(seq 100); do redis-cli -p "$1" ping 2>/dev/null | grep -q PONG && return; sleep 0.1; done; exit 1; }
pid_of() { redis-cli -p "$1" info server | tr -d '\r' | sed -n 's/^process_id://p'; }

redis-server --port "$single" --save "" --appendonly no --daemonize yes --dir "$dir" >/dev/null
wait_ping "$single"
for p in "${ports[@]}"; do
  mkdir -p "$dir/$p"
  redis-server --port "$p" --save "" --appendonly no --daemonize yes --dir "$dir/$p" \
    --cluster-enabled yes --cluster-config-file nodes.conf >/dev/null
  wait_ping "$p"
done
redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
for _ in $(seq 100); do
  redis-cli -p "${ports[0]}" cluster info | grep -q 'cluster_state:ok' && break; sleep 0.1
done
cluster_url="redis-cluster://127.0.0.1:${ports[0]}?node=127.0.0.1:${ports[1]}&node=127.0.0.1:${ports[2]}"
cluster_pids=$(for p in "${ports[@]}"; do pid_of "$p"; done | paste -sd,)

for rooms in 1 100 10000; do
  printf 'one-redis rooms=%s ' "$rooms"
  redis-cli -p "$single" flushall >/dev/null
  "$B" bench log --redis-url "redis://127.0.0.1:$single" --redis-pid "$(pid_of "$single")" \
    --rooms "$rooms" --concurrency "$CONCURRENCY" --duration "$DURATION" --json
  printf 'three-shards rooms=%s ' "$rooms"
  for p in "${ports[@]}"; do redis-cli -p "$p" flushall >/dev/null; done
  "$B" bench log --redis-url "$cluster_url" --redis-pid "$cluster_pids" \
    --rooms "$rooms" --concurrency "$CONCURRENCY" --duration "$DURATION" --json
done
