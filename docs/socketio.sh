#!/usr/bin/env bash
# The Socket.IO door against the native one, same replicas, same generator,
# alternated twice: fan-out 1000 x 25 msg/s and 100 x 250 msg/s over three
# replicas on one private Redis, and idle memory of 10,000 joined
# connections on one standalone replica. ~5 minutes.
REDIS_PORT=${REDIS_PORT:-6397}
source "$(dirname "$0")/bench-common.sh"
run() { local name=$1; shift; printf '%s ' "$name"; "$B" bench "$@" --json 2>/dev/null; }
sio_urls() { echo "$1" | sed 's|/ws|/socket.io/?EIO=4\&transport=websocket|g'; }

start_replicas 330 TOKIO_WORKER_THREADS=1
S=$(sio_urls "$U")
for round in 1 2; do
  run "native-$round fanout-1000x25" ws --url "$U" --pid "$P" --members 1000 --publishers 5 --rate 25 --duration 10s
  run "socketio-$round fanout-1000x25" ws --protocol socket-io --url "$S" --pid "$P" --members 1000 --publishers 5 --rate 25 --duration 10s
  run "native-$round fanout-100x250" ws --url "$U" --pid "$P" --members 100 --publishers 10 --rate 250 --duration 10s
  run "socketio-$round fanout-100x250" ws --protocol socket-io --url "$S" --pid "$P" --members 100 --publishers 10 --rate 250 --duration 10s
done
kill ${P//,/ }; wait ${P//,/ } 2>/dev/null || true

for round in 1 2; do
  for protocol in rtchat socket-io; do
    "$B" ws-server --listen 127.0.0.1:3130 2>/dev/null & X=$!; pids+=($X)
    wait_port 3130
    url=ws://127.0.0.1:3130/ws
    [ "$protocol" = socket-io ] && url=$(sio_urls "$url")
    run "$protocol-$round idle-10000" ws --protocol "$protocol" --url "$url" --pid "$X" --idle --members 10000 --duration 3s
    kill "$X"; wait "$X" 2>/dev/null || true
  done
done
