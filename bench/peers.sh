#!/usr/bin/env bash
# bench/peers.sh: hotgate's cache-hit path against its peers, in one run, with the same wrk
# load (wrk -t1 -c64 -d5s --latency) and the same hotdata-sim upstream:
#   direct      hotdata-sim itself, no cache (every request runs upstream)
#   hotgate     LMDB cache, hits (threads = 1 and 2)
#   nginx       proxy_cache (worker_processes = 1 and 2), GET and POST (proxy_cache_methods
#               POST, key includes $request_body), upstream token set by nginx; twice: with
#               Debian's stock http settings (sendfile, tcp_nopush) and tuned for small cached
#               answers (open_file_cache, sendfile off), the reference of the ratio columns
#   varnish     malloc storage; POST /v1/query cached with vmod bodyaccess (Debian package
#               varnish-modules) when it loads, else GET only
#   ceiling     nginx `return 200 '<1 KB>'`: the most this wrk setup can drive on this box
# Two requests: GET /v1/connections (the simulator is seeded with connections until the list
# is ~1 KB) and POST /v1/query (a small SQL, ~400 B result).
# For each target: requests/s, p50, p99, and the server's CPU time per request (utime+stime
# from /proc/PID/stat before/after, summed over the server's process tree: nginx master +
# workers, varnish manager + child), the upstream requests the sim saw during the run (0 for
# a pure cache-hit run), and throughput / CPU ratios against nginx.
# Writes bench/out/peers.{md,csv} (and the raw wrk output as bench/out/peers_wrk_*.txt) and
# prints the table.
#   BUILD_DIR (default build), DURATION (5s), CONNS (64), WARMUP (1s), THREADS ("1 2"),
#   ROUNDS (1: every target is run this many times, interleaved; the table shows the round
#   with the median req/s and the CPU per request over all rounds),
#   VARNISH (auto|no: auto installs the Debian packages varnish + varnish-modules if missing
#   and running as root), NGINX (/usr/sbin/nginx)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD_DIR=${BUILD_DIR:-build}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
WARMUP=${WARMUP:-1s}
ROUNDS=${ROUNDS:-1}
THREADS=${THREADS:-1 2}
VARNISH=${VARNISH:-auto}
NGINX=${NGINX:-/usr/sbin/nginx}
OUT=bench/out
mkdir -p "$OUT"
HG=$BUILD_DIR/hotgate
SIM=$BUILD_DIR/hotdata-sim
[ -x "$HG" ] && [ -x "$SIM" ] || { echo "build first: BUILD_DIR=$BUILD_DIR ./scripts/build.sh" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 1; }

# bench-only dependencies: installed here, not by scripts/install-deps.sh
apt_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
    echo "installing $* (bench-only dependency) ..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 ||
        { apt-get update >/dev/null 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1; }
}
[ -x "$NGINX" ] || apt_install nginx-light || true
[ -x "$NGINX" ] || { echo "nginx not installed ($NGINX)" >&2; exit 1; }
VARNISHD=""
if [ "$VARNISH" != no ]; then
    command -v varnishd >/dev/null || [ -x /usr/sbin/varnishd ] || apt_install varnish varnish-modules || true
    # the vmod is a separate package; fetch it too when varnish is there without it
    if command -v dpkg >/dev/null && dpkg -s varnish >/dev/null 2>&1 && ! dpkg -s varnish-modules >/dev/null 2>&1; then
        apt_install varnish-modules || true
    fi
    VARNISHD=$(command -v varnishd || { [ -x /usr/sbin/varnishd ] && echo /usr/sbin/varnishd; } || true)
    [ -n "$VARNISHD" ] || echo "varnish not available: its rows are left out" >&2
fi

