/*
 * refresh: POST /v1/refresh. A data refresh really changes what queries return (that is the
 * point: a cache that misses the invalidation serves visibly stale rows): every refreshed
 * table gets synced_at advanced to now (ms precision), demo.public.orders gains 10 new
 * orders, demo.public.customers one customer, demo.public.products new stock levels; and
 * sim_tables.last_sync moves. A schema refresh moves discovered_at of the connection and
 * its tables (and discovers the tables of a connection created with skip_discovery).
 * dataset_id is handed to datasets.c (sim_datasets_refresh).
 *
 * Request shapes and answers follow the open-source server the API grew from (runtimedb,
 * src/http/controllers/refresh_controller.rs) and the official clients' RefreshResponse
 * (one of SchemaRefreshResult, TableRefreshResult, ConnectionRefreshResult):
 *   {}  or {"connection_id"}            schema refresh (all connections / one):
 *       {connections_refreshed, connections_failed, tables_discovered, tables_added,
 *        tables_modified}
 *   {"connection_id","schema_name","table_name","data":true}   table data refresh:
 *       {connection_id, schema_name, table_name, rows_synced, duration_ms}
 *   {"connection_id","data":true}       connection data refresh:
 *       {connection_id, tables_refreshed, tables_failed, total_rows, duration_ms, errors:[]}
 *   schema_name without connection_id, table_name without schema_name, data without
 *   connection_id, schema_name without table_name, a schema refresh naming a table: 400.
 * async:true (data only) answers 202 {"id","job_id","job_type","status":"pending",
 * "status_url"}; the job (data_refresh_table / data_refresh_connection) ends with the same
 * result object as the synchronous answer.
 *
 * Rules: loop thread only.
 */
#include "sim.h"
#include "sim_areas.h"
#include "sim_connections.h"
#include "sim_datasets.h"
#include "sim_jobs.h"
#include "sim_res.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sim_refresh_spec {
    const char *conn_id;
    const char *schema; /* NULL: all schemas */
    const char *table;  /* NULL: all tables */
    bool include_uncached;
};

static long long sim_refresh_table_rows(struct sim_ws *ws, const char *sqlite_table);

/* Refresh the data of every matching table; *ntables gets how many, *rows_synced the rows
 * they hold afterwards. */
