/*
 * datasets: /v1/datasets of hotdata-sim. A dataset is a user-managed table built from an
 * upload (CSV with a header row, read record by record; or JSON, up to 256 MiB: an array of
 * objects or one object per line) or from inline data, queryable as
 * datasets.<schema_name>.<table_name> through the framework's table registry. Every load of
 * data (create, PUT with a new "source", POST /v1/refresh with dataset_id) is a new version
 * with its own SQLite table; the registry points at the pinned version when one is pinned,
 * else at the latest.
 *
 * Accepted `source` shapes (anything else is 400), the service's tagged forms first:
 *   {"type": "upload", "upload_id": "upl_...", "format": "csv" | "json",
 *    "columns": {"name": "Int64", ...}}          format optional: from the content type / bytes
 *   {"type": "inline", "inline": {"format": "csv" | "json", "content": "a,b\n1,x\n",
 *                                 "columns": {...}}}
 *   {"type": "sql_query", "sql": "SELECT ...", "name": ..., "description": ...}
 *                                                 result materialised; auto-creates a saved query
 *   {"type": "saved_query", "saved_query_id": "svq_...", "version": N}   version optional
 *   {"inline": {"columns": ["a", {"name": "b", "data_type": "Int64"}], "rows": [[1, 2], ...]}}
 *   {"inline": {"rows": [{"a": 1, "b": "x"}, ...]}}          columns from the keys, in order
 * "type" may be omitted for upload/inline; the inline object may also be the source itself.
 * "columns" as an object declares types ({name: type spec}) instead of inferring them; values
 * that do not fit are a 400. {"type": "url"} is a 400 (no network). Inferred types: Int64,
 * Float64, Boolean, Utf8.
 *
 * Rules: label unique (409) and (schema_name, table_name) unique (409); table_name derived
 * from the label by sim_ds_table_name_from_label unless given (must be an identifier, 400);
 * pinned_version: omitted = unchanged, null = unpin, N = pin to an existing version (400
 * otherwise). Parsing never crashes on bad input: malformed data is a 400 with the reason.
 */
#include "sim.h"
#include "sim_areas.h"
#include "sim_databases.h"
#include "sim_datasets.h"
#include "sim_jobs.h"
#include "sim_res.h"
#include "sim_saved_queries.h"
#include "sim_sqlrewrite.h"
#include "sim_uploads.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define SIM_DS_SCHEMA "main"
#define SIM_DS_MAX_COLS 1000
#define SIM_DS_MAX_JSON (256 << 20)

static const char sim_ds_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS res_datasets ("
    " id TEXT PRIMARY KEY, label TEXT NOT NULL UNIQUE, schema_name TEXT NOT NULL COLLATE NOCASE,"
    " table_name TEXT NOT NULL COLLATE NOCASE, source_type TEXT NOT NULL, source TEXT NOT NULL,"
    " latest_version INTEGER NOT NULL, pinned_version INTEGER, created_at TEXT NOT NULL,"
    " updated_at TEXT NOT NULL, UNIQUE (schema_name, table_name));"
    "CREATE TABLE IF NOT EXISTS res_dataset_versions ("
    " dataset_id TEXT NOT NULL, version INTEGER NOT NULL, id TEXT NOT NULL,"
    " source_type TEXT NOT NULL, sqlite_table TEXT NOT NULL, row_count INTEGER NOT NULL,"
    " created_at TEXT NOT NULL, PRIMARY KEY (dataset_id, version));";

/* ------------------------------------------------------------------------------------ */
/* Loading tabular data into a new SQLite table                                          */

struct sim_ds_cols {
    size_t n;
    char **names;
    enum sim_ds_type *types;
    int *declared; /* type given by the client: values must fit it */
    int *nulls;
    json_t *decl_map; /* borrowed: source "columns" object {name: type spec}, or NULL */
};

static void sim_ds_cols_free(struct sim_ds_cols *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->names[i]);
    free(c->names);
    free(c->types);
    free(c->declared);
    free(c->nulls);
    memset(c, 0, sizeof *c);
}

static ssize_t sim_ds_cols_find(const struct sim_ds_cols *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcasecmp(c->names[i], name) == 0)
            return (ssize_t)i;
    return -1;
}

static int sim_ds_parse_declared_type(const char *s, enum sim_ds_type *out);

/* Apply the declared {name: type} map once the column names are known: those columns take
 * the declared type instead of an inferred one. A name not in the data is an error. */
static int sim_ds_cols_declare(struct sim_ds_cols *c, char **err)
{
    const char *key;
    json_t *v;
    json_object_foreach(c->decl_map, key, v)
    {
        ssize_t i = sim_ds_cols_find(c, key);
        if (i < 0)
            return asprintf(err, "Declared column '%s' is not in the data", key), -1;
        enum sim_ds_type t;
        if (!json_is_string(v) || sim_ds_parse_declared_type(json_string_value(v), &t) != 0)
            return asprintf(err, "Unsupported type for declared column '%s'", key), -1;
        c->types[i] = t;
        c->declared[i] = 1;
    }
    return 0;
}

/* Does a textual (CSV) value fit a declared column type? */
static int sim_ds_text_fits(const char *v, enum sim_ds_type t)
{
    enum sim_ds_type vt = sim_ds_value_type(v);
    switch (t) {
    case SIM_DS_INT:
        return vt == SIM_DS_NULL || vt == SIM_DS_INT;
    case SIM_DS_FLOAT:
        return vt == SIM_DS_NULL || vt == SIM_DS_INT || vt == SIM_DS_FLOAT;
    case SIM_DS_BOOL:
        return vt == SIM_DS_NULL || vt == SIM_DS_BOOL;
    default:
        return 1;
    }
}

static void sim_ds_cols_add(struct sim_ds_cols *c, const char *name)
{
    c->names = realloc(c->names, (c->n + 1) * sizeof *c->names);
    c->types = realloc(c->types, (c->n + 1) * sizeof *c->types);
    c->declared = realloc(c->declared, (c->n + 1) * sizeof *c->declared);
    c->nulls = realloc(c->nulls, (c->n + 1) * sizeof *c->nulls);
    if (!c->names || !c->types || !c->declared || !c->nulls)
        abort();
    c->names[c->n] = strdup(name);
    c->types[c->n] = SIM_DS_NULL;
    c->declared[c->n] = 0;
    c->nulls[c->n] = 0;
    c->n++;
}

/* Names: non-empty (else column_<i>), unique case-insensitively. 0 or -1 with *err. */
static int sim_ds_cols_check(struct sim_ds_cols *c, char **err)
{
    if (c->n == 0)
        return asprintf(err, "No columns found"), -1;
    if (c->n > SIM_DS_MAX_COLS)
        return asprintf(err, "Too many columns (%zu, max %d)", c->n, SIM_DS_MAX_COLS), -1;
    for (size_t i = 0; i < c->n; i++) {
        if (!*c->names[i]) {
            free(c->names[i]);
            if (asprintf(&c->names[i], "column_%zu", i + 1) < 0)
                abort();
        }
    }
    for (size_t i = 0; i < c->n; i++)
        for (size_t j = i + 1; j < c->n; j++)
            if (strcasecmp(c->names[i], c->names[j]) == 0)
                return asprintf(err, "Duplicate column name '%s'", c->names[i]), -1;
    return 0;
}

static const char *sim_ds_sqlite_type(enum sim_ds_type t)
{
    switch (t) {
    case SIM_DS_INT:
        return "INTEGER";
    case SIM_DS_FLOAT:
        return "DOUBLE";
    case SIM_DS_BOOL:
        return "BOOLEAN";
    default:
        return "TEXT";
    }
}

