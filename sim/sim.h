/*
 * sim: the framework of hotdata-sim, the local stand-in for the Hotdata /v1 API.
 *
 * Job: everything an API area file (sim/query.c, sim/connections.c, ...) needs to serve its
 * routes like the live service: the simulator context, the router (method + path pattern
 * with {param} segments), the request object (auth done, workspace resolved, JSON body
 * parsed), reply helpers (JSON, 204, API-shaped errors, raw bytes), ids and timestamps,
 * per-workspace SQLite with a prepared-statement cache, the registry of SQL-queryable
 * tables ("conn.schema.table" -> SQLite table), background jobs and query execution.
 *
 * Threading: one thread, one libevent loop. Every function here must be called on the
 * loop thread; handlers must not block for long (no sleeps: use sim_timer_after).
 *
 * Storage: --data-dir DIR holds
 *     DIR/sim.db              global: runtime-created workspaces (POST /v1/workspaces)
 *     DIR/ws/<ws_id>.db       one SQLite file per workspace: seeded demo tables, the core
 *                             catalog (connections, sim_tables), query_runs, results,
 *                             sim_jobs, plus whatever schema areas add (sim_router_add_schema)
 *     DIR/uploads/            raw upload bodies streamed to disk (sim/stream.c)
 * Workspace data separation is by file: a handler only ever sees req->ws->db.
 * Keep no per-workspace state outside SQLite (POST /_sim/reset?data=1 recreates the files;
 * areas with in-memory caches register a hook with sim_router_on_reset).
 *
 * Ownership: the framework owns struct sim_req and frees it after the reply is sent (or
 * when the client goes away). A handler must eventually call exactly one sim_reply_*
 * function for its request, either before returning or later from a timer; the request and
 * every string in it are gone after that call, so format messages from params before or
 * in the reply call and touch nothing afterwards. A request kept for a later reply whose
 * client disconnected gets req->ev == NULL; the reply then only frees it. Strings in
 * sim_req (params, query values, token, ids) are owned by the request. json_t bodies handed
 * to sim_reply_json are stolen (decref'd by the framework).
 *
 * Core per-workspace schema (created by the framework, shared by areas; add columns only
 * via a small edit here + sim/store.c, owner: sim core):
 *   connections(id TEXT PK, name TEXT UNIQUE NOT NULL, source_type TEXT NOT NULL,
 *               config TEXT NOT NULL DEFAULT '{}' -- JSON, secret_id TEXT,
 *               created_at TEXT NOT NULL, discovered_at TEXT)
 *   sim_tables(catalog TEXT, schema_name TEXT, table_name TEXT -- PK (catalog,schema,table)
 *              NOCASE; kind TEXT 'connection'|'dataset'; owner_id TEXT (connection id or
 *              dataset id); sqlite_table TEXT (real SQLite table name); synced INTEGER 0/1;
 *              last_sync TEXT NULL; discovered_at TEXT)
 *   query_runs, results, sim_jobs: owned by sim/query.c and sim/jobs.c (use the APIs below).
 * The seeded connection "demo" (id conn_demo, source_type postgres) and its tables
 * demo.public.customers / orders / products exist in every workspace.
 */
#ifndef SIM_H
#define SIM_H

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
    /* rate limiting (token bucket, sim/server.c) */
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
    char *pg_url;              /* --pg-url: use this PostgreSQL server instead of a private one */
    int query_timeout_ms;      /* --query-timeout-ms: statement timeout (0: 10000) */
    char *pg_template;         /* --pg-template: initialised cluster to copy on first start */
};

/* ------------------------------------------------------------------------------------ */
/* Workspaces                                                                            */

struct sim_stmt_cache;
struct sim_pg;

struct sim_ws {
    char *id;                     /* "ws_test" */
    char *name;                   /* display name */
    char *created_at;             /* RFC 3339 */
    sqlite3 *db;                  /* DIR/ws/<id>.db, open for the life of the process */
    struct sim_stmt_cache *stmts; /* see sim_db_stmt */
    struct sim_pg *pg;            /* the PostgreSQL engine holding its user data (core) */
};

/* Workspace by id, NULL when unknown. */
struct sim_ws *sim_ws_find(struct sim_ctx *ctx, const char *id);
/* Number of workspaces and the i-th one (creation order). */
size_t sim_ws_count(struct sim_ctx *ctx);
struct sim_ws *sim_ws_at(struct sim_ctx *ctx, size_t i);
/* Create a workspace at runtime (new id "ws_..."), persist it in DIR/sim.db, open and seed
 * its database; the creating token gains access to it. NULL on failure. */
