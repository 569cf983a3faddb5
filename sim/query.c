/*
 * query: POST /v1/query, GET /v1/query-runs[/{id}], GET /v1/results[/{id}].
 *
 * User SQL runs on PostgreSQL (pg_exec.c): the rewriter (sqlrewrite.c) turns the API's
 * three-part names into the workspace's PostgreSQL schema.table (only tables registered in
 * sim_tables and visible in the request's database scope resolve), and the query runs
 * asynchronously, read only, as the workspace's role, under a statement timeout and a row
 * cap; a handler replies when its query is done. Errors are 400 with PostgreSQL's message. Every
 * execution records a query run and persists a result whose status moves pending -> processing ->
 * ready by a stored clock (cfg.result_delay_ms per phase, see SIM_RESULT_STATUS_SQL); async runs
 * move queued -> running -> succeeded/failed on timers (cfg.async_delay_ms per phase).
 *
 * Result storage: results.data holds {"columns","nullable","types","rows"} as JSON text;
 * types are the names of pg_types.c ("int64", "float64", "decimal", "bool", "date32",
 * "timestamp", "timestamptz", "utf8") for the Arrow encoding.
 * A ready result never changes.
 *
 * Rules: loop thread only. Timer contexts carry workspace pointers (workspaces live for the
 * whole process) and ids, never sim_req pointers, except async_after_ms waiters, which are
 * kept on ctx->waiters and answered exactly once.
 */
#include "sim_pg_engine.h"
#include "sim_pg_types.h"
#include "sim.h"
#include "sim_areas.h"
#include "sim_arrow.h"
#include "sim_databases.h"
#include "sim_int.h"
#include "sim_json.h"
#include "sim_query.h"
#include "sim_sqlrewrite.h"
#include "sim_stats.h"
#include "sim_res.h"
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

struct sim_qres {
    json_t *columns;  /* array of strings */
    json_t *nullable; /* array of bools */
    json_t *types;    /* array of type names */
    json_t *rows;     /* array of arrays */
    long row_count;
    long exec_ms;
};

/* What a query runs in: the workspace, the database scope and the body's name options. */
struct sim_qscope {
    struct sim_ws *ws;
    char *db_id;           /* NULL: unscoped */
    char *dialect;         /* hotsql (NULL), duckdb, postgres, snowflake */
    char *default_catalog; /* NULL: none */
    char *default_schema;  /* NULL: none */
};

static void sim_qscope_free(struct sim_qscope *q)
{
    free(q->db_id);
    free(q->dialect);
    free(q->default_catalog);
    free(q->default_schema);
    memset(q, 0, sizeof *q);
}

static void sim_qres_free(struct sim_qres *r)
{
    json_decref(r->columns);
    json_decref(r->nullable);
    json_decref(r->types);
    json_decref(r->rows);
    memset(r, 0, sizeof *r);
}

/* ---- execution ---- */

/*
 * Visibility: connection tables always; a dataset's tables only in the scope it was created
 * in (sim_table_scope; unscoped datasets only to unscoped queries). ?4 is the scope ('' none).
 */
#define SIM_VISIBLE_SQL                                                                            \
    "(t.kind != 'dataset' OR coalesce((SELECT s.database_id FROM sim_table_scope s WHERE"          \
    " s.owner_id = t.owner_id), '') = ?4)"

/* The PostgreSQL name ("schema"."table", ready to splice) of the first row of a prepared
 * lookup of (catalog, schema_name, table_name), or NULL; resets st. */
static char *first_pg_name(const struct sim_qscope *q, sqlite3_stmt *st)
{
    char *out = NULL;
    if (sqlite3_step(st) == SQLITE_ROW && q->ws->pg) {
        char sname[64], tname[64];
        sim_pg_schema_name(q->ws->pg, q->ws->id, (const char *)sqlite3_column_text(st, 0),
                           (const char *)sqlite3_column_text(st, 1), sname);
        sim_pg_table_name((const char *)sqlite3_column_text(st, 2), tname);
        char *qs = sim_pg_quote_ident(sname), *qt = sim_pg_quote_ident(tname);
        if (asprintf(&out, "%s.%s", qs, qt) < 0)
            abort();
        free(qs);
        free(qt);
    }
    sqlite3_reset(st);
    return out;
}

static char *sim_resolve_cb(void *ud, const char *a, const char *b, const char *c)
{
    const struct sim_qscope *q = ud;
    sqlite3_stmt *st =
        sim_db_stmt(q->ws, "SELECT t.catalog, t.schema_name, t.table_name FROM"
                           " sim_tables t WHERE t.catalog = ?1 AND"
                           " t.schema_name = ?2 AND t.table_name = ?3 AND " SIM_VISIBLE_SQL);
    if (!st)
        return NULL;
    sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, b, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, c, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, q->db_id ? q->db_id : "", -1, SQLITE_TRANSIENT);
    return first_pg_name(q, st);
}

