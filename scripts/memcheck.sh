#!/usr/bin/env bash
# Memory checking of the daemon and the simulator under the integration tests.
#
#   scripts/memcheck.sh [asan] [ctest -R regex]
#       builds hotgate + hotdata-sim + the integration tests with -DHG_SANITIZE=ON (ASan +
#       UBSan) into ${BUILD_DIR:-build-asan-it} and runs the integration tests (or those
#       matching the regex) against those binaries. A sanitizer report in hotgate or the
#       sim makes it exit non-zero, so the test that started it fails (and its log, under
#       /tmp/hg-*, holds the report; the harness dumps the tail).
#
#   scripts/memcheck.sh valgrind [test_name ...]     (default: test_gw_passthrough)
#       builds without sanitizers into ${VG_BUILD_DIR:-build-vg} and runs each chosen
#       integration test with hotgate under valgrind (HG_WRAPPER, see harness.c). Reports
#       go to ${VG_LOG_DIR:-build-vg/valgrind}/<test>.<pid>.log; the script fails if any
#       report has errors or definitely/indirectly lost blocks.
#
# Environment: JOBS (ctest -j, default 1), VALGRIND_EXTRA (more valgrind options).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-asan}
[ $# -gt 0 ] && shift

case "$mode" in
asan)
    BUILD_DIR=${BUILD_DIR:-build-asan-it}
    # -Wformat-truncation stays a warning here (both modes): GCC's range analysis at -O0
    # flags snprintf calls in the test helpers that -O2 does not (gw_upstream.h)
    BUILD_DIR=$BUILD_DIR BUILD_TYPE=${BUILD_TYPE:-Debug} ./scripts/build.sh -DHG_SANITIZE=ON \
        "-DCMAKE_C_FLAGS=${MEMCHECK_CFLAGS:--Wno-error=format-truncation}"
    # A small quarantine (16 MiB, ASan's default is 256): test_gw_stream asserts RSS growth
    # under 64 MiB while 1 GiB streams through, and freed buffers sit in the quarantine.
    # Reports go to files (log_path), one per process, so they are found even when a test
    # did not fail on them (a leak reported at shutdown after the test's last assertion).
    logdir=$(cd "$BUILD_DIR" && pwd)/sanitizer-logs
    rm -rf "$logdir" && mkdir -p "$logdir"
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0:quarantine_size_mb=16}:log_exe_name=1:log_path=$logdir/asan
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}:log_path=$logdir/ubsan
    regex=${1:-}
    args=(--output-on-failure -L integration -j"${JOBS:-1}" --timeout 1200)
    [ -n "$regex" ] && args+=(-R "$regex")
    rc=0
    (cd "$BUILD_DIR" && ctest "${args[@]}") || rc=$?
    if compgen -G "$logdir/*" >/dev/null; then
        echo "memcheck: sanitizer reports:" >&2
        for f in "$logdir"/*; do
            echo "---- $f" >&2
            head -60 "$f" >&2
        done
        rc=1
    fi
    exit $rc
    ;;
valgrind)
    command -v valgrind >/dev/null || { echo "memcheck: valgrind not installed" >&2; exit 2; }
    VG_BUILD_DIR=${VG_BUILD_DIR:-build-vg}
    BUILD_DIR=$VG_BUILD_DIR BUILD_TYPE=${BUILD_TYPE:-Debug} ./scripts/build.sh \
        "-DCMAKE_C_FLAGS=${MEMCHECK_CFLAGS:--Wno-error=format-truncation}"
    logdir=${VG_LOG_DIR:-$VG_BUILD_DIR/valgrind}
    mkdir -p "$logdir"
    logdir=$(cd "$logdir" && pwd)
    tests=("$@")
    [ ${#tests[@]} -eq 0 ] && tests=(test_gw_passthrough)
    rc=0
    for t in "${tests[@]}"; do
        rm -f "$logdir/$t".*.log
        export HG_WRAPPER="valgrind --leak-check=full --show-leak-kinds=definite,indirect \
--errors-for-leak-kinds=definite,indirect --error-exitcode=99 --num-callers=30 \
--log-file=$logdir/$t.%p.log ${VALGRIND_EXTRA:-}"
        echo "== $t under valgrind"
        "./$VG_BUILD_DIR/it_$t" || { echo "memcheck: $t failed under valgrind" >&2; rc=1; }
        for f in "$logdir/$t".*.log; do
            [ -e "$f" ] || { echo "memcheck: no valgrind log for $t" >&2; rc=1; continue; }
            grep -E "ERROR SUMMARY|definitely lost|indirectly lost" "$f" | sed "s|^|$(basename "$f"): |"
            if ! grep -q "ERROR SUMMARY: 0 errors" "$f"; then
                echo "memcheck: errors in $f" >&2
                rc=1
            fi
        done
    done
    exit $rc
    ;;
*)
    echo "usage: $0 [asan [ctest-regex] | valgrind [test_name ...]]" >&2
    exit 2
    ;;
esac
