/*
 * server: listeners, worker threads and the per-request pipeline of hotgate.
 *
 * Job. Accept client connections (TCP and optionally a unix socket), parse HTTP/1.1
 * requests (our own strict codec, in server.c: libevent 2.1's evhttp buffers every request
 * body whole and has no hook before the body is read, so it cannot stream a 2 GB upload),
 * run each request through the pipeline below, and stream the answer back. The admin
 * listener (evhttp, on worker 0) serves /metrics, /healthz and what modules register.
 *
 * Pipeline. One request passes these stages in order; each is an explicit function in
 * server.c, and each is a module boundary:
 *
 *   listener  server.c's codec parses the head; path_check() (path.h) refuses anything that
 *             could leave /v1 (400) and answers non-/v1 paths with 404
 *   auth      server_stage_auth():   Authorization: Bearer <client key> -> req->client
 *             (auth.h, against req->cfg: the config snapshot of cfgsnap.h); 401 / 403;
 *             X-Workspace-Id checked or the default injected
 *   route     server_stage_route():  mode check (read-only/full, auth.h) and the SQL hash
 *             for the access log; the route policy (route.h) is matched by the cache stage
 *   cache     server_stage_cache():  cache_stage() (cache.h): answer a fresh hit with
 *             server_respond_*(), join a coalesced fetch (coalesce.h, HG_ASYNC), or register
 *             a response tap (server_req_add_tap) to store what comes back
 *   budget    server_stage_budget(): budget_stage_run() (budget_stage.h): admit now
 *             (HG_NEXT), queue (HG_ASYNC, later server_pipeline_resume()), or shed
 *             (server_respond_error(429/503) + HG_DONE)
 *   upstream  server_stage_upstream(): build the upstream request (hop-by-hop headers
 *             removed, client Authorization replaced by the credential's token, request id
 *             added) and send it with upstream_send() (upstream.h); the response streams to
 *             the client
 *   respond   server_respond_*(); then access log line (log.h) and metrics (metrics.h)
 *
 * A stage returns HG_NEXT (go on with the next stage), HG_DONE (it has answered the
 * client, or the client is gone: stop) or HG_ASYNC (it keeps the request and calls
 * server_pipeline_resume(req) later, on the request's worker thread, to go on with the
 * stage after it).
 *
 * Threading. Every worker thread has its own event_base, its own connections and its
 * own upstream handle (upstream.h: libcurl multi or the native HTTP/1.1 client). A
 * request and everything it points to belong to the worker that accepted it: touch it only on that
 * thread. A module that completes work on another thread (e.g. a Redis reply) must hop back with
 * event_active()/event_base_once on server_req_base(req) (evthread_use_pthreads() is on).
 *
 * Ownership. The server owns struct hg_req. It lives from the parsed request head until
 * the response is finished (or the client is gone) AND no stage holds it any more: a stage
 * that returned HG_ASYNC holds a reference until it resumes or calls server_req_release().
 * After the client went away req->client_gone is set, server_respond_*() become no-ops
 * and the request is freed once the holder lets go.
 */
#ifndef HG_SERVER_H
#define HG_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h> /* TAILQ_* for struct evkeyvalq */

#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

struct hg_req;
struct hg_config;
struct hg_client;
struct hg_credential;
struct hg_worker;
struct hg_conn;
struct upstream;
struct upstream_req;
struct upstream_result;

/* What a pipeline stage tells the pipeline. */
enum hg_stage_result {
    HG_NEXT = 0, /* carry on with the next stage */
    HG_DONE,     /* the request is answered (or abandoned): stop */
    HG_ASYNC,    /* the stage keeps the request; it calls server_pipeline_resume() later */
};

/* The stages, in order. req->stage is the one running (or suspended). */
enum hg_stage {
    HG_STAGE_AUTH = 0,
    HG_STAGE_ROUTE,
    HG_STAGE_CACHE,
    HG_STAGE_BUDGET,
    HG_STAGE_UPSTREAM,
    HG_STAGE_RESPOND,
};