/* information_schema.columns / tables / schemata: the metadata views showing API names. */
static char *sim_info_schema_view(const struct sim_qscope *q, const char *table)
{
    static const char *const map[][2] = {
        {"columns", "columns"}, {"tables", "tables_v"}, {"schemata", "schemata"}};
    if (!q->ws->pg)
        return NULL;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(table, map[i][0]) != 0)
            continue;
        char *m = sim_pg_quote_ident(q->ws->pg->meta), *v = sim_pg_quote_ident(map[i][1]);
        char *out = NULL;
        if (asprintf(&out, "%s.%s", m, v) < 0)
            abort();
        free(m);
        free(v);
        return out;
    }
    return NULL;
}

/*
 * default_catalog / default_schema: an unqualified table name is looked up in the default
 * schema of the default catalog; without a default catalog, in the first catalog (by name)
 * that has it; a two-part name needs the default catalog. Without defaults nothing resolves.
 * information_schema.<view> is the workspace's metadata view.
 */
static char *sim_resolve_short_cb(void *ud, const char *schema, const char *table)
{
    const struct sim_qscope *q = ud;
    if (schema && strcmp(schema, "information_schema") == 0)
        return sim_info_schema_view(q, table);
    if (!schema)
        schema = q->default_schema;
    if (!schema || (!q->default_catalog && !q->default_schema))
        return NULL;
    if (q->default_catalog)
        return sim_resolve_cb(ud, q->default_catalog, schema, table);
    if (schema != q->default_schema)
        return NULL;
    sqlite3_stmt *st =
        sim_db_stmt(q->ws, "SELECT t.catalog, t.schema_name, t.table_name FROM"
                           " sim_tables t WHERE t.schema_name = ?2 AND"
                           " t.table_name = ?3 AND " SIM_VISIBLE_SQL " ORDER BY t.catalog LIMIT 1");
    if (!st)
        return NULL;
    sqlite3_bind_text(st, 2, schema, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, table, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, q->db_id ? q->db_id : "", -1, SQLITE_TRANSIENT);
    return first_pg_name(q, st);
}

static bool sim_is_catalog_cb(void *ud, const char *a)
{
    struct sim_ws *ws = ((const struct sim_qscope *)ud)->ws;
    if (strcasecmp(a, "datasets") == 0)
        return true;
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT 1 FROM connections WHERE name = ? COLLATE NOCASE");
    if (!st)
        return false;
    sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return found;
}

/*
 * dialect: the case of result column names written as unquoted identifiers. snowflake folds
 * them to upper case, postgres to lower case, hotsql and duckdb keep them as written. A name
 * equal to a quoted identifier ("..." or `...`) of the SQL is kept as written in all.
 */
static bool sim_sql_quotes_name(const char *sql, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = sql; *p; p++) {
        if (*p == '\'') {
            for (p++; *p && !(*p == '\'' && p[1] != '\''); p += (*p == '\'' ? 2 : 1))
                ;
            if (!*p)
                return false;
            continue;
        }
        if (*p != '"' && *p != '`')
            continue;
        const char *e = strchr(p + 1, *p);
        if (!e)
            return false;
        if ((size_t)(e - p - 1) == nl && strncmp(p + 1, name, nl) == 0)
            return true;
        p = e;
    }
    return false;
}

/*
 * PostgreSQL folds unquoted names to lower case; hotsql/duckdb show them as written. A
 * lower-case result column name equal (case-insensitively) to a bare identifier of the SQL
 * takes that identifier's spelling (outside literals, comments and quoted names).
 */
static char *sim_sql_written_case(const char *sql, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = sql; *p;) {
        if (*p == '\'' || *p == '"' || *p == '`') {
            const char *e = strchr(p + 1, *p);
            p = e ? e + 1 : p + strlen(p);
            continue;
        }
        if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
            continue;
        }
        if (isalpha((unsigned char)*p) || *p == '_') {
            const char *s = p;
            while (isalnum((unsigned char)*p) || *p == '_' || *p == '$')
                p++;
            if ((size_t)(p - s) == nl && strncasecmp(s, name, nl) == 0 && strncmp(s, name, nl))
                return strndup(s, nl);
            continue;
        }
        p++;
    }
    return NULL;
}

static void sim_fold_columns(const char *sql, const char *dialect, json_t *columns)
{
    bool upper = dialect && strcmp(dialect, "snowflake") == 0;
    bool lower = dialect && strcmp(dialect, "postgres") == 0;
    for (size_t i = 0; i < json_array_size(columns); i++) {
        const char *n = json_string_value(json_array_get(columns, i));
        if (!n || sim_sql_quotes_name(sql, n))
            continue;
        char *f = lower ? NULL : sim_sql_written_case(sql, n);
        if (!f)
            f = sim_strdup(n);
        if (upper || lower)
            for (char *p = f; *p; p++)
                *p = (char)(upper ? toupper((unsigned char)*p) : tolower((unsigned char)*p));
        json_array_set_new(columns, i, json_string(f));
        free(f);
    }
}

/* Rewrite the API's names in sql to PostgreSQL ones. 0 and *out, or -1 and *err. */
static int sim_query_rewrite(const struct sim_qscope *q, const char *sql, char **out, char **err)
{
    if (!q->ws->pg) {
        *err = sim_strdup("the query engine is unavailable");
        return -1;
    }
    return sim_sql_rewrite_ex(sql, sim_resolve_cb, sim_is_catalog_cb, sim_resolve_short_cb,
                              (void *)q, out, err);
}

