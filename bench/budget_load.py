#!/usr/bin/env python3
"""budget_load: the load generator of bench/budget.sh (stdlib only).

Sends N distinct POST /v1/query requests ("SELECT <offset+i>") with C keep-alive
connections (one thread each) to a base URL, optionally retrying 429s the way the official
clients do (honouring Retry-After), while a side thread samples the simulator's
GET /_sim/stats once a second to get the upstream's per-second request and 429 counts.
Prints one JSON object with the results.
"""
import argparse
import http.client
import json
import threading
import time
import urllib.parse


def sim_counts(stats):
    """(requests, 429s) from the sim's stats document, whatever its nesting."""

    def walk(o, key):
        if isinstance(o, dict):
            return sum((v if k == key and isinstance(v, int) else walk(v, key))
                       for k, v in o.items())
        if isinstance(o, list):
            return sum(walk(v, key) for v in o)
        return 0

    return walk(stats.get("tokens", {}), "requests"), stats.get("responses_429", 0)


def get_json(base, path):
    u = urllib.parse.urlsplit(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return json.loads(r.read() or b"{}")
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--sim", required=True, help="sim base URL for /_sim/stats")
    ap.add_argument("--key", required=True)
    ap.add_argument("--workspace", default=None)
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("-c", type=int, default=50)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--retry-429", action="store_true",
                    help="retry 429s after Retry-After, like the official clients")
    ap.add_argument("--admin", default=None, help="hotgate admin URL for /admin/budget")
    ap.add_argument("--inject-429-at", type=float, default=None,
                    help="seconds into the run: make the sim answer its next request 429 "
                    "with Retry-After: 1 once (POST /_sim/faults), a lone shed")
    a = ap.parse_args()

    u = urllib.parse.urlsplit(a.url)
    lock = threading.Lock()
    state = {"next": 0, "status": {}, "client_429": 0, "t429": [], "lat": [], "errors": 0}
    done_flag = threading.Event()

    def worker():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
        while True:
            with lock:
                i = state["next"]
                if i >= a.n:
                    break
                state["next"] += 1
            body = json.dumps({"sql": "SELECT %d" % (a.offset + i)})
            hdrs = {"Authorization": "Bearer " + a.key, "Content-Type": "application/json"}
            if a.workspace:
                hdrs["X-Workspace-Id"] = a.workspace
            t0 = time.monotonic()
            while True:
                try:
                    conn.request("POST", "/v1/query", body, hdrs)
                    r = conn.getresponse()
                    r.read()
                    st = r.status
                    ra = r.getheader("Retry-After")
                except Exception:
                    conn.close()
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
                    with lock:
                        state["errors"] += 1
                    st, ra = None, None
                    time.sleep(0.05)
                    continue
                if st == 429:
                    with lock:
                        state["client_429"] += 1
                        state["t429"].append(time.monotonic())
                    if a.retry_429:
                        try:
                            time.sleep(max(0.0, float(ra)))
                        except (TypeError, ValueError):
                            time.sleep(1.0)
                        continue
                break
            with lock:
                state["status"][st] = state["status"].get(st, 0) + 1
                state["lat"].append(time.monotonic() - t0)
        conn.close()

    samples = []
    effs = []
    admin_last = {}
    stalls = []
    t_base = time.monotonic()

    def sampler():
        while not done_flag.is_set():
            try:
                t0 = time.monotonic()
                s = get_json(a.sim, "/_sim/stats")
                t1 = time.monotonic()
                samples.append((t1,) + sim_counts(s))
                if t1 - t0 > 0.1:  # the sim is one thread: a slow answer is a stalled sim
                    stalls.append((round(t0 - t_base, 1), round(t1 - t0, 3)))
            except Exception:
                pass
            if a.admin:
                try:
                    b = get_json(a.admin, "/admin/budget")
                    effs.append(b["credentials"][0]["effective_rate"])
                    admin_last.clear()
                    admin_last.update(b["credentials"][0])
                except Exception:
                    pass
            done_flag.wait(0.25)

    st = threading.Thread(target=sampler)
    st.start()
    time.sleep(0.2)
    t_start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(a.c)]
    if a.inject_429_at is not None:
        def inject():
            time.sleep(a.inject_429_at)
            u2 = urllib.parse.urlsplit(a.sim)
            c = http.client.HTTPConnection(u2.hostname, u2.port, timeout=5)
            c.request("POST", "/_sim/faults", json.dumps({"retry_after": {"count": 1, "seconds": 1}}),
                      {"Content-Type": "application/json"})
            c.getresponse().read()
            c.close()
        threads.append(threading.Thread(target=inject))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_end = time.monotonic()
    time.sleep(0.3)
    done_flag.set()
    st.join()
    try:
        s = get_json(a.sim, "/_sim/stats")
        samples.append((time.monotonic(),) + sim_counts(s))
    except Exception:
        pass

    # per-second counts: consecutive 1 s steps (every 4th sample) for the series, and the
    # max over sliding windows of >= 1 s starting at every sample for the peak
    per_sec, per_sec_429 = [], []
    series = samples[::4]
    for (t0, r0, x0), (t1, r1, x1) in zip(series, series[1:]):
        dt = t1 - t0
        if dt > 0:
            per_sec.append(round((r1 - r0) / dt, 1))
            per_sec_429.append(round((x1 - x0) / dt, 1))
    peak = None
    for i, (t0, r0, _) in enumerate(samples):
        for t1, r1, _ in samples[i + 1:]:
            if t1 - t0 >= 1.0:
                v = (r1 - r0) / (t1 - t0)
                peak = v if peak is None or v > peak else peak
                break
    lat = sorted(state["lat"])
    # client-seen 429s per second from the start of the run (for bench/plot.sh)
    c429 = [0] * (int(t_end - t_start) + 1)
    for t in state["t429"]:
        c429[min(len(c429) - 1, max(0, int(t - t_start)))] += 1

    def pct(p):
        return round(lat[min(len(lat) - 1, int(len(lat) * p))], 3) if lat else None

    out = {
        "n": a.n,
        "conns": a.c,
        "makespan_s": round(t_end - t_start, 2),
        "status": {str(k): v for k, v in sorted(state["status"].items(), key=lambda x: str(x))},
        "client_429": state["client_429"],
        "errors": state["errors"],
        "upstream_requests": (samples[-1][1] - samples[0][1]) if samples else None,
        "upstream_429": (samples[-1][2] - samples[0][2]) if samples else None,
        "upstream_per_s": per_sec,
        "upstream_per_s_start": round(series[0][0] - t_start, 2) if series else 0,
        "client_429_per_s": c429,
        "upstream_429_per_s": per_sec_429,
        "upstream_max_1s": round(peak, 1) if peak is not None else None,
        "latency_p50_s": pct(0.50),
        "latency_p99_s": pct(0.99),
        "effective_rate_min": min(effs) if effs else None,
        "rate_decreases": admin_last.get("rate_decreases"),
        "upstream_shed": admin_last.get("upstream_shed"),
        "sim_stalls_over_100ms": stalls,
        "upstream_429_at_s": [round(t - t_base, 1) for (t, _, x), (_, _, x0)
                              in zip(samples[1:], samples) if x > x0],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
