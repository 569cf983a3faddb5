/*
 * conn_tables: the tables a connection's discovery registered, looked up in the core
 * catalog sim_tables (kind 'connection'). Shared by connections.c and indexes.c.
 *
 * Rules: loop thread only; see sim_conn_tables.h.
 */
#include "sim_conn_tables.h"
#include "sim_res.h"
#include "sim_store.h"

#include <stdlib.h>
#include <string.h>

void sim_conn_table_free(struct sim_conn_table *t)
{
    free(t->sqlite_table);
    free(t->schema);
    free(t->table);
    free(t->last_sync);
}

int sim_conn_table_load(struct sim_ws *ws, const char *conn_id, const char *schema,
                        const char *table, struct sim_conn_table *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = sim_db_stmt(
        ws, "SELECT sqlite_table, schema_name, table_name, synced, last_sync FROM sim_tables"
            " WHERE owner_id = ?1 AND kind = 'connection' AND schema_name = ?2 COLLATE NOCASE"
            " AND table_name = ?3 COLLATE NOCASE");
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, conn_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, schema, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, table, -1, SQLITE_TRANSIENT);
    int found = sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        out->sqlite_table = strdup((const char *)sqlite3_column_text(st, 0));
        out->schema = strdup((const char *)sqlite3_column_text(st, 1));
        out->table = strdup((const char *)sqlite3_column_text(st, 2));
        out->synced = sqlite3_column_int(st, 3);
        const char *ls = sim_res_col_text(st, 4);
        out->last_sync = ls ? strdup(ls) : NULL;
    }
    sqlite3_reset(st);
    return found;
}

int sim_conn_table_sqlite(struct sim_ws *ws, const char *conn_id, const char *schema,
                          const char *table, char **sqlite_table)
{
    struct sim_conn_table t;
    if (!sim_conn_table_load(ws, conn_id, schema, table, &t))
        return 0;
    *sqlite_table = t.sqlite_table;
    t.sqlite_table = NULL;
    sim_conn_table_free(&t);
    return 1;
}