/* ---- persistence ---- */

static void sim_bind_opt_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/*
 * A result's status clock is data, not timers: a stored result is "ready" (or "failed") with
 * processing_at / ready_at wall-clock times; readers show "pending" before processing_at and
 * "processing" before ready_at. No write happens after the insert, so a ready result never
 * changes and the clock survives restarts.
 */
#define SIM_RESULT_STATUS_SQL                                                                      \
    "CASE WHEN status = 'ready' AND coalesce(ready_at, 0) > ?9 THEN CASE WHEN "                    \
    "coalesce(processing_at, 0) > ?9 THEN 'pending' ELSE 'processing' END ELSE status END"

/* Store a result (ready data or a failure) with its status clock. */
static void sim_result_store(struct sim_ctx *ctx, struct sim_ws *ws, const char *result_id,
                             const char *run_id, struct sim_qres *r, const char *error)
{
    char now[40];
    sim_now_rfc3339(now, false);
    int64_t delay = ctx->cfg.result_delay_ms;
    int64_t wall = (int64_t)util_wall_ms();
    const char *status = error ? "failed" : "ready";
    char *data = NULL;
    if (!error) {
        json_t *d = json_pack("{s:O,s:O,s:O,s:O}", "columns", r->columns, "nullable", r->nullable,
                              "types", r->types, "rows", r->rows);
        data = sim_json_dumps(d, NULL);
        json_decref(d);
    }
    sqlite3_stmt *st =
        sim_db_stmt(ws, "INSERT INTO results(id,status,created_at,error_message,query_run_id,"
                        "row_count,data,processing_at,ready_at) VALUES(?,?,?,?,?,?,?,?,?)");
    if (!st) {
        free(data);
        return;
    }
    sqlite3_bind_text(st, 1, result_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, now, -1, SQLITE_TRANSIENT);
    sim_bind_opt_text(st, 4, error);
    sim_bind_opt_text(st, 5, run_id);
    if (error)
        sqlite3_bind_null(st, 6);
    else
        sqlite3_bind_int64(st, 6, r->row_count);
    if (data)
        sqlite3_bind_text(st, 7, data, -1, free);
    else
        sqlite3_bind_null(st, 7);
    sqlite3_bind_int64(st, 8, wall + delay);
    sqlite3_bind_int64(st, 9, wall + 2 * delay);
    sqlite3_step(st);
    sqlite3_reset(st);
}

static void sim_trace_id(char out[33])
{
    unsigned char b[16];
    util_random(b, sizeof b);
    util_hex(b, sizeof b, out);
}

/* Insert a query run in status. */
static void sim_run_insert(struct sim_ws *ws, const char *run_id, const char *status,
                           const char *sql, const char *user_public_id, const char *saved_query_id,
                           int saved_query_version)
{
    char now[40], hash[65], snap[64], trace[33];
    sim_now_rfc3339(now, false);
    util_sha256_hex(sql, strlen(sql), hash);
    sim_id_new("snap", snap);
    sim_trace_id(trace);
    sqlite3_stmt *st = sim_db_stmt(
        ws, "INSERT INTO query_runs(id,status,sql_text,sql_hash,created_at,saved_query_id,"
            "saved_query_version,snapshot_id,trace_id,user_public_id) VALUES(?,?,?,?,?,?,?,?,?,?)");
    if (!st)
        return;
    sqlite3_bind_text(st, 1, run_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, sql, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, now, -1, SQLITE_TRANSIENT);
    sim_bind_opt_text(st, 6, saved_query_id);
    if (saved_query_id && saved_query_version > 0)
        sqlite3_bind_int(st, 7, saved_query_version);
    else
        sqlite3_bind_null(st, 7);
    sqlite3_bind_text(st, 8, snap, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 9, trace, -1, SQLITE_TRANSIENT);
    sim_bind_opt_text(st, 10, user_public_id);
    sqlite3_step(st);
    sqlite3_reset(st);
}

static void sim_run_set_status(struct sim_ws *ws, const char *run_id, const char *status)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "UPDATE query_runs SET status=? WHERE id=?");
    if (!st)
        return;
    sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, run_id, -1, SQLITE_TRANSIENT);
    sqlite3_step(st);
    sqlite3_reset(st);
}

static void sim_run_finish(struct sim_ws *ws, const char *run_id, const struct sim_qres *r,
                           const char *result_id, const char *error, long server_ms)
{
    char now[40];
    sim_now_rfc3339(now, false);
    sqlite3_stmt *st = sim_db_stmt(
        ws, "UPDATE query_runs SET status=?, completed_at=?, error_message=?, "
            "execution_time_ms=?, result_id=?, row_count=?, server_processing_ms=? WHERE id=?");
    if (!st)
        return;
    sqlite3_bind_text(st, 1, error ? "failed" : "succeeded", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, now, -1, SQLITE_TRANSIENT);
    sim_bind_opt_text(st, 3, error);
    if (error) {
        sqlite3_bind_null(st, 4);
        sqlite3_bind_null(st, 6);
    } else {
        sqlite3_bind_int64(st, 4, r->exec_ms);
        sqlite3_bind_int64(st, 6, r->row_count);
    }
    sim_bind_opt_text(st, 5, result_id);
    sqlite3_bind_int64(st, 7, server_ms);
    sqlite3_bind_text(st, 8, run_id, -1, SQLITE_TRANSIENT);
    sqlite3_step(st);
    sqlite3_reset(st);
}

