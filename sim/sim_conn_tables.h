/*
 * sim_conn_tables (sim/conn_tables.c): the tables a connection's discovery registered, as
 * rows of the core catalog sim_tables (kind 'connection'). Used by connections (table
 * endpoints) and indexes (which table an index belongs to), so neither calls the other
 * for it.
 *
 * Rules: loop thread only; strings in struct sim_conn_table are malloc'd and owned by it.
 */
#ifndef SIM_CONN_TABLES_H
#define SIM_CONN_TABLES_H

#include "sim_types.h"

struct sim_conn_table {
    char *sqlite_table;
    char *schema;
    char *table;
    int synced;
    char *last_sync;
};

/* 1 and *out filled when connection conn_id has schema.table (names case-insensitive),
 * else 0 (*out zeroed). */
int sim_conn_table_load(struct sim_ws *ws, const char *conn_id, const char *schema,
                        const char *table, struct sim_conn_table *out);
void sim_conn_table_free(struct sim_conn_table *t);
/* 1 and the real SQLite table (malloc'd) of a connection's schema.table, 0 when unknown. */
int sim_conn_table_sqlite(struct sim_ws *ws, const char *conn_id, const char *schema,
                          const char *table, char **sqlite_table);

#endif
