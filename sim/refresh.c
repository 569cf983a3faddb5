/*
 * refresh: POST /v1/refresh. A data refresh really changes what queries return (that is the
 * point: a cache that misses the invalidation serves visibly stale rows): every refreshed
 * table gets synced_at advanced to now (ms precision), demo.public.orders gains 10 new
 * orders, demo.public.customers one customer, demo.public.products new stock levels; and
 * sim_tables.last_sync moves. A schema refresh moves discovered_at of the connection and
 * its tables. dataset_id is handed to datasets.c (sim_datasets_refresh).
 *
 * Answers: sync -> 200 with body null (as the reference says); async (data only) -> 202
 * {"id","job_id","job_type","status":"pending","status_url"} with job type
 * data_refresh_table (table_name given) or data_refresh_connection, result
 * {"connection_id","tables_refreshed","rows_changed"}.
 *
 * Rules: loop thread only.
 */
#include "sim.h"
#include "sim_areas.h"
#include "sim_connections.h"
#include "sim_datasets.h"
#include "sim_jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sim_refresh_spec {
    const char *conn_id;
    const char *schema; /* NULL: all schemas */
    const char *table;  /* NULL: all tables */
    bool include_uncached;
};

/* Refresh the data of every matching table; *ntables gets how many. Returns rows changed. */
static long sim_refresh_data(struct sim_ws *ws, const struct sim_refresh_spec *sp, long *ntables)
{
    sqlite3_stmt *st = sim_db_stmt(
        ws, "SELECT sqlite_table, catalog, schema_name, table_name FROM sim_tables "
            "WHERE kind='connection' AND owner_id=?1 AND (?2 IS NULL OR schema_name=?2) "
            "AND (?3 IS NULL OR table_name=?3) AND (synced=1 OR ?4=1 OR ?3 IS NOT NULL)");
    *ntables = 0;
    if (!st)
        return 0;
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
    long rows = 0;
    char now[40];
    sim_now_rfc3339(now, true);
    for (size_t i = 0; i < n; i++) {
        rows += sim_store_refresh_table(ws, names[i]);
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
    return rows;
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
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT 1 FROM connections WHERE id=?");
    bool exists = false;
    if (st) {
        sqlite3_bind_text(st, 1, sp.conn_id, -1, SQLITE_TRANSIENT);
        exists = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_reset(st);
    }
    if (!exists) {
        *error = sim_strdup("connection no longer exists");
        return SIM_JOB_FAILED;
    }
    long ntables = 0;
    long rows = sim_refresh_data(ws, &sp, &ntables);
    if (sp.table && ntables == 0) {
        *error = sim_strdup("table no longer exists");
        return SIM_JOB_FAILED;
    }
    *result = json_pack("{s:s,s:I,s:I}", "connection_id", sp.conn_id, "tables_refreshed",
                        (json_int_t)ntables, "rows_changed", (json_int_t)rows);
    return SIM_JOB_SUCCEEDED;
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

static void sim_refresh_post(struct sim_req *req)
{
    const char *conn_id = NULL, *schema = NULL, *table = NULL, *dataset_id = NULL;
    bool data = false, async = false, include_uncached = false;
    if (!req->body || !json_is_object(req->body)) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Invalid request: body must be a JSON object");
        return;
    }
    if (sim_body_str(req, "connection_id", false, &conn_id, NULL) < 0 ||
        sim_body_str(req, "schema_name", false, &schema, NULL) < 0 ||
        sim_body_str(req, "table_name", false, &table, NULL) < 0 ||
        sim_body_str(req, "dataset_id", false, &dataset_id, NULL) < 0 ||
        sim_body_bool(req, "data", false, &data, NULL) < 0 ||
        sim_body_bool(req, "async", false, &async, NULL) < 0 ||
        sim_body_bool(req, "include_uncached", false, &include_uncached, NULL) < 0)
        return;
    if (dataset_id) {
        if (conn_id || schema || table) {
            sim_reply_error(req, 400, "BAD_REQUEST",
                            "Invalid request: dataset_id cannot be combined with connection_id, "
                            "schema_name or table_name");
            return;
        }
        sim_datasets_refresh(req, dataset_id, async);
        return;
    }
    if (!conn_id) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid request: connection_id or dataset_id is required");
        return;
    }
    if (table && !schema) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid request: schema_name is required when table_name is given");
        return;
    }
    if (async && !data) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid request: async is only supported for data refresh");
        return;
    }
    sqlite3_stmt *st = sim_db_stmt(req->ws, "SELECT 1 FROM connections WHERE id=?");
    bool exists = false;
    if (st) {
        sqlite3_bind_text(st, 1, conn_id, -1, SQLITE_TRANSIENT);
        exists = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_reset(st);
    }
    if (!exists) {
        sim_reply_error(req, 404, "NOT_FOUND", "Connection '%s' not found", conn_id);
        return;
    }
    /* schema refresh: a connection created with skip_discovery gets its tables now */
    if (!data && sim_connections_discover(req->ws, conn_id) < 0) {
        sim_reply_error(req, 502, "BAD_GATEWAY", "Schema discovery failed for connection '%s'",
                        conn_id);
        return;
    }
    if (table && !sim_refresh_table_exists(req->ws, conn_id, schema, table)) {
        sim_reply_error(req, 404, "NOT_FOUND", "Table '%s.%s' not found in connection '%s'", schema,
                        table, conn_id);
        return;
    }
    if (!data) {
        char now[40];
        sim_now_rfc3339(now, false);
        sqlite3_stmt *u = sim_db_stmt(req->ws, "UPDATE connections SET discovered_at=? WHERE id=?");
        if (u) {
            sqlite3_bind_text(u, 1, now, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(u, 2, conn_id, -1, SQLITE_TRANSIENT);
            sqlite3_step(u);
            sqlite3_reset(u);
        }
        u = sim_db_stmt(req->ws,
                        "UPDATE sim_tables SET discovered_at=?1 WHERE owner_id=?2 AND "
                        "(?3 IS NULL OR schema_name=?3) AND (?4 IS NULL OR table_name=?4)");
        if (u) {
            sqlite3_bind_text(u, 1, now, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(u, 2, conn_id, -1, SQLITE_TRANSIENT);
            if (schema)
                sqlite3_bind_text(u, 3, schema, -1, SQLITE_TRANSIENT);
            if (table)
                sqlite3_bind_text(u, 4, table, -1, SQLITE_TRANSIENT);
            sqlite3_step(u);
            sqlite3_reset(u);
        }
        sim_reply_json(req, 200, json_null());
        return;
    }
    struct sim_refresh_spec sp = {conn_id, schema, table, include_uncached};
    if (async) {
        const char *type = table ? "data_refresh_table" : "data_refresh_connection";
        json_t *args = json_pack("{s:s,s:s?,s:s?,s:b}", "connection_id", conn_id, "schema_name",
                                 schema, "table_name", table, "include_uncached", include_uncached);
        char job_id[64];
        if (sim_job_create(req->ctx, req->ws, type, sim_refresh_job, args, job_id) < 0) {
            sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "cannot create job");
            return;
        }
        sim_jobs_reply_accepted(req, job_id, type);
        return;
    }
    long ntables = 0;
    sim_refresh_data(req->ws, &sp, &ntables);
    sim_reply_json(req, 200, json_null());
}

void sim_refresh_register(struct sim_router *r)
{
    sim_route(r, "POST", "/v1/refresh", sim_refresh_post, 0);
}
