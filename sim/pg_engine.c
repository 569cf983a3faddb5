/*
 * pg_engine: the PostgreSQL side of hotdata-sim's user data.
 *
 * Job: connect (the private cluster of pg_cluster.c, or --pg-url), keep one blocking admin
 * connection for DDL and loading, and give every workspace
 *   - a role "<tag>_w<hash(ws)>" (NOLOGIN) that may read its own tables and nothing else:
 *     queries run under SET ROLE to it, in a READ ONLY transaction (pg_exec.c);
 *   - one schema per (catalog, schema) of the API, "<tag>_<hash(ws, catalog, schema)>",
 *     so demo.public.orders and datasets.<schema>.<table> of two workspaces never meet;
 *     the SQL rewriter (sqlrewrite.c) replaces only the catalog.schema part of a name.
 * Tables are mirrored from the SQLite tables the resource areas write (sim_table_register
 * in store.c calls sim_pg_mirror_table): column types come from the declared SQLite type
 * and the values (INTEGER -> bigint, DOUBLE/REAL -> double precision, BOOLEAN -> boolean,
 * NUMERIC(p,s) -> numeric(p,s), TEXT holding only RFC 3339 timestamps -> timestamptz, only
 * dates -> date, else text), NOT NULL as declared, rows by COPY.
 * The metadata schema "<tag>_meta" maps PostgreSQL schemas back to API names and offers
 * information_schema views (columns, tables, schemata) that show the API's catalog and
 * schema names and only the asking workspace's tables.
 *
 * <tag> is "hd" + 8 hex of SHA-256(realpath of --data-dir): simulators sharing one server
 * (--pg-url) keep apart.
 *
 * Rules: loop thread only; the admin connection blocks (local unix socket, short DDL and
 * COPY); user queries never run on it except dataset materialisation (sim_pg_query_sync).
 */
#include "sim_pg_engine.h"
#include "sim_pg_exec.h"
#include "sim_pg_types.h"
#include "sim_util.h"
#include "util.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

int sim_pg_admin_exec(struct sim_pg *pg, const char *sql)
{
    PGresult *r = PQexec(pg->admin, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc < 0)
        sim_log("pg: %s: %.200s", PQresultErrorMessage(r), sql);
    PQclear(r);
    return rc;
}

/* Run sql with text parameters; the result (caller clears) or NULL (logged). */
static PGresult *sim_pg_admin_params(struct sim_pg *pg, const char *sql, int n,
                                     const char *const *vals)
{
    PGresult *r = PQexecParams(pg->admin, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        sim_log("pg: %s: %.200s", PQresultErrorMessage(r), sql);
        PQclear(r);
        return NULL;
    }
    return r;
}

static void sim_pg_hash_hex(const char *const *parts, size_t n, size_t hexlen, char *out)
{
    char buf[1024];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        for (const char *p = parts[i]; *p && len < sizeof buf - 2; p++)
            buf[len++] = (char)tolower((unsigned char)*p);
        buf[len++] = '\0';
    }
    char hex[65];
    util_sha256_hex(buf, len, hex);
    memcpy(out, hex, hexlen);
    out[hexlen] = '\0';
}

void sim_pg_ws_role(struct sim_pg *pg, const char *ws_id, char out[64])
{
    char h[16];
    const char *parts[] = {ws_id};
    sim_pg_hash_hex(parts, 1, 12, h);
    snprintf(out, 64, "%s_w%s", pg->tag, h);
}

void sim_pg_schema_name(struct sim_pg *pg, const char *ws_id, const char *catalog,
                        const char *schema, char out[64])
{
    char h[20];
    const char *parts[] = {ws_id, catalog, schema};
    sim_pg_hash_hex(parts, 3, 16, h);
    snprintf(out, 64, "%s_%s", pg->tag, h);
}

void sim_pg_table_name(const char *table, char out[64])
{
    size_t i = 0;
    for (; table[i] && i < 63; i++)
        out[i] = (char)tolower((unsigned char)table[i]);
    out[i] = '\0';
}

/* ---- setup ---- */

