#!/usr/bin/env bash
# bench/plot.sh: PNG plots (gnuplot) from what the bench scripts left in bench/out:
#   bench/out/cache_hits_latency.png  cache-hit latency percentiles (p50, p75, p90, p99 from
#       wrk --latency) per target: hotdata-sim direct, hotgate, nginx (stock and tuned),
#       Varnish; GET /v1/connections and POST /v1/query (bench/peers.sh's raw wrk output,
#       bench/out/peers_wrk_*.txt; the first round of each)
#   bench/out/budget_timeline.png  upstream requests/s and client-seen 429s/s over time for
#       the same batch through hotgate, direct and direct with retries (bench/budget.sh's
#       bench/out/budget.json)
# A plot whose input is missing is skipped (said on stderr). run-all.sh calls it last.
#   OUT (default bench/out); WORKERS (default 2: the hotgate/nginx worker count to show,
#   falling back to 1)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
WORKERS=${WORKERS:-2}
command -v gnuplot >/dev/null || { echo "plot: gnuplot not installed (apt-get install gnuplot-nox)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/hg-plot-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
made=0

# ---- cache-hit latency percentiles ----
to_ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v+0} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print "NaN" }'; }
pcts() { # wrk output file -> "p50 p75 p90 p99" in ms (first round in the file)
    local f=$1 out="" p v
    for p in 50% 75% 90% 99%; do
        v=$(awk -v p="$p" '$1==p {print $2; exit}' "$f")
        out="$out $(to_ms "${v:-x}")"
    done
    echo "$out"
}
pick() { # label stem (e.g. hotgate_t) kind -> file for WORKERS, else 1
    local f
    for w in $WORKERS 1 2; do
        f="$OUT/peers_wrk_${1}${w}_$2.txt"
        [ -f "$f" ] && { echo "$f"; return; }
    done
}
rows=0
for kind in get post; do
    : >"$TMP/lat_$kind.dat"
    for spec in "direct|direct_|hotdata-sim direct" "hotgate|hotgate_t|hotgate" \
        "nginx|nginx_w|nginx" "nginxtuned|nginxtuned_w|nginx tuned" "varnish|varnish_|Varnish"; do
        IFS='|' read -r key stem name <<<"$spec"
        if [ "$key" = direct ] || [ "$key" = varnish ]; then f="$OUT/peers_wrk_${stem}${kind}.txt"; else f=$(pick "$stem" "$kind"); fi
        [ -n "$f" ] && [ -f "$f" ] || continue
        echo "\"$name\" $(pcts "$f")" >>"$TMP/lat_$kind.dat"
        rows=$((rows + 1))
    done
done
if [ $rows -gt 0 ]; then
    note=$(head -n1 "$OUT/peers.md" 2>/dev/null | sed 's/^# //; s/"//g' || true)
    gnuplot <<GP
set terminal pngcairo size 1100,520 font "DejaVu Sans,10"
set output "$OUT/cache_hits_latency.png"
set multiplot layout 1,2 title "Cache-hit latency percentiles (wrk -t1 -c64, every cache warmed; lower is better)\n{/*0.8 $note}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 10
set yrange [0.05:*]
set ylabel "latency (ms, log scale)"
set grid ytics
set key top left
set xtics rotate by -20
set title "GET /v1/connections (1.2 KB)"
plot "$TMP/lat_get.dat" using 2:xtic(1) title "p50", '' using 3 title "p75", '' using 4 title "p90", '' using 5 title "p99"
set title "POST /v1/query (about 400 B)"
plot "$TMP/lat_post.dat" using 2:xtic(1) title "p50", '' using 3 title "p75", '' using 4 title "p90", '' using 5 title "p99"
unset multiplot
GP
    echo "plot: $OUT/cache_hits_latency.png" >&2
    made=$((made + 1))
else
    echo "plot: no bench/out/peers_wrk_*.txt (run bench/peers.sh): latency plot skipped" >&2
fi

# ---- rate-budget timeline ----
if [ -f "$OUT/budget.json" ]; then
    python3 - "$OUT/budget.json" "$TMP" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for name, r in doc["runs"].items():
    fn = sys.argv[2] + "/budget_" + name.replace("+", "_") + ".dat"
    with open(fn, "w") as f:
        t0 = r.get("upstream_per_s_start", 0)
        up = r.get("upstream_per_s", [])
        if not up and r.get("upstream_requests") and r.get("makespan_s", 9) < 1:
            up = [r["upstream_requests"]]  # all of it within the first second
        c = r.get("client_429_per_s", [])
        for i in range(max(len(up), len(c))):
            f.write("%g %s %s\n" % (i + 0.5, up[i] if i < len(up) else "NaN",
                                    c[i] if i < len(c) else "NaN"))
with open(sys.argv[2] + "/budget_rate", "w") as f:
    f.write("%g\n" % doc["sim_rate"])
with open(sys.argv[2] + "/budget_meta", "w") as f:
    f.write("%d queries, %d connections, upstream limit %g/s burst %g\n" % (
        doc["n"], doc["conns"], doc["sim_rate"], doc["sim_burst"]))
PY
    meta=$(cat "$TMP/budget_meta")
    rate=$(cat "$TMP/budget_rate")
    gnuplot <<GP
set terminal pngcairo size 1100,620 font "DejaVu Sans,10"
set output "$OUT/budget_timeline.png"
set multiplot layout 2,1 title "A batch job against a rate-limited API: through hotgate vs straight to it\n{/*0.8 $meta}"
set grid
set key top right
set xlabel "seconds since the batch started"
set logscale y 10
set yrange [0.8:*]
set ylabel "upstream requests/s (log)"
set title "Requests reaching the upstream"
plot "$TMP/budget_hotgate.dat" using 1:2 with steps lw 2 title "through hotgate", \
     "$TMP/budget_direct.dat" using 1:2 with impulses lw 6 title "direct (all within the first second)", \
     "$TMP/budget_direct_retry.dat" using 1:2 with steps lw 1 dt 2 title "direct, retrying after Retry-After", \
     $rate with lines lc rgb "gray40" dt 3 title "the upstream's limit ($rate/s)"
set ylabel "429s/s seen by the client (log)"
set title "429 Too Many Requests seen by the batch job (through hotgate: none)"
plot "$TMP/budget_hotgate.dat" using 1:(\$3 > 0 ? \$3 : NaN) with impulses lw 3 title "through hotgate", \
     "$TMP/budget_direct.dat" using 1:(\$3 > 0 ? \$3 : NaN) with impulses lw 3 title "direct", \
     "$TMP/budget_direct_retry.dat" using 1:(\$3 > 0 ? \$3 : NaN) with steps lw 1 dt 2 title "direct, retrying"
unset multiplot
GP
    echo "plot: $OUT/budget_timeline.png" >&2
    made=$((made + 1))
else
    echo "plot: no $OUT/budget.json (run bench/budget.sh): timeline skipped" >&2
fi
[ $made -gt 0 ]