static json_t *sim_query_response(const struct sim_qres *r, const char *run_id,
                                  const char *result_id)
{
    return json_pack("{s:O,s:O,s:O,s:I,s:I,s:s,s:s,s:n}", "columns", r->columns, "nullable",
                     r->nullable, "rows", r->rows, "row_count", (json_int_t)r->row_count,
                     "execution_time_ms", (json_int_t)r->exec_ms, "query_run_id", run_id,
                     "result_id", result_id, "warning");
}

/* One execution in flight: the run it belongs to and what to do with its outcome. */
typedef void (*sim_qexec_k)(void *karg, const char *run_id, struct sim_qres *r,
                            const char *result_id, const char *err);

struct sim_qexec {
    struct sim_ctx *ctx;
    struct sim_qscope scope; /* owned */
    char *sql;               /* as the user wrote it */
    char run_id[64];
    uint64_t t0;
    bool failed_result; /* store a failed result for an error (async runs) */
    sim_qexec_k k;
    void *karg;
};

/* Store the result, finish the run, then hand the outcome to x->k; frees x. */
static void sim_qexec_complete(struct sim_qexec *x, struct sim_qres *r, const char *err)
{
    struct sim_ws *ws = x->scope.ws;
    char result_id[64] = "";
    long server_ms = (long)((util_mono_us() - x->t0) / 1000);
    /* one write transaction for the query's bookkeeping (the caller may hold one already) */
    bool own_tx = sqlite3_get_autocommit(ws->db) != 0;
    if (own_tx)
        sim_db_exec(ws->db, "BEGIN");
    if (err) {
        if (x->failed_result) {
            sim_id_new("res", result_id);
            sim_result_store(x->ctx, ws, result_id, x->run_id, NULL, err);
        }
        sim_run_finish(ws, x->run_id, NULL, result_id[0] ? result_id : NULL, err, server_ms);
    } else {
        sim_id_new("res", result_id);
        sim_result_store(x->ctx, ws, result_id, x->run_id, r, NULL);
        sim_run_finish(ws, x->run_id, r, result_id, NULL, server_ms);
    }
    if (own_tx)
        sim_db_exec(ws->db, "COMMIT");
    x->k(x->karg, x->run_id, err ? NULL : r, result_id, err);
    sim_qscope_free(&x->scope);
    free(x->sql);
    free(x);
}

static void sim_qexec_pg_done(void *arg, struct sim_pg_result *res, const char *err)
{
    struct sim_qexec *x = arg;
    if (err) {
        sim_qexec_complete(x, NULL, err);
        return;
    }
    struct sim_qres r = {.columns = res->columns,
                         .nullable = res->nullable,
                         .types = res->types,
                         .rows = res->rows,
                         .row_count = res->row_count,
                         .exec_ms = (long)((util_mono_us() - x->t0) / 1000)};
    memset(res, 0, sizeof *res);
    sim_fold_columns(x->sql, x->scope.dialect, r.columns);
    sim_qexec_complete(x, &r, NULL);
    sim_qres_free(&r);
}

/*
 * Execute sql for the run run_id on PostgreSQL (asynchronously); k runs exactly once with
 * the outcome, after the result is stored and the run finished (before this returns when
 * the SQL cannot even be rewritten). Takes scope's strings (scope is zeroed).
 */
static void sim_query_execute_run(struct sim_ctx *ctx, struct sim_qscope *scope, const char *run_id,
                                  const char *sql, bool failed_result, sim_qexec_k k, void *karg)
{
    struct sim_qexec *x = calloc(1, sizeof *x);
    if (!x)
        abort();
    x->ctx = ctx;
    x->scope = *scope;
    memset(scope, 0, sizeof *scope);
    x->sql = sim_strdup(sql);
    snprintf(x->run_id, sizeof x->run_id, "%s", run_id);
    x->t0 = util_mono_us();
    x->failed_result = failed_result;
    x->k = k;
    x->karg = karg;
    char hash[65];
    util_sha256_hex(sql, strlen(sql), hash);
    sim_stats_count_sql(ctx, hash);
    char *pgsql = NULL, *err = NULL;
    if (sim_query_rewrite(&x->scope, sql, &pgsql, &err) < 0) {
        sim_qexec_complete(x, NULL, err);
        free(err);
        return;
    }
    struct sim_ws *ws = x->scope.ws;
    char role[64];
    sim_pg_ws_role(ws->pg, ws->id, role);
    sim_pg_query(ws->pg->pool, role, pgsql, ctx->cfg.query_timeout_ms, sim_qexec_pg_done, x);
    free(pgsql);
}

