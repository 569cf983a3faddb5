/*
 * route: the policy table for every endpoint of the Hotdata /v1 API.
 *
 * Job: map (method, path, query string) to a policy: which endpoint it is, whether it mutates,
 * whether read-only clients may call it, its cache class, TTL class and default TTL, its path
 * parameters, the cache tags a cached response belongs to, and the tags a successful mutation
 * invalidates. Also: tags for query results (from sqlkey's table references), tags for
 * POST /v1/refresh (from its body), and body checks (terminal status, never-cache markers).
 *
 * Rules: pure and thread-safe, no global mutable state. route_match runs on every request: a
 * segment matcher over a static table, no regex, no allocation; everything it returns lives
 * inside struct route_policy (strings are stored in its buffer and read through accessors, so
 * the struct may be copied by value). Helpers that allocate say so.
 *
 * TAG SCHEME. Tags are workspace-relative: the cache scopes them to the request's workspace and
 * adds "ws:<ws>" itself. Tag values are lower-cased (ids, names, schema, table), so two spellings
 * can only collide, i.e. over-invalidate, never miss. Path parameters are percent-decoded.
 *   metadata (tags of cached GET responses; invalidated by the mutations listed):
 *     workspaces                 GET /v1/workspaces               <- POST /v1/workspaces
 *                                (sent without X-Workspace-Id: scope it by credential, not ws)
 *     list:connections           GET /v1/connections              <- connection create/delete,
 *                                                                    purges, refresh
 *     conn:<c>                   connection get, table profiles, index lists of connection <c>
 *                                                                 <- delete, purges, refresh of c
 *     table:<c>.<s>.<t>          table profile                    <- table purge, refresh
 *     index:<c>.<s>.<t>          index list of a table            <- index create/delete,
 *                                                                    table purge, refresh
 *     conntypes                  connection types (list, get)     (static: TTL only)
 *     infoschema                 GET /v1/information_schema (any filter) <- anything that can
 *                                                                    change a table's existence,
 *                                                                    columns or sync status
 *     list:secrets, secret:<n>   secrets list / get               <- secret create/update/delete
 *     providers, list:providers, provider:<id>  embedding providers <- provider mutations,
 *                                                                    secret update/delete
 *     list:files                 GET /v1/files                    <- upload, dataset create
 *     list:datasets, dataset:<id> datasets list / get / versions  <- dataset mutations, refresh
 *     list:queries, savedquery:<id> saved queries list / get / versions / execute results
 *                                                                 <- saved-query mutations
 *     results, query-runs, jobs  the lists                        <- any forwarded query, execute,
 *                                                                    refresh, index/dataset create
 *     result:<id>, queryrun:<id>, job:<id>  single objects, cached only once terminal (immutable)
 *   query results (POST /v1/query, saved-query execute; see route_query_tags):
 *     queries                    every query result                <- whole-workspace data change
 *     qtable:<c>.<s>.<t>         result reads table c.s.t (c = the name used in the SQL,
 *                                "datasets" for datasets)         <- table refresh/purge, index
 *     qconn:<c>                  result reads some table of connection c  <- connection-wide
 *                                                                    refresh, purge, delete
 *     qdataset:<s>.<t>           result reads datasets.<s>.<t>    (also qconn:datasets)
 *     qunknown                   result reads a table it could not name fully (or a saved query
 *                                whose SQL is not known)          <- EVERY data change
 *   Data mutations (refresh, purges, connection delete, dataset mutations, writing SQL) always
 *   invalidate qunknown besides their precise tags.
 *
 * TABLE FUNCTIONS AND EXTERNAL DATA. A query reading only table functions (generate_series,
 * read_parquet(...)) carries no q-tag but "queries": only its TTL bounds staleness.
 *
 * CONNECTION NAMES. SQL names a connection by its name (`prod_pg.public.orders`) while the API
 * paths and the refresh body carry its id. route_invalidation_tags therefore takes an optional
 * resolver from connection id to name (the cache can learn it from GET /v1/connections bodies).
 * It emits qconn:/qtable: for the id AND, when resolved, for the name; when a resolver is absent
 * or fails it adds "queries" (all query results of the workspace) instead. The invalidation list
 * returned by route_match is that resolver-less conservative list.
 */
#ifndef HG_ROUTE_H
#define HG_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sqlkey.h"