static int sim_pg_meta_setup(struct sim_pg *pg)
{
    char *m = sim_pg_quote_ident(pg->meta), *rd = sim_pg_quote_ident(pg->reader);
    char *sql = NULL;
    int n = asprintf(
        &sql,
        "SET client_min_messages = warning;"
        "DO $$ BEGIN CREATE ROLE %s NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
        "CREATE SCHEMA IF NOT EXISTS %s;"
        "CREATE TABLE IF NOT EXISTS %s.tables(pg_schema text NOT NULL, pg_table text NOT NULL,"
        " ws_role text NOT NULL, catalog text NOT NULL, schema_name text NOT NULL,"
        " table_name text NOT NULL, PRIMARY KEY(pg_schema, pg_table));"
        "CREATE OR REPLACE VIEW %s.columns AS SELECT t.catalog AS table_catalog,"
        " t.schema_name AS table_schema, t.table_name, c.column_name::text AS column_name,"
        " c.ordinal_position::int AS ordinal_position, c.column_default::text AS"
        " column_default, c.is_nullable::text AS is_nullable, c.data_type::text AS data_type,"
        " c.character_maximum_length::int AS character_maximum_length,"
        " c.numeric_precision::int AS numeric_precision, c.numeric_scale::int AS"
        " numeric_scale, c.datetime_precision::int AS datetime_precision"
        " FROM %s.tables t JOIN information_schema.columns c ON c.table_schema = t.pg_schema"
        " AND c.table_name = t.pg_table WHERE t.ws_role = current_user;"
        "CREATE OR REPLACE VIEW %s.tables_v AS SELECT t.catalog AS table_catalog,"
        " t.schema_name AS table_schema, t.table_name, 'BASE TABLE'::text AS table_type"
        " FROM %s.tables t WHERE t.ws_role = current_user;"
        "CREATE OR REPLACE VIEW %s.schemata AS SELECT DISTINCT t.catalog AS catalog_name,"
        " t.schema_name AS schema_name FROM %s.tables t WHERE t.ws_role = current_user;"
        "GRANT USAGE ON SCHEMA %s TO %s;"
        "GRANT SELECT ON %s.columns, %s.tables_v, %s.schemata TO %s;"
        "REVOKE TEMPORARY ON DATABASE %s FROM PUBLIC;"
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
        rd, m, m, m, m, m, m, m, m, m, rd, m, m, m, rd, PQdb(pg->admin));
    if (n < 0)
        abort();
    int rc = sim_pg_admin_exec(pg, sql);
    free(sql);
    free(m);
    free(rd);
    /* set_config() could switch the role or session authorization inside a query (the pool's
     * session user is the cluster's superuser): workspace roles may not call it. Needs
     * ownership: with a --pg-url account that is not a superuser this stays a difference. */
    if (rc == 0 && sim_pg_admin_exec(pg, "REVOKE EXECUTE ON FUNCTION pg_catalog.set_config(text,"
                                         " text, boolean) FROM PUBLIC") < 0)
        sim_log("pg: cannot revoke set_config from PUBLIC: queries could change their role");
    return rc;
}

/* "hd" + 8 hex of the data dir's real path. */
static void sim_pg_make_tag(struct sim_pg *pg, const char *data_dir)
{
    char real[PATH_MAX];
    const char *p = realpath(data_dir, real) ? real : data_dir;
    char h[12];
    const char *parts[] = {p};
    sim_pg_hash_hex(parts, 1, 8, h);
    snprintf(pg->tag, sizeof pg->tag, "hd%s", h);
    snprintf(pg->meta, sizeof pg->meta, "%s_meta", pg->tag);
    snprintf(pg->reader, sizeof pg->reader, "%s_reader", pg->tag);
}

int sim_pg_open(struct sim_ctx *ctx)
{
    struct sim_pg *pg = calloc(1, sizeof *pg);
    if (!pg)
        abort();
    ctx->pg = pg;
    const struct sim_config *cfg = &ctx->cfg;
    if (cfg->pg_url && *cfg->pg_url) {
        pg->conninfo = sim_strdup(cfg->pg_url);
    } else {
        if (sim_pg_cluster_start(&pg->cluster, cfg->data_dir, cfg->pg_template) < 0)
            return -1;
        pg->conninfo = sim_strdup(pg->cluster.conninfo);
    }
    sim_pg_make_tag(pg, cfg->data_dir);
    pg->admin = PQconnectdb(pg->conninfo);
    if (PQstatus(pg->admin) != CONNECTION_OK) {
        sim_log("pg: cannot connect: %s", PQerrorMessage(pg->admin));
        return -1;
    }
    if (sim_pg_admin_exec(pg, "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'") < 0 ||
        sim_pg_meta_setup(pg) < 0)
        return -1;
    pg->pool = sim_pg_pool_new(ctx->base, pg->conninfo, 4);
    if (!pg->pool)
        return -1;
    return 0;
}

void sim_pg_close(struct sim_ctx *ctx)
{
    struct sim_pg *pg = ctx->pg;
    if (!pg)
        return;
    if (pg->pool)
        sim_pg_pool_free(pg->pool);
    if (pg->admin)
        PQfinish(pg->admin);
    sim_pg_cluster_stop(&pg->cluster);
    free(pg->conninfo);
    free(pg);
    ctx->pg = NULL;
}