static void sim_query_run_scoped(struct sim_req *req, struct sim_qscope *q, const char *sql,
                                 const char *saved_query_id, int saved_query_version);

int sim_query_run_blocking(struct sim_ws *ws, const char *sql, json_t **columns, json_t **rows,
                           char **err)
{
    struct sim_qscope q = {.ws = ws};
    char *pgsql = NULL;
    *columns = *rows = NULL;
    if (sim_query_rewrite(&q, sql, &pgsql, err) < 0)
        return -1;
    char role[64];
    sim_pg_ws_role(ws->pg, ws->id, role);
    struct sim_pg_result res;
    int rc = sim_pg_query_sync(ws->pg, role, pgsql, &res, err);
    free(pgsql);
    if (rc < 0)
        return -1;
    *columns = json_incref(res.columns);
    *rows = json_incref(res.rows);
    sim_pg_result_clear(&res);
    return 0;
}

void sim_query_run_and_reply(struct sim_req *req, const char *sql, const char *saved_query_id,
                             int saved_query_version)
{
    struct sim_qscope q = {.ws = req->ws};
    sim_query_run_scoped(req, &q, sql, saved_query_id, saved_query_version);
}

/* The answer of a failed query: 400 with the engine's message (503 while shutting down). */
static void sim_query_reply_failed(struct sim_req *req, const char *err)
{
    if (req->ctx->waiters_shutdown)
        sim_reply_error(req, 503, "SERVICE_UNAVAILABLE", "%s", err);
    else
        sim_reply_error(req, 400, "BAD_REQUEST", "%s", err);
}

static void sim_query_sync_k(void *karg, const char *run_id, struct sim_qres *r,
                             const char *result_id, const char *err)
{
    struct sim_req *req = karg;
    if (err) {
        sim_query_reply_failed(req, err);
        return;
    }
    sim_reply_json(req, 200, sim_query_response(r, run_id, result_id));
}

/* Run sql for req and reply when it is done; takes q's strings. */
static void sim_query_run_scoped(struct sim_req *req, struct sim_qscope *q, const char *sql,
                                 const char *saved_query_id, int saved_query_version)
{
    char run_id[64];
    sim_id_new("qrun", run_id);
    sim_run_insert(req->ws, run_id, "running", sql, req->token->user_public_id, saved_query_id,
                   saved_query_version);
    sim_query_execute_run(req->ctx, q, run_id, sql, false, sim_query_sync_k, req);
}

/* ---- async runs ---- */

struct sim_pending_waiter {
    struct sim_req *req; /* NULL once answered */
    struct sim_ws *ws;
    char run_id[64];
    struct sim_pending_waiter *next;
};

struct sim_async_run {
    struct sim_ctx *ctx;
    struct sim_ws *ws;
    struct sim_qscope scope;
    char run_id[64];
    char *sql;
    int phase;
};

/* An async run still queued/running at shutdown (the next start marks it failed). */
static void sim_async_drop(void *arg)
{
    struct sim_async_run *a = arg;
    sim_qscope_free(&a->scope);
    free(a->sql);
    free(a);
}

int sim_query_async_delay(struct sim_ctx *ctx)
{
    return ctx->faults.async_delay_ms >= 0 ? ctx->faults.async_delay_ms : ctx->cfg.async_delay_ms;
}

/* An async run's query finished: answer its async_after_ms waiters. */
static void sim_async_k(void *karg, const char *run_id, struct sim_qres *r, const char *result_id,
                        const char *err)
{
    struct sim_async_run *a = karg;
    for (struct sim_pending_waiter *w = a->ctx->waiters; w; w = w->next) {
        if (!w->req || w->ws != a->ws || strcmp(w->run_id, run_id) != 0)
            continue;
        struct sim_req *req = w->req;
        w->req = NULL;
        if (!err)
            sim_reply_json(req, 200, sim_query_response(r, run_id, result_id));
        else
            sim_query_reply_failed(req, err);
    }
    sim_async_drop(a);
}

static void sim_async_step(void *arg)
{
    struct sim_async_run *a = arg;
    if (a->phase == 0) {
        sim_run_set_status(a->ws, a->run_id, "running");
        a->phase = 1;
        sim_timer_after_drop(a->ctx, sim_query_async_delay(a->ctx), sim_async_step, a,
                             sim_async_drop);
        return;
    }
    sim_query_execute_run(a->ctx, &a->scope, a->run_id, a->sql, true, sim_async_k, a);
}

static json_t *sim_async_accepted(const char *run_id, const char *status, const char *reason)
{
    char url[128];
    snprintf(url, sizeof url, "/v1/query-runs/%s", run_id);
    return json_pack("{s:s,s:s?,s:s,s:s}", "query_run_id", run_id, "reason", reason, "status",
                     status, "status_url", url);
}

