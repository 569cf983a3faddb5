#!/usr/bin/env bash
# scripts/package-check.sh: what CI does with the Debian package. Builds it
# (scripts/package.sh), installs it on this machine (apt-get install ./x.deb, so its
# Depends come from the archive), writes a token and checks:
#   - the files are where the unit and the man pages say (binaries, /etc/hotgate/hotgate.conf
#     as a conffile, the unit, README.md, man pages), the hotgate user exists;
#   - the unit is enabled and not started;
#   - hotgate --check-config /etc/hotgate/hotgate.conf passes (as the hotgate user too);
#   - systemd-analyze verify accepts the installed unit, and systemd-analyze security
#     rates its exposure below 2.0 (both offline: no running systemd needed; skipped with
#     the reason printed when systemd-analyze cannot run here).
# Needs root (sudo when not root). KEEP_INSTALLED=1 leaves the package installed.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
deb=$(./scripts/package.sh 2>/dev/null | tail -n1)
echo "package: $deb"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null
fail() { echo "FAIL: $*" >&2; exit 1; }
for f in /usr/bin/hotgate /usr/bin/hotdata-sim /etc/hotgate/hotgate.conf \
    /usr/lib/systemd/system/hotgate.service /usr/lib/sysusers.d/hotgate.conf \
    /usr/share/doc/hotgate/README.md /usr/share/man/man8/hotgate.8 \
    /usr/share/man/man5/hotgate.conf.5 /usr/share/man/man1/hotdata-sim.1; do
    [ -e "$f" ] || fail "$f is missing"
done
grep -qx /etc/hotgate/hotgate.conf /var/lib/dpkg/info/hotgate.conffiles ||
    fail "/etc/hotgate/hotgate.conf is not a conffile"
getent passwd hotgate >/dev/null || fail "no hotgate user"
[ -L /etc/systemd/system/multi-user.target.wants/hotgate.service ] || fail "unit not enabled"
if [ -d /run/systemd/system ]; then
    ! systemctl is-active --quiet hotgate || fail "the package started the unit"
fi
echo "installed: files in place, conffile, user hotgate, unit enabled and not started"

printf 'tok_package_check\n' | $SUDO install -m 600 -o hotgate -g hotgate /dev/stdin \
    /etc/hotgate/hotdata.token
$SUDO hotgate --check-config /etc/hotgate/hotgate.conf
# the unit's ExecStartPre runs it as the hotgate user: the token must be readable by it
$SUDO setpriv --reuid=hotgate --regid=hotgate --clear-groups \
    hotgate --check-config /etc/hotgate/hotgate.conf >/dev/null ||
    fail "--check-config fails as user hotgate"
if command -v man >/dev/null; then
    man -l /usr/share/man/man5/hotgate.conf.5 >/dev/null 2>&1 || fail "hotgate.conf(5) does not render"
fi

if ! command -v systemd-analyze >/dev/null; then
    echo "SKIP systemd-analyze: not installed (apt-get install systemd)"
elif ! out=$(systemd-analyze verify /usr/lib/systemd/system/hotgate.service 2>&1); then
    if grep -qiE 'failed to (connect|initialize)|not been booted|no such file or directory.*bus' <<<"$out"; then
        echo "SKIP systemd-analyze verify: cannot run here: $out"
    else
        fail "systemd-analyze verify: $out"
    fi
else
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
    echo "systemd-analyze verify: ok"
    score=$(systemd-analyze security --offline=true /usr/lib/systemd/system/hotgate.service 2>&1 |
        sed -n 's/.*Overall exposure level for hotgate.service: \([0-9.]*\).*/\1/p')
    [ -n "$score" ] || fail "systemd-analyze security gave no score"
    awk -v s="$score" 'BEGIN { exit !(s < 2.0) }' || fail "exposure $score is not below 2.0"
    echo "systemd-analyze security: exposure $score (< 2.0)"
fi

if [ "${KEEP_INSTALLED:-0}" != 1 ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq hotgate >/dev/null
    $SUDO rm -f /etc/hotgate/hotdata.token
    $SUDO rmdir /etc/hotgate 2>/dev/null || true
    echo "purged"
fi
echo "package check: ok"
