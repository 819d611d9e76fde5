#!/usr/bin/env bash
# Interop: drive fleetpilot with the MCP Inspector CLI over stdio and streamable HTTP.
# Usage: inspector.sh BINARY INSPECTOR   (INSPECTOR: path to the mcp-inspector executable)
# Checks: tools/list passes --strict schema checks; read_fleet works; a proposal beyond a
# bound comes back as a tool error (exit 5), not a protocol error; an allowed one applies.
# Prints "N passed, M failed" and exits non-zero on any failure.
set -u
BIN=${1:?binary}
INSPECTOR=${2:?mcp-inspector path}
WORK=$(mktemp -d)
export MCP_CATALOG_PATH="$WORK/catalog.json" RUST_LOG=warn
passed=0; failed=0
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# check NAME EXPECTED_EXIT GREP_PATTERN -- inspector args...
check() {
  local name=$1 want=$2 pattern=$3; shift 4
  local out="$WORK/out.json" err="$WORK/err.txt" rc
  timeout 60 "$INSPECTOR" --cli "$@" --format json >"$out" 2>"$err"; rc=$?
  if [ "$rc" = "$want" ] && { [ -z "$pattern" ] || grep -q -- "$pattern" "$out" "$err"; }; then
    passed=$((passed + 1)); echo "ok   inspector $name"
  else
    failed=$((failed + 1)); echo "FAIL inspector $name (exit $rc, wanted $want, pattern '$pattern')"
    head -c 2000 "$out"; echo; tail -n 20 "$err"
  fi
}

run_suite() {
  local label=$1; shift
  check "$label tools/list --strict" 0 '"propose_scale"' -- "$@" --method tools/list --strict
  check "$label read_fleet" 0 '"cf-ml-scaling"' -- "$@" --method tools/call --tool-name read_fleet --tool-arg fleet=cf-ml-scaling
  check "$label propose beyond a bound is isError" 5 'max_spot' -- "$@" --method tools/call --tool-name propose_scale \
    --tool-args-json '{"fleet":"cf-ml-scaling","spot_capacity":500,"reason":"inspector"}'
  check "$label estimate_cost" 0 '"delta_hourly_usd"' -- "$@" --method tools/call --tool-name estimate_cost \
    --tool-args-json '{"fleet":"cf-ml-scaling","spot_capacity":30}'
  check "$label query_kql" 0 '"PrimaryResult"' -- "$@" --method tools/call --tool-name query_kql --tool-arg 'query=print x = 1'
  check "$label query_kql syntax error is isError" 5 'kql_error' -- "$@" --method tools/call --tool-name query_kql --tool-arg 'query=print x ='
  check "$label propose within bounds" 0 '"allow"' -- "$@" --method tools/call --tool-name propose_scale \
    --tool-args-json '{"fleet":"cf-ml-scaling","spot_capacity":22,"reason":"inspector"}'
  local id
  id=$(grep -o '"id": *"prop-[0-9a-f]*"' "$WORK/out.json" | head -n1 | sed 's/.*"\(prop-[0-9a-f]*\)"/\1/')
  if [ -n "$id" ]; then
    check "$label apply_proposal" 0 '"applied"' -- "$@" --method tools/call --tool-name apply_proposal --tool-arg "proposal_id=$id"
  fi
}

# stdio: each inspector call starts its own `fleetpilot mcp`, sharing one state database.
run_suite stdio "$BIN" mcp --speed 0 --state "$WORK/stdio.db"

# streamable HTTP
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --listen "127.0.0.1:$PORT" --speed 0 --state "$WORK/http.db" &
SERVER_PID=$!
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
run_suite http "http://127.0.0.1:$PORT/mcp" --transport http

echo "inspector: $passed passed, $failed failed"
[ "$failed" = 0 ]
