#!/usr/bin/env bash
# check-layers: the structure rules of src/, checked in CI (scripts/test.sh, after the build).
#
#  1. Layers. Every module (a file stem: foo.c + foo.h) sits in one layer of the order below,
#     top first. A module may include its own layer and the layers below it, never one above.
#     A file whose module is not listed fails too: place a new module when you add it.
#  2. Function length. No function in src/*.c is longer than MAX_FN_LINES lines (from its
#     opening to its closing brace), except the data tables and the few functions listed in
#     FN_ALLOW with a reason each.
#
# Usage: scripts/check-layers.sh [SRC_DIR]   (default: src/ next to this script)
# Exit 0 when clean; 1 with one line per violation otherwise.
set -euo pipefail

SRC=${1:-$(cd "$(dirname "$0")/.." && pwd)/src}
MAX_FN_LINES=${MAX_FN_LINES:-80}

# The layers, top (1) to bottom. Patterns are shell globs over module names; the first
# layer whose pattern matches wins (exact names are listed before globs).
LAYERS=(
  "main"                                          # 1 the process: options, signals, start/stop
  "reload ready"                                  # 2 process-level features over the server
  "server stages"                                 # 3 workers, listeners, drain; the stage table
  "conn"                                          # 4 client connections (socket I/O, bodies)
  "auth_stage route_stage budget_stage upstream_stage cache cache_*" # 5 the stages
  "pipeline"                                      # 6 the request object's life, the stage driver
  "admin upstream upstream_* redis fleet_* gbudget" # 7 I/O services: admin listener, upstream clients, Redis, the fleet tier and the fleet budget on it
  "auth route budget fairq coalesce cachekey bodykey sqlkey entry store store_* connmap retry_after" # 8 policies and data
  "http1 h1resp"                                  # 9 HTTP/1.1 wire formats
  "req log metrics cfgsnap hdr path outbuf check" # 10 the request as data, logging, counters, small rules
  "config util"                                   # 11 configuration, utilities
)

# Functions allowed over MAX_FN_LINES: "file:function  reason".
FN_ALLOW=(
)

# TEMPORARY (arch-cache splits these; the lead empties this list when merging issue 11).
FN_ALLOW_TEMP=(
)

layer_of() {
  local m=$1 i pat
  for i in "${!LAYERS[@]}"; do
    for pat in ${LAYERS[$i]}; do
      # shellcheck disable=SC2053
      if [[ $m == $pat ]]; then
        echo $((i + 1))
        return
      fi
    done
  done
  echo 0
}

fail=0
say() {
  echo "check-layers: $*"
  fail=1
}

# 1. includes
for f in "$SRC"/*.c "$SRC"/*.h; do
  [ -e "$f" ] || continue
  base=$(basename "$f")
  mod=${base%.*}
  lm=$(layer_of "$mod")
  if [ "$lm" = 0 ]; then
    say "$base: module '$mod' is in no layer (add it to LAYERS in scripts/check-layers.sh and to README's Architecture)"
    continue
  fi
  while IFS= read -r inc; do
    dep=${inc%.h}
    [ "$dep" = "$mod" ] && continue
    [ -e "$SRC/$inc" ] || continue # not a src/ header
    ld=$(layer_of "$dep")
    if [ "$ld" = 0 ]; then
      say "$base includes $inc: module '$dep' is in no layer"
    elif [ "$ld" -lt "$lm" ]; then
      say "$base (layer $lm) includes $inc (layer $ld, above it)"
    fi
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done

# 2. function length: a definition starts with a line at column 0 naming a function, its
# body opens with "{" alone at column 0 and closes with "}" at column 0 (.clang-format's
# Linux braces). Data tables ("= {" initialisers) are not functions.
allowed() {
  local key=$1 a
  for a in "${FN_ALLOW[@]}" "${FN_ALLOW_TEMP[@]}"; do
    [ "${a%% *}" = "$key" ] && return 0
  done
  return 1
}
while IFS=$'\t' read -r file fn len; do
  allowed "$file:$fn" && continue
  say "$file: $fn() is $len lines (limit $MAX_FN_LINES; split it, or list it in FN_ALLOW with a reason)"
done < <(for f in "$SRC"/*.c; do
  awk -v file="$(basename "$f")" -v max="$MAX_FN_LINES" '
    /^[A-Za-z_].*\(/ && !/;[[:space:]]*$/ && !/=/ {
      s = $0; sub(/\(.*/, "", s); n = split(s, w, /[ \t*]+/); name = w[n]; next_is_fn = 1; next
    }
    /^\{[[:space:]]*$/ && next_is_fn && name != "" { start = NR; infn = 1; next_is_fn = 0; next }
    /^\}/ && infn {
      len = NR - start - 1
      if (len > max) printf "%s\t%s\t%d\n", file, name, len
      infn = 0; name = ""; next
    }
    !infn && !/^[[:space:]]/ && !/^\{/ { if (!/,[[:space:]]*$/ && !/\)[[:space:]]*$/) next_is_fn = 0 }
  ' "$f"
done)

if [ "$fail" = 0 ]; then
  echo "check-layers: OK (${#LAYERS[@]} layers, functions <= $MAX_FN_LINES lines)"
fi
exit "$fail"