static void sim_waiter_timeout(void *arg)
{
    struct sim_pending_waiter *w = arg;
    struct sim_ctx *ctx = NULL;
    if (w->req) {
        struct sim_req *req = w->req;
        ctx = req->ctx;
        w->req = NULL;
        /* current status of the run */
        const char *status = "running";
        sqlite3_stmt *st = sim_db_stmt(w->ws, "SELECT status FROM query_runs WHERE id=?");
        char sbuf[32] = "running";
        if (st) {
            sqlite3_bind_text(st, 1, w->run_id, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(st) == SQLITE_ROW)
                snprintf(sbuf, sizeof sbuf, "%s", (const char *)sqlite3_column_text(st, 0));
            sqlite3_reset(st);
            status = sbuf;
        }
        sim_reply_json(req, 202,
                       sim_async_accepted(w->run_id, status,
                                          "query did not finish within "
                                          "async_after_ms"));
    }
    (void)ctx;
    w->run_id[0] = '\0'; /* dead: freed by the next sim_waiters_sweep */
}

void sim_waiters_sweep(struct sim_ctx *ctx)
{
    for (struct sim_pending_waiter **pp = &ctx->waiters; *pp;) {
        struct sim_pending_waiter *w = *pp;
        if (ctx->waiters_shutdown && w->req) {
            struct sim_req *req = w->req;
            w->req = NULL;
            sim_reply_error(req, 503, "SERVICE_UNAVAILABLE", "simulator shutting down");
        }
        if (!w->req && (!w->run_id[0] || ctx->waiters_shutdown)) {
            *pp = w->next;
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

static void sim_query_post(struct sim_req *req)
{
    const char *sql = NULL;
    bool async = false, has_after = false;
    long long after = 0;
    if (sim_body_str(req, "sql", true, &sql, NULL) < 0)
        return;
    if (sim_body_bool(req, "async", false, &async, NULL) < 0)
        return;
    if (sim_body_int(req, "async_after_ms", false, &after, &has_after) < 0)
        return;
    if (async && has_after && (after < 1000 || after > 600000)) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid request: async_after_ms must be between 1000 and 600000");
        return;
    }
    if (!*sql) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Invalid request: sql must not be empty");
        return;
    }
    const char *db_id = NULL, *dialect = NULL, *dcat = NULL, *dsch = NULL;
    if (sim_req_database(req, &db_id) < 0 ||
        sim_body_str(req, "dialect", false, &dialect, NULL) < 0 ||
        sim_body_str(req, "default_catalog", false, &dcat, NULL) < 0 ||
        sim_body_str(req, "default_schema", false, &dsch, NULL) < 0)
        return;
    if (dialect && strcmp(dialect, "hotsql") != 0 && strcmp(dialect, "duckdb") != 0 &&
        strcmp(dialect, "postgres") != 0 && strcmp(dialect, "snowflake") != 0) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid request: unknown dialect '%s' (hotsql, duckdb, postgres or "
                        "snowflake)",
                        dialect);
        return;
    }
    struct sim_qscope q = {.ws = req->ws,
                           .db_id = db_id ? sim_strdup(db_id) : NULL,
                           .dialect = dialect ? sim_strdup(dialect) : NULL,
                           .default_catalog = dcat && *dcat ? sim_strdup(dcat) : NULL,
                           .default_schema = dsch && *dsch ? sim_strdup(dsch) : NULL};
    if (!async) {
        sim_query_run_scoped(req, &q, sql, NULL, 0);
        sim_qscope_free(&q);
        return;
    }
    struct sim_ctx *ctx = req->ctx;
    sim_waiters_sweep(ctx);
    struct sim_async_run *a = calloc(1, sizeof *a);
    if (!a)
        abort();
    a->ctx = ctx;
    a->ws = req->ws;
    a->scope = q; /* takes the strings */
    a->sql = sim_strdup(sql);
    sim_id_new("qrun", a->run_id);
    sim_run_insert(req->ws, a->run_id, "queued", sql, req->token->user_public_id, NULL, 0);
    sim_timer_after_drop(ctx, sim_query_async_delay(ctx), sim_async_step, a, sim_async_drop);
    if (has_after) {
        struct sim_pending_waiter *w = calloc(1, sizeof *w);
        if (!w)
            abort();
        w->req = req;
        w->ws = req->ws;
        snprintf(w->run_id, sizeof w->run_id, "%s", a->run_id);
        w->next = ctx->waiters;
        ctx->waiters = w;
        sim_timer_after(ctx, (int)after, sim_waiter_timeout, w);
        return;
    }
    sim_reply_json(req, 202, sim_async_accepted(a->run_id, "queued", NULL));
}

/* ---- query runs ---- */

static json_t *sim_col_json(sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(st, i));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(st, i));
    case SQLITE_TEXT:
        return json_string((const char *)sqlite3_column_text(st, i));
    default:
        return json_null();
    }
}

#define SIM_RUN_COLS                                                                               \
    "seq,id,status,sql_text,sql_hash,created_at,completed_at,error_message,execution_time_ms,"     \
    "result_id,row_count,saved_query_id,saved_query_version,server_processing_ms,snapshot_id,"     \
    "trace_id,user_public_id,warning_message"

