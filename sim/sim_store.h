/*
 * sim_store (sim/store.c): the simulator's SQLite layer: workspaces and their database
 * files, the prepared-statement cache, the demo seed, and the registry of SQL-queryable
 * tables ("catalog.schema.table" in user SQL -> a real SQLite table).
 *
 * Rules: loop thread only; see sim/store.c for the storage layout.
 */
#ifndef SIM_STORE_H
#define SIM_STORE_H

#include "sim_types.h"

/* ---- workspaces ---- */

/* Workspace by id, NULL when unknown. */
struct sim_ws *sim_ws_find(struct sim_ctx *ctx, const char *id);
/* Number of workspaces and the i-th one (creation order). */
size_t sim_ws_count(struct sim_ctx *ctx);
struct sim_ws *sim_ws_at(struct sim_ctx *ctx, size_t i);
/* Create a workspace at runtime (new id "ws_..."), persist it in DIR/sim.db, open and seed
 * its database; the creating token gains access to it. NULL on failure. */
struct sim_ws *sim_ws_create(struct sim_ctx *ctx, const char *name, struct sim_token *creator);

/* ---- statements ---- */

/*
 * A cached prepared statement for sql on ws->db (keyed by the SQL text), reset and with
 * bindings cleared. Never finalize it; call sqlite3_reset(stmt) when done so read
 * transactions end. Returns NULL (and logs) when the SQL does not prepare.
 */
sqlite3_stmt *sim_db_stmt(struct sim_ws *ws, const char *sql);
/* Run SQL without results (DDL, multi-statement). 0 on success, -1 (logged) on error. */
int sim_db_exec(sqlite3 *db, const char *sql);

/* ---- queryable tables ---- */

/*
 * Make catalog.schema.table queryable in ws (catalog: connection name, or "datasets" for
 * datasets). kind "connection" | "dataset"; owner_id: connection id / dataset id. Replaces
 * an existing mapping of the same name. Names match case-insensitively. 0 on success.
 */
int sim_table_register(struct sim_ws *ws, const char *kind, const char *owner_id,
                       const char *catalog, const char *schema, const char *table,
                       const char *sqlite_table, bool synced);
int sim_table_unregister(struct sim_ws *ws, const char *catalog, const char *schema,
                         const char *table);
/* Remove every mapping of one owner (connection or dataset); returns how many. */
int sim_table_unregister_owner(struct sim_ws *ws, const char *owner_id);
/* The SQLite table for catalog.schema.table, malloc'd, NULL when unknown. */
char *sim_table_resolve(struct sim_ws *ws, const char *catalog, const char *schema,
                        const char *table);

/* ---- lifecycle (main.c, server.c, control.c, refresh.c) ---- */

int sim_store_open(struct sim_ctx *ctx);
void sim_store_close(struct sim_ctx *ctx);
int sim_store_reset_data(struct sim_ctx *ctx);
int sim_store_seed_demo(struct sim_ws *ws, long orders);
void sim_stmt_cache_free(struct sim_stmt_cache *c);
/* Append/advance seeded demo table data for a data refresh; returns rows touched. */
long sim_store_refresh_table(struct sim_ws *ws, const char *sqlite_table);

#endif
