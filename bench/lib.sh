# bench/lib.sh: helpers the bench scripts and scripts/profile.sh share (sourced, after the
# script has cd'ed to the repository root).

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()'; }

# Wait until something listens on 127.0.0.1:PORT, up to SECONDS (default 60: valgrind starts
# are slow). 1 when it never does.
wait_port() {
    local n=$(( ${2:-60} * 20 ))
    for _ in $(seq 1 "$n"); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done
    return 1
}

# A process and all its descendants.
tree_pids() { local p=$1 c; echo "$p"; for c in $(pgrep -P "$p" || true); do tree_pids "$c"; done; }

# utime+stime (clock ticks) of a process and all its descendants (every thread of each).
cpu_ticks() {
    local t=0 p v
    for p in $(tree_pids "$1"); do
        v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12+$13}') || v=0
        t=$((t + ${v:-0}))
    done
    echo $t
}