/* CREATE TABLE phys with the inferred types; NOT NULL where no value was null. */
static int sim_ds_create_table(sqlite3 *db, const char *phys, const struct sim_ds_cols *c,
                               char **err)
{
    char *sql;
    size_t len;
    FILE *m = sim_res_sql_open(&sql, &len);
    fputs("DROP TABLE IF EXISTS ", m);
    sim_res_put_ident(m, phys);
    fputs("; CREATE TABLE ", m);
    sim_res_put_ident(m, phys);
    fputs(" (", m);
    for (size_t i = 0; i < c->n; i++) {
        if (i)
            fputs(", ", m);
        sim_res_put_ident(m, c->names[i]);
        fprintf(m, " %s%s", sim_ds_sqlite_type(c->types[i]), c->nulls[i] ? "" : " NOT NULL");
    }
    fputs(");", m);
    fclose(m);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    free(sql);
    if (rc != SQLITE_OK) {
        if (asprintf(err, "Creating the dataset table failed: %s", sqlite3_errmsg(db)) < 0)
            *err = NULL;
        return -1;
    }
    return 0;
}

static sqlite3_stmt *sim_ds_insert_stmt(sqlite3 *db, const char *phys, size_t n)
{
    char *sql;
    size_t len;
    FILE *m = sim_res_sql_open(&sql, &len);
    fputs("INSERT INTO ", m);
    sim_res_put_ident(m, phys);
    fputs(" VALUES (", m);
    for (size_t i = 0; i < n; i++)
        fputs(i ? ",?" : "?", m);
    fputc(')', m);
    fclose(m);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        st = NULL;
    free(sql);
    return st;
}

/* Bind one textual value (CSV) to a column of type t. */
static void sim_ds_bind_text_value(sqlite3_stmt *st, int pos, const char *v, enum sim_ds_type t)
{
    if (!v || !*v) {
        sqlite3_bind_null(st, pos);
        return;
    }
    switch (t) {
    case SIM_DS_INT:
        sqlite3_bind_int64(st, pos, strtoll(v, NULL, 10));
        break;
    case SIM_DS_FLOAT:
        sqlite3_bind_double(st, pos, strtod(v, NULL));
        break;
    case SIM_DS_BOOL:
        sqlite3_bind_int(st, pos, strcasecmp(v, "true") == 0);
        break;
    default:
        sqlite3_bind_text(st, pos, v, -1, SQLITE_TRANSIENT);
        break;
    }
}

static int sim_ds_is_blank_record(const sim_csv *c)
{
    return c->nfields == 1 && c->fields[0][0] == '\0';
}

/* Load a CSV stream (header row + records) into phys: two passes (types, then rows). */
static int sim_ds_load_csv(sqlite3 *db, FILE *f, const char *phys, struct sim_ds_cols *cols,
                           long long *rows, char **err)
{
    sim_csv c;
    sim_csv_init(&c, f);
    int r = sim_csv_next(&c);
    while (r == 1 && sim_ds_is_blank_record(&c))
        r = sim_csv_next(&c);
    if (r != 1) {
        sim_csv_free(&c);
        return asprintf(err, r == 0 ? "CSV has no header row" : "Malformed CSV header"), -1;
    }
    for (size_t i = 0; i < c.nfields; i++)
        sim_ds_cols_add(cols, c.fields[i]);
    if (sim_ds_cols_check(cols, err) != 0 || sim_ds_cols_declare(cols, err) != 0) {
        sim_csv_free(&c);
        return -1;
    }
    long long n = 0;
    while ((r = sim_csv_next(&c)) == 1) {
        if (sim_ds_is_blank_record(&c))
            continue;
        if (c.nfields != cols->n) {
            long line = c.line;
            size_t got = c.nfields;
            sim_csv_free(&c);
            return asprintf(err, "CSV line %ld has %zu fields, expected %zu", line, got, cols->n),
                   -1;
        }
        for (size_t i = 0; i < c.nfields; i++) {
            enum sim_ds_type t = sim_ds_value_type(c.fields[i]);
            if (t == SIM_DS_NULL)
                cols->nulls[i] = 1;
            if (!cols->declared[i]) {
                cols->types[i] = sim_ds_type_merge(cols->types[i], t);
            } else if (!sim_ds_text_fits(c.fields[i], cols->types[i])) {
                long line = c.line;
                int rc = asprintf(err, "CSV line %ld: value '%.64s' of column '%s' is not %s", line,
                                  c.fields[i], cols->names[i], sim_ds_type_name(cols->types[i]));
                (void)rc;
                sim_csv_free(&c);
                return -1;
            }
        }
        n++;
    }
    if (r < 0) {
        long line = c.line;
        int too_long = c.error == SIM_CSV_ERR_LONG;
        sim_csv_free(&c);
        return asprintf(err, "Malformed CSV at line %ld: %s", line,
                        too_long ? "record longer than 16 MiB" : "unterminated quoted field"),
               -1;
    }
    if (sim_ds_create_table(db, phys, cols, err) != 0) {
        sim_csv_free(&c);
        return -1;
    }
    sqlite3_stmt *st = sim_ds_insert_stmt(db, phys, cols->n);
    if (!st || fseek(f, 0, SEEK_SET) != 0) {
        sqlite3_finalize(st);
        sim_csv_free(&c);
        return asprintf(err, "Loading the CSV failed: %s", sqlite3_errmsg(db)), -1;
    }
    sim_csv_free(&c);
    sim_csv_init(&c, f);
    r = sim_csv_next(&c);
    while (r == 1 && sim_ds_is_blank_record(&c))
        r = sim_csv_next(&c);
    int rc = 0;
    while ((r = sim_csv_next(&c)) == 1) {
        if (sim_ds_is_blank_record(&c))
            continue;
        for (size_t i = 0; i < cols->n && i < c.nfields; i++)
            sim_ds_bind_text_value(st, (int)i + 1, c.fields[i], cols->types[i]);
        if (sqlite3_step(st) != SQLITE_DONE) {
            rc = -1;
            if (asprintf(err, "Loading the CSV failed: %s", sqlite3_errmsg(db)) < 0)
                *err = NULL;
            break;
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    sqlite3_finalize(st);
    sim_csv_free(&c);
    *rows = n;
    return rc;
}

static int sim_ds_parse_declared_type(const char *s, enum sim_ds_type *out)
{
    static const struct {
        const char *name;
        enum sim_ds_type t;
    } map[] = {{"int64", SIM_DS_INT},     {"int", SIM_DS_INT},       {"integer", SIM_DS_INT},
               {"bigint", SIM_DS_INT},    {"int32", SIM_DS_INT},     {"float64", SIM_DS_FLOAT},
               {"float", SIM_DS_FLOAT},   {"double", SIM_DS_FLOAT},  {"real", SIM_DS_FLOAT},
               {"numeric", SIM_DS_FLOAT}, {"decimal", SIM_DS_FLOAT}, {"boolean", SIM_DS_BOOL},
               {"bool", SIM_DS_BOOL},     {"utf8", SIM_DS_TEXT},     {"string", SIM_DS_TEXT},
               {"text", SIM_DS_TEXT},     {"varchar", SIM_DS_TEXT}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcasecmp(s, map[i].name) == 0) {
            *out = map[i].t;
            return 0;
        }
    return -1;
}

static enum sim_ds_type sim_ds_json_type(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        return SIM_DS_NULL;
    case JSON_INTEGER:
        return SIM_DS_INT;
    case JSON_REAL:
        return SIM_DS_FLOAT;
    case JSON_TRUE:
    case JSON_FALSE:
        return SIM_DS_BOOL;
    default:
        return SIM_DS_TEXT;
    }
}

/* Bind a JSON value to a column of type t; -1 when it does not fit a declared type. */
static int sim_ds_bind_json_value(sqlite3_stmt *st, int pos, json_t *v, enum sim_ds_type t)
{
    if (!v || json_is_null(v))
        return sqlite3_bind_null(st, pos), 0;
    switch (t) {
    case SIM_DS_INT:
        if (json_is_integer(v))
            return sqlite3_bind_int64(st, pos, json_integer_value(v)), 0;
        if (json_is_string(v) && sim_ds_value_type(json_string_value(v)) == SIM_DS_INT)
            return sqlite3_bind_int64(st, pos, strtoll(json_string_value(v), NULL, 10)), 0;
        return -1;
    case SIM_DS_FLOAT:
        if (json_is_number(v))
            return sqlite3_bind_double(st, pos, json_number_value(v)), 0;
        if (json_is_string(v)) {
            enum sim_ds_type vt = sim_ds_value_type(json_string_value(v));
            if (vt == SIM_DS_INT || vt == SIM_DS_FLOAT)
                return sqlite3_bind_double(st, pos, strtod(json_string_value(v), NULL)), 0;
        }
        return -1;
    case SIM_DS_BOOL:
        if (json_is_boolean(v))
            return sqlite3_bind_int(st, pos, json_is_true(v)), 0;
        if (json_is_string(v) && sim_ds_value_type(json_string_value(v)) == SIM_DS_BOOL)
            return sqlite3_bind_int(st, pos, strcasecmp(json_string_value(v), "true") == 0), 0;
        return -1;
    default:
        if (json_is_string(v))
            return sqlite3_bind_text(st, pos, json_string_value(v), (int)json_string_length(v),
                                     SQLITE_TRANSIENT),
                   0;
        {
            char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            sqlite3_bind_text(st, pos, s ? s : "", -1, SQLITE_TRANSIENT);
            free(s);
        }
        return 0;
    }
}

/* Load rows (a JSON array of arrays, each cols->n long) into phys. Types not declared are
 * inferred from the JSON value types. */
static int sim_ds_load_json_rows(sqlite3 *db, json_t *rows, const char *phys,
                                 struct sim_ds_cols *cols, long long *nrows, char **err)
{
    if (sim_ds_cols_check(cols, err) != 0 || sim_ds_cols_declare(cols, err) != 0)
        return -1;
    size_t r;
    json_t *row;
    json_array_foreach(rows, r, row)
    {
        if (!json_is_array(row) || json_array_size(row) != cols->n)
            return asprintf(err, "Row %zu must be an array of %zu values", r + 1, cols->n), -1;
        for (size_t i = 0; i < cols->n; i++) {
            json_t *v = json_array_get(row, i);
            enum sim_ds_type t = sim_ds_json_type(v);
            if (t == SIM_DS_NULL)
                cols->nulls[i] = 1;
            if (!cols->declared[i])
                cols->types[i] = sim_ds_type_merge(cols->types[i], t);
        }
    }
    if (sim_ds_create_table(db, phys, cols, err) != 0)
        return -1;
    sqlite3_stmt *st = sim_ds_insert_stmt(db, phys, cols->n);
    if (!st)
        return asprintf(err, "Loading rows failed: %s", sqlite3_errmsg(db)), -1;
    int rc = 0;
    json_array_foreach(rows, r, row)
    {
        for (size_t i = 0; i < cols->n && rc == 0; i++) {
            if (sim_ds_bind_json_value(st, (int)i + 1, json_array_get(row, i), cols->types[i]) !=
                0) {
                rc = -1;
                if (asprintf(err, "Row %zu: value of column '%s' is not %s", r + 1, cols->names[i],
                             sim_ds_type_name(cols->types[i])) < 0)
                    *err = NULL;
            }
        }
        if (rc == 0 && sqlite3_step(st) != SQLITE_DONE) {
            rc = -1;
            if (asprintf(err, "Loading rows failed: %s", sqlite3_errmsg(db)) < 0)
                *err = NULL;
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != 0)
            break;
    }
    sqlite3_finalize(st);
    *nrows = (long long)json_array_size(rows);
    return rc;
}

/* Array of objects -> columns (keys in order of first appearance) + array of arrays. */
static int sim_ds_objects_to_rows(json_t *objs, struct sim_ds_cols *cols, json_t **rows_out,
                                  char **err)
{
    size_t r;
    json_t *o;
    json_array_foreach(objs, r, o)
    {
        if (!json_is_object(o))
            return asprintf(err, "Row %zu is not a JSON object", r + 1), -1;
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v)
        {
            if (sim_ds_cols_find(cols, k) < 0) {
                if (cols->n >= SIM_DS_MAX_COLS)
                    return asprintf(err, "Too many columns (max %d)", SIM_DS_MAX_COLS), -1;
                sim_ds_cols_add(cols, k);
            }
        }
    }
    json_t *rows = json_array();
    json_array_foreach(objs, r, o)
    {
        json_t *row = json_array();
        for (size_t i = 0; i < cols->n; i++) {
            json_t *v = json_object_get(o, cols->names[i]);
            json_array_append(row, v ? v : json_null());
        }
        json_array_append_new(rows, row);
    }
    *rows_out = rows;
    return 0;
}

