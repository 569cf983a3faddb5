#!/usr/bin/env bash
# bench/passthrough.sh: what hotgate costs on the pass-through path (cache off), against
# hotdata-sim directly and against reference proxies in one run: nginx as a plain reverse
# proxy (proxy_pass, HTTP/1.1 keep-alive upstream pool, no cache), HAProxy in mode http
# (http-reuse always: a keep-alive server pool) and HAProxy in mode tcp (a pure L4
# forwarder: the floor of what any proxy can cost, so the ceiling any proxy can reach).
# Two requests: GET /v1/connections and a small POST /v1/query (lua script). For each:
# wrk -t1 -c64 -d5s --latency, straight to the simulator (upstream token), through hotgate
# (client key), nginx and HAProxy http (they set the upstream token themselves) and HAProxy
# tcp (wrk sends the upstream token: a TCP forwarder cannot inject it) -> requests/s, p50,
# p99, and the CPU each server spent per request (/proc/PID/stat utime+stime, nginx master +
# workers, HAProxy's one process with all its threads); then the throughput ratio to direct
# (target for hotgate >= 0.8) and the p50 latency each proxy adds (target <= 100 us).
# wrk, the proxy and the simulator share the box's CPUs, so a proxy's ratio is bounded by
# sim_cpu / (sim_cpu + proxy_cpu): the CPU column says why a ratio is what it is.
# Writes bench/out/passthrough.md (one row per scenario x server) and
# bench/out/passthrough.csv (long format: scenario,server,conns,rps,ratio,p50_us,
# added_p50_us,p99_us,cpu_us; "-" where a server is missing) and prints the table.
#   BUILD_DIR (default build), DURATION (5s), CONNS (64), HG_THREADS (1, also nginx's
#   worker_processes and HAProxy's nbthread), ACCESS_LOG (file|off, hotgate and nginx;
#   HAProxy logs nothing), NGINX (/usr/sbin/nginx), HAPROXY (/usr/sbin/haproxy); a missing
#   nginx or haproxy leaves its rows as "-"
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD_DIR=${BUILD_DIR:-build}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
HG_THREADS=${HG_THREADS:-1}
ACCESS_LOG=${ACCESS_LOG:-file}
NGINX=${NGINX:-/usr/sbin/nginx}
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
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
    echo "nginx not found ($NGINX): its rows are left empty" >&2
fi

# HAProxy, foreground (-db: no daemon, one process with nbthread threads, a child of this
# script, killed by the trap): mode tcp forwards bytes (wrk sends the upstream token);
# mode http reuses idle server connections across clients (http-reuse always) and sets the
# upstream token and workspace like nginx does. No log directive: no access log.
HAP_TCP_PID="" HAP_HTTP_PID=""
start_haproxy() { # mode port -> pid in HAP_PID
    local mode=$1 port=$2 d=$TMP/haproxy-$1 rules=""
    mkdir -p "$d"
    [ "$mode" = http ] && rules='    http-reuse always
    http-request set-header Authorization "Bearer tok_test"
    http-request set-header X-Workspace-Id ws_test'
    cat >"$d/haproxy.cfg" <<CONF
global
    nbthread $HG_THREADS
    maxconn 4096
defaults
    mode $mode
    timeout connect 5s
    timeout client 65s
    timeout server 65s
    timeout http-keep-alive 65s
frontend fe
    bind 127.0.0.1:$port
    default_backend sim
backend sim
$rules
    server sim 127.0.0.1:$SIM_PORT
CONF
    "$HAPROXY" -f "$d/haproxy.cfg" -db >"$d/haproxy.log" 2>&1 &
    HAP_PID=$!; PIDS+=($HAP_PID)
    wait_port "$port" || { echo "haproxy ($mode) did not start" >&2; cat "$d/haproxy.log" >&2; exit 1; }
}
if [ -x "$HAPROXY" ]; then
    HAP_TCP_PORT=$(free_port); start_haproxy tcp "$HAP_TCP_PORT"; HAP_TCP_PID=$HAP_PID
    HAP_HTTP_PORT=$(free_port); start_haproxy http "$HAP_HTTP_PORT"; HAP_HTTP_PID=$HAP_PID
else
    echo "haproxy not found ($HAPROXY): its rows are left empty" >&2
fi

cat >"$TMP/query.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"sql":"SELECT 1 AS one"}'
wrk.headers["Content-Type"] = "application/json"
LUA

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

echo 'scenario,server,conns,rps,ratio,p50_us,added_p50_us,p99_us,cpu_us' >"$OUT/passthrough.csv"
{
    echo "| scenario | server | req/s | / direct | p50 | p50 added | p99 | CPU µs/req |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
} >"$OUT/passthrough.md"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a != "" && a != "-" && b+0 > 0) printf "%.2f", a/b; else print "-" }'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a != "" && a != "-" && b != "" && b != "-") printf "%.0f", a-b; else print "-" }'; }
int() { awk -v a="$1" 'BEGIN{ if (a != "" && a != "-") printf "%.0f", a; else print "-" }'; }
met() { # value op target -> met|missed|-
    awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN{ if (v == "" || v == "-") print "-";
        else if ((op == ">=" && v+0 >= t+0) || (op == "<=" && v+0 <= t+0)) print "met"; else print "missed" }'
}
SIM_AUTH=("Authorization: Bearer tok_test" "X-Workspace-Id: ws_test")
SERVERS=(direct hotgate nginx haproxy-http haproxy-tcp)
declare -A NAME=([direct]="direct (sim)" [hotgate]=hotgate [nginx]=nginx
    [haproxy-http]="HAProxy http" [haproxy-tcp]="HAProxy tcp (L4)")
