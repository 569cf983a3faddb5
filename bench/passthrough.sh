#!/usr/bin/env bash
# bench/passthrough.sh: what hotgate costs on the pass-through path (cache off), against
# hotdata-sim directly and against nginx as a plain reverse proxy (proxy_pass, HTTP/1.1
# keep-alive upstream pool, no cache), in one run. Two requests: GET /v1/connections and a
# small POST /v1/query (lua script). For each: wrk -t1 -c64 -d5s --latency, straight to the
# simulator (upstream token), through hotgate (client key) and through nginx -> requests/s,
# p50, p99, and the CPU each server spent per request (/proc/PID/stat utime+stime, nginx
# master + workers); then the throughput ratios (target for hotgate >= 0.8 of direct) and
# the p50 latency each proxy adds (target <= 100 us).
# wrk, the proxy and the simulator share the box's CPUs, so a proxy's ratio is bounded by
# sim_cpu / (sim_cpu + proxy_cpu): the CPU columns say why a ratio is what it is.
# Writes bench/out/passthrough.{md,csv} and prints the table.
#   BUILD_DIR (default build), DURATION (5s), CONNS (64), HG_THREADS (1, also nginx's
#   worker_processes), ACCESS_LOG (file|off, both proxies), NGINX (/usr/sbin/nginx; its
#   columns are left empty when it is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
HG_THREADS=${HG_THREADS:-1}
ACCESS_LOG=${ACCESS_LOG:-file}
NGINX=${NGINX:-/usr/sbin/nginx}
OUT=bench/out
mkdir -p "$OUT"
HG=$BUILD_DIR/hotgate
SIM=$BUILD_DIR/hotdata-sim
[ -x "$HG" ] && [ -x "$SIM" ] || { echo "build first: BUILD_DIR=$BUILD_DIR ./scripts/build.sh" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 1; }

TMP=$(mktemp -d /tmp/hg-bench-pass-XXXXXX)
chmod 755 "$TMP" # nginx workers run as nobody when started as root
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    sleep 0.3
    [ -n "${NGX_PID:-}" ] && pkill -9 -P "$NGX_PID" 2>/dev/null || true
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
SIM_PID=$!; PIDS+=($SIM_PID)
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
HG_PID=$!; PIDS+=($HG_PID)
wait_port $HG_PORT || { echo "hotgate did not start" >&2; cat "$TMP/hotgate.log" >&2; exit 1; }

# nginx as a plain reverse proxy: same worker count, keep-alive pool to the simulator,
# upstream token and workspace set by nginx (it does no client auth), access log like
# hotgate's (buffered file) or off
NGX_PID=""
if [ -x "$NGINX" ]; then
    NGX_PORT=$(free_port)
    d=$TMP/nginx
    mkdir -p "$d/tmp" "$d/logs"
    NGX_USER=""
    [ "$(id -u)" = 0 ] && NGX_USER="user nobody $(id -gn nobody 2>/dev/null || echo nogroup);"
    NGX_ALOG="access_log off;"
    [ "$ACCESS_LOG" = file ] && NGX_ALOG="access_log $d/logs/access.log combined buffer=64k flush=1s;"
    cat >"$d/nginx.conf" <<CONF
$NGX_USER
worker_processes $HG_THREADS;
daemon off;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 1024; }
http {
    $NGX_ALOG
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    upstream sim { server 127.0.0.1:$SIM_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer tok_test";
            proxy_set_header X-Workspace-Id ws_test;
        }
    }
}
CONF
    [ -n "$NGX_USER" ] && chown -R nobody "$d"
    "$NGINX" -p "$d/" -c "$d/nginx.conf" -e "$d/logs/error.log" >"$d/logs/stdout.log" 2>&1 &
    NGX_PID=$!; PIDS+=($NGX_PID)
    wait_port $NGX_PORT || { echo "nginx did not start" >&2; cat "$d/logs/"* >&2; exit 1; }
else
    echo "nginx not found ($NGINX): its columns are left empty" >&2
fi

cat >"$TMP/query.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"sql":"SELECT 1 AS one"}'
wrk.headers["Content-Type"] = "application/json"
LUA

tree_pids() { local p=$1 c; echo "$p"; for c in $(pgrep -P "$p" || true); do tree_pids "$c"; done; }
cpu_ticks() { # pid -> utime+stime of it and its children (nginx workers)
    local t=0 p
    for p in $(tree_pids "$1"); do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null || echo 0))); done
    echo $t
}
HZ=$(getconf CLK_TCK)
# wrk output -> "rps p50_us p99_us cpu_us_per_req(server) cpu_us_per_req(sim)"; the server
# is CPU_PID (the simulator itself for direct runs)
to_us() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); print v} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v*1000} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000000} else print v}'; }
run() { # name url script? headers...
    local url=$1 script=$2; shift 2
    local args=(-t1 -c"${CONNS_NOW:-$CONNS}" -d"$DURATION" --latency)
    [ -n "$script" ] && args+=(-s "$script")
    for h in "$@"; do args+=(-H "$h"); done
    local c0 s0 c1 s1
    c0=$(cpu_ticks "${CPU_PID:-$SIM_PID}"); s0=$(cpu_ticks $SIM_PID)
    local out; out=$(wrk "${args[@]}" "$url")
    c1=$(cpu_ticks "${CPU_PID:-$SIM_PID}"); s1=$(cpu_ticks $SIM_PID)
    local rps p50 p99 non2xx reqs cpu scpu
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    cpu=$(awk -v t=$((c1 - c0)) -v n="$reqs" -v hz="$HZ" 'BEGIN{ if (n>0) printf "%.1f", t*1e6/hz/n; else print "-" }')
    scpu=$(awk -v t=$((s1 - s0)) -v n="$reqs" -v hz="$HZ" 'BEGIN{ if (n>0) printf "%.1f", t*1e6/hz/n; else print "-" }')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}' | to_us)
    p99=$(echo "$out" | awk '$1=="99%" {print $2}' | to_us)
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    [ -n "$non2xx" ] && echo "warning: $non2xx non-2xx answers for $url" >&2
    echo "$rps $p50 $p99 $cpu $scpu"
}

