/*
 * sim_res: pure helpers and common handler steps shared by the simulator's resource areas
 * (workspaces, connections, secrets, embedding providers, indexes, uploads, datasets,
 * saved queries).
 *
 * Rules: the pure helpers here (SQL classifier, label -> table name, CSV/JSON tabular
 * parsing and type inference) touch no global state, so they are unit tested directly
 * (tests/unit/test_sim_classify.c, test_sim_tabular.c). Strings they return are malloc'd
 * and owned by the caller. What one area offers another is in that area's sim_<file>.h.
 */
#ifndef SIM_RES_H
#define SIM_RES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sim_types.h"

/* ---- saved-query classifier (sim/sq_classify.c) ---- */
typedef struct sim_sq_class {
    int has_join;
    int has_aggregation;
    int has_group_by;
    int has_limit;
    int has_order_by;
    int has_predicate;
    int num_tables;       /* distinct base tables referenced (CTE names excluded) */
    const char *category; /* static string: "join", "aggregation", "filtered_scan", "scan",
                             "other" (no table at all) */
} sim_sq_class;

/* Classify sql[0..len) with a tokenizer: keywords inside string literals, quoted
 * identifiers and comments never count. Never fails; garbage classifies as "other". */
void sim_sq_classify(const char *sql, size_t len, sim_sq_class *out);

/* ---- datasets: names (sim/ds_parse.c) ---- */

/* Table name derived from a dataset label: ASCII letters lowercased, digits and '_' kept,
 * every other byte becomes '_'. An empty label gives "dataset". malloc'd. */
char *sim_ds_table_name_from_label(const char *label);

/* 1 when name is usable as a dataset table / schema name: [A-Za-z_][A-Za-z0-9_]{0,62}. */
int sim_ds_valid_ident(const char *name);

/* ---- datasets: tabular parsing and type inference (sim/ds_parse.c) ---- */
enum sim_ds_type { SIM_DS_NULL = 0, SIM_DS_BOOL, SIM_DS_INT, SIM_DS_FLOAT, SIM_DS_TEXT };

/* Arrow-style type name the API shows for a column type: Boolean, Int64, Float64, Utf8. */
const char *sim_ds_type_name(enum sim_ds_type t);

/* The narrowest type of one textual value ("" -> SIM_DS_NULL). */
enum sim_ds_type sim_ds_value_type(const char *s);

/* Widen a column type a by a value type b (NULL never widens; INT+FLOAT -> FLOAT; any
 * other mix -> TEXT). */
enum sim_ds_type sim_ds_type_merge(enum sim_ds_type a, enum sim_ds_type b);

/* RFC 4180 CSV reader over a FILE*: quoted fields with "" escapes, CRLF or LF line ends,
 * embedded newlines in quotes. One record at a time. */
typedef struct sim_csv {
    FILE *f;
    char **fields; /* fields of the current record, NUL-terminated, owned by the reader */
    size_t nfields;
    size_t cap_fields;
    char *buf; /* backing store of the current record */
    size_t buf_len, buf_cap;
    size_t *offs; /* field start offsets into buf */
    int error;    /* SIM_CSV_ERR_QUOTE or SIM_CSV_ERR_LONG after sim_csv_next returned -1 */
    long line;    /* 1-based line of the current record's start */
} sim_csv;

/* A record (all its fields) may not exceed this many bytes: a file without line breaks
 * must not turn into one huge allocation. */
#define SIM_CSV_MAX_RECORD (16u * 1024 * 1024)
enum { SIM_CSV_ERR_QUOTE = 1, SIM_CSV_ERR_LONG = 2 };

void sim_csv_init(sim_csv *c, FILE *f);
/* 1 when a record was read into c->fields/nfields, 0 at EOF, -1 on a malformed record
 * (unterminated quote, or longer than SIM_CSV_MAX_RECORD: see c->error). A blank line is
 * returned as a record with one empty field. */
