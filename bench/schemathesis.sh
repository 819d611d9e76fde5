#!/usr/bin/env bash
# Property-based API testing of the REST surface with schemathesis, from /openapi.json, against
# a running `fleetpilot serve` on loopback (paused emulator, development mode): no case may get
# a 5xx. Not part of CI (it takes minutes); rerun it after changing a tool or its schema.
#   pip install schemathesis
#   bench/schemathesis.sh [target/release/fleetpilot] [MAX_EXAMPLES]
set -euo pipefail
BIN=${1:-target/release/fleetpilot}
EXAMPLES=${2:-100}
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN" serve --listen "127.0.0.1:$PORT" --state "$DIR/state.db" --speed 0 >"$DIR/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
schemathesis run "http://127.0.0.1:$PORT/openapi.json" --checks not_a_server_error --max-examples "$EXAMPLES" -w 2