static void sim_refresh_data(struct sim_ws *ws, const struct sim_refresh_spec *sp, long *ntables,
                             long long *rows_synced)
{
    sqlite3_stmt *st = sim_db_stmt(
        ws, "SELECT sqlite_table, catalog, schema_name, table_name FROM sim_tables "
            "WHERE kind='connection' AND owner_id=?1 AND (?2 IS NULL OR schema_name=?2) "
            "AND (?3 IS NULL OR table_name=?3) AND (synced=1 OR ?4=1 OR ?3 IS NOT NULL)");
    *ntables = 0;
    *rows_synced = 0;
    if (!st)
        return;
    sqlite3_bind_text(st, 1, sp->conn_id, -1, SQLITE_TRANSIENT);
    if (sp->schema)
        sqlite3_bind_text(st, 2, sp->schema, -1, SQLITE_TRANSIENT);
    if (sp->table)
        sqlite3_bind_text(st, 3, sp->table, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 4, sp->include_uncached ? 1 : 0);
    size_t n = 0, cap = 0;
    char **names = NULL;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            names = realloc(names, cap * sizeof *names);
            if (!names)
                abort();
        }
        names[n++] = sim_strdup((const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_reset(st);
    char now[40];
    sim_now_rfc3339(now, true);
    for (size_t i = 0; i < n; i++) {
        sim_store_refresh_table(ws, names[i]);
        *rows_synced += sim_refresh_table_rows(ws, names[i]);
        sqlite3_stmt *u = sim_db_stmt(
            ws, "UPDATE sim_tables SET synced=1, last_sync=? WHERE sqlite_table=? AND owner_id=?");
        if (u) {
            sqlite3_bind_text(u, 1, now, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(u, 2, names[i], -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(u, 3, sp->conn_id, -1, SQLITE_TRANSIENT);
            sqlite3_step(u);
            sqlite3_reset(u);
        }
        free(names[i]);
    }
    free(names);
    *ntables = (long)n;
}

/* Rows a refreshed table holds after the refresh (what a sync fetched). */
static long long sim_refresh_table_rows(struct sim_ws *ws, const char *sqlite_table)
{
    char *sql;
    size_t len;
    FILE *m = sim_res_sql_open(&sql, &len);
    fputs("SELECT count(*) FROM ", m);
    sim_res_put_ident(m, sqlite_table);
    fclose(m);
    sqlite3_stmt *st = NULL;
    long long n = 0;
    if (sqlite3_prepare_v2(ws->db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    free(sql);
    return n;
}

/* Data refresh of sp (one table or the connection's tables): the result object of the API
 * (TableRefreshResult when sp->table, else ConnectionRefreshResult), or NULL when the named
 * table does not exist. */
static json_t *sim_refresh_data_result(struct sim_ws *ws, const struct sim_refresh_spec *sp)
{
    uint64_t t0 = util_mono_ms();
    long ntables = 0;
    long long rows = 0;
    sim_refresh_data(ws, sp, &ntables, &rows);
    json_int_t ms = (json_int_t)(util_mono_ms() - t0);
    if (sp->table) {
        if (ntables == 0)
            return NULL;
        return json_pack("{s:s,s:s,s:s,s:I,s:I}", "connection_id", sp->conn_id, "schema_name",
                         sp->schema, "table_name", sp->table, "rows_synced", (json_int_t)rows,
                         "duration_ms", ms);
    }
    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:[]}", "connection_id", sp->conn_id, "tables_refreshed",
                     (json_int_t)ntables, "tables_failed", (json_int_t)0, "total_rows",
                     (json_int_t)rows, "duration_ms", ms, "errors");
}

static bool sim_refresh_conn_exists(struct sim_ws *ws, const char *conn_id)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT 1 FROM connections WHERE id=?");
    bool exists = false;
    if (st) {
        sqlite3_bind_text(st, 1, conn_id, -1, SQLITE_TRANSIENT);
        exists = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_reset(st);
    }
    return exists;
}

static enum sim_job_status sim_refresh_job(struct sim_ctx *ctx, struct sim_ws *ws,
                                           const char *job_id, json_t *args, json_t **result,
                                           char **error)
{
    (void)ctx;
    (void)job_id;
    struct sim_refresh_spec sp = {
        .conn_id = json_string_value(json_object_get(args, "connection_id")),
        .schema = json_string_value(json_object_get(args, "schema_name")),
        .table = json_string_value(json_object_get(args, "table_name")),
        .include_uncached = json_is_true(json_object_get(args, "include_uncached")),
    };
    /* the connection may have been deleted meanwhile */
    if (!sp.conn_id || !sim_refresh_conn_exists(ws, sp.conn_id)) {
        *error = sim_strdup("connection no longer exists");
        return SIM_JOB_FAILED;
    }
    *result = sim_refresh_data_result(ws, &sp);
    if (!*result) {
        *error = sim_strdup("table no longer exists");
        return SIM_JOB_FAILED;
    }
    return SIM_JOB_SUCCEEDED;
}

static long long sim_refresh_count_tables(struct sim_ws *ws, const char *conn_id)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT count(*) FROM sim_tables WHERE kind='connection' "
                                       "AND owner_id=?");
    long long n = 0;
    if (st) {
        sqlite3_bind_text(st, 1, conn_id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
    }
    return n;
}

/* Schema refresh of one connection: discover its tables if it has none yet (skip_discovery)
 * and move discovered_at. Tables added, or -1 when discovery failed. */
static int sim_refresh_schema_one(struct sim_ws *ws, const char *conn_id, const char *now)
{
    int added = sim_connections_discover(ws, conn_id);
    if (added < 0)
        return -1;
    sqlite3_stmt *u = sim_db_stmt(ws, "UPDATE connections SET discovered_at=? WHERE id=?");
    if (u) {
        sqlite3_bind_text(u, 1, now, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(u, 2, conn_id, -1, SQLITE_TRANSIENT);
        sqlite3_step(u);
        sqlite3_reset(u);
    }
    u = sim_db_stmt(ws, "UPDATE sim_tables SET discovered_at=? WHERE owner_id=?");
    if (u) {
        sqlite3_bind_text(u, 1, now, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(u, 2, conn_id, -1, SQLITE_TRANSIENT);
        sqlite3_step(u);
        sqlite3_reset(u);
    }
    return added;
}

/* Schema refresh of conn_id, or of every connection of the workspace when conn_id is NULL:
 * the API's SchemaRefreshResult (errors listed only when a connection failed). */
static json_t *sim_refresh_schema(struct sim_ws *ws, const char *conn_id)
{
    json_t *ids = json_array();
    if (conn_id) {
        json_array_append_new(ids, json_string(conn_id));
    } else {
        sqlite3_stmt *st = sim_db_stmt(ws, "SELECT id FROM connections ORDER BY name");
        while (st && sqlite3_step(st) == SQLITE_ROW)
            json_array_append_new(ids, json_string((const char *)sqlite3_column_text(st, 0)));
        if (st)
            sqlite3_reset(st);
    }
    char now[40];
    sim_now_rfc3339(now, false);
    long long refreshed = 0, failed = 0, discovered = 0, added = 0;
    json_t *errors = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        const char *id = json_string_value(v);
        int n = sim_refresh_schema_one(ws, id, now);
        if (n < 0) {
            failed++;
            json_array_append_new(errors, json_pack("{s:s,s:s}", "connection_id", id, "error",
                                                    "schema discovery failed"));
            continue;
        }
        refreshed++;
        added += n;
        discovered += sim_refresh_count_tables(ws, id);
    }
    json_decref(ids);
    json_t *o = json_pack("{s:I,s:I,s:I,s:I,s:I}", "connections_refreshed", (json_int_t)refreshed,
                          "connections_failed", (json_int_t)failed, "tables_discovered",
                          (json_int_t)discovered, "tables_added", (json_int_t)added,
                          "tables_modified", (json_int_t)0);
    if (json_array_size(errors))
        json_object_set_new(o, "errors", errors);
    else
        json_decref(errors);
    return o;
}

static bool sim_refresh_table_exists(struct sim_ws *ws, const char *conn_id, const char *schema,
                                     const char *table)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT 1 FROM sim_tables WHERE owner_id=? AND "
                                       "schema_name=? AND table_name=?");
    if (!st)
        return false;
    sqlite3_bind_text(st, 1, conn_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, schema, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, table, -1, SQLITE_TRANSIENT);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return found;
}

