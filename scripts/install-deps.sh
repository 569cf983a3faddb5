#!/usr/bin/env bash
# Installs the Debian 12 packages hotgate needs to build, test and benchmark.
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang-format
      libevent-dev libcurl4-openssl-dev libjansson-dev liblmdb-dev libhiredis-dev
      libcmocka-dev libinih-dev libsqlite3-dev libssl-dev libsystemd-dev
      redis-server nghttp2-proxy openssl curl wrk lmdb-utils python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
