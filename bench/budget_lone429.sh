#!/usr/bin/env bash
# bench/budget_lone429.sh: what one isolated upstream 429 costs a batch job.
#
# hotgate configured exactly at the upstream's rate (RATE/s, burst BURST on both sides), N
# distinct queries over C connections; AT seconds into each run the sim answers one request
# 429 with Retry-After: 1 (POST /_sim/faults), a lone shed. Each run is reported against the
# ideal (N - BURST) / RATE: makespan, upstream 429s, client 429s, the lowest effective rate
# sampled from /admin/budget and rate_decreases. A run without the injected 429 is the
# baseline. REPEAT runs of each (fresh sim and hotgate every run, distinct queries).
# Output: bench/out/budget_lone429.md (printed too).
#
# Usage: BUILD_DIR=build bench/budget_lone429.sh [N] [C]   (defaults 80 50; RATE=10 BURST=2
#        AT=3 REPEAT=3)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BUILD_DIR=${BUILD_DIR:-build}
N=${1:-80}
C=${2:-50}
RATE=${RATE:-10}
BURST=${BURST:-2}
AT=${AT:-3}
REPEAT=${REPEAT:-3}
SIM=$BUILD_DIR/hotdata-sim
HG=$BUILD_DIR/hotgate
[ -x "$SIM" ] && [ -x "$HG" ] || { echo "build first: BUILD_DIR=$BUILD_DIR ./scripts/build.sh" >&2; exit 1; }
mkdir -p bench/out
TMP=$(mktemp -d /tmp/hg-bench-lone429-XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
wait_http() { for _ in $(seq 1 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

KEY=hgk_bench_batch_0123456789abcdef
KEY_SHA=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
printf 'tok_test\n' >"$TMP/token"
chmod 600 "$TMP/token"

# one run: fresh sim + hotgate; $1 = extra budget_load.py arguments; prints its JSON
one_run() {
    local sim_port hg_port admin_port r
    sim_port=$(free_port)
    "$SIM" --listen 127.0.0.1:$sim_port --token tok_test=ws_test --workspace ws_test \
        --data-dir "$TMP/sim$sim_port" --rate "$RATE" --burst "$BURST" --quiet >"$TMP/sim.log" 2>&1 &
    local sim_pid=$!
    PIDS+=($sim_pid)
    wait_http "http://127.0.0.1:$sim_port/_sim/stats"
    hg_port=$(free_port)
    admin_port=$(free_port)
    cat >"$TMP/hotgate.conf" <<EOF
[server]
listen = 127.0.0.1:$hg_port
threads = 2
access_log = off
[admin]
listen = 127.0.0.1:$admin_port
[upstream]
url = http://127.0.0.1:$sim_port
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
burst = $BURST
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
    local hg_pid=$!
    PIDS+=($hg_pid)
    wait_http "http://127.0.0.1:$admin_port/admin/budget"
    r=$(python3 bench/budget_load.py --sim http://127.0.0.1:$sim_port -n "$N" -c "$C" \
        --url http://127.0.0.1:$hg_port --key "$KEY" --offset 1000000 \
        --admin http://127.0.0.1:$admin_port $1)
    kill $hg_pid $sim_pid 2>/dev/null || true
    wait $hg_pid $sim_pid 2>/dev/null || true
    echo "$r"
}

echo "lone-429 bench: N=$N C=$C, sim and hotgate at $RATE/s burst $BURST, one 429 (Retry-After: 1) at ${AT}s, $REPEAT runs" >&2
RUNS=()
for i in $(seq 1 "$REPEAT"); do
    echo "  run $i: baseline ..." >&2
    RUNS+=("base" "$(one_run "")")
    echo "  run $i: one injected 429 ..." >&2
    RUNS+=("lone429" "$(one_run "--inject-429-at $AT")")
done
python3 - "$N" "$RATE" "$BURST" "$C" "$HG" "${RUNS[@]}" <<'PY'
import json, sys, datetime
n, rate, burst, c, hg = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rest = sys.argv[6:]
ideal = max(0.0, (n - burst) / rate)
lines = ["# lone-429 bench (%s UTC): %d queries, %d connections, sim and hotgate %g/s burst %g, "
         "hotgate %s; ideal = %.2f s" % (datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), n, c,
                                          rate, burst, hg, ideal), "",
         "| run | ok | client 429s | upstream req | upstream 429s | min effective rate | rate decreases | makespan s | vs ideal |",
         "|" + "---|" * 9]
for name, js in zip(rest[::2], rest[1::2]):
    r = json.loads(js)
    lines.append("| %s | %d | %d | %s | %s | %s | %s | %.2f | %+.1f%% |" % (
        name, r["status"].get("200", 0), r["client_429"], r["upstream_requests"], r["upstream_429"],
        r.get("effective_rate_min"), r.get("rate_decreases"), r["makespan_s"],
        (r["makespan_s"] / ideal - 1) * 100))
text = "\n".join(lines) + "\n"
open("bench/out/budget_lone429.md", "w").write(text)
print(text)
PY
