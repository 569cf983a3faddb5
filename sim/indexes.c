/*
 * indexes: /v1/connections/{id}/tables/{schema}/{table}/indexes of hotdata-sim. Index
 * metadata lives in res_indexes; a "sorted" index is also a real SQLite index on the table's
 * data, so it takes effect on queries. bm25 and vector indexes are metadata (their columns,
 * metric, embedding provider, generated column name) checked like the service checks them.
 *
 * Rules: 404 for an unknown connection/table/index; 400 for a bad body (columns missing or
 * not in the table, unknown index_type, metric on a non-vector index or outside
 * l2/cosine/dot, unknown embedding provider); 409 for a duplicate index name on the table.
 * async:true creates a `create_index` job (sim_job_create): the index is listed with status
 * "pending" at once and becomes "ready" when the job finishes; the job's result is the index
 * as GET .../indexes lists it (the API's IndexInfoResponse).
 */
#include "sim.h"
#include "sim_areas.h"
#include "sim_conn_tables.h"
#include "sim_embedding.h"
#include "sim_indexes.h"
#include "sim_jobs.h"
#include "sim_res.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char sim_idx_schema[] =
    "CREATE TABLE IF NOT EXISTS res_indexes ("
    " connection_id TEXT NOT NULL, schema_name TEXT NOT NULL COLLATE NOCASE,"
    " table_name TEXT NOT NULL COLLATE NOCASE, index_name TEXT NOT NULL COLLATE NOCASE,"
    " index_type TEXT NOT NULL, columns TEXT NOT NULL, metric TEXT, status TEXT NOT NULL,"
    " description TEXT, dimensions INTEGER, embedding_provider_id TEXT, output_column TEXT,"
    " sqlite_index TEXT, job_id TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
    " PRIMARY KEY (connection_id, schema_name, table_name, index_name));";

#define SIM_IDX_COLS                                                                               \
    "index_name, index_type, columns, metric, status, created_at, updated_at, description,"        \
    " dimensions, embedding_provider_id, output_column"

static json_t *sim_idx_row_json(sqlite3_stmt *st)
{
    const char *cols = sim_res_col_text(st, 2);
    json_t *c = cols ? json_loads(cols, 0, NULL) : NULL;
    json_t *o =
        json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "columns", c ? c : json_array(), "created_at",
                  sim_res_col_json(st, 5), "index_name", sim_res_col_json(st, 0), "index_type",
                  sim_res_col_json(st, 1), "metric", sim_res_col_json(st, 3), "status",
                  sim_res_col_json(st, 4), "updated_at", sim_res_col_json(st, 6));
    if (sqlite3_column_type(st, 1) == SQLITE_TEXT &&
        strcmp((const char *)sqlite3_column_text(st, 1), "vector") == 0) {
        json_object_set_new(o, "description", sim_res_col_json(st, 7));
        json_object_set_new(o, "dimensions", sim_res_col_json(st, 8));
        json_object_set_new(o, "embedding_provider_id", sim_res_col_json(st, 9));
        json_object_set_new(o, "output_column", sim_res_col_json(st, 10));
    }
    return o;
}

/* Resolve {connection_id}/{schema}/{table} to the SQLite table, or reply 404. */
static char *sim_idx_table_or_404(struct sim_req *req)
{
    const char *conn = sim_req_param(req, "connection_id");
    const char *schema = sim_req_param(req, "schema"), *table = sim_req_param(req, "table");
    char *phys = NULL;
    if (!sim_conn_table_sqlite(req->ws, conn, schema, table, &phys)) {
        sim_reply_error(req, 404, "NOT_FOUND", "Table '%s.%s' not found in connection '%s'", schema,
                        table, conn);
        return NULL;
    }
    return phys;
}

static void sim_idx_list(struct sim_req *req)
{
    char *phys = sim_idx_table_or_404(req);
    if (!phys)
        return;
    free(phys);
    sqlite3_stmt *st = sim_db_stmt(req->ws, "SELECT " SIM_IDX_COLS " FROM res_indexes WHERE"
                                            " connection_id = ?1 AND schema_name = ?2 AND"
                                            " table_name = ?3 ORDER BY created_at, index_name");
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
    sqlite3_bind_text(st, 1, sim_req_param(req, "connection_id"), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, sim_req_param(req, "schema"), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, sim_req_param(req, "table"), -1, SQLITE_TRANSIENT);
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, sim_idx_row_json(st));
    sqlite3_reset(st);
    sim_reply_json(req, 200, json_pack("{s:o}", "indexes", arr));
}

