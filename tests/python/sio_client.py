"""The official python-socketio client, driven line by line like
tests/js/client.cjs: JSON commands on stdin, one JSON line per event seen.

    python3 sio_client.py <url> [<auth as JSON>]
"""
import json
import os
import sys
import threading

import socketio

url = sys.argv[1]
auth = json.loads(sys.argv[2]) if len(sys.argv) > 2 else None
sio = socketio.Client(reconnection=True)
lock = threading.Lock()


def emit(line):
    with lock:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


@sio.event
def connect():
    emit({"connect": {"id": sio.get_sid(), "transport": sio.transport()}})


@sio.event
def connect_error(data):
    emit({"connect_error": str(data)})


if os.environ.get("ORIGINAL_HANDLER"):
    # Written for the original: one argument. Needs --socketio-recovery off.
    @sio.on("message")
    def on_message(data):
        emit({"event": "message", "args": [data]})

else:
    # rtchat adds the recovery offset as a last argument; a handler written
    # for the original takes only `data`, so this one accepts the extra one.
    @sio.on("message")
    def on_message(data, *rest):
        emit({"event": "message", "args": [data, *rest]})


@sio.on("error")
def on_error(data, *rest):
    emit({"event": "error", "args": [data, *rest]})


sio.connect(url, auth=auth, wait_timeout=10)
for line in sys.stdin:
    command = json.loads(line)
    if command.get("exit"):
        break
    name, args = command["emit"], command.get("args", [])
    if command.get("ack"):
        reply = sio.call(name, args[0] if len(args) == 1 else tuple(args), timeout=10)
        emit({"ack": name, "reply": reply})
    else:
        sio.emit(name, args[0] if len(args) == 1 else tuple(args))
sio.disconnect()