/* How the request body is held. */
enum hg_body_kind {
    HG_BODY_NONE = 0, /* no body (Content-Length 0 or none) */
    HG_BODY_MEMORY,   /* complete in req->body before the pipeline starts: replayable */
    HG_BODY_STREAM,   /* large or chunked: flows to upstream as it arrives, not replayable */
};

/* Client mode, from the profile. */
enum hg_mode {
    HG_MODE_READ_ONLY = 0,
    HG_MODE_FULL,
};

/*
 * A response tap: a module that wants to see the upstream response as it streams to the
 * client (the cache, to store it; the budget, to learn 429/Retry-After). Taps see the
 * response after hop-by-hop removal, in the order they were added. They must not drain
 * or modify `chunk`/`headers`.
 *   on_head: return 0 to go on; HG_TAP_RETRY asks the server to drop this response and run
 *            the pipeline again from HG_STAGE_BUDGET (only honoured when the request body
 *            is replayable, i.e. not HG_BODY_STREAM, and nothing was sent to the client)
 *   on_done: ok != 0 when the body arrived complete; always called once if on_head was.
 */
#define HG_TAP_RETRY 1
struct hg_tap {
    int (*on_head)(struct hg_req *req, void *arg, int status, const struct evkeyvalq *headers);
    void (*on_data)(struct hg_req *req, void *arg, const struct evbuffer *chunk);
    void (*on_done)(struct hg_req *req, void *arg, int ok, const struct upstream_result *res);
    void *arg;
};
#define HG_MAX_TAPS 4

/* The per-request context. Fields marked (ro) are set by the server; leave them alone. */
struct hg_req {
    struct hg_worker *worker;    /* (ro) owning worker; all access on its thread */
    struct hg_conn *conn;        /* (ro) client connection; NULL after the client went away */
    uint64_t start_us;           /* (ro) util_mono_us() when the head was parsed */
    uint64_t wall_ms;            /* (ro) wall clock at the same moment, for the access log */
    const struct hg_config *cfg; /* (ro) the config snapshot this request runs with from
                                    start to end (cfgsnap.h): a reload does not change it */
    char request_id[65];         /* (ro) X-Request-Id: the client's (sanitised) or generated */

    /* request line and head */
    enum evhttp_cmd_type method; /* (ro) EVHTTP_REQ_GET, ... (0 for unknown methods) */
    const char *method_name;     /* (ro) "GET", "POST", ... as sent */
    char *path;                  /* (ro) checked path, always "/v1/..." (see path.h) */
    char *query;                 /* (ro) raw query string without '?', NULL if none */
    int http_minor;              /* (ro) 0 for HTTP/1.0, 1 for HTTP/1.1 */
    struct evkeyvalq headers;    /* request headers as received (hop-by-hop removed);
                                    auth rewrites X-Workspace-Id here */

    /* request body */
    enum hg_body_kind body_kind; /* (ro) */
    int64_t body_length;         /* (ro) Content-Length, -1 when chunked */
    struct evbuffer *body;       /* (ro) HG_BODY_MEMORY: the complete body */

    /* auth stage */
    const struct hg_client *client;   /* (ro) the authenticated client profile */
    const struct hg_credential *cred; /* (ro) its upstream credential */
    const char *workspace;            /* (ro) effective X-Workspace-Id or NULL (points into
                                         headers or into the profile) */

    /* route/cache/budget stages: slots owned by those modules (the server never reads
     * them except to pass them back); each module frees what it put here in its
     * tap on_done or in server_req_add_cleanup() */
    const void *route; /* route policy for this method+path (route.h) */
    void *cache_ctx;   /* cache module state */
    void *budget_ctx;  /* budget module state */

    /* access log fields other stages fill in */
    const char *cache_outcome; /* "-" (default), "hit", "miss", "stale", "coalesced", ... */
    char sql_hash[65];         /* SHA-256 hex of the SQL of POST /v1/query ("" if none) */

    /* progress (ro) */
    enum hg_stage stage;
    int status;          /* status sent to the client (0 until the head went out) */
    int upstream_status; /* status the upstream answered (0 if none) */
    int upstream_attempts;
    uint64_t bytes_in;       /* request body bytes read from the client */
    uint64_t bytes_out;      /* response body bytes written to the client */
    int client_gone;         /* the client connection closed before the end */
    int responded;           /* a response head was sent (or an error answered) */
    struct upstream_req *up; /* the upstream exchange in flight, if any */

