/*
 * pipeline: see pipeline.h. The request object's refcount, the stage driver and the
 * respond API. It names no stage and no connection: stages come from the table given to
 * pipeline_set_stages, bytes go out through req->io.
 */
#include "pipeline.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "cfgsnap.h"
#include "check.h"
#include "http1.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

/* The request with what only the pipeline sees. */
struct req_priv {
    struct hg_req pub;
    void (*cleanup_fn[4])(struct hg_req *, void *);
    void *cleanup_arg[4];
    int ncleanup;
    int logged;
    int in_stage;      /* a stage function is running */
    int resumed_early; /* pipeline_resume() came before the stage returned HG_ASYNC */
};

static const struct hg_stage_ops *const *stages;
static int nstages;
static size_t head_field_len[HG_MAX_STAGES]; /* strlen of each stage's head_field_name */

void pipeline_set_stages(const struct hg_stage_ops *const *s, int n)
{
    assert(n >= 0 && n <= HG_MAX_STAGES);
    stages = s;
    nstages = n;
    for (int i = 0; i < n; i++)
        head_field_len[i] = s[i]->head_field_name ? strlen(s[i]->head_field_name) : 0;
}

void pipeline_thread_end(void)
{
    for (int i = 0; i < nstages; i++)
        if (stages[i]->thread_end)
            stages[i]->thread_end();
}

static struct req_priv *priv(struct hg_req *r)
{
    HG_CHECK_OBJ_NOTNULL(r, HG_REQ_MAGIC);
    return (struct req_priv *)r;
}

struct event_base *pipeline_req_base(const struct hg_req *req)
{
    return req->base;
}

struct upstream *pipeline_req_upstream(const struct hg_req *req)
{
    return req->up_handle;
}

const struct hg_config *pipeline_req_config(const struct hg_req *req)
{
    return req->cfg;
}

int pipeline_req_add_tap(struct hg_req *req, const struct hg_tap *tap)
{
    if (req->ntaps >= HG_MAX_TAPS)
        return -1;
    req->taps[req->ntaps++] = *tap;
    return 0;
}

int pipeline_req_add_cleanup(struct hg_req *req, void (*fn)(struct hg_req *, void *), void *arg)
{
    struct req_priv *p = priv(req);
    if (p->ncleanup >= 4)
        return -1;
    p->cleanup_fn[p->ncleanup] = fn;
    p->cleanup_arg[p->ncleanup] = arg;
    p->ncleanup++;
    return 0;
}

/* ---- request objects ---- */

struct hg_req *pipeline_req_new(const struct hg_config *cfg)
{
    struct req_priv *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    struct hg_req *r = &p->pub;
    HG_OBJ_INIT(r, HG_REQ_MAGIC);
    r->start_us = util_mono_us();
    r->wall_ms = util_wall_ms();
    r->cfg = cfg;
    cfgsnap_hold(r->cfg);
    TAILQ_INIT(&r->headers);
    r->cache_outcome = "-";
    r->refs = 1;
    metrics_gauge_add(G_REQUESTS_INFLIGHT, 1);
    return r;
}

static void req_free(struct hg_req *r)
{
    struct req_priv *p = priv(r);
    assert(r->refs == 0);
    assert(!r->up);
    for (int i = 0; i < p->ncleanup; i++)
        p->cleanup_fn[i](r, p->cleanup_arg[i]);
    for (int i = 0; i < nstages; i++)
        if (stages[i]->req_free)
            stages[i]->req_free(r);
    evhttp_clear_headers(&r->headers);
    if (r->body)
        evbuffer_free(r->body);
    free((char *)r->method_name);
    free(r->path);
    free(r->query);
    cfgsnap_release(r->cfg);
    HG_OBJ_FINI(r);
    free(p);
    metrics_gauge_add(G_REQUESTS_INFLIGHT, -1);
}

void pipeline_req_unref(struct hg_req *r)
{
    HG_CHECK_OBJ_NOTNULL(r, HG_REQ_MAGIC);
    assert(r->refs > 0);
    if (--r->refs == 0)
        req_free(r);
}

void pipeline_req_hold(struct hg_req *req)
{
    HG_CHECK_OBJ_NOTNULL(req, HG_REQ_MAGIC);
    req->refs++;
}

void pipeline_req_release(struct hg_req *req)
{
    pipeline_req_unref(req);
}

void pipeline_req_log(struct hg_req *r)
{
    struct req_priv *p = priv(r);
    if (p->logged)
        return;
    p->logged = 1;
    log_access_write(r->alog, r);
    metrics_request_done(r, util_mono_us() - r->start_us);
}

void pipeline_client_gone(struct hg_req *r)
{
    HG_CHECK_OBJ_NOTNULL(r, HG_REQ_MAGIC);
    if (!r->conn)
        return;
    r->conn = NULL;
    r->client_gone = 1;
    if (!r->responded)
        r->status = 499; /* nginx's "client closed request" */
    pipeline_req_log(r);
    r->refs++;             /* keep it through the hooks below */
    pipeline_req_unref(r); /* the connection's reference */
    for (int i = 0; i < nstages; i++)
        if (stages[i]->client_gone)
            stages[i]->client_gone(r); /* a stage holding the request drops its hold */
    pipeline_req_unref(r);
}

/* ---- the stage driver ---- */

int pipeline_upstream_failed(struct hg_req *req, int status, const struct upstream_result *res)
{
    for (int i = 0; i < nstages; i++)
        if (stages[i]->upstream_failed && stages[i]->upstream_failed(req, status, res))
            return 1;
    return 0;
}

