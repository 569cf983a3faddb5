#!/usr/bin/env bash
# bench/cache_hits.sh: cached-hit throughput of hotgate, against hotdata-sim directly, in one
# run. Two requests: GET /v1/connections (~1 KB JSON) and POST /v1/query (a small result).
# For each target: wrk -t1 -c64 -d5s --latency -> requests/s, p50, p99, and the server's CPU
# time per request from /proc/PID/stat (utime+stime) before/after the run.
# Writes bench/out/cache_hits.{md,csv} and prints the table.
#   BUILD_DIR (default build), DURATION (5s), CONNS (64), HG_THREADS (2)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD_DIR=${BUILD_DIR:-build}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
HG_THREADS=${HG_THREADS:-2}
OUT=bench/out
mkdir -p "$OUT"
HG=$BUILD_DIR/hotgate
SIM=$BUILD_DIR/hotdata-sim
[ -x "$HG" ] && [ -x "$SIM" ] || { echo "build first: BUILD_DIR=$BUILD_DIR ./scripts/build.sh" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 1; }

TMP=$(mktemp -d /tmp/hg-bench-cache-XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT


SIM_PORT=$(free_port); HG_PORT=$(free_port); ADM_PORT=$(free_port)
"$SIM" --listen 127.0.0.1:$SIM_PORT --token tok_test=ws_test --workspace ws_test \
    --data-dir "$TMP/sim" --quiet >"$TMP/sim.log" 2>&1 &
SIM_PID=$!; PIDS+=($SIM_PID)
wait_port $SIM_PORT || { echo "sim did not start" >&2; cat "$TMP/sim.log" >&2; exit 1; }

KEY=hgk_bench_cache_0123456789abcdef
KEY_SHA=$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)
printf 'tok_test\n' >"$TMP/token"; chmod 600 "$TMP/token"
cat >"$TMP/hotgate.conf" <<CONF
[server]
listen = 127.0.0.1:$HG_PORT
threads = $HG_THREADS
access_log = off
[admin]
listen = 127.0.0.1:$ADM_PORT
[upstream]
url = http://127.0.0.1:$SIM_PORT
[cache]
enabled = yes
dir = $TMP/cache
size = 256M
ttl_query = 300s
ttl_metadata = 300s
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
HG_PID=$!; PIDS+=($HG_PID)
wait_port $HG_PORT || { echo "hotgate did not start" >&2; cat "$TMP/hotgate.log" >&2; exit 1; }

SQL='SELECT id, customer_id, status FROM demo.public.orders ORDER BY id LIMIT 10'
BODY="{\"sql\":\"$SQL\"}"
cat >"$TMP/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
LUA

# a ~1 KB connection list: the seeded demo connection plus a dozen more, made at the sim
for i in $(seq -w 1 13); do
    curl -s -o /dev/null -H "Authorization: Bearer tok_test" -H "X-Workspace-Id: ws_test" \
        -H 'Content-Type: application/json' \
        -d "{\"name\":\"bench_connection_$i\",\"source_type\":\"postgres\",\"config\":{},\"skip_discovery\":true}" \
        "http://127.0.0.1:$SIM_PORT/v1/connections"
done

# warm the cache (and check that the second answer is a hit)
for _ in 1 2; do
    curl -s -o /dev/null -H "Authorization: Bearer $KEY" "http://127.0.0.1:$HG_PORT/v1/connections"
    curl -s -o /dev/null -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        -d "$BODY" "http://127.0.0.1:$HG_PORT/v1/query"
done
XC=$(curl -s -D - -o /dev/null -H "Authorization: Bearer $KEY" "http://127.0.0.1:$HG_PORT/v1/connections" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')
[ "$XC" = HIT ] || { echo "warm-up did not produce a hit (X-Cache: $XC)" >&2; exit 1; }
SIZE=$(curl -s -H "Authorization: Bearer $KEY" "http://127.0.0.1:$HG_PORT/v1/connections" | wc -c)

to_ms() { # wrk latency "420.00us" / "1.20ms" / "1.02s" -> ms
    awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v+0} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print v }'
}

ROWS=()
run() { # name target_pid url auth_headers... (wrk args)
    local name=$1 pid=$2 url=$3; shift 3
    local c0 c1 out rps p50 p99 reqs cpu_us
    c0=$(cpu_ticks "$pid")
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$@" "$url")
    c1=$(cpu_ticks "$pid")
    echo "$out" >"$OUT/wrk_${name}.txt"
    rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
    reqs=$(echo "$out" | awk '/requests in/{print $1}')
    p50=$(to_ms "$(echo "$out" | awk '$1=="50%"{print $2}')")
    p99=$(to_ms "$(echo "$out" | awk '$1=="99%"{print $2}')")
    local errs
    errs=$(echo "$out" | awk '/Non-2xx|Socket errors/{print}' | tr '\n' ' ')
    local hz; hz=$(getconf CLK_TCK)
    cpu_us=$(awk -v t=$((c1 - c0)) -v n="$reqs" -v hz="$hz" 'BEGIN{ if (n>0) printf "%.1f", t*1e6/hz/n; else print "-" }')
    ROWS+=("$name|$rps|$p50|$p99|$cpu_us|$errs")
}

AUTH_HG=(-H "Authorization: Bearer $KEY")
AUTH_SIM=(-H "Authorization: Bearer tok_test" -H "X-Workspace-Id: ws_test")
run hotgate_get_connections $HG_PID "http://127.0.0.1:$HG_PORT/v1/connections" "${AUTH_HG[@]}"
run sim_get_connections $SIM_PID "http://127.0.0.1:$SIM_PORT/v1/connections" "${AUTH_SIM[@]}"
run hotgate_post_query $HG_PID "http://127.0.0.1:$HG_PORT/v1/query" "${AUTH_HG[@]}" -s "$TMP/post.lua"
run sim_post_query $SIM_PID "http://127.0.0.1:$SIM_PORT/v1/query" "${AUTH_SIM[@]}" -s "$TMP/post.lua"

HITS=$(curl -s "http://127.0.0.1:$ADM_PORT/metrics" | awk '/^hotgate_cache_requests_total\{outcome="hit"\}/{print $2}')
{
    echo "# cache hits: wrk -t1 -c$CONNS -d$DURATION, hotgate threads=$HG_THREADS, $(nproc) cores, $(date -u +%FT%TZ)"
    echo
    echo "GET /v1/connections body: $SIZE bytes; POST /v1/query: $SQL; hotgate cache hits counted: ${HITS:-?}"
    echo
    echo "| target | req/s | p50 ms | p99 ms | server CPU us/req | errors |"
    echo "|---|---:|---:|---:|---:|---|"
    for r in "${ROWS[@]}"; do IFS='|' read -r n a b c d e <<<"$r"; echo "| $n | $a | $b | $c | $d | ${e:-} |"; done
} | tee "$OUT/cache_hits.md"
{
    echo "target,rps,p50_ms,p99_ms,cpu_us_per_req"
    for r in "${ROWS[@]}"; do IFS='|' read -r n a b c d e <<<"$r"; echo "$n,$a,$b,$c,$d"; done
} >"$OUT/cache_hits.csv"