enum route_id {
    ROUTE_NOT_API = 0,        /* path outside /v1 (the gateway's own endpoints, or 404) */
    ROUTE_UNKNOWN,            /* under /v1 but not in the reference, or method not listed */
    ROUTE_WORKSPACES_LIST,    /* GET    /v1/workspaces */
    ROUTE_WORKSPACES_CREATE,  /* POST   /v1/workspaces */
    ROUTE_QUERY,              /* POST   /v1/query */
    ROUTE_CONNECTIONS_LIST,   /* GET    /v1/connections */
    ROUTE_CONNECTIONS_CREATE, /* POST   /v1/connections */
    ROUTE_CONNECTIONS_GET,    /* GET    /v1/connections/{connection_id} */
    ROUTE_CONNECTIONS_DELETE, /* DELETE /v1/connections/{connection_id} */
    ROUTE_CONNECTIONS_PURGE,  /* DELETE /v1/connections/{connection_id}/cache */
    ROUTE_CONNECTIONS_HEALTH, /* GET    /v1/connections/{connection_id}/health */
    ROUTE_TABLES_PURGE,       /* DELETE /v1/connections/{c}/tables/{schema}/{table}/cache */
    ROUTE_TABLES_PROFILE,     /* GET    /v1/connections/{c}/tables/{schema}/{table}/profile */
    ROUTE_INDEXES_LIST,       /* GET    /v1/connections/{c}/tables/{schema}/{table}/indexes */
    ROUTE_INDEXES_CREATE,     /* POST   /v1/connections/{c}/tables/{schema}/{table}/indexes */
    ROUTE_INDEXES_DELETE,     /* DELETE /v1/connections/{c}/tables/{s}/{t}/indexes/{index_name} */
    ROUTE_CONNECTION_TYPES_LIST,  /* GET   /v1/connection-types */
    ROUTE_CONNECTION_TYPES_GET,   /* GET    /v1/connection-types/{name} */
    ROUTE_REFRESH,                /* POST   /v1/refresh */
    ROUTE_INFORMATION_SCHEMA,     /* GET    /v1/information_schema */
    ROUTE_SECRETS_LIST,           /* GET    /v1/secrets */
    ROUTE_SECRETS_CREATE,         /* POST   /v1/secrets */
    ROUTE_SECRETS_GET,            /* GET    /v1/secrets/{name} */
    ROUTE_SECRETS_UPDATE,         /* PUT    /v1/secrets/{name} */
    ROUTE_SECRETS_DELETE,         /* DELETE /v1/secrets/{name} */
    ROUTE_RESULTS_LIST,           /* GET    /v1/results */
    ROUTE_RESULTS_GET,            /* GET    /v1/results/{id} */
    ROUTE_QUERY_RUNS_LIST,        /* GET    /v1/query-runs */
    ROUTE_QUERY_RUNS_GET,         /* GET    /v1/query-runs/{id} */
    ROUTE_UPLOADS_LIST,           /* GET    /v1/files */
    ROUTE_UPLOADS_CREATE,         /* POST   /v1/files */
    ROUTE_DATASETS_LIST,          /* GET    /v1/datasets */
    ROUTE_DATASETS_CREATE,        /* POST   /v1/datasets */
    ROUTE_DATASETS_GET,           /* GET    /v1/datasets/{id} */
    ROUTE_DATASETS_UPDATE,        /* PUT    /v1/datasets/{id} */
    ROUTE_DATASETS_DELETE,        /* DELETE /v1/datasets/{id} */
    ROUTE_DATASETS_VERSIONS,      /* GET    /v1/datasets/{id}/versions */
    ROUTE_SAVED_QUERIES_LIST,     /* GET    /v1/queries */
    ROUTE_SAVED_QUERIES_CREATE,   /* POST   /v1/queries */
    ROUTE_SAVED_QUERIES_GET,      /* GET    /v1/queries/{id} */
    ROUTE_SAVED_QUERIES_UPDATE,   /* PUT    /v1/queries/{id} */
    ROUTE_SAVED_QUERIES_DELETE,   /* DELETE /v1/queries/{id} */
    ROUTE_SAVED_QUERIES_EXECUTE,  /* POST  /v1/queries/{id}/execute */
    ROUTE_SAVED_QUERIES_VERSIONS, /* GET  /v1/queries/{id}/versions */
    ROUTE_PROVIDERS_LIST,         /* GET    /v1/embedding-providers */
    ROUTE_PROVIDERS_CREATE,       /* POST   /v1/embedding-providers */
    ROUTE_PROVIDERS_GET,          /* GET    /v1/embedding-providers/{id} */
    ROUTE_PROVIDERS_UPDATE,       /* PUT    /v1/embedding-providers/{id} */
    ROUTE_PROVIDERS_DELETE,       /* DELETE /v1/embedding-providers/{id} */
    ROUTE_JOBS_LIST,              /* GET    /v1/jobs */
    ROUTE_JOBS_GET,               /* GET    /v1/jobs/{id} */
    ROUTE__COUNT
};

