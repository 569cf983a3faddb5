#!/usr/bin/env bash
# check-sim-includes: fails when the simulator's files include each other in a cycle, or
# when sim/ uses weak symbols again.
#
# A module is sim/X.c together with its header sim/sim_X.h; a header without such a .c
# (sim.h, sim_types.h, sim_int.h, sim_res.h, sim_areas.h) is a node of its own. Every
# `#include "..."` of a file in sim/ naming a header in sim/ is an edge from the file's
# module to the header's module; tsort(1) finds the loops. A loop means two parts of the
# simulator depend on each other: move the declaration to the right header, or move the
# shared piece into a module of its own (see "Layout" in sim/README.md).
set -euo pipefail
cd "$(dirname "$0")/../sim"

module() { # file name -> module name
    local f=$1
    case $f in
    *.c) echo "${f%.c}" ;;
    sim_*.h)
        local base=${f#sim_}
        base=${base%.h}
        if [ -f "$base.c" ]; then echo "$base"; else echo "$f"; fi
        ;;
    *) echo "$f" ;;
    esac
}

edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
for f in *.c *.h; do
    from=$(module "$f")
    echo "$from $from" >>"$edges"
    sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" |
        while read -r h; do
            [ -f "$h" ] || continue # src/ headers (util.h) are not the simulator's
            to=$(module "$h")
            [ "$to" = "$from" ] || echo "$from $to"
        done >>"$edges"
done

status=0
if ! tsort "$edges" >/dev/null 2>"$edges.err"; then
    echo "check-sim-includes: include cycle among sim/ modules:" >&2
    grep -v '^tsort: .*loop:$' "$edges.err" | sed 's/^tsort: /  /' >&2
    status=1
fi
rm -f "$edges.err"
if grep -n '__attribute__((weak))\|#pragma weak' -- *.c *.h >&2; then
    echo "check-sim-includes: weak symbols in sim/ (register or call the real function)" >&2
    status=1
fi
[ $status -eq 0 ] && echo "check-sim-includes: $(ls -- *.c *.h | wc -l) files, no include cycle"
exit $status