/* JSON document text: an array of objects, or one object per line (NDJSON). */
static int sim_ds_load_json_file(sqlite3 *db, FILE *f, const char *phys, struct sim_ds_cols *cols,
                                 long long *nrows, char **err)
{
    /* JSON is parsed as a document (CSV streams): bound what that may cost */
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && sb.st_size > SIM_DS_MAX_JSON)
        return asprintf(err, "JSON data over %d MiB is not supported: upload CSV instead",
                        SIM_DS_MAX_JSON >> 20),
               -1;
    json_error_t je;
    json_t *doc = json_loadf(f, JSON_DISABLE_EOF_CHECK, &je);
    json_t *objs = NULL;
    if (doc && json_is_array(doc)) {
        objs = doc;
        doc = NULL;
        /* nothing but whitespace may follow the array */
        int ch;
        while ((ch = getc(f)) != EOF)
            if (ch != ' ' && ch != '\n' && ch != '\r' && ch != '\t') {
                json_decref(objs);
                return asprintf(err, "Invalid JSON: trailing data after the array"), -1;
            }
    } else if (doc && json_is_object(doc)) {
        objs = json_array();
        json_array_append_new(objs, doc);
        doc = NULL;
        for (;;) {
            json_t *next = json_loadf(f, JSON_DISABLE_EOF_CHECK, &je);
            if (!next) {
                int ch;
                while ((ch = getc(f)) != EOF &&
                       (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t'))
                    ;
                if (ch != EOF) {
                    json_decref(objs);
                    return asprintf(err, "Invalid JSON at line %d: %s", je.line, je.text), -1;
                }
                break;
            }
            json_array_append_new(objs, next);
        }
    } else {
        json_decref(doc);
        return asprintf(err,
                        "Invalid JSON data: expected an array of objects or one object "
                        "per line%s%s",
                        doc ? "" : ": ", doc ? "" : je.text),
               -1;
    }
    json_t *rows = NULL;
    int rc = sim_ds_objects_to_rows(objs, cols, &rows, err);
    if (rc == 0)
        rc = sim_ds_load_json_rows(db, rows, phys, cols, nrows, err);
    json_decref(rows);
    json_decref(objs);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Sources                                                                               */

/*
 * Validate and normalise a source into *kind ("upload" | "inline") and the object to
 * store. 0 or -1 with *err (a 400 message).
 */
static int sim_ds_source_check(struct sim_ws *ws, json_t *src, const char **kind, char **err)
{
    if (!json_is_object(src))
        return asprintf(err, "Field 'source' must be an object"), -1;
    json_t *type = json_object_get(src, "type");
    if (type && !json_is_string(type))
        return asprintf(err, "source.type must be a string"), -1;
    const char *t = json_string_value(type);
    if (t && strcmp(t, "sql_query") == 0) {
        json_t *sql = json_object_get(src, "sql");
        if (!json_is_string(sql) || json_string_length(sql) == 0)
            return asprintf(err, "source.sql is required (a non-empty string)"), -1;
        json_t *nm = json_object_get(src, "name"), *ds = json_object_get(src, "description");
        if ((nm && !json_is_null(nm) && !json_is_string(nm)) ||
            (ds && !json_is_null(ds) && !json_is_string(ds)))
            return asprintf(err, "source.name and source.description must be strings"), -1;
        *kind = "sql_query";
        return 0;
    }
    if (t && strcmp(t, "saved_query") == 0) {
        json_t *id = json_object_get(src, "saved_query_id"), *ver = json_object_get(src, "version");
        if (!json_is_string(id))
            return asprintf(err, "source.saved_query_id is required (a string)"), -1;
        if (ver && !json_is_null(ver) && (!json_is_integer(ver) || json_integer_value(ver) < 1))
            return asprintf(err, "source.version must be a positive integer"), -1;
        char *sql = sim_saved_query_sql(ws, json_string_value(id),
                                        json_is_integer(ver) ? (int)json_integer_value(ver) : 0);
        if (!sql)
            return asprintf(err, "Saved query '%s'%s not found", json_string_value(id),
                            json_is_integer(ver) ? " (version)" : ""),
                   -1;
        free(sql);
        *kind = "saved_query";
        return 0;
    }
    if (t && strcmp(t, "url") == 0)
        return asprintf(err, "URL sources need network access, which this server does not "
                             "have: upload the file instead"),
               -1;
    if (t && strcmp(t, "upload") != 0 && strcmp(t, "inline") != 0)
        return asprintf(err, "Unknown source.type '%s'", t), -1;
    json_t *decl = json_object_get(src, "columns");
    if (json_object_get(src, "upload_id") && decl && !json_is_null(decl) && !json_is_object(decl))
        return asprintf(err, "source.columns must be an object {name: type}"), -1;
    json_t *upload = json_object_get(src, "upload_id");
    json_t *inl = json_object_get(src, "inline");
    if (upload && !json_is_null(upload)) {
        if (!json_is_string(upload))
            return asprintf(err, "source.upload_id must be a string"), -1;
        json_t *fmt = json_object_get(src, "format");
        if (fmt && !json_is_null(fmt)) {
            const char *f = json_string_value(fmt);
            if (!f)
                return asprintf(err, "source.format must be a string"), -1;
            if (strcmp(f, "parquet") == 0)
                return asprintf(err, "Parquet uploads are not supported by this server"), -1;
            if (strcmp(f, "csv") != 0 && strcmp(f, "json") != 0)
                return asprintf(err, "Unsupported source.format '%s': expected csv or json", f), -1;
        }
        char *path = sim_upload_path(ws, json_string_value(upload), NULL);
        if (!path)
            return asprintf(err, "Upload '%s' not found", json_string_value(upload)), -1;
        free(path);
        *kind = "upload";
        return 0;
    }
    if (!inl)
        inl = src; /* the inline object itself */
    if (!json_is_object(inl))
        return asprintf(err, "source.inline must be an object"), -1;
    json_t *rows = json_object_get(inl, "rows"), *content = json_object_get(inl, "content");
    if (rows && !json_is_array(rows))
        return asprintf(err, "source.inline.rows must be an array"), -1;
    if (content && !json_is_string(content))
        return asprintf(err, "source.inline.content must be a string"), -1;
    if (!rows && !content)
        return asprintf(err, "source needs upload_id, or inline data (rows or content)"), -1;
    if (content) {
        const char *f = json_string_value(json_object_get(inl, "format"));
        if (!f || (strcmp(f, "csv") != 0 && strcmp(f, "json") != 0))
            return asprintf(err, "source.inline.format must be csv or json"), -1;
    }
    *kind = "inline";
    return 0;
}

/* Sniff csv/json from a content type and the first non-space byte. */
static const char *sim_ds_sniff_format(FILE *f, const char *content_type)
{
    if (content_type && strcasestr(content_type, "json"))
        return "json";
    if (content_type && strcasestr(content_type, "csv"))
        return "csv";
    int ch;
    while ((ch = getc(f)) != EOF && (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t'))
        ;
    rewind(f);
    return ch == '[' || ch == '{' ? "json" : "csv";
}

static char *sim_ds_resolve_cb(void *ud, const char *a, const char *b, const char *c)
{
    return sim_table_resolve(ud, a, b, c);
}

static bool sim_ds_is_catalog_cb(void *ud, const char *a)
{
    sqlite3_stmt *st = sim_db_stmt(ud, "SELECT 1 FROM sim_tables WHERE catalog = ?1");
    if (!st)
        return false;
    sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
    bool known = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return known;
}

/* Materialise the result of a query over the workspace's tables into phys (types from the
 * values, like any JSON rows). */
static int sim_ds_load_sql(struct sim_ws *ws, const char *sql, const char *phys,
                           struct sim_ds_cols *cols, long long *nrows, char **err)
{
    char *rewritten = NULL, *rerr = NULL;
    if (!sql ||
        sim_sql_rewrite(sql, sim_ds_resolve_cb, sim_ds_is_catalog_cb, ws, &rewritten, &rerr) != 0) {
        *err = rerr ? rerr : strdup("Query is empty");
        return -1;
    }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = sqlite3_prepare_v2(ws->db, rewritten, -1, &st, &tail);
    free(rewritten);
    if (rc != SQLITE_OK || !st) {
        sqlite3_finalize(st);
        return asprintf(err, "Query failed: %s", st ? sqlite3_errmsg(ws->db) : "empty query"), -1;
    }
    if (!sqlite3_stmt_readonly(st) || sqlite3_column_count(st) == 0) {
        sqlite3_finalize(st);
        return asprintf(err, "A dataset query must be a read-only SELECT"), -1;
    }
    int n = sqlite3_column_count(st);
    for (int i = 0; i < n; i++) {
        const char *name = sqlite3_column_name(st, i);
        sim_ds_cols_add(cols, name ? name : "");
    }
    json_t *rows = json_array();
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *row = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(row, sim_res_col_json(st, i));
        json_array_append_new(rows, row);
    }
    if (rc != SQLITE_DONE) {
        int w = asprintf(err, "Query failed: %s", sqlite3_errmsg(ws->db));
        (void)w;
        sqlite3_finalize(st);
        json_decref(rows);
        return -1;
    }
    sqlite3_finalize(st);
    rc = sim_ds_load_json_rows(ws->db, rows, phys, cols, nrows, err);
    json_decref(rows);
    return rc;
}

/* Load a (checked) source into a new SQLite table phys. */
static int sim_ds_load_source(struct sim_ws *ws, json_t *src, const char *phys,
                              struct sim_ds_cols *cols, long long *nrows, char **err)
{
    sqlite3 *db = ws->db;
    const char *type = json_string_value(json_object_get(src, "type"));
    if (type && strcmp(type, "sql_query") == 0)
        return sim_ds_load_sql(ws, json_string_value(json_object_get(src, "sql")), phys, cols,
                               nrows, err);
    if (type && strcmp(type, "saved_query") == 0) {
        json_t *ver = json_object_get(src, "version");
        char *sql =
            sim_saved_query_sql(ws, json_string_value(json_object_get(src, "saved_query_id")),
                                json_is_integer(ver) ? (int)json_integer_value(ver) : 0);
        if (!sql)
            return asprintf(err, "Saved query '%s' not found",
                            json_string_value(json_object_get(src, "saved_query_id"))),
                   -1;
        int rc = sim_ds_load_sql(ws, sql, phys, cols, nrows, err);
        free(sql);
        return rc;
    }
    json_t *upload = json_object_get(src, "upload_id");
    if (json_is_object(json_object_get(src, "columns")))
        cols->decl_map = json_object_get(src, "columns");
    if (json_is_string(upload)) {
        char *ctype = NULL;
        char *path = sim_upload_path(ws, json_string_value(upload), &ctype);
        FILE *f = path ? fopen(path, "rb") : NULL;
        free(path);
        if (!f) {
            free(ctype);
            return asprintf(err, "Upload '%s' is no longer available", json_string_value(upload)),
                   -1;
        }
        const char *fmt = json_string_value(json_object_get(src, "format"));
        if (!fmt)
            fmt = sim_ds_sniff_format(f, ctype);
        free(ctype);
        int rc = strcmp(fmt, "json") == 0 ? sim_ds_load_json_file(db, f, phys, cols, nrows, err)
                                          : sim_ds_load_csv(db, f, phys, cols, nrows, err);
        fclose(f);
        return rc;
    }
    json_t *inl = json_object_get(src, "inline");
    if (!inl)
        inl = src;
    if (json_is_object(json_object_get(inl, "columns")))
        cols->decl_map = json_object_get(inl, "columns");
    json_t *content = json_object_get(inl, "content");
    if (json_is_string(content)) {
        const char *fmt = json_string_value(json_object_get(inl, "format"));
        size_t len = json_string_length(content);
        FILE *f = len ? fmemopen((void *)json_string_value(content), len, "rb") : NULL;
        if (!f)
            return asprintf(err, "source.inline.content is empty"), -1;
        int rc = strcmp(fmt, "json") == 0 ? sim_ds_load_json_file(db, f, phys, cols, nrows, err)
                                          : sim_ds_load_csv(db, f, phys, cols, nrows, err);
        fclose(f);
        return rc;
    }
    json_t *rowsj = json_object_get(inl, "rows");
    json_t *colsj = json_object_get(inl, "columns");
    bool objects = json_array_size(rowsj) > 0 && json_is_object(json_array_get(rowsj, 0));
    if (colsj && !json_is_null(colsj) && !json_is_object(colsj)) {
        if (!json_is_array(colsj))
            return asprintf(err, "source.inline.columns must be an array or an object"), -1;
        size_t i;
        json_t *c;
        json_array_foreach(colsj, i, c)
        {
            const char *name = json_is_string(c) ? json_string_value(c)
                                                 : json_string_value(json_object_get(c, "name"));
            if (!name)
                return asprintf(err, "source.inline.columns[%zu] needs a name", i), -1;
            sim_ds_cols_add(cols, name);
            json_t *dt = json_object_get(c, "data_type");
            if (!dt)
                dt = json_object_get(c, "type");
            if (dt && !json_is_null(dt)) {
                enum sim_ds_type t;
                if (!json_is_string(dt) ||
                    sim_ds_parse_declared_type(json_string_value(dt), &t) != 0)
                    return asprintf(err, "Unsupported data_type for column '%s'", name), -1;
                cols->types[cols->n - 1] = t;
                cols->declared[cols->n - 1] = 1;
            }
        }
        if (objects) {
            /* rows as objects with declared columns: pick the values by name */
            json_t *rows = json_array();
            json_t *o;
            size_t r;
            json_array_foreach(rowsj, r, o)
            {
                if (!json_is_object(o)) {
                    json_decref(rows);
                    return asprintf(err, "Row %zu is not a JSON object", r + 1), -1;
                }
                json_t *row = json_array();
                for (size_t k = 0; k < cols->n; k++) {
                    json_t *v = json_object_get(o, cols->names[k]);
                    json_array_append(row, v ? v : json_null());
                }
                json_array_append_new(rows, row);
            }
            int rc = sim_ds_load_json_rows(db, rows, phys, cols, nrows, err);
            json_decref(rows);
            return rc;
        }
        return sim_ds_load_json_rows(db, rowsj, phys, cols, nrows, err);
    }
    if (!objects && json_array_size(rowsj) > 0)
        return asprintf(err, "source.inline.rows as arrays need source.inline.columns"), -1;
    json_t *rows = NULL;
    if (sim_ds_objects_to_rows(rowsj, cols, &rows, err) != 0)
        return -1;
    int rc = sim_ds_load_json_rows(db, rows, phys, cols, nrows, err);
    json_decref(rows);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Versions and the table registry                                                       */

/*
 * Load src as version `version` of dataset id: a new SQLite table ds_<id>_v<version> and a
 * res_dataset_versions row. 0 on success; -1 with *err (the client's fault: 400) or with
 * *err NULL (a database failure: 500).
 */
static int sim_ds_make_version(struct sim_ws *ws, const char *id, int version, const char *kind,
                               json_t *src, char **err)
{
    char phys[160], vid[64], now[40];
    snprintf(phys, sizeof phys, "ds_%s_v%d", id, version);
    sim_id_new("dsv", vid);
    sim_now_rfc3339(now, false);
    struct sim_ds_cols cols = {0};
    long long rows = 0;
    sim_db_exec(ws->db, "SAVEPOINT sim_ds_load");
    int rc = sim_ds_load_source(ws, src, phys, &cols, &rows, err);
    sim_ds_cols_free(&cols);
    if (rc != 0) {
        sim_db_exec(ws->db, "ROLLBACK TO sim_ds_load");
        sim_db_exec(ws->db, "RELEASE sim_ds_load");
        if (!*err && asprintf(err, "Loading the dataset failed") < 0)
            *err = NULL;
        return -1;
    }
    sqlite3_stmt *st = sim_db_stmt(ws, "INSERT OR REPLACE INTO res_dataset_versions(dataset_id,"
                                       " version, id, source_type, sqlite_table, row_count,"
                                       " created_at) VALUES (?1,?2,?3,?4,?5,?6,?7)");
    rc = -1;
    if (st) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 2, version);
        sqlite3_bind_text(st, 3, vid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, kind, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 5, phys, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 6, rows);
        sqlite3_bind_text(st, 7, now, -1, SQLITE_TRANSIENT);
        rc = sim_res_step_done(st) == SQLITE_DONE ? 0 : -1;
    }
    if (rc != 0) {
        sim_db_exec(ws->db, "ROLLBACK TO sim_ds_load");
        sim_db_exec(ws->db, "RELEASE sim_ds_load");
        return -1;
    }
    sim_db_exec(ws->db, "RELEASE sim_ds_load");
    json_t *up = json_object_get(src, "upload_id");
    if (json_is_string(up))
        sim_upload_set_status(ws, json_string_value(up), "consumed");
    return 0;
}

struct sim_ds_row {
    char id[64];
    char *label, *schema_name, *table_name, *source_type, *source, *created_at, *updated_at;
    int latest_version;
    int pinned_version; /* 0 = not pinned */
};

static void sim_ds_row_free(struct sim_ds_row *d)
{
    free(d->label);
    free(d->schema_name);
    free(d->table_name);
    free(d->source_type);
    free(d->source);
    free(d->created_at);
    free(d->updated_at);
}

static int sim_ds_load(struct sim_ws *ws, const char *id, struct sim_ds_row *d)
{
    memset(d, 0, sizeof *d);
    sqlite3_stmt *st = sim_db_stmt(
        ws, "SELECT id, label, schema_name, table_name, source_type, source, latest_version,"
            " pinned_version, created_at, updated_at FROM res_datasets WHERE id = ?1");
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int found = sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        snprintf(d->id, sizeof d->id, "%s", (const char *)sqlite3_column_text(st, 0));
        d->label = sim_res_col_dup(st, 1);
        d->schema_name = sim_res_col_dup(st, 2);
        d->table_name = sim_res_col_dup(st, 3);
        d->source_type = sim_res_col_dup(st, 4);
        d->source = sim_res_col_dup(st, 5);
        d->latest_version = sqlite3_column_int(st, 6);
        d->pinned_version =
            sqlite3_column_type(st, 7) == SQLITE_NULL ? 0 : sqlite3_column_int(st, 7);
        d->created_at = sim_res_col_dup(st, 8);
        d->updated_at = sim_res_col_dup(st, 9);
    }
    sqlite3_reset(st);
    return found;
}

static int sim_ds_load_or_404(struct sim_req *req, struct sim_ds_row *d)
{
    const char *id = sim_req_param(req, "id");
    if (!id || !sim_ds_load(req->ws, id, d)) {
        sim_reply_error(req, 404, "NOT_FOUND", "Dataset '%s' not found", id ? id : "");
        return -1;
    }
    return 0;
}

/* The SQLite table of one version, malloc'd, NULL when unknown. */
static char *sim_ds_version_table(struct sim_ws *ws, const char *id, int version)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT sqlite_table FROM res_dataset_versions WHERE"
                                       " dataset_id = ?1 AND version = ?2");
    if (!st)
        return NULL;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, version);
    char *t = sqlite3_step(st) == SQLITE_ROW ? sim_res_col_dup(st, 0) : NULL;
    sqlite3_reset(st);
    return t;
}

