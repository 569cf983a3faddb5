/*
 * upstream_stage: see upstream_stage.h. The upstream client's callbacks (on_head, on_data,
 * on_done, ...) come back with the request as their `void *` argument: each checks it
 * (HG_REQ_MAGIC) before use.
 */
#include "upstream_stage.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "hdr.h"
#include "upstream.h"

/* Held answers larger than this are let go (streamed) after all: a cut beyond it is an
 * aborted transfer, not a stale answer. */
#define HELD_MAX (16u << 20)

static struct hg_req *req_of(void *arg)
{
    struct hg_req *req;
    HG_CAST_OBJ_NOTNULL(req, (struct hg_req *)arg, HG_REQ_MAGIC);
    return req;
}

/* The stage's hold ends (its exchange is over, or dropped for a retry). */
static void hold_release(struct hg_req *req)
{
    struct hg_fwd *f = &req->fwd;
    if (f->retry_requested && req->conn && !req->responded) {
        f->retry_requested = 0;
        pipeline_retry(req); /* taps stay: they see the next attempt too */
    }
    pipeline_req_unref(req);
}

static void hold_release_cb(evutil_socket_t fd, short ev, void *arg)
{
    hold_release(req_of(arg));
}

/* Out of the upstream client's callback: the answer is dropped, the hold ends later. */
static int drop_answer(struct hg_req *req)
{
    req->up = NULL;
    struct timeval zero = {0, 0};
    event_base_once(req->base, -1, EV_TIMEOUT, hold_release_cb, req, &zero);
    return -1;
}

static void up_drain_cb(struct hg_req *req, void *arg)
{
    if (req->up)
        upstream_resume(req->up);
}

static void held_free(struct hg_fwd *f)
{
    f->held = 0;
    evhttp_clear_headers(&f->held_headers);
    evbuffer_free(f->held_body);
    f->held_body = NULL;
}

/* Keep the head back until the answer is complete (see up_on_done). */
static void held_start(struct hg_fwd *f, int status, int64_t cl, const struct evkeyvalq *headers)
{
    f->held = 1;
    f->held_status = status;
    f->held_cl = cl;
    TAILQ_INIT(&f->held_headers);
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, headers, next)
    evhttp_add_header(&f->held_headers, kv->key, kv->value);
    f->held_body = evbuffer_new();
    if (!f->held_body)
        abort();
}

static int64_t content_length_of(const struct evkeyvalq *headers)
{
    const char *cls = hdr_find(headers, "Content-Length");
    if (cls && *cls && strspn(cls, "0123456789") == strlen(cls) && strlen(cls) <= 18)
        return strtoll(cls, NULL, 10);
    return -1;
}

static int up_on_head(void *arg, int status, const struct evkeyvalq *headers)
{
    struct hg_req *req = req_of(arg);
    struct hg_fwd *f = &req->fwd;
    req->upstream_status = status;
    f->tap_head_called = 1;
    int retry = 0;
    for (int i = 0; i < req->ntaps; i++)
        if (req->taps[i].on_head &&
            req->taps[i].on_head(req, req->taps[i].arg, status, headers) == HG_TAP_RETRY)
            retry = 1;
    if (retry && req->body_kind != HG_BODY_STREAM && !req->responded && req->conn) {
        /* drop this answer; the pipeline re-runs from the retry stage, out of the
         * upstream client's callback */
        f->retry_requested = 1;
        req->upstream_attempts++; /* this attempt was made; its on_done never comes */
        return drop_answer(req);
    }
    if ((status >= 500 || status == 429) && pipeline_upstream_failed(req, status, NULL))
        return drop_answer(req); /* stale-if-error: a stage answered instead */
    int64_t cl = content_length_of(headers);
    if (!f->held && !req->responded && req->conn && pipeline_hold_response(req) &&
        (cl < 0 || cl <= (int64_t)HELD_MAX)) {
        held_start(f, status, cl, headers); /* nothing reaches the client until complete */
        return 0;
    }
    pipeline_respond_start(req, status, headers, cl);
    return 0;
}

/* Let a held answer go: its head and what arrived of its body go to the client. */
static void held_release(struct hg_req *req)
{
    struct hg_fwd *f = &req->fwd;
    if (!f->held)
        return;
    if (req->conn && !req->responded) {
        pipeline_respond_start(req, f->held_status, &f->held_headers, f->held_cl);
        if (evbuffer_get_length(f->held_body))
            pipeline_respond_data(req, f->held_body);
    }
    held_free(f);
}

/* Drop a held answer (the upstream failed before it was complete). */
static void held_drop(struct hg_req *req)
{
    if (req->fwd.held)
        held_free(&req->fwd);
}

static int up_on_data(void *arg, struct evbuffer *chunk)
{
    struct hg_req *req = req_of(arg);
    for (int i = 0; i < req->ntaps; i++)
        if (req->taps[i].on_data)
            req->taps[i].on_data(req, req->taps[i].arg, chunk);
    struct hg_fwd *f = &req->fwd;
    if (f->held) {
        evbuffer_add_buffer(f->held_body, chunk);
        if (evbuffer_get_length(f->held_body) > HELD_MAX)
            held_release(req); /* too large to hold: stream it after all */
        return 0;
    }
    size_t queued = pipeline_respond_data(req, chunk);
    if (queued >= PIPELINE_WRITE_HIGHWATER && req->conn) {
        pipeline_respond_on_drain(req, up_drain_cb, NULL);
        return UPSTREAM_PAUSE;
    }
    return 0;
}

static void up_on_body_drain(void *arg)
{
    struct hg_req *req = req_of(arg);
    if (req->conn)
        req->io->body_drained(req);
}