    struct hg_tap taps[HG_MAX_TAPS];
    int ntaps;
    int refs; /* (ro) holders: the connection + stages that returned HG_ASYNC */
};

/* ---- lifecycle (main.c) ---- */

/* Start listeners and worker threads for cfg (which must outlive the server). Returns 0,
 * or -1 with the reason logged (e.g. a listen address in use). */
int server_start(const struct hg_config *cfg);

/* Stop accepting, let in-flight requests finish for up to cfg->server.drain_timeout_ms,
 * then stop the workers and free everything. Safe to call from the main thread only. */
void server_stop(void);

/* A new config snapshot was published (cfgsnap_publish): every worker lets go of the old
 * one now, even when idle, so that its tokens are wiped once its last request ends. */
void server_config_changed(void);

/* 1 once SIGTERM/SIGINT started draining (for /readyz). */
int server_draining(void);

/* ---- pipeline (stages call these) ---- */

/* Run the pipeline from the stage after the one that returned HG_ASYNC. */
void server_pipeline_resume(struct hg_req *req);

/* Drop a reference taken by returning HG_ASYNC without resuming (e.g. a queued request
 * whose client went away). */
void server_req_release(struct hg_req *req);

/* Observe the upstream response (see struct hg_tap). Returns 0, -1 if full. */
int server_req_add_tap(struct hg_req *req, const struct hg_tap *tap);

/* Function called when the request is freed (to free cache_ctx etc.). Up to 4. */
int server_req_add_cleanup(struct hg_req *req, void (*fn)(struct hg_req *, void *), void *arg);

/* The worker's event base and upstream handle, for stages that need to schedule work. */
struct event_base *server_req_base(const struct hg_req *req);
struct upstream *server_req_upstream(const struct hg_req *req);

/* The configuration snapshot the request runs with (req->cfg). */
const struct hg_config *server_req_config(const struct hg_req *req);

/* ---- responses (stages call these) ---- */

/* API-shaped error {"error":{"code":C,"message":M},"message":M,"status":S}; code NULL =
 * util_status_code_name(status). extra_headers may be NULL (e.g. to add Retry-After). */
void server_respond_error(struct hg_req *req, int status, const char *code, const char *message,
                          const struct evkeyvalq *extra_headers);

/* A complete response: status, headers (copied; hop-by-hop and Content-Length ignored),
 * body moved out of `body` (may be NULL). */
void server_respond_buffer(struct hg_req *req, int status, const struct evkeyvalq *headers,
                           struct evbuffer *body);

/* A streamed response: start (content_length -1 = unknown), then data (moved out of
 * chunk), then end. server_respond_data() returns the number of bytes queued towards the
 * client and not yet written; a producer should pause above SERVER_WRITE_HIGHWATER and
 * resume from its drain callback (set with server_respond_on_drain). */
#define SERVER_WRITE_HIGHWATER (1u << 20)
void server_respond_start(struct hg_req *req, int status, const struct evkeyvalq *headers,
                          int64_t content_length);
size_t server_respond_data(struct hg_req *req, struct evbuffer *chunk);
void server_respond_end(struct hg_req *req);
void server_respond_on_drain(struct hg_req *req, void (*fn)(struct hg_req *, void *), void *arg);

/* ---- admin listener extension ---- */

/* Handler for an admin endpoint: write the answer with evhttp_send_reply(). Runs on the
 * admin thread (worker 0's event base), after the admin token was checked. */
typedef void (*server_admin_fn)(struct evhttp_request *req, void *arg);

/* Register an admin endpoint for `path` (exact) before server_start(). Up to 16. */
int server_admin_register(const char *path, server_admin_fn fn, void *arg);
/* The admin thread's event base and upstream handle (worker 0's; NULL before
 * server_start), for admin-side work such as the /readyz probe. */
struct event_base *server_admin_base(void);
struct upstream *server_admin_upstream(void);

/* The same for an endpoint that needs no admin token (like /healthz, /readyz). */
int server_admin_register_public(const char *path, server_admin_fn fn, void *arg);

#endif
