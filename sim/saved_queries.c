/*
 * saved_queries: /v1/queries of hotdata-sim: named SQL with a version history, automatic
 * classification (sim_sq_classify: a tokenizer, so keywords inside literals and comments
 * never count), and execution through the query engine (sim_query_run_and_reply), which
 * records a query run linked by saved_query_id / saved_query_version.
 *
 * Rules: name and sql are required non-empty strings; tags an array of strings. On update an
 * omitted or null name / sql / description / tags keeps the current value; category_override
 * and table_size_override are kept when omitted and cleared by null. An update that changes
 * anything (SQL or metadata) creates a new version; one that changes nothing does not.
 * `category` is the override when set, else the classifier's; `table_size` is the override or
 * null. sql_hash is the lowercase hex SHA-256 of the SQL text exactly as submitted.
 * Execute runs the latest version, or the `version` its body names (404 when there is none).
 */
#include "sim.h"
#include "sim_areas.h"
#include "sim_query.h"
#include "sim_res.h"
#include "sim_saved_queries.h"
#include "util.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char sim_sq_schema[] =
    "CREATE TABLE IF NOT EXISTS res_saved_queries ("
    " id TEXT PRIMARY KEY, name TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',"
    " tags TEXT NOT NULL DEFAULT '[]', latest_version INTEGER NOT NULL, category_override TEXT,"
    " table_size_override TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS res_saved_query_versions ("
    " saved_query_id TEXT NOT NULL, version INTEGER NOT NULL, sql TEXT NOT NULL,"
    " sql_hash TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL, tags TEXT NOT NULL,"
    " category_override TEXT, table_size_override TEXT, created_at TEXT NOT NULL,"
    " PRIMARY KEY (saved_query_id, version));";

struct sim_sq_row {
    char id[64];
    char *name, *description, *tags, *category_override, *table_size_override;
    char *created_at, *updated_at, *sql;
    int latest_version;
};

static void sim_sq_row_free(struct sim_sq_row *q)
{
    free(q->name);
    free(q->description);
    free(q->tags);
    free(q->category_override);
    free(q->table_size_override);
    free(q->created_at);
    free(q->updated_at);
    free(q->sql);
}

static int sim_sq_load(struct sim_ws *ws, const char *id, struct sim_sq_row *q)
{
    memset(q, 0, sizeof *q);
    sqlite3_stmt *st = sim_db_stmt(
        ws, "SELECT q.id, q.name, q.description, q.tags, q.category_override,"
            " q.table_size_override, q.created_at, q.updated_at, q.latest_version, v.sql"
            " FROM res_saved_queries q JOIN res_saved_query_versions v ON"
            " v.saved_query_id = q.id AND v.version = q.latest_version WHERE q.id = ?1");
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int found = sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        snprintf(q->id, sizeof q->id, "%s", (const char *)sqlite3_column_text(st, 0));
        q->name = sim_res_col_dup(st, 1);
        q->description = sim_res_col_dup(st, 2);
        q->tags = sim_res_col_dup(st, 3);
        q->category_override = sim_res_col_dup(st, 4);
        q->table_size_override = sim_res_col_dup(st, 5);
        q->created_at = sim_res_col_dup(st, 6);
        q->updated_at = sim_res_col_dup(st, 7);
        q->latest_version = sqlite3_column_int(st, 8);
        q->sql = sim_res_col_dup(st, 9);
    }
    sqlite3_reset(st);
    return found;
}

static int sim_sq_load_or_404(struct sim_req *req, struct sim_sq_row *q)
{
    const char *id = sim_req_param(req, "id");
    if (!id || !sim_sq_load(req->ws, id, q)) {
        sim_reply_error(req, 404, "NOT_FOUND", "Saved query '%s' not found", id ? id : "");
        return -1;
    }
    return 0;
}