int sim_pg_ws_prepare(struct sim_pg *pg, struct sim_ws *ws)
{
    char role[64];
    sim_pg_ws_role(pg, ws->id, role);
    char *r = sim_pg_quote_ident(role), *rd = sim_pg_quote_ident(pg->reader), *sql = NULL;
    if (asprintf(&sql,
                 "DO $$ BEGIN CREATE ROLE %s NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL;"
                 " END $$; GRANT %s TO %s",
                 r, rd, r) < 0)
        abort();
    int rc = sim_pg_admin_exec(pg, sql);
    free(sql);
    free(r);
    free(rd);
    return rc;
}

void sim_pg_ws_drop(struct sim_pg *pg, struct sim_ws *ws)
{
    char role[64];
    sim_pg_ws_role(pg, ws->id, role);
    char *m = sim_pg_quote_ident(pg->meta), *sql = NULL;
    if (asprintf(&sql, "SELECT DISTINCT pg_schema FROM %s.tables WHERE ws_role = $1", m) < 0)
        abort();
    const char *vals[] = {role};
    PGresult *r = sim_pg_admin_params(pg, sql, 1, vals);
    free(sql);
    for (int i = 0; r && i < PQntuples(r); i++) {
        char *s = sim_pg_quote_ident(PQgetvalue(r, i, 0));
        if (asprintf(&sql, "SET client_min_messages = warning; DROP SCHEMA IF EXISTS %s CASCADE",
                     s) < 0)
            abort();
        sim_pg_admin_exec(pg, sql);
        free(sql);
        free(s);
    }
    PQclear(r);
    if (asprintf(&sql, "DELETE FROM %s.tables WHERE ws_role = $1", m) < 0)
        abort();
    PQclear(sim_pg_admin_params(pg, sql, 1, vals));
    free(sql);
    free(m);
}

/* ---- mirroring ---- */

enum sim_pg_col_kind { PGK_INT, PGK_FLOAT, PGK_NUMERIC, PGK_BOOL, PGK_TS, PGK_DATE, PGK_TEXT };

struct sim_pg_col {
    char *name;
    char decl[64];
    bool notnull;
    int pk; /* position in the primary key (1..), 0 when not part of it */
    bool has_null;
    enum sim_pg_col_kind kind;
    bool all_ts, all_date, seen; /* TEXT inference */
};

static bool sim_pg_is_date(const char *s)
{
    return strlen(s) == 10 && isdigit((unsigned char)s[0]) && s[4] == '-' && s[7] == '-' &&
           isdigit((unsigned char)s[5]) && isdigit((unsigned char)s[8]);
}

/* "2025-01-02T03:04:05[.fff](Z|+hh:mm)" */
static bool sim_pg_is_rfc3339(const char *s)
{
    size_t n = strlen(s);
    if (n < 20 || s[10] != 'T' || s[4] != '-' || s[7] != '-' || !isdigit((unsigned char)s[0]))
        return false;
    if (s[13] != ':' || s[16] != ':')
        return false;
    return s[n - 1] == 'Z' || (n > 6 && (s[n - 6] == '+' || s[n - 6] == '-') && s[n - 3] == ':');
}

static enum sim_pg_col_kind sim_pg_kind_of_decl(const char *decl)
{
    char u[64];
    size_t i = 0;
    for (; decl[i] && i < sizeof u - 1; i++)
        u[i] = (char)toupper((unsigned char)decl[i]);
    u[i] = '\0';
    if (strstr(u, "BOOL"))
        return PGK_BOOL;
    if (strstr(u, "INT"))
        return PGK_INT;
    if (strstr(u, "REAL") || strstr(u, "FLOA") || strstr(u, "DOUB"))
        return PGK_FLOAT;
    if (strstr(u, "NUMERIC") || strstr(u, "DECIMAL"))
        return PGK_NUMERIC;
    if (strstr(u, "TIMESTAMP") || strstr(u, "DATETIME"))
        return PGK_TS;
    if (!strcmp(u, "DATE"))
        return PGK_DATE;
    return PGK_TEXT;
}

static const char *sim_pg_kind_sql(const struct sim_pg_col *c, char *buf, size_t len)
{
    switch (c->kind) {
    case PGK_INT:
        return "bigint";
    case PGK_FLOAT:
        return "double precision";
    case PGK_BOOL:
        return "boolean";
    case PGK_TS:
        return "timestamptz";
    case PGK_DATE:
        return "date";
    case PGK_NUMERIC: {
        int p = 0, s = 0;
        const char *par = strchr(c->decl, '(');
        if (par && sscanf(par, "(%d,%d)", &p, &s) == 2 && p > 0 && p <= 1000 && s >= 0 && s <= p)
            snprintf(buf, len, "numeric(%d,%d)", p, s);
        else
            snprintf(buf, len, "numeric");
        return buf;
    }
    default:
        return "text";
    }
}

