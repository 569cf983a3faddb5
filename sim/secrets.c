/*
 * secrets: /v1/secrets of hotdata-sim. Secrets are stored per workspace (table res_secrets)
 * and referenced by connections (secret_id / secret_name) and embedding providers (their
 * auto-created api-key secrets). Values are stored but never returned by any endpoint.
 *
 * Rules: names are unique per workspace (409); unknown names are 404; a value must be a
 * string. The helpers at the bottom (sim_res.h) are the only way other areas touch secrets.
 */
#include "sim.h"
#include "sim_areas.h"
#include "sim_res.h"
#include "sim_secrets.h"

#include <stdlib.h>
#include <string.h>

static const char sim_secrets_schema[] =
    "CREATE TABLE IF NOT EXISTS res_secrets ("
    " id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, value TEXT NOT NULL,"
    " created_at TEXT NOT NULL, updated_at TEXT NOT NULL);";

static json_t *sim_secrets_row_json(sqlite3_stmt *st)
{
    /* columns: id, name, created_at, updated_at */
    return json_pack("{s:o,s:o,s:o,s:o}", "id", sim_res_col_json(st, 0), "name",
                     sim_res_col_json(st, 1), "created_at", sim_res_col_json(st, 2), "updated_at",
                     sim_res_col_json(st, 3));
}

static void sim_secrets_list(struct sim_req *req)
{
    sqlite3_stmt *st = sim_db_stmt(
        req->ws, "SELECT id, name, created_at, updated_at FROM res_secrets ORDER BY name");
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, sim_secrets_row_json(st));
    sqlite3_reset(st);
    sim_reply_json(req, 200, json_pack("{s:o}", "secrets", arr));
}

static void sim_secrets_create(struct sim_req *req)
{
    const char *name = NULL, *value = NULL;
    if (sim_body_str(req, "name", true, &name, NULL) != 0 ||
        sim_body_str(req, "value", true, &value, NULL) != 0)
        return;
    if (!*name) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Secret name must not be empty");
        return;
    }
    char *existing = sim_secret_id_by_name(req->ws, name);
    if (existing) {
        free(existing);
        sim_reply_error(req, 409, "CONFLICT", "Secret '%s' already exists", name);
        return;
    }
    char id[64], now[40];
    sim_id_new("secr", id);
    sim_now_rfc3339(now, false);
    sqlite3_stmt *st = sim_db_stmt(req->ws, "INSERT INTO res_secrets(id, name, value, created_at,"
                                            " updated_at) VALUES (?1, ?2, ?3, ?4, ?4)");
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, value, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, now, -1, SQLITE_TRANSIENT);
    if (sim_res_step_done(st) != SQLITE_DONE) {
        sim_res_reply_db_error(req);
        return;
    }
    sim_reply_json(req, 201, json_pack("{s:s,s:s,s:s}", "created_at", now, "id", id, "name", name));
}

static void sim_secrets_get(struct sim_req *req)
{
    const char *name = sim_req_param(req, "name");
    sqlite3_stmt *st = sim_db_stmt(
        req->ws, "SELECT id, name, created_at, updated_at FROM res_secrets WHERE name = ?1");
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        sim_reply_error(req, 404, "NOT_FOUND", "Secret '%s' not found", name);
        return;
    }
    json_t *o = sim_secrets_row_json(st);
    sqlite3_reset(st);
    sim_reply_json(req, 200, o);
}

static void sim_secrets_update(struct sim_req *req)
{
    const char *name = sim_req_param(req, "name");
    const char *value = NULL;
    char *id = sim_secret_id_by_name(req->ws, name);
    if (!id) {
        sim_reply_error(req, 404, "NOT_FOUND", "Secret '%s' not found", name);
        return;
    }
    free(id);
    if (sim_body_str(req, "value", true, &value, NULL) != 0)
        return;
    char now[40];
    sim_now_rfc3339(now, false);
    sqlite3_stmt *st =
        sim_db_stmt(req->ws, "UPDATE res_secrets SET value = ?2, updated_at = ?3 WHERE name = ?1");
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, now, -1, SQLITE_TRANSIENT);
    if (sim_res_step_done(st) != SQLITE_DONE) {
        sim_res_reply_db_error(req);
        return;
    }
    sim_reply_json(req, 200, json_pack("{s:s,s:s}", "name", name, "updated_at", now));
}

static void sim_secrets_delete(struct sim_req *req)
{
    const char *name = sim_req_param(req, "name");
    sqlite3_stmt *st = sim_db_stmt(req->ws, "DELETE FROM res_secrets WHERE name = ?1");
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    if (sim_res_step_done(st) != SQLITE_DONE) {
        sim_res_reply_db_error(req);
        return;
    }
    if (sqlite3_changes(req->db) == 0) {
        sim_reply_error(req, 404, "NOT_FOUND", "Secret '%s' not found", name);
        return;
    }
    sim_reply_empty(req, 204);
}

void sim_secrets_register(struct sim_router *r)
{
    sim_router_add_schema(r, sim_secrets_schema);
    sim_route(r, "GET", "/v1/secrets", sim_secrets_list, SIM_ROUTE_DEFAULT);
    sim_route(r, "POST", "/v1/secrets", sim_secrets_create, SIM_ROUTE_DEFAULT);
    sim_route(r, "GET", "/v1/secrets/{name}", sim_secrets_get, SIM_ROUTE_DEFAULT);
    sim_route(r, "PUT", "/v1/secrets/{name}", sim_secrets_update, SIM_ROUTE_DEFAULT);
    sim_route(r, "DELETE", "/v1/secrets/{name}", sim_secrets_delete, SIM_ROUTE_DEFAULT);
}

/* ---- helpers for other areas ---- */

char *sim_secret_id_by_name(struct sim_ws *ws, const char *name)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT id FROM res_secrets WHERE name = ?1");
    if (!st)
        return NULL;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    char *id = NULL;
    if (sqlite3_step(st) == SQLITE_ROW)
        id = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    return id;
}

int sim_secret_exists_id(struct sim_ws *ws, const char *id)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT 1 FROM res_secrets WHERE id = ?1");
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return found;
}

int sim_secret_put(struct sim_ws *ws, const char *name, const char *value, char id_out[64])
{
    char now[40];
    sim_now_rfc3339(now, false);
    char *id = sim_secret_id_by_name(ws, name);
    if (id) {
        snprintf(id_out, 64, "%s", id);
        free(id);
        sqlite3_stmt *st =
            sim_db_stmt(ws, "UPDATE res_secrets SET value = ?2, updated_at = ?3 WHERE name = ?1");
        if (!st)
            return -1;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, value, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, now, -1, SQLITE_TRANSIENT);
        return sim_res_step_done(st) == SQLITE_DONE ? 0 : -1;
    }
    sim_id_new("secr", id_out);
    sqlite3_stmt *st = sim_db_stmt(ws, "INSERT INTO res_secrets(id, name, value, created_at,"
                                       " updated_at) VALUES (?1, ?2, ?3, ?4, ?4)");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, id_out, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, value, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, now, -1, SQLITE_TRANSIENT);
    return sim_res_step_done(st) == SQLITE_DONE ? 0 : -1;
}

void sim_secret_delete_id(struct sim_ws *ws, const char *id)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "DELETE FROM res_secrets WHERE id = ?1");
    if (!st)
        return;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sim_res_step_done(st);
}