static json_t *sim_run_json(sqlite3_stmt *st)
{
    json_t *o = json_object();
    int n = sqlite3_column_count(st);
    for (int i = 1; i < n; i++)
        json_object_set_new(o, sqlite3_column_name(st, i), sim_col_json(st, i));
    return o;
}

static void sim_query_runs_list(struct sim_req *req)
{
    long limit;
    if (sim_res_query_limit(req, 100, &limit) < 0)
        return;
    const char *cursor = sim_req_query(req, "cursor");
    long long cur = 0;
    if (cursor && *cursor) {
        char *end;
        cur = strtoll(cursor, &end, 10);
        if (*end || cur <= 0) {
            sim_reply_error(req, 400, "BAD_REQUEST", "Invalid cursor");
            return;
        }
    }
    const char *status = sim_req_query(req, "status");
    const char *sq = sim_req_query(req, "saved_query_id");
    char sql[1024];
    int n = snprintf(sql, sizeof sql, "SELECT " SIM_RUN_COLS " FROM query_runs WHERE 1=1");
    if (cur > 0)
        n += snprintf(sql + n, sizeof sql - (size_t)n, " AND seq < ?1");
    if (sq && *sq)
        n += snprintf(sql + n, sizeof sql - (size_t)n, " AND saved_query_id = ?2");
    if (status && *status)
        n += snprintf(sql + n, sizeof sql - (size_t)n,
                      " AND instr(',' || ?3 || ',', ',' || status || ',') > 0");
    snprintf(sql + n, sizeof sql - (size_t)n, " ORDER BY seq DESC LIMIT ?4");
    sqlite3_stmt *st = sim_db_stmt(req->ws, sql);
    if (!st) {
        sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "query runs unavailable");
        return;
    }
    if (cur > 0)
        sqlite3_bind_int64(st, 1, cur);
    if (sq && *sq)
        sqlite3_bind_text(st, 2, sq, -1, SQLITE_TRANSIENT);
    if (status && *status) {
        /* "running, failed" -> "running,failed" */
        char *s = sim_strdup(status), *w = s;
        for (char *p = s; *p; p++)
            if (*p != ' ')
                *w++ = *p;
        *w = '\0';
        sqlite3_bind_text(st, 3, s, -1, free);
    }
    sqlite3_bind_int64(st, 4, limit + 1);
    json_t *runs = json_array();
    long count = 0;
    long long last_seq = 0;
    bool more = false;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (count == limit) {
            more = true;
            break;
        }
        last_seq = sqlite3_column_int64(st, 0);
        json_array_append_new(runs, sim_run_json(st));
        count++;
    }
    sqlite3_reset(st);
    char next[32];
    snprintf(next, sizeof next, "%lld", last_seq);
    sim_reply_json(req, 200,
                   json_pack("{s:I,s:b,s:I,s:s?,s:o}", "count", (json_int_t)count, "has_more", more,
                             "limit", (json_int_t)limit, "next_cursor", more ? next : NULL,
                             "query_runs", runs));
}

static void sim_query_run_get(struct sim_req *req)
{
    const char *id = sim_req_param(req, "id");
    sqlite3_stmt *st = sim_db_stmt(req->ws, "SELECT " SIM_RUN_COLS " FROM query_runs WHERE id=?");
    if (!st) {
        sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "query runs unavailable");
        return;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        sim_reply_error(req, 404, "NOT_FOUND", "Query run '%s' not found", id);
        return;
    }
    json_t *o = sim_run_json(st);
    sqlite3_reset(st);
    sim_reply_json(req, 200, o);
}

/* ---- results ---- */

static void sim_results_list(struct sim_req *req)
{
    long limit, offset;
    if (sim_res_query_limit(req, 100, &limit) < 0 ||
        sim_req_query_int(req, "offset", 0, 0, 1L << 40, &offset) < 0)
        return;
    sqlite3_stmt *st =
        sim_db_stmt(req->ws, "SELECT id," SIM_RESULT_STATUS_SQL ",created_at,error_message FROM "
                             "results ORDER BY seq DESC LIMIT ?1 OFFSET ?2");
    if (!st) {
        sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "results unavailable");
        return;
    }
    sqlite3_bind_int64(st, 1, limit + 1);
    sqlite3_bind_int64(st, 2, offset);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)util_wall_ms());
    json_t *arr = json_array();
    long count = 0;
    bool more = false;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (count == limit) {
            more = true;
            break;
        }
        json_array_append_new(arr,
                              json_pack("{s:o,s:o,s:o,s:o}", "id", sim_col_json(st, 0), "status",
                                        sim_col_json(st, 1), "created_at", sim_col_json(st, 2),
                                        "error_message", sim_col_json(st, 3)));
        count++;
    }
    sqlite3_reset(st);
    sim_reply_json(req, 200,
                   json_pack("{s:I,s:b,s:I,s:I,s:o}", "count", (json_int_t)count, "has_more", more,
                             "limit", (json_int_t)limit, "offset", (json_int_t)offset, "results",
                             arr));
}

