#!/usr/bin/env bash
# scripts/package.sh: build the Debian package of hotgate (cpack -G DEB) in a build directory
# of its own, configured with the /usr prefix a package needs (the unit and the man pages
# name /usr/bin/hotgate and /etc/hotgate/hotgate.conf). Prints the path of the .deb.
#   PKG_BUILD_DIR (default build-pkg)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${PKG_BUILD_DIR:-build-pkg}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
cmake --build "$dir" -j"$(nproc)" --target hotgate hotdata-sim man >/dev/null
(cd "$dir" && cpack -G DEB >/dev/null)
deb=$(ls -t "$dir"/hotgate_*.deb | head -n1)
dpkg-deb --info "$deb" | sed -n '/Package:/,$p' >&2
echo "$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")"
