#!/usr/bin/env bash
# check_conf_docs.sh CONFIG_C CONF MAN5 GEN RELOAD_C
# Every key src/config.c accepts (the strcmp(name, "...") tests of its handle_<section>
# functions) is documented in conf/hotgate.conf with its default, and so in the generated
# hotgate.conf(5); and conf/hotgate.conf documents no key that config.c does not accept.
# Every key of [server], [admin], [upstream], [cache] and [redis] is classified in
# src/reload.c: applied by a reload (live_keys) or compared as "needs restart"
# (reload_static_diff). A key added to config.c without both fails here.
set -euo pipefail
config_c=$1 conf=$2 man5=$3 gen=$4 reload_c=$5
code=$(awk '
    /^static int handle_[a-z]+\(/ { match($0, /handle_[a-z]+/); sec = substr($0, RSTART + 7, RLENGTH - 7) }
    /^}/ { sec = "" }
    sec != "" {
        line = $0
        while (match(line, /str(n)?cmp\(name, "[a-z0-9_.]+"/)) {
            s = substr(line, RSTART, RLENGTH); sub(/^[^"]*"/, "", s); sub(/"$/, "", s)
            print sec, s
            line = substr(line, RSTART + RLENGTH)
        }
    }' "$config_c" | sort -u)
docs=$(python3 "$gen" --keys "$conf" | sort -u)
[ -n "$code" ] || { echo "no keys found in $config_c (did its handlers change shape?)"; exit 1; }
fail=0
while read -r sec key; do
    if [[ $key == *. ]]; then # a prefix (ttl.<class>)
        grep -q "^$sec ${key//./\\.}[a-z_]" <<<"$docs" || { echo "$config_c: [$sec] $key<name> is not documented in $conf"; fail=1; }
    else
        grep -qx "$sec $key" <<<"$docs" || { echo "$config_c: [$sec] $key is not documented in $conf (add a commented line with its default)"; fail=1; }
    fi
done <<<"$code"
while read -r sec key; do
    if grep -qx "$sec $key" <<<"$code"; then continue; fi
    prefix="${key%%.*}."
    if [[ $key == *.* ]] && grep -qx "$sec $prefix" <<<"$code"; then continue; fi
    echo "$conf: [$sec] $key is documented but src/config.c does not accept it"
    fail=1
done <<<"$docs"
while read -r sec key; do
    grep -qxF ".B $key" "$man5" || { echo "$man5: no entry for [$sec] $key (stale build?)"; fail=1; }
done <<<"$docs"
while read -r sec key; do
    case $sec in server | admin | upstream | cache | redis) ;; *) continue ;; esac
    grep -qF "\"[$sec] $key\"" "$reload_c" ||
        { echo "$reload_c: [$sec] $key is not classified for reload (live_keys, or a note() in reload_static_diff)"; fail=1; }
done <<<"$code"
n=$(wc -l <<<"$code")
[ $fail -eq 0 ] && echo "ok: $n keys of src/config.c documented in $conf and $man5"
exit $fail
