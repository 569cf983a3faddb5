/*
 * upstream: the front of upstream.h. Picks the transport (upstream_impl.h) for the
 * configured upstream and dispatches to it; holds what both transports share: outcome
 * names, the API-shaped mapping of failures, and the retry policy.
 *
 * Rules: no transport logic here; a transport is chosen once per worker at
 * upstream_new() and every request of that handle uses it.
 */
#include "upstream.h"
#include "upstream_impl.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

/* http://HOST[:port][/prefix] with HOST an IPv4/IPv6 literal or localhost */
static int plain_literal_host(const char *url)
{
    if (strncmp(url, "http://", 7) != 0)
        return 0;
    const char *h = url + 7;
    if (*h == '[')
        return 1; /* [IPv6] */
    size_t n = strcspn(h, ":/");
    if (n == 9 && strncmp(h, "localhost", 9) == 0)
        return 1;
    for (size_t i = 0; i < n; i++)
        if (!(h[i] == '.' || (h[i] >= '0' && h[i] <= '9')))
            return 0;
    return n > 0;
}

const struct upstream_ops *upstream_pick(const struct hg_config *cfg)
{
    switch (cfg->upstream.client) {
    case HG_UPSTREAM_CLIENT_CURL:
        return &upstream_curl_ops;
    case HG_UPSTREAM_CLIENT_NATIVE:
        return &upstream_h1_ops;
    case HG_UPSTREAM_CLIENT_AUTO:
        break;
    }
    return plain_literal_host(cfg->upstream.url) ? &upstream_h1_ops : &upstream_curl_ops;
}

static const char *outcome_label(int o)
{
    return upstream_outcome_name((enum upstream_outcome)o);
}

struct upstream *upstream_new(struct event_base *base, const struct hg_config *cfg)
{
    metrics_upstream_labels(outcome_label, UPSTREAM_CANCELLED + 1);
    const struct upstream_ops *ops = upstream_pick(cfg);
    struct upstream *up = ops->create(base, cfg);
    if (up)
        up->ops = ops;
    return up;
}

void upstream_free(struct upstream *up)
{
    if (up)
        up->ops->destroy(up);
}

const char *upstream_client_name(const struct upstream *up)
{
    return up->ops->name;
}

unsigned upstream_inflight(const struct upstream *up)
{
    return up->ops->inflight(up);
}

uint64_t upstream_connections_opened(const struct upstream *up)
{
    return up->ops->conns_opened(up);
}

struct upstream_req *upstream_req_new(struct upstream *up, const char *method, const char *target)
{
    struct upstream_req *u = up->ops->req_new(up, method, target);
    u->ops = up->ops;
    return u;
}

int upstream_req_add_header(struct upstream_req *u, const char *name, const char *value)
{
    return u->ops->add_header(u, name, value);
}

int upstream_req_set_bearer(struct upstream_req *u, const char *token, size_t token_len)
{
    return u->ops->set_bearer(u, token, token_len);
}

void upstream_req_set_body_memory(struct upstream_req *u, struct evbuffer *body)
{
    assert(u->body_kind == UPSTREAM_BODY_NONE);
    u->body_kind = UPSTREAM_BODY_MEM;
    u->body = evbuffer_new();
    if (!u->body)
        abort();
    if (body)
        evbuffer_add_buffer(u->body, body);
}

void upstream_req_set_body_stream(struct upstream_req *u, int64_t length)
{
    assert(u->body_kind == UPSTREAM_BODY_NONE);
    u->body_kind = UPSTREAM_BODY_STREAM;
    u->body = evbuffer_new();
    if (!u->body)
        abort();
    u->body_len = length;
}

void upstream_req_no_retry(struct upstream_req *u)
{
    u->no_retry = 1;
}

int upstream_send(struct upstream_req *u, const struct upstream_callbacks *cb, void *arg)
{
    return u->ops->send(u, cb, arg);
}

size_t upstream_body_write(struct upstream_req *u, struct evbuffer *data)
{
    return u->ops->body_write(u, data);
}

void upstream_body_end(struct upstream_req *u)
{
    u->ops->body_end(u);
}

void upstream_resume(struct upstream_req *u)
{
    u->ops->resume(u);
}

