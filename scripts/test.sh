#!/usr/bin/env bash
# Installs packages, builds, and runs every test: cmocka unit tests and the integration tests
# that start hotdata-sim, hotgate and redis-server on free loopback ports.
# Then the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer, and the
# Debian package: built, installed, checked (scripts/package-check.sh; SKIP_PACKAGE=1 skips).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
(cd build && ctest --output-on-failure -j2 ${CTEST_ARGS:-})
if [ "${SKIP_ASAN:-0}" != 1 ]; then
  BUILD_DIR=build-asan BUILD_TYPE=Debug ./scripts/build.sh -DHG_SANITIZE=ON
  (cd build-asan && ctest --output-on-failure -j2 -L unit)
fi
if [ "${SKIP_PACKAGE:-0}" != 1 ]; then
  ./scripts/package-check.sh
fi
