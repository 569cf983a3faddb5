/*
 * sim_pg_types (sim/pg_types.c): PostgreSQL values (text format) -> the API's JSON values and
 * the type names stored with a result, which sim/arrow.c turns into Arrow types; quoting of
 * PostgreSQL identifiers.
 *
 * Rules: pure functions.
 */
#ifndef SIM_PG_TYPES_H
#define SIM_PG_TYPES_H

#include <jansson.h>
#include <libpq-fe.h>

/* The API type name of a column of type oid: "int64", "float64", "bool", "decimal",
 * "date32", "timestamp", "timestamptz", "utf8". */
const char *sim_pg_type_name(Oid oid);
/* One cell (PostgreSQL text form) as the API's JSON value; NaN/Infinity -> null. */
json_t *sim_pg_cell_json(Oid oid, const char *text, int len);
/* Quote an identifier for PostgreSQL ("..." with "" escapes), malloc'd. */
char *sim_pg_quote_ident(const char *name);

#endif
