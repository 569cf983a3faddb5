#!/usr/bin/env bash
# check_layers_test: scripts/check-layers.sh passes on src/ and fails on planted faults in a
# temporary copy of it: an include of a module above (pipeline.c including server.h), a
# module in no layer, and a function over the length limit.
# Usage: check_layers_test.sh SCRIPT SRC_DIR
set -uo pipefail
script=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "check_layers_test: $*"
  exit 1
}

"$script" "$src" >/dev/null || fail "the real tree does not pass"

cp -r "$src" "$tmp/a"
sed -i '0,/^#include "pipeline.h"/s//#include "pipeline.h"\n#include "server.h"/' "$tmp/a/pipeline.c"
out=$("$script" "$tmp/a") && fail "an upward include (pipeline.c -> server.h) passed"
grep -q 'pipeline.c (layer [0-9]*) includes server.h' <<<"$out" || fail "wrong message: $out"

cp -r "$src" "$tmp/b"
printf '#include "util.h"\nint newmod_x(void)\n{\n    return 0;\n}\n' >"$tmp/b/newmod.c"
out=$("$script" "$tmp/b") && fail "a module in no layer passed"
grep -q "module 'newmod' is in no layer" <<<"$out" || fail "wrong message: $out"

cp -r "$src" "$tmp/c"
{
  printf 'int long_fn(int x)\n{\n'
  for i in $(seq 1 81); do printf '    x += %d;\n' "$i"; done
  printf '    return x;\n}\n'
} >>"$tmp/c/util.c"
out=$("$script" "$tmp/c") && fail "an 83-line function passed"
grep -q 'util.c: long_fn() is 82 lines' <<<"$out" || fail "wrong message: $out"
echo "check_layers_test: OK"