/* Build the real SQLite index of a sorted index. 0 on success. */
static int sim_idx_build_sqlite(sqlite3 *db, const char *sqlite_index, const char *phys,
                                json_t *columns)
{
    char *sql;
    size_t len;
    FILE *m = sim_res_sql_open(&sql, &len);
    fputs("CREATE INDEX IF NOT EXISTS ", m);
    sim_res_put_ident(m, sqlite_index);
    fputs(" ON ", m);
    sim_res_put_ident(m, phys);
    fputs(" (", m);
    size_t i;
    json_t *c;
    json_array_foreach(columns, i, c)
    {
        if (i)
            fputs(", ", m);
        sim_res_put_ident(m, json_string_value(c));
    }
    fputc(')', m);
    fclose(m);
    int rc = sim_db_exec(db, sql);
    free(sql);
    return rc;
}

/* Mark an index ready (building its SQLite index when sorted). 0 on success, -1 when the
 * index no longer exists or building failed. */
static int sim_idx_finish(struct sim_ws *ws, const char *conn, const char *schema,
                          const char *table, const char *name, char **error)
{
    sqlite3_stmt *st =
        sim_db_stmt(ws, "SELECT index_type, columns, sqlite_index FROM res_indexes WHERE"
                        " connection_id = ?1 AND schema_name = ?2 AND table_name = ?3 AND"
                        " index_name = ?4");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, conn, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, schema, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, table, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, name, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        if (error && asprintf(error, "Index '%s' no longer exists", name) < 0)
            *error = NULL;
        return -1;
    }
    char *type = strdup((const char *)sqlite3_column_text(st, 0));
    json_t *columns = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
    const char *si = sim_res_col_text(st, 2);
    char *sqlite_index = si ? strdup(si) : NULL;
    sqlite3_reset(st);
    int rc = 0;
    if (strcmp(type, "sorted") == 0 && sqlite_index) {
        char *phys = NULL;
        if (!sim_conn_table_sqlite(ws, conn, schema, table, &phys) ||
            sim_idx_build_sqlite(ws->db, sqlite_index, phys, columns) != 0) {
            rc = -1;
            if (error &&
                asprintf(error, "Building index '%s' failed: %s", name, sqlite3_errmsg(ws->db)) < 0)
                *error = NULL;
        }
        free(phys);
    }
    char now[40];
    sim_now_rfc3339(now, false);
    st = sim_db_stmt(ws, "UPDATE res_indexes SET status = ?5, updated_at = ?6 WHERE"
                         " connection_id = ?1 AND schema_name = ?2 AND table_name = ?3 AND"
                         " index_name = ?4");
    if (st) {
        sqlite3_bind_text(st, 1, conn, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, schema, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, table, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 5, rc == 0 ? "ready" : "failed", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, now, -1, SQLITE_TRANSIENT);
        sim_res_step_done(st);
    }
    free(type);
    free(sqlite_index);
    json_decref(columns);
    return rc;
}

static enum sim_job_status sim_idx_job(struct sim_ctx *ctx, struct sim_ws *ws, const char *job_id,
                                       json_t *args, json_t **result, char **error)
{
    const char *conn = json_string_value(json_object_get(args, "connection_id"));
    const char *schema = json_string_value(json_object_get(args, "schema"));
    const char *table = json_string_value(json_object_get(args, "table"));
    const char *name = json_string_value(json_object_get(args, "index_name"));
    if (!conn || !schema || !table || !name) {
        *error = strdup("malformed create_index job");
        return SIM_JOB_FAILED;
    }
    if (sim_idx_finish(ws, conn, schema, table, name, error) != 0)
        return SIM_JOB_FAILED;
    /* the result is the API's IndexInfoResponse: the index as GET .../indexes lists it */
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT " SIM_IDX_COLS " FROM res_indexes WHERE"
                                       " connection_id = ?1 AND schema_name = ?2 AND"
                                       " table_name = ?3 AND index_name = ?4");
    if (st) {
        sqlite3_bind_text(st, 1, conn, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, schema, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, table, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, name, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
            *result = sim_idx_row_json(st);
        sqlite3_reset(st);
    }
    if (!*result) {
        *error = strdup("index vanished while it was built");
        return SIM_JOB_FAILED;
    }
    return SIM_JOB_SUCCEEDED;
}

