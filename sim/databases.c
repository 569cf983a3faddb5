/*
 * databases: /v1/databases of hotdata-sim (create, list, get, delete) and the database scope
 * of a request. A query (POST /v1/query) or a dataset create is scoped to a database by the
 * X-Database-Id header or the database_id body field; both given and different is a 400, an
 * unknown id a 404. Datasets created in a scope belong to that database (core table
 * sim_table_scope: owner id -> database id) and are visible only to queries in the same
 * scope; unscoped queries see unscoped datasets only. Connection tables are visible to all.
 *
 * Rules: the tables live in the core schema (sim/store.c) so the query engine can always
 * read them; names are unique per workspace (409); a database that still owns datasets
 * cannot be deleted (409).
 */
#include "sim.h"
#include "sim_areas.h"
#include "sim_databases.h"
#include "sim_res.h"

#include <stdlib.h>
#include <string.h>

static json_t *sim_db_row_json(sqlite3_stmt *st)
{
    /* columns: id, name, created_at, datasets */
    return json_pack("{s:o,s:o,s:o,s:o}", "id", sim_res_col_json(st, 0), "name",
                     sim_res_col_json(st, 1), "created_at", sim_res_col_json(st, 2),
                     "dataset_count", sim_res_col_json(st, 3));
}

#define SIM_DB_COLS                                                                                \
    "d.id, d.name, d.created_at, (SELECT count(*) FROM sim_table_scope s WHERE"                    \
    " s.database_id = d.id)"

static void sim_databases_list(struct sim_req *req)
{
    sqlite3_stmt *st =
        sim_db_stmt(req->ws, "SELECT " SIM_DB_COLS " FROM res_databases d ORDER BY d.name");
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, sim_db_row_json(st));
    sqlite3_reset(st);
    sim_reply_json(
        req, 200,
        json_pack("{s:I,s:o}", "count", (json_int_t)json_array_size(arr), "databases", arr));
}

static bool sim_db_name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 63)
        return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return false;
    return true;
}

static void sim_databases_create(struct sim_req *req)
{
    const char *name = NULL;
    if (sim_body_str(req, "name", true, &name, NULL) != 0)
        return;
    if (!sim_db_name_ok(name)) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid database name '%s': 1 to 63 letters, digits, _ or -", name);
        return;
    }
    sqlite3_stmt *st = sim_db_stmt(req->ws, "SELECT 1 FROM res_databases WHERE name = ?1");
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    bool taken = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    if (taken) {
        sim_reply_error(req, 409, "CONFLICT", "Database '%s' already exists", name);
        return;
    }
    char id[64], now[40];
    sim_id_new("db", id);
    sim_now_rfc3339(now, false);
    st = sim_db_stmt(req->ws, "INSERT INTO res_databases(id, name, created_at) VALUES (?1,?2,?3)");
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, now, -1, SQLITE_TRANSIENT);
    if (sim_res_step_done(st) != SQLITE_DONE) {
        sim_res_reply_db_error(req);
        return;
    }
    sim_reply_json(req, 201,
                   json_pack("{s:s,s:s,s:s,s:i}", "created_at", now, "id", id, "name", name,
                             "dataset_count", 0));
}

static void sim_databases_get(struct sim_req *req)
{
    sim_res_reply_row(req, "SELECT " SIM_DB_COLS " FROM res_databases d WHERE d.id = ?1",
                      sim_req_param(req, "id"), sim_db_row_json, "Database");
}

static void sim_databases_delete(struct sim_req *req)
{
    const char *id = sim_req_param(req, "id");
    if (!sim_database_exists(req->ws, id)) {
        sim_reply_error(req, 404, "NOT_FOUND", "Database '%s' not found", id);
        return;
    }
    sqlite3_stmt *st =
        sim_db_stmt(req->ws, "SELECT count(*) FROM sim_table_scope WHERE database_id = ?1");
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    long n = sqlite3_step(st) == SQLITE_ROW ? (long)sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (n > 0) {
        sim_reply_error(req, 409, "CONFLICT",
                        "Database '%s' still has %ld dataset(s); delete them first", id, n);
        return;
    }
    sim_res_reply_done(req,
                       sim_res_exec_id(req->ws, "DELETE FROM res_databases WHERE id = ?1", id));
}

void sim_databases_register(struct sim_router *r)
{
    sim_route(r, "GET", "/v1/databases", sim_databases_list, SIM_ROUTE_DEFAULT);
    sim_route(r, "POST", "/v1/databases", sim_databases_create, SIM_ROUTE_DEFAULT);
    sim_route(r, "GET", "/v1/databases/{id}", sim_databases_get, SIM_ROUTE_DEFAULT);
    sim_route(r, "DELETE", "/v1/databases/{id}", sim_databases_delete, SIM_ROUTE_DEFAULT);
}

/* ---- helpers for other areas ---- */

bool sim_database_exists(struct sim_ws *ws, const char *id)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT 1 FROM res_databases WHERE id = ?1");
    if (!st)
        return false;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return found;
}

int sim_req_database(struct sim_req *req, const char **db_id)
{
    *db_id = NULL;
    const char *hdr = sim_req_header(req, "X-Database-Id");
    const char *field = NULL;
    bool has_field = false;
    if (json_is_object(req->body) &&
        sim_body_str(req, "database_id", false, &field, &has_field) != 0)
        return -1;
    if (hdr && !*hdr)
        hdr = NULL;
    if (has_field && field && !*field)
        has_field = false;
    if (hdr && has_field && strcmp(hdr, field) != 0) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "X-Database-Id header '%s' and body database_id '%s' differ", hdr, field);
        return -1;
    }
    const char *id = hdr ? hdr : has_field ? field : NULL;
    if (!id)
        return 0;
    if (!sim_database_exists(req->ws, id)) {
        sim_reply_error(req, 404, "NOT_FOUND", "Database '%s' not found", id);
        return -1;
    }
    *db_id = id;
    return 0;
}

int sim_table_scope_set(struct sim_ws *ws, const char *owner_id, const char *db_id)
{
    sqlite3_stmt *st = sim_db_stmt(ws, db_id ? "INSERT OR REPLACE INTO sim_table_scope(owner_id,"
                                               " database_id) VALUES (?1, ?2)"
                                             : "DELETE FROM sim_table_scope WHERE owner_id = ?1");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, owner_id, -1, SQLITE_TRANSIENT);
    if (db_id)
        sqlite3_bind_text(st, 2, db_id, -1, SQLITE_TRANSIENT);
    return sim_res_step_done(st) == SQLITE_DONE ? 0 : -1;
}
