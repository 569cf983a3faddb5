/*
 * store: the simulator's SQLite layer. Opens DIR/sim.db (the workspace list) and one
 * DIR/ws/<id>.db per workspace, creates the core schema (see sim.h), seeds the demo
 * connection and its tables on the first start of a data dir (one transaction, one prepared
 * statement per table, deterministic data so every workspace starts identical), keeps a
 * prepared-statement cache per workspace, and maps "catalog.schema.table" names to SQLite
 * tables for the SQL rewriter.
 *
 * Rules: loop thread only. A workspace's sqlite3 handle lives as long as the process (it is
 * swapped, never freed, by POST /_sim/reset?data=1, which recreates the file). Cached
 * statements are finalized before their handle closes.
 */
#include "sim_int.h"
#include "sim_store.h"
#include "sim_util.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIM_STMT_BUCKETS 128

struct sim_stmt_ent {
    char *sql;
    sqlite3_stmt *st;
    struct sim_stmt_ent *next;
};

struct sim_stmt_cache {
    struct sim_stmt_ent *b[SIM_STMT_BUCKETS];
};

static const char sim_core_schema[] =
    "CREATE TABLE IF NOT EXISTS sim_meta(key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE IF NOT EXISTS connections(id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " source_type TEXT NOT NULL, config TEXT NOT NULL DEFAULT '{}', secret_id TEXT,"
    " created_at TEXT NOT NULL, discovered_at TEXT);"
    "CREATE TABLE IF NOT EXISTS sim_tables(catalog TEXT NOT NULL COLLATE NOCASE,"
    " schema_name TEXT NOT NULL COLLATE NOCASE, table_name TEXT NOT NULL COLLATE NOCASE,"
    " kind TEXT NOT NULL, owner_id TEXT NOT NULL, sqlite_table TEXT NOT NULL,"
    " synced INTEGER NOT NULL DEFAULT 1, last_sync TEXT, discovered_at TEXT,"
    " PRIMARY KEY(catalog, schema_name, table_name));"
    "CREATE TABLE IF NOT EXISTS res_databases(id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " created_at TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS sim_table_scope(owner_id TEXT PRIMARY KEY,"
    " database_id TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS query_runs(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, sql_text TEXT NOT NULL,"
    " sql_hash TEXT NOT NULL, created_at TEXT NOT NULL, completed_at TEXT,"
    " error_message TEXT, execution_time_ms INTEGER, result_id TEXT, row_count INTEGER,"
    " saved_query_id TEXT, saved_query_version INTEGER, server_processing_ms INTEGER,"
    " snapshot_id TEXT NOT NULL, trace_id TEXT, user_public_id TEXT, warning_message TEXT);"
    "CREATE INDEX IF NOT EXISTS query_runs_status ON query_runs(status);"
    "CREATE TABLE IF NOT EXISTS results(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, created_at TEXT NOT NULL,"
    " error_message TEXT, query_run_id TEXT, row_count INTEGER, data TEXT,"
    " processing_at INTEGER, ready_at INTEGER);"
    "CREATE TABLE IF NOT EXISTS sim_jobs(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT NOT NULL UNIQUE, job_type TEXT NOT NULL, status TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, completed_at TEXT,"
    " error_message TEXT, result TEXT);";

static const char sim_demo_schema[] =
    "CREATE TABLE IF NOT EXISTS \"demo.public.customers\"(id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL, email TEXT NOT NULL, country TEXT NOT NULL, segment TEXT,"
    " created_at TEXT NOT NULL, is_active BOOLEAN NOT NULL, synced_at TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS \"demo.public.products\"(id INTEGER PRIMARY KEY,"
    " sku TEXT NOT NULL, name TEXT NOT NULL, category TEXT NOT NULL, price DOUBLE NOT NULL,"
    " stock INTEGER NOT NULL, description TEXT, synced_at TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS \"demo.public.orders\"(id INTEGER PRIMARY KEY,"
    " customer_id INTEGER NOT NULL, product_id INTEGER NOT NULL, quantity INTEGER NOT NULL,"
    " amount DOUBLE NOT NULL, status TEXT NOT NULL, ordered_at TEXT NOT NULL, note TEXT,"
    " synced_at TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS \"demo.public.orders.customer\" ON"
    " \"demo.public.orders\"(customer_id);";

#define SIM_DEMO_CUSTOMERS 1000
#define SIM_DEMO_PRODUCTS 200
#define SIM_SEED_TIME "2026-01-01T00:00:00.000Z"

int sim_db_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        sim_log("sqlite: %s", err ? err : "error");
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

/* ---- statement cache ---- */

static size_t sim_str_hash(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

sqlite3_stmt *sim_db_stmt(struct sim_ws *ws, const char *sql)
{
    if (!ws->stmts) {
        ws->stmts = calloc(1, sizeof *ws->stmts);
        if (!ws->stmts)
            abort();
    }
    size_t b = sim_str_hash(sql) % SIM_STMT_BUCKETS;
    for (struct sim_stmt_ent *e = ws->stmts->b[b]; e; e = e->next) {
        if (e->sql == sql || strcmp(e->sql, sql) == 0) {
            sqlite3_reset(e->st);
            sqlite3_clear_bindings(e->st);
            return e->st;
        }
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(ws->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        sim_log("sqlite prepare failed: %s: %s", sqlite3_errmsg(ws->db), sql);
        sqlite3_finalize(st);
        return NULL;
    }
    struct sim_stmt_ent *e = calloc(1, sizeof *e);
    if (!e)
        abort();
    e->sql = sim_strdup(sql);
    e->st = st;
    e->next = ws->stmts->b[b];
    ws->stmts->b[b] = e;
    return st;
}

void sim_stmt_cache_free(struct sim_stmt_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < SIM_STMT_BUCKETS; i++) {
        struct sim_stmt_ent *e = c->b[i];
        while (e) {
            struct sim_stmt_ent *n = e->next;
            sqlite3_finalize(e->st);
            free(e->sql);
            free(e);
            e = n;
        }
    }
    free(c);
}

/* ---- deterministic demo data ---- */

struct sim_prng {
    uint64_t s;
};

static uint64_t sim_prng_next(struct sim_prng *p)
{
    /* splitmix64 */
    uint64_t z = (p->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static const char *const sim_first[] = {"Ada",     "Grace",   "Alan",  "Edsger",    "Barbara",
                                        "Linus",   "Ken",     "Donna", "Radia",     "Margaret",
                                        "Niklaus", "Frances", "John",  "Katherine", "Leslie"};
static const char *const sim_last[] = {"Lovelace", "Hopper",   "Turing",     "Dijkstra", "Liskov",
                                       "Torvalds", "Thompson", "Strickland", "Perlman",  "Hamilton",
                                       "Wirth",    "Allen",    "Backus",     "Johnson",  "Lamport"};
static const char *const sim_countries[] = {"US", "DE", "FR", "GB", "JP",
                                            "BR", "IN", "CA", "NL", "SE"};
static const char *const sim_segments[] = {"enterprise", "smb", "consumer"};
static const char *const sim_categories[] = {"books", "electronics", "garden",
                                             "toys",  "grocery",     "sports"};
static const char *const sim_statuses[] = {"pending", "paid", "shipped", "delivered", "cancelled"};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Day offset -> "2025-MM-DDTHH:MM:SSZ" (simple, within 2025). */
static void sim_seed_ts(uint64_t r, char out[32])
{
    int64_t t = 1735689600 + (int64_t)(r % (365ULL * 86400ULL)); /* 2025-01-01 + < 1 year */
    util_rfc3339(t, out);
}

static void sim_seed_order_row(sqlite3_stmt *st, long id, struct sim_prng *p, const char *synced)
{
    char ts[32];
    uint64_t r = sim_prng_next(p);
    long customer = 1 + (long)(r % SIM_DEMO_CUSTOMERS);
    long product = 1 + (long)((r >> 16) % SIM_DEMO_PRODUCTS);
    long qty = 1 + (long)((r >> 32) % 5);
    double unit = 5.0 + (double)((product * 37) % 200) + 0.99;
    sim_seed_ts(sim_prng_next(p), ts);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, customer);
    sqlite3_bind_int64(st, 3, product);
    sqlite3_bind_int64(st, 4, qty);
    sqlite3_bind_double(st, 5, (double)((long)(unit * (double)qty * 100.0 + 0.5)) / 100.0);
    sqlite3_bind_text(st, 6, sim_statuses[(r >> 40) % NELEM(sim_statuses)], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, ts, -1, SQLITE_TRANSIENT);
    if ((r >> 48) % 10 == 0)
        sqlite3_bind_text(st, 8, "gift wrap", -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 8);
    sqlite3_bind_text(st, 9, synced, -1, SQLITE_TRANSIENT);
}

static void sim_seed_customer_row(sqlite3_stmt *st, long id, struct sim_prng *p, const char *synced)
{
    char name[64], email[96], ts[32];
    uint64_t r = sim_prng_next(p);
    const char *f = sim_first[r % NELEM(sim_first)];
    const char *l = sim_last[(r >> 8) % NELEM(sim_last)];
    snprintf(name, sizeof name, "%s %s", f, l);
    snprintf(email, sizeof email, "%c.%s%ld@example.com", f[0] | 0x20, l, id);
    for (char *c = email; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c | 0x20);
    sim_seed_ts(sim_prng_next(p), ts);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, email, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, sim_countries[(r >> 16) % NELEM(sim_countries)], -1, SQLITE_STATIC);
    if ((r >> 24) % 8 == 0)
        sqlite3_bind_null(st, 5);
    else
        sqlite3_bind_text(st, 5, sim_segments[(r >> 28) % NELEM(sim_segments)], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, ts, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 7, (r >> 36) % 10 != 0);
    sqlite3_bind_text(st, 8, synced, -1, SQLITE_TRANSIENT);
}

static int sim_step_done(sqlite3 *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        sim_log("sqlite insert: %s", sqlite3_errmsg(db));
        return -1;
    }
    return 0;
}

int sim_store_seed_demo(struct sim_ws *ws, long orders)
{
    sqlite3 *db = ws->db;
    if (sim_db_exec(db, "BEGIN") < 0)
        return -1;
    if (sim_db_exec(db, sim_demo_schema) < 0)
        goto fail;
    struct sim_prng p = {.s = 20260101};
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "INSERT INTO \"demo.public.customers\" VALUES(?,?,?,?,?,?,?,?)", -1,
                           &st, NULL) != SQLITE_OK)
        goto fail;
    for (long i = 1; i <= SIM_DEMO_CUSTOMERS; i++) {
        sim_seed_customer_row(st, i, &p, SIM_SEED_TIME);
        if (sim_step_done(db, st) < 0)
            goto fail_st;
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(db, "INSERT INTO \"demo.public.products\" VALUES(?,?,?,?,?,?,?,?)", -1,
                           &st, NULL) != SQLITE_OK)
        goto fail;
    for (long i = 1; i <= SIM_DEMO_PRODUCTS; i++) {
        uint64_t r = sim_prng_next(&p);
        char sku[32], name[96];
        const char *cat = sim_categories[r % NELEM(sim_categories)];
        snprintf(sku, sizeof sku, "SKU-%05ld", i);
        snprintf(name, sizeof name, "%c%s item %ld", cat[0] & ~0x20, cat + 1, i);
        sqlite3_bind_int64(st, 1, i);
        sqlite3_bind_text(st, 2, sku, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, cat, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 5, 5.0 + (double)((i * 37) % 200) + 0.99);
        sqlite3_bind_int64(st, 6, (long)((r >> 8) % 500));
        if ((r >> 20) % 5 == 0)
            sqlite3_bind_null(st, 7);
        else
            sqlite3_bind_text(st, 7, "A fine product for everyday use", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 8, SIM_SEED_TIME, -1, SQLITE_STATIC);
        if (sim_step_done(db, st) < 0)
            goto fail_st;
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(db, "INSERT INTO \"demo.public.orders\" VALUES(?,?,?,?,?,?,?,?,?)", -1,
                           &st, NULL) != SQLITE_OK)
        goto fail;
    for (long i = 1; i <= orders; i++) {
        sim_seed_order_row(st, i, &p, SIM_SEED_TIME);
        if (sim_step_done(db, st) < 0)
            goto fail_st;
    }
    sqlite3_finalize(st);
    st = NULL;

    char now[40];
    sim_now_rfc3339(now, false);
    sqlite3_stmt *c = NULL;
    if (sqlite3_prepare_v2(
            db,
            "INSERT OR REPLACE INTO connections(id,name,source_type,config,"
            "created_at,discovered_at) VALUES('conn_demo','demo','postgres',"
            "'{\"host\":\"demo.internal\",\"port\":5432,\"database\":\"demo\"}',?,?)",
            -1, &c, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(c, 1, SIM_SEED_TIME, -1, SQLITE_STATIC);
    sqlite3_bind_text(c, 2, now, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(c);
    sqlite3_finalize(c);
    if (rc != SQLITE_DONE)
        goto fail;
    static const char *const tables[] = {"customers", "orders", "products"};
    for (size_t i = 0; i < NELEM(tables); i++) {
        char sqlname[128];
        snprintf(sqlname, sizeof sqlname, "demo.public.%s", tables[i]);
        if (sim_table_register(ws, "connection", "conn_demo", "demo", "public", tables[i], sqlname,
                               true) < 0)
            goto fail;
    }
    if (sim_db_exec(db, "UPDATE sim_tables SET last_sync = '" SIM_SEED_TIME
                        "' WHERE owner_id = 'conn_demo'") < 0)
        goto fail;
    if (sim_db_exec(db, "COMMIT") < 0)
        goto fail;
    return 0;
fail_st:
    sqlite3_finalize(st);
fail:
    sim_log("seeding workspace %s failed: %s", ws->id, sqlite3_errmsg(db));
    sim_db_exec(db, "ROLLBACK");
    return -1;
}

/* Does the SQLite table have a column named col? */
static bool sim_table_has_column(sqlite3 *db, const char *table, const char *col)
{
    return sqlite3_table_column_metadata(db, NULL, table, col, NULL, NULL, NULL, NULL, NULL) ==
           SQLITE_OK;
}

static char *sim_quote_ident(const char *name)
{
    size_t n = strlen(name);
    char *q = malloc(2 * n + 3);
    if (!q)
        abort();
    size_t j = 0;
    q[j++] = '"';
    for (size_t i = 0; i < n; i++) {
        if (name[i] == '"')
            q[j++] = '"';
        q[j++] = name[i];
    }
    q[j++] = '"';
    q[j] = '\0';
    return q;
}

long sim_store_refresh_table(struct sim_ws *ws, const char *sqlite_table)
{
    sqlite3 *db = ws->db;
    char now[40];
    sim_now_rfc3339(now, true);
    long touched = 0;
    char *q = sim_quote_ident(sqlite_table);
    char sql[512];
    sim_db_exec(db, "BEGIN");
    if (strcmp(sqlite_table, "demo.public.orders") == 0) {
        /* new orders arrive with every sync: counts and sums change */
        sqlite3_stmt *st = NULL;
        long max = 0;
        if (sqlite3_prepare_v2(db, "SELECT coalesce(max(id),0) FROM \"demo.public.orders\"", -1,
                               &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            max = (long)sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        st = NULL;
        if (sqlite3_prepare_v2(db, "INSERT INTO \"demo.public.orders\" VALUES(?,?,?,?,?,?,?,?,?)",
                               -1, &st, NULL) == SQLITE_OK) {
            struct sim_prng p = {.s = (uint64_t)max * 7919u + 1};
            for (long i = 1; i <= 10; i++) {
                sim_seed_order_row(st, max + i, &p, now);
                if (sim_step_done(db, st) == 0)
                    touched++;
            }
        }
        sqlite3_finalize(st);
    } else if (strcmp(sqlite_table, "demo.public.customers") == 0) {
        sqlite3_stmt *st = NULL;
        long max = 0;
        if (sqlite3_prepare_v2(db, "SELECT coalesce(max(id),0) FROM \"demo.public.customers\"", -1,
                               &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            max = (long)sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        st = NULL;
        if (sqlite3_prepare_v2(db, "INSERT INTO \"demo.public.customers\" VALUES(?,?,?,?,?,?,?,?)",
                               -1, &st, NULL) == SQLITE_OK) {
            struct sim_prng p = {.s = (uint64_t)max * 104729u + 3};
            sim_seed_customer_row(st, max + 1, &p, now);
            if (sim_step_done(db, st) == 0)
                touched++;
        }
        sqlite3_finalize(st);
    } else if (strcmp(sqlite_table, "demo.public.products") == 0) {
        sim_db_exec(db, "UPDATE \"demo.public.products\" SET stock = (stock + 7) % 500");
        touched += sqlite3_changes(db);
    }
    if (sim_table_has_column(db, sqlite_table, "synced_at")) {
        sqlite3_stmt *st = NULL;
        snprintf(sql, sizeof sql, "UPDATE %s SET synced_at = ?", q);
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, now, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(st) == SQLITE_DONE && touched == 0)
                touched = sqlite3_changes(db);
        }
        sqlite3_finalize(st);
    }
    sim_db_exec(db, "COMMIT");
    free(q);
    return touched;
}

/* ---- table registry ---- */

int sim_table_register(struct sim_ws *ws, const char *kind, const char *owner_id,
                       const char *catalog, const char *schema, const char *table,
                       const char *sqlite_table, bool synced)
{
    sqlite3_stmt *st = sim_db_stmt(
        ws, "INSERT OR REPLACE INTO sim_tables(catalog,schema_name,table_name,kind,owner_id,"
            "sqlite_table,synced,last_sync,discovered_at) VALUES(?,?,?,?,?,?,?,?,?)");
    if (!st)
        return -1;
    char now[40];
    sim_now_rfc3339(now, false);
    sqlite3_bind_text(st, 1, catalog, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, schema, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, table, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, owner_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 6, sqlite_table, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 7, synced ? 1 : 0);
    if (synced)
        sqlite3_bind_text(st, 8, now, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, 8);
    sqlite3_bind_text(st, 9, now, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int sim_table_unregister(struct sim_ws *ws, const char *catalog, const char *schema,
                         const char *table)
{
    sqlite3_stmt *st = sim_db_stmt(
        ws, "DELETE FROM sim_tables WHERE catalog=? AND schema_name=? AND table_name=?");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, catalog, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, schema, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, table, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int sim_table_unregister_owner(struct sim_ws *ws, const char *owner_id)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "DELETE FROM sim_tables WHERE owner_id=?");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 1, owner_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? sqlite3_changes(ws->db) : -1;
}

char *sim_table_resolve(struct sim_ws *ws, const char *catalog, const char *schema,
                        const char *table)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT sqlite_table FROM sim_tables WHERE catalog=? "
                                       "AND schema_name=? AND table_name=?");
    if (!st)
        return NULL;
    sqlite3_bind_text(st, 1, catalog, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, schema, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, table, -1, SQLITE_TRANSIENT);
    char *out = NULL;
    if (sqlite3_step(st) == SQLITE_ROW)
        out = sim_strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    return out;
}

/* ---- workspaces ---- */

static bool sim_ws_id_ok(const char *id)
{
    if (!id || !*id || strlen(id) > 100)
        return false;
    for (const char *p = id; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

struct sim_ws *sim_ws_find(struct sim_ctx *ctx, const char *id)
{
    for (size_t i = 0; i < ctx->nws; i++)
        if (strcmp(ctx->ws[i]->id, id) == 0)
            return ctx->ws[i];
    return NULL;
}

size_t sim_ws_count(struct sim_ctx *ctx)
{
    return ctx->nws;
}

struct sim_ws *sim_ws_at(struct sim_ctx *ctx, size_t i)
{
    return i < ctx->nws ? ctx->ws[i] : NULL;
}

static void sim_ws_db_path(struct sim_ctx *ctx, const char *id, char *out, size_t len)
{
    snprintf(out, len, "%s/ws/%s.db", ctx->cfg.data_dir, id);
}

/* Open (creating and seeding when new) the DB of ws. */
static int sim_ws_open_db(struct sim_ctx *ctx, struct sim_ws *ws)
{
    char path[1024];
    sim_ws_db_path(ctx, ws->id, path, sizeof path);
    if (sqlite3_open_v2(path, &ws->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        sim_log("cannot open %s: %s", path, ws->db ? sqlite3_errmsg(ws->db) : "oom");
        return -1;
    }
    sqlite3_busy_timeout(ws->db, 2000);
    /* Only this process opens the file: an exclusive lock taken once spares the per-query
     * lock/unlock/stat system calls (and WAL then needs no -shm file). synchronous=OFF: the
     * state must survive a process restart, not a power cut, and fsyncs would dominate
     * the cost of a query (run + result rows are written for each). */
    sim_db_exec(ws->db, "PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL;"
                        "PRAGMA synchronous=OFF; PRAGMA temp_store=MEMORY;"
                        "PRAGMA cache_size=-16000");
    if (sim_db_exec(ws->db, sim_core_schema) < 0)
        return -1;
    /* data dirs from before the results clock columns: add them (fails harmlessly if there) */
    sqlite3_exec(ws->db, "ALTER TABLE results ADD COLUMN processing_at INTEGER", NULL, NULL, NULL);
    sqlite3_exec(ws->db, "ALTER TABLE results ADD COLUMN ready_at INTEGER", NULL, NULL, NULL);
    for (size_t i = 0; i < ctx->router.nschemas; i++)
        if (sim_db_exec(ws->db, ctx->router.schemas[i]) < 0)
            sim_log("area schema failed in workspace %s", ws->id);
    sqlite3_stmt *st = NULL;
    bool seeded = false;
    if (sqlite3_prepare_v2(ws->db, "SELECT value FROM sim_meta WHERE key='seeded'", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        seeded = true;
    sqlite3_finalize(st);
    if (!seeded) {
        uint64_t t0 = util_mono_ms();
        if (sim_store_seed_demo(ws, ctx->cfg.seed_rows) < 0)
            return -1;
        for (size_t i = 0; i < ctx->router.nseeds; i++)
            ctx->router.seeds[i](ctx, ws);
        sim_db_exec(ws->db, "INSERT OR REPLACE INTO sim_meta VALUES('seeded','1')");
        if (!ctx->cfg.quiet)
            sim_log("seeded workspace %s (%ld orders) in %llu ms", ws->id, ctx->cfg.seed_rows,
                    (unsigned long long)(util_mono_ms() - t0));
    }
    return 0;
}

static struct sim_ws *sim_ws_add(struct sim_ctx *ctx, const char *id, const char *name,
                                 const char *created_at)
{
    if (ctx->nws >= SIM_MAX_WS)
        return NULL;
    struct sim_ws *ws = calloc(1, sizeof *ws);
    if (!ws)
        abort();
    ws->id = sim_strdup(id);
    ws->name = sim_strdup(name);
    ws->created_at = sim_strdup(created_at);
    if (sim_ws_open_db(ctx, ws) < 0) {
        if (ws->db)
            sqlite3_close(ws->db);
        free(ws->id);
        free(ws->name);
        free(ws->created_at);
        free(ws);
        return NULL;
    }
    ctx->ws[ctx->nws++] = ws;
    return ws;
}

struct sim_ws *sim_ws_create(struct sim_ctx *ctx, const char *name, struct sim_token *creator)
{
    char id[64], now[40];
    sim_id_new("ws", id);
    sim_now_rfc3339(now, false);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ctx->gdb, "INSERT INTO workspaces(id,name,created_at) VALUES(?,?,?)", -1,
                           &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, now, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return NULL;
    struct sim_ws *ws = sim_ws_add(ctx, id, name, now);
    if (ws && creator && !creator->all_workspaces) {
        creator->allowed = realloc(creator->allowed, (creator->nallowed + 1) * sizeof(char *));
        if (!creator->allowed)
            abort();
        creator->allowed[creator->nallowed++] = sim_strdup(id);
    }
    return ws;
}

static int sim_mkdir(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    sim_log("mkdir %s: %s", path, strerror(errno));
    return -1;
}

int sim_store_open(struct sim_ctx *ctx)
{
    char path[1024];
    if (sim_mkdir(ctx->cfg.data_dir) < 0)
        return -1;
    snprintf(path, sizeof path, "%s/ws", ctx->cfg.data_dir);
    if (sim_mkdir(path) < 0)
        return -1;
    snprintf(path, sizeof path, "%s/uploads", ctx->cfg.data_dir);
    if (sim_mkdir(path) < 0)
        return -1;
    snprintf(path, sizeof path, "%s/sim.db", ctx->cfg.data_dir);
    if (sqlite3_open_v2(path, &ctx->gdb,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        sim_log("cannot open %s", path);
        return -1;
    }
    if (sim_db_exec(ctx->gdb, "PRAGMA journal_mode=WAL;"
                              "CREATE TABLE IF NOT EXISTS workspaces(id TEXT PRIMARY KEY,"
                              " name TEXT NOT NULL, created_at TEXT NOT NULL,"
                              " seq INTEGER)") < 0)
        return -1;
    char now[40];
    sim_now_rfc3339(now, false);
    for (size_t i = 0; i < ctx->cfg.nws_ids; i++) {
        if (!sim_ws_id_ok(ctx->cfg.ws_ids[i])) {
            sim_log("invalid workspace id '%s' (use [A-Za-z0-9_-])", ctx->cfg.ws_ids[i]);
            return -1;
        }
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(ctx->gdb,
                           "INSERT OR IGNORE INTO workspaces(id,name,created_at) VALUES(?,?,?)", -1,
                           &st, NULL);
        sqlite3_bind_text(st, 1, ctx->cfg.ws_ids[i], -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, ctx->cfg.ws_ids[i], -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, now, -1, SQLITE_TRANSIENT);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ctx->gdb, "SELECT id,name,created_at FROM workspaces ORDER BY rowid", -1,
                           &st, NULL) != SQLITE_OK)
        return -1;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (!sim_ws_id_ok(id))
            continue;
        if (!sim_ws_add(ctx, id, (const char *)sqlite3_column_text(st, 1),
                        (const char *)sqlite3_column_text(st, 2))) {
            sqlite3_finalize(st);
            return -1;
        }
    }
    sqlite3_finalize(st);
    return 0;
}

static void sim_ws_close_db(struct sim_ws *ws)
{
    sim_stmt_cache_free(ws->stmts);
    ws->stmts = NULL;
    if (ws->db)
        sqlite3_close(ws->db);
    ws->db = NULL;
}

int sim_store_reset_data(struct sim_ctx *ctx)
{
    int rc = 0;
    for (size_t i = 0; i < ctx->nws; i++) {
        struct sim_ws *ws = ctx->ws[i];
        sim_ws_close_db(ws);
        char path[1100], side[1200];
        sim_ws_db_path(ctx, ws->id, path, sizeof path);
        unlink(path);
        snprintf(side, sizeof side, "%s-wal", path);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", path);
        unlink(side);
        if (sim_ws_open_db(ctx, ws) < 0)
            rc = -1;
    }
    for (size_t i = 0; i < ctx->router.nresets; i++)
        ctx->router.resets[i](ctx);
    return rc;
}

void sim_store_close(struct sim_ctx *ctx)
{
    for (size_t i = 0; i < ctx->nws; i++) {
        struct sim_ws *ws = ctx->ws[i];
        sim_ws_close_db(ws);
        free(ws->id);
        free(ws->name);
        free(ws->created_at);
        free(ws);
    }
    ctx->nws = 0;
    if (ctx->gdb)
        sqlite3_close(ctx->gdb);
    ctx->gdb = NULL;
}
