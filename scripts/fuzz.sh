#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang into ${BUILD_DIR:-build-fuzz}
# and runs each for SECONDS (default 60), one job each, one after the other.
#
#   scripts/fuzz.sh [SECONDS] [target ...]      e.g. scripts/fuzz.sh 180 fuzz_http1
#
# The whole of hgcore is instrumented for coverage (-fsanitize=fuzzer-no-link), not just the
# target file, and built with ASan + UBSan and assertions on. Seeds come from
# tests/fuzz/corpus/<target>/ (read-only); the working corpus grows in
# ${BUILD_DIR}/corpus/<target>/ and crashes land in ${BUILD_DIR}/artifacts/<target>/.
# A finding: add the input to tests/unit/test_regress_fuzz.c as a regression test.
# Environment: FUZZ_ARGS (more libFuzzer flags), NICE (default 10), FUZZ_MERGE=1: afterwards
# merge the inputs that add edge coverage into tests/fuzz/corpus/<target>/ (-merge=1 with
# -use_counters=0, inputs up to 2 KiB: the repo corpora stay small): commit what it adds.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
[ $# -gt 0 ] && shift
BUILD_DIR=${BUILD_DIR:-build-fuzz}
san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
CC=${CC:-clang} cmake -S . -B "$BUILD_DIR" -DHG_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g -fno-omit-frame-pointer" "-DCMAKE_C_FLAGS=$san" \
    "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined" >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do
        targets+=("$(basename "$f" .c)")
    done
fi
cmake --build "$BUILD_DIR" -j"$(nproc)" --target "${targets[@]}"

declare -A maxlen=([fuzz_http1]=20000 [fuzz_h1resp]=70000 [fuzz_config]=8192 [fuzz_entry]=8192)
rc=0
for t in "${targets[@]}"; do
    corpus=$BUILD_DIR/corpus/$t
    art=$BUILD_DIR/artifacts/$t
    mkdir -p "$corpus" "$art"
    seeds=()
    [ -d "tests/fuzz/corpus/$t" ] && seeds=("tests/fuzz/corpus/$t")
    echo "== $t for ${secs}s"
    if ! nice -n "${NICE:-10}" "$BUILD_DIR/$t" -max_total_time="$secs" -jobs=1 -workers=1 \
        -max_len="${maxlen[$t]:-4096}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$art/" ${FUZZ_ARGS:-} "$corpus" "${seeds[@]}" \
        >"$BUILD_DIR/$t.log" 2>&1; then
        echo "!! $t found something: $BUILD_DIR/$t.log, $art/" >&2
        grep -E "ERROR|SUMMARY|runtime error|deadly signal" "$BUILD_DIR/$t.log" | head -5 >&2
        rc=1
    fi
    grep -E "^stat::(number_of_executed_units|peak_rss_mb)|DONE" "$BUILD_DIR/$t.log" | tail -3
    if [ "${FUZZ_MERGE:-0}" = 1 ]; then
        mkdir -p "tests/fuzz/corpus/$t"
        before=$(ls "tests/fuzz/corpus/$t" | wc -l)
        "$BUILD_DIR/$t" -merge=1 -use_counters=0 -max_len=2048 "tests/fuzz/corpus/$t" "$corpus" \
            >"$BUILD_DIR/$t.merge.log" 2>&1 || rc=1
        echo "   corpus tests/fuzz/corpus/$t: $before -> $(ls "tests/fuzz/corpus/$t" | wc -l) files"
    fi
done
exit $rc