/* Read the SQLite columns of table (qt: its quoted name) and settle their PostgreSQL kinds
 * from decl + values. */
static struct sim_pg_col *sim_pg_scan_cols(sqlite3 *db, const char *table, const char *qt,
                                           int *ncol)
{
    char *sql =
        sqlite3_mprintf("SELECT name, type, \"notnull\", pk FROM pragma_table_info(%Q)", table);
    if (!sql)
        abort();
    sqlite3_stmt *st = NULL;
    struct sim_pg_col *cols = NULL;
    int c = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            cols = realloc(cols, (size_t)(c + 1) * sizeof *cols);
            if (!cols)
                abort();
            struct sim_pg_col *k = &cols[c++];
            memset(k, 0, sizeof *k);
            k->name = sim_strdup((const char *)sqlite3_column_text(st, 0));
            const char *d = (const char *)sqlite3_column_text(st, 1);
            snprintf(k->decl, sizeof k->decl, "%s", d ? d : "");
            /* an INTEGER PRIMARY KEY is never null in SQLite */
            k->notnull = sqlite3_column_int(st, 2) != 0 || sqlite3_column_int(st, 3) != 0;
            k->pk = sqlite3_column_int(st, 3);
            k->kind = sim_pg_kind_of_decl(k->decl);
            k->all_ts = k->all_date = true;
        }
    }
    sqlite3_finalize(st);
    sqlite3_free(sql);
    sql = NULL;
    *ncol = c;
    if (c == 0)
        return cols;
    /* values: a column declared numeric holding text becomes text; TEXT holding only
     * timestamps (or dates) becomes timestamptz (date) */
    if (asprintf(&sql, "SELECT * FROM %s", qt) < 0)
        abort();
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            for (int i = 0; i < c && i < sqlite3_column_count(st); i++) {
                struct sim_pg_col *k = &cols[i];
                int t = sqlite3_column_type(st, i);
                if (t == SQLITE_NULL) {
                    k->has_null = true; /* SQLite lets a non-INTEGER key hold NULL */
                    continue;
                }
                if (t == SQLITE_TEXT || t == SQLITE_BLOB) {
                    const char *v = (const char *)sqlite3_column_text(st, i);
                    if (k->kind == PGK_TEXT) {
                        k->seen = true;
                        if (!v || !sim_pg_is_rfc3339(v))
                            k->all_ts = false;
                        if (!v || !sim_pg_is_date(v))
                            k->all_date = false;
                    } else if (k->kind != PGK_TS && k->kind != PGK_DATE) {
                        k->kind = PGK_TEXT, k->seen = true, k->all_ts = k->all_date = false;
                    }
                } else if (t == SQLITE_FLOAT && (k->kind == PGK_INT || k->kind == PGK_BOOL)) {
                    k->kind = PGK_FLOAT;
                } else if (k->kind == PGK_TEXT) {
                    k->seen = true, k->all_ts = k->all_date = false;
                }
            }
        }
    }
    sqlite3_finalize(st);
    free(sql);
    bool pk_null = false;
    for (int i = 0; i < c; i++)
        pk_null = pk_null || (cols[i].pk && cols[i].has_null);
    for (int i = 0; i < c; i++) {
        if (cols[i].has_null)
            cols[i].notnull = false;
        if (pk_null)
            cols[i].pk = 0;
        if (cols[i].kind == PGK_TEXT && cols[i].seen && cols[i].all_ts)
            cols[i].kind = PGK_TS;
        else if (cols[i].kind == PGK_TEXT && cols[i].seen && cols[i].all_date)
            cols[i].kind = PGK_DATE;
    }
    return cols;
}

static void sim_pg_cols_free(struct sim_pg_col *cols, int n)
{
    for (int i = 0; i < n; i++)
        free(cols[i].name);
    free(cols);
}

