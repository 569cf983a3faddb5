#!/usr/bin/env bash
# Installs packages, builds, checks src/'s layers (scripts/check-layers.sh), and runs every test: cmocka unit tests and the integration tests
# that start hotdata-sim, hotgate and redis-server on free loopback ports.
# Then the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer, every
# libFuzzer target for FUZZ_SECONDS (default 25; SKIP_FUZZ=1 skips), and the
# Debian package: built, installed, checked (scripts/package-check.sh; SKIP_PACKAGE=1 skips).
# The soak (tests/integration/test_soak.c, 60 s; HG_SOAK_SECONDS) and the kill -9 crash loop
# (test_cache_crash, 20 rounds; HG_CRASH_LOOPS) run inside ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
# the layer order of src/ and the function-length limit (README "Architecture")
./scripts/check-layers.sh
./scripts/check-sim-includes.sh
(cd build && ctest --output-on-failure -j2 ${CTEST_ARGS:-})
if [ "${SKIP_ASAN:-0}" != 1 ]; then
  BUILD_DIR=build-asan BUILD_TYPE=Debug ./scripts/build.sh -DHG_SANITIZE=ON
  (cd build-asan && ctest --output-on-failure -j2 -L unit)
fi
if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  # every libFuzzer target for a bounded time (FUZZ_SECONDS each), seeded from the corpora
  # in tests/fuzz/corpus/; a finding fails CI (scripts/fuzz.sh prints where it is)
  NICE=0 ./scripts/fuzz.sh "${FUZZ_SECONDS:-25}"
fi
if [ "${SKIP_PACKAGE:-0}" != 1 ]; then
  ./scripts/package-check.sh
fi
