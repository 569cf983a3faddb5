/*
 * metrics: see metrics.h. Arrays of _Atomic uint64_t: a scrape reads them without
 * stopping the workers; series never disappear once created. Every thread counts into its
 * own shard (cache-line aligned; threads beyond NSHARD share one, still atomically), so
 * workers do not bounce the counters' cache lines between cores on every request; a
 * scrape sums the shards.
 */
#include "metrics.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "req.h"

#define NSHARD 8

/* request latency histogram, seconds */
static const double lat_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NLAT (sizeof lat_bounds / sizeof *lat_bounds)

struct shard {
    _Alignas(64) _Atomic uint64_t counters[M__COUNT];
    _Atomic int64_t gauges[G__COUNT];
    _Atomic uint64_t by_status[600];
    _Atomic uint64_t up_outcome[METRICS_OUTCOMES];
    _Atomic uint64_t up_status[600];
    _Atomic uint64_t lat_buckets[NLAT + 1];
    _Atomic uint64_t lat_sum_us, lat_count;
};
static struct shard shards[NSHARD];
static atomic_uint next_shard;
static _Thread_local struct shard *my_shard;

static struct shard *sh(void)
{
    if (!my_shard)
        my_shard =
            &shards[atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed) % NSHARD];
    return my_shard;
}

static struct {
    metrics_collect_fn fn;
    void *arg;
} collectors[16];
static int ncollectors;

static const char *const counter_names[M__COUNT][2] = {
    {"hotgate_connections_accepted_total", "Client connections accepted."},
    {"hotgate_auth_unauthorized_total", "Requests refused with 401 (missing or unknown key)."},
    {"hotgate_auth_forbidden_total", "Requests refused with 403 (workspace or mode)."},
    {"hotgate_requests_refused_path_total", "Requests refused with 400 by the path checks."},
    {"hotgate_requests_not_found_total", "Requests outside /v1/ answered 404 by hotgate."},
    {"hotgate_upstream_retries_total", "Upstream attempts that were retries."},
    {"hotgate_upstream_connections_opened_total", "New upstream connections opened."},
    {"hotgate_client_aborts_total", "Requests whose client went away before the end."},
    {"hotgate_request_body_bytes_total", "Request body bytes read from clients."},
    {"hotgate_response_body_bytes_total", "Response body bytes written to clients."},
    {"hotgate_accept_fd_exhausted_total",
     "accept() failures for lack of file descriptors (each pauses accepting)."},
    {"hotgate_connections_idle_closed_total",
     "Idle keep-alive connections closed to stay within max_connections."},
    {"hotgate_connections_refused_total",
     "Connections answered 503 at max_connections with nothing idle to close."},
    {"hotgate_request_body_timeouts_total",
     "Requests answered 408 because the body stalled longer than body_timeout."},
    {"hotgate_request_headers_dropped_underscore_total",
     "Request headers dropped because their name contains '_' (as nginx does)."},
};

static const char *const gauge_names[G__COUNT][2] = {
    {"hotgate_connections_open", "Client connections open."},
    {"hotgate_requests_inflight", "Requests being processed."},
    {"hotgate_upstream_inflight", "Upstream exchanges in flight."},
};

void metrics_inc(enum metrics_counter c, uint64_t n)
{
    atomic_fetch_add_explicit(&sh()->counters[c], n, memory_order_relaxed);
}

void metrics_gauge_add(enum metrics_gauge g, int64_t d)
{
    atomic_fetch_add_explicit(&sh()->gauges[g], d, memory_order_relaxed);
}

void metrics_request_done(const struct hg_req *req, uint64_t latency_us)
{
    struct shard *m = sh();
    int s = req->status > 0 && req->status < 600 ? req->status : 0;
    atomic_fetch_add_explicit(&m->by_status[s], 1, memory_order_relaxed);
    double sec = (double)latency_us / 1e6;
    size_t i = 0;
    while (i < NLAT && sec > lat_bounds[i])
        i++;
    atomic_fetch_add_explicit(&m->lat_buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->lat_sum_us, latency_us, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->lat_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->counters[M_BYTES_IN], req->bytes_in, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->counters[M_BYTES_OUT], req->bytes_out, memory_order_relaxed);
    if (req->client_gone)
        atomic_fetch_add_explicit(&m->counters[M_CLIENT_ABORTS], 1, memory_order_relaxed);
}

static const char *(*_Atomic outcome_label)(int);
static _Atomic int noutcomes;
static void (*_Atomic outcome_observer)(int);