static void taps_done(struct hg_req *req, int ok, const struct upstream_result *res)
{
    if (req->fwd.tap_head_called)
        for (int i = 0; i < req->ntaps; i++)
            if (req->taps[i].on_done)
                req->taps[i].on_done(req, req->taps[i].arg, ok, res);
}

/* The exchange failed: an error answer, a stage's (stale-if-error), or a cut. */
static void answer_failure(struct hg_req *req, const struct upstream_result *res)
{
    held_drop(req); /* cut before complete: nothing of it reached the client */
    if (req->responded) {
        /* failed in the middle of the body: the client must see a broken response */
        pipeline_respond_error(req, 502, "UPSTREAM_UNAVAILABLE", "upstream failed mid-response",
                               NULL);
        return;
    }
    if (pipeline_upstream_failed(req, 0, res))
        return; /* stale-if-error: answered from the cache */
    const char *code, *msg;
    int st = upstream_error_status(res->outcome, &code, &msg);
    if (res->outcome == UPSTREAM_BODY_ERROR && req->conn)
        req->io->no_reuse(req);
    pipeline_respond_error(req, st, code, msg, NULL);
}

/* A stage's gate opened (cache_hold_gate): the complete held answer goes out now. */
static void gate_open(struct hg_req *req)
{
    HG_CHECK_OBJ_NOTNULL(req, HG_REQ_MAGIC);
    if (req->conn) {
        held_release(req);
        pipeline_respond_end(req);
    } else {
        held_drop(req);
    }
    hold_release(req);
}

static void up_on_done(void *arg, const struct upstream_result *res)
{
    struct hg_req *req = req_of(arg);
    req->up = NULL;
    req->upstream_attempts += res->attempts;
    if (res->http_status)
        req->upstream_status = res->http_status;
    int ok = res->outcome == UPSTREAM_OK;
    taps_done(req, ok, res);
    if (!req->conn) {
        held_drop(req);
    } else if (ok) {
        if (req->fwd.held && pipeline_hold_gate(req, gate_open))
            return; /* the stage's hold lasts until gate_open */
        held_release(req);
        pipeline_respond_end(req);
    } else {
        answer_failure(req, res);
    }
    hold_release(req);
}

static void up_on_retry(void *arg)
{
    pipeline_upstream_retry(req_of(arg));
}

static const struct upstream_callbacks up_callbacks = {
    .on_head = up_on_head,
    .on_data = up_on_data,
    .on_done = up_on_done,
    .on_body_drain = up_on_body_drain,
    .on_retry = up_on_retry,
};

struct upstream_req *upstream_req_from_client(struct upstream *up, const struct hg_req *req)
{
    size_t pl = strlen(req->path), ql = req->query ? strlen(req->query) : 0;
    char tbuf[512];
    char *target = pl + ql + 2 <= sizeof tbuf ? tbuf : malloc(pl + ql + 2);
    if (!target)
        abort();
    memcpy(target, req->path, pl);
    if (req->query) {
        target[pl] = '?';
        memcpy(target + pl + 1, req->query, ql + 1);
    } else {
        target[pl] = '\0';
    }
    struct upstream_req *u = upstream_req_new(up, req->method_name, target);
    if (target != tbuf)
        free(target);
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, &req->headers, next)
    {
        if (hdr_forward_to_upstream(kv->key))
            upstream_req_add_header(u, kv->key, kv->value);
    }
    if (req->workspace)
        upstream_req_add_header(u, "X-Workspace-Id", req->workspace);
    upstream_req_add_header(u, "X-Request-Id", req->request_id);
    if (req->cred && req->cred->token.data)
        upstream_req_set_bearer(u, req->cred->token.data, req->cred->token.len);
    return u;
}

static enum hg_stage_result stage_run(struct hg_req *req)
{
    req->fwd.tap_head_called = 0;
    req->fwd.retry_requested = 0;
    struct upstream_req *u = upstream_req_from_client(req->up_handle, req);
    if (req->body_kind == HG_BODY_MEMORY) {
        /* a copy: the request keeps its body for a replay requested by a tap */
        struct evbuffer *copy = evbuffer_new();
        size_t n = evbuffer_get_length(req->body);
        evbuffer_add(copy, evbuffer_pullup(req->body, -1), n);
        upstream_req_set_body_memory(u, copy);
        evbuffer_free(copy);
    } else if (req->body_kind == HG_BODY_STREAM) {
        upstream_req_set_body_stream(u, req->body_length);
    }
    req->up = u;
    if (upstream_send(u, &up_callbacks, req) != 0) {
        req->up = NULL;
        pipeline_respond_error(req, 502, "UPSTREAM_UNAVAILABLE",
                               "could not start the upstream request", NULL);
        return HG_DONE;
    }
    /* a stream body read so far goes out now; the rest follows from the read side */
    if (req->body_kind == HG_BODY_STREAM && req->conn)
        req->io->body_to_upstream(req, u);
    req->refs++; /* held until the upstream exchange ends */
    return HG_ASYNC;
}

/* The client is gone: the exchange is abandoned (no on_done will come). */
static void stage_client_gone(struct hg_req *req)
{
    if (!req->up)
        return;
    struct upstream_req *u = req->up;
    req->up = NULL;
    upstream_cancel(u);
    taps_done(req, 0, NULL);
    pipeline_req_unref(req); /* the stage's hold */
}

static void stage_req_free(struct hg_req *req)
{
    if (req->fwd.held)
        held_free(&req->fwd);
}

const struct hg_stage_ops upstream_stage_ops = {
    .name = "upstream",
    .run = stage_run,
    .client_gone = stage_client_gone,
    .req_free = stage_req_free,
    .terminal = 1,
};