/* Point datasets.<schema>.<table> at the effective version (pinned, else latest). */
static int sim_ds_register(struct sim_ws *ws, const struct sim_ds_row *d)
{
    int v = d->pinned_version ? d->pinned_version : d->latest_version;
    char *phys = sim_ds_version_table(ws, d->id, v);
    if (!phys)
        return -1;
    int rc = sim_table_register(ws, "dataset", d->id, "datasets", d->schema_name, d->table_name,
                                phys, true);
    free(phys);
    if (rc == 0) {
        char now[40];
        sim_now_rfc3339(now, false);
        sqlite3_stmt *st = sim_db_stmt(ws, "UPDATE sim_tables SET last_sync = ?2 WHERE"
                                           " owner_id = ?1 AND kind = 'dataset'");
        if (st) {
            sqlite3_bind_text(st, 1, d->id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, now, -1, SQLITE_TRANSIENT);
            sim_res_step_done(st);
        }
    }
    return rc;
}

/* 1 when another dataset (not except_id) already uses label / schema.table. */
static int sim_ds_label_taken(struct sim_ws *ws, const char *label, const char *except_id)
{
    sqlite3_stmt *st =
        sim_db_stmt(ws, "SELECT 1 FROM res_datasets WHERE label = ?1 AND id IS NOT ?2");
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, label, -1, SQLITE_TRANSIENT);
    if (except_id)
        sqlite3_bind_text(st, 2, except_id, -1, SQLITE_TRANSIENT);
    int taken = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return taken;
}

