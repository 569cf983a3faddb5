#!/usr/bin/env bash
# scripts/profile.sh: repeatable CPU cost of one request through hotgate, for a noisy shared
# box where wall-clock figures wander. Starts hotdata-sim and hotgate (threads=1), warms up,
# then measures hotgate alone over N sequential keep-alive requests made by a small client
# (CONNS connections, round robin, one request in flight per connection):
#   TOOL=callgrind  instructions per request (valgrind --tool=callgrind, counters zeroed
#                   after the warm-up; the profile is kept in $OUT_DIR/callgrind.<scenario>)
#   TOOL=strace     syscalls per request (strace -c -f attached after the warm-up)
#   TOOL=perf       where the time goes under load: perf record -e cpu-clock -g on hotgate
#                   during wrk -t1 -c64 -d5s (report in $OUT_DIR/perf.<scenario>.txt) and
#                   hotgate's CPU per request from /proc (user and system)
# SCENARIO=pass (GET /v1/connections, cache off) | hit (same request, cache on, served
# from the cache) | hitpost (POST /v1/query of bench/cache_hits.sh's SQL, cache on, served
# from the cache). Prints "scenario tool per_request" lines.
#   BUILD_DIR (build), N (2000), CONNS (4), ACCESS_LOG (file|off), HG_THREADS (1),
#   UPSTREAM_CLIENT (auto|curl|native: [upstream] client, default auto = native here)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD_DIR=${BUILD_DIR:-build}
N=${N:-2000}
CONNS=${CONNS:-4}
TOOL=${TOOL:-callgrind}
SCENARIO=${SCENARIO:-pass}
ACCESS_LOG=${ACCESS_LOG:-file}
OUT_DIR=${OUT_DIR:-bench/out/profile}
mkdir -p "$OUT_DIR"
HG=$BUILD_DIR/hotgate
SIM=$BUILD_DIR/hotdata-sim
[ -x "$HG" ] && [ -x "$SIM" ] || { echo "build first: BUILD_DIR=$BUILD_DIR ./scripts/build.sh" >&2; exit 1; }

TMP=$(mktemp -d /tmp/hg-profile-XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

SIM_PORT=$(free_port); HG_PORT=$(free_port)
"$SIM" --listen 127.0.0.1:$SIM_PORT --token tok_test=ws_test --workspace ws_test \
    --data-dir "$TMP/sim" --quiet >"$TMP/sim.log" 2>&1 &
PIDS+=($!)
wait_port $SIM_PORT || { echo "sim did not start" >&2; exit 1; }
# a ~1 KB connection list
for i in $(seq -w 1 8); do
    curl -s -o /dev/null -H "Authorization: Bearer tok_test" -H "X-Workspace-Id: ws_test" \
        -H 'Content-Type: application/json' \
        -d "{\"name\":\"bench_connection_$i\",\"source_type\":\"postgres\",\"config\":{},\"skip_discovery\":true}" \
        "http://127.0.0.1:$SIM_PORT/v1/connections"
done

KEY=hgk_bench_prof_0123456789abcdef
KEY_SHA=$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)
printf 'tok_test\n' >"$TMP/token"; chmod 600 "$TMP/token"
ALOG=off; [ "$ACCESS_LOG" = file ] && ALOG=$TMP/access.log
CACHE=no; case $SCENARIO in hit | hitpost) CACHE=yes ;; esac
cat >"$TMP/hotgate.conf" <<CONF
[server]
listen = 127.0.0.1:$HG_PORT
threads = ${HG_THREADS:-1}
access_log = $ALOG
log_level = warn
[upstream]
url = http://127.0.0.1:$SIM_PORT
http2 = no
max_connections_per_host = 128
client = ${UPSTREAM_CLIENT:-auto}
[cache]
enabled = $CACHE
dir = $TMP/cache
size = 64M
ttl_metadata = 3600s
ttl_query = 3600s
[credential main]
token_file = $TMP/token
[client bench]
key_sha256 = $KEY_SHA
credential = main
workspaces = ws_test
default_workspace = ws_test
mode = full
CONF

case $TOOL in
callgrind)
    valgrind --tool=callgrind --callgrind-out-file="$OUT_DIR/callgrind.$SCENARIO" \
        "$HG" --config "$TMP/hotgate.conf" >"$TMP/hotgate.log" 2>&1 &
    ;;
strace | perf)
    "$HG" --config "$TMP/hotgate.conf" >"$TMP/hotgate.log" 2>&1 &
    ;;