struct sim_ws *sim_ws_create(struct sim_ctx *ctx, const char *name, struct sim_token *creator);
/* May this token use this workspace? */
bool sim_token_may_use(const struct sim_token *tok, const char *ws_id);

/*
 * A cached prepared statement for sql on ws->db (keyed by the SQL text), reset and with
 * bindings cleared. Never finalize it; call sqlite3_reset(stmt) when done so read
 * transactions end. Returns NULL (and logs) when the SQL does not prepare.
 */
sqlite3_stmt *sim_db_stmt(struct sim_ws *ws, const char *sql);
/* Run SQL without results (DDL, multi-statement). 0 on success, -1 (logged) on error. */
int sim_db_exec(sqlite3 *db, const char *sql);

/* ------------------------------------------------------------------------------------ */
/* Router                                                                                */

enum sim_route_flags {
    SIM_ROUTE_DEFAULT = 0,
    SIM_ROUTE_NO_WORKSPACE =
        1 << 0,                  /* token only, X-Workspace-Id not needed (GET /v1/workspaces) */
    SIM_ROUTE_RAW_BODY = 1 << 1, /* body streamed to a file: req->upload_path (POST /v1/files) */
};

typedef void (*sim_handler_fn)(struct sim_req *req);

/*
 * Register a handler. method: "GET", "POST", "PUT", "DELETE", "PATCH". pattern: absolute
 * path, segments in braces are parameters: "/v1/connections/{connection_id}/health".
 * Literal segments win over parameters when two patterns could both match.
 */
void sim_route(struct sim_router *r, const char *method, const char *pattern, sim_handler_fn fn,
               unsigned flags);

/* Extra per-workspace schema (CREATE TABLE IF NOT EXISTS ...; run on every workspace DB
 * at open, after the core schema). sql must stay valid for the life of the process. */
void sim_router_add_schema(struct sim_router *r, const char *sql);
/* Called once for each freshly created workspace DB, after the core seed. */
void sim_router_add_seed(struct sim_router *r, void (*fn)(struct sim_ctx *, struct sim_ws *));
/* Called after POST /_sim/reset?data=1 recreated every workspace DB. */
void sim_router_on_reset(struct sim_router *r, void (*fn)(struct sim_ctx *));

/* Area registration: sim/main.c calls every one of these. Areas owned by sim core: */
void sim_query_register(struct sim_router *r);   /* sim/query.c: /v1/query, query-runs, results */
void sim_jobs_register(struct sim_router *r);    /* sim/jobs.c: /v1/jobs */
void sim_refresh_register(struct sim_router *r); /* sim/refresh.c: /v1/refresh */
/* Areas owned by sim-resources (weak no-op fallbacks in sim/zz_areas_weak.c keep the build
 * linking until the real ones exist; the strong definitions win at link time): */
void sim_connections_register(struct sim_router *r); /* connections, connection types,
                                                        information_schema, table profile */
void sim_secrets_register(struct sim_router *r);
void sim_databases_register(struct sim_router *r);     /* /v1/secrets */
void sim_datasets_register(struct sim_router *r);      /* /v1/datasets */
void sim_uploads_register(struct sim_router *r);       /* /v1/files */
void sim_saved_queries_register(struct sim_router *r); /* /v1/queries */
void sim_indexes_register(struct sim_router *r);       /* .../tables/{schema}/{table}/indexes */
void sim_embedding_register(struct sim_router *r);     /* /v1/embedding-providers */
void sim_workspaces_register(struct sim_router *r);    /* /v1/workspaces */

/*
 * Hook for POST /v1/refresh with dataset_id (owned by datasets.c; weak fallback answers
 * 404 "Dataset not found"). Must reply to req: 200 null when !async, or 202 with a job
 * (sim_jobs_reply_accepted) when async.
 */
void sim_datasets_refresh(struct sim_req *req, const char *dataset_id, bool async);

/*
 * Schema discovery of a connection (owned by connections.c): when the connection has no
 * tables yet (created with skip_discovery), create and register its tables, as creating it
 * without skip_discovery would have. Returns the number of tables discovered (0 when it
 * already had tables), -1 when the connection is unknown or discovery failed. For a schema
 * refresh (POST /v1/refresh with data=false).
 */
int sim_connections_discover(struct sim_ws *ws, const char *connection_id);

/*
 * Largest POST /v1/files body accepted (owned by uploads.c): 2 GB, or 20 GB with
 * ?streaming=true (--max-upload-bytes N: N and 10 N). The streaming filter refuses a
 * declared Content-Length over it before reading the body, and a chunked body as soon as it
 * grows over it; the handler answers 413 for anything else beyond it.
 */