/* The field checks of runtimedb's refresh handler, in its order (the connection's existence
 * is checked after these, the combinations below after that). 0 when valid, else the 400 was
 * sent. */
static int sim_refresh_check_fields(struct sim_req *req, const char *conn_id, const char *schema,
                                    const char *table, bool data, bool async)
{
    const char *msg = NULL;
    if (schema && !conn_id)
        msg = "schema_name requires connection_id";
    else if (table && !schema)
        msg = "table_name requires schema_name";
    else if (data && !conn_id)
        msg = "data refresh requires connection_id";
    else if (async && !data)
        msg = "async is only supported for data refresh";
    if (!msg)
        return 0;
    sim_reply_error(req, 400, "BAD_REQUEST", "Invalid request: %s", msg);
    return -1;
}

/* Combinations runtimedb refuses once the connection is known. 0 when valid, else 400 sent. */
static int sim_refresh_check_combination(struct sim_req *req, const char *schema, const char *table,
                                         bool data)
{
    const char *msg = NULL;
    if (schema && !table && !data)
        msg = "schema-level refresh not supported; omit schema_name to refresh entire connection";
    else if (schema && !table && data)
        msg = "data refresh with schema_name requires table_name";
    else if (table && !data)
        msg = "schema refresh cannot target specific table; use data: true for table data "
              "refresh";
    if (!msg)
        return 0;
    sim_reply_error(req, 400, "BAD_REQUEST", "Invalid request: %s", msg);
    return -1;
}

/* The request body's fields. */
struct sim_refresh_body {
    const char *conn_id, *schema, *table, *dataset_id;
    bool data, async, include_uncached;
};