*) echo "TOOL=callgrind|strace|perf" >&2; exit 1 ;;
esac
HG_PID=$!; PIDS+=($HG_PID)
wait_port $HG_PORT || { echo "hotgate did not start" >&2; cat "$TMP/hotgate.log" >&2; exit 1; }

cat >"$TMP/client.py" <<'PY'
import socket, sys
port, n, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
req = ("GET /v1/connections HTTP/1.1\r\nHost: 127.0.0.1\r\n"
       "Authorization: Bearer hgk_bench_prof_0123456789abcdef\r\n"
       "User-Agent: profile\r\nAccept: */*\r\n\r\n").encode()
if len(sys.argv) > 4 and sys.argv[4] == "hitpost":
    body = ('{"sql":"SELECT id, customer_id, status FROM demo.public.orders '
            'ORDER BY id LIMIT 10"}').encode()
    req = ("POST /v1/query HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           "Authorization: Bearer hgk_bench_prof_0123456789abcdef\r\n"
           "User-Agent: profile\r\nAccept: */*\r\nContent-Type: application/json\r\n"
           "Content-Length: %d\r\n\r\n" % len(body)).encode() + body
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
bufs = [b""] * conns
bad = 0
for i in range(n):
    k = i % conns
    s = socks[k]
    s.sendall(req)
    buf = bufs[k]
    while True:
        h = buf.find(b"\r\n\r\n")
        if h >= 0:
            head = buf[:h].decode()
            cl = 0
            for line in head.split("\r\n")[1:]:
                a, _, b = line.partition(":")
                if a.lower() == "content-length":
                    cl = int(b)
            if len(buf) >= h + 4 + cl:
                if not head.startswith("HTTP/1.1 200"):
                    bad += 1
                buf = buf[h + 4 + cl:]
                break
        d = s.recv(65536)
        if not d:
            sys.exit("closed")
        buf += d
    bufs[k] = buf
if bad:
    sys.exit("%d non-200 answers" % bad)
PY
python3 "$TMP/client.py" $HG_PORT 200 $CONNS $SCENARIO # warm-up: connections, caches, pools
case $TOOL in
callgrind)
    callgrind_control -z $HG_PID >/dev/null
    python3 "$TMP/client.py" $HG_PORT "$N" $CONNS $SCENARIO
    callgrind_control -d $HG_PID >/dev/null
    sleep 1
    f=$(ls -t "$OUT_DIR"/callgrind.$SCENARIO* | head -1)
    ir=$(awk '/^summary:|^totals:/{print $2; exit}' "$f")
    echo "$SCENARIO callgrind Ir/request $((ir / N)) ($f)"
    ;;
strace)
    strace -c -f -p $HG_PID -o "$TMP/strace.txt" &
    ST=$!
    sleep 1
    python3 "$TMP/client.py" $HG_PORT "$N" $CONNS $SCENARIO
    kill -INT $ST; wait $ST 2>/dev/null || true
    cp "$TMP/strace.txt" "$OUT_DIR/strace.$SCENARIO.txt"
    awk -v n="$N" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ {printf "  %-16s %6.2f/req\n", $NF, $4/n} /total/{printf "%s strace syscalls/request %.2f\n", "'"$SCENARIO"'", $(NF-2)/n}' "$TMP/strace.txt"
    ;;
perf)
    hz=$(getconf CLK_TCK)
    read -r u0 s0 < <(awk '{print $14, $15}' /proc/$HG_PID/stat)
    perf record -q -e cpu-clock -g -p $HG_PID -o "$TMP/perf.data" -- sleep 5.5 2>/dev/null &
    PF=$!
    out=$(wrk -t1 -c64 -d5s --latency -H "Authorization: Bearer hgk_bench_prof_0123456789abcdef" \
        "http://127.0.0.1:$HG_PORT/v1/connections")
    read -r u1 s1 < <(awk '{print $14, $15}' /proc/$HG_PID/stat)
    wait $PF || true
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    echo "$out" | grep -E "Requests/sec|  50%|  99%|Socket errors|Non-2xx"
    perf report -i "$TMP/perf.data" --no-children -g none --sort dso,symbol --stdio 2>/dev/null |
        grep -v "^$" | head -120 >"$OUT_DIR/perf.$SCENARIO.txt" || true
    perf report -i "$TMP/perf.data" --no-children -g none --sort dso --stdio 2>/dev/null | grep "%" | head -12 || true
    awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v n="$reqs" -v hz="$hz" 'BEGIN{printf "%s perf: %d requests, hotgate CPU %.1f us/request (user %.1f, system %.1f)\n", "'"$SCENARIO"'", n, (u+s)*1e6/hz/n, u*1e6/hz/n, s*1e6/hz/n}'
    ;;
esac