enum route_cache_class {
    ROUTE_CACHE_NEVER = 0, /* forward, never store */
    ROUTE_CACHE_QUERY,     /* query results: sync POST /v1/query (cache only when "async" is
                              absent/false) and saved-query execute; default TTL 300 s */
    ROUTE_CACHE_METADATA,  /* metadata GETs; default TTL 60 s */
    ROUTE_CACHE_IMMUTABLE, /* never changes once terminal (see route_terminal); cached with
                              default_ttl_s (0 = no expiry) */
};

/* How to decide that an IMMUTABLE response is final (route_body_is_terminal). */
enum route_terminal {
    ROUTE_TERMINAL_ALWAYS = 0, /* any 200 (versions lists; invalidated by their object's tag) */
    ROUTE_TERMINAL_RESULT,     /* 200 and status == "ready" (or a 200 Arrow body) */
    ROUTE_TERMINAL_QUERY_RUN,  /* status succeeded | failed | cancelled */
    ROUTE_TERMINAL_JOB,        /* status succeeded | partially_succeeded | failed */
};

/* Path parameters (percent-decoded); read with route_param. */
enum route_param_id {
    ROUTE_P_CONNECTION_ID = 0, /* {connection_id} */
    ROUTE_P_SCHEMA,            /* {schema} */
    ROUTE_P_TABLE,             /* {table} */
    ROUTE_P_INDEX_NAME,        /* {index_name} */
    ROUTE_P_ID,                /* {id}: result, query run, dataset, saved query, provider, job */
    ROUTE_P_NAME,              /* {name}: secret name, connection type name */
    ROUTE_P__COUNT
};

#define ROUTE_MAX_TAGS 32
#define ROUTE_BUF_SIZE 2048

/* A list of tag strings stored in an internal buffer (copyable; read with route_tags_get). */
struct route_tags {
    uint8_t n;
    bool overflow; /* a tag did not fit: callers must fall back to the widest action */
    uint16_t off[ROUTE_MAX_TAGS];
    uint16_t used;
    char buf[ROUTE_BUF_SIZE];
};

struct route_def; /* route.c's table row */

struct route_policy {
    enum route_id id;
    const char *name;      /* static: "results.get", "query", "unknown", "not_api", ... */
    const char *ttl_class; /* static TTL class for configuration: "query", "connections",
                              "results", "information_schema", ... ("" for NEVER) */
    enum route_cache_class cache_class;
    unsigned default_ttl_s;
    enum route_terminal terminal;
    bool mutation;        /* changes upstream state: never cache; invalidate on 2xx */
    bool readonly_ok;     /* read-only clients may call it: GET/HEAD, POST /v1/query,
                             POST /v1/queries/{id}/execute (auth's mode check) */
    bool replay_ok;       /* the budget may send it again after a shed 429/503: the same
                             reads, nothing that may change state (and not OPTIONS) */
    bool head;            /* HEAD request: matched as GET, but class NEVER */
    bool arrow;           /* results.get with format=arrow (body is not JSON) */
    bool inval_workspace; /* on 2xx invalidate EVERYTHING of the workspace ("ws:<ws>"):
                             unknown mutations, refresh with an unusable body */
    bool needs_body;      /* invalidations depend on the request body (POST /v1/refresh):
                             call route_invalidation_tags with it */
    uint16_t param_off[ROUTE_P__COUNT]; /* 0 = absent, else offset + 1 into pbuf */
    const struct route_def *def_;       /* route_match_columns: the row whose tags
                                           route_complete still has to add, else NULL */
    struct route_tags tags;  /* tags a cached response belongs to (besides ws:<ws> and, for
                                POST /v1/query, route_query_tags of the SQL) */
    struct route_tags inval; /* tags to invalidate after a 2xx response (mutations; for
                                query/execute: the lists a forwarded run changes). This is the
                                conservative list, without body or resolver. */
    uint16_t pused;
    char pbuf[512]; /* decoded path parameters */
};

/*
 * Match a request. method: "GET", "POST", ... (case-sensitive, as on the wire); path: the
 * request path without query string (a '?' ends it if present); query: the raw query string
 * without '?', or NULL. Never fails: unknown things map to ROUTE_NOT_API / ROUTE_UNKNOWN.
 *   - ROUTE_UNKNOWN: forward, never cache; readonly_ok and replay_ok only for GET/HEAD
 *     (OPTIONS is safe, so no mutation, but not a read: full clients only); any other
 *     method is a mutation with inval_workspace set (we cannot know what it changed).
 *   - params that do not fit pbuf, bad %-escapes, empty segments: ROUTE_UNKNOWN (same rules).
 */