VERDICT=()
# the c=1 run isolates the latency a proxy adds from queueing behind 64 connections
for sc in connections query latency; do
    CONNS_NOW=$CONNS
    case $sc in
    connections) path=/v1/connections; script="" ;;
    query) path=/v1/query; script=$TMP/query.lua ;;
    latency) path=/v1/connections; script=""; CONNS_NOW=1 ;;
    esac
    label="$( [ $sc = query ] && echo POST || echo GET ) $path (c=$CONNS_NOW)"
    # warm every path (connection pools, SQLite caches)
    run "http://127.0.0.1:$SIM_PORT$path" "$script" "${SIM_AUTH[@]}" >/dev/null 2>&1 || true
    declare -A R=() A=()
    for srv in "${SERVERS[@]}"; do
        port="" pid="" hdrs=("Authorization: Bearer $KEY") # nginx, HAProxy http: they set the token
        case $srv in
        direct) port=$SIM_PORT pid=$SIM_PID hdrs=("${SIM_AUTH[@]}") ;;
        hotgate) port=$HG_PORT pid=$HG_PID ;;
        nginx) [ -n "$NGX_PID" ] && port=${NGX_PORT:-} pid=$NGX_PID ;;
        haproxy-http) [ -n "$HAP_HTTP_PID" ] && port=${HAP_HTTP_PORT:-} pid=$HAP_HTTP_PID ;;
        haproxy-tcp) [ -n "$HAP_TCP_PID" ] && port=${HAP_TCP_PORT:-} pid=$HAP_TCP_PID
            hdrs=("${SIM_AUTH[@]}") ;; # L4: the client must carry the upstream token
        esac
        rps=- p50=- p99=- cpu=-
        if [ -n "$pid" ]; then
            CPU_PID=$pid
            read -r rps p50 p99 cpu _ < <(run "http://127.0.0.1:$port$path" "$script" "${hdrs[@]}")
        fi
        if [ "$srv" = direct ]; then d_rps=$rps d_p50=$p50; fi
        r=$(ratio "$rps" "$d_rps"); a=$(minus "$p50" "$d_p50")
        R[$srv]=$r A[$srv]=$a
        echo "$sc,$srv,$CONNS_NOW,$rps,$r,$p50,$a,$p99,$cpu" >>"$OUT/passthrough.csv"
        case $a in -) a_md=- ;; -*) a_md="$a us" ;; *) a_md="+$a us" ;; esac
        r_md=$r
        if [ "$srv" = direct ]; then a_md="" r_md="1.00"; fi
        p50_md="$(int "$p50") us" p99_md="$(int "$p99") us"
        [ "$p50" = - ] && p50_md=-; [ "$p99" = - ] && p99_md=-
        printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "${NAME[$srv]}" \
            "$(int "$rps")" "$r_md" "$p50_md" "$a_md" "$p99_md" "$cpu" >>"$OUT/passthrough.md"
    done
    # under load (c=64) the throughput target; with one connection the added-latency one
    if [ "$CONNS_NOW" = 1 ]; then
        v="hotgate added p50 ${A[hotgate]} us (target <= 100 us: $(met "${A[hotgate]}" '<=' 100)); nginx ${A[nginx]}, HAProxy http ${A[haproxy-http]}, HAProxy tcp ${A[haproxy-tcp]} us (the floor)"
    else
        v="hotgate/direct ${R[hotgate]} (target >= 0.8: $(met "${R[hotgate]}" '>=' 0.8)); nginx ${R[nginx]}, HAProxy http ${R[haproxy-http]}, HAProxy tcp ${R[haproxy-tcp]} (the ceiling); hotgate/ceiling $(ratio "${R[hotgate]}" "${R[haproxy-tcp]}")"
    fi
    VERDICT+=("- $label: $v")
    unset R A
done
{
    echo
    echo "Targets for hotgate: throughput hotgate/direct >= 0.8 (c=$CONNS runs), added p50 over direct <= 100 us (c=1 run)."
    printf '%s\n' "${VERDICT[@]}"
    echo
    echo "HAProxy mode tcp only forwards bytes (no HTTP parsing; wrk sends the upstream token itself):"
    echo "its req/s / direct is the ceiling of any proxy on this box, and its CPU µs/req the floor any proxy costs"
    echo "(one ${DURATION} sample per cell on a shared box: where the simulator is the bottleneck, as for the POST,"
    echo "noise can put another proxy above it)."
    echo "HAProxy http: mode http, http-reuse always, sets Authorization and X-Workspace-Id like nginx."
    echo
    echo "$(date -u +%FT%TZ), wrk -t1 -d$DURATION (-c as shown); hotgate threads=$HG_THREADS, nginx worker_processes=$HG_THREADS,"
    echo "HAProxy nbthread=$HG_THREADS; cache off; access log: hotgate and nginx $ACCESS_LOG, HAProxy none."
    echo "CPU µs/req: the server's utime+stime over the run / requests (direct: the simulator's)."
    echo "$(nproc) CPU(s) shared by wrk, the proxy and the simulator, so a proxy's ratio is bounded by"
    echo "sim_cpu / (sim_cpu + proxy_cpu) once the CPUs are saturated."
} >>"$OUT/passthrough.md"
cat "$OUT/passthrough.md"