void metrics_upstream_labels(const char *(*label)(int outcome), int n)
{
    atomic_store(&noutcomes, n < METRICS_OUTCOMES ? n : METRICS_OUTCOMES);
    atomic_store(&outcome_label, label);
}

void metrics_upstream_observer(void (*fn)(int outcome))
{
    atomic_store(&outcome_observer, fn);
}

void metrics_upstream_done(int o, int http_status)
{
    struct shard *m = sh();
    if (o >= 0 && o < METRICS_OUTCOMES)
        atomic_fetch_add_explicit(&m->up_outcome[o], 1, memory_order_relaxed);
    if (http_status > 0 && http_status < 600)
        atomic_fetch_add_explicit(&m->up_status[http_status], 1, memory_order_relaxed);
    void (*fn)(int) = atomic_load_explicit(&outcome_observer, memory_order_relaxed);
    if (fn)
        fn(o);
}

int metrics_register(metrics_collect_fn fn, void *arg)
{
    if (ncollectors >= (int)(sizeof collectors / sizeof *collectors))
        return -1;
    collectors[ncollectors].fn = fn;
    collectors[ncollectors].arg = arg;
    ncollectors++;
    return 0;
}

/* the sum over the shards of the counter at byte offset `off` in struct shard */
static uint64_t ld_off(size_t off)
{
    uint64_t v = 0;
    for (int i = 0; i < NSHARD; i++)
        v += atomic_load_explicit((_Atomic uint64_t *)((char *)&shards[i] + off),
                                  memory_order_relaxed);
    return v;
}

#define ld(field) ld_off(offsetof(struct shard, field))

static int64_t ld_gauge(int g)
{
    int64_t v = 0;
    for (int i = 0; i < NSHARD; i++)
        v += atomic_load_explicit(&shards[i].gauges[g], memory_order_relaxed);
    return v;
}

void metrics_render(struct evbuffer *out)
{
    for (int i = 0; i < M__COUNT; i++)
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counter_names[i][0],
                            counter_names[i][1], counter_names[i][0], counter_names[i][0],
                            (unsigned long long)ld(counters[i]));
    for (int i = 0; i < G__COUNT; i++)
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", gauge_names[i][0],
                            gauge_names[i][1], gauge_names[i][0], gauge_names[i][0],
                            (long long)ld_gauge(i));

    evbuffer_add_printf(out, "# HELP hotgate_requests_total Requests answered, by status.\n"
                             "# TYPE hotgate_requests_total counter\n");
    for (int s = 0; s < 600; s++) {
        uint64_t v = ld(by_status[s]);
        if (v)
            evbuffer_add_printf(out, "hotgate_requests_total{code=\"%d\"} %llu\n", s,
                                (unsigned long long)v);
    }
    evbuffer_add_printf(out, "# HELP hotgate_request_duration_seconds Time from request head "
                             "to the end of the response.\n"
                             "# TYPE hotgate_request_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < NLAT; i++) {
        cum += ld(lat_buckets[i]);
        evbuffer_add_printf(out, "hotgate_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                            lat_bounds[i], (unsigned long long)cum);
    }
    cum += ld(lat_buckets[NLAT]);
    evbuffer_add_printf(out,
                        "hotgate_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "hotgate_request_duration_seconds_sum %.6f\n"
                        "hotgate_request_duration_seconds_count %llu\n",
                        (unsigned long long)cum, (double)ld(lat_sum_us) / 1e6,
                        (unsigned long long)ld(lat_count));

    evbuffer_add_printf(out, "# HELP hotgate_upstream_requests_total Upstream exchanges, by "
                             "outcome.\n# TYPE hotgate_upstream_requests_total counter\n");
    const char *(*label)(int) = atomic_load(&outcome_label);
    for (int o = 0; label && o < atomic_load(&noutcomes); o++)
        evbuffer_add_printf(out, "hotgate_upstream_requests_total{outcome=\"%s\"} %llu\n", label(o),
                            (unsigned long long)ld(up_outcome[o]));
    evbuffer_add_printf(out, "# HELP hotgate_upstream_responses_total Upstream responses, by "
                             "status.\n# TYPE hotgate_upstream_responses_total counter\n");
    for (int s = 0; s < 600; s++) {
        uint64_t v = ld(up_status[s]);
        if (v)
            evbuffer_add_printf(out, "hotgate_upstream_responses_total{code=\"%d\"} %llu\n", s,
                                (unsigned long long)v);
    }
    for (int i = 0; i < ncollectors; i++)
        collectors[i].fn(out, collectors[i].arg);
}
