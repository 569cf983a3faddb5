/*
 * res_common: small helpers shared by the simulator's resource areas (see sim_res.h):
 * SQLite row -> JSON, paging parameters, identifier quoting, SQLite declared type -> API
 * data type, table column introspection.
 *
 * Rules: loop thread only (like everything in sim/); no state of its own.
 */
#include "sim.h"
#include "sim_res.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

json_t *sim_res_col_json(sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(st, i));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(st, i));
    case SQLITE_NULL:
        return json_null();
    default: {
        const char *t = (const char *)sqlite3_column_text(st, i);
        json_t *v = json_stringn(t ? t : "", (size_t)sqlite3_column_bytes(st, i));
        return v ? v : json_string("");
    }
    }
}

const char *sim_res_col_text(sqlite3_stmt *st, int i)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return NULL;
    return (const char *)sqlite3_column_text(st, i);
}

char *sim_res_col_dup(sqlite3_stmt *st, int i)
{
    const char *t = sim_res_col_text(st, i);
    char *d = t ? strdup(t) : NULL;
    if (t && !d)
        abort();
    return d;
}

json_t *sim_res_str_or_null(const char *s)
{
    json_t *v = s ? json_string(s) : NULL;
    return v ? v : json_null();
}

int sim_res_query_limit(struct sim_req *req, long def, long *limit)
{
    const char *v = sim_req_query(req, "limit");
    if (!v || !*v) {
        *limit = def;
        return 0;
    }
    const char *p = v;
    bool negative = *p == '-';
    if (*p == '+' || *p == '-')
        p++;
    bool digits = *p != '\0';
    for (const char *q = p; *q; q++)
        digits = digits && isdigit((unsigned char)*q);
    if (!digits) { /* a sign, letters, a fraction: not a page size */
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid query parameter 'limit': expected an integer");
        return -1;
    }
    while (*p == '0' && p[1])
        p++;
    if (negative && strcmp(p, "0") != 0) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid query parameter 'limit': must be at least 1");
        return -1;
    }
    /* compare by length first: a limit of any length above the max is clamped, no overflow */
    if (strlen(p) > 18) {
        *limit = SIM_LIST_MAX_LIMIT;
        return 0;
    }
    long long n = strtoll(p, NULL, 10);
    if (n < 1) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid query parameter 'limit': must be at least 1");
        return -1;
    }
    *limit = n > SIM_LIST_MAX_LIMIT ? SIM_LIST_MAX_LIMIT : (long)n;
    return 0;
}

int sim_res_page(struct sim_req *req, long def, long *limit, long *offset)
{
    if (sim_res_query_limit(req, def, limit) != 0)
        return -1;
    if (sim_req_query_int(req, "offset", 0, 0, 1000000000L, offset) != 0)
        return -1;
    return 0;
}

char *sim_res_quote_ident(const char *name)
{
    size_t n = strlen(name), q = 0;
    for (size_t i = 0; i < n; i++)
        q += name[i] == '"';
    char *out = malloc(n + q + 3);
    if (!out)
        abort();
    char *o = out;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (name[i] == '"')
            *o++ = '"';
        *o++ = name[i];
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

FILE *sim_res_sql_open(char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *m = open_memstream(buf, len);
    if (!m)
        abort();
    return m;
}

void sim_res_put_ident(FILE *m, const char *name)
{
    fputc('"', m);
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            fputc('"', m);
        fputc(*p, m);
    }
    fputc('"', m);
}

void sim_res_drop_listed(sqlite3 *db, const char *what, const char *select_sql, const char *key)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, select_sql, -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    /* collect first: DDL while the SELECT is open would disturb it */
    json_t *names = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        if (sqlite3_column_type(st, 0) == SQLITE_TEXT)
            json_array_append_new(names, sim_res_col_json(st, 0));
    sqlite3_finalize(st);
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n)
    {
        char *sql;
        size_t len;
        FILE *m = sim_res_sql_open(&sql, &len);
        fprintf(m, "DROP %s IF EXISTS ", what);
        sim_res_put_ident(m, json_string_value(n));
        fclose(m);
        sim_db_exec(db, sql);
        free(sql);
    }
    json_decref(names);
}

