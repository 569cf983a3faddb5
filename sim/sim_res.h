/*
 * sim_res: pure helpers and cross-file hooks shared by the simulator's resource areas
 * (workspaces, connections, secrets, embedding providers, indexes, uploads, datasets,
 * saved queries).
 *
 * Rules: the pure helpers here (SQL classifier, label -> table name, CSV/JSON tabular
 * parsing and type inference) touch no global state, so they are unit tested directly
 * (tests/unit/test_sim_classify.c, test_sim_tabular.c). Strings they return are malloc'd
 * and owned by the caller. Cross-area hooks run on the simulator's event-loop thread only.
 */
#ifndef SIM_RES_H
#define SIM_RES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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
    int error;    /* set on an unterminated quote */
    long line;    /* 1-based line of the current record's start */
} sim_csv;

void sim_csv_init(sim_csv *c, FILE *f);
/* 1 when a record was read into c->fields/nfields, 0 at EOF, -1 on a malformed record. A
 * blank line is returned as a record with one empty field. */
int sim_csv_next(sim_csv *c);
void sim_csv_free(sim_csv *c);

#endif
