/*
 * sim_types: the plain data types every part of hotdata-sim shares: the configuration and
 * its tokens, a workspace, route flags and the handler type, and the request a handler
 * gets. No functions: each module declares its own in sim_<file>.h.
 *
 * Rules: types only, and no local include: every other sim header may include this one
 * without forming an include cycle (scripts/check-sim-includes.sh).
 */
#ifndef SIM_TYPES_H
#define SIM_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <sqlite3.h>

struct sim_ctx;
struct sim_router;
struct sim_req;

/* ------------------------------------------------------------------------------------ */
/* Configuration (from the command line, see sim/main.c --help)                          */

#define SIM_MAX_TOKENS 32
#define SIM_MAX_WS 256

struct sim_token {
    char *token;             /* the bearer token itself (never logged, never in stats) */
    char hash12[13];         /* first 12 hex of SHA-256(token): what stats show */
    char user_public_id[16]; /* "user_" + first 10 hex of SHA-256(token) */
    bool all_workspaces;     /* no "=list" given: may use every workspace */
    char **allowed;          /* workspace ids when !all_workspaces */
    size_t nallowed;
    /* rate limiting (token bucket, sim/auth.c) */
    double bucket;
    uint64_t bucket_ts_us;
};

struct sim_config {
    char listen_host[64];
    int listen_port;
    char *data_dir;
    struct sim_token tokens[SIM_MAX_TOKENS];
    size_t ntokens;
    char *ws_ids[SIM_MAX_WS]; /* --workspace, in order */
    size_t nws_ids;
    long seed_rows;        /* rows of demo.public.orders on first start (default 100000) */
    double rate;           /* requests/s per token, 0 = off */
    double burst;          /* bucket size */
    int async_delay_ms;    /* each async query phase (queued, running) lasts this long */
    int result_delay_ms;   /* each result phase (pending, processing) lasts this long */
    int job_delay_ms;      /* each job phase (pending, running) lasts this long */
    int results_not_ready; /* GET /v1/results/{id} not ready: 200 (reference form, default) or
                              202 (202 pending/processing, 409 failed) */
    bool quiet;
    uint64_t max_upload_bytes; /* --max-upload-bytes; 0: 2 GB (x10 with ?streaming=true) */
};

/* ------------------------------------------------------------------------------------ */
/* Workspaces                                                                            */

struct sim_stmt_cache;

struct sim_ws {
    char *id;                     /* "ws_test" */
    char *name;                   /* display name */
    char *created_at;             /* RFC 3339 */
    sqlite3 *db;                  /* DIR/ws/<id>.db, open for the life of the process */
    struct sim_stmt_cache *stmts; /* see sim_db_stmt */
};

/* ------------------------------------------------------------------------------------ */
/* Routes and requests                                                                   */

enum sim_route_flags {
    SIM_ROUTE_DEFAULT = 0,
    SIM_ROUTE_NO_WORKSPACE =
        1 << 0,                  /* token only, X-Workspace-Id not needed (GET /v1/workspaces) */
    SIM_ROUTE_RAW_BODY = 1 << 1, /* body streamed to a file: req->upload_path (POST /v1/files) */
};

typedef void (*sim_handler_fn)(struct sim_req *req);

#define SIM_MAX_PARAMS 8

struct sim_req {
    struct sim_ctx *ctx;
    struct evhttp_request *ev; /* NULL once the client went away: then replies are no-ops */
    const char *method;        /* "GET", ... */
    char *path;                /* decoded path, no query string */
    const char *route;         /* matched "METHOD /pattern", e.g. "POST /v1/query" */
    size_t nparams;
    const char *param_names[SIM_MAX_PARAMS];
    char *param_values[SIM_MAX_PARAMS]; /* percent-decoded */
    struct evkeyvalq query;             /* decoded query parameters */
    json_t *body;                       /* parsed JSON body; NULL when the body was empty */
    struct sim_token *token;            /* authenticated token */
    struct sim_ws *ws;                  /* workspace from X-Workspace-Id (NULL for NO_WORKSPACE) */
    sqlite3 *db;                        /* ws->db (NULL for NO_WORKSPACE) */
    char *upload_path;                  /* RAW_BODY: file holding the body; a handler that keeps the
                                           file renames it and sets upload_path = NULL, else the
                                           framework unlinks it */
    uint64_t upload_size;               /* RAW_BODY: body length in bytes */
    const char *content_type;           /* request Content-Type header or NULL */
    uint64_t start_us;                  /* monotonic arrival time */
    /* framework internals below */
    void *priv;
};

#endif