const char *sim_res_decl_type(const char *decl)
{
    if (!decl || !*decl)
        return "Utf8";
    if (strcasestr(decl, "BOOL"))
        return "Boolean";
    if (strcasestr(decl, "TIMESTAMP") || strcasestr(decl, "DATETIME"))
        return "Timestamp(Microsecond, None)";
    if (strcasestr(decl, "DATE"))
        return "Date32";
    if (strcasestr(decl, "INT"))
        return "Int64";
    if (strcasestr(decl, "REAL") || strcasestr(decl, "FLOA") || strcasestr(decl, "DOUB") ||
        strcasestr(decl, "NUMERIC") || strcasestr(decl, "DECIMAL"))
        return "Float64";
    if (strcasestr(decl, "BLOB"))
        return "Binary";
    return "Utf8";
}

json_t *sim_res_table_columns(sqlite3 *db, const char *sqlite_table)
{
    sqlite3_stmt *st = NULL;
    /* table_xinfo via the pragma function form, so the name is a bound parameter */
    if (sqlite3_prepare_v2(db, "SELECT name, type, \"notnull\" FROM pragma_table_info(?1)", -1, &st,
                           NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(st, 1, sqlite_table, -1, SQLITE_TRANSIENT);
    json_t *cols = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *name = sim_res_col_text(st, 0);
        const char *decl = sim_res_col_text(st, 1);
        json_array_append_new(cols, json_pack("{s:s,s:s,s:b}", "name", name ? name : "",
                                              "data_type", sim_res_decl_type(decl), "nullable",
                                              sqlite3_column_int(st, 2) == 0));
    }
    sqlite3_finalize(st);
    if (json_array_size(cols) == 0) {
        json_decref(cols);
        return NULL;
    }
    return cols;
}

int sim_res_table_has_column(sqlite3 *db, const char *sqlite_table, const char *col, char **decl)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT type FROM pragma_table_info(?1) WHERE name = ?2 COLLATE NOCASE",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(st, 1, sqlite_table, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, col, -1, SQLITE_TRANSIENT);
    int found = sqlite3_step(st) == SQLITE_ROW;
    if (found && decl) {
        const char *t = sim_res_col_text(st, 0);
        *decl = strdup(t ? t : "");
    }
    sqlite3_finalize(st);
    return found;
}

int sim_res_query_bool(struct sim_req *req, const char *name, bool def, bool *out)
{
    const char *v = sim_req_query(req, name);
    if (!v) {
        *out = def;
        return 0;
    }
    if (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0) {
        *out = true;
        return 0;
    }
    if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0) {
        *out = false;
        return 0;
    }
    sim_reply_error(req, 400, "BAD_REQUEST", "Query parameter '%s' must be true or false", name);
    return -1;
}

int sim_res_step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc;
}

void sim_res_reply_db_error(struct sim_req *req)
{
    sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "Database error: %s",
                    req->db ? sqlite3_errmsg(req->db) : "no workspace database");
}

void sim_res_reply_row(struct sim_req *req, const char *sql, const char *id,
                       json_t *(*row)(sqlite3_stmt *st), const char *what)
{
    sqlite3_stmt *st = sim_db_stmt(req->ws, sql);
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        sim_reply_error(req, 404, "NOT_FOUND", "%s '%s' not found", what, id);
        return;
    }
    json_t *o = row(st);
    sqlite3_reset(st);
    sim_reply_json(req, 200, o);
}

int sim_res_exec_id(struct sim_ws *ws, const char *sql, const char *id)
{
    sqlite3_stmt *st = sim_db_stmt(ws, sql);
    if (!st)
        return SQLITE_ERROR;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    return sim_res_step_done(st);
}

void sim_res_reply_done(struct sim_req *req, int rc)
{
    if (rc != SQLITE_DONE)
        sim_res_reply_db_error(req);
    else
        sim_reply_empty(req, 204);
}
