/*
 * ready: GET /readyz on the admin listener (no token, like /healthz), for load balancers
 * and orchestrators that should send traffic only to a gateway that can serve it.
 *
 * 200 {"status":"ready"} when all hold:
 *   - the cache is open (or disabled);
 *   - the upstream answered (any HTTP status) within the last READY_FRESH_MS, and no
 *     exchange failed to reach it (connect/TLS error, timeout, reset) since that answer;
 *   - the process is not draining (SIGTERM).
 * Otherwise 503 {"status":"not_ready","reason":"..."} (reasons: "draining", "cache not
 * open", "upstream not answered yet", "upstream unreachable: <outcome>", "upstream quiet").
 *
 * Every request's upstream exchange counts (ready_upstream_seen, from metrics). Once
 * /readyz has been asked (a gateway nobody watches sends nothing of its own), a timer on the
 * admin thread sends a cheap probe when no exchange answered for READY_PROBE_IDLE_MS or the
 * last one failed: GET <upstream>/v1/workspaces without a token (the API answers 401:
 * reachable; no token is spent and no budget is charged), one at a time. The first /readyz
 * probes at once and answers from what is known so far (after an idle start: 503 "upstream
 * not answered yet" until the probe's answer).
 *
 * Threading: ready_upstream_seen from any thread (atomics); the handler and the probe on
 * the admin thread (worker 0); ready_start/ready_stop on the main thread around the
 * server's life.
 */
#ifndef HG_READY_H
#define HG_READY_H

#include "upstream.h"

#define READY_FRESH_MS 10000
#define READY_PROBE_IDLE_MS 2000

/* Register /readyz (before server_start). */
void ready_init(void);
/* Learn the admin thread's base (after server_start); the probe starts with the first
 * /readyz. */
void ready_start(void);
/* Stop it (before server_stop). */
void ready_shutdown(void);

/* An upstream exchange ended with o (metrics_upstream_done calls it). */
void ready_upstream_seen(enum upstream_outcome o);

#endif