/* The classification fields of sql into o (category honours the override). */
static void sim_sq_add_class(json_t *o, const char *sql, const char *category_override,
                             const char *table_size_override)
{
    sim_sq_class c;
    size_t len = sql ? strlen(sql) : 0;
    sim_sq_classify(sql, len, &c);
    char hash[65];
    util_sha256_hex(sql ? sql : "", len, hash);
    json_object_set_new(o, "category",
                        json_string(category_override ? category_override : c.category));
    json_object_set_new(o, "has_aggregation", json_boolean(c.has_aggregation));
    json_object_set_new(o, "has_group_by", json_boolean(c.has_group_by));
    json_object_set_new(o, "has_join", json_boolean(c.has_join));
    json_object_set_new(o, "has_limit", json_boolean(c.has_limit));
    json_object_set_new(o, "has_order_by", json_boolean(c.has_order_by));
    json_object_set_new(o, "has_predicate", json_boolean(c.has_predicate));
    json_object_set_new(o, "num_tables", json_integer(c.num_tables));
    json_object_set_new(o, "sql", json_string(sql ? sql : ""));
    json_object_set_new(o, "sql_hash", json_string(hash));
    json_object_set_new(o, "table_size", sim_res_str_or_null(table_size_override));
}

static json_t *sim_sq_tags_json(const char *tags)
{
    json_t *t = tags ? json_loads(tags, 0, NULL) : NULL;
    if (!json_is_array(t)) {
        json_decref(t);
        t = json_array();
    }
    return t;
}

static json_t *sim_sq_full_json(const struct sim_sq_row *q)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:s,s:o,s:s,s:o,s:o}", "created_at", q->created_at,
                          "description", q->description ? q->description : "", "id", q->id,
                          "latest_version", q->latest_version, "name", q->name, "tags",
                          sim_sq_tags_json(q->tags), "updated_at", q->updated_at,
                          "category_override", sim_res_str_or_null(q->category_override),
                          "table_size_override", sim_res_str_or_null(q->table_size_override));
    sim_sq_add_class(o, q->sql, q->category_override, q->table_size_override);
    return o;
}

/* Append version q->latest_version with q's current state. */
static int sim_sq_insert_version(struct sim_ws *ws, const struct sim_sq_row *q)
{
    char hash[65];
    util_sha256_hex(q->sql, strlen(q->sql), hash);
    sqlite3_stmt *st = sim_db_stmt(
        ws, "INSERT INTO res_saved_query_versions(saved_query_id, version, sql, sql_hash, name,"
            " description, tags, category_override, table_size_override, created_at)"
            " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, q->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, q->latest_version);
    sqlite3_bind_text(st, 3, q->sql, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, q->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 6, q->description ? q->description : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 7, q->tags ? q->tags : "[]", -1, SQLITE_TRANSIENT);
    if (q->category_override)
        sqlite3_bind_text(st, 8, q->category_override, -1, SQLITE_TRANSIENT);
    if (q->table_size_override)
        sqlite3_bind_text(st, 9, q->table_size_override, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 10, q->updated_at, -1, SQLITE_TRANSIENT);
    return sim_res_step_done(st) == SQLITE_DONE ? 0 : -1;
}

static int sim_sq_save(struct sim_ws *ws, const struct sim_sq_row *q, bool insert)
{
    sqlite3_stmt *st =
        sim_db_stmt(ws, insert ? "INSERT INTO res_saved_queries(id, name, description, tags,"
                                 " latest_version, category_override, table_size_override,"
                                 " created_at, updated_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)"
                               : "UPDATE res_saved_queries SET name = ?2, description = ?3,"
                                 " tags = ?4, latest_version = ?5, category_override = ?6,"
                                 " table_size_override = ?7, created_at = ?8, updated_at = ?9"
                                 " WHERE id = ?1");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, q->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, q->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, q->description ? q->description : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, q->tags ? q->tags : "[]", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 5, q->latest_version);
    if (q->category_override)
        sqlite3_bind_text(st, 6, q->category_override, -1, SQLITE_TRANSIENT);
    if (q->table_size_override)
        sqlite3_bind_text(st, 7, q->table_size_override, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 8, q->created_at, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 9, q->updated_at, -1, SQLITE_TRANSIENT);
    return sim_res_step_done(st) == SQLITE_DONE ? 0 : -1;
}