uint64_t sim_uploads_max_bytes(struct sim_ctx *ctx, bool streaming);

/* ------------------------------------------------------------------------------------ */
/* Requests                                                                              */

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

/* Path parameter by name ({connection_id}); NULL when the pattern has no such segment. */
const char *sim_req_param(struct sim_req *req, const char *name);
/* Query parameter by name, NULL when absent. */
const char *sim_req_query(struct sim_req *req, const char *name);
/* Request header (case-insensitive), NULL when absent. */
const char *sim_req_header(struct sim_req *req, const char *name);

/*
 * Integer query parameter: *out = def when absent. Replies 400 and returns -1 when it is
 * not an integer or outside [min, max]; 0 otherwise.
 */
int sim_req_query_int(struct sim_req *req, const char *name, long def, long min, long max,
                      long *out);

/*
 * Typed body fields. Absent or JSON null -> *out unchanged and *present = false (present
 * may be NULL). A required field that is absent/null, or a field of the wrong JSON type,
 * replies 400 and returns -1. A non-object body replies 400 too. 0 on success.
 */
int sim_body_str(struct sim_req *req, const char *key, bool required, const char **out,
                 bool *present);
int sim_body_bool(struct sim_req *req, const char *key, bool required, bool *out, bool *present);
int sim_body_int(struct sim_req *req, const char *key, bool required, long long *out,
                 bool *present);

/* ------------------------------------------------------------------------------------ */
/* Replies: exactly one per request. They free the request.                             */

/* JSON with status; body is stolen. Content-Type: application/json. */
void sim_reply_json(struct sim_req *req, int status, json_t *body);
/* Empty body (204 for deletes). */
void sim_reply_empty(struct sim_req *req, int status);
/* API-shaped error {"error":{"code","message"},"message","status"}; code NULL -> derived
 * from the status (util_status_code_name). */
