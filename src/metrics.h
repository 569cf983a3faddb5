/*
 * metrics: process-wide counters and gauges, exposed as Prometheus text on the admin
 * listener (GET /metrics).
 *
 * The core's own series are fixed (see metrics.c); other modules add theirs with
 * metrics_register(): a function that appends Prometheus text to the scrape.
 * No label ever carries a token, a client key, SQL or a workspace-supplied string: labels
 * are status codes, outcome names and configured client names.
 *
 * Threading: all updates are relaxed atomics, callable from any thread. Registration
 * happens before server_start().
 */
#ifndef HG_METRICS_H
#define HG_METRICS_H

#include <stdint.h>

#include <event2/buffer.h>

struct hg_req;

enum metrics_counter {
    M_CONNECTIONS_ACCEPTED = 0,
    M_AUTH_UNAUTHORIZED,
    M_AUTH_FORBIDDEN,
    M_REQUESTS_REFUSED_PATH, /* 400 from path checks */
    M_REQUESTS_NOT_FOUND,    /* non-/v1 404 */
    M_UPSTREAM_RETRIES,
    M_UPSTREAM_CONNECTIONS, /* new upstream connections */
    M_CLIENT_ABORTS,
    M_BYTES_IN,
    M_BYTES_OUT,
    M_ACCEPT_FD_EXHAUSTED,           /* accept failed for lack of descriptors: paused */
    M_CONNECTIONS_IDLE_CLOSED_LIMIT, /* idle keep-alive closed at max_connections */
    M_CONNECTIONS_REFUSED_LIMIT,     /* 503 at max_connections, nothing idle to close */
    M_BODY_TIMEOUTS,                 /* 408 for a request body that stalled */
    M_HEADERS_DROPPED_UNDERSCORE,    /* request header names with '_' dropped */
    M__COUNT
};

enum metrics_gauge { G_CONNECTIONS_OPEN = 0, G_REQUESTS_INFLIGHT, G_UPSTREAM_INFLIGHT, G__COUNT };

void metrics_inc(enum metrics_counter c, uint64_t n);
void metrics_gauge_add(enum metrics_gauge g, int64_t d);

/* A finished request: status, latency and method class; called by the server. */
void metrics_request_done(const struct hg_req *req, uint64_t latency_us);

/* A finished upstream exchange: outcome is an enum upstream_outcome (upstream.h; metrics
 * sits below the upstream modules, so it takes the value as an int, 0..METRICS_OUTCOMES-1). */
#define METRICS_OUTCOMES 8
void metrics_upstream_done(int outcome, int http_status);

/* The label of each outcome for the scrape (upstream.c sets it) and an observer told of every
 * outcome (main.c sets ready.c's). Either may be NULL. */
void metrics_upstream_labels(const char *(*label)(int outcome), int n);
void metrics_upstream_observer(void (*fn)(int outcome));

/* Another module's series: fn appends Prometheus text (with # HELP/# TYPE) to out. */
typedef void (*metrics_collect_fn)(struct evbuffer *out, void *arg);
int metrics_register(metrics_collect_fn fn, void *arg);

/* The whole scrape. */
void metrics_render(struct evbuffer *out);

#endif