/* Append one value in COPY text form. */
static void sim_pg_copy_value(struct evbuffer *b, sqlite3_stmt *st, int i,
                              const struct sim_pg_col *k)
{
    int t = sqlite3_column_type(st, i);
    if (t == SQLITE_NULL) {
        evbuffer_add(b, "\\N", 2);
        return;
    }
    if (k->kind == PGK_BOOL && t == SQLITE_INTEGER) {
        evbuffer_add(b, sqlite3_column_int64(st, i) ? "t" : "f", 1);
        return;
    }
    if (t == SQLITE_INTEGER) {
        evbuffer_add_printf(b, "%lld", (long long)sqlite3_column_int64(st, i));
        return;
    }
    if (t == SQLITE_FLOAT) {
        double d = sqlite3_column_double(st, i);
        if (k->kind == PGK_INT || k->kind == PGK_BOOL)
            evbuffer_add_printf(b, "%lld", (long long)d);
        else
            evbuffer_add_printf(b, "%.17g", d);
        return;
    }
    const unsigned char *s = sqlite3_column_text(st, i);
    int n = sqlite3_column_bytes(st, i);
    for (int j = 0; j < n; j++) {
        unsigned char ch = s[j];
        switch (ch) {
        case '\\':
            evbuffer_add(b, "\\\\", 2);
            break;
        case '\t':
            evbuffer_add(b, "\\t", 2);
            break;
        case '\n':
            evbuffer_add(b, "\\n", 2);
            break;
        case '\r':
            evbuffer_add(b, "\\r", 2);
            break;
        case '\0':
            break;
        default:
            evbuffer_add(b, &ch, 1);
        }
    }
}

/* COPY the rows of SELECT * FROM qt [WHERE where] into pgq. 0 or -1. */
static int sim_pg_copy_rows(struct sim_pg *pg, sqlite3 *db, const char *qt, const char *where,
                            const char *pgq, const struct sim_pg_col *cols, int ncol)
{
    char *sql = NULL;
    if (asprintf(&sql, "COPY %s FROM STDIN", pgq) < 0)
        abort();
    PGresult *r = PQexec(pg->admin, sql);
    free(sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        sim_log("pg: COPY %s: %s", pgq, PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    PQclear(r);
    if (asprintf(&sql, "SELECT * FROM %s%s%s", qt, where ? " WHERE " : "", where ? where : "") < 0)
        abort();
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK ? 0 : -1;
    free(sql);
    struct evbuffer *b = evbuffer_new();
    while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
        for (int i = 0; i < ncol; i++) {
            if (i)
                evbuffer_add(b, "\t", 1);
            sim_pg_copy_value(b, st, i, &cols[i]);
        }
        evbuffer_add(b, "\n", 1);
        if (evbuffer_get_length(b) > 256 * 1024) {
            size_t len = evbuffer_get_length(b);
            if (PQputCopyData(pg->admin, (const char *)evbuffer_pullup(b, -1), (int)len) != 1)
                rc = -1;
            evbuffer_drain(b, len);
        }
    }
    sqlite3_finalize(st);
    size_t len = evbuffer_get_length(b);
    if (rc == 0 && len &&
        PQputCopyData(pg->admin, (const char *)evbuffer_pullup(b, -1), (int)len) != 1)
        rc = -1;
    evbuffer_free(b);
    PQputCopyEnd(pg->admin, rc == 0 ? NULL : "source read failed");
    while ((r = PQgetResult(pg->admin))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            sim_log("pg: COPY %s: %s", pgq, PQresultErrorMessage(r));
            rc = -1;
        }
        PQclear(r);
    }
    return rc;
}

/* CREATE INDEX on pgq for every index made by CREATE INDEX on the SQLite table (the demo's
 * orders(customer_id), indexes of the indexes area made before registration). 0 or -1. */
static int sim_pg_copy_indexes(struct sim_pg *pg, sqlite3 *db, const char *table, const char *pgq)
{
    char *sql = sqlite3_mprintf("SELECT name FROM pragma_index_list(%Q) WHERE origin = 'c'", table);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (!sql || sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_free(sql);
        return 0;
    }
    sqlite3_free(sql);
    while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
        char *isql = sqlite3_mprintf("SELECT name FROM pragma_index_info(%Q) ORDER BY seqno",
                                     (const char *)sqlite3_column_text(st, 0));
        sqlite3_stmt *ist = NULL;
        struct evbuffer *b = evbuffer_new();
        evbuffer_add_printf(b, "CREATE INDEX ON %s (", pgq);
        int n = 0;
        if (isql && sqlite3_prepare_v2(db, isql, -1, &ist, NULL) == SQLITE_OK) {
            while (sqlite3_step(ist) == SQLITE_ROW) {
                const char *c = (const char *)sqlite3_column_text(ist, 0);
                if (!c) { /* an expression index: not copied */
                    n = 0;
                    break;
                }
                char *qc = sim_pg_quote_ident(c);
                evbuffer_add_printf(b, "%s%s", n++ ? ", " : "", qc);
                free(qc);
            }
        }
        sqlite3_finalize(ist);
        sqlite3_free(isql);
        evbuffer_add(b, ")", 2);
        if (n > 0)
            rc = sim_pg_admin_exec(pg, (const char *)evbuffer_pullup(b, -1));
        evbuffer_free(b);
    }
    sqlite3_finalize(st);
    return rc;
}