void sim_reply_error(struct sim_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Raw bytes with a content type; buf contents are moved out (buf stays owned by caller). */
void sim_reply_raw(struct sim_req *req, int status, const char *content_type, struct evbuffer *buf);
/* Add a response header before replying (e.g. "X-Total-Row-Count"). */
void sim_reply_header(struct sim_req *req, const char *name, const char *value);

/* ------------------------------------------------------------------------------------ */
/* Ids, time, timers                                                                     */

/* prefix + "_" + 20 random [a-z0-9]; out must hold 64 bytes. E.g. sim_id_new("conn", b). */
void sim_id_new(const char *prefix, char out[64]);
/* Now as RFC 3339 UTC "2026-01-01T00:00:00Z" (seconds) or with milliseconds
 * "2026-01-01T00:00:00.123Z" (ms != 0). out holds 40 bytes. */
void sim_now_rfc3339(char out[40], bool ms);

/* One-shot timer on the loop: fn(arg) after ms milliseconds. */
void sim_timer_after(struct sim_ctx *ctx, int ms, void (*fn)(void *arg), void *arg);
/* The same; when the simulator stops with the timer still pending, drop(arg) frees arg
 * instead (fn never runs then; nothing may be replied or written to a database). */
void sim_timer_after_drop(struct sim_ctx *ctx, int ms, void (*fn)(void *arg), void *arg,
                          void (*drop)(void *arg));

struct event_base *sim_base(struct sim_ctx *ctx);
const struct sim_config *sim_cfg(struct sim_ctx *ctx);

/* ------------------------------------------------------------------------------------ */
/* Queryable tables: "catalog.schema.table" in user SQL -> a real SQLite table            */

/*
 * Make catalog.schema.table queryable in ws (catalog: connection name, or "datasets" for
 * datasets). kind "connection" | "dataset"; owner_id: connection id / dataset id. Replaces
 * an existing mapping of the same name. Names match case-insensitively. 0 on success.
 */
int sim_table_register(struct sim_ws *ws, const char *kind, const char *owner_id,
                       const char *catalog, const char *schema, const char *table,
                       const char *sqlite_table, bool synced);
int sim_table_unregister(struct sim_ws *ws, const char *catalog, const char *schema,
                         const char *table);
/* Remove every mapping of one owner (connection or dataset); returns how many. */
int sim_table_unregister_owner(struct sim_ws *ws, const char *owner_id);
/* The SQLite table for catalog.schema.table, malloc'd, NULL when unknown. */
char *sim_table_resolve(struct sim_ws *ws, const char *catalog, const char *schema,
                        const char *table);

/*
 * Pure SQL rewriter (sim/sqlrewrite.c): every three-part name a.b.c (each part bare or
 * "double-quoted") outside string literals, quoted identifiers of other shapes and
 * comments is passed to resolve(); a non-NULL malloc'd answer replaces it as a quoted
 * SQLite identifier. When resolve returns NULL the name is left as is, unless
 * is_catalog(first part) says it names a known catalog: then it is an error
 * "Table 'a.b.c' not found". Returns 0 and *out (malloc'd) or -1 and *err (malloc'd).
 */
typedef char *(*sim_sql_resolve_fn)(void *ud, const char *a, const char *b, const char *c);
typedef bool (*sim_sql_is_catalog_fn)(void *ud, const char *a);
int sim_sql_rewrite(const char *sql, sim_sql_resolve_fn resolve, sim_sql_is_catalog_fn is_catalog,
                    void *ud, char **out, char **err);
/*
 * The same with unqualified names: a one-part (table) or two-part (schema.table) name in
 * table position (right after FROM or JOIN, or after a comma in a FROM list) is passed to
 * resolve_short (b NULL for one part); a non-NULL answer replaces it like resolve's.
 */
typedef char *(*sim_sql_resolve_short_fn)(void *ud, const char *schema, const char *table);
int sim_sql_rewrite_ex(const char *sql, sim_sql_resolve_fn resolve,
                       sim_sql_is_catalog_fn is_catalog, sim_sql_resolve_short_fn resolve_short,
                       void *ud, char **out, char **err);

/* ------------------------------------------------------------------------------------ */
/* Databases (sim/databases.c): the database scope of a request                          */

bool sim_database_exists(struct sim_ws *ws, const char *id);
/*
 * The database a request is scoped to: X-Database-Id header or body database_id (NULL when
 * neither). Replies 400 (both given and different, or not a string) or 404 (unknown id) and
 * returns -1; else 0 with *db_id pointing into the request.
 */
int sim_req_database(struct sim_req *req, const char **db_id);
/* Make owner_id's tables (a dataset) belong to db_id (NULL: unscoped). 0 or -1. */
int sim_table_scope_set(struct sim_ws *ws, const char *owner_id, const char *db_id);

/* ------------------------------------------------------------------------------------ */
/* Queries (sim/query.c)                                                                 */

/*
 * Run sql for req like POST /v1/query (sync): records a query run (with saved_query_id /
 * version when not NULL/0), persists a result, counts the sql_hash, replies 200 with the
 * query response or 400 with the engine's error. Used by saved-query execute.
 */
void sim_query_run_and_reply(struct sim_req *req, const char *sql, const char *saved_query_id,
                             int saved_query_version);

/* ------------------------------------------------------------------------------------ */
/* Background jobs (sim/jobs.c). Stored in ws table sim_jobs; GET /v1/jobs serves them.  */

enum sim_job_status {
    SIM_JOB_PENDING,
    SIM_JOB_RUNNING,
    SIM_JOB_SUCCEEDED,
    SIM_JOB_PARTIALLY_SUCCEEDED,
    SIM_JOB_FAILED,
};

/*
 * The work of a job: runs on the loop when the job leaves "running". Set *result (a JSON
 * value, stolen; may stay NULL) and, on failure, *error (malloc'd message). Return the
 * terminal status (SUCCEEDED, PARTIALLY_SUCCEEDED or FAILED).
 */
typedef enum sim_job_status (*sim_job_fn)(struct sim_ctx *ctx, struct sim_ws *ws,
                                          const char *job_id, json_t *args, json_t **result,
                                          char **error);

/*
 * Create a job of job_type ("data_refresh_table", "create_index", ...): stored as pending,
 * running after cfg.job_delay_ms (attempts = 1), then fn runs after another job_delay_ms
 * and its outcome is stored. args is stolen and handed to fn. id_out (64 bytes) gets the
 * job id. 0 on success. Jobs still pending/running when the process stops are marked
 * failed at the next start.
 */
int sim_job_create(struct sim_ctx *ctx, struct sim_ws *ws, const char *job_type, sim_job_fn fn,
                   json_t *args, char id_out[64]);
/* The job as the API shows it (GET /v1/jobs/{id} body), NULL when unknown. */
json_t *sim_job_json(struct sim_ws *ws, const char *job_id);
/* Reply 202 {"id","job_id","job_type","status":"pending","status_url":"/v1/jobs/<id>"}. */
void sim_jobs_reply_accepted(struct sim_req *req, const char *job_id, const char *job_type);

/* ------------------------------------------------------------------------------------ */
/* Stats (sim/server.c)                                                                  */

/* Count one execution of SQL whose sql_hash is hash (GET /_sim/stats "sql_hashes"). */
void sim_stats_count_sql(struct sim_ctx *ctx, const char *hash);

#endif