int pipeline_hold_response(struct hg_req *req)
{
    for (int i = 0; i < nstages; i++)
        if (stages[i]->hold_response && stages[i]->hold_response(req))
            return 1;
    return 0;
}

int pipeline_hold_gate(struct hg_req *req, void (*release)(struct hg_req *req))
{
    for (int i = 0; i < nstages; i++)
        if (stages[i]->hold_gate && stages[i]->hold_gate(req, release))
            return 1;
    return 0;
}

void pipeline_upstream_retry(struct hg_req *req)
{
    HG_CHECK_OBJ_NOTNULL(req, HG_REQ_MAGIC);
    for (int i = 0; i < nstages; i++)
        if (stages[i]->upstream_retry)
            stages[i]->upstream_retry(req);
}

/* Run stages from req->stage on. */
static void pipeline_run(struct hg_req *req)
{
    struct req_priv *p = priv(req);
    while (req->conn && !req->client_gone && req->stage < nstages) {
        const struct hg_stage_ops *st = stages[req->stage];
        p->in_stage = 1;
        p->resumed_early = 0;
        enum hg_stage_result r = st->run(req);
        p->in_stage = 0;
        if (r == HG_DONE)
            return;
        if (r == HG_ASYNC && p->resumed_early && !st->terminal) {
            /* the stage resumed the request before returning: carry on here, no hold */
            p->resumed_early = 0;
            req->stage++;
            continue;
        }
        if (r == HG_ASYNC) {
            if (!st->terminal)
                req->refs++; /* the stage's hold, dropped by pipeline_resume/release */
            return;
        }
        req->stage++;
    }
}

void pipeline_start(struct hg_req *req)
{
    req->stage = 0;
    req->refs++; /* held by the run itself, so that a synchronous finish is safe */
    pipeline_run(req);
    pipeline_req_unref(req);
}

void pipeline_resume(struct hg_req *req)
{
    struct req_priv *p = priv(req);
    if (p->in_stage) {
        /* called from inside the stage (a synchronous grant): pipeline_run goes on */
        p->resumed_early = 1;
        return;
    }
    assert(req->refs >= 1);
    if (req->stage < nstages && !stages[req->stage]->terminal)
        req->stage++;
    req->refs++;
    pipeline_req_unref(req); /* the stage's hold (the extra ref keeps it alive) */
    pipeline_run(req);
    pipeline_req_unref(req);
}

void pipeline_retry(struct hg_req *req)
{
    for (int i = 0; i < nstages; i++)
        if (stages[i]->retry_entry) {
            req->stage = i;
            pipeline_run(req);
            return;
        }
}

/* ---- responses ---- */

void pipeline_respond_start(struct hg_req *req, int status, const struct evkeyvalq *headers,
                            int64_t content_length)
{
    HG_CHECK_OBJ_NOTNULL(req, HG_REQ_MAGIC);
    assert(!req->responded);
    req->responded = 1;
    req->status = status;
    req->stage = nstages; /* responding: past the last stage */
    if (!req->conn)
        return;
    struct http1_field f[HG_MAX_STAGES];
    int nf = 0;
    for (int i = 0; i < nstages; i++)
        if (stages[i]->head_field) {
            const char *v = stages[i]->head_field(req);
            if (v) {
                f[nf].name = stages[i]->head_field_name;
                f[nf].name_len = head_field_len[i];
                f[nf].value = v;
                nf++;
            }
        }
    req->io->head(req, status, headers, content_length, f, nf);
}

size_t pipeline_respond_data(struct hg_req *req, struct evbuffer *chunk)
{
    if (!req->conn) {
        evbuffer_drain(chunk, evbuffer_get_length(chunk));
        return 0;
    }
    return req->io->data(req, chunk);
}

void pipeline_respond_end(struct hg_req *req)
{
    HG_CHECK_OBJ_NOTNULL(req, HG_REQ_MAGIC);
    if (req->conn)
        req->io->end(req);
    pipeline_req_log(req);
    if (req->conn)
        req->io->finish(req);
}

void pipeline_respond_on_drain(struct hg_req *req, void (*fn)(struct hg_req *, void *), void *arg)
{
    if (req->conn)
        req->io->on_drain(req, fn, arg);
}

void pipeline_respond_buffer(struct hg_req *req, int status, const struct evkeyvalq *headers,
                             struct evbuffer *body)
{
    size_t n = body ? evbuffer_get_length(body) : 0;
    pipeline_respond_start(req, status, headers, (int64_t)n);
    if (body)
        pipeline_respond_data(req, body);
    pipeline_respond_end(req);
}

void pipeline_respond_error(struct hg_req *req, int status, const char *code, const char *message,
                            const struct evkeyvalq *extra_headers)
{
    if (req->responded) {
        /* too late for an error answer: cut the connection so the client sees it */
        if (req->conn)
            req->io->abort(req);
        return;
    }
    char *body = util_api_error_json(status, code, message);
    struct evkeyvalq h;
    TAILQ_INIT(&h);
    evhttp_add_header(&h, "Content-Type", "application/json");
    if (extra_headers) {
        const struct evkeyval *kv;
        TAILQ_FOREACH(kv, extra_headers, next)
        evhttp_add_header(&h, kv->key, kv->value);
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, strlen(body));
    pipeline_respond_buffer(req, status, &h, b);
    evbuffer_free(b);
    free(body);
    evhttp_clear_headers(&h);
}
