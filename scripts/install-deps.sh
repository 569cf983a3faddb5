#!/usr/bin/env bash
# Installs the Debian 12 packages hotgate needs to build, test and benchmark.
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang-format
      libevent-dev libcurl4-openssl-dev libjansson-dev liblmdb-dev libhiredis-dev
      libcmocka-dev libinih-dev libsqlite3-dev libssl-dev libsystemd-dev
      redis-server nghttp2-proxy haproxy openssl curl wrk lmdb-utils python3
      dpkg-dev systemd man-db gnuplot-nox
      clang libclang-rt-dev   # clang + libFuzzer: scripts/fuzz.sh (run by scripts/test.sh)
      postgresql postgresql-client libpq-dev)  # hotdata-sim's query engine (PostgreSQL 15)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian's haproxy package enables and starts a system haproxy service; the benches start
# their own (bench/passthrough.sh), so the system one must never hold ports or CPU. Without
# systemd (containers) the package's init script may have started it instead.
$SUDO systemctl disable --now haproxy 2>/dev/null || true
if [ ! -d /run/systemd/system ] && [ -x /etc/init.d/haproxy ]; then
  $SUDO /etc/init.d/haproxy stop >/dev/null 2>&1 || true
  $SUDO update-rc.d haproxy disable >/dev/null 2>&1 || true
fi
# Debian's postgresql package creates and starts a system cluster (postgresql@15-main); the
# simulator runs its own (DIR/pg, unix socket only), so the system one is not needed.
$SUDO systemctl disable --now postgresql 2>/dev/null || true
if [ ! -d /run/systemd/system ] && [ -x /etc/init.d/postgresql ]; then
  $SUDO /etc/init.d/postgresql stop >/dev/null 2>&1 || true
  $SUDO update-rc.d postgresql disable >/dev/null 2>&1 || true
fi
