#!/usr/bin/env bash
# bench/sim.sh: hotdata-sim throughput and query latency, one binary against another
# (issue 14: the PostgreSQL engine must not slow GET /v1/connections down; POST /v1/query
# latency is reported). Usage: bench/sim.sh [BEFORE_BIN [AFTER_BIN]] (default: after =
# build/hotdata-sim, before = /work/bench-before/hotdata-sim). Runs A/B/A/B so the shared
# machine's load hits both alike; prints one line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
before=${1:-/work/bench-before/hotdata-sim}
after=${2:-build/hotdata-sim}
dur=${SIM_BENCH_SECONDS:-5}
work=$(mktemp -d /tmp/simbench-XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cat >"$work/auth.lua" <<'LUA'
wrk.headers["Authorization"] = "Bearer tok_test"
wrk.headers["X-Workspace-Id"] = "ws_test"
LUA
cat >"$work/query.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer tok_test"
wrk.headers["X-Workspace-Id"] = "ws_test"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"sql":"SELECT status, count(*) AS n FROM demo.public.orders WHERE customer_id < 50 GROUP BY status ORDER BY status"}'
LUA
run() { # name binary
    local name=$1 bin=$2 port
    port=$(free_port)
    rm -rf "$work/data"
    "$bin" --quiet --listen "127.0.0.1:$port" --token tok_test=ws_test --workspace ws_test \
        --data-dir "$work/data" >"$work/$name.log" 2>&1 &
    pid=$!
    wait_port "$port" 120
    local url="http://127.0.0.1:$port"
    wrk -t1 -c8 -d1s -s "$work/auth.lua" "$url/v1/connections" >/dev/null # warm-up
    local t0 t1 out rps q qrps lat
    t0=$(cpu_ticks "$pid")
    out=$(wrk -t1 -c64 -d"${dur}s" -s "$work/auth.lua" "$url/v1/connections")
    t1=$(cpu_ticks "$pid")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    local n; n=$(awk '/requests in/ {print $1}' <<<"$out")
    local us; us=$(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", t*1e6/hz/n}')
    q=$(wrk -t1 -c16 -d"${dur}s" -s "$work/query.lua" "$url/v1/query")
    qrps=$(awk '/Requests\/sec/ {print $2}' <<<"$q")
    lat=$(wrk -t1 -c1 -d"${dur}s" --latency -s "$work/query.lua" "$url/v1/query" |
        awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print p50, p99}')
    printf '%-7s connections %8s req/s (%s us CPU/req incl. children)  query c16 %7s req/s  query c1 p50/p99 %s\n' \
        "$name" "$rps" "$us" "$qrps" "$lat"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)  $(date -u '+%F %H:%M') UTC"
for i in 1 2; do
    run before "$before"
    run after "$after"
done