void route_match(const char *method, const char *path, const char *query, struct route_policy *p);

/* route_match without `tags` and `inval` (both empty until route_complete): every column the
 * stages before the cache read (readonly_ok, replay_ok, mutation, id, params) is final; the
 * cache_class and inval_workspace may still change when the tags overflow. The route stage
 * uses it so that a request the cache never looks at (cache off, not an API path) builds no
 * tags; route_complete then makes p what route_match would have made (idempotent). */
void route_match_columns(const char *method, const char *path, const char *query,
                         struct route_policy *p);
void route_complete(struct route_policy *p);

/* The i-th row of the routing table (i < route_table_size()): its method and path pattern
 * (segments after "/v1/", parameters as "{c}", "{id}", ...). For tests and tools. */
size_t route_table_size(void);
void route_table_row(size_t i, const char **method, const char **pattern);

/* A path parameter, NUL-terminated, or NULL when the route has none. */
const char *route_param(const struct route_policy *p, enum route_param_id id);

/* i-th tag of a list (i < t->n). */
const char *route_tags_get(const struct route_tags *t, size_t i);

/* Append a tag built from prefix + value (value lower-cased; len may be SIZE_MAX for strlen).
 * Duplicates are skipped. Returns 0, or -1 on overflow (t->overflow set). */
int route_tags_add(struct route_tags *t, const char *prefix, const char *value, size_t len);

/* Static name of an endpoint id ("results.get"). */
const char *route_id_name(enum route_id id);

/* Resolve a connection id to its name (as used in SQL) into name[cap]; true when known. */
typedef bool (*route_conn_name_fn)(void *ctx, const char *conn_id, char *name, size_t cap);

/*
 * The precise invalidation list for a mutation that answered 2xx: starts from the policy's
 * list, replaces the "queries" fallback by qconn:/qtable: tags of the resolved connection name
 * when resolve succeeds, and for POST /v1/refresh parses body (see route_refresh_tags).
 * Sets *all_ws when the whole workspace must go. resolve may be NULL.
 */
void route_invalidation_tags(const struct route_policy *p, const char *body, size_t body_len,
                             route_conn_name_fn resolve, void *ctx, struct route_tags *out,
                             bool *all_ws);

/*
 * Tags invalidated by a successful POST /v1/refresh with this JSON body:
 *   connection_id + schema_name + table_name: qtable:<c>.<s>.<t>, table:<c>.<s>.<t>,
 *       index:<c>.<s>.<t>, conn:<c>, list:connections, infoschema, qunknown, jobs
 *   connection_id (no full table): qconn:<c>, conn:<c>, list:connections, infoschema, qunknown,
 *       jobs
 *   dataset_id: dataset:<id>, list:datasets, qconn:datasets, infoschema, qunknown, jobs
 *   (q-tags for the connection name too when resolve knows it, else "queries")
 *   anything else (no target, bad JSON, wrong types): *all_ws = true.
 */
void route_refresh_tags(const char *body, size_t len, route_conn_name_fn resolve, void *ctx,
                        struct route_tags *out, bool *all_ws);

/*
 * Tags of a cached query result: "queries", qtable:<conn>.<schema>.<table> and qconn:<conn> for
 * every reference, qdataset:<schema>.<table> for datasets.*, and qunknown when refs->unknown.
 */
void route_query_tags(const struct sqlkey_refs *refs, struct route_tags *out);

/*
 * Tags to invalidate after forwarding SQL that may write (sqlkey_reason_may_write): the q-tags
 * of its references plus qunknown, infoschema, list:datasets, query-runs, results; *all_ws is set
 * when the references are unknown (the SQL could have written anywhere).
 */
void route_sql_write_tags(const struct sqlkey_refs *refs, struct route_tags *out, bool *all_ws);

/*
 * Immutability from a response: for IMMUTABLE routes, true when the body shows a terminal
 * state (see enum route_terminal); false for non-2xx statuses and for other cache classes.
 * Scans only the top level of the JSON object, without allocating.
 */
bool route_body_is_terminal(const struct route_policy *p, int http_status, const char *body,
                            size_t len);

/*
 * Never-cache body markers of query responses: false when the top-level JSON object has a
 * non-null "warning" or "truncated": true. True otherwise (also for non-JSON bodies).
 */
bool route_body_cacheable(const char *body, size_t len);

/*
 * Raw value of a top-level field of a JSON object (no allocation, linear): *val points into
 * body at the value's first byte (strings include their quotes), *vlen is its length.
 * Returns false when body is not an object or has no such key (keys compared unescaped only
 * when they contain no backslash).
 */
bool route_json_top_field(const char *body, size_t len, const char *key, const char **val,
                          size_t *vlen);

#endif
