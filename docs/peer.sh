#!/usr/bin/env bash
# rtchat side by side with the Rust peer (docs/peer: socketioxide with its
# Redis adapter) and, when ORIGINAL names its directory, the Node original,
# in one run with one generator: three replicas of each on one private
# Redis, default runtime settings (no TOKIO_WORKER_THREADS), publishers not
# joined. Per system: RSS of a replica at start, fan-out 1000 members x 25
# and x 300 msg/s (RSS under load, CPU per delivery, p99), 1000 members
# in 100 rooms of 10 at 2000 msg/s and one room of 10 at 2000 msg/s from 3
# publishers (p99, Redis CPU per message), then one replica
# with 10,000 idle joined connections. rtchat is driven twice: through its
# Socket.IO door (the peer's protocol) and natively. ~8 minutes.
#   bash docs/peer.sh
#   ORIGINAL=dir bash docs/peer.sh   # dir: the original's server.js (PORT
#                                    # and REDIS_URL from the environment)
#                                    # with its node_modules
REDIS_PORT=${REDIS_PORT:-6396}
source "$(dirname "$0")/bench-common.sh"
cargo build --release --locked -q --manifest-path docs/peer/Cargo.toml
PEER=docs/peer/target/release/rtchat-peer
# A binary the build has just written reads 1.1-1.2 MiB more RSS at start
# than the same file read back from disk, as a deployed one is (section
# "Start-up RSS and the page cache" of docs/BENCHMARKS.md): both are
# dropped from the page cache first.
for binary in "$B" "$PEER"; do sync "$binary"; dd if="$binary" iflag=nocache count=0 status=none; done
REDIS_PID=$(redis-cli -p "$REDIS_PORT" info server | tr -d '\r' | sed -n 's/^process_id://p')
# A scenario a system cannot run is reported as such, not the end of the run.
run() { local name=$1; shift; printf '%s ' "$name"; "$B" bench "$@" --json 2>/dev/null || echo '{"failed":true}'; }
sio() { echo "$1" | sed 's|/ws|/socket.io/?EIO=4\&transport=websocket|g'; }
rss_kib() { local total=0; for p in ${1//,/ }; do total=$((total + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$total"; }

# Starts three replicas of a system on 127.0.0.1:<prefix>1..3; sets U
# (URLs, comma-separated, Socket.IO paths where the system speaks it) and P.
start() {
  local system=$1 prefix=$2 urls=() ids=()
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  if [ "$system" = rtchat ]; then
    start_replicas "$prefix"
    return
  fi
  for i in 1 2 3; do
    local port=$prefix$i
    case $system in
      peer) PORT=$port REDIS_URL="redis://127.0.0.1:$REDIS_PORT?protocol=resp3" SERVER_ID="server-$i" "$PEER" 2>/dev/null & ;;
      original) (cd "$ORIGINAL" && PORT=$port REDIS_URL="redis://127.0.0.1:$REDIS_PORT" SERVER_ID="server-$i" exec node server.js >/dev/null 2>&1) & ;;
    esac
    pids+=($!); ids+=($!); urls+=("ws://127.0.0.1:$port/socket.io/?EIO=4&transport=websocket")
    wait_port "$port"
  done
  U=$(IFS=,; echo "${urls[*]}"); P=$(IFS=,; echo "${ids[*]}")
}
stop() { kill ${P//,/ }; wait ${P//,/ } 2>/dev/null || true; }

scenarios() {
  local tag=$1 protocol=$2 url=$3
  run "$tag fanout-1000x25" ws --protocol "$protocol" --url "$url" --pid "$P" --members 1000 --publishers 5 --rate 25 --duration 10s
  run "$tag fanout-1000x300" ws --protocol "$protocol" --url "$url" --pid "$P" --members 1000 --publishers 10 --rate 300 --duration 10s
  run "$tag rooms-100x10-2000" ws --protocol "$protocol" --url "$url" --pid "$P" --redis-pid "$REDIS_PID" --members 1000 --rooms 100 --publishers 20 --rate 2000 --duration 10s
  run "$tag room-10x2000" ws --protocol "$protocol" --url "$url" --pid "$P" --redis-pid "$REDIS_PID" --members 10 --publishers 3 --rate 2000 --duration 10s
}

systems=(rtchat peer)
[ -n "${ORIGINAL:-}" ] && systems+=(original)
prefix=340
for system in "${systems[@]}"; do
  start "$system" "$prefix"
  echo "$system start-rss-kib-per-replica $(($(rss_kib "$P") / 3))"
  if [ "$system" = rtchat ]; then
    scenarios rtchat-socketio socket-io "$(sio "$U")"
    scenarios rtchat-native rtchat "$U"
  else
    scenarios "$system" socket-io "$U"
  fi
  stop
  prefix=$((prefix + 1))
done

# One replica of each on Redis, 10,000 idle joined members: rtchat twice
# (Socket.IO door, native), each on a fresh replica.
idle() {
  local system=$1 tag=$2 protocol=$3 port=$4
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  case $system in
    rtchat) "$B" ws-server --listen "127.0.0.1:$port" --redis-url "redis://127.0.0.1:$REDIS_PORT" 2>/dev/null & ;;
    peer) PORT=$port REDIS_URL="redis://127.0.0.1:$REDIS_PORT?protocol=resp3" "$PEER" 2>/dev/null & ;;
    original) (cd "$ORIGINAL" && PORT=$port REDIS_URL="redis://127.0.0.1:$REDIS_PORT" exec node server.js >/dev/null 2>&1) & ;;
  esac
  P=$!; pids+=($P)
  wait_port "$port"
  local url="ws://127.0.0.1:$port/socket.io/?EIO=4&transport=websocket"
  [ "$protocol" = rtchat ] && url="ws://127.0.0.1:$port/ws"
  run "$tag idle-10000" ws --protocol "$protocol" --url "$url" --pid "$P" --idle --members 10000 --duration 3s
  stop
}
idle rtchat rtchat-socketio socket-io 3501
idle rtchat rtchat-native rtchat 3502
idle peer peer socket-io 3503
[ -z "${ORIGINAL:-}" ] || idle original original socket-io 3504
