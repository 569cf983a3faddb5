#!/usr/bin/env bash
# bench/fleet.sh: three hotgate instances sharing one Redis (the fleet tier) in front of one
# hotdata-sim, on free loopback ports. Sections (each writes its rows into the table):
#   1. hits   L1 hits vs L2 hits on the same instance: wrk -t1 -c$CONNS; an L2 hit is an L1
#             miss answered from Redis (distinct queries first fetched through instance A for
#             $PRELOAD, then asked once each through instance B for $L2_DURATION: the table
#             says how many of B's requests were L2 hits); -> req/s, p50, p99
#   2. herd   $HERD concurrent identical cold queries spread over the three instances with
#             the sim at $HERD_LATENCY ms: upstream queries the sim counted, client p50/max;
#             repeated $HERD_ROUNDS times with new SQL
#   3. rate   the global rate budget's timeline: a sim limited to $RATE/s (burst $RATE_SIM_BURST)
#             and three more instances each configured at $RATE/s burst $RATE_BURST on one
#             credential (cache off, local_share 0.34), $RATE_N distinct queries spread over
#             them, upstream requests and 429s per second sampled at the sim; three runs:
#             global (budget in Redis), global with Redis killed for the middle third of the
#             run (local share, then back), and no Redis (each instance alone at $RATE/s);
#             with FLEET=yes only (it makes its own comparison)
#   4. inval  how long after a mutation's answer the other instances have applied its
#             invalidation: $INVAL_ROUNDS refreshes through instance A, while a thread polls
#             B's and C's hotgate_fleet_invalidations_applied_total; per round the time from
#             A's answer to the later of B and C (negative: applied before the client had
#             the answer) -> p50, p99, max (target: within 100 ms); FLEET=yes only
# Writes bench/out/fleet-$FLEET.{md,csv} (and bench/out/fleet_rate.md, the timelines) and
# prints the table.
#   BUILD_DIR (build), CONNS (32), PRELOAD (20s), L2_DURATION (2s), DURATION (5s, L1),
#   HERD (90), HERD_LATENCY (200), HERD_ROUNDS (5), HG_THREADS (2),
#   FLEET (yes; no: the same three instances without [redis], for comparison: section 1 is
#   skipped, section 2 shows what each instance's own coalescing alone makes of the herd),
#   RATE (10), RATE_BURST (2), RATE_SIM_BURST (5), RATE_N (300), INVAL_ROUNDS (50),
#   SECTIONS ("1 2 3 4")
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD_DIR=${BUILD_DIR:-build}
CONNS=${CONNS:-32}
PRELOAD=${PRELOAD:-20s}
L2_DURATION=${L2_DURATION:-2s}
DURATION=${DURATION:-5s}
HERD=${HERD:-90}
HERD_LATENCY=${HERD_LATENCY:-200}
HERD_ROUNDS=${HERD_ROUNDS:-5}
HG_THREADS=${HG_THREADS:-2}
FLEET=${FLEET:-yes}
RATE=${RATE:-10}
RATE_BURST=${RATE_BURST:-2}
RATE_SIM_BURST=${RATE_SIM_BURST:-5}
RATE_N=${RATE_N:-300}
SECTIONS=${SECTIONS:-"1 2 3 4"}
INVAL_ROUNDS=${INVAL_ROUNDS:-50}
OUT=bench/out
mkdir -p "$OUT"
HG=$BUILD_DIR/hotgate
SIM=$BUILD_DIR/hotdata-sim
[ -x "$HG" ] && [ -x "$SIM" ] || { echo "build first: BUILD_DIR=$BUILD_DIR ./scripts/build.sh" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server not installed" >&2; exit 1; }

TMP=$(mktemp -d /tmp/hg-bench-fleet-XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

# ---- setup: redis, sim, three instances ----
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$TMP" >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT" || { echo "redis did not start" >&2; exit 1; }
SIM_PORT=$(free_port)
"$SIM" --listen 127.0.0.1:$SIM_PORT --token tok_test=ws_test --workspace ws_test \
    --data-dir "$TMP/sim" --quiet >"$TMP/sim.log" 2>&1 &
PIDS+=($!)
wait_port "$SIM_PORT" || { echo "sim did not start" >&2; exit 1; }

KEY=hgk_bench_fleet_0123456789abcdef
KEY_SHA=$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)
printf 'tok_test\n' >"$TMP/token"; chmod 600 "$TMP/token"
HG_PORTS=(); ADM_PORTS=()
for i in 0 1 2; do
    HG_PORTS[$i]=$(free_port); ADM_PORTS[$i]=$(free_port)
    mkdir -p "$TMP/g$i"
    cat >"$TMP/g$i/hotgate.conf" <<CONF
[server]
listen = 127.0.0.1:${HG_PORTS[$i]}
threads = $HG_THREADS
access_log = off
[admin]
listen = 127.0.0.1:${ADM_PORTS[$i]}
[upstream]
url = http://127.0.0.1:$SIM_PORT
[cache]
enabled = yes
dir = $TMP/g$i/cache
size = 512M
ttl_query = 300s
[redis]
enabled = $FLEET
url = redis://127.0.0.1:$REDIS_PORT
key_prefix = bench:
op_timeout = 50ms
[credential main]
token_file = $TMP/token
[client bench]
key_sha256 = $KEY_SHA
credential = main
workspaces = ws_test
default_workspace = ws_test
mode = full
CONF
    "$HG" --config "$TMP/g$i/hotgate.conf" >"$TMP/g$i/hotgate.log" 2>&1 &
    PIDS+=($!)
done
for i in 0 1 2; do
    wait_port "${HG_PORTS[$i]}" || { echo "hotgate $i did not start" >&2; cat "$TMP/g$i/hotgate.log" >&2; exit 1; }
done
sleep 0.5 # Redis connections and the stream tailer attach

metric() { # instance name -> value of the first line "name value" or "name{..} value"
    curl -s "http://127.0.0.1:${ADM_PORTS[$1]}/metrics" | awk -v n="$2" 'index($0, n) == 1 { print $NF; exit }'
}

# wrk's summary -> "req/s p50_us p99_us"
wrk_summary() {
    awk '
        function us(v) { if (v ~ /us$/) { sub(/us/, "", v); return v+0 }
                         if (v ~ /ms$/) { sub(/ms/, "", v); return v*1000 }
                         if (v ~ /s$/)  { sub(/s/, "", v);  return v*1000000 } return v }
        $1 == "50%" { p50 = us($2) } $1 == "99%" { p99 = us($2) }
        $1 == "Requests/sec:" { rps = $2 } $2 == "requests" && $3 == "in" { n = $1 }
        END { printf "%.0f %.0f %.0f %d\n", rps, p50, p99, n }'
}

ROWS=()
row() { ROWS+=("$1|$2|$3|$4|$5"); } # section what req/s p50 p99 (or notes)

# ---- section 1: L1 hits vs L2 hits ----
section_hits() {
cat >"$TMP/distinct.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local i = 0
request = function()
    i = i + 1
    return wrk.format(nil, "/v1/query", nil,
        '{"sql":"SELECT id, customer_id, status FROM demo.public.orders WHERE id = ' .. i .. '"}')
end
LUA
SQL1='SELECT id, customer_id, status FROM demo.public.orders WHERE id = 1'
cat >"$TMP/same.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"sql":"$SQL1"}'
wrk.headers["Content-Type"] = "application/json"
LUA
A="http://127.0.0.1:${HG_PORTS[0]}"; B="http://127.0.0.1:${HG_PORTS[1]}"
echo "section 1: filling L2 through instance A for $PRELOAD ..." >&2
wrk -t1 -c"$CONNS" -d"$PRELOAD" -H "Authorization: Bearer $KEY" -s "$TMP/distinct.lua" "$A" >/dev/null
stores=$(metric 0 hotgate_fleet_l2_stores_total)
echo "  L2 entries stored: $stores" >&2
l2_before=$(metric 1 'hotgate_fleet_l2_lookups_total{outcome="hit"}')
echo "section 1: L2 hits through instance B for $L2_DURATION ..." >&2
read -r rps p50 p99 nreq < <(wrk -t1 -c"$CONNS" -d"$L2_DURATION" --latency \
    -H "Authorization: Bearer $KEY" -s "$TMP/distinct.lua" "$B" | wrk_summary)
l2_after=$(metric 1 'hotgate_fleet_l2_lookups_total{outcome="hit"}')
row hits "L2 hit on B (L1 miss, one Redis round trip, L1 fill): $((l2_after - l2_before)) of $nreq requests" "$rps" "$p50" "$p99"
curl -s -o /dev/null -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "{\"sql\":\"$SQL1\"}" "$B/v1/query"
echo "section 1: L1 hits through instance B ($DURATION) ..." >&2
read -r rps p50 p99 nreq < <(wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $KEY" \
    -s "$TMP/same.lua" "$B" | wrk_summary)
row hits "L1 hit on B (no Redis round trip)" "$rps" "$p50" "$p99"
}
if [ "$FLEET" = yes ] && [[ " $SECTIONS " == *" 1 "* ]]; then section_hits; fi

# ---- section 2: the herd over three instances ----
if [[ " $SECTIONS " == *" 2 "* ]]; then
curl -s -o /dev/null -H 'Content-Type: application/json' \
    -d "{\"routes\":{\"POST /v1/query\":{\"latency_ms\":$HERD_LATENCY}}}" "http://127.0.0.1:$SIM_PORT/_sim/faults"
for r in $(seq 1 "$HERD_ROUNDS"); do
    sql="SELECT id, status FROM demo.public.orders WHERE id = $((900000 + r)) OR id = $r"
    out=$(python3 - "$HERD" "$KEY" "$sql" "${HG_PORTS[@]}" <<'PY'
import json, sys, threading, time, urllib.request
n, key, sql, ports = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
body = json.dumps({"sql": sql}).encode()
lat, codes, xc = [None] * n, [None] * n, [None] * n
go = threading.Event()
def one(i):
    req = urllib.request.Request("http://127.0.0.1:%s/v1/query" % ports[i % len(ports)], data=body,
                                 headers={"Authorization": "Bearer " + key,
                                          "Content-Type": "application/json"})
    go.wait()
    t = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read(); codes[i] = r.status; xc[i] = r.headers.get("X-Cache")
    except Exception as e:
        codes[i] = str(e)
    lat[i] = (time.monotonic() - t) * 1000
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in ts: t.start()
go.set()
for t in ts: t.join()
lat.sort()
ok = sum(1 for c in codes if c == 200)
print("%d %.0f %.0f %d %d %d" % (ok, lat[len(lat) // 2], lat[-1], xc.count("MISS"),
                                 xc.count("HIT"), xc.count("COALESCED")))
PY
)
    read -r ok p50 pmax miss hit coal <<<"$out"
    hash=$(printf %s "$sql" | sha256sum | cut -d' ' -f1)
    up=$(curl -s "http://127.0.0.1:$SIM_PORT/_sim/stats" | python3 -c '
import json, sys
h = sys.argv[1]
def walk(j):
    if isinstance(j, dict):
        s = 0
        for k, v in j.items():
            if k == h and isinstance(v, int): s += v
            elif k == h and isinstance(v, dict): s += v.get("count", 0) + v.get("requests", 0)
            else: s += walk(v)
        return s
    if isinstance(j, list): return sum(walk(v) for v in j)
    return 0
print(walk(json.load(sys.stdin)))' "$hash")
    row herd "round $r (fleet $FLEET): $HERD clients over 3 instances, $ok ok; upstream queries $up; $miss MISS $hit HIT(L2) $coal COALESCED" "-" "$p50 ms" "$pmax ms (max)"
done
curl -s -o /dev/null -H 'Content-Type: application/json' -d '{}' "http://127.0.0.1:$SIM_PORT/_sim/faults"
fi

# ---- section 3: the global rate timeline ----
if [ "$FLEET" = yes ] && [[ " $SECTIONS " == *" 3 "* ]]; then
RSIM_PORT=$(free_port)
"$SIM" --listen 127.0.0.1:$RSIM_PORT --token tok_test=ws_test --workspace ws_test \
    --data-dir "$TMP/rsim" --rate "$RATE" --burst "$RATE_SIM_BURST" --quiet >"$TMP/rsim.log" 2>&1 &
PIDS+=($!)
wait_port "$RSIM_PORT" || { echo "rate sim did not start" >&2; exit 1; }
RPIDS=()
# three instances at $RATE/s each on one credential; $1: yes/no ([redis] enabled)
rate_fleet_start() {
    RPORTS=()
    RADM=()
    RPIDS=()
    local prefix="benchrate$RANDOM:" # one budget for the three (a fresh one each run)
    for i in 0 1 2; do
        local p a
        p=$(free_port); a=$(free_port)
        RPORTS+=("$p")
        RADM+=("$a")
        mkdir -p "$TMP/r$i"
        cat >"$TMP/r$i/hotgate.conf" <<CONF
[server]
listen = 127.0.0.1:$p
threads = $HG_THREADS
access_log = off
[admin]
listen = 127.0.0.1:$a
[upstream]
url = http://127.0.0.1:$RSIM_PORT
retries = 0
[cache]
enabled = no
[redis]
enabled = $1
url = redis://127.0.0.1:$REDIS_PORT
key_prefix = $prefix
op_timeout = 50ms
local_share = 0.34
[queue]
max_total = 10000
max_per_client = 10000
deadline = 600
[credential main]
token_file = $TMP/token
rate = $RATE
burst = $RATE_BURST
[client bench]
key_sha256 = $KEY_SHA
credential = main
workspaces = ws_test
default_workspace = ws_test
mode = full
CONF
        "$HG" --config "$TMP/r$i/hotgate.conf" >"$TMP/r$i/hotgate.log" 2>&1 &
        RPIDS+=($!)
        PIDS+=($!)
    done
    for p in "${RPORTS[@]}"; do wait_port "$p" || { echo "hotgate did not start" >&2; exit 1; }; done
    sleep 0.5
}
rate_fleet_stop() {
    local a
    echo "$1:" >>"$TMP/rate_metrics.txt"
    for a in "${RADM[@]}"; do # what each instance's budget did
        { printf '  '
          curl -s "http://127.0.0.1:$a/metrics" | grep -E '^hotgate_budget_(global|local_share|upstream_shed|rate_decreases|shed_paused)' \
            | sed -e 's/{credential="main"}//' -e 's/^hotgate_budget_//' | tr '\n' ' '
          echo; } >>"$TMP/rate_metrics.txt"
    done
    for p in "${RPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${RPIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
RATE_LOAD() { python3 bench/fleet_rate.py --ports "$(IFS=,; echo "${RPORTS[*]}")" \
    --sim-port "$RSIM_PORT" --key "$KEY" -n "$RATE_N" -c 10 --offset "$1"; }
rate_row() { # name json
    python3 - "$1" "$2" "$RATE" "$RATE_SIM_BURST" <<'PY'
import json, sys
name, r, rate, burst = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
bound = rate * r["makespan_s"] + burst
print("%s: %d queries over 3 instances, %s ok, client 429s %d; upstream %d requests in %.1f s "
      "(rate x time + burst = %.0f), mean %.1f/s, max 1 s %.1f/s, upstream 429s %d|-|-|-" % (
          name, r["n"], r["status"].get("200", 0), r["client_429"], r["upstream_requests"],
          r["makespan_s"], bound, r["upstream_mean_per_s"], r["upstream_max_1s"],
          r["upstream_429"]))
PY
}
echo "section 3: global budget, 3 x $RATE/s sharing $RATE/s in Redis, $RATE_N queries ..." >&2
rate_fleet_start yes
R_GLOBAL=$(RATE_LOAD 5000000)
rate_fleet_stop "global budget in Redis"
echo "section 3: the same, Redis killed for the middle third ..." >&2
rate_fleet_start yes
THIRD=$(python3 -c "print($RATE_N / $RATE / 3)")
RATE_LOAD 6000000 >"$TMP/rate_kill.json" &
LOADPID=$!
sleep "$THIRD"
REDIS_PID=${PIDS[0]}
kill -9 "$REDIS_PID" 2>/dev/null || true
sleep "$THIRD"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$TMP" >>"$TMP/redis.log" 2>&1 &
PIDS+=($!)
wait $LOADPID
R_KILL=$(cat "$TMP/rate_kill.json")
rate_fleet_stop "global, Redis killed mid-run"
echo "section 3: no Redis, each instance alone at $RATE/s ..." >&2
rate_fleet_start no
R_ALONE=$(RATE_LOAD 7000000)
rate_fleet_stop "no Redis"
IFS='|' read -r w a b c <<<"$(rate_row "global budget in Redis" "$R_GLOBAL")"
row rate "$w" "$a" "$b" "$c"
IFS='|' read -r w a b c <<<"$(rate_row "global, Redis killed for ${THIRD%.*} s mid-run (local share 0.34)" "$R_KILL")"
row rate "$w" "$a" "$b" "$c"
IFS='|' read -r w a b c <<<"$(rate_row "no Redis (each alone)" "$R_ALONE")"
row rate "$w" "$a" "$b" "$c"
python3 - "$R_GLOBAL" "$R_KILL" "$R_ALONE" "$RATE" "$THIRD" <<'PY' | tee "$OUT/fleet_rate.md" >&2
import json, sys
names = ["global budget in Redis", "global, Redis killed from %.0f s to %.0f s" % (
    float(sys.argv[5]), 2 * float(sys.argv[5])), "no Redis (each instance alone)"]
print("# global rate timeline: upstream requests per second at the sim (limit %s/s), "
      "second by second from the start of each run; 429s upstream / at the clients\n" % sys.argv[4])
for name, js in zip(names, sys.argv[1:4]):
    r = json.loads(js)
    print("%s (makespan %.1f s):" % (name, r["makespan_s"]))
    print("  upstream req/s: %s" % " ".join(str(x) for x in r["upstream_per_s"]))
    print("  upstream 429/s: %s" % " ".join(str(x) for x in r["upstream_429_per_s"]))
    print("  client 429/s:   %s" % " ".join(str(x) for x in r["client_429_per_s"]))
PY
{ echo; echo "each instance's budget at the end of each run (/metrics):"; cat "$TMP/rate_metrics.txt"; } \
    | tee -a "$OUT/fleet_rate.md" >&2
fi

# ---- section 4: invalidation reaching the other instances ----
if [ "$FLEET" = yes ] && [[ " $SECTIONS " == *" 4 "* ]]; then
out=$(python3 - "$INVAL_ROUNDS" "$KEY" "${HG_PORTS[0]}" "${ADM_PORTS[1]}" "${ADM_PORTS[2]}" <<'PY'
import json, sys, threading, time, urllib.request
rounds, key, port_a, adm = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
NAME = "hotgate_fleet_invalidations_applied_total"
def applied(p):
    with urllib.request.urlopen("http://127.0.0.1:%s/metrics" % p, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(NAME + " "):
                return int(float(line.split()[-1]))
    return 0
deltas = []
for r in range(rounds):
    base = [applied(p) for p in adm]
    seen = [None] * len(adm)
    stop = threading.Event()
    def poll(i):
        while not stop.is_set():
            if applied(adm[i]) > base[i]:
                seen[i] = time.monotonic(); return
    ts = [threading.Thread(target=poll, args=(i,)) for i in range(len(adm))]
    for t in ts: t.start()
    req = urllib.request.Request("http://127.0.0.1:%s/v1/refresh" % port_a,
                                 data=json.dumps({"connection_id": "conn_demo"}).encode(),
                                 headers={"Authorization": "Bearer " + key,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()
    answered = time.monotonic()
    for t in ts: t.join(timeout=5)
    stop.set()
    if any(s is None for s in seen):
        print("missing", r); sys.exit(1)
    deltas.append((max(seen) - answered) * 1000)
deltas.sort()
n = len(deltas)
print("%d %.1f %.1f %.1f %d" % (n, deltas[n // 2], deltas[min(n - 1, int(n * 0.99))], deltas[-1],
                                sum(1 for d in deltas if d <= 100)))
PY
) || { echo "section 4 failed: $out" >&2; out="0 - - - 0"; }
read -r n p50 p99 pmax within <<<"$out"
row inval "$n refreshes through A: B and C applied the invalidation (ms after A's answer; $within of $n within 100 ms)" "-" "$p50 ms" "$p99 ms (max $pmax ms)"
fi

# ---- table ----
{
    echo "| section | what | req/s | p50 | p99 |"
    echo "| --- | --- | --- | --- | --- |"
    for r in "${ROWS[@]}"; do
        IFS='|' read -r s w a b c <<<"$r"
        echo "| $s | $w | $a | $b | $c |"
    done
} | tee "$OUT/fleet-$FLEET.md"
printf '%s\n' "${ROWS[@]}" | tr '|' ',' >"$OUT/fleet-$FLEET.csv"
