#!/usr/bin/env bash
# bench/budget.sh: a batch job through hotgate's rate budget versus straight to the API.
#
# hotdata-sim limits each token to RATE requests/s (burst BURST) and answers 429 OVERLOADED +
# Retry-After: 1 beyond that. The same batch (N distinct queries, C connections) runs:
#   hotgate      through hotgate configured at RATE/s (cache off, so every query goes up)
#   direct       straight to the sim, no retries (what a naive batch job sees)
#   direct+retry straight to the sim, retrying 429s after Retry-After (like the official SDK);
#                N/5 queries by default (RETRY_N): every client sleeping the same Retry-After
#                wakes together into a bucket refilled only to its burst, so this one is slow
# Reported: client-seen 429s, upstream requests and 429s (from /_sim/stats, sampled every
# second: max requests in a 1 s window), makespan against the ideal N/RATE.
# hotgate's own burst (HG_BURST, default 5) is half the sim's: the rest is slack for the jitter
# between a grant and the request reaching the upstream (worker scheduling on a busy host).
# Output: bench/out/budget.json and bench/out/budget.md (the table is printed too).
#
# Usage: BUILD_DIR=build bench/budget.sh [N] [C]     (defaults 3000 50; RATE=50 BURST=10)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD_DIR=${BUILD_DIR:-build}
N=${1:-3000}
C=${2:-50}
RATE=${RATE:-50}
BURST=${BURST:-10}
HG_BURST=${HG_BURST:-5}
RETRY_N=${RETRY_N:-$((N / 5))}
SIM=$BUILD_DIR/hotdata-sim
HG=$BUILD_DIR/hotgate
[ -x "$SIM" ] && [ -x "$HG" ] || { echo "build first: BUILD_DIR=$BUILD_DIR ./scripts/build.sh" >&2; exit 1; }
mkdir -p bench/out
TMP=$(mktemp -d /tmp/hg-bench-budget-XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

wait_http() { for _ in $(seq 1 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

SIM_PORT=$(free_port)
"$SIM" --listen 127.0.0.1:$SIM_PORT --token tok_test=ws_test --workspace ws_test \
    --data-dir "$TMP/sim" --rate "$RATE" --burst "$BURST" --quiet >"$TMP/sim.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$SIM_PORT/_sim/stats"

KEY=hgk_bench_batch_0123456789abcdef
KEY_SHA=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
HG_PORT=$(free_port)
ADMIN_PORT=$(free_port)
printf 'tok_test\n' >"$TMP/token"
chmod 600 "$TMP/token"
cat >"$TMP/hotgate.conf" <<EOF
[server]
listen = 127.0.0.1:$HG_PORT
threads = 2
access_log = off
[admin]
listen = 127.0.0.1:$ADMIN_PORT
[upstream]
url = http://127.0.0.1:$SIM_PORT
retries = 0
[cache]
enabled = no
[queue]
max_total = 10000
max_per_client = 10000
deadline = 600
[credential main]
token_file = $TMP/token
rate = $RATE
burst = $HG_BURST
[client batch]
key_sha256 = $KEY_SHA
credential = main
class = batch
workspaces = *
default_workspace = ws_test
mode = full
EOF
chmod 600 "$TMP/hotgate.conf"
"$HG" --config "$TMP/hotgate.conf" >"$TMP/hotgate.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$ADMIN_PORT/admin/budget"

LOAD="python3 bench/budget_load.py --sim http://127.0.0.1:$SIM_PORT -n $N -c $C"
echo "budget bench: N=$N C=$C, sim --rate $RATE --burst $BURST, hotgate rate $RATE burst $HG_BURST" >&2
echo "  [1/3] through hotgate ..." >&2
R1=$($LOAD --url http://127.0.0.1:$HG_PORT --key "$KEY" --offset 1000000 \
    --admin http://127.0.0.1:$ADMIN_PORT)
sleep 2
echo "  [2/3] direct to the sim, no retries ..." >&2
R2=$($LOAD --url http://127.0.0.1:$SIM_PORT --key tok_test --workspace ws_test --offset 2000000)
sleep 2
echo "  [3/3] direct to the sim, retrying 429 after Retry-After ($RETRY_N queries) ..." >&2
R3=$(python3 bench/budget_load.py --sim http://127.0.0.1:$SIM_PORT -n "$RETRY_N" -c "$C" \
    --url http://127.0.0.1:$SIM_PORT --key tok_test --workspace ws_test --offset 3000000 --retry-429)

python3 - "$N" "$RATE" "$BURST" "$C" "$R1" "$R2" "$R3" <<'PY'
import json, sys, datetime
n, rate, burst, c = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
runs = {"hotgate": json.loads(sys.argv[5]), "direct": json.loads(sys.argv[6]),
        "direct+retry": json.loads(sys.argv[7])}
ideal = max(0.0, (n - burst) / rate)
doc = {"date": datetime.datetime.utcnow().isoformat() + "Z", "n": n, "conns": c,
       "sim_rate": rate, "sim_burst": burst, "ideal_makespan_s": round(ideal, 2), "runs": runs}
with open("bench/out/budget.json", "w") as f:
    json.dump(doc, f, indent=1)
hdr = ("| run | queries | ok (200) | client 429s | upstream req | upstream 429s "
       "| max upstream req/1s | makespan s | ideal s | vs ideal | p50 s | p99 s |")
lines = ["# budget bench: %d connections, sim %g/s burst %g; ideal = (queries - burst) / rate"
         % (c, rate, burst), "", hdr, "|" + "---|" * 12]
for name, r in runs.items():
    ok = r["status"].get("200", 0)
    ideal_r = max(0.0, (r["n"] - burst) / rate)
    lines.append("| %s | %d | %d | %d | %s | %s | %s | %.2f | %.2f | %+.1f%% | %s | %s |" % (
        name, r["n"], ok, r["client_429"], r["upstream_requests"], r["upstream_429"],
        r["upstream_max_1s"], r["makespan_s"], ideal_r,
        (r["makespan_s"] / ideal_r - 1) * 100 if ideal_r else 0,
        r["latency_p50_s"], r["latency_p99_s"]))
h = runs["hotgate"]
lines += ["", "hotgate effective rate (min sampled): %s; upstream requests per second through "
          "hotgate: %s" % (h.get("effective_rate_min"), h["upstream_per_s"]),
          "", "through hotgate: upstream 429s seen at (s): %s; sim stalls > 100 ms (start s, "
          "length s), from the latency of GET /_sim/stats: %s"
          % (h.get("upstream_429_at_s"), h.get("sim_stalls_over_100ms"))]
text = "\n".join(lines) + "\n"
open("bench/out/budget.md", "w").write(text)
print(text)
PY
