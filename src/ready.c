/*
 * ready: GET /readyz (see ready.h).
 */
#include "ready.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "admin.h"
#include "cache.h"
#include "server.h"
#include "util.h"

static atomic_uint_fast64_t last_ok_ms, last_fail_ms;
static _Atomic int last_fail_outcome;
static pthread_mutex_t timer_mu = PTHREAD_MUTEX_INITIALIZER;
static struct event_base *admin_base; /* set by ready_start */
static struct event *probe_timer;     /* made by the first /readyz; under timer_mu */
static int stopped;                   /* ready_shutdown ran; under timer_mu */
static int probing;                   /* admin thread only */

void ready_upstream_seen(enum upstream_outcome o)
{
    switch (o) {
    case UPSTREAM_OK:
        atomic_store(&last_ok_ms, util_mono_ms());
        break;
    case UPSTREAM_CONNECT_ERROR:
    case UPSTREAM_TLS_ERROR:
    case UPSTREAM_TIMEOUT:
    case UPSTREAM_PROTOCOL_ERROR:
        atomic_store(&last_fail_outcome, (int)o);
        atomic_store(&last_fail_ms, util_mono_ms());
        break;
    default: /* the client's side went away, or cancelled: says nothing of the upstream */
        break;
    }
}

/* NULL when ready, else the reason. */
static const char *not_ready_reason(char *buf, size_t len)
{
    if (server_draining())
        return "draining";
    if (!cache_open())
        return "cache not open";
    uint64_t ok = atomic_load(&last_ok_ms), fail = atomic_load(&last_fail_ms);
    if (fail > ok || (fail && fail == ok)) {
        snprintf(buf, len, "upstream unreachable: %s",
                 upstream_outcome_name((enum upstream_outcome)atomic_load(&last_fail_outcome)));
        return buf;
    }
    if (!ok)
        return "upstream not answered yet";
    if (util_mono_ms() - ok > READY_FRESH_MS)
        return "upstream quiet";
    return NULL;
}

static void probe_tick(evutil_socket_t fd, short what, void *arg);

/* The first /readyz starts the idle probe (and probes at once): a gateway nobody asks
 * about its readiness sends nothing of its own upstream. Admin thread. */
static void probe_arm(void)
{
    pthread_mutex_lock(&timer_mu);
    if (!probe_timer && !stopped && admin_base) {
        probe_timer = event_new(admin_base, -1, EV_PERSIST, probe_tick, NULL);
        struct timeval tv = {READY_PROBE_IDLE_MS / 1000, (READY_PROBE_IDLE_MS % 1000) * 1000};
        event_add(probe_timer, &tv);
        event_active(probe_timer, EV_TIMEOUT, 0);
    }
    pthread_mutex_unlock(&timer_mu);
}

static void readyz(struct evhttp_request *r, void *arg)
{
    (void)arg;
    probe_arm();
    char buf[128];
    const char *why = not_ready_reason(buf, sizeof buf);
    struct evbuffer *b = evbuffer_new();
    if (why)
        evbuffer_add_printf(b, "{\"status\":\"not_ready\",\"reason\":\"%s\"}\n", why);
    else
        evbuffer_add_printf(b, "{\"status\":\"ready\"}\n");
    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", "application/json");
    evhttp_add_header(evhttp_request_get_output_headers(r), "Cache-Control", "no-store");
    evhttp_send_reply(r, why ? 503 : 200, why ? "Service Unavailable" : "OK", b);
    evbuffer_free(b);
}

/* ---- the probe ---- */

static int probe_head(void *arg, int status, const struct evkeyvalq *headers)
{
    (void)arg;
    (void)status;
    (void)headers;
    return 0;
}

static int probe_data(void *arg, struct evbuffer *chunk)
{
    (void)arg;
    evbuffer_drain(chunk, evbuffer_get_length(chunk));
    return 0;
}

static void probe_done(void *arg, const struct upstream_result *res)
{
    (void)arg;
    (void)res; /* counted by metrics_upstream_done -> ready_upstream_seen */
    probing = 0;
}

static const struct upstream_callbacks probe_cb = {probe_head, probe_data, probe_done, NULL, NULL};

static void probe_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (probing || server_draining())
        return;
    uint64_t now = util_mono_ms(), ok = atomic_load(&last_ok_ms), fail = atomic_load(&last_fail_ms);
    if (ok && fail < ok && now - ok < READY_PROBE_IDLE_MS)
        return; /* real traffic keeps the answer fresh */
    struct upstream *up = admin_upstream();
    if (!up)
        return;
    struct upstream_req *u = upstream_req_new(up, "GET", "/v1/workspaces");
    if (!u)
        return;
    upstream_req_no_retry(u);
    upstream_req_add_header(u, "User-Agent", "hotgate-readyz");
    probing = 1;
    if (upstream_send(u, &probe_cb, NULL) != 0)
        probing = 0;
}

void ready_init(void)
{
    admin_register_public("/readyz", readyz, NULL);
}

void ready_start(void)
{
    pthread_mutex_lock(&timer_mu);
    admin_base = admin_loop();
    pthread_mutex_unlock(&timer_mu);
}

void ready_shutdown(void)
{
    pthread_mutex_lock(&timer_mu);
    stopped = 1;
    struct event *t = probe_timer;
    probe_timer = NULL;
    pthread_mutex_unlock(&timer_mu);
    if (t)
        event_free(t); /* waits for a running tick (evthread) */
}