static int sim_idx_is_text(const char *decl)
{
    const char *t = sim_res_decl_type(decl);
    return strcmp(t, "Utf8") == 0;
}

static int sim_idx_is_vector_col(const char *decl)
{
    return decl && (strstr(decl, "[]") || strcasestr(decl, "VECTOR") || strcasestr(decl, "ARRAY"));
}

static void sim_idx_create(struct sim_req *req)
{
    char *phys = sim_idx_table_or_404(req);
    if (!phys)
        return;
    const char *conn = sim_req_param(req, "connection_id");
    const char *schema = sim_req_param(req, "schema"), *table = sim_req_param(req, "table");
    const char *name = NULL, *type = "sorted", *metric = NULL, *desc = NULL, *provider = NULL,
               *output = NULL;
    bool async = false, has_metric = false, has_provider = false, has_output = false,
         has_desc = false, has_dims = false;
    long long dims = 0;
    json_t *columns = json_is_object(req->body) ? json_object_get(req->body, "columns") : NULL;
    if (sim_body_str(req, "index_name", true, &name, NULL) != 0 ||
        sim_body_str(req, "index_type", false, &type, NULL) != 0 ||
        sim_body_str(req, "metric", false, &metric, &has_metric) != 0 ||
        sim_body_str(req, "description", false, &desc, &has_desc) != 0 ||
        sim_body_str(req, "embedding_provider_id", false, &provider, &has_provider) != 0 ||
        sim_body_str(req, "output_column", false, &output, &has_output) != 0 ||
        sim_body_int(req, "dimensions", false, &dims, &has_dims) != 0 ||
        sim_body_bool(req, "async", false, &async, NULL) != 0) {
        free(phys);
        return;
    }
#define IDX_FAIL(...)                                                                              \
    do {                                                                                           \
        sim_reply_error(req, 400, "BAD_REQUEST", __VA_ARGS__);                                     \
        free(phys);                                                                                \
        return;                                                                                    \
    } while (0)
    if (!sim_ds_valid_ident(name))
        IDX_FAIL("Invalid index_name '%s': letters, digits and _ only", name);
    if (strcmp(type, "sorted") != 0 && strcmp(type, "bm25") != 0 && strcmp(type, "vector") != 0)
        IDX_FAIL("Invalid index_type '%s': expected sorted, bm25 or vector", type);
    bool vector = strcmp(type, "vector") == 0;
    if (!columns || !json_is_array(columns) || json_array_size(columns) == 0)
        IDX_FAIL("Field 'columns' is required: a non-empty array of column names");
    if (has_metric && !vector)
        IDX_FAIL("metric applies to vector indexes only");
    if (has_metric && strcmp(metric, "l2") != 0 && strcmp(metric, "cosine") != 0 &&
        strcmp(metric, "dot") != 0)
        IDX_FAIL("Invalid metric '%s': expected l2, cosine or dot", metric);
    if ((has_provider || has_output || has_dims) && !vector)
        IDX_FAIL("embedding_provider_id, dimensions and output_column apply to vector "
                 "indexes only");
    if (has_dims && dims < 0)
        IDX_FAIL("dimensions must be >= 0");
    if (vector && json_array_size(columns) != 1)
        IDX_FAIL("A vector index takes exactly one column");
    if (has_provider && !sim_embedding_exists(req->ws, provider))
        IDX_FAIL("Embedding provider '%s' not found", provider);
    size_t i;
    json_t *c;
    json_array_foreach(columns, i, c)
    {
        if (!json_is_string(c))
            IDX_FAIL("Field 'columns' must hold column names (strings)");
        char *decl = NULL;
        if (!sim_res_table_has_column(req->db, phys, json_string_value(c), &decl))
            IDX_FAIL("Column '%s' not found in table '%s.%s'", json_string_value(c), schema, table);
        int text = sim_idx_is_text(decl), vec = sim_idx_is_vector_col(decl);
        free(decl);
        if (strcmp(type, "bm25") == 0 && !text)
            IDX_FAIL("bm25 indexes need text columns; '%s' is not text", json_string_value(c));
        if (vector && !vec && !has_provider)
            IDX_FAIL("Column '%s' is not a float array: a vector index on it needs "
                     "embedding_provider_id",
                     json_string_value(c));
        if (vector && has_provider && !text)
            IDX_FAIL("Auto-embedding needs a text column; '%s' is not text", json_string_value(c));
    }
    for (size_t a = 0; a < json_array_size(columns); a++)
        for (size_t b = a + 1; b < json_array_size(columns); b++)
            if (strcasecmp(json_string_value(json_array_get(columns, a)),
                           json_string_value(json_array_get(columns, b))) == 0)
                IDX_FAIL("Column '%s' listed twice", json_string_value(json_array_get(columns, a)));
#undef IDX_FAIL
    sqlite3_stmt *st = sim_db_stmt(req->ws, "SELECT 1 FROM res_indexes WHERE connection_id = ?1"
                                            " AND schema_name = ?2 AND table_name = ?3 AND"
                                            " index_name = ?4");
    int dup = 0;
    if (st) {
        sqlite3_bind_text(st, 1, conn, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, schema, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, table, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, name, -1, SQLITE_TRANSIENT);
        dup = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_reset(st);
    }
    if (dup) {
        free(phys);
        sim_reply_error(req, 409, "CONFLICT", "Index '%s' already exists on '%s.%s'", name, schema,
                        table);
        return;
    }
    if (vector && !has_metric)
        metric = has_provider ? "cosine" : "l2";
    char *out_col = NULL;
    if (vector && has_provider) {
        if (has_output)
            out_col = strdup(output);
        else if (asprintf(&out_col, "%s_embedding", json_string_value(json_array_get(columns, 0))) <
                 0)
            abort();
    }
    char sqlite_index[256], now[40];
    snprintf(sqlite_index, sizeof sqlite_index, "hgidx_%s_%s", phys, name);
    sim_now_rfc3339(now, false);
    char *cols_text = json_dumps(columns, JSON_COMPACT);
    st = sim_db_stmt(req->ws,
                     "INSERT INTO res_indexes(connection_id, schema_name, table_name, index_name,"
                     " index_type, columns, metric, status, description, dimensions,"
                     " embedding_provider_id, output_column, sqlite_index, created_at,"
                     " updated_at) VALUES (?1,?2,?3,?4,?5,?6,?7,'pending',?8,?9,?10,?11,?12,?13,"
                     "?13)");
    int rc = SQLITE_ERROR;
    if (st) {
        sqlite3_bind_text(st, 1, conn, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, schema, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, table, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 5, type, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 6, cols_text, -1, SQLITE_TRANSIENT);
        if (metric)
            sqlite3_bind_text(st, 7, metric, -1, SQLITE_TRANSIENT);
        if (has_desc)
            sqlite3_bind_text(st, 8, desc, -1, SQLITE_TRANSIENT);
        if (has_dims)
            sqlite3_bind_int64(st, 9, dims);
        if (has_provider)
            sqlite3_bind_text(st, 10, provider, -1, SQLITE_TRANSIENT);
        if (out_col)
            sqlite3_bind_text(st, 11, out_col, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 12, sqlite_index, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 13, now, -1, SQLITE_TRANSIENT);
        rc = sim_res_step_done(st);
    }
    free(cols_text);
    free(out_col);
    free(phys);
    if (rc != SQLITE_DONE) {
        sim_res_reply_db_error(req);
        return;
    }
    if (async) {
        char job[64];
        json_t *args = json_pack("{s:s,s:s,s:s,s:s}", "connection_id", conn, "schema", schema,
                                 "table", table, "index_name", name);
        if (sim_job_create(req->ctx, req->ws, "create_index", sim_idx_job, args, job) != 0) {
            sim_res_reply_db_error(req);
            return;
        }
        sqlite3_stmt *uj = sim_db_stmt(req->ws, "UPDATE res_indexes SET job_id = ?5 WHERE"
                                                " connection_id = ?1 AND schema_name = ?2 AND"
                                                " table_name = ?3 AND index_name = ?4");
        if (uj) {
            sqlite3_bind_text(uj, 1, conn, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(uj, 2, schema, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(uj, 3, table, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(uj, 4, name, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(uj, 5, job, -1, SQLITE_TRANSIENT);
            sim_res_step_done(uj);
        }
        sim_jobs_reply_accepted(req, job, "create_index");
        return;
    }
    char *err = NULL;
    if (sim_idx_finish(req->ws, conn, schema, table, name, &err) != 0) {
        sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "%s", err ? err : "index build failed");
        free(err);
        return;
    }
    st = sim_db_stmt(req->ws, "SELECT " SIM_IDX_COLS " FROM res_indexes WHERE connection_id = ?1"
                              " AND schema_name = ?2 AND table_name = ?3 AND index_name = ?4");
    json_t *o = NULL;
    if (st) {
        sqlite3_bind_text(st, 1, conn, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, schema, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, table, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, name, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
            o = sim_idx_row_json(st);
        sqlite3_reset(st);
    }
    if (!o) {
        sim_res_reply_db_error(req);
        return;
    }
    sim_reply_json(req, 201, o);
}

/* Prepare sql + the index filter (NULL filters match anything), bound. NULL on failure. */
static sqlite3_stmt *sim_idx_filtered(sqlite3 *db, const char *verb, const char *conn,
                                      const char *schema, const char *table, const char *name)
{
    char *sql;
    if (asprintf(&sql,
                 "%s FROM res_indexes WHERE connection_id = ?1 AND (?2 IS NULL OR schema_name ="
                 " ?2) AND (?3 IS NULL OR table_name = ?3) AND (?4 IS NULL OR index_name = ?4)",
                 verb) < 0)
        abort();
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    free(sql);
    if (rc != SQLITE_OK)
        return NULL;
    const char *vals[4] = {conn, schema, table, name};
    for (int k = 0; k < 4; k++)
        if (vals[k])
            sqlite3_bind_text(st, k + 1, vals[k], -1, SQLITE_TRANSIENT);
    return st;
}

/* Delete index rows (and their SQLite indexes) matching the filters; returns how many. */
static int sim_idx_delete_rows(struct sim_ws *ws, const char *conn, const char *schema,
                               const char *table, const char *name)
{
    sqlite3_stmt *st = sim_idx_filtered(ws->db, "SELECT sqlite_index", conn, schema, table, name);
    if (!st)
        return 0;
    /* collect first: DDL while the SELECT is open would fail with "table is locked" */
    json_t *drop = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(drop, sim_res_col_json(st, 0));
    sqlite3_finalize(st);
    int n = (int)json_array_size(drop);
    size_t i;
    json_t *v;
    json_array_foreach(drop, i, v)
    {
        if (!json_is_string(v))
            continue;
        char *sql;
        size_t len;
        FILE *m = sim_res_sql_open(&sql, &len);
        fputs("DROP INDEX IF EXISTS ", m);
        sim_res_put_ident(m, json_string_value(v));
        fclose(m);
        sim_db_exec(ws->db, sql);
        free(sql);
    }
    json_decref(drop);
    st = sim_idx_filtered(ws->db, "DELETE", conn, schema, table, name);
    if (st) {
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    return n;
}

static void sim_idx_delete(struct sim_req *req)
{
    char *phys = sim_idx_table_or_404(req);
    if (!phys)
        return;
    free(phys);
    const char *name = sim_req_param(req, "index_name");
    if (sim_idx_delete_rows(req->ws, sim_req_param(req, "connection_id"),
                            sim_req_param(req, "schema"), sim_req_param(req, "table"), name) == 0) {
        sim_reply_error(req, 404, "NOT_FOUND", "Index '%s' not found", name);
        return;
    }
    sim_reply_empty(req, 204);
}

void sim_indexes_drop_for(struct sim_ws *ws, const char *conn_id, const char *schema,
                          const char *table)
{
    sim_idx_delete_rows(ws, conn_id, schema, table, NULL);
}

void sim_indexes_register(struct sim_router *r)
{
    sim_router_add_schema(r, sim_idx_schema);
    sim_route(r, "GET", "/v1/connections/{connection_id}/tables/{schema}/{table}/indexes",
              sim_idx_list, SIM_ROUTE_DEFAULT);
    sim_route(r, "POST", "/v1/connections/{connection_id}/tables/{schema}/{table}/indexes",
              sim_idx_create, SIM_ROUTE_DEFAULT);
    sim_route(r, "DELETE",
              "/v1/connections/{connection_id}/tables/{schema}/{table}/indexes/{index_name}",
              sim_idx_delete, SIM_ROUTE_DEFAULT);
}
