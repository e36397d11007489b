#!/usr/bin/env bash
# Webhooks: what `message` events add to a chat message, and how many
# events one receiver gets a second. Three replicas on one private Redis,
# default runtime settings, 100 rooms of 2 members, 20 publishers: the same
# load without webhooks ("before") and with every event type sent to one
# receiver ("after", `rtchat bench receiver`, which answers at once); then
# how fast one receiver is sent a backlog: events queued while it was
# down, delivered once it is back (counted from the replicas' metrics).
#   bash docs/webhooks.sh [rate]
set -euo pipefail
RATE=${1:-2000}
REDIS_PORT=${REDIS_PORT:-6398}
source "$(dirname "$0")/bench-common.sh"
REDIS_PID=$(redis-cli -p "$REDIS_PORT" info server | tr -d '\r' | sed -n 's/^process_id://p')
RECEIVER=127.0.0.1:3990
"$B" bench receiver --listen "$RECEIVER" >/dev/null 2>&1 &
pids+=($!)
wait_port 3990

run() { local name=$1; shift; printf '%s ' "$name"; "$B" bench ws --url "$U" --pid "$P" --redis-pid "$REDIS_PID" --json "$@" 2>/dev/null; }
# Sum of a metric over the replicas listening on <prefix>1..3.
metric() {
  local total=0 v
  for i in 1 2 3; do
    v=$(curl -s "http://127.0.0.1:$1$i/metrics" | awk -v m="$2" '$1 == m {print $2}')
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
stop_replicas() { kill ${P//,/ } 2>/dev/null || true; wait ${P//,/ } 2>/dev/null || true; }
load() { run "$1" --rooms 100 --members 200 --publishers 20 --rate "$2" --duration 10s --connect-concurrency 500; }

redis-cli -p "$REDIS_PORT" flushall >/dev/null
start_replicas 340
load "before-$RATE" "$RATE"
stop_replicas

redis-cli -p "$REDIS_PORT" flushall >/dev/null
start_replicas 350 WEBHOOK_URL="http://$RECEIVER/hook" WEBHOOK_SECRET=bench-secret WEBHOOK_EVENTS=all
load "after-$RATE" "$RATE"
# Throughput: a backlog queued while the receiver is down, then timed
# from the first delivery after it is back until nothing is queued.
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
load "backlog-10000" 10000 >/dev/null
queued=$(metric 350 rtchat_webhook_events_queued)
"$B" bench receiver --listen "$RECEIVER" >/dev/null 2>&1 &
pids+=($!)
first=$(metric 350 rtchat_webhook_events_delivered_total)
while [ "$(metric 350 rtchat_webhook_events_delivered_total)" = "$first" ]; do sleep 0.05; done
t0=$(date +%s.%N); d0=$(metric 350 rtchat_webhook_events_delivered_total)
while [ "$(metric 350 rtchat_webhook_events_queued)" != 0 ]; do sleep 0.2; done
t1=$(date +%s.%N); d1=$(metric 350 rtchat_webhook_events_delivered_total)
echo "backlog queued=$queued delivered=$((d1 - d0)) in $(echo "$t1 - $t0" | bc)s: $(echo "($d1 - $d0) / ($t1 - $t0)" | bc) events/s"
stop_replicas
