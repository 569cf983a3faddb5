/*
 * profile: column statistics of one table for GET
 * /v1/connections/{id}/tables/{schema}/{table}/profile (connections.c does the lookups and
 * the envelope). The shapes are the API's ColumnProfileInfo / ColumnProfileDetail as the
 * official clients parse them (the reference itself shows only `"profile": null`):
 *   {cardinality, data_type, name, null_count, null_percentage, profile}
 * where profile is tagged by "type" and chosen from the column's type and cardinality
 * (distinct non-null values):
 *   boolean                      {"type":"boolean","true_count":int,"false_count":int}
 *   date / timestamp             {"type":"temporal","min":str,"max":str} (ISO-8601 text)
 *   numeric or text, <= 200      {"type":"categorical","values":[{"value":str|null,
 *                                 "count":int}, ...]} by count descending
 *   numeric, > 200               {"type":"numeric","min":str,"max":str,"mean":number}
 *                                 (min/max as strings: large integers and decimals keep
 *                                 their precision)
 *   text, > 200                  {"type":"text","min_length":int,"max_length":int,
 *                                 "avg_length":number}
 * A temporal column without any value has profile null (there is no min/max to report).
 *
 * Rules: the statistics are plain SQL (count, count DISTINCT, min, max, avg, length, CAST
 * AS TEXT, CASE, GROUP BY) over the table's physical name, all run through sim_prof_rows,
 * the one place that talks to the SQL engine. Loop thread only.
 */
#include "sim.h"
#include "sim_profile.h"
#include "sim_res.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Columns with at most this many distinct values get a categorical profile. */
#define SIM_PROF_CATEGORICAL_MAX 200

enum sim_prof_kind { SIM_PROF_NUMERIC, SIM_PROF_TEXT, SIM_PROF_TEMPORAL, SIM_PROF_BOOLEAN };

/* Statistic slots per column in the one-scan query. */
#define SIM_PROF_SLOTS 5

static enum sim_prof_kind sim_prof_kind_of(const char *data_type)
{
    if (strcmp(data_type, "Int64") == 0 || strcmp(data_type, "Float64") == 0)
        return SIM_PROF_NUMERIC;
    if (strcmp(data_type, "Boolean") == 0)
        return SIM_PROF_BOOLEAN;
    if (strncmp(data_type, "Date", 4) == 0 || strncmp(data_type, "Timestamp", 9) == 0)
        return SIM_PROF_TEMPORAL;
    return SIM_PROF_TEXT;
}

/* Run sql and return its rows as a JSON array of arrays (integers, reals, strings, nulls),
 * or NULL with *err set (malloc'd). */
static json_t *sim_prof_rows(sqlite3 *db, const char *sql, char **err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        *err = strdup(sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return NULL;
    }
    json_t *rows = json_array();
    int n = sqlite3_column_count(st), rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *row = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(row, sim_res_col_json(st, i));
        json_array_append_new(rows, row);
    }
    if (rc != SQLITE_DONE) {
        *err = strdup(sqlite3_errmsg(db));
        json_decref(rows);
        rows = NULL;
    }
    sqlite3_finalize(st);
    return rows;
}

/* The one-scan statistics query: count(*), then per column count(DISTINCT), count and three
 * kind-specific aggregates. */
static char *sim_prof_scan_sql(const char *sqlite_table, json_t *cols)
{
    char *sql;
    size_t len;
    FILE *m = sim_res_sql_open(&sql, &len);
    fputs("SELECT count(*)", m);
    size_t i;
    json_t *col;
    json_array_foreach(cols, i, col)
    {
        char *q = sim_res_quote_ident(json_string_value(json_object_get(col, "name")));
        fprintf(m, ", count(DISTINCT %s), count(%s), ", q, q);
        switch (sim_prof_kind_of(json_string_value(json_object_get(col, "data_type")))) {
        case SIM_PROF_NUMERIC:
            fprintf(m, "CAST(min(%s) AS TEXT), CAST(max(%s) AS TEXT), avg(%s)", q, q, q);
            break;
        case SIM_PROF_TEMPORAL:
            fprintf(m, "CAST(min(%s) AS TEXT), CAST(max(%s) AS TEXT), NULL", q, q);
            break;
        case SIM_PROF_BOOLEAN:
            fprintf(m, "count(CASE WHEN %s THEN 1 END), count(CASE WHEN NOT %s THEN 1 END), NULL",
                    q, q);
            break;
        case SIM_PROF_TEXT:
            fprintf(m, "min(length(%s)), max(length(%s)), avg(length(%s))", q, q, q);
            break;
        }
        free(q);
    }
    fputs(" FROM ", m);
    sim_res_put_ident(m, sqlite_table);
    fclose(m);
    return sql;
}

