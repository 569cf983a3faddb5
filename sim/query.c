/*
 * query: POST /v1/query, GET /v1/query-runs[/{id}], GET /v1/results[/{id}].
 *
 * User SQL is rewritten (sqlrewrite.c) and run on the workspace's SQLite handle under an
 * authorizer that allows reads of registered tables only (sim_tables) and nothing that
 * writes, so a query can neither see the simulator's own bookkeeping tables nor modify the
 * seeded data. Every execution records a query run and persists a result whose status moves
 * pending -> processing -> ready by a stored clock (cfg.result_delay_ms per phase, see
 * SIM_RESULT_STATUS_SQL); async runs move
 * queued -> running -> succeeded/failed on timers (cfg.async_delay_ms per phase).
 *
 * Result storage: results.data holds {"columns","nullable","types","rows"} as JSON text;
 * types are "int64" | "float64" | "bool" | "utf8" | "null" (for the Arrow encoding).
 * A ready result never changes.
 *
 * Rules: loop thread only. Timer contexts carry workspace pointers (workspaces live for the
 * whole process) and ids, never sim_req pointers, except async_after_ms waiters, which are
 * kept on ctx->waiters and answered exactly once.
 */
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

/* Guards against runaway SQL (cross joins, recursive CTEs) on the single event loop. */
#define SIM_QUERY_MAX_ROWS 1000000L
#define SIM_QUERY_MAX_MS 10000u

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

struct sim_authz {
    char **allowed;
    size_t nallowed;
    char denied[256];
    bool write;
};

static int sim_authorizer(void *ud, int action, const char *a1, const char *a2, const char *a3,
                          const char *a4)
{
    (void)a2;
    (void)a3;
    (void)a4;
    struct sim_authz *az = ud;
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_FUNCTION:
    case SQLITE_RECURSIVE:
        return SQLITE_OK;
    case SQLITE_READ:
        if (!a1)
            return SQLITE_DENY;
        for (size_t i = 0; i < az->nallowed; i++)
            if (strcmp(az->allowed[i], a1) == 0)
                return SQLITE_OK;
        if (!az->denied[0])
            snprintf(az->denied, sizeof az->denied, "%s", a1);
        return SQLITE_DENY;
    default:
        az->write = true;
        return SQLITE_DENY;
    }
}

/*
 * Visibility: connection tables always; a dataset's tables only in the scope it was created
 * in (sim_table_scope; unscoped datasets only to unscoped queries). ?4 is the scope ('' none).
 */
#define SIM_VISIBLE_SQL                                                                            \
    "(t.kind != 'dataset' OR coalesce((SELECT s.database_id FROM sim_table_scope s WHERE"          \
    " s.owner_id = t.owner_id), '') = ?4)"

/* The first column of the first row of a prepared lookup (a copy), or NULL; resets st. */
static char *first_text(sqlite3_stmt *st)
{
    char *out = NULL;
    if (sqlite3_step(st) == SQLITE_ROW)
        out = sim_strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    return out;
}

static char *sim_resolve_cb(void *ud, const char *a, const char *b, const char *c)
{
    const struct sim_qscope *q = ud;
    sqlite3_stmt *st = sim_db_stmt(q->ws, "SELECT t.sqlite_table FROM sim_tables t WHERE"
                                          " t.catalog = ?1 AND t.schema_name = ?2 AND"
                                          " t.table_name = ?3 AND " SIM_VISIBLE_SQL);
    if (!st)
        return NULL;
    sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, b, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, c, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, q->db_id ? q->db_id : "", -1, SQLITE_TRANSIENT);
    return first_text(st);
}

/*
 * default_catalog / default_schema: an unqualified table name is looked up in the default
 * schema of the default catalog; without a default catalog, in the first catalog (by name)
 * that has it; a two-part name needs the default catalog. Without defaults nothing resolves.
 */