printf 'scenario,direct_rps,hotgate_rps,nginx_rps,hotgate_ratio,nginx_ratio,hotgate_vs_nginx,direct_p50_us,hotgate_p50_us,nginx_p50_us,hotgate_added_p50_us,nginx_added_p50_us,direct_p99_us,hotgate_p99_us,nginx_p99_us,sim_cpu_us,hotgate_cpu_us,nginx_cpu_us\n' >"$OUT/passthrough.csv"
{
    echo "| scenario | direct req/s | hotgate req/s | nginx req/s | hotgate/direct | nginx/direct | hotgate/nginx | p50 direct | p50 added: hotgate | p50 added: nginx | p99 direct / hotgate / nginx | CPU µs/req: sim | hotgate | nginx |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
} >"$OUT/passthrough.md"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a != "" && a != "-" && b+0 > 0) printf "%.2f", a/b; else print "-" }'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a != "" && a != "-" && b != "") printf "%.0f", a-b; else print "-" }'; }
# the c=1 run isolates the latency a proxy adds from queueing behind 64 connections
for sc in connections query latency; do
    CONNS_NOW=$CONNS
    case $sc in
    connections) path=/v1/connections; script="" ;;
    query) path=/v1/query; script=$TMP/query.lua ;;
    latency) path=/v1/connections; script=""; CONNS_NOW=1 ;;
    esac
    SIM_AUTH=("Authorization: Bearer tok_test" "X-Workspace-Id: ws_test")
    # warm every path (connection pools, SQLite caches)
    run "http://127.0.0.1:$SIM_PORT$path" "$script" "${SIM_AUTH[@]}" >/dev/null 2>&1 || true
    CPU_PID=$SIM_PID
    read -r d_rps d_p50 d_p99 d_cpu _ < <(run "http://127.0.0.1:$SIM_PORT$path" "$script" "${SIM_AUTH[@]}")
    CPU_PID=$HG_PID
    read -r g_rps g_p50 g_p99 g_cpu g_scpu < <(run "http://127.0.0.1:$HG_PORT$path" "$script" "Authorization: Bearer $KEY")
    n_rps=- n_p50=- n_p99=- n_cpu=-
    if [ -n "$NGX_PID" ]; then
        CPU_PID=$NGX_PID
        read -r n_rps n_p50 n_p99 n_cpu _ < <(run "http://127.0.0.1:$NGX_PORT$path" "$script" "Authorization: Bearer $KEY")
    fi
    g_ratio=$(ratio "$g_rps" "$d_rps"); n_ratio=$(ratio "$n_rps" "$d_rps"); gn=$(ratio "$g_rps" "$n_rps")
    g_added=$(minus "$g_p50" "$d_p50"); n_added=$(minus "$n_p50" "$d_p50")
    echo "$sc,$d_rps,$g_rps,$n_rps,$g_ratio,$n_ratio,$gn,$d_p50,$g_p50,$n_p50,$g_added,$n_added,$d_p99,$g_p99,$n_p99,$d_cpu,$g_cpu,$n_cpu" >>"$OUT/passthrough.csv"
    printf '| %s %s (c=%s) | %s | %s | %s | %s | %s | %s | %s us | %s us | %s us | %s / %s / %s us | %s | %s | %s |\n' \
        "$( [ $sc = query ] && echo POST || echo GET )" "$path" "$CONNS_NOW" "$d_rps" "$g_rps" "$n_rps" \
        "$g_ratio" "$n_ratio" "$gn" "$d_p50" "$g_added" "$n_added" "$d_p99" "$g_p99" "$n_p99" \
        "$d_cpu" "$g_cpu" "$n_cpu" >>"$OUT/passthrough.md"
done
{
    echo
    echo "$(date -u +%FT%TZ), wrk -t1 -d$DURATION (-c as shown); hotgate threads=$HG_THREADS, nginx worker_processes=$HG_THREADS, cache off, access log $ACCESS_LOG on both;"
    echo "CPU µs/req: the server's utime+stime over the run / requests (sim: in the direct run)."
    echo "targets: hotgate/direct >= 0.8, added p50 <= 100 us. $(nproc) CPU(s) shared by wrk, the proxy and the simulator,"
    echo "so a proxy's ratio is bounded by sim_cpu / (sim_cpu + proxy_cpu) once the CPUs are saturated."
} >>"$OUT/passthrough.md"
cat "$OUT/passthrough.md"