/* tags: absent/null -> *out NULL and 0; array of strings -> compact JSON text; else 400. */
static int sim_sq_body_tags(struct sim_req *req, char **out)
{
    *out = NULL;
    json_t *t = json_object_get(req->body, "tags");
    if (!t || json_is_null(t))
        return 0;
    size_t i;
    json_t *v;
    if (!json_is_array(t))
        goto bad;
    json_array_foreach(t, i, v) if (!json_is_string(v)) goto bad;
    *out = json_dumps(t, JSON_COMPACT);
    return 0;
bad:
    sim_reply_error(req, 400, "BAD_REQUEST", "Field 'tags' must be an array of strings");
    return -1;
}

static void sim_sq_create(struct sim_req *req)
{
    const char *name = NULL, *sql = NULL, *desc = NULL;
    bool has_desc = false;
    if (!json_is_object(req->body)) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Request body must be a JSON object");
        return;
    }
    if (sim_body_str(req, "name", true, &name, NULL) != 0 ||
        sim_body_str(req, "sql", true, &sql, NULL) != 0 ||
        sim_body_str(req, "description", false, &desc, &has_desc) != 0)
        return;
    if (!*name || !*sql) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Fields 'name' and 'sql' must not be empty");
        return;
    }
    char *tags = NULL;
    if (sim_sq_body_tags(req, &tags) != 0)
        return;
    struct sim_sq_row q = {0};
    char now[40];
    sim_id_new("svq", q.id);
    sim_now_rfc3339(now, false);
    q.name = strdup(name);
    q.sql = strdup(sql);
    q.description = strdup(has_desc ? desc : "");
    q.tags = tags ? tags : strdup("[]");
    q.created_at = strdup(now);
    q.updated_at = strdup(now);
    q.latest_version = 1;
    if (sim_sq_save(req->ws, &q, true) != 0 || sim_sq_insert_version(req->ws, &q) != 0) {
        sim_sq_row_free(&q);
        sim_res_reply_db_error(req);
        return;
    }
    sim_reply_json(req, 201, sim_sq_full_json(&q));
    sim_sq_row_free(&q);
}

static void sim_sq_list(struct sim_req *req)
{
    long limit, offset;
    if (sim_res_page(req, 100, &limit, &offset) != 0)
        return;
    sqlite3_stmt *st = sim_db_stmt(req->ws, "SELECT id, name, description, tags, latest_version,"
                                            " created_at, updated_at FROM res_saved_queries"
                                            " ORDER BY created_at, id LIMIT ?1 OFFSET ?2");
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
    sqlite3_bind_int64(st, 1, limit + 1);
    sqlite3_bind_int64(st, 2, offset);
    json_t *arr = json_array();
    bool more = false;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if ((long)json_array_size(arr) == limit) {
            more = true;
            break;
        }
        json_array_append_new(arr, json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "created_at",
                                             sim_res_col_json(st, 5), "description",
                                             sim_res_col_json(st, 2), "id", sim_res_col_json(st, 0),
                                             "latest_version", sim_res_col_json(st, 4), "name",
                                             sim_res_col_json(st, 1), "tags",
                                             sim_sq_tags_json(sim_res_col_text(st, 3)),
                                             "updated_at", sim_res_col_json(st, 6)));
    }
    sqlite3_reset(st);
    sim_reply_json(req, 200,
                   json_pack("{s:I,s:b,s:I,s:I,s:o}", "count", (json_int_t)json_array_size(arr),
                             "has_more", more, "limit", (json_int_t)limit, "offset",
                             (json_int_t)offset, "queries", arr));
}

static void sim_sq_get(struct sim_req *req)
{
    struct sim_sq_row q;
    if (sim_sq_load_or_404(req, &q) != 0)
        return;
    sim_reply_json(req, 200, sim_sq_full_json(&q));
    sim_sq_row_free(&q);
}

static int sim_sq_streq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

/* Replace *field with value (strdup) when different; returns 1 when it changed. */
static int sim_sq_set(char **field, const char *value)
{
    if (sim_sq_streq(*field, value))
        return 0;
    free(*field);
    *field = value ? strdup(value) : NULL;
    return 1;
}

