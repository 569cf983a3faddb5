#!/usr/bin/env bash
# bench/passthrough.sh: what hotgate costs on the pass-through path (cache off), against
# hotdata-sim directly, in one run. Two requests: GET /v1/connections and a small
# POST /v1/query (lua script). For each: wrk -t1 -c64 -d5s --latency, straight to the
# simulator (upstream token) and through hotgate (client key) -> requests/s, p50, p99;
# then the throughput ratio (target >= 0.8) and the p50 latency hotgate adds (target
# <= 100 us).
# Writes bench/out/passthrough.{md,csv} and prints the table.
#   BUILD_DIR (default build), DURATION (5s), CONNS (64), HG_THREADS (1), ACCESS_LOG (file|off)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
HG_THREADS=${HG_THREADS:-1}
ACCESS_LOG=${ACCESS_LOG:-file}
OUT=bench/out
mkdir -p "$OUT"
HG=$BUILD_DIR/hotgate
SIM=$BUILD_DIR/hotdata-sim
[ -x "$HG" ] && [ -x "$SIM" ] || { echo "build first: BUILD_DIR=$BUILD_DIR ./scripts/build.sh" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 1; }

TMP=$(mktemp -d /tmp/hg-bench-pass-XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()'; }
wait_port() { for _ in $(seq 1 300); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }

SIM_PORT=$(free_port); HG_PORT=$(free_port)
"$SIM" --listen 127.0.0.1:$SIM_PORT --token tok_test=ws_test --workspace ws_test \
    --data-dir "$TMP/sim" --quiet >"$TMP/sim.log" 2>&1 &
PIDS+=($!)
wait_port $SIM_PORT || { echo "sim did not start" >&2; cat "$TMP/sim.log" >&2; exit 1; }

KEY=hgk_bench_pass_0123456789abcdef
KEY_SHA=$(printf %s "$KEY" | "$HG" --hash-key)
printf 'tok_test\n' >"$TMP/token"; chmod 600 "$TMP/token"
ALOG=off; [ "$ACCESS_LOG" = file ] && ALOG=$TMP/access.log
cat >"$TMP/hotgate.conf" <<CONF
[server]
listen = 127.0.0.1:$HG_PORT
threads = $HG_THREADS
access_log = $ALOG
log_level = warn
[upstream]
url = http://127.0.0.1:$SIM_PORT
http2 = no
max_connections_per_host = 128
[cache]
enabled = no
[credential main]
token_file = $TMP/token
[client bench]
key_sha256 = $KEY_SHA
credential = main
workspaces = ws_test
default_workspace = ws_test
mode = full
CONF
"$HG" --config "$TMP/hotgate.conf" >"$TMP/hotgate.log" 2>&1 &
PIDS+=($!)
wait_port $HG_PORT || { echo "hotgate did not start" >&2; cat "$TMP/hotgate.log" >&2; exit 1; }

cat >"$TMP/query.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"sql":"SELECT 1 AS one"}'
wrk.headers["Content-Type"] = "application/json"
LUA

# wrk output -> "rps p50_us p99_us"
to_us() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); print v} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v*1000} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000000} else print v}'; }
run() { # name url script? headers...
    local url=$1 script=$2; shift 2
    local args=(-t1 -c"${CONNS_NOW:-$CONNS}" -d"$DURATION" --latency)
    [ -n "$script" ] && args+=(-s "$script")
    for h in "$@"; do args+=(-H "$h"); done
    local out; out=$(wrk "${args[@]}" "$url")
    local rps p50 p99 non2xx
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}' | to_us)
    p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_us)
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    [ -n "$non2xx" ] && echo "warning: $non2xx non-2xx answers for $url" >&2
    echo "$rps $p50 $p99"
}

printf 'scenario,direct_rps,hotgate_rps,ratio,direct_p50_us,hotgate_p50_us,added_p50_us,direct_p99_us,hotgate_p99_us\n' >"$OUT/passthrough.csv"
{
    echo "| scenario | direct req/s | hotgate req/s | ratio | direct p50 | hotgate p50 | added p50 | direct p99 | hotgate p99 |"
    echo "|---|---|---|---|---|---|---|---|---|"
} >"$OUT/passthrough.md"
# the c=1 run isolates the latency hotgate adds from queueing behind 64 connections
for sc in connections query latency; do
    CONNS_NOW=$CONNS
    case $sc in
    connections) path=/v1/connections; script="" ;;
    query) path=/v1/query; script=$TMP/query.lua ;;
    latency) path=/v1/connections; script=""; CONNS_NOW=1 ;;
    esac
    # warm both paths (connection pools, SQLite caches)
    run "http://127.0.0.1:$SIM_PORT$path" "$script" "Authorization: Bearer tok_test" "X-Workspace-Id: ws_test" >/dev/null 2>&1 || true
    read -r d_rps d_p50 d_p99 < <(run "http://127.0.0.1:$SIM_PORT$path" "$script" "Authorization: Bearer tok_test" "X-Workspace-Id: ws_test")
    read -r g_rps g_p50 g_p99 < <(run "http://127.0.0.1:$HG_PORT$path" "$script" "Authorization: Bearer $KEY")
    ratio=$(awk -v a="$g_rps" -v b="$d_rps" 'BEGIN{printf "%.2f", (b>0)?a/b:0}')
    added=$(awk -v a="$g_p50" -v b="$d_p50" 'BEGIN{printf "%.0f", a-b}')
    echo "$sc,$d_rps,$g_rps,$ratio,$d_p50,$g_p50,$added,$d_p99,$g_p99" >>"$OUT/passthrough.csv"
    printf '| %s %s (c=%s) | %s | %s | %s | %s us | %s us | %s us | %s us | %s us |\n' \
        "$( [ $sc = query ] && echo POST || echo GET )" "$path" "$CONNS_NOW" "$d_rps" "$g_rps" "$ratio" \
        "$d_p50" "$g_p50" "$added" "$d_p99" "$g_p99" >>"$OUT/passthrough.md"
done
{
    echo
    echo "wrk -t1 -d$DURATION (-c as shown); hotgate threads=$HG_THREADS, cache off, access log $ACCESS_LOG;"
    echo "targets: ratio >= 0.8, added p50 <= 100 us. $(nproc) CPU(s) shared by wrk, hotgate and the simulator."
} >>"$OUT/passthrough.md"
cat "$OUT/passthrough.md"