static int sim_ds_table_taken(struct sim_ws *ws, const char *schema, const char *table,
                              const char *except_id)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT 1 FROM res_datasets WHERE schema_name = ?1 AND"
                                       " table_name = ?2 AND id IS NOT ?3");
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, schema, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, table, -1, SQLITE_TRANSIENT);
    if (except_id)
        sqlite3_bind_text(st, 3, except_id, -1, SQLITE_TRANSIENT);
    int taken = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return taken;
}

static void sim_ds_drop_versions(struct sim_ws *ws, const char *id)
{
    sim_res_drop_listed(ws->db, "TABLE",
                        "SELECT sqlite_table FROM res_dataset_versions WHERE dataset_id = ?1", id);
}

/*
 * The source as stored for refreshes (compact JSON, malloc'd). A sql_query source
 * auto-creates its saved query (named after the dataset unless source.name says otherwise),
 * as the service does; its id is kept in the stored source.
 */
static char *sim_ds_stored_source(struct sim_ws *ws, json_t *src, const char *kind,
                                  const char *label)
{
    json_t *stored = json_deep_copy(src);
    if (strcmp(kind, "sql_query") == 0 && !json_object_get(stored, "saved_query_id")) {
        const char *name = json_string_value(json_object_get(src, "name"));
        char sqid[64];
        if (sim_saved_query_create(
                ws, name && *name ? name : label, json_string_value(json_object_get(src, "sql")),
                json_string_value(json_object_get(src, "description")), sqid) == 0)
            json_object_set_new(stored, "saved_query_id", json_string(sqid));
    }
    char *text = json_dumps(stored, JSON_COMPACT);
    json_decref(stored);
    return text;
}