int sim_csv_next(sim_csv *c);
void sim_csv_free(sim_csv *c);

/* ---- shared by the resource areas (sim/res_common.c) ---- */
/* Column i of a row as JSON: integer, real, string or null. New reference. */
json_t *sim_res_col_json(sqlite3_stmt *st, int i);
/* Column i as text, NULL for SQL NULL (valid until the next step/reset). */
const char *sim_res_col_text(sqlite3_stmt *st, int i);
/* The same, malloc'd (NULL for SQL NULL). */
char *sim_res_col_dup(sqlite3_stmt *st, int i);
/* String or JSON null (never fails). */
json_t *sim_res_str_or_null(const char *s);
/* Largest page of every list endpoint: the reference's "max: 1000" (results, datasets,
 * dataset versions), runtimedb's MAX_LIMIT for the others. */
#define SIM_LIST_MAX_LIMIT 1000L
/* The `limit` query parameter of a list endpoint: absent or empty -> def; an integer above
 * SIM_LIST_MAX_LIMIT (however large) is clamped to it, as the service does, never refused;
 * below 1 or not an integer: replies 400 and returns -1. */
int sim_res_query_limit(struct sim_req *req, long def, long *limit);
/* limit (sim_res_query_limit) / offset query parameters. Replies 400 and returns -1 when
 * invalid. */
int sim_res_page(struct sim_req *req, long def, long *limit, long *offset);
/* An open_memstream FILE for building SQL text into *buf (abort on OOM); fclose it, then
 * *buf is the NUL-terminated text (caller frees). */
FILE *sim_res_sql_open(char **buf, size_t *len);
/* Write name to m as a quoted SQL identifier ("a""b"). */
void sim_res_put_ident(FILE *m, const char *name);
/* Run select_sql (one text parameter: key), and DROP <what> IF EXISTS each name it returns
 * (what: "TABLE" or "INDEX"). */
void sim_res_drop_listed(sqlite3 *db, const char *what, const char *select_sql, const char *key);
/* "ident" with embedded quotes doubled, malloc'd: safe to splice into SQL. */
char *sim_res_quote_ident(const char *name);
/* The API data type of a SQLite declared column type (INTEGER -> Int64, ...). */
const char *sim_res_decl_type(const char *decl);
/* Columns of a real SQLite table as [{name, data_type, nullable}], NULL when the table does
 * not exist. nullable is true unless the column is declared NOT NULL. */
json_t *sim_res_table_columns(sqlite3 *db, const char *sqlite_table);
/* 1 when SQLite table sqlite_table has a column named col (case-insensitive); *decl
 * (optional) gets a malloc'd copy of its declared type. */
int sim_res_table_has_column(sqlite3 *db, const char *sqlite_table, const char *col, char **decl);
/* Query parameter boolean: absent -> def; "true"/"1" / "false"/"0"; else replies 400, -1. */
int sim_res_query_bool(struct sim_req *req, const char *name, bool def, bool *out);
/* Run a statement to completion (no rows expected) and reset it: SQLITE_DONE or the error. */
int sim_res_step_done(sqlite3_stmt *st);
/* Reply 500 with the database's error message. */
void sim_res_reply_db_error(struct sim_req *req);
/* GET of one resource: run sql (id as ?1) and answer 200 with row(st) of its first row, 404
 * "<what> '<id>' not found" when there is none, 500 on a database error. */
void sim_res_reply_row(struct sim_req *req, const char *sql, const char *id,
                       json_t *(*row)(sqlite3_stmt *st), const char *what);
/* Run a cached statement whose only parameter ?1 is id: SQLITE_DONE or the error. */
int sim_res_exec_id(struct sim_ws *ws, const char *sql, const char *id);
/* The end of a delete/purge handler: 204 when rc is SQLITE_DONE, else the database error. */
void sim_res_reply_done(struct sim_req *req, int rc);

#endif
