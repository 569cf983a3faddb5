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

/* The cached statement sql with an index's key bound: ?1 connection, ?2 schema, ?3 table,
 * ?4 index name (not bound when name is NULL). NULL when it does not prepare. */
static sqlite3_stmt *sim_idx_key_stmt(struct sim_ws *ws, const char *sql, const char *conn,
                                      const char *schema, const char *table, const char *name)
{
    sqlite3_stmt *st = sim_db_stmt(ws, sql);
    if (!st)
        return NULL;
    sqlite3_bind_text(st, 1, conn, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, schema, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, table, -1, SQLITE_TRANSIENT);
    if (name)
        sqlite3_bind_text(st, 4, name, -1, SQLITE_TRANSIENT);
    return st;
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
    sqlite3_stmt *st = sim_idx_key_stmt(
        req->ws,
        "SELECT " SIM_IDX_COLS " FROM res_indexes WHERE connection_id = ?1 AND schema_name = ?2"
        " AND table_name = ?3 ORDER BY created_at, index_name",
        sim_req_param(req, "connection_id"), sim_req_param(req, "schema"),
        sim_req_param(req, "table"), NULL);
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
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
    sqlite3_stmt *st = sim_idx_key_stmt(ws,
                                        "SELECT index_type, columns, sqlite_index FROM res_indexes"
                                        " WHERE connection_id = ?1 AND schema_name = ?2 AND"
                                        " table_name = ?3 AND index_name = ?4",
                                        conn, schema, table, name);
    if (!st)
        return -1;
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
    st = sim_idx_key_stmt(ws,
                          "UPDATE res_indexes SET status = ?5, updated_at = ?6 WHERE"
                          " connection_id = ?1 AND schema_name = ?2 AND table_name = ?3 AND"
                          " index_name = ?4",
                          conn, schema, table, name);
    if (st) {
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
    sqlite3_stmt *st = sim_idx_key_stmt(ws,
                                        "SELECT " SIM_IDX_COLS " FROM res_indexes WHERE"
                                        " connection_id = ?1 AND schema_name = ?2 AND"
                                        " table_name = ?3 AND index_name = ?4",
                                        conn, schema, table, name);
    if (st) {
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

/* A POST .../indexes body and the index it names. */
struct sim_idx_spec {
    const char *conn, *schema, *table; /* path parameters */
    const char *name, *type, *metric, *desc, *provider, *output;
    bool async, has_metric, has_provider, has_output, has_desc, has_dims, vector;
    long long dims;
    json_t *columns;
};

/* The body's fields (400 and -1 on a wrong type or a missing index_name). */
static int sim_idx_read_body(struct sim_req *req, struct sim_idx_spec *x)
{
    memset(x, 0, sizeof *x);
    x->conn = sim_req_param(req, "connection_id");
    x->schema = sim_req_param(req, "schema");
    x->table = sim_req_param(req, "table");
    x->type = "sorted";
    x->columns = json_is_object(req->body) ? json_object_get(req->body, "columns") : NULL;
    if (sim_body_str(req, "index_name", true, &x->name, NULL) != 0 ||
        sim_body_str(req, "index_type", false, &x->type, NULL) != 0 ||
        sim_body_str(req, "metric", false, &x->metric, &x->has_metric) != 0 ||
        sim_body_str(req, "description", false, &x->desc, &x->has_desc) != 0 ||
        sim_body_str(req, "embedding_provider_id", false, &x->provider, &x->has_provider) != 0 ||
        sim_body_str(req, "output_column", false, &x->output, &x->has_output) != 0 ||
        sim_body_int(req, "dimensions", false, &x->dims, &x->has_dims) != 0 ||
        sim_body_bool(req, "async", false, &x->async, NULL) != 0)
        return -1;
    x->vector = strcmp(x->type, "vector") == 0;
    return 0;
}

/* The index's own fields: NULL when fine, else the 400 message (in err). */
static const char *sim_idx_check_fields(struct sim_ws *ws, const struct sim_idx_spec *x, char *err,
                                        size_t n)
{
    if (!sim_ds_valid_ident(x->name))
        snprintf(err, n, "Invalid index_name '%s': letters, digits and _ only", x->name);
    else if (strcmp(x->type, "sorted") != 0 && strcmp(x->type, "bm25") != 0 && !x->vector)
        snprintf(err, n, "Invalid index_type '%s': expected sorted, bm25 or vector", x->type);
    else if (!x->columns || !json_is_array(x->columns) || json_array_size(x->columns) == 0)
        snprintf(err, n, "Field 'columns' is required: a non-empty array of column names");
    else if (x->has_metric && !x->vector)
        snprintf(err, n, "metric applies to vector indexes only");
    else if (x->has_metric && strcmp(x->metric, "l2") != 0 && strcmp(x->metric, "cosine") != 0 &&
             strcmp(x->metric, "dot") != 0)
        snprintf(err, n, "Invalid metric '%s': expected l2, cosine or dot", x->metric);
    else if ((x->has_provider || x->has_output || x->has_dims) && !x->vector)
        snprintf(err, n,
                 "embedding_provider_id, dimensions and output_column apply to vector "
                 "indexes only");
    else if (x->has_dims && x->dims < 0)
        snprintf(err, n, "dimensions must be >= 0");
    else if (x->vector && json_array_size(x->columns) != 1)
        snprintf(err, n, "A vector index takes exactly one column");
    else if (x->has_provider && !sim_embedding_exists(ws, x->provider))
        snprintf(err, n, "Embedding provider '%s' not found", x->provider);
    else
        return NULL;
    return err;
}

/* One column of the index against the table phys: NULL when fine, else the 400 message. */
static const char *sim_idx_check_column(sqlite3 *db, const struct sim_idx_spec *x, const char *phys,
                                        json_t *c, char *err, size_t n)
{
    if (!json_is_string(c)) {
        snprintf(err, n, "Field 'columns' must hold column names (strings)");
        return err;
    }
    const char *col = json_string_value(c);
    char *decl = NULL;
    if (!sim_res_table_has_column(db, phys, col, &decl)) {
        snprintf(err, n, "Column '%s' not found in table '%s.%s'", col, x->schema, x->table);
        return err;
    }
    int text = sim_idx_is_text(decl), vec = sim_idx_is_vector_col(decl);
    free(decl);
    if (strcmp(x->type, "bm25") == 0 && !text)
        snprintf(err, n, "bm25 indexes need text columns; '%s' is not text", col);
    else if (x->vector && !vec && !x->has_provider)
        snprintf(err, n,
                 "Column '%s' is not a float array: a vector index on it needs "
                 "embedding_provider_id",
                 col);
    else if (x->vector && x->has_provider && !text)
        snprintf(err, n, "Auto-embedding needs a text column; '%s' is not text", col);
    else
        return NULL;
    return err;
}

/* Every column, then no column twice: NULL when fine, else the 400 message. */
static const char *sim_idx_check_columns(sqlite3 *db, const struct sim_idx_spec *x,
                                         const char *phys, char *err, size_t n)
{
    size_t i;
    json_t *c;
    json_array_foreach(x->columns, i, c)
    {
        if (sim_idx_check_column(db, x, phys, c, err, n))
            return err;
    }
    size_t nc = json_array_size(x->columns);
    for (size_t a = 0; a < nc; a++)
        for (size_t b = a + 1; b < nc; b++)
            if (strcasecmp(json_string_value(json_array_get(x->columns, a)),
                           json_string_value(json_array_get(x->columns, b))) == 0) {
                snprintf(err, n, "Column '%s' listed twice",
                         json_string_value(json_array_get(x->columns, a)));
                return err;
            }
    return NULL;
}

/* 1 when the table already has an index of this name. */
static int sim_idx_exists(struct sim_ws *ws, const struct sim_idx_spec *x)
{
    sqlite3_stmt *st = sim_idx_key_stmt(ws,
                                        "SELECT 1 FROM res_indexes WHERE connection_id = ?1"
                                        " AND schema_name = ?2 AND table_name = ?3 AND"
                                        " index_name = ?4",
                                        x->conn, x->schema, x->table, x->name);
    int dup = 0;
    if (st) {
        dup = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_reset(st);
    }
    return dup;
}

/* The res_indexes row of a new index, status pending: SQLITE_DONE or the error. */
static int sim_idx_insert(struct sim_ws *ws, const struct sim_idx_spec *x, const char *phys)
{
    const char *metric = x->metric;
    if (x->vector && !x->has_metric)
        metric = x->has_provider ? "cosine" : "l2";
    char *out_col = NULL;
    if (x->vector && x->has_provider) {
        if (x->has_output)
            out_col = strdup(x->output);
        else if (asprintf(&out_col, "%s_embedding",
                          json_string_value(json_array_get(x->columns, 0))) < 0)
            abort();
    }
    char sqlite_index[256], now[40];
    snprintf(sqlite_index, sizeof sqlite_index, "hgidx_%s_%s", phys, x->name);
    sim_now_rfc3339(now, false);
    char *cols_text = json_dumps(x->columns, JSON_COMPACT);
    sqlite3_stmt *st = sim_idx_key_stmt(
        ws,
        "INSERT INTO res_indexes(connection_id, schema_name, table_name, index_name,"
        " index_type, columns, metric, status, description, dimensions,"
        " embedding_provider_id, output_column, sqlite_index, created_at,"
        " updated_at) VALUES (?1,?2,?3,?4,?5,?6,?7,'pending',?8,?9,?10,?11,?12,?13,?13)",
        x->conn, x->schema, x->table, x->name);
    int rc = SQLITE_ERROR;
    if (st) {
        sqlite3_bind_text(st, 5, x->type, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 6, cols_text, -1, SQLITE_TRANSIENT);
        if (metric)
            sqlite3_bind_text(st, 7, metric, -1, SQLITE_TRANSIENT);
        if (x->has_desc)
            sqlite3_bind_text(st, 8, x->desc, -1, SQLITE_TRANSIENT);
        if (x->has_dims)
            sqlite3_bind_int64(st, 9, x->dims);
        if (x->has_provider)
            sqlite3_bind_text(st, 10, x->provider, -1, SQLITE_TRANSIENT);
        if (out_col)
            sqlite3_bind_text(st, 11, out_col, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 12, sqlite_index, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 13, now, -1, SQLITE_TRANSIENT);
        rc = sim_res_step_done(st);
    }
    free(cols_text);
    free(out_col);
    return rc;
}

/* async: a create_index job finishes the index; answer 202. */
static void sim_idx_reply_job(struct sim_req *req, const struct sim_idx_spec *x)
{
    char job[64];
    json_t *args = json_pack("{s:s,s:s,s:s,s:s}", "connection_id", x->conn, "schema", x->schema,
                             "table", x->table, "index_name", x->name);
    if (sim_job_create(req->ctx, req->ws, "create_index", sim_idx_job, args, job) != 0) {
        sim_res_reply_db_error(req);
        return;
    }
    sqlite3_stmt *uj = sim_idx_key_stmt(req->ws,
                                        "UPDATE res_indexes SET job_id = ?5 WHERE"
                                        " connection_id = ?1 AND schema_name = ?2 AND"
                                        " table_name = ?3 AND index_name = ?4",
                                        x->conn, x->schema, x->table, x->name);
    if (uj) {
        sqlite3_bind_text(uj, 5, job, -1, SQLITE_TRANSIENT);
        sim_res_step_done(uj);
    }
    sim_jobs_reply_accepted(req, job, "create_index");
}

/* sync: finish the index now and answer 201 with it. */
static void sim_idx_reply_ready(struct sim_req *req, const struct sim_idx_spec *x)
{
    char *err = NULL;
    if (sim_idx_finish(req->ws, x->conn, x->schema, x->table, x->name, &err) != 0) {
        sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "%s", err ? err : "index build failed");
        free(err);
        return;
    }
    sqlite3_stmt *st = sim_idx_key_stmt(req->ws,
                                        "SELECT " SIM_IDX_COLS " FROM res_indexes WHERE"
                                        " connection_id = ?1 AND schema_name = ?2 AND"
                                        " table_name = ?3 AND index_name = ?4",
                                        x->conn, x->schema, x->table, x->name);
    json_t *o = NULL;
    if (st) {
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

static void sim_idx_create(struct sim_req *req)
{
    char *phys = sim_idx_table_or_404(req);
    if (!phys)
        return;
    struct sim_idx_spec x;
    char err[1024];
    const char *bad = NULL;
    if (sim_idx_read_body(req, &x) != 0) {
        free(phys);
        return;
    }
    if ((bad = sim_idx_check_fields(req->ws, &x, err, sizeof err)) ||
        (bad = sim_idx_check_columns(req->db, &x, phys, err, sizeof err))) {
        sim_reply_error(req, 400, "BAD_REQUEST", "%s", bad);
        free(phys);
        return;
    }
    if (sim_idx_exists(req->ws, &x)) {
        free(phys);
        sim_reply_error(req, 409, "CONFLICT", "Index '%s' already exists on '%s.%s'", x.name,
                        x.schema, x.table);
        return;
    }
    int rc = sim_idx_insert(req->ws, &x, phys);
    free(phys);
    if (rc != SQLITE_DONE)
        sim_res_reply_db_error(req);
    else if (x.async)
        sim_idx_reply_job(req, &x);
    else
        sim_idx_reply_ready(req, &x);
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