/* ------------------------------------------------------------------------------------ */
/* Handlers                                                                              */

static json_t *sim_ds_list_item(sqlite3_stmt *st)
{
    /* id, label, schema_name, table_name, latest_version, pinned_version, created_at,
     * updated_at */
    return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "created_at", sim_res_col_json(st, 6),
                     "id", sim_res_col_json(st, 0), "label", sim_res_col_json(st, 1),
                     "latest_version", sim_res_col_json(st, 4), "pinned_version",
                     sim_res_col_json(st, 5), "schema_name", sim_res_col_json(st, 2), "table_name",
                     sim_res_col_json(st, 3), "updated_at", sim_res_col_json(st, 7));
}

static void sim_ds_list(struct sim_req *req)
{
    long limit, offset;
    if (sim_res_page(req, 100, &limit, &offset) != 0)
        return;
    sqlite3_stmt *st = sim_db_stmt(
        req->ws, "SELECT id, label, schema_name, table_name, latest_version, pinned_version,"
                 " created_at, updated_at FROM res_datasets ORDER BY created_at, id"
                 " LIMIT ?1 OFFSET ?2");
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
        json_array_append_new(arr, sim_ds_list_item(st));
    }
    sqlite3_reset(st);
    sim_reply_json(req, 200,
                   json_pack("{s:I,s:o,s:b,s:I,s:I}", "count", (json_int_t)json_array_size(arr),
                             "datasets", arr, "has_more", more, "limit", (json_int_t)limit,
                             "offset", (json_int_t)offset));
}

