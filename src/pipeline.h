/*
 * pipeline: the request object's life (struct hg_req, req.h) and the stage sequence.
 *
 * One request passes the stages of a stage table in order. The pipeline does not name
 * them: each stage is a struct hg_stage_ops (h2o's handlers, Varnish's VCL states) and the
 * table is handed over once (pipeline_set_stages; stages.c lists hotgate's):
 *
 *   auth      auth_stage.c:     Authorization: Bearer <client key> -> req->client; 401 / 403;
 *                               X-Workspace-Id checked or the default injected
 *   route     route_stage.c:    the routing table's row (route.h) -> req->route; read-only
 *                               clients refused what their mode does not allow (403)
 *   cache     cache.h:          a fresh hit answered (HG_DONE), a coalesced wait (HG_ASYNC),
 *                               or a response tap that stores what comes back
 *   budget    budget_stage.h:   admit now, queue (HG_ASYNC), or shed (429/503 + HG_DONE)
 *   upstream  upstream_stage.c: the upstream request (same builder for every caller,
 *                               upstream_req_from_client) streamed back to the client
 *
 * A stage's run() returns HG_NEXT (go on with the next stage), HG_DONE (it has answered
 * the client, or the client is gone: stop) or HG_ASYNC (it keeps the request and calls
 * pipeline_resume(req) later, on the request's worker thread, to go on with the stage after
 * it). A stage with .terminal set (the upstream stage) holds its own reference when it returns
 * HG_ASYNC and never resumes: it ends the request with pipeline_respond_*().
 *
 * Responses: pipeline_respond_*() write through req->io (the client connection, conn.c, or
 * a test's fake) and add the stages' response-head fields (ops.head_field, e.g. X-Cache).
 *
 * Ownership. The pipeline owns struct hg_req. It lives from the parsed request head until
 * the response is finished (or the client is gone) AND no stage holds it any more: a stage
 * that returned HG_ASYNC holds a reference until it resumes or calls pipeline_req_release().
 * After the client went away req->client_gone is set, every stage's client_gone() runs,
 * pipeline_respond_*() become no-ops and the request is freed once the holder lets go.
 *
 * Threading: a request and everything it points to belong to the worker that accepted it.
 * A module that completes work on another thread (e.g. a Redis reply) must hop back with
 * event_active()/event_base_once on pipeline_req_base(req).
 */
#ifndef HG_PIPELINE_H
#define HG_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "req.h"

struct http1_field;

/* What a pipeline stage tells the pipeline. */
enum hg_stage_result {
    HG_NEXT = 0, /* carry on with the next stage */
    HG_DONE,     /* the request is answered (or abandoned): stop */
    HG_ASYNC,    /* the stage keeps the request; it calls pipeline_resume() later */
};

/* One stage. Every hook but run is optional (NULL). */
struct hg_stage_ops {
    const char *name;
    enum hg_stage_result (*run)(struct hg_req *req);
    /* the client went away: drop any asynchronous hold at once (pipeline_req_release) */
    void (*client_gone)(struct hg_req *req);
    /* the upstream failed (status 5xx/429 with its head, or 0 and res after a transport
     * error) before anything reached the client: 1 when this stage answered instead (the
     * cache's stale-if-error) */
    int (*upstream_failed)(struct hg_req *req, int status, const struct upstream_result *res);
    /* 1 when the upstream answer must be held back until complete (cache_hold_response) */
    int (*hold_response)(const struct hg_req *req);
    /* a held upstream answer is complete: 1 when this stage keeps it back longer and calls
     * release(req) later, on the request's thread (the cache: until the fleet acknowledged a
     * mutation's invalidation, cache_hold_gate), 0 to let it go now */
    int (*hold_gate)(struct hg_req *req, void (*release)(struct hg_req *req));
    /* the upstream client retries the request on its own: charge the retry (budget) */
    void (*upstream_retry)(struct hg_req *req);
    /* a field for every response head (e.g. X-Cache): its value, or NULL for none */
    const char *(*head_field)(const struct hg_req *req);
    const char *head_field_name;
    /* the request is freed: release per-request state kept in req (optional) */
    void (*req_free)(struct hg_req *req);
    /* the calling worker thread is ending: free its per-thread state (optional) */
    void (*thread_end)(void);
    int terminal;    /* holds its own reference on HG_ASYNC and never resumes (upstream) */
    int retry_entry; /* a tap's HG_TAP_RETRY re-runs the pipeline from this stage (budget) */
};

#define HG_MAX_STAGES 8

/* The stage table, in order (n <= HG_MAX_STAGES), before any request. The array must stay
 * valid while requests run. */
void pipeline_set_stages(const struct hg_stage_ops *const *stages, int n);

/* A worker thread's loop ended: every stage frees what it kept for this thread. */
void pipeline_thread_end(void);