/* "schema"."table" of an API name in ws (malloc'd); also the bare names when wanted. */
static char *sim_pg_qualified(struct sim_pg *pg, struct sim_ws *ws, const char *catalog,
                              const char *schema, const char *table, char sname[64], char tname[64])
{
    sim_pg_schema_name(pg, ws->id, catalog, schema, sname);
    sim_pg_table_name(table, tname);
    char *qs = sim_pg_quote_ident(sname), *qt = sim_pg_quote_ident(tname), *out = NULL;
    if (asprintf(&out, "%s.%s", qs, qt) < 0)
        abort();
    free(qs);
    free(qt);
    return out;
}

int sim_pg_mirror_table(struct sim_pg *pg, struct sim_ws *ws, const char *catalog,
                        const char *schema, const char *table, const char *sqlite_table)
{
    if (!pg)
        return 0;
    char sname[64], tname[64], role[64];
    char *pgq = sim_pg_qualified(pg, ws, catalog, schema, table, sname, tname);
    sim_pg_ws_role(pg, ws->id, role);
    char *qsrc = sim_pg_quote_ident(sqlite_table);
    int ncol = 0;
    struct sim_pg_col *cols = sim_pg_scan_cols(ws->db, sqlite_table, qsrc, &ncol);
    int rc = -1;
    char *qs = sim_pg_quote_ident(sname), *qr = sim_pg_quote_ident(role);
    char *m = sim_pg_quote_ident(pg->meta);
    struct evbuffer *ddl = evbuffer_new();
    evbuffer_add_printf(ddl,
                        "SET client_min_messages = warning; BEGIN;"
                        " CREATE SCHEMA IF NOT EXISTS %s; GRANT USAGE ON SCHEMA %s TO %s;"
                        " DROP TABLE IF EXISTS %s; CREATE TABLE %s (",
                        qs, qs, qr, pgq, pgq);
    for (int i = 0; i < ncol; i++) {
        char tb[64];
        char *qc = sim_pg_quote_ident(cols[i].name);
        evbuffer_add_printf(ddl, "%s%s %s%s", i ? ", " : "", qc,
                            sim_pg_kind_sql(&cols[i], tb, sizeof tb),
                            cols[i].notnull ? " NOT NULL" : "");
        free(qc);
    }
    /* the primary key, in its order */
    bool any_pk = false;
    for (int k = 1; k <= ncol; k++)
        for (int i = 0; i < ncol; i++) {
            if (cols[i].pk != k)
                continue;
            char *qc = sim_pg_quote_ident(cols[i].name);
            evbuffer_add_printf(ddl, "%s%s", any_pk ? ", " : ", PRIMARY KEY (", qc);
            any_pk = true;
            free(qc);
        }
    if (any_pk)
        evbuffer_add(ddl, ")", 1);
    /* a data refresh rewrites synced_at in every row: half-full pages keep those updates HOT
     * (no index maintenance; pages prune their old versions), several times cheaper */
    bool has_synced = false;
    for (int i = 0; i < ncol; i++)
        has_synced = has_synced || strcmp(cols[i].name, "synced_at") == 0;
    evbuffer_add_printf(ddl, ")%s; GRANT SELECT ON %s TO %s;",
                        has_synced ? " WITH (fillfactor = 50)" : "", pgq, qr);
    evbuffer_add(ddl, "", 1);
    if (ncol > 0 && sim_pg_admin_exec(pg, (const char *)evbuffer_pullup(ddl, -1)) == 0) {
        rc = sim_pg_copy_rows(pg, ws->db, qsrc, NULL, pgq, cols, ncol);
        if (rc == 0)
            rc = sim_pg_copy_indexes(pg, ws->db, sqlite_table, pgq);
        char *sql = NULL;
        if (asprintf(&sql,
                     "INSERT INTO %s.tables VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (pg_schema,"
                     " pg_table) DO UPDATE SET catalog = EXCLUDED.catalog, schema_name ="
                     " EXCLUDED.schema_name, table_name = EXCLUDED.table_name",
                     m) < 0)
            abort();
        const char *vals[] = {sname, tname, role, catalog, schema, table};
        PGresult *r = rc == 0 ? sim_pg_admin_params(pg, sql, 6, vals) : NULL;
        if (!r)
            rc = -1;
        PQclear(r);
        free(sql);
        sim_pg_admin_exec(pg, rc == 0 ? "COMMIT" : "ROLLBACK");
    } else if (ncol > 0) {
        sim_pg_admin_exec(pg, "ROLLBACK");
    }
    if (rc != 0)
        sim_log("pg: mirroring %s.%s.%s of workspace %s failed", catalog, schema, table, ws->id);
    evbuffer_free(ddl);
    sim_pg_cols_free(cols, ncol);
    free(qs);
    free(qr);
    free(m);
    free(qsrc);
    free(pgq);
    return rc;
}

