#!/usr/bin/env python3
"""fleet_rate: the load of bench/fleet.sh's section 3 (stdlib only).

Sends N distinct POST /v1/query requests spread round-robin over several hotgate instances
(C keep-alive connections per instance, one thread each) while a side thread samples the
simulator's GET /_sim/stats every 0.25 s. Prints one JSON object: upstream requests and 429s
per second over time (the global rate timeline), client 429s per second, totals, makespan.
"""
import argparse
import http.client
import json
import threading
import time


def sim_counts(base_port):
    c = http.client.HTTPConnection("127.0.0.1", base_port, timeout=5)
    try:
        c.request("GET", "/_sim/stats")
        s = json.loads(c.getresponse().read() or b"{}")
    finally:
        c.close()

    def walk(o, key):
        if isinstance(o, dict):
            return sum((v if k == key and isinstance(v, int) else walk(v, key)) for k, v in o.items())
        if isinstance(o, list):
            return sum(walk(v, key) for v in o)
        return 0

    return walk(s.get("tokens", {}), "requests"), s.get("responses_429", 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", required=True, help="hotgate ports, comma-separated")
    ap.add_argument("--sim-port", type=int, required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("-n", type=int, default=600)
    ap.add_argument("-c", type=int, default=10, help="connections per instance")
    ap.add_argument("--offset", type=int, default=0)
    a = ap.parse_args()
    ports = [int(p) for p in a.ports.split(",")]
    lock = threading.Lock()
    st = {"next": 0, "status": {}, "t429": [], "errors": 0}

    def worker(port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while True:
            with lock:
                i = st["next"]
                if i >= a.n:
                    break
                st["next"] += 1
            body = json.dumps({"sql": "SELECT %d" % (a.offset + i)})
            try:
                conn.request("POST", "/v1/query", body, {"Authorization": "Bearer " + a.key,
                                                         "Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                code = r.status
            except Exception:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                code = "error"
            with lock:
                st["status"][code] = st["status"].get(code, 0) + 1
                if code == 429:
                    st["t429"].append(time.monotonic())
        conn.close()

    samples = []
    done = threading.Event()

    def sampler():
        while not done.is_set():
            try:
                samples.append((time.monotonic(),) + sim_counts(a.sim_port))
            except Exception:
                pass
            done.wait(0.25)

    sth = threading.Thread(target=sampler)
    sth.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    ths = [threading.Thread(target=worker, args=(p,)) for p in ports for _ in range(a.c)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    t1 = time.monotonic()
    time.sleep(0.3)
    done.set()
    sth.join()
    samples.append((time.monotonic(),) + sim_counts(a.sim_port))
    # per second from the start of the run: upstream requests and 429s (from the samples)
    secs = int(t1 - t0) + 1
    per_s, per_s_429 = [], []
    for k in range(secs):
        lo, hi = t0 + k, t0 + k + 1

        def at(t):  # counts at time t (the last sample at or before it)
            best = samples[0]
            for s in samples:
                if s[0] <= t:
                    best = s
            return best

        r0, r1 = at(lo), at(hi)
        per_s.append(r1[1] - r0[1])
        per_s_429.append(r1[2] - r0[2])
    c429 = [0] * secs
    for t in st["t429"]:
        c429[min(secs - 1, max(0, int(t - t0)))] += 1
    peak = 0.0
    for i, (ta, ra, _) in enumerate(samples):
        for tb, rb, _ in samples[i + 1:]:
            if tb - ta >= 1.0:
                peak = max(peak, (rb - ra) / (tb - ta))
                break
    base = [s for s in samples if s[0] <= t0][-1] if any(s[0] <= t0 for s in samples) else samples[0]
    print(json.dumps({
        "n": a.n, "instances": len(ports), "conns_per_instance": a.c,
        "makespan_s": round(t1 - t0, 2),
        "status": {str(k): v for k, v in st["status"].items()},
        "client_429": len(st["t429"]),
        "upstream_requests": samples[-1][1] - base[1],
        "upstream_429": samples[-1][2] - base[2],
        "upstream_mean_per_s": round((samples[-1][1] - base[1]) / (t1 - t0), 1),
        "upstream_max_1s": round(peak, 1),
        "upstream_per_s": per_s, "upstream_429_per_s": per_s_429, "client_429_per_s": c429,
    }))


if __name__ == "__main__":
    main()