static void sim_ds_create(struct sim_req *req)
{
    const char *label = NULL, *table_name = NULL;
    bool has_table = false;
    if (!json_is_object(req->body)) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Request body must be a JSON object");
        return;
    }
    const char *db_id = NULL;
    if (sim_body_str(req, "label", true, &label, NULL) != 0 ||
        sim_body_str(req, "table_name", false, &table_name, &has_table) != 0 ||
        sim_req_database(req, &db_id) != 0)
        return;
    if (!*label) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Field 'label' must not be empty");
        return;
    }
    json_t *src = json_object_get(req->body, "source");
    if (!src || json_is_null(src)) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Missing required field 'source'");
        return;
    }
    const char *kind = NULL;
    char *err = NULL;
    if (sim_ds_source_check(req->ws, src, &kind, &err) != 0) {
        sim_reply_error(req, 400, "BAD_REQUEST", "%s", err ? err : "Invalid source");
        free(err);
        return;
    }
    char *tname = has_table ? strdup(table_name) : sim_ds_table_name_from_label(label);
    if (!sim_ds_valid_ident(tname)) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid table_name '%s': letters, digits and _, not starting with a "
                        "digit, at most 63 characters%s",
                        tname, has_table ? "" : " (derived from the label; pass table_name)");
        free(tname);
        return;
    }
    if (sim_ds_label_taken(req->ws, label, NULL)) {
        sim_reply_error(req, 409, "CONFLICT", "Dataset with label '%s' already exists", label);
        free(tname);
        return;
    }
    if (sim_ds_table_taken(req->ws, SIM_DS_SCHEMA, tname, NULL)) {
        sim_reply_error(req, 409, "CONFLICT", "Dataset table '%s.%s' already exists", SIM_DS_SCHEMA,
                        tname);
        free(tname);
        return;
    }
    char id[64], now[40];
    sim_id_new("ds", id);
    sim_now_rfc3339(now, false);
    if (sim_ds_make_version(req->ws, id, 1, kind, src, &err) != 0) {
        if (err)
            sim_reply_error(req, 400, "BAD_REQUEST", "%s", err);
        else
            sim_res_reply_db_error(req);
        free(err);
        free(tname);
        return;
    }
    char *src_text = sim_ds_stored_source(req->ws, src, kind, label);
    sqlite3_stmt *st = sim_db_stmt(
        req->ws, "INSERT INTO res_datasets(id, label, schema_name, table_name, source_type,"
                 " source, latest_version, pinned_version, created_at, updated_at)"
                 " VALUES (?1,?2,?3,?4,?5,?6,1,NULL,?7,?7)");
    int rc = SQLITE_ERROR;
    if (st) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, label, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, SIM_DS_SCHEMA, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, tname, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 5, kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, src_text ? src_text : "{}", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 7, now, -1, SQLITE_TRANSIENT);
        rc = sim_res_step_done(st);
    }
    free(src_text);
    struct sim_ds_row d;
    if (rc != SQLITE_DONE || !sim_ds_load(req->ws, id, &d)) {
        sim_ds_drop_versions(req->ws, id);
        sim_res_reply_db_error(req);
        free(tname);
        return;
    }
    if ((db_id && sim_table_scope_set(req->ws, id, db_id) != 0) ||
        sim_ds_register(req->ws, &d) != 0) {
        sim_ds_row_free(&d);
        free(tname);
        sim_res_reply_db_error(req);
        return;
    }
    sim_ds_row_free(&d);
    json_t *resp =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:n,s:s,s:s}", "created_at", now, "id", id, "label",
                  label, "schema_name", SIM_DS_SCHEMA, "status", "ready", "table_name", tname,
                  "latest_version", 1, "pinned_version", "source_type", kind, "updated_at", now);
    if (db_id) /* only scoped datasets say where they belong (unscoped ones keep their shape) */
        json_object_set_new(resp, "database_id", json_string(db_id));
    sim_reply_json(req, 201, resp);
    free(tname);
}

static void sim_ds_get(struct sim_req *req)
{
    struct sim_ds_row d;
    if (sim_ds_load_or_404(req, &d) != 0)
        return;
    int v = d.pinned_version ? d.pinned_version : d.latest_version;
    char *phys = sim_ds_version_table(req->ws, d.id, v);
    json_t *cols = phys ? sim_res_table_columns(req->db, phys) : NULL;
    free(phys);
    sim_reply_json(req, 200,
                   json_pack("{s:o,s:s,s:s,s:s,s:i,s:o,s:s,s:s,s:s,s:s}", "columns",
                             cols ? cols : json_array(), "created_at", d.created_at, "id", d.id,
                             "label", d.label, "latest_version", d.latest_version, "pinned_version",
                             d.pinned_version ? json_integer(d.pinned_version) : json_null(),
                             "schema_name", d.schema_name, "source_type", d.source_type,
                             "table_name", d.table_name, "updated_at", d.updated_at));
    sim_ds_row_free(&d);
}

static int sim_ds_save(struct sim_ws *ws, const struct sim_ds_row *d)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "UPDATE res_datasets SET label = ?2, table_name = ?3,"
                                       " latest_version = ?4, pinned_version = ?5,"
                                       " updated_at = ?6, source = ?7, source_type = ?8"
                                       " WHERE id = ?1");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, d->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, d->label, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, d->table_name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 4, d->latest_version);
    if (d->pinned_version)
        sqlite3_bind_int(st, 5, d->pinned_version);
    sqlite3_bind_text(st, 6, d->updated_at, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 7, d->source, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 8, d->source_type, -1, SQLITE_TRANSIENT);
    return sim_res_step_done(st) == SQLITE_DONE ? 0 : -1;
}

static void sim_ds_update(struct sim_req *req)
{
    struct sim_ds_row d;
    if (sim_ds_load_or_404(req, &d) != 0)
        return;
    const char *label = NULL, *table_name = NULL;
    bool has_label = false, has_table = false;
    if (!json_is_object(req->body)) {
        sim_ds_row_free(&d);
        sim_reply_error(req, 400, "BAD_REQUEST", "Request body must be a JSON object");
        return;
    }
    if (sim_body_str(req, "label", false, &label, &has_label) != 0 ||
        sim_body_str(req, "table_name", false, &table_name, &has_table) != 0) {
        sim_ds_row_free(&d);
        return;
    }
    json_t *pin = json_object_get(req->body, "pinned_version");
    json_t *src = json_object_get(req->body, "source");
    if (src && json_is_null(src))
        src = NULL;
#define SIM_DS_FAIL(status, ...)                                                                   \
    do {                                                                                           \
        sim_reply_error(req, status, NULL, __VA_ARGS__);                                           \
        sim_ds_row_free(&d);                                                                       \
        return;                                                                                    \
    } while (0)
    if (has_label && !*label)
        SIM_DS_FAIL(400, "Field 'label' must not be empty");
    if (has_table && !sim_ds_valid_ident(table_name))
        SIM_DS_FAIL(400, "Invalid table_name '%s'", table_name);
    if (pin && !json_is_null(pin) && !json_is_integer(pin))
        SIM_DS_FAIL(400, "Field 'pinned_version' must be an integer or null");
    if (json_is_integer(pin) &&
        (json_integer_value(pin) < 1 || json_integer_value(pin) > d.latest_version))
        SIM_DS_FAIL(400, "Version %" JSON_INTEGER_FORMAT " of dataset '%s' does not exist",
                    json_integer_value(pin), d.id);
    const char *kind = NULL;
    char *err = NULL;
    if (src && sim_ds_source_check(req->ws, src, &kind, &err) != 0) {
        sim_ds_row_free(&d);
        sim_reply_error(req, 400, "BAD_REQUEST", "%s", err ? err : "Invalid source");
        free(err);
        return;
    }
    if (has_label && sim_ds_label_taken(req->ws, label, d.id))
        SIM_DS_FAIL(409, "Dataset with label '%s' already exists", label);
    if (has_table && sim_ds_table_taken(req->ws, d.schema_name, table_name, d.id))
        SIM_DS_FAIL(409, "Dataset table '%s.%s' already exists", d.schema_name, table_name);
#undef SIM_DS_FAIL
    if (src) {
        if (sim_ds_make_version(req->ws, d.id, d.latest_version + 1, kind, src, &err) != 0) {
            sim_ds_row_free(&d);
            if (err)
                sim_reply_error(req, 400, "BAD_REQUEST", "%s", err);
            else
                sim_res_reply_db_error(req);
            free(err);
            return;
        }
        d.latest_version++;
        free(d.source);
        d.source = sim_ds_stored_source(req->ws, src, kind, d.label);
        free(d.source_type);
        d.source_type = strdup(kind);
    }
    bool renamed = has_table && strcmp(table_name, d.table_name) != 0;
    if (renamed)
        sim_table_unregister(req->ws, "datasets", d.schema_name, d.table_name);
    if (has_label) {
        free(d.label);
        d.label = strdup(label);
    }
    if (has_table) {
        free(d.table_name);
        d.table_name = strdup(table_name);
    }
    if (pin)
        d.pinned_version = json_is_integer(pin) ? (int)json_integer_value(pin) : 0;
    char now[40];
    sim_now_rfc3339(now, false);
    free(d.updated_at);
    d.updated_at = strdup(now);
    if (sim_ds_save(req->ws, &d) != 0 || sim_ds_register(req->ws, &d) != 0) {
        sim_ds_row_free(&d);
        sim_res_reply_db_error(req);
        return;
    }
    sim_reply_json(req, 200,
                   json_pack("{s:s,s:s,s:i,s:o,s:s,s:s}", "id", d.id, "label", d.label,
                             "latest_version", d.latest_version, "pinned_version",
                             d.pinned_version ? json_integer(d.pinned_version) : json_null(),
                             "table_name", d.table_name, "updated_at", d.updated_at));
    sim_ds_row_free(&d);
}

