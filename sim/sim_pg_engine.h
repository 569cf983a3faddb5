/*
 * sim_pg_engine (sim/pg_engine.c): the PostgreSQL side of the simulator's user data: the
 * engine object (cluster or --pg-url, admin connection, query pool), per-workspace roles and
 * schemas, the mirror of queryable tables (SQLite -> PostgreSQL), the metadata views behind
 * information_schema, and blocking queries on the admin connection.
 *
 * Rules: loop thread only (open/close before and after the loop).
 */
#ifndef SIM_PG_ENGINE_H
#define SIM_PG_ENGINE_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "sim_int.h"
#include "sim_pg_cluster.h"
#include "sim_pg_exec.h"

struct sim_pg_pool;

struct sim_pg {
    struct sim_pg_cluster cluster; /* pid 0 when --pg-url is used */
    char *conninfo;
    PGconn *admin;   /* blocking connection for DDL, mirroring and metadata */
    char tag[16];    /* per-data-dir prefix of role and schema names: several simulators may
                        share one server (--pg-url) */
    char meta[40];   /* metadata schema: "<tag>_meta" */
    char reader[48]; /* role every workspace role is a member of (reads the metadata) */
    struct sim_pg_pool *pool;
};

/* Start the engine for ctx (cluster or --pg-url, admin connection, pool). 0 or -1. */
int sim_pg_open(struct sim_ctx *ctx);
void sim_pg_close(struct sim_ctx *ctx);
/* The role of a workspace ("<tag>_w<hash>"), out 64 bytes. */
void sim_pg_ws_role(struct sim_pg *pg, const char *ws_id, char out[64]);
/* The schema holding catalog.schema of ws ("<tag>_<hash>"), out 64 bytes. */
void sim_pg_schema_name(struct sim_pg *pg, const char *ws_id, const char *catalog,
                        const char *schema, char out[64]);
/* The PostgreSQL table name of an API table name (lower case, as a bare name would fold). */
void sim_pg_table_name(const char *table, char out[64]);
/* Make sure ws's role exists (idempotent). 0 or -1. */
int sim_pg_ws_prepare(struct sim_pg *pg, struct sim_ws *ws);
/* Drop everything ws has in PostgreSQL (its schemas; POST /_sim/reset?data=1). */
void sim_pg_ws_drop(struct sim_pg *pg, struct sim_ws *ws);

/* Mirror the SQLite table sqlite_table of ws as catalog.schema.table (replacing it). */
int sim_pg_mirror_table(struct sim_pg *pg, struct sim_ws *ws, const char *catalog,
                        const char *schema, const char *table, const char *sqlite_table);
/* The same for a table of the deterministic demo seed: copied inside PostgreSQL from the
 * server's seed cache for seed_key when it is there, else mirrored and cached. */
int sim_pg_mirror_seeded(struct sim_pg *pg, struct sim_ws *ws, const char *catalog,
                         const char *schema, const char *table, const char *sqlite_table,
                         const char *seed_key);
/* Append the rows of sqlite_table matching where (SQLite SQL) to the mirror. */
int sim_pg_mirror_append(struct sim_pg *pg, struct sim_ws *ws, const char *catalog,
                         const char *schema, const char *table, const char *sqlite_table,
                         const char *where);
/* UPDATE the mirror of catalog.schema.table SET set (may use $1 = arg; arg NULL: none). */
int sim_pg_table_update(struct sim_pg *pg, struct sim_ws *ws, const char *catalog,
                        const char *schema, const char *table, const char *set, const char *arg);
bool sim_pg_has_table(struct sim_pg *pg, struct sim_ws *ws, const char *catalog, const char *schema,
                      const char *table);
int sim_pg_drop_table(struct sim_pg *pg, struct sim_ws *ws, const char *catalog, const char *schema,
                      const char *table);
/* Run SQL on the admin connection (no results); 0 or -1 (logged). */
int sim_pg_admin_exec(struct sim_pg *pg, const char *sql);

/* Run sql read-only as role on the admin connection, blocking (dataset materialisation).
 * 0 and *out, or -1 and *err (malloc'd, PostgreSQL's message). */
int sim_pg_query_sync(struct sim_pg *pg, const char *role, const char *sql,
                      struct sim_pg_result *out, char **err);

#endif