TMP=$(mktemp -d /tmp/hg-bench-peers-XXXXXX)
chmod 755 "$TMP" # nginx workers (nobody) and varnish (varnish/vcache) run unprivileged under it
PIDS=()
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
cleanup() {
    local p all=()
    # the servers' own children too (nginx workers, varnish's cache process), in case a
    # master has to be killed hard and leaves them behind
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && all+=($(tree_pids "$p")); done
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
        local any=0
        for p in "${all[@]:-}"; do [ -n "$p" ] && alive "$p" && any=1; done
        [ $any = 0 ] && break
        sleep 0.1
    done
    for p in "${all[@]:-}"; do [ -n "$p" ] && alive "$p" && kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sim_requests() { # /v1 requests the simulator has answered (its control plane not counted)
    curl -s "http://127.0.0.1:$SIM_PORT/_sim/stats" |
        python3 -c 'import json,sys; print(sum(v for k, v in json.load(sys.stdin)["routes"].items() if " /v1/" in k))'
}
HZ=$(getconf CLK_TCK)

# ---- upstream: hotdata-sim, seeded so that GET /v1/connections is ~1 KB ----------------
SIM_PORT=$(free_port)
"$SIM" --listen 127.0.0.1:$SIM_PORT --token tok_test=ws_test --workspace ws_test \
    --data-dir "$TMP/sim" --quiet >"$TMP/sim.log" 2>&1 &
SIM_PID=$!; PIDS+=($SIM_PID)
wait_port $SIM_PORT || { echo "sim did not start" >&2; cat "$TMP/sim.log" >&2; exit 1; }
SIM_AUTH=(-H "Authorization: Bearer tok_test" -H "X-Workspace-Id: ws_test")
for i in $(seq -w 1 40); do
    n=$(curl -s "${SIM_AUTH[@]}" "http://127.0.0.1:$SIM_PORT/v1/connections" | wc -c)
    [ "$n" -ge 1000 ] && break
    curl -s -o /dev/null "${SIM_AUTH[@]}" -H 'Content-Type: application/json' \
        -d "{\"name\":\"warehouse_replica_$i\",\"source_type\":\"postgres\",\"skip_discovery\":true,\"config\":{\"host\":\"db$i.internal\",\"port\":5432,\"user\":\"reader\",\"database\":\"analytics\"}}" \
        "http://127.0.0.1:$SIM_PORT/v1/connections"
done
GET_SIZE=$(curl -s "${SIM_AUTH[@]}" "http://127.0.0.1:$SIM_PORT/v1/connections" | wc -c)

SQL='SELECT id, customer_id, status FROM demo.public.orders ORDER BY id LIMIT 10'
BODY="{\"sql\":\"$SQL\"}"
cat >"$TMP/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
LUA
POST_SIZE=$(curl -s "${SIM_AUTH[@]}" -H 'Content-Type: application/json' -d "$BODY" "http://127.0.0.1:$SIM_PORT/v1/query" | wc -c)

# ---- hotgate, one instance per threads setting ------------------------------------------
KEY=hgk_bench_peers_0123456789abcdef
KEY_SHA=$(printf %s "$KEY" | "$HG" --hash-key)
printf 'tok_test\n' >"$TMP/token"; chmod 600 "$TMP/token"
declare -A HG_PORT HG_PID
for t in $THREADS; do
    HG_PORT[$t]=$(free_port)
    cat >"$TMP/hotgate-$t.conf" <<CONF
[server]
listen = 127.0.0.1:${HG_PORT[$t]}
threads = $t
access_log = off
log_level = warn
[upstream]
url = http://127.0.0.1:$SIM_PORT
http2 = no
[cache]
enabled = yes
dir = $TMP/hg-cache-$t
size = 256M
ttl_query = 1h
ttl_metadata = 1h
[credential main]
token_file = $TMP/token
[client bench]
key_sha256 = $KEY_SHA
credential = main
workspaces = ws_test
default_workspace = ws_test
mode = full
CONF
    "$HG" --config "$TMP/hotgate-$t.conf" >"$TMP/hotgate-$t.log" 2>&1 &
    HG_PID[$t]=$!; PIDS+=(${HG_PID[$t]})
    wait_port ${HG_PORT[$t]} || { echo "hotgate (threads=$t) did not start" >&2; cat "$TMP/hotgate-$t.log" >&2; exit 1; }
done

# ---- nginx: proxy_cache + the fixed-reply ceiling, one instance per worker count --------
NGX_USER=""
[ "$(id -u)" = 0 ] && NGX_USER="user nobody $(id -gn nobody 2>/dev/null || echo nogroup);"
FIXED=$(head -c 1024 /dev/zero | tr '\0' 'x')
declare -A NGX_PORT NGXT_PORT CEIL_PORT NGX_PID
for w in $THREADS; do
    NGX_PORT[$w]=$(free_port); NGXT_PORT[$w]=$(free_port); CEIL_PORT[$w]=$(free_port)
    d=$TMP/nginx-$w
    mkdir -p "$d/cache" "$d/cache-tuned" "$d/tmp" "$d/logs"
    cat >"$d/nginx.conf" <<CONF
$NGX_USER
worker_processes $w;
daemon off;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_timeout 65;
    keepalive_requests 1000000;   # as hotgate and varnish: no forced reconnects under wrk
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    client_body_buffer_size 64k;  # keep POST bodies in memory: \$request_body is in the key
    proxy_cache_path $d/cache levels=1:2 keys_zone=hg:10m max_size=256m inactive=2h use_temp_path=off;
    proxy_cache_path $d/cache-tuned levels=1:2 keys_zone=hgt:10m max_size=256m inactive=2h use_temp_path=off;
    upstream sim { server 127.0.0.1:$SIM_PORT; keepalive 64; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Authorization "Bearer tok_test";
    proxy_set_header X-Workspace-Id ws_test;
    proxy_cache_methods GET HEAD POST;
    proxy_cache_key "\$request_method|\$request_uri|\$request_body";
    proxy_cache_valid 200 1h;   # no entry expires during a long (ROUNDS>1) run
    proxy_cache_lock on;
    add_header X-Cache \$upstream_cache_status;
    server {   # "nginx": Debian's stock nginx.conf http settings
        listen 127.0.0.1:${NGX_PORT[$w]};
        sendfile on;
        tcp_nopush on;
        location / { proxy_pass http://sim; proxy_cache hg; }
    }
    server {   # "nginx_tuned": cache file descriptors kept open, small bodies read + writev
        listen 127.0.0.1:${NGXT_PORT[$w]};
        sendfile off;
        open_file_cache max=10000 inactive=60s;
        open_file_cache_valid 60s;
        location / { proxy_pass http://sim; proxy_cache hgt; }
    }
    server {
        listen 127.0.0.1:${CEIL_PORT[$w]};
        default_type application/json;
        location / { return 200 '$FIXED'; }
    }
}
CONF
    [ -n "$NGX_USER" ] && chown -R nobody "$d"
    "$NGINX" -p "$d/" -c "$d/nginx.conf" -e "$d/logs/error.log" >"$d/logs/stdout.log" 2>&1 &
    NGX_PID[$w]=$!; PIDS+=(${NGX_PID[$w]})
    wait_port ${NGX_PORT[$w]} && wait_port ${NGXT_PORT[$w]} && wait_port ${CEIL_PORT[$w]} ||
        { echo "nginx (workers=$w) did not start" >&2; cat "$d/logs/"* >&2; exit 1; }
done

# ---- varnish ---------------------------------------------------------------------------
VARNISH_POST=no
VARNISH_NOTE=""
if [ -n "$VARNISHD" ]; then
    VAR_PORT=$(free_port)
    mkdir -p "$TMP/varnish"
    vcl_common() { # $1: yes = hash and forward POST bodies (vmod bodyaccess)
        local post=$1
        echo 'vcl 4.1;'
        echo 'import std;'
        [ "$post" = yes ] && echo 'import bodyaccess;'
        cat <<VCL
backend sim { .host = "127.0.0.1"; .port = "$SIM_PORT"; }
sub vcl_recv {
    unset req.http.X-Body-Len;
    unset req.http.X-Method;
VCL
        [ "$post" = yes ] && cat <<'VCL'
    if (req.method == "POST" && req.url ~ "^/v1/query") {
        if (std.cache_req_body(64KB)) {
            set req.http.X-Body-Len = bodyaccess.len_req_body();
            set req.http.X-Method = "POST";
            return (hash);
        }
        return (pass);
    }
VCL
        cat <<'VCL'
    if (req.method != "GET" && req.method != "HEAD") { return (pass); }
    return (hash);   # the builtin VCL would pass requests carrying Authorization
}
sub vcl_hash {
    hash_data(req.url);
VCL
        [ "$post" = yes ] && echo '    if (req.http.X-Body-Len) { bodyaccess.hash_req_body(); }'
        cat <<'VCL'
    return (lookup);
}
sub vcl_backend_fetch {
    set bereq.http.Authorization = "Bearer tok_test";
    set bereq.http.X-Workspace-Id = "ws_test";
    if (bereq.http.X-Method == "POST") { set bereq.method = "POST"; }
    unset bereq.http.X-Method;
    unset bereq.http.X-Body-Len;
}
sub vcl_backend_response {
    if (beresp.status == 200) { set beresp.ttl = 1h; set beresp.grace = 10s; }
}
sub vcl_deliver {
    if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; }
}
VCL
    }
    vcl_common yes >"$TMP/varnish/post.vcl"
    vcl_common no >"$TMP/varnish/get.vcl"
    chmod 644 "$TMP/varnish/"*.vcl
    VCL=$TMP/varnish/post.vcl
    if "$VARNISHD" -C -n "$TMP/varnish/check" -f "$VCL" >"$TMP/varnish/check.log" 2>&1; then
        VARNISH_POST=yes
    else
        VCL=$TMP/varnish/get.vcl
        VARNISH_NOTE="varnish: vmod bodyaccess not available (Debian package varnish-modules), so POST /v1/query is not cached by varnish and its POST row is left out"
    fi
    "$VARNISHD" -F -n "$TMP/varnish/work" -a 127.0.0.1:$VAR_PORT -f "$VCL" -s malloc,256m \
        -T none >"$TMP/varnish/varnishd.log" 2>&1 &
    VAR_PID=$!; PIDS+=($VAR_PID)
    if ! wait_port $VAR_PORT; then
        echo "varnish did not start; its rows are left out" >&2; cat "$TMP/varnish/varnishd.log" >&2
        VARNISHD=""; VARNISH_NOTE="varnish: did not start on this machine (see its log)"
    fi
fi

# ---- warm every cache and check that it answers hits -------------------------------------
hdr_of() { # url curl-args... -> "X-Cache value|bytes on the wire (head+body)"
    local url=$1; shift
    curl -s -D "$TMP/h" -o "$TMP/b" -w '%{size_header} %{size_download}\n' "$@" "$url" >"$TMP/sz"
    local xc; xc=$(tr -d '\r' <"$TMP/h" | awk -F': *' 'tolower($1)=="x-cache"{print toupper($2)}')
    echo "${xc:-none}|$(awk '{print $1+$2}' "$TMP/sz")"
}
POST_ARGS=(-H 'Content-Type: application/json' --data-binary "$BODY")
CLIENT_AUTH=(-H "Authorization: Bearer $KEY")
declare -A WIRE
check_hit() { # label url curl-args...
    local label=$1 url=$2; shift 2
    local r
    for _ in 1 2 3; do r=$(hdr_of "$url" "$@"); [ "${r%%|*}" = HIT ] && break; sleep 0.2; done
    [ "${r%%|*}" = HIT ] || { echo "$label: warm-up did not produce a hit (X-Cache: ${r%%|*})" >&2; exit 1; }
    WIRE[$label]=${r##*|}
}
for t in $THREADS; do
    check_hit "hotgate_t${t}_get" "http://127.0.0.1:${HG_PORT[$t]}/v1/connections" "${CLIENT_AUTH[@]}"
    check_hit "hotgate_t${t}_post" "http://127.0.0.1:${HG_PORT[$t]}/v1/query" "${CLIENT_AUTH[@]}" "${POST_ARGS[@]}"
    check_hit "nginx_w${t}_get" "http://127.0.0.1:${NGX_PORT[$t]}/v1/connections" "${CLIENT_AUTH[@]}"
    check_hit "nginx_w${t}_post" "http://127.0.0.1:${NGX_PORT[$t]}/v1/query" "${CLIENT_AUTH[@]}" "${POST_ARGS[@]}"
    check_hit "nginxtuned_w${t}_get" "http://127.0.0.1:${NGXT_PORT[$t]}/v1/connections" "${CLIENT_AUTH[@]}"
    check_hit "nginxtuned_w${t}_post" "http://127.0.0.1:${NGXT_PORT[$t]}/v1/query" "${CLIENT_AUTH[@]}" "${POST_ARGS[@]}"
    WIRE[ceiling_w${t}_get]=$(hdr_of "http://127.0.0.1:${CEIL_PORT[$t]}/v1/connections" "${CLIENT_AUTH[@]}"); WIRE[ceiling_w${t}_get]=${WIRE[ceiling_w${t}_get]##*|}
    WIRE[ceiling_w${t}_post]=${WIRE[ceiling_w${t}_get]}
done
if [ -n "$VARNISHD" ]; then
    check_hit varnish_get "http://127.0.0.1:$VAR_PORT/v1/connections" "${CLIENT_AUTH[@]}"
    [ $VARNISH_POST = yes ] && check_hit varnish_post "http://127.0.0.1:$VAR_PORT/v1/query" "${CLIENT_AUTH[@]}" "${POST_ARGS[@]}"
fi
r=$(hdr_of "http://127.0.0.1:$SIM_PORT/v1/connections" "${SIM_AUTH[@]}"); WIRE[direct_get]=${r##*|}
r=$(hdr_of "http://127.0.0.1:$SIM_PORT/v1/query" "${SIM_AUTH[@]}" "${POST_ARGS[@]}"); WIRE[direct_post]=${r##*|}

# ---- the runs ----------------------------------------------------------------------------
to_us() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us$/,"",v); printf "%.0f", v} else if (v ~ /ms$/) {sub(/ms$/,"",v); printf "%.0f", v*1000} else if (v ~ /s$/) {sub(/s$/,"",v); printf "%.0f", v*1000000} else print v }'; }
declare -A RPS P50 P99 CPU UP ERR TICKS REQS SAMPLES
run() { # label pid url wrk-args...   (one round; results accumulate over ROUNDS)
    local label=$1 pid=$2 url=$3; shift 3
    wrk -t1 -c"$CONNS" -d"$WARMUP" "$@" "$url" >/dev/null 2>&1 || true
    local c0 c1 u0 u1 out reqs rps p50 p99 errs
    u0=$(sim_requests); c0=$(cpu_ticks "$pid")
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$@" "$url")
    c1=$(cpu_ticks "$pid"); u1=$(sim_requests)
    echo "$out" >>"$OUT/peers_wrk_${label}.txt"
    rps=$(echo "$out" | awk '/Requests\/sec/{printf "%.0f", $2}')
    reqs=$(echo "$out" | awk '/requests in/{print $1}')
    p50=$(to_us "$(echo "$out" | awk '$1=="50%"{print $2}')")
    p99=$(to_us "$(echo "$out" | awk '$1=="99%"{print $2}')")
    errs=$(echo "$out" | awk '/Non-2xx|Socket errors/{sub(/^ +/,""); printf "%s; ", $0}')
    TICKS[$label]=$(( ${TICKS[$label]:-0} + c1 - c0 ))
    REQS[$label]=$(( ${REQS[$label]:-0} + reqs ))
    UP[$label]=$(( ${UP[$label]:-0} + u1 - u0 ))
    ERR[$label]="${ERR[$label]:-}$errs"
    SAMPLES[$label]="${SAMPLES[$label]:-}$rps $p50 $p99
"
    # the round with the median req/s gives the figures; CPU is over every round
    read -r RPS[$label] P50[$label] P99[$label] < <(printf '%s' "${SAMPLES[$label]}" | sort -n -k1,1 |
        awk '{l[NR]=$0} END{print l[int((NR+1)/2)]}')
    CPU[$label]=$(awk -v t="${TICKS[$label]}" -v n="${REQS[$label]}" -v hz="$HZ" 'BEGIN{ if (n>0) printf "%.1f", t*1e6/hz/n; else print "-" }')
    printf '  %-18s %8s req/s  p50 %6s us  p99 %6s us  cpu %6.1f us/req\n' "$label" "$rps" "$p50" "$p99" \
        "$(awk -v t=$((c1 - c0)) -v n="$reqs" -v hz="$HZ" 'BEGIN{ print (n>0) ? t*1e6/hz/n : 0 }')" >&2
}
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "peers bench: wrk -t1 -c$CONNS -d$DURATION (warm-up $WARMUP each), load average $LOAD0" >&2
rm -f "$OUT"/peers_wrk_*.txt
for round in $(seq 1 "$ROUNDS"); do
for kind in get post; do
    if [ $kind = get ]; then path=/v1/connections; extra=(); else path=/v1/query; extra=(-s "$TMP/post.lua"); fi
    echo "$kind $path (round $round/$ROUNDS)" >&2
    run direct_$kind $SIM_PID "http://127.0.0.1:$SIM_PORT$path" "${SIM_AUTH[@]}" "${extra[@]}"
    # hotgate and nginx with the same thread/worker count back to back, so that load from
    # elsewhere on the box hits both alike
    for t in $THREADS; do
        run hotgate_t${t}_$kind ${HG_PID[$t]} "http://127.0.0.1:${HG_PORT[$t]}$path" "${CLIENT_AUTH[@]}" "${extra[@]}"
        run nginx_w${t}_$kind ${NGX_PID[$t]} "http://127.0.0.1:${NGX_PORT[$t]}$path" "${CLIENT_AUTH[@]}" "${extra[@]}"
        run nginxtuned_w${t}_$kind ${NGX_PID[$t]} "http://127.0.0.1:${NGXT_PORT[$t]}$path" "${CLIENT_AUTH[@]}" "${extra[@]}"
    done
    if [ -n "$VARNISHD" ] && { [ $kind = get ] || [ $VARNISH_POST = yes ]; }; then
        run varnish_$kind $VAR_PID "http://127.0.0.1:$VAR_PORT$path" "${CLIENT_AUTH[@]}" "${extra[@]}"
    fi
    for t in $THREADS; do
        run ceiling_w${t}_$kind ${NGX_PID[$t]} "http://127.0.0.1:${CEIL_PORT[$t]}$path" "${CLIENT_AUTH[@]}" "${extra[@]}"
    done
done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- table -------------------------------------------------------------------------------
best_of() { # prefix kind -> label with the highest req/s
    local best="" t
    for t in $THREADS; do
        local l=${1}${t}_$2
        [ -n "${RPS[$l]:-}" ] || continue
        if [ -z "$best" ] || [ "${RPS[$l]}" -gt "${RPS[$best]}" ]; then best=$l; fi
    done
    echo "$best"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0>0 && a!="-") printf "%.2f", a/b; else print "-" }'; }
CSV="target,request,workers,rps,p50_us,p99_us,cpu_us_per_req,rps_vs_nginx,cpu_vs_nginx,upstream_requests,bytes_per_response,errors"
{
    echo "# cache-hit path vs peers: wrk -t1 -c$CONNS -d$DURATION --latency, $ROUNDS round(s), $(nproc) cores, $(date -u +%FT%TZ)"
    echo
    echo "hotgate tree $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- src 2>/dev/null || echo "+dirty src"), binary $HG built $(date -u -r "$HG" +%FT%TZ), $("$NGINX" -v 2>&1 | sed 's/.*: //')$( [ -n "$VARNISHD" ] && echo ", $("$VARNISHD" -V 2>&1 | head -1 | sed 's/^varnishd (\(varnish-[0-9.]*\).*/\1/')"). Load average before/after: $LOAD0 / $LOAD1."
    echo
    for kind in get post; do
        if [ $kind = get ]; then
            echo "## GET /v1/connections ($GET_SIZE B body)"
        else
            echo "## POST /v1/query ($POST_SIZE B body; $SQL)"
        fi
        echo
        echo "| target | workers | req/s | p50 µs | p99 µs | server CPU µs/req | req/s vs nginx_tuned | CPU vs nginx_tuned | upstream req during run | bytes/resp | errors |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        nbest=$(best_of nginxtuned_w $kind)
        sbest=$(best_of nginx_w $kind)
        rows=(direct_$kind)
        for t in $THREADS; do rows+=(hotgate_t${t}_$kind nginx_w${t}_$kind nginxtuned_w${t}_$kind); done
        rows+=(varnish_$kind)
        for t in $THREADS; do rows+=(ceiling_w${t}_$kind); done
        for l in "${rows[@]}"; do
            [ -n "${RPS[$l]:-}" ] || continue
            local_w=-; ref=$nbest
            case $l in
                hotgate_t*) local_w=${l#hotgate_t}; local_w=${local_w%%_*}; ref=nginxtuned_w${local_w}_$kind ;;
                nginx_w*|nginxtuned_w*|ceiling_w*) local_w=${l#*_w}; local_w=${local_w%%_*}; ref=nginxtuned_w${local_w}_$kind ;;
                direct_*) local_w=1 ;;
                varnish_*) local_w="2 pools" ;;
            esac
            rr=$(ratio "${RPS[$l]}" "${RPS[$ref]:-0}")
            cr=$(ratio "${CPU[$l]}" "${CPU[$ref]:-0}")
            name=${l%_$kind}
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$local_w" \
                "${RPS[$l]}" "${P50[$l]}" "${P99[$l]}" "${CPU[$l]}" "$rr" "$cr" "${UP[$l]}" \
                "${WIRE[$l]:--}" "${ERR[$l]:-}"
            echo "$name,$kind,$local_w,${RPS[$l]},${P50[$l]},${P99[$l]},${CPU[$l]},$rr,$cr,${UP[$l]},${WIRE[$l]:-},${ERR[$l]:-}" >>"$TMP/csv"
        done
        hbest=$(best_of hotgate_t $kind)
        if [ -n "$hbest" ] && [ -n "$nbest" ] && [ -n "$sbest" ]; then
            echo
            echo "best hotgate (${hbest%_$kind}) / best tuned nginx (${nbest%_$kind}): throughput $(ratio "${RPS[$hbest]}" "${RPS[$nbest]}"), CPU per request $(ratio "${CPU[$hbest]}" "${CPU[$nbest]}"); / best stock nginx (${sbest%_$kind}): throughput $(ratio "${RPS[$hbest]}" "${RPS[$sbest]}"), CPU per request $(ratio "${CPU[$hbest]}" "${CPU[$sbest]}")."
        fi
        echo
    done
    echo "Notes:"
    echo "- ratios: against nginx_tuned (the stronger nginx setup) with the same worker count; direct and varnish against the best nginx_tuned row."
    [ "$ROUNDS" -gt 1 ] && echo "- $ROUNDS rounds, interleaved: req/s, p50 and p99 are from the round with the median req/s; CPU per request and upstream requests are over all rounds."
    echo "- server CPU: utime+stime of the server's process tree (all threads) over the measured run, divided by the requests wrk completed; clock-tick (1/$HZ s) resolution."
    echo "- hotgate authenticates the client key (SHA-256 + constant-time compare) on every request; nginx and varnish are configured without client auth (they only set the upstream token)."
    echo "- nginx: proxy_cache on disk files (page cache), key \"\$request_method|\$request_uri|\$request_body\", keepalive_requests raised so wrk never reconnects. \"nginx\" has Debian's stock http settings (sendfile on, tcp_nopush on: open+fstat+pread+writev+sendfile+close and two setsockopt per hit); \"nginx_tuned\" keeps cache files open (open_file_cache) and writes small bodies with writev (sendfile off): recv+pread+writev per hit."
    echo "- varnish: default thread pools (2), -s malloc,256m."
    echo "- upstream req during run: what the sim counted while wrk ran (0 = every request was a cache hit)."
    echo "- the box has $(nproc) cores shared by wrk, the server under test and anything else running: compare ratios within one run, not absolute numbers across runs; CPU per request is steadier than req/s under outside load."
    [ -n "$VARNISH_NOTE" ] && echo "- $VARNISH_NOTE."
    [ -z "$VARNISHD" ] && [ -z "$VARNISH_NOTE" ] && echo "- varnish: not installed (VARNISH=$VARNISH), its rows are left out."
    true
} >"$OUT/peers.md"
{ echo "$CSV"; cat "$TMP/csv"; } >"$OUT/peers.csv"
cat "$OUT/peers.md"