void upstream_cancel(struct upstream_req *u)
{
    if (u)
        u->ops->cancel(u);
}

int upstream_req_sent(const struct upstream_req *u)
{
    return u->ops->sent(u);
}

int upstream_retry_allowed(const struct hg_config *cfg, int no_retry, int attempts,
                           uint64_t started_ms)
{
    if (no_retry || (unsigned)attempts > cfg->upstream.retries)
        return 0;
    /* bounded in time too: no new attempt once the request timeout is used up */
    return util_mono_ms() - started_ms < cfg->upstream.timeout_ms;
}

uint64_t upstream_backoff_ms(const struct hg_config *cfg, int attempts)
{
    /* exponential backoff with jitter: base * 2^(n-1) * [0.5, 1.5) */
    uint64_t base = cfg->upstream.retry_backoff_ms << (attempts - 1 > 6 ? 6 : attempts - 1);
    uint32_t rnd;
    util_random(&rnd, sizeof rnd);
    return base / 2 + (base ? rnd % base : 0);
}

int upstream_retry_decide(const struct hg_config *cfg, const struct upstream_attempt_end *e)
{
    if (e->discarding)
        return e->outcome == UPSTREAM_OK || e->outcome == UPSTREAM_PROTOCOL_ERROR;
    if (e->head_delivered || !e->replayable ||
        !upstream_retry_allowed(cfg, e->no_retry, e->attempts, e->started_ms))
        return 0;
    /* nothing reached the server: safe for any method */
    return e->outcome == UPSTREAM_CONNECT_ERROR ||
           (!e->sent && (e->outcome == UPSTREAM_PROTOCOL_ERROR || e->outcome == UPSTREAM_TIMEOUT));
}

void upstream_retry_arm(struct event_base *base, const struct hg_config *cfg, struct event **timer,
                        event_callback_fn fn, void *arg, const char *method,
                        const struct upstream_attempt_end *e, int status)
{
    uint64_t ms = upstream_backoff_ms(cfg, e->attempts);
    if (!*timer)
        *timer = evtimer_new(base, fn, arg);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(*timer, &tv);
    log_msg(LOG_DEBUG, "upstream %s: %s (status %d), retry %d in %llu ms", method,
            upstream_outcome_name(e->outcome), status, e->attempts, (unsigned long long)ms);
}

void upstream_report_done(const struct upstream_callbacks *cb, void *arg, int *cb_depth,
                          const struct upstream_result *r, const char *method)
{
    if (r->outcome != UPSTREAM_OK)
        log_msg(LOG_WARNING, "upstream %s failed: %s (%s) after %d attempt(s)", method,
                upstream_outcome_name(r->outcome), r->error, r->attempts);
    (*cb_depth)++;
    cb->on_done(arg, r);
    (*cb_depth)--;
}

const char *upstream_outcome_name(enum upstream_outcome o)
{
    switch (o) {
    case UPSTREAM_OK:
        return "ok";
    case UPSTREAM_CONNECT_ERROR:
        return "connect_error";
    case UPSTREAM_TLS_ERROR:
        return "tls_error";
    case UPSTREAM_TIMEOUT:
        return "timeout";
    case UPSTREAM_PROTOCOL_ERROR:
        return "protocol_error";
    case UPSTREAM_BODY_ERROR:
        return "body_error";
    case UPSTREAM_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

int upstream_error_status(enum upstream_outcome o, const char **code, const char **message)
{
    switch (o) {
    case UPSTREAM_TIMEOUT:
        *code = "UPSTREAM_TIMEOUT";
        *message = "the upstream API did not answer in time";
        return 504;
    case UPSTREAM_TLS_ERROR:
        *code = "UPSTREAM_UNAVAILABLE";
        *message = "TLS connection to the upstream API failed";
        return 502;
    case UPSTREAM_BODY_ERROR:
        *code = "BAD_REQUEST";
        *message = "the request body could not be read";
        return 400;
    case UPSTREAM_PROTOCOL_ERROR:
        *code = "UPSTREAM_UNAVAILABLE";
        *message = "the upstream API closed the connection or answered malformed data";
        return 502;
    default:
        *code = "UPSTREAM_UNAVAILABLE";
        *message = "the upstream API is unavailable";
        return 502;
    }
}
