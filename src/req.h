/*
 * req: the request object, struct hg_req, as data: what one client request carries from
 * its parsed head to the end of its response. Declared here, below every module that reads
 * it (log.c and metrics.c read it; the pipeline, pipeline.h, owns and drives it).
 *
 * Rules: fields marked (ro) are set by the connection (conn.c) or the pipeline
 * (pipeline.c); stages write only the fields their comment gives them. A request belongs
 * to the worker thread that accepted it. It travels typed (struct hg_req *); where it must
 * pass through a `void *` (an event, a library callback) the receiver checks it with
 * HG_CHECK_OBJ_NOTNULL(req, HG_REQ_MAGIC) (check.h).
 */
#ifndef HG_REQ_H
#define HG_REQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h> /* TAILQ_* for struct evkeyvalq */

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

struct hg_req;
struct hg_config;
struct hg_client;
struct hg_credential;
struct hg_conn;
struct hg_req_io;
struct auth_memo;
struct log_access;
struct route_policy;
struct upstream;
struct upstream_req;
struct upstream_result;

#define HG_REQ_MAGIC 0x6a1b7c3du

/* How the request body is held. */
enum hg_body_kind {
    HG_BODY_NONE = 0, /* no body (Content-Length 0 or none) */
    HG_BODY_MEMORY,   /* complete in req->body before the pipeline starts: replayable */
    HG_BODY_STREAM,   /* large or chunked: flows to upstream as it arrives, not replayable */
};

/*
 * A response tap: a module that wants to see the upstream response as it streams to the
 * client (the cache, to store it; the budget, to learn 429/Retry-After). Taps see the
 * response after hop-by-hop removal, in the order they were added. They must not drain
 * or modify `chunk`/`headers`.
 *   on_head: return 0 to go on; HG_TAP_RETRY asks the pipeline to drop this response and
 *            run again from the retry stage (the budget: only honoured when the request body
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

/* The upstream stage's per-request state (upstream_stage.c; nobody else touches it). */
struct hg_fwd {
    int tap_head_called;
    int retry_requested;
    /* an upstream answer held back until complete (cache_hold_response): head and body */
    int held;
    int held_status;
    int64_t held_cl;
    struct evkeyvalq held_headers;
    struct evbuffer *held_body;
};

struct hg_req {
    unsigned magic;              /* HG_REQ_MAGIC (check.h) */
    struct hg_conn *conn;        /* (ro) client connection; NULL after the client went away */
    const struct hg_req_io *io;  /* (ro) how responses reach the connection (pipeline.h) */
    struct event_base *base;     /* (ro) the owning worker's loop; all access on its thread */
    struct upstream *up_handle;  /* (ro) the worker's upstream client */
    struct log_access *alog;     /* (ro) the worker's access log */
    struct auth_memo *auth_memo; /* (ro) the connection's last verified key (auth.h) */
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
    const struct hg_client *client;   /* the authenticated client profile */
    const struct hg_credential *cred; /* its upstream credential */
    const char *workspace;            /* effective X-Workspace-Id or NULL (points into
                                         headers or into the profile) */

    /* route stage: the routing table's row for this method + path (route.h), set for
     * every request that passed auth; read by auth's mode check, the cache and the budget.
     * Its tags are added by the cache stage (route_complete), the one stage that reads them;
     * nothing else writes it. */
    struct route_policy *route;

    /* cache/budget stages: slots owned by those modules (the pipeline never reads them);
     * each module frees what it put here in its tap on_done or a pipeline_req_add_cleanup */
    void *cache_ctx;
    void *budget_ctx;

    /* access log fields other stages fill in */
    const char *cache_outcome; /* "-" (default), "hit", "miss", "stale", "coalesced", ... */
    char sql_hash[65];         /* SHA-256 hex of the SQL of POST /v1/query ("" if none) */

    /* progress (ro) */
    int stage;           /* index of the stage running (or suspended) in the stage table */
    int status;          /* status sent to the client (0 until the head went out) */
    int upstream_status; /* status the upstream answered (0 if none) */
    int upstream_attempts;
    uint64_t bytes_in;       /* request body bytes read from the client */
    uint64_t bytes_out;      /* response body bytes written to the client */
    int client_gone;         /* the client connection closed before the end */
    int responded;           /* a response head was sent (or an error answered) */
    struct upstream_req *up; /* the upstream exchange in flight, if any */
    struct hg_fwd fwd;       /* the upstream stage's state */

    struct hg_tap taps[HG_MAX_TAPS];
    int ntaps;
    int refs; /* (ro) holders: the connection + stages that returned HG_ASYNC */
};

#endif