/* How responses and body control reach the client (conn.c implements it). */
struct hg_req_io {
    /* write the response head (fields: the stages' head fields) */
    void (*head)(struct hg_req *req, int status, const struct evkeyvalq *headers, int64_t cl,
                 const struct http1_field *fields, int nfields);
    /* queue body bytes (moved out of chunk); returns the bytes queued and not yet written */
    size_t (*data)(struct hg_req *req, struct evbuffer *chunk);
    /* the body is complete (before the access log) */
    void (*end)(struct hg_req *req);
    /* the request is over: the connection lets go of it (next request or close) */
    void (*finish)(struct hg_req *req);
    /* call fn once the client's output drained below the high-water mark */
    void (*on_drain)(struct hg_req *req, void (*fn)(struct hg_req *, void *), void *arg);
    /* cut the connection now (an error after the head went out) */
    void (*abort)(struct hg_req *req);
    /* the connection will not carry another request */
    void (*no_reuse)(struct hg_req *req);
    /* a streamed request body: hand what arrived and what follows to u */
    void (*body_to_upstream)(struct hg_req *req, struct upstream_req *u);
    /* the upstream took body bytes below its high-water mark: read more */
    void (*body_drained)(struct hg_req *req);
};

/* ---- for the connection (conn.c) ---- */

/* A new request (refs = 1: the connection's). */
struct hg_req *pipeline_req_new(const struct hg_config *cfg);
/* Run the stages from the first. */
void pipeline_start(struct hg_req *req);
/* The client is gone (or given up on) while the request is attached: detach, log, tell the
 * stages, drop the connection's reference. */
void pipeline_client_gone(struct hg_req *req);
/* Access log + metrics, once per request. */
void pipeline_req_log(struct hg_req *req);
void pipeline_req_unref(struct hg_req *req);

/* ---- for stages ---- */

/* Run the pipeline from the stage after the one that returned HG_ASYNC. */
void pipeline_resume(struct hg_req *req);
/* Run the pipeline again from the retry_entry stage (a terminal stage dropped an answer
 * on a tap's HG_TAP_RETRY). */
void pipeline_retry(struct hg_req *req);

/* Drop a reference taken by returning HG_ASYNC without resuming (e.g. a queued request
 * whose client went away). */
void pipeline_req_release(struct hg_req *req);
void pipeline_req_hold(struct hg_req *req);

/* Observe the upstream response (see struct hg_tap). Returns 0, -1 if full. */
int pipeline_req_add_tap(struct hg_req *req, const struct hg_tap *tap);

/* Function called when the request is freed (to free cache_ctx etc.). Up to 4. */
int pipeline_req_add_cleanup(struct hg_req *req, void (*fn)(struct hg_req *, void *), void *arg);

/* The worker's event base and upstream handle, for stages that need to schedule work. */
struct event_base *pipeline_req_base(const struct hg_req *req);
struct upstream *pipeline_req_upstream(const struct hg_req *req);
/* The configuration snapshot the request runs with (req->cfg). */
const struct hg_config *pipeline_req_config(const struct hg_req *req);

/* The stages' hooks, for the terminal stage: 1 when a stage answered the failure. */
int pipeline_upstream_failed(struct hg_req *req, int status, const struct upstream_result *res);
int pipeline_hold_response(struct hg_req *req);
/* A held answer is complete: 1 when a stage keeps it back and calls release(req) later. */
int pipeline_hold_gate(struct hg_req *req, void (*release)(struct hg_req *req));
void pipeline_upstream_retry(struct hg_req *req);

/* ---- responses ---- */

/* API-shaped error {"error":{"code":C,"message":M},"message":M,"status":S}; code NULL =
 * util_status_code_name(status). extra_headers may be NULL (e.g. to add Retry-After). After
 * a response head went out it cuts the connection instead (the client sees a broken
 * answer). */
void pipeline_respond_error(struct hg_req *req, int status, const char *code, const char *message,
                            const struct evkeyvalq *extra_headers);

/* A complete response: status, headers (copied; hop-by-hop and Content-Length ignored),
 * body moved out of `body` (may be NULL). */
void pipeline_respond_buffer(struct hg_req *req, int status, const struct evkeyvalq *headers,
                             struct evbuffer *body);

/* A streamed response: start (content_length -1 = unknown), then data (moved out of
 * chunk), then end. pipeline_respond_data() returns the number of bytes queued towards the
 * client and not yet written; a producer should pause above PIPELINE_WRITE_HIGHWATER and
 * resume from its drain callback (set with pipeline_respond_on_drain). */
#define PIPELINE_WRITE_HIGHWATER (1u << 20)
void pipeline_respond_start(struct hg_req *req, int status, const struct evkeyvalq *headers,
                            int64_t content_length);
size_t pipeline_respond_data(struct hg_req *req, struct evbuffer *chunk);
void pipeline_respond_end(struct hg_req *req);
void pipeline_respond_on_drain(struct hg_req *req, void (*fn)(struct hg_req *, void *), void *arg);

#endif