static char *sim_resolve_short_cb(void *ud, const char *schema, const char *table)
{
    const struct sim_qscope *q = ud;
    if (!schema)
        schema = q->default_schema;
    if (!schema || (!q->default_catalog && !q->default_schema))
        return NULL;
    if (q->default_catalog)
        return sim_resolve_cb(ud, q->default_catalog, schema, table);
    if (schema != q->default_schema)
        return NULL;
    sqlite3_stmt *st =
        sim_db_stmt(q->ws, "SELECT t.sqlite_table FROM sim_tables t WHERE"
                           " t.schema_name = ?2 AND t.table_name = ?3 AND " SIM_VISIBLE_SQL
                           " ORDER BY t.catalog LIMIT 1");
    if (!st)
        return NULL;
    sqlite3_bind_text(st, 2, schema, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, table, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, q->db_id ? q->db_id : "", -1, SQLITE_TRANSIENT);
    return first_text(st);
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

static int sim_query_progress(void *arg)
{
    const uint64_t *deadline = arg;
    return util_mono_ms() > *deadline;
}

static bool sim_decl_is_bool(const char *decl)
{
    return decl && (strcasecmp(decl, "BOOLEAN") == 0 || strcasecmp(decl, "BOOL") == 0);
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

static void sim_fold_columns(const char *sql, const char *dialect, json_t *columns)
{
    bool upper = dialect && strcmp(dialect, "snowflake") == 0;
    bool lower = dialect && strcmp(dialect, "postgres") == 0;
    if (!upper && !lower)
        return;
    for (size_t i = 0; i < json_array_size(columns); i++) {
        const char *n = json_string_value(json_array_get(columns, i));
        if (!n || sim_sql_quotes_name(sql, n))
            continue;
        char *f = sim_strdup(n);
        for (char *p = f; *p; p++)
            *p = (char)(upper ? toupper((unsigned char)*p) : tolower((unsigned char)*p));
        json_array_set_new(columns, i, json_string(f));
        free(f);
    }
}

/* Run sql in scope. 0 and *out filled, or -1 and *err (malloc'd). */
static int sim_query_exec(const struct sim_qscope *q, const char *sql, struct sim_qres *out,
                          char **err)
{
    struct sim_ws *ws = q->ws;
    memset(out, 0, sizeof *out);
    uint64_t t0 = util_mono_us();
    char *rewritten = NULL;
    if (sim_sql_rewrite_ex(sql, sim_resolve_cb, sim_is_catalog_cb, sim_resolve_short_cb, (void *)q,
                           &rewritten, err) < 0)
        return -1;

    struct sim_authz az = {0};
    sqlite3_stmt *lst =
        sim_db_stmt(ws, "SELECT t.sqlite_table FROM sim_tables t WHERE " SIM_VISIBLE_SQL);
    if (lst)
        sqlite3_bind_text(lst, 4, q->db_id ? q->db_id : "", -1, SQLITE_TRANSIENT);
    while (lst && sqlite3_step(lst) == SQLITE_ROW) {
        az.allowed = realloc(az.allowed, (az.nallowed + 1) * sizeof *az.allowed);
        if (!az.allowed)
            abort();
        az.allowed[az.nallowed++] = sim_strdup((const char *)sqlite3_column_text(lst, 0));
    }
    if (lst)
        sqlite3_reset(lst);

    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    sqlite3_set_authorizer(ws->db, sim_authorizer, &az);
    int rc = sqlite3_prepare_v2(ws->db, rewritten, -1, &st, &tail);
    sqlite3_set_authorizer(ws->db, NULL, NULL);
    int ret = -1;
    char msg[1024];
    if (rc != SQLITE_OK) {
        if (az.write)
            snprintf(msg, sizeof msg, "Only read-only queries (SELECT) are allowed");
        else if (az.denied[0])
            snprintf(msg, sizeof msg, "table '%s' not found", az.denied);
        else
            snprintf(msg, sizeof msg, "SQL error: %s", sqlite3_errmsg(ws->db));
        *err = sim_strdup(msg);
        goto done;
    }
    if (!st) {
        *err = sim_strdup("SQL error: empty query");
        goto done;
    }
    for (const char *p = tail; p && *p; p++) {
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t' && *p != ';') {
            *err = sim_strdup("SQL error: only one statement per query is supported");
            goto done;
        }
    }
    if (!sqlite3_stmt_readonly(st)) {
        *err = sim_strdup("Only read-only queries (SELECT) are allowed");
        goto done;
    }
    int ncol = sqlite3_column_count(st);
    out->columns = json_array();
    out->nullable = json_array();
    out->types = json_array();
    out->rows = json_array();
    int *declared_notnull = calloc((size_t)ncol + 1, sizeof(int)); /* 1 notnull, 0 null, -1 ? */
    bool *is_bool = calloc((size_t)ncol + 1, sizeof(bool));
    bool *seen_null = calloc((size_t)ncol + 1, sizeof(bool));
    int *kind = calloc((size_t)ncol + 1, sizeof(int)); /* 0 none, 1 int, 2 float, 3 text */
    if (!declared_notnull || !is_bool || !seen_null || !kind)
        abort();
    for (int i = 0; i < ncol; i++) {
        json_array_append_new(out->columns, json_string(sqlite3_column_name(st, i)));
        const char *tbl = sqlite3_column_table_name(st, i);
        const char *col = sqlite3_column_origin_name(st, i);
        int notnull = 0, pk = 0;
        declared_notnull[i] = -1;
        if (tbl && col &&
            sqlite3_table_column_metadata(ws->db, NULL, tbl, col, NULL, NULL, &notnull, &pk,
                                          NULL) == SQLITE_OK)
            declared_notnull[i] = (notnull || pk) ? 1 : 0;
        is_bool[i] = sim_decl_is_bool(sqlite3_column_decltype(st, i));
    }
    uint64_t deadline = util_mono_ms() + SIM_QUERY_MAX_MS;
    sqlite3_progress_handler(ws->db, 10000, sim_query_progress, &deadline);
    for (;;) {
        rc = out->row_count >= SIM_QUERY_MAX_ROWS ? SQLITE_TOOBIG : sqlite3_step(st);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            sqlite3_progress_handler(ws->db, 0, NULL, NULL);
            if (rc == SQLITE_TOOBIG)
                snprintf(msg, sizeof msg, "result too large: more than %ld rows",
                         SIM_QUERY_MAX_ROWS);
            else if (rc == SQLITE_INTERRUPT)
                snprintf(msg, sizeof msg, "query cancelled: ran longer than %u ms",
                         SIM_QUERY_MAX_MS);
            else
                snprintf(msg, sizeof msg, "SQL error: %s", sqlite3_errmsg(ws->db));
            *err = sim_strdup(msg);
            free(declared_notnull);
            free(is_bool);
            free(seen_null);
            free(kind);
            sim_qres_free(out);
            goto done;
        }
        json_t *row = json_array();
        for (int i = 0; i < ncol; i++) {
            json_t *v;
            switch (sqlite3_column_type(st, i)) {
            case SQLITE_INTEGER:
                if (is_bool[i])
                    v = json_boolean(sqlite3_column_int64(st, i) != 0);
                else
                    v = json_integer(sqlite3_column_int64(st, i));
                if (kind[i] < 1)
                    kind[i] = 1;
                break;
            case SQLITE_FLOAT:
                v = json_real(sqlite3_column_double(st, i));
                if (kind[i] < 2)
                    kind[i] = 2;
                break;
            case SQLITE_TEXT:
                v = json_stringn((const char *)sqlite3_column_text(st, i),
                                 (size_t)sqlite3_column_bytes(st, i));
                if (!v) /* not UTF-8 */
                    v = json_string("");
                kind[i] = 3;
                break;
            case SQLITE_BLOB: {
                int n = sqlite3_column_bytes(st, i);
                char *hex = malloc((size_t)n * 2 + 1);
                if (!hex)
                    abort();
                util_hex(sqlite3_column_blob(st, i), (size_t)n, hex);
                v = json_string(hex);
                free(hex);
                kind[i] = 3;
                break;
            }
            default:
                v = json_null();
                seen_null[i] = true;
                break;
            }
            json_array_append_new(row, v);
        }
        json_array_append_new(out->rows, row);
        out->row_count++;
    }
    sqlite3_progress_handler(ws->db, 0, NULL, NULL);
    for (int i = 0; i < ncol; i++) {
        bool nullable = declared_notnull[i] >= 0 ? declared_notnull[i] == 0 : true;
        if (declared_notnull[i] < 0 && out->row_count > 0)
            nullable = seen_null[i];
        if (seen_null[i])
            nullable = true;
        json_array_append_new(out->nullable, json_boolean(nullable));
        const char *t = "utf8";
        if (is_bool[i] && kind[i] <= 1)
            t = "bool";
        else if (kind[i] == 1)
            t = "int64";
        else if (kind[i] == 2)
            t = "float64";
        else if (kind[i] == 0)
            t = "null";
        /* a column mixing ints and floats stays float64; ints and text: utf8 */
        json_array_append_new(out->types, json_string(t));
    }
    /* a column typed int64 may still hold floats in later rows: kind keeps the widest */
    free(declared_notnull);
    free(is_bool);
    free(seen_null);
    free(kind);
    sim_fold_columns(sql, q->dialect, out->columns);
    out->exec_ms = (long)((util_mono_us() - t0) / 1000);
    ret = 0;
done:
    sqlite3_finalize(st);
    for (size_t i = 0; i < az.nallowed; i++)
        free(az.allowed[i]);
    free(az.allowed);
    free(rewritten);
    return ret;
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

/* Execute for a run: store result, finish run. Returns 0 on success (r filled). */
static int sim_query_execute_run(struct sim_ctx *ctx, const struct sim_qscope *q,
                                 const char *run_id, const char *sql, struct sim_qres *r,
                                 char result_id[64], char **err, bool failed_result)
{
    struct sim_ws *ws = q->ws;
    uint64_t t0 = util_mono_us();
    char hash[65];
    util_sha256_hex(sql, strlen(sql), hash);
    sim_stats_count_sql(ctx, hash);
    result_id[0] = '\0';
    int rc = 0;
    /* one write transaction for the query's bookkeeping (the caller may hold one already) */
    bool own_tx = sqlite3_get_autocommit(ws->db) != 0;
    if (own_tx)
        sim_db_exec(ws->db, "BEGIN");
    if (sim_query_exec(q, sql, r, err) < 0) {
        if (failed_result) {
            sim_id_new("res", result_id);
            sim_result_store(ctx, ws, result_id, run_id, NULL, *err);
        }
        sim_run_finish(ws, run_id, NULL, result_id[0] ? result_id : NULL, *err,
                       (long)((util_mono_us() - t0) / 1000));
        rc = -1;
    } else {
        sim_id_new("res", result_id);
        sim_result_store(ctx, ws, result_id, run_id, r, NULL);
        sim_run_finish(ws, run_id, r, result_id, NULL, (long)((util_mono_us() - t0) / 1000));
    }
    if (own_tx)
        sim_db_exec(ws->db, "COMMIT");
    return rc;
}

static void sim_query_run_scoped(struct sim_req *req, const struct sim_qscope *q, const char *sql,
                                 const char *saved_query_id, int saved_query_version);

void sim_query_run_and_reply(struct sim_req *req, const char *sql, const char *saved_query_id,
                             int saved_query_version)
{
    struct sim_qscope q = {.ws = req->ws};
    sim_query_run_scoped(req, &q, sql, saved_query_id, saved_query_version);
}

static void sim_query_run_scoped(struct sim_req *req, const struct sim_qscope *q, const char *sql,
                                 const char *saved_query_id, int saved_query_version)
{
    char run_id[64], result_id[64];
    sim_id_new("qrun", run_id);
    sim_run_insert(req->ws, run_id, "running", sql, req->token->user_public_id, saved_query_id,
                   saved_query_version);
    struct sim_qres r;
    char *err = NULL;
    if (sim_query_execute_run(req->ctx, q, run_id, sql, &r, result_id, &err, false) < 0) {
        sim_reply_error(req, 400, "BAD_REQUEST", "%s", err);
        free(err);
        return;
    }
    json_t *resp = sim_query_response(&r, run_id, result_id);
    sim_qres_free(&r);
    sim_reply_json(req, 200, resp);
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
    struct sim_qres r;
    char result_id[64];
    char *err = NULL;
    int rc = sim_query_execute_run(a->ctx, &a->scope, a->run_id, a->sql, &r, result_id, &err, true);
    for (struct sim_pending_waiter *w = a->ctx->waiters; w; w = w->next) {
        if (!w->req || w->ws != a->ws || strcmp(w->run_id, a->run_id) != 0)
            continue;
        struct sim_req *req = w->req;
        w->req = NULL;
        if (rc == 0)
            sim_reply_json(req, 200, sim_query_response(&r, a->run_id, result_id));
        else
            sim_reply_error(req, 400, "BAD_REQUEST", "%s", err);
    }
    if (rc == 0)
        sim_qres_free(&r);
    free(err);
    sim_qscope_free(&a->scope);
    free(a->sql);
    free(a);
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
