#!/usr/bin/env bash
# No token or secret in any log of a test run: every secret the tests use
# carries the marker do-not-log, and a JWT's first two parts both start with
# eyJ ('{"' in base64url). The folder must hold the logs of servers run as
# processes, of servers run inside tests, and of nginx, or the check would
# prove nothing.
set -euo pipefail
dir="$1"
for kind in process in-process nginx-access; do
  if ! compgen -G "$dir/$kind-*.log" >/dev/null; then
    echo "no $kind logs in $dir: the check would prove nothing" >&2
    exit 1
  fi
done
lines=$(cat "$dir"/*.log | wc -l)
if grep -rnE 'do-not-log|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}' "$dir"; then
  echo "a token or secret reached a log (above)" >&2
  exit 1
fi
if ! grep -qh '"GET /ws HTTP' "$dir"/nginx-access-*.log; then
  echo "nginx logged no WebSocket request: its log was not captured" >&2
  exit 1
fi
echo "logs: $lines lines from $(ls "$dir" | wc -l) files, no token or secret"