int sim_pg_mirror_append(struct sim_pg *pg, struct sim_ws *ws, const char *catalog,
                         const char *schema, const char *table, const char *sqlite_table,
                         const char *where)
{
    if (!pg)
        return 0;
    char sname[64], tname[64];
    char *pgq = sim_pg_qualified(pg, ws, catalog, schema, table, sname, tname);
    char *qsrc = sim_pg_quote_ident(sqlite_table);
    int ncol = 0;
    struct sim_pg_col *cols = sim_pg_scan_cols(ws->db, sqlite_table, qsrc, &ncol);
    int rc = ncol > 0 ? sim_pg_copy_rows(pg, ws->db, qsrc, where, pgq, cols, ncol) : -1;
    sim_pg_cols_free(cols, ncol);
    free(qsrc);
    free(pgq);
    return rc;
}

int sim_pg_table_update(struct sim_pg *pg, struct sim_ws *ws, const char *catalog,
                        const char *schema, const char *table, const char *set, const char *arg)
{
    if (!pg)
        return 0;
    char sname[64], tname[64];
    char *pgq = sim_pg_qualified(pg, ws, catalog, schema, table, sname, tname);
    char *sql = NULL;
    if (asprintf(&sql, "UPDATE %s SET %s", pgq, set) < 0)
        abort();
    const char *vals[] = {arg};
    PGresult *r = sim_pg_admin_params(pg, sql, arg ? 1 : 0, arg ? vals : NULL);
    int rc = r ? 0 : -1;
    PQclear(r);
    free(sql);
    free(pgq);
    return rc;
}

int sim_pg_drop_table(struct sim_pg *pg, struct sim_ws *ws, const char *catalog, const char *schema,
                      const char *table)
{
    if (!pg)
        return 0;
    char sname[64], tname[64];
    char *pgq = sim_pg_qualified(pg, ws, catalog, schema, table, sname, tname);
    char *m = sim_pg_quote_ident(pg->meta), *sql = NULL;
    if (asprintf(&sql, "SET client_min_messages = warning; DROP TABLE IF EXISTS %s", pgq) < 0)
        abort();
    int rc = sim_pg_admin_exec(pg, sql);
    free(sql);
    if (asprintf(&sql, "DELETE FROM %s.tables WHERE pg_schema = $1 AND pg_table = $2", m) < 0)
        abort();
    const char *vals[] = {sname, tname};
    PQclear(sim_pg_admin_params(pg, sql, 2, vals));
    free(sql);
    free(m);
    free(pgq);
    return rc;
}

bool sim_pg_has_table(struct sim_pg *pg, struct sim_ws *ws, const char *catalog, const char *schema,
                      const char *table)
{
    char sname[64], tname[64];
    sim_pg_schema_name(pg, ws->id, catalog, schema, sname);
    sim_pg_table_name(table, tname);
    char *m = sim_pg_quote_ident(pg->meta), *sql = NULL;
    if (asprintf(&sql, "SELECT 1 FROM %s.tables WHERE pg_schema = $1 AND pg_table = $2", m) < 0)
        abort();
    const char *vals[] = {sname, tname};
    PGresult *r = sim_pg_admin_params(pg, sql, 2, vals);
    bool has = r && PQntuples(r) > 0;
    PQclear(r);
    free(sql);
    free(m);
    return has;
}

/* ---- a query on the admin connection (blocking) ---- */

int sim_pg_query_sync(struct sim_pg *pg, const char *role, const char *sql,
                      struct sim_pg_result *out, char **err)
{
    memset(out, 0, sizeof *out);
    char *qr = sim_pg_quote_ident(role), *pre = NULL;
    if (asprintf(&pre,
                 "BEGIN READ ONLY; SET LOCAL ROLE %s; SET LOCAL statement_timeout = %d;"
                 " SET LOCAL search_path = pg_catalog",
                 qr, SIM_PG_TIMEOUT_MS) < 0)
        abort();
    free(qr);
    int rc = sim_pg_admin_exec(pg, pre);
    free(pre);
    if (rc < 0) {
        *err = sim_strdup("the query engine is unavailable");
        return -1;
    }
    PGresult *r = PQexecParams(pg->admin, sql, 0, NULL, NULL, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        sim_pg_result_from(r, out);
        rc = 0;
    } else if (st == PGRES_COPY_OUT || st == PGRES_COPY_IN || st == PGRES_COPY_BOTH) {
        /* a copy state cannot be left cleanly here: start the admin session afresh */
        *err = sim_strdup("COPY is not supported: use SELECT");
        PQclear(r);
        PQreset(pg->admin);
        sim_pg_admin_exec(pg, "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'");
        return -1;
    } else {
        const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        *err = sim_strdup(m && *m ? m : "query failed");
        rc = -1;
    }
    PQclear(r);
    sim_pg_admin_exec(pg, "ROLLBACK");
    return rc;
}