static bool sim_wants_arrow(struct sim_req *req)
{
    const char *f = sim_req_query(req, "format");
    if (f && strcasecmp(f, "arrow") == 0)
        return true;
    const char *acc = sim_req_header(req, "Accept");
    return acc && strstr(acc, "application/vnd.apache.arrow.stream") != NULL;
}

/* The reference's form of a result that is not ready (or failed): 200, status, null data. */
static json_t *sim_result_not_ready(const char *id, const char *status, const char *error)
{
    return json_pack("{s:n,s:s?,s:n,s:s,s:n,s:n,s:s}", "columns", "error_message", error,
                     "nullable", "result_id", id, "row_count", "rows", "status", status);
}

static void sim_result_get(struct sim_req *req)
{
    const char *id = sim_req_param(req, "id");
    long offset, limit;
    if (sim_req_query_int(req, "offset", 0, 0, 1L << 40, &offset) < 0 ||
        sim_req_query_int(req, "limit", -1, 0, 1L << 40, &limit) < 0)
        return;
    const char *f = sim_req_query(req, "format");
    if (f && *f && strcasecmp(f, "arrow") != 0 && strcasecmp(f, "json") != 0) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Invalid format '%s' (json or arrow)", f);
        return;
    }
    sqlite3_stmt *st =
        sim_db_stmt(req->ws, "SELECT " SIM_RESULT_STATUS_SQL
                             ",error_message,row_count,data FROM results WHERE id=?1");
    if (!st) {
        sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "results unavailable");
        return;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)util_wall_ms());
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        sim_reply_error(req, 404, "NOT_FOUND", "Result '%s' not found", id);
        return;
    }
    char status[32];
    snprintf(status, sizeof status, "%s", (const char *)sqlite3_column_text(st, 0));
    bool old_form = req->ctx->cfg.results_not_ready == 202;
    if (strcmp(status, "failed") == 0) {
        const char *em = (const char *)sqlite3_column_text(st, 1);
        char *msg = sim_strdup(em ? em : "query failed");
        sqlite3_reset(st);
        if (old_form)
            sim_reply_error(req, 409, "CONFLICT", "Result '%s' failed: %s", id, msg);
        else
            sim_reply_json(req, 200, sim_result_not_ready(id, status, msg));
        free(msg);
        return;
    }
    if (strcmp(status, "ready") != 0) {
        sqlite3_reset(st);
        if (old_form)
            sim_reply_json(req, 202, json_pack("{s:s,s:s}", "result_id", id, "status", status));
        else
            sim_reply_json(req, 200, sim_result_not_ready(id, status, NULL));
        return;
    }
    json_error_t jerr;
    json_t *data = json_loadb((const char *)sqlite3_column_blob(st, 3),
                              (size_t)sqlite3_column_bytes(st, 3), 0, &jerr);
    sqlite3_reset(st);
    if (!data) {
        sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "stored result unreadable");
        return;
    }
    json_t *rows = json_object_get(data, "rows");
    size_t total = json_array_size(rows);
    char tot[32];
    snprintf(tot, sizeof tot, "%zu", total);
    sim_reply_header(req, "X-Total-Row-Count", tot);
    size_t off = (size_t)offset < total ? (size_t)offset : total;
    size_t n = total - off;
    if (limit >= 0 && (size_t)limit < n)
        n = (size_t)limit;
    if (sim_wants_arrow(req)) {
        struct evbuffer *b = evbuffer_new();
        int rc = sim_arrow_encode(data, off, n, b);
        json_decref(data);
        if (rc < 0) {
            evbuffer_free(b);
            sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "arrow encoding failed");
            return;
        }
        sim_reply_raw(req, 200, "application/vnd.apache.arrow.stream", b);
        evbuffer_free(b);
        return;
    }
    json_t *page = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append(page, json_array_get(rows, off + i));
    json_t *resp =
        json_pack("{s:s,s:s,s:O,s:O,s:o,s:I,s:n}", "result_id", id, "status", "ready", "columns",
                  json_object_get(data, "columns"), "nullable", json_object_get(data, "nullable"),
                  "rows", page, "row_count", (json_int_t)total, "error_message");
    json_decref(data);
    sim_reply_json(req, 200, resp);
}

void sim_query_startup(struct sim_ctx *ctx)
{
    for (size_t i = 0; i < sim_ws_count(ctx); i++) {
        struct sim_ws *ws = sim_ws_at(ctx, i);
        sim_db_exec(ws->db, "UPDATE results SET status='ready' WHERE status IN "
                            "('pending','processing') AND data IS NOT NULL;"
                            "UPDATE query_runs SET status='failed', error_message="
                            "'simulator restarted before the query finished' "
                            "WHERE status IN ('queued','running')");
    }
}

void sim_query_register(struct sim_router *r)
{
    sim_route(r, "POST", "/v1/query", sim_query_post, 0);
    sim_route(r, "GET", "/v1/query-runs", sim_query_runs_list, 0);
    sim_route(r, "GET", "/v1/query-runs/{id}", sim_query_run_get, 0);
    sim_route(r, "GET", "/v1/results", sim_results_list, 0);
    sim_route(r, "GET", "/v1/results/{id}", sim_result_get, 0);
}