/* {"type":"categorical","values":[...]}: every distinct value (null included) with its count,
 * most frequent first. NULL with *err on failure. */
static json_t *sim_prof_categorical(sqlite3 *db, const char *sqlite_table, const char *name,
                                    char **err)
{
    char *q = sim_res_quote_ident(name);
    char *sql;
    size_t len;
    FILE *m = sim_res_sql_open(&sql, &len);
    fprintf(m, "SELECT CAST(%s AS TEXT), count(*) FROM ", q);
    sim_res_put_ident(m, sqlite_table);
    fprintf(m, " GROUP BY %s ORDER BY 2 DESC, 1 LIMIT %d", q, SIM_PROF_CATEGORICAL_MAX + 1);
    fclose(m);
    free(q);
    json_t *rows = sim_prof_rows(db, sql, err);
    free(sql);
    if (!rows)
        return NULL;
    json_t *values = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        json_array_append_new(values, json_pack("{s:O,s:O}", "value", json_array_get(row, 0),
                                                "count", json_array_get(row, 1)));
    }
    json_decref(rows);
    return json_pack("{s:s,s:o}", "type", "categorical", "values", values);
}

/* The profile detail of one column from its scan slots s[0..SIM_PROF_SLOTS). */
static json_t *sim_prof_detail(sqlite3 *db, const char *sqlite_table, json_t *col, json_t **s,
                               char **err)
{
    const char *name = json_string_value(json_object_get(col, "name"));
    enum sim_prof_kind kind =
        sim_prof_kind_of(json_string_value(json_object_get(col, "data_type")));
    json_int_t distinct = json_integer_value(s[0]);
    switch (kind) {
    case SIM_PROF_BOOLEAN:
        return json_pack("{s:s,s:I,s:I}", "type", "boolean", "true_count", json_integer_value(s[2]),
                         "false_count", json_integer_value(s[3]));
    case SIM_PROF_TEMPORAL:
        if (!json_is_string(s[2]) || !json_is_string(s[3]))
            return json_null();
        return json_pack("{s:s,s:O,s:O}", "type", "temporal", "min", s[2], "max", s[3]);
    case SIM_PROF_NUMERIC:
    case SIM_PROF_TEXT:
        break;
    }
    if (distinct <= SIM_PROF_CATEGORICAL_MAX)
        return sim_prof_categorical(db, sqlite_table, name, err);
    if (kind == SIM_PROF_NUMERIC)
        return json_pack("{s:s,s:O,s:O,s:f}", "type", "numeric", "min", s[2], "max", s[3], "mean",
                         json_number_value(s[4]));
    return json_pack("{s:s,s:I,s:I,s:f}", "type", "text", "min_length", json_integer_value(s[2]),
                     "max_length", json_integer_value(s[3]), "avg_length", json_number_value(s[4]));
}

json_t *sim_profile_columns(sqlite3 *db, const char *sqlite_table, json_t *cols,
                            long long *row_count, char **err)
{
    *err = NULL;
    char *sql = sim_prof_scan_sql(sqlite_table, cols);
    json_t *rows = sim_prof_rows(db, sql, err);
    free(sql);
    if (!rows)
        return NULL;
    json_t *scan = json_array_get(rows, 0);
    json_int_t total = json_integer_value(json_array_get(scan, 0));
    *row_count = total;
    json_t *out = json_array();
    size_t i;
    json_t *col;
    json_array_foreach(cols, i, col)
    {
        json_t *s[SIM_PROF_SLOTS];
        for (int k = 0; k < SIM_PROF_SLOTS; k++)
            s[k] = json_array_get(scan, 1 + i * SIM_PROF_SLOTS + (size_t)k);
        json_int_t nulls = total - json_integer_value(s[1]);
        json_t *detail = sim_prof_detail(db, sqlite_table, col, s, err);
        if (!detail) {
            json_decref(out);
            out = NULL;
            break;
        }
        json_array_append_new(
            out, json_pack("{s:I,s:O,s:O,s:I,s:f,s:o}", "cardinality", json_integer_value(s[0]),
                           "data_type", json_object_get(col, "data_type"), "name",
                           json_object_get(col, "name"), "null_count", nulls, "null_percentage",
                           total ? (double)nulls * 100.0 / (double)total : 0.0, "profile", detail));
    }
    json_decref(rows);
    return out;
}