/* Read the body (a JSON object, typed fields). 0, or -1 when the 400 was sent. */
static int sim_refresh_read_body(struct sim_req *req, struct sim_refresh_body *b)
{
    memset(b, 0, sizeof *b);
    if (!req->body || !json_is_object(req->body)) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Invalid request: body must be a JSON object");
        return -1;
    }
    if (sim_body_str(req, "connection_id", false, &b->conn_id, NULL) < 0 ||
        sim_body_str(req, "schema_name", false, &b->schema, NULL) < 0 ||
        sim_body_str(req, "table_name", false, &b->table, NULL) < 0 ||
        sim_body_str(req, "dataset_id", false, &b->dataset_id, NULL) < 0 ||
        sim_body_bool(req, "data", false, &b->data, NULL) < 0 ||
        sim_body_bool(req, "async", false, &b->async, NULL) < 0 ||
        sim_body_bool(req, "include_uncached", false, &b->include_uncached, NULL) < 0)
        return -1;
    return 0;
}

/* Schema refresh answer: one connection (502 when its discovery failed) or all of them. */
static void sim_refresh_schema_reply(struct sim_req *req, const char *conn_id)
{
    json_t *o = sim_refresh_schema(req->ws, conn_id);
    if (conn_id && json_integer_value(json_object_get(o, "connections_failed")) > 0) {
        json_decref(o);
        sim_reply_error(req, 502, "BAD_GATEWAY", "Schema discovery failed for connection '%s'",
                        conn_id);
        return;
    }
    sim_reply_json(req, 200, o);
}

/* Data refresh answer: 404 for an unknown table, else the 202 of a job (async) or the result
 * object. */
static void sim_refresh_data_reply(struct sim_req *req, const struct sim_refresh_body *b)
{
    if (b->table && !sim_refresh_table_exists(req->ws, b->conn_id, b->schema, b->table)) {
        sim_reply_error(req, 404, "NOT_FOUND", "Table '%s.%s' not found in connection '%s'",
                        b->schema, b->table, b->conn_id);
        return;
    }
    if (b->async) {
        const char *type = b->table ? "data_refresh_table" : "data_refresh_connection";
        json_t *args =
            json_pack("{s:s,s:s?,s:s?,s:b}", "connection_id", b->conn_id, "schema_name", b->schema,
                      "table_name", b->table, "include_uncached", b->include_uncached);
        char job_id[64];
        if (sim_job_create(req->ctx, req->ws, type, sim_refresh_job, args, job_id) < 0) {
            sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "cannot create job");
            return;
        }
        sim_jobs_reply_accepted(req, job_id, type);
        return;
    }
    struct sim_refresh_spec sp = {b->conn_id, b->schema, b->table, b->include_uncached};
    json_t *o = sim_refresh_data_result(req->ws, &sp);
    if (!o) {
        sim_reply_error(req, 404, "NOT_FOUND", "Table '%s.%s' not found in connection '%s'",
                        b->schema, b->table, b->conn_id);
        return;
    }
    sim_reply_json(req, 200, o);
}

static void sim_refresh_post(struct sim_req *req)
{
    struct sim_refresh_body b;
    if (sim_refresh_read_body(req, &b) != 0)
        return;
    if (b.dataset_id) {
        if (b.conn_id || b.schema || b.table)
            sim_reply_error(req, 400, "BAD_REQUEST",
                            "Invalid request: dataset_id cannot be combined with connection_id, "
                            "schema_name or table_name");
        else
            sim_datasets_refresh(req, b.dataset_id, b.async);
        return;
    }
    if (sim_refresh_check_fields(req, b.conn_id, b.schema, b.table, b.data, b.async) != 0)
        return;
    if (b.conn_id && !sim_refresh_conn_exists(req->ws, b.conn_id)) {
        sim_reply_error(req, 404, "NOT_FOUND", "Connection '%s' not found", b.conn_id);
        return;
    }
    if (sim_refresh_check_combination(req, b.schema, b.table, b.data) != 0)
        return;
    if (b.data)
        sim_refresh_data_reply(req, &b);
    else
        sim_refresh_schema_reply(req, b.conn_id);
}

void sim_refresh_register(struct sim_router *r)
{
    sim_route(r, "POST", "/v1/refresh", sim_refresh_post, 0);
}
