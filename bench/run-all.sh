#!/usr/bin/env bash
# bench/run-all.sh: runs every bench script in bench/ (bench/*.sh but this one), one after
# the other, and collects their tables into bench/out/SUMMARY.md: bench/out/<its name>.md
# when the script wrote it during this run; else the script's output (a script that only
# prints its figures), or the tail of its log when it failed. Logs:
# bench/out/run-all/<name>.log (stdout and stderr). Then bench/plot.sh draws the PNG plots
# (bench/out/cache_hits_latency.png, bench/out/budget_timeline.png; gnuplot-nox) and
# SUMMARY.md links them. Exits non-zero if any script failed.
#   BUILD_DIR (default build) and every other variable pass through to the scripts;
#   ONLY="peers cache_hits" runs just those, SKIP="budget" leaves those out.
set -uo pipefail
cd "$(dirname "$0")/.."
export BUILD_DIR=${BUILD_DIR:-build}
OUT=bench/out
LOGS=$OUT/run-all
mkdir -p "$LOGS"
[ -x "$BUILD_DIR/hotgate" ] && [ -x "$BUILD_DIR/hotdata-sim" ] ||
    { echo "build first: BUILD_DIR=$BUILD_DIR ./scripts/build.sh" >&2; exit 1; }

selected() { # name -> 0 if it is to run
    local n=$1 w
    if [ -n "${ONLY:-}" ]; then
        for w in $ONLY; do [ "$w" = "$n" ] && return 0; done
        return 1
    fi
    for w in ${SKIP:-}; do [ "$w" = "$n" ] && return 1; done
    return 0
}

SUMMARY=$OUT/SUMMARY.md
TMPSUM=$(mktemp /tmp/hg-bench-summary-XXXXXX)
trap 'rm -f "$TMPSUM"' EXIT
STATUS=()
failed=0
for script in bench/*.sh; do
    name=$(basename "$script" .sh)
    [ "$name" = run-all ] || [ "$name" = plot ] || [ "$name" = lib ] && continue
    selected "$name" || continue
    table=$OUT/$name.md
    marker=$(mktemp /tmp/hg-bench-mark-XXXXXX)
    echo "== $name ($(date -u +%T))" >&2
    start=$(date +%s)
    bash "$script" >"$LOGS/$name.out" 2>"$LOGS/$name.err"
    rc=$?
    cat "$LOGS/$name.out" "$LOGS/$name.err" >"$LOGS/$name.log"
    secs=$(($(date +%s) - start))
    fresh=no
    [ -f "$table" ] && [ "$table" -nt "$marker" ] && fresh=yes
    rm -f "$marker"
    [ $rc -ne 0 ] && failed=1
    STATUS+=("| $name | $([ $rc -eq 0 ] && echo ok || echo "failed (exit $rc)") | ${secs} s | $([ $fresh = yes ] && echo "$table" || echo "none (its output below)") |")
    echo "   exit $rc after ${secs} s, table: $fresh" >&2
    {
        echo
        echo "## $name"
        echo
        if [ $fresh = yes ]; then
            # the script's own headings one level down, under this one
            sed 's/^#/##/' "$table"
        elif [ $rc -eq 0 ]; then
            echo "No table file; what it printed (last 60 lines of $LOGS/$name.out):"
            echo
            echo '```'
            tail -n 60 "$LOGS/$name.out"
            echo '```'
        else
            echo "Failed (exit $rc). Last lines of $LOGS/$name.log:"
            echo
            echo '```'
            tail -n 30 "$LOGS/$name.log"
            echo '```'
        fi
    } >>"$TMPSUM"
done
PLOTS=""
if bash bench/plot.sh 2>"$LOGS/plot.log"; then
    for p in cache_hits_latency budget_timeline; do
        [ -f "$OUT/$p.png" ] && [ "$OUT/$p.png" -nt "$TMPSUM" ] && PLOTS="$PLOTS![$p]($p.png) "
    done
else
    echo "   plots: none ($(tail -n1 "$LOGS/plot.log"))" >&2
fi
{
    echo "# hotgate benchmarks: $(date -u +%FT%TZ)"
    echo
    echo "hotgate $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- src 2>/dev/null || echo '+dirty src') ($BUILD_DIR), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| bench | status | time | table |"
    echo "|---|---|---:|---|"
    printf '%s\n' "${STATUS[@]}"
    [ -n "$PLOTS" ] && { echo; echo "$PLOTS"; }
    cat "$TMPSUM"
} >"$SUMMARY"
echo "summary: $SUMMARY" >&2
exit $failed
