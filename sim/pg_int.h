/*
 * pg_int: internals of hotdata-sim's PostgreSQL engine (sim/pg_*.c), used by sim core
 * files (main.c, store.c, query.c). Area files see only what sim.h exposes.
 *
 *   pg_cluster.c  the private cluster under --data-dir (initdb/template, start, stop, root)
 *   pg_engine.c   the engine object: admin connection, per-workspace roles and schemas,
 *                 the mirror of queryable tables (SQLite -> PostgreSQL), metadata views
 *   pg_exec.c     asynchronous query execution on the event loop (a small connection pool)
 *   pg_types.c    PostgreSQL values -> the API's JSON values and Arrow type names
 *
 * Rules: loop thread only (pg_cluster.c also runs before and after the loop).
 */
#ifndef SIM_PG_INT_H
#define SIM_PG_INT_H

#include "sim_int.h"
#include "sim_util.h"

#include <limits.h>
#include <sys/types.h>

#include <libpq-fe.h>

struct sim_pg_cluster {
    char bindir[PATH_MAX];
    char dir[PATH_MAX];     /* DIR/pg */
    char sockdir[PATH_MAX]; /* DIR/pg, or a private /tmp dir when that path is too long */
    char log[PATH_MAX];     /* DIR/pg.log */
    char conninfo[PATH_MAX + 128];
    pid_t pid; /* postmaster, 0 when not running */
    bool own_sockdir;
};

int sim_pg_find_bindir(char *out, size_t len);
int sim_pg_initdb(const char *bindir, const char *dir, const char *log);
/* Start (initdb or copying tmpl on first use) the cluster of data_dir. 0 or -1 (logged). */
int sim_pg_cluster_start(struct sim_pg_cluster *c, const char *data_dir, const char *tmpl);
void sim_pg_cluster_stop(struct sim_pg_cluster *c);
/* A standalone server on cluster dir (initdb when new) that outlives this process, for
 * several simulators (--pg-serve; the test suite's shared server); prints its conninfo. */
int sim_pg_serve(const char *dir);
/* Stop the server --pg-serve started on dir (no-op when none runs). */
int sim_pg_serve_stop(const char *dir);
/* Make an initialised template cluster at dir (no-op when it exists). 0 or -1. */
int sim_pg_make_template(const char *dir);

/* ---- the engine (pg_engine.c) ---- */

struct sim_pg_pool;

struct sim_pg {
    struct sim_pg_cluster cluster; /* pid 0 when --pg-url is used */
    char *conninfo;
    PGconn *admin;   /* blocking connection for DDL, mirroring and metadata */
    char tag[16];    /* per-data-dir prefix of role and schema names: several simulators may
                        share one server (--pg-url) */
    char meta[40];   /* metadata schema: "<tag>_meta" */
    char reader[48]; /* role every workspace role is a member of (reads the metadata) */
    struct sim_pg_pool *pool;
};

/* Start the engine for ctx (cluster or --pg-url, admin connection, pool). 0 or -1. */
int sim_pg_open(struct sim_ctx *ctx);
void sim_pg_close(struct sim_ctx *ctx);
/* The role of a workspace ("<tag>_w<hash>"), out 64 bytes. */
void sim_pg_ws_role(struct sim_pg *pg, const char *ws_id, char out[64]);
/* The schema holding catalog.schema of ws ("<tag>_<hash>"), out 64 bytes. */
void sim_pg_schema_name(struct sim_pg *pg, const char *ws_id, const char *catalog,
                        const char *schema, char out[64]);
/* The PostgreSQL table name of an API table name (lower case, as a bare name would fold). */
void sim_pg_table_name(const char *table, char out[64]);
/* Make sure ws's role exists (idempotent). 0 or -1. */
int sim_pg_ws_prepare(struct sim_pg *pg, struct sim_ws *ws);
/* Drop everything ws has in PostgreSQL (its schemas; POST /_sim/reset?data=1). */
void sim_pg_ws_drop(struct sim_pg *pg, struct sim_ws *ws);

/* Mirror the SQLite table sqlite_table of ws as catalog.schema.table (replacing it). */
int sim_pg_mirror_table(struct sim_pg *pg, struct sim_ws *ws, const char *catalog,
                        const char *schema, const char *table, const char *sqlite_table);
/* Append the rows of sqlite_table matching where (SQLite SQL) to the mirror. */
int sim_pg_mirror_append(struct sim_pg *pg, struct sim_ws *ws, const char *catalog,
                         const char *schema, const char *table, const char *sqlite_table,
                         const char *where);
/* UPDATE the mirror of catalog.schema.table SET set (may use $1 = arg; arg NULL: none). */
int sim_pg_table_update(struct sim_pg *pg, struct sim_ws *ws, const char *catalog,
                        const char *schema, const char *table, const char *set, const char *arg);
bool sim_pg_has_table(struct sim_pg *pg, struct sim_ws *ws, const char *catalog, const char *schema,
                      const char *table);
int sim_pg_drop_table(struct sim_pg *pg, struct sim_ws *ws, const char *catalog, const char *schema,
                      const char *table);
/* Run SQL on the admin connection (no results); 0 or -1 (logged). */
int sim_pg_admin_exec(struct sim_pg *pg, const char *sql);
/* Quote an identifier for PostgreSQL ("..." with "" escapes), malloc'd. */
char *sim_pg_quote_ident(const char *name);

/* ---- asynchronous execution (pg_exec.c) ---- */

/* A query's answer in the API's terms. */
struct sim_pg_result {
    json_t *columns;  /* array of strings */
    json_t *nullable; /* array of bools */
    json_t *types;    /* array of type names (pg_types.c) */
    json_t *rows;     /* array of arrays, each as long as columns */
    long row_count;
};

/* err NULL: res filled (the callee takes its json references); else res is NULL. */
typedef void (*sim_pg_done_fn)(void *arg, struct sim_pg_result *res, const char *err);

#define SIM_PG_MAX_ROWS 1000000L
#define SIM_PG_TIMEOUT_MS 10000

struct sim_pg_pool *sim_pg_pool_new(struct event_base *base, const char *conninfo, int size);
/* Fail every queued and running query ("simulator shutting down") and close. */
void sim_pg_pool_free(struct sim_pg_pool *p);
/*
 * Queue sql (one statement) to run read-only as role, with a statement timeout of
 * timeout_ms (0: SIM_PG_TIMEOUT_MS) and the row cap; done(arg, ...) runs exactly once, later, on
 * the loop.
 */
void sim_pg_query(struct sim_pg_pool *p, const char *role, const char *sql, int timeout_ms,
                  sim_pg_done_fn done, void *arg);
/* The same, blocking, on the admin connection (dataset materialisation). 0 or -1 + *err. */
int sim_pg_query_sync(struct sim_pg *pg, const char *role, const char *sql,
                      struct sim_pg_result *out, char **err);
void sim_pg_result_clear(struct sim_pg_result *r);

/* ---- types (pg_types.c) ---- */

/* The API type name of a column of type oid: "int64", "float64", "bool", "decimal",
 * "date32", "timestamp", "timestamptz", "utf8". */
const char *sim_pg_type_name(Oid oid);
/* One cell (PostgreSQL text form) as the API's JSON value; NaN/Infinity -> null. */
json_t *sim_pg_cell_json(Oid oid, const char *text, int len);

#endif