static void sim_sq_update(struct sim_req *req)
{
    struct sim_sq_row q;
    if (sim_sq_load_or_404(req, &q) != 0)
        return;
    if (!json_is_object(req->body)) {
        sim_sq_row_free(&q);
        sim_reply_error(req, 400, "BAD_REQUEST", "Request body must be a JSON object");
        return;
    }
    const char *name = NULL, *sql = NULL, *desc = NULL, *cat = NULL, *size = NULL;
    bool has_name = false, has_sql = false, has_desc = false, has_cat = false, has_size = false;
    char *tags = NULL;
    if (sim_body_str(req, "name", false, &name, &has_name) != 0 ||
        sim_body_str(req, "sql", false, &sql, &has_sql) != 0 ||
        sim_body_str(req, "description", false, &desc, &has_desc) != 0 ||
        sim_body_str(req, "category_override", false, &cat, &has_cat) != 0 ||
        sim_body_str(req, "table_size_override", false, &size, &has_size) != 0 ||
        sim_sq_body_tags(req, &tags) != 0) {
        sim_sq_row_free(&q);
        return;
    }
    if ((has_name && !*name) || (has_sql && !*sql) || (has_cat && !*cat) || (has_size && !*size)) {
        free(tags);
        sim_sq_row_free(&q);
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "name, sql, category_override and table_size_override must not be "
                        "empty strings");
        return;
    }
    bool clear_cat = json_is_null(json_object_get(req->body, "category_override"));
    bool clear_size = json_is_null(json_object_get(req->body, "table_size_override"));
    int changed = 0;
    if (has_name)
        changed |= sim_sq_set(&q.name, name);
    if (has_sql)
        changed |= sim_sq_set(&q.sql, sql);
    if (has_desc)
        changed |= sim_sq_set(&q.description, desc);
    if (tags) {
        changed |= sim_sq_set(&q.tags, tags);
        free(tags);
    }
    if (has_cat || clear_cat)
        changed |= sim_sq_set(&q.category_override, has_cat ? cat : NULL);
    if (has_size || clear_size)
        changed |= sim_sq_set(&q.table_size_override, has_size ? size : NULL);
    if (changed) {
        char now[40];
        sim_now_rfc3339(now, false);
        free(q.updated_at);
        q.updated_at = strdup(now);
        q.latest_version++;
        if (sim_sq_insert_version(req->ws, &q) != 0 || sim_sq_save(req->ws, &q, false) != 0) {
            sim_sq_row_free(&q);
            sim_res_reply_db_error(req);
            return;
        }
    }
    sim_reply_json(req, 200, sim_sq_full_json(&q));
    sim_sq_row_free(&q);
}

static void sim_sq_delete(struct sim_req *req)
{
    struct sim_sq_row q;
    if (sim_sq_load_or_404(req, &q) != 0)
        return;
    int rc = sim_res_exec_id(
        req->ws, "DELETE FROM res_saved_query_versions WHERE saved_query_id = ?1", q.id);
    if (rc == SQLITE_DONE)
        rc = sim_res_exec_id(req->ws, "DELETE FROM res_saved_queries WHERE id = ?1", q.id);
    sim_sq_row_free(&q);
    sim_res_reply_done(req, rc);
}

static void sim_sq_versions(struct sim_req *req)
{
    struct sim_sq_row q;
    if (sim_sq_load_or_404(req, &q) != 0)
        return;
    long limit, offset;
    if (sim_res_page(req, 100, &limit, &offset) != 0) {
        sim_sq_row_free(&q);
        return;
    }
    sqlite3_stmt *st = sim_db_stmt(req->ws, "SELECT version, sql, category_override,"
                                            " table_size_override, created_at, name"
                                            " FROM res_saved_query_versions WHERE"
                                            " saved_query_id = ?1 ORDER BY version DESC"
                                            " LIMIT ?2 OFFSET ?3");
    if (!st) {
        sim_sq_row_free(&q);
        sim_res_reply_db_error(req);
        return;
    }
    sqlite3_bind_text(st, 1, q.id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, limit + 1);
    sqlite3_bind_int64(st, 3, offset);
    json_t *arr = json_array();
    bool more = false;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if ((long)json_array_size(arr) == limit) {
            more = true;
            break;
        }
        json_t *v = json_pack("{s:o,s:o,s:o}", "version", sim_res_col_json(st, 0), "created_at",
                              sim_res_col_json(st, 4), "name", sim_res_col_json(st, 5));
        sim_sq_add_class(v, sim_res_col_text(st, 1), sim_res_col_text(st, 2),
                         sim_res_col_text(st, 3));
        json_array_append_new(arr, v);
    }
    sqlite3_reset(st);
    sim_reply_json(req, 200,
                   json_pack("{s:I,s:b,s:I,s:I,s:s,s:o}", "count", (json_int_t)json_array_size(arr),
                             "has_more", more, "limit", (json_int_t)limit, "offset",
                             (json_int_t)offset, "saved_query_id", q.id, "versions", arr));
    sim_sq_row_free(&q);
}