/*
 * The seed cache: "hdsim_seed_<hash(seed_key)>" holds one copy of each seeded table per
 * server, readable by no workspace role. The first workspace mirrors from SQLite and fills
 * it; the next ones (and other simulators on the same server) copy it inside PostgreSQL,
 * which is several times cheaper than COPY from SQLite. An advisory lock keeps two
 * simulators from filling it at once.
 */
int sim_pg_mirror_seeded(struct sim_pg *pg, struct sim_ws *ws, const char *catalog,
                         const char *schema, const char *table, const char *sqlite_table,
                         const char *seed_key)
{
    if (!pg)
        return 0;
    char h[20], cache[40], lock[24], tname[64], sname[64], role[64];
    const char *parts[] = {seed_key};
    sim_pg_hash_hex(parts, 1, 16, h);
    snprintf(cache, sizeof cache, "hdsim_seed_%.12s", h);
    snprintf(lock, sizeof lock, "%lld", (long long)(strtoull(h, NULL, 16) >> 1));
    sim_pg_table_name(table, tname);
    sim_pg_ws_role(pg, ws->id, role);
    char *pgq = sim_pg_qualified(pg, ws, catalog, schema, table, sname, tname);
    char *qc = sim_pg_quote_ident(cache), *qt = sim_pg_quote_ident(tname);
    char *qs = sim_pg_quote_ident(sname), *qr = sim_pg_quote_ident(role);
    char *m = sim_pg_quote_ident(pg->meta), *sql = NULL;
    const char *lv[] = {lock};
    PQclear(sim_pg_admin_params(pg, "SELECT pg_advisory_lock($1::bigint)", 1, lv));
    char cached_name[128];
    snprintf(cached_name, sizeof cached_name, "%s.%s", qc, qt);
    const char *cv[] = {cached_name};
    PGresult *r = sim_pg_admin_params(pg, "SELECT to_regclass($1) IS NOT NULL", 1, cv);
    bool cached = r && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    int rc;
    if (cached) {
        if (asprintf(&sql,
                     "SET client_min_messages = warning; BEGIN; CREATE SCHEMA IF NOT EXISTS %s;"
                     " GRANT USAGE ON SCHEMA %s TO %s; DROP TABLE IF EXISTS %s;"
                     " CREATE TABLE %s (LIKE %s.%s INCLUDING ALL) WITH (fillfactor = 50);"
                     " INSERT INTO %s SELECT * FROM %s.%s; GRANT SELECT ON %s TO %s;",
                     qs, qs, qr, pgq, pgq, qc, qt, pgq, qc, qt, pgq, qr) < 0)
            abort();
        rc = sim_pg_admin_exec(pg, sql);
        free(sql);
        sql = NULL;
        if (rc == 0) {
            if (asprintf(&sql,
                         "INSERT INTO %s.tables VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (pg_schema,"
                         " pg_table) DO UPDATE SET catalog = EXCLUDED.catalog, schema_name ="
                         " EXCLUDED.schema_name, table_name = EXCLUDED.table_name",
                         m) < 0)
                abort();
            const char *vals[] = {sname, tname, role, catalog, schema, table};
            PGresult *ins = sim_pg_admin_params(pg, sql, 6, vals);
            rc = ins ? 0 : -1;
            PQclear(ins);
        }
        sim_pg_admin_exec(pg, rc == 0 ? "COMMIT" : "ROLLBACK");
    } else {
        rc = sim_pg_mirror_table(pg, ws, catalog, schema, table, sqlite_table);
        if (rc == 0) {
            if (asprintf(&sql,
                         "SET client_min_messages = warning; BEGIN; CREATE SCHEMA IF NOT EXISTS"
                         " %s; CREATE TABLE %s.%s (LIKE %s INCLUDING ALL); INSERT INTO %s.%s"
                         " SELECT * FROM %s; COMMIT",
                         qc, qc, qt, pgq, qc, qt, pgq) < 0)
                abort();
            if (sim_pg_admin_exec(pg, sql) < 0)
                sim_pg_admin_exec(pg, "ROLLBACK"); /* only a cache: the table is there */
        }
    }
    PQclear(sim_pg_admin_params(pg, "SELECT pg_advisory_unlock($1::bigint)", 1, lv));
    if (rc != 0)
        sim_log("pg: seeding %s.%s.%s of workspace %s failed", catalog, schema, table, ws->id);
    free(sql);
    free(qc);
    free(qt);
    free(qs);
    free(qr);
    free(m);
    free(pgq);
    return rc;
}
