#!/usr/bin/env bash
# The demo: installs packages, builds, starts hotdata-sim and hotgate (embedded LMDB cache)
# on free loopback ports, and sends the same query through hotgate twice: the first answer
# comes from the simulator (X-Cache: MISS), the second from hotgate's cache (X-Cache: HIT).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh

work=$(mktemp -d /tmp/hotgate-demo-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null ||
              echo $((20000 + RANDOM % 20000)); }
wait_http() { for _ in $(seq 1 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }

sim_port=$(free_port); gw_port=$(free_port)
echo "== starting hotdata-sim on 127.0.0.1:$sim_port (seeding demo data on first start)"
build/hotdata-sim --listen "127.0.0.1:$sim_port" --token demo-upstream-token=ws_demo \
  --workspace ws_demo --data-dir "$work/sim" --latency-ms 150 >"$work/sim.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$sim_port/_sim/stats"

# the upstream token lives in a 0600 file; the client only holds its own local key
umask 077
printf '%s' demo-upstream-token >"$work/upstream.token"
client_key=demo-client-key
key_hash=$(printf '%s' "$client_key" | build/hotgate --hash-key)
cat >"$work/hotgate.conf" <<CONF
[server]
listen = 127.0.0.1:$gw_port
threads = 1
access_log = $work/access.log

[upstream]
url = http://127.0.0.1:$sim_port

[credential demo]
token_file = $work/upstream.token

[client demo-app]
key_sha256 = $key_hash
credential = demo
workspaces = ws_demo
default_workspace = ws_demo
mode = read-only

[cache]
dir = $work/cache
size = 64M
CONF
echo "== starting hotgate on 127.0.0.1:$gw_port"
build/hotgate --config "$work/hotgate.conf" >"$work/hotgate.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$gw_port/"

# PostgreSQL SQL, as Hotdata users write it: ::numeric casts, date_trunc
sql="SELECT status, count(*) AS orders, sum(amount)::numeric(12,2) AS revenue, date_trunc('month', max(ordered_at)) AS last_month FROM demo.public.orders GROUP BY status ORDER BY status"
for i in 1 2; do
  echo
  echo "== query #$i through hotgate"
  curl -sS -D "$work/h$i" -o "$work/b$i" -w 'time: %{time_total}s\n' \
    -H "Authorization: Bearer $client_key" -H 'Content-Type: application/json' \
    --data "{\"sql\": \"$sql\"}" "http://127.0.0.1:$gw_port/v1/query"
  grep -iE '^(HTTP/|x-cache|age|x-request-id)' "$work/h$i" | tr -d '\r'
  head -c 400 "$work/b$i"; echo
done
echo
echo "== upstream calls seen by hotdata-sim for POST /v1/query:"
curl -s "http://127.0.0.1:$sim_port/_sim/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(json.dumps({k:v for k,v in s.get("routes",s).items() if "query" in k}, indent=1))' 2>/dev/null ||
  curl -s "http://127.0.0.1:$sim_port/_sim/stats"
echo
echo "== access log"
cat "$work/access.log" 2>/dev/null || true
grep -qi '^x-cache: *HIT' "$work/h2" && echo "demo OK: the second answer came from hotgate's cache"