static void sim_ds_delete(struct sim_req *req)
{
    struct sim_ds_row d;
    if (sim_ds_load_or_404(req, &d) != 0)
        return;
    sim_table_unregister_owner(req->ws, d.id);
    sim_table_scope_set(req->ws, d.id, NULL);
    sim_ds_drop_versions(req->ws, d.id);
    sqlite3_stmt *st =
        sim_db_stmt(req->ws, "DELETE FROM res_dataset_versions WHERE dataset_id = ?1");
    if (st) {
        sqlite3_bind_text(st, 1, d.id, -1, SQLITE_TRANSIENT);
        sim_res_step_done(st);
    }
    int rc = sim_res_exec_id(req->ws, "DELETE FROM res_datasets WHERE id = ?1", d.id);
    sim_ds_row_free(&d);
    sim_res_reply_done(req, rc);
}

static void sim_ds_versions(struct sim_req *req)
{
    struct sim_ds_row d;
    if (sim_ds_load_or_404(req, &d) != 0)
        return;
    long limit, offset;
    if (sim_res_page(req, 100, &limit, &offset) != 0) {
        sim_ds_row_free(&d);
        return;
    }
    sqlite3_stmt *st = sim_db_stmt(req->ws, "SELECT id, version, source_type, created_at,"
                                            " row_count FROM res_dataset_versions WHERE"
                                            " dataset_id = ?1 ORDER BY version DESC"
                                            " LIMIT ?2 OFFSET ?3");
    if (!st) {
        sim_ds_row_free(&d);
        sim_res_reply_db_error(req);
        return;
    }
    sqlite3_bind_text(st, 1, d.id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, limit + 1);
    sqlite3_bind_int64(st, 3, offset);
    json_t *arr = json_array();
    bool more = false;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if ((long)json_array_size(arr) == limit) {
            more = true;
            break;
        }
        json_array_append_new(arr, json_pack("{s:o,s:o,s:o,s:o,s:o}", "created_at",
                                             sim_res_col_json(st, 3), "id", sim_res_col_json(st, 0),
                                             "source_type", sim_res_col_json(st, 2), "version",
                                             sim_res_col_json(st, 1), "row_count",
                                             sim_res_col_json(st, 4)));
    }
    sqlite3_reset(st);
    sim_reply_json(req, 200,
                   json_pack("{s:I,s:s,s:b,s:I,s:I,s:o}", "count", (json_int_t)json_array_size(arr),
                             "dataset_id", d.id, "has_more", more, "limit", (json_int_t)limit,
                             "offset", (json_int_t)offset, "versions", arr));
    sim_ds_row_free(&d);
}

/* ------------------------------------------------------------------------------------ */
/* Refresh (POST /v1/refresh with dataset_id): reload the stored source as a new version  */

static int sim_ds_refresh_now(struct sim_ws *ws, const char *id, char **err)
{
    struct sim_ds_row d;
    if (!sim_ds_load(ws, id, &d))
        return asprintf(err, "Dataset '%s' not found", id), -1;
    json_t *src = json_loads(d.source ? d.source : "{}", 0, NULL);
    int rc = sim_ds_make_version(ws, d.id, d.latest_version + 1, d.source_type, src, err);
    json_decref(src);
    if (rc == 0) {
        d.latest_version++;
        char now[40];
        sim_now_rfc3339(now, false);
        free(d.updated_at);
        d.updated_at = strdup(now);
        if (sim_ds_save(ws, &d) != 0 || sim_ds_register(ws, &d) != 0)
            rc = -1;
    }
    sim_ds_row_free(&d);
    return rc;
}

/* The answer of a dataset refresh (sync answer and dataset_refresh job result), the API's
 * RefreshDatasetResponse: {id (the dataset), version (the new one), status, created_at (of
 * that version)}. NULL when the dataset is gone. */
static json_t *sim_ds_refresh_result(struct sim_ws *ws, const char *id)
{
    struct sim_ds_row d;
    if (!sim_ds_load(ws, id, &d))
        return NULL;
    json_t *created = NULL;
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT created_at FROM res_dataset_versions WHERE"
                                       " dataset_id = ?1 AND version = ?2");
    if (st) {
        sqlite3_bind_text(st, 1, d.id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 2, d.latest_version);
        if (sqlite3_step(st) == SQLITE_ROW)
            created = sim_res_col_json(st, 0);
        sqlite3_reset(st);
    }
    if (!created)
        created = json_string(d.updated_at);
    json_t *o = json_pack("{s:o,s:s,s:s,s:i}", "created_at", created, "id", d.id, "status", "ready",
                          "version", d.latest_version);
    sim_ds_row_free(&d);
    return o;
}

static enum sim_job_status sim_ds_refresh_job(struct sim_ctx *ctx, struct sim_ws *ws,
                                              const char *job_id, json_t *args, json_t **result,
                                              char **error)
{
    const char *id = json_string_value(json_object_get(args, "dataset_id"));
    if (!id) {
        *error = strdup("malformed dataset_refresh job");
        return SIM_JOB_FAILED;
    }
    if (sim_ds_refresh_now(ws, id, error) != 0) {
        if (!*error)
            *error = strdup("dataset refresh failed");
        return SIM_JOB_FAILED;
    }
    *result = sim_ds_refresh_result(ws, id);
    return SIM_JOB_SUCCEEDED;
}

void sim_datasets_refresh(struct sim_req *req, const char *dataset_id, bool async)
{
    struct sim_ds_row d;
    if (!sim_ds_load(req->ws, dataset_id, &d)) {
        sim_reply_error(req, 404, "NOT_FOUND", "Dataset '%s' not found", dataset_id);
        return;
    }
    sim_ds_row_free(&d);
    if (async) {
        char job[64];
        if (sim_job_create(req->ctx, req->ws, "dataset_refresh", sim_ds_refresh_job,
                           json_pack("{s:s}", "dataset_id", dataset_id), job) != 0) {
            sim_res_reply_db_error(req);
            return;
        }
        sim_jobs_reply_accepted(req, job, "dataset_refresh");
        return;
    }
    char *err = NULL;
    if (sim_ds_refresh_now(req->ws, dataset_id, &err) != 0) {
        sim_reply_error(req, 400, "BAD_REQUEST", "%s", err ? err : "Dataset refresh failed");
        free(err);
        return;
    }
    json_t *o = sim_ds_refresh_result(req->ws, dataset_id);
    if (!o) {
        sim_res_reply_db_error(req);
        return;
    }
    sim_reply_json(req, 200, o);
}

void sim_datasets_register(struct sim_router *r)
{
    sim_router_add_schema(r, sim_ds_schema_sql);
    sim_route(r, "GET", "/v1/datasets", sim_ds_list, SIM_ROUTE_DEFAULT);
    sim_route(r, "POST", "/v1/datasets", sim_ds_create, SIM_ROUTE_DEFAULT);
    sim_route(r, "GET", "/v1/datasets/{id}", sim_ds_get, SIM_ROUTE_DEFAULT);
    sim_route(r, "PUT", "/v1/datasets/{id}", sim_ds_update, SIM_ROUTE_DEFAULT);
    sim_route(r, "DELETE", "/v1/datasets/{id}", sim_ds_delete, SIM_ROUTE_DEFAULT);
    sim_route(r, "GET", "/v1/datasets/{id}/versions", sim_ds_versions, SIM_ROUTE_DEFAULT);
}