/* POST /v1/queries/{id}/execute: body empty or {"version": N}. Without a version the latest
 * runs; with one, that version's SQL runs (as the official clients' ExecuteSavedQueryRequest
 * and runtimedb's execute_saved_query do), and a version the query never had is a 404. */
static void sim_sq_execute(struct sim_req *req)
{
    long long want = 0;
    bool has_version = false;
    if (sim_body_int(req, "version", false, &want, &has_version) != 0)
        return;
    struct sim_sq_row q;
    if (sim_sq_load_or_404(req, &q) != 0)
        return;
    char id[64];
    snprintf(id, sizeof id, "%s", q.id);
    int version = q.latest_version;
    char *sql = NULL;
    if (has_version) {
        sql = want >= 1 && want <= INT_MAX ? sim_saved_query_sql(req->ws, id, (int)want) : NULL;
        if (!sql) {
            sim_reply_error(req, 404, "NOT_FOUND", "Version %lld of saved query '%s' not found",
                            want, id);
            sim_sq_row_free(&q);
            return;
        }
        version = (int)want;
    } else {
        sql = q.sql;
        q.sql = NULL;
    }
    sim_sq_row_free(&q);
    sim_query_run_and_reply(req, sql, id, version);
    free(sql);
}

void sim_saved_queries_register(struct sim_router *r)
{
    sim_router_add_schema(r, sim_sq_schema);
    sim_route(r, "GET", "/v1/queries", sim_sq_list, SIM_ROUTE_DEFAULT);
    sim_route(r, "POST", "/v1/queries", sim_sq_create, SIM_ROUTE_DEFAULT);
    sim_route(r, "GET", "/v1/queries/{id}", sim_sq_get, SIM_ROUTE_DEFAULT);
    sim_route(r, "PUT", "/v1/queries/{id}", sim_sq_update, SIM_ROUTE_DEFAULT);
    sim_route(r, "DELETE", "/v1/queries/{id}", sim_sq_delete, SIM_ROUTE_DEFAULT);
    sim_route(r, "GET", "/v1/queries/{id}/versions", sim_sq_versions, SIM_ROUTE_DEFAULT);
    sim_route(r, "POST", "/v1/queries/{id}/execute", sim_sq_execute, SIM_ROUTE_DEFAULT);
}

/* ---- helpers for datasets (sim_res.h) ---- */

char *sim_saved_query_sql(struct sim_ws *ws, const char *id, int version)
{
    if (!id)
        return NULL;
    sqlite3_stmt *st =
        sim_db_stmt(ws, "SELECT v.sql FROM res_saved_query_versions v JOIN res_saved_queries q ON"
                        " q.id = v.saved_query_id WHERE v.saved_query_id = ?1 AND"
                        " v.version = CASE WHEN ?2 > 0 THEN ?2 ELSE q.latest_version END");
    if (!st)
        return NULL;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, version);
    char *sql = sqlite3_step(st) == SQLITE_ROW ? sim_res_col_dup(st, 0) : NULL;
    sqlite3_reset(st);
    return sql;
}

int sim_saved_query_create(struct sim_ws *ws, const char *name, const char *sql,
                           const char *description, char id_out[64])
{
    struct sim_sq_row q = {0};
    char now[40];
    sim_id_new("svq", q.id);
    sim_now_rfc3339(now, false);
    q.name = strdup(name);
    q.sql = strdup(sql);
    q.description = strdup(description ? description : "");
    q.tags = strdup("[]");
    q.created_at = strdup(now);
    q.updated_at = strdup(now);
    q.latest_version = 1;
    int rc = sim_sq_save(ws, &q, true) == 0 && sim_sq_insert_version(ws, &q) == 0 ? 0 : -1;
    snprintf(id_out, 64, "%s", q.id);
    sim_sq_row_free(&q);
    return rc;
}
