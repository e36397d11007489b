# Sourced by the benchmark scripts: release build, a private Redis on
# $REDIS_PORT, and clean-up of every process listed in `pids` on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
B=target/release/rtchat
export RUST_LOG=warn
# The load generator is one client address opening thousands of
# connections: lift the per-address bounds for the servers measured.
export MAX_CONNECTIONS_PER_IP=10000000 MAX_PENDING_PER_IP=10000000 MAX_PENDING_CONNECTIONS=10000000 NEW_CONNECTIONS_PER_IP=10000000 NEW_CONNECTIONS_BURST=10000000
# The generator places its sockets itself (by blocks of rooms, not always
# evenly: 1000 members in 100 rooms land 400/300/300) and never
# reconnects, so a replica shedding its excess (rebalancing, which the
# peers do not have) would show up as lost messages, not as cost.
export REBALANCE=off
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; }
trap cleanup EXIT

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

redis-server --port "$REDIS_PORT" --save "" --appendonly no --daemonize yes >/dev/null
wait_port "$REDIS_PORT"

# Starts three ws-server replicas on that Redis, on 127.0.0.1:<prefix>1..3,
# with the environment given after the prefix (NAME=value ...). Sets U to
# their URLs and P to their pids, comma-separated. The publishers' rate is
# the scenario's, so the per-connection rate limit is lifted.
start_replicas() {
  local prefix=$1; shift
  local urls=() ids=()
  for i in 1 2 3; do
    env "$@" "$B" ws-server --id "server-$i" --listen "127.0.0.1:$prefix$i" \
      --redis-url "redis://127.0.0.1:$REDIS_PORT" --rate-limit 100000 --rate-burst 100000 2>/dev/null &
    pids+=($!); ids+=($!); urls+=("ws://127.0.0.1:$prefix$i/ws")
    wait_port "$prefix$i"
  done
  U=$(IFS=,; echo "${urls[*]}"); P=$(IFS=,; echo "${ids[*]}")
}
