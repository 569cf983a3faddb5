/*
 * connections: the connection side of hotdata-sim's /v1 API: connections (create with
 * schema discovery, get, list, delete, cache purges, health), table profiles computed from
 * the data, /v1/information_schema, and /v1/connection-types.
 *
 * Storage: the core tables `connections` and `sim_tables` (sim.h). A new connection's
 * discovery creates two small SQLite tables with deterministic data, registered as
 * <name>.public.accounts / <name>.public.events, so it is queryable at once; the seeded
 * `demo` connection (conn_demo) is served by the same code.
 *
 * Rules: every error a client can cause is API-shaped (400/404/409); connection names are
 * unique case-insensitively (they are SQL catalogs); "datasets" is reserved. Purging a cache
 * marks tables unsynced (synced=0, last_sync=NULL): their profile is gone until the next
 * sync, the data itself stays queryable (a query re-syncs it, as the service does).
 */
#include "sim.h"
#include "sim_areas.h"
#include "sim_conn_tables.h"
#include "sim_connections.h"
#include "sim_indexes.h"
#include "sim_profile.h"
#include "sim_res.h"
#include "sim_secrets.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------------------ */
/* Connection types                                                                      */

struct sim_conn_type {
    const char *name;
    const char *label;
    const char *config_schema; /* JSON */
    const char *auth;          /* JSON */
};

static const struct sim_conn_type sim_conn_types[] = {
    {"postgres", "PostgreSQL",
     "{\"type\":\"object\",\"required\":[\"host\",\"database\",\"user\"],\"properties\":{"
     "\"host\":{\"type\":\"string\",\"description\":\"Server host name or IP address\"},"
     "\"port\":{\"type\":\"integer\",\"default\":5432,\"minimum\":1,\"maximum\":65535},"
     "\"database\":{\"type\":\"string\",\"description\":\"Database name\"},"
     "\"user\":{\"type\":\"string\",\"description\":\"User name\"},"
     "\"schema\":{\"type\":\"string\",\"default\":\"public\"},"
     "\"sslmode\":{\"type\":\"string\",\"enum\":[\"disable\",\"prefer\",\"require\","
     "\"verify-ca\",\"verify-full\"],\"default\":\"prefer\"}}}",
     "{\"type\":\"password\",\"required\":true,\"fields\":[\"password\"],"
     "\"description\":\"Password stored in a secret (secret_id or secret_name)\"}"},
    {"mysql", "MySQL",
     "{\"type\":\"object\",\"required\":[\"host\",\"database\",\"user\"],\"properties\":{"
     "\"host\":{\"type\":\"string\"},"
     "\"port\":{\"type\":\"integer\",\"default\":3306,\"minimum\":1,\"maximum\":65535},"
     "\"database\":{\"type\":\"string\"},\"user\":{\"type\":\"string\"},"
     "\"ssl\":{\"type\":\"boolean\",\"default\":true}}}",
     "{\"type\":\"password\",\"required\":true,\"fields\":[\"password\"],"
     "\"description\":\"Password stored in a secret (secret_id or secret_name)\"}"},
    {"snowflake", "Snowflake",
     "{\"type\":\"object\",\"required\":[\"account\",\"user\",\"warehouse\",\"database\"],"
     "\"properties\":{\"account\":{\"type\":\"string\",\"description\":\"Account identifier, "
     "e.g. xy12345.eu-west-1\"},\"user\":{\"type\":\"string\"},"
     "\"warehouse\":{\"type\":\"string\"},\"database\":{\"type\":\"string\"},"
     "\"schema\":{\"type\":\"string\",\"default\":\"PUBLIC\"},\"role\":{\"type\":\"string\"}}}",
     "{\"type\":\"one_of\",\"required\":true,\"methods\":[{\"type\":\"password\",\"fields\":"
     "[\"password\"]},{\"type\":\"key_pair\",\"fields\":[\"private_key\","
     "\"private_key_passphrase\"]}]}"},
    {"bigquery", "Google BigQuery",
     "{\"type\":\"object\",\"required\":[\"project_id\"],\"properties\":{"
     "\"project_id\":{\"type\":\"string\"},\"dataset\":{\"type\":\"string\"},"
     "\"location\":{\"type\":\"string\",\"default\":\"US\"}}}",
     "{\"type\":\"service_account\",\"required\":true,\"fields\":[\"credentials_json\"],"
     "\"description\":\"Service-account key JSON stored in a secret\"}"},
    {"duckdb", "DuckDB",
     "{\"type\":\"object\",\"required\":[\"path\"],\"properties\":{"
     "\"path\":{\"type\":\"string\",\"description\":\"Database file path or md: URL\"},"
     "\"read_only\":{\"type\":\"boolean\",\"default\":true}}}",
     "null"},
    {"iceberg", "Apache Iceberg",
     "{\"type\":\"object\",\"required\":[\"catalog_uri\",\"warehouse\"],\"properties\":{"
     "\"catalog_type\":{\"type\":\"string\",\"enum\":[\"rest\",\"glue\"],\"default\":\"rest\"},"
     "\"catalog_uri\":{\"type\":\"string\"},\"warehouse\":{\"type\":\"string\"},"
     "\"namespace\":{\"type\":\"string\"},\"region\":{\"type\":\"string\"}}}",
     "{\"type\":\"bearer_token\",\"required\":false,\"fields\":[\"token\"],"
     "\"description\":\"Catalog token stored in a secret\"}"},
};

#define SIM_CONN_NTYPES (sizeof sim_conn_types / sizeof sim_conn_types[0])

static const struct sim_conn_type *sim_conn_type_find(const char *name)
{
    for (size_t i = 0; i < SIM_CONN_NTYPES; i++)
        if (strcmp(sim_conn_types[i].name, name) == 0)
            return &sim_conn_types[i];
    return NULL;
}

static void sim_conn_types_list(struct sim_req *req)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < SIM_CONN_NTYPES; i++)
        json_array_append_new(arr, json_pack("{s:s,s:s}", "label", sim_conn_types[i].label, "name",
                                             sim_conn_types[i].name));
    sim_reply_json(req, 200, json_pack("{s:o}", "connection_types", arr));
}

static void sim_conn_types_get(struct sim_req *req)
{
    const char *name = sim_req_param(req, "name");
    const struct sim_conn_type *t = sim_conn_type_find(name);
    if (!t) {
        sim_reply_error(req, 404, "NOT_FOUND", "Unknown connection type '%s'", name);
        return;
    }
    json_t *schema = json_loads(t->config_schema, JSON_DECODE_ANY, NULL);
    json_t *auth = json_loads(t->auth, JSON_DECODE_ANY, NULL);
    sim_reply_json(req, 200,
                   json_pack("{s:o,s:o,s:s,s:s}", "auth", auth ? auth : json_null(),
                             "config_schema", schema ? schema : json_null(), "label", t->label,
                             "name", t->name));
}

/* Type-check the config properties a connection type knows (unknown keys pass through). 0
 * when fine, else replies 400. */
static int sim_conn_check_config(struct sim_req *req, const struct sim_conn_type *t, json_t *config)
{
    json_t *schema = json_loads(t->config_schema, 0, NULL);
    json_t *props = json_object_get(schema, "properties");
    const char *key;
    json_t *val;
    int rc = 0;
    json_object_foreach(config, key, val)
    {
        json_t *p = json_object_get(props, key);
        const char *want = json_string_value(json_object_get(p, "type"));
        if (!want || json_is_null(val))
            continue;
        int ok = (strcmp(want, "string") == 0 && json_is_string(val)) ||
                 (strcmp(want, "integer") == 0 && json_is_integer(val)) ||
                 (strcmp(want, "boolean") == 0 && json_is_boolean(val));
        if (ok && json_is_integer(val)) {
            json_t *mn = json_object_get(p, "minimum"), *mx = json_object_get(p, "maximum");
            if ((mn && json_integer_value(val) < json_integer_value(mn)) ||
                (mx && json_integer_value(val) > json_integer_value(mx)))
                ok = 0;
        }
        json_t *en = json_object_get(p, "enum");
        if (ok && json_is_array(en)) {
            size_t i;
            json_t *e;
            ok = 0;
            json_array_foreach(en, i, e) if (json_equal(e, val)) ok = 1;
        }
        if (!ok) {
            sim_reply_error(req, 400, "BAD_REQUEST",
                            "Invalid config for %s: '%s' must be a valid %s", t->name, key, want);
            rc = -1;
            break;
        }
    }
    json_decref(schema);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Lookups                                                                               */

struct sim_conn_row {
    char id[64];
    char *name;
    char *source_type;
    char *config;
};

static void sim_conn_row_free(struct sim_conn_row *c)
{
    free(c->name);
    free(c->source_type);
    free(c->config);
}

/* 1 found, 0 not found. */
static int sim_conn_load(struct sim_ws *ws, const char *id, struct sim_conn_row *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st =
        sim_db_stmt(ws, "SELECT id, name, source_type, config FROM connections WHERE id = ?1");
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int found = sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        snprintf(out->id, sizeof out->id, "%s", (const char *)sqlite3_column_text(st, 0));
        out->name = strdup((const char *)sqlite3_column_text(st, 1));
        out->source_type = strdup((const char *)sqlite3_column_text(st, 2));
        const char *cfg = sim_res_col_text(st, 3);
        out->config = strdup(cfg ? cfg : "{}");
    }
    sqlite3_reset(st);
    return found;
}

/* Load the connection of path parameter {connection_id} or reply 404. */
static int sim_conn_load_or_404(struct sim_req *req, struct sim_conn_row *out)
{
    const char *id = sim_req_param(req, "connection_id");
    if (!id || !sim_conn_load(req->ws, id, out)) {
        sim_reply_error(req, 404, "NOT_FOUND", "Connection '%s' not found", id ? id : "");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Discovery: deterministic small tables for a new connection                           */

static const char *const sim_conn_regions[] = {"emea", "amer", "apac", "latam"};
static const char *const sim_conn_plans[] = {"free", "team", "enterprise"};
static const char *const sim_conn_kinds[] = {"signup", "login", "purchase", "refund", "logout"};

/* Create, fill and register one discovered table. 0 on success. */
static int sim_conn_make_table(struct sim_ws *ws, const char *conn_id, const char *conn_name,
                               const char *table, const char *ddl_cols, int rows,
                               void (*fill)(sqlite3_stmt *, int, unsigned), unsigned seed,
                               int ncols)
{
    char phys[192], *sql;
    snprintf(phys, sizeof phys, "cx_%s_public_%s", conn_id, table);
    char *q = sim_res_quote_ident(phys);
    if (asprintf(&sql, "DROP TABLE IF EXISTS %s; CREATE TABLE %s (%s);", q, q, ddl_cols) < 0)
        abort();
    int rc = sim_db_exec(ws->db, sql);
    free(sql);
    if (rc != 0) {
        free(q);
        return -1;
    }
    char marks[64] = "";
    for (int i = 0; i < ncols; i++)
        strcat(marks, i ? ",?" : "?");
    if (asprintf(&sql, "INSERT INTO %s VALUES (%s)", q, marks) < 0)
        abort();
    free(q);
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(ws->db, sql, -1, &st, NULL);
    free(sql);
    if (rc != SQLITE_OK)
        return -1;
    sim_db_exec(ws->db, "SAVEPOINT sim_conn_fill");
    for (int i = 0; i < rows && rc == SQLITE_OK; i++) {
        fill(st, i, seed);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = SQLITE_ERROR;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    sqlite3_finalize(st);
    sim_db_exec(ws->db, "RELEASE sim_conn_fill");
    if (rc != SQLITE_OK)
        return -1;
    if (sim_table_register(ws, "connection", conn_id, conn_name, "public", table, phys, true) != 0)
        return -1;
    char now[40];
    sim_now_rfc3339(now, false);
    sqlite3_stmt *up =
        sim_db_stmt(ws, "UPDATE sim_tables SET synced = 1, last_sync = ?2, discovered_at = ?2"
                        " WHERE owner_id = ?1 AND sqlite_table = ?3");
    if (up) {
        sqlite3_bind_text(up, 1, conn_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(up, 2, now, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(up, 3, phys, -1, SQLITE_TRANSIENT);
        sim_res_step_done(up);
    }
    return 0;
}

static unsigned sim_conn_mix(unsigned x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static void sim_conn_fill_accounts(sqlite3_stmt *st, int i, unsigned seed)
{
    unsigned h = sim_conn_mix(seed + (unsigned)i);
    char name[32], ts[40];
    snprintf(name, sizeof name, "account_%03d", i + 1);
    snprintf(ts, sizeof ts, "2025-%02d-%02dT%02d:00:00Z", 1 + i % 12, 1 + i % 28, i % 24);
    sqlite3_bind_int(st, 1, i + 1);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, sim_conn_regions[h % 4], -1, SQLITE_STATIC);
    if (i % 5 != 4) /* every fifth account has no plan: real null statistics */
        sqlite3_bind_text(st, 4, sim_conn_plans[(h >> 8) % 3], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, ts, -1, SQLITE_TRANSIENT);
}

static void sim_conn_fill_events(sqlite3_stmt *st, int i, unsigned seed)
{
    unsigned h = sim_conn_mix(seed ^ (0x9e3779b9U * (unsigned)(i + 1)));
    char ts[40];
    snprintf(ts, sizeof ts, "2025-06-%02dT%02d:%02d:00Z", 1 + i % 30, (i * 7) % 24, (i * 13) % 60);
    sqlite3_bind_int(st, 1, i + 1);
    sqlite3_bind_int(st, 2, 1 + (int)(h % 25));
    sqlite3_bind_text(st, 3, sim_conn_kinds[(h >> 5) % 5], -1, SQLITE_STATIC);
    if (i % 7 != 3)
        sqlite3_bind_double(st, 4, (double)((h >> 10) % 100000) / 100.0);
    sqlite3_bind_text(st, 5, ts, -1, SQLITE_TRANSIENT);
}

/* Discover (create) the tables of a new connection; returns how many, -1 on failure. */
static int sim_conn_discover(struct sim_ws *ws, const char *conn_id, const char *conn_name)
{
    unsigned seed = 0;
    for (const char *p = conn_name; *p; p++)
        seed = seed * 31 + (unsigned char)*p;
    if (sim_conn_make_table(ws, conn_id, conn_name, "accounts",
                            "id INTEGER NOT NULL, name TEXT NOT NULL, region TEXT, plan TEXT,"
                            " created_at TIMESTAMP",
                            25, sim_conn_fill_accounts, seed, 5) != 0)
        return -1;
    if (sim_conn_make_table(ws, conn_id, conn_name, "events",
                            "id INTEGER NOT NULL, account_id INTEGER NOT NULL, kind TEXT,"
                            " amount DOUBLE, ts TIMESTAMP",
                            200, sim_conn_fill_events, seed, 5) != 0)
        return -1;
    return 2;
}

/* ------------------------------------------------------------------------------------ */
/* Connections CRUD                                                                      */

static int sim_conn_valid_name(const char *name)
{
    if (!*name || strlen(name) > 128)
        return 0;
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == '.' || c == '"' || c == ' ' || c == 0x7f)
            return 0;
    }
    return 1;
}

/* A usable, unreserved connection name, else 400 and -1. */
static int sim_conn_check_name(struct sim_req *req, const char *name)
{
    if (!sim_conn_valid_name(name)) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid connection name '%s': 1-128 characters, no spaces, dots or "
                        "double quotes",
                        name);
        return -1;
    }
    if (strcasecmp(name, "datasets") == 0) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Connection name 'datasets' is reserved for datasets");
        return -1;
    }
    return 0;
}

/* The body's "config": an object, else 400 and NULL. */
static json_t *sim_conn_body_config(struct sim_req *req)
{
    if (!json_is_object(req->body)) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Request body must be a JSON object");
        return NULL;
    }
    json_t *config = json_object_get(req->body, "config");
    if (!config || json_is_null(config)) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Missing required field 'config'");
        return NULL;
    }
    if (!json_is_object(config)) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Field 'config' must be an object");
        return NULL;
    }
    return config;
}

/* The secret a new connection references (secret_id or secret_name, not both; NULL when
 * absent): 0 and *sid (malloc'd, NULL for none), or 400 and -1. */
static int sim_conn_secret(struct sim_req *req, const char *secret_id, const char *secret_name,
                           char **sid)
{
    bool has_sid = secret_id != NULL, has_sname = secret_name != NULL;
    *sid = NULL;
    if (has_sid && has_sname) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "secret_id and secret_name are mutually exclusive");
        return -1;
    }
    if (has_sid) {
        if (!sim_secret_exists_id(req->ws, secret_id)) {
            sim_reply_error(req, 400, "BAD_REQUEST", "Secret '%s' not found", secret_id);
            return -1;
        }
        *sid = strdup(secret_id);
    } else if (has_sname) {
        *sid = sim_secret_id_by_name(req->ws, secret_name);
        if (!*sid) {
            sim_reply_error(req, 400, "BAD_REQUEST", "Secret '%s' not found", secret_name);
            return -1;
        }
    }
    return 0;
}

/* 1 when a connection of this name (case-insensitive) exists. */
static int sim_conn_name_taken(struct sim_ws *ws, const char *name)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT 1 FROM connections WHERE name = ?1 COLLATE NOCASE");
    int exists = 0;
    if (st) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        exists = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_reset(st);
    }
    return exists;
}

/* The connections row of a new connection: SQLITE_DONE or the error. */
static int sim_conn_insert(struct sim_ws *ws, const char *id, const char *name,
                           const char *source_type, json_t *config, const char *sid, bool skip)
{
    char now[40];
    sim_now_rfc3339(now, false);
    char *cfg = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS);
    sqlite3_stmt *st =
        sim_db_stmt(ws, "INSERT INTO connections(id, name, source_type, config, secret_id,"
                        " created_at, discovered_at) VALUES (?1,?2,?3,?4,?5,?6,?7)");
    int rc = SQLITE_ERROR;
    if (st) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, source_type, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, cfg ? cfg : "{}", -1, SQLITE_TRANSIENT);
        if (sid)
            sqlite3_bind_text(st, 5, sid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 6, now, -1, SQLITE_TRANSIENT);
        if (!skip)
            sqlite3_bind_text(st, 7, now, -1, SQLITE_TRANSIENT);
        rc = sim_res_step_done(st);
    }
    free(cfg);
    return rc;
}

/* Discover the new connection's tables (unless skipped) and answer 201. */
static void sim_conn_reply_created(struct sim_req *req, const char *id, const char *name,
                                   const char *source_type, bool skip)
{
    int discovered = 0;
    const char *status = "skipped";
    json_t *derr = json_null();
    if (!skip) {
        discovered = sim_conn_discover(req->ws, id, name);
        if (discovered < 0) {
            discovered = 0;
            status = "failed";
            json_decref(derr);
            derr = json_string(sqlite3_errmsg(req->db));
        } else {
            status = "success";
        }
    }
    sim_reply_json(req, 201,
                   json_pack("{s:o,s:s,s:s,s:s,s:s,s:i}", "discovery_error", derr,
                             "discovery_status", status, "id", id, "name", name, "source_type",
                             source_type, "tables_discovered", discovered));
}

static void sim_conn_create(struct sim_req *req)
{
    const char *name = NULL, *source_type = NULL, *secret_id = NULL, *secret_name = NULL;
    bool skip = false;
    json_t *config = sim_conn_body_config(req);
    if (!config)
        return;
    if (sim_body_str(req, "name", true, &name, NULL) != 0 ||
        sim_body_str(req, "source_type", true, &source_type, NULL) != 0 ||
        sim_body_str(req, "secret_id", false, &secret_id, NULL) != 0 ||
        sim_body_str(req, "secret_name", false, &secret_name, NULL) != 0 ||
        sim_body_bool(req, "skip_discovery", false, &skip, NULL) != 0)
        return;
    if (sim_conn_check_name(req, name) != 0)
        return;
    const struct sim_conn_type *type = sim_conn_type_find(source_type);
    if (!type) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Unsupported source_type '%s'", source_type);
        return;
    }
    char *sid;
    if (sim_conn_check_config(req, type, config) != 0 ||
        sim_conn_secret(req, secret_id, secret_name, &sid) != 0)
        return;
    if (sim_conn_name_taken(req->ws, name)) {
        free(sid);
        sim_reply_error(req, 409, "CONFLICT", "Connection '%s' already exists", name);
        return;
    }
    char id[64];
    sim_id_new("conn", id);
    int rc = sim_conn_insert(req->ws, id, name, source_type, config, sid, skip);
    free(sid);
    if (rc != SQLITE_DONE) {
        sim_res_reply_db_error(req);
        return;
    }
    sim_conn_reply_created(req, id, name, source_type, skip);
}

static void sim_conn_list(struct sim_req *req)
{
    sqlite3_stmt *st = sim_db_stmt(
        req->ws, "SELECT id, name, source_type FROM connections ORDER BY created_at, name");
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, json_pack("{s:o,s:o,s:o}", "id", sim_res_col_json(st, 0), "name",
                                             sim_res_col_json(st, 1), "source_type",
                                             sim_res_col_json(st, 2)));
    sqlite3_reset(st);
    sim_reply_json(req, 200, json_pack("{s:o}", "connections", arr));
}

static void sim_conn_get(struct sim_req *req)
{
    struct sim_conn_row c;
    if (sim_conn_load_or_404(req, &c) != 0)
        return;
    sqlite3_stmt *st =
        sim_db_stmt(req->ws, "SELECT count(*), coalesce(sum(synced != 0), 0) FROM sim_tables"
                             " WHERE owner_id = ?1 AND kind = 'connection'");
    long long total = 0, synced = 0;
    if (st) {
        sqlite3_bind_text(st, 1, c.id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW) {
            total = sqlite3_column_int64(st, 0);
            synced = sqlite3_column_int64(st, 1);
        }
        sqlite3_reset(st);
    }
    sim_reply_json(req, 200,
                   json_pack("{s:s,s:s,s:s,s:I,s:I}", "id", c.id, "name", c.name, "source_type",
                             c.source_type, "synced_table_count", (json_int_t)synced, "table_count",
                             (json_int_t)total));
    sim_conn_row_free(&c);
}

static void sim_conn_delete(struct sim_req *req)
{
    struct sim_conn_row c;
    if (sim_conn_load_or_404(req, &c) != 0)
        return;
    /* drop the data of the connection's tables, then their mappings */
    sim_res_drop_listed(req->db, "TABLE",
                        "SELECT sqlite_table FROM sim_tables WHERE owner_id = ?1 AND"
                        " kind = 'connection'",
                        c.id);
    sim_indexes_drop_for(req->ws, c.id, NULL, NULL);
    sim_table_unregister_owner(req->ws, c.id);
    int rc = sim_res_exec_id(req->ws, "DELETE FROM connections WHERE id = ?1", c.id);
    sim_conn_row_free(&c);
    sim_res_reply_done(req, rc);
}

static void sim_conn_purge(struct sim_req *req)
{
    struct sim_conn_row c;
    if (sim_conn_load_or_404(req, &c) != 0)
        return;
    int rc = sim_res_exec_id(req->ws,
                             "UPDATE sim_tables SET synced = 0, last_sync = NULL"
                             " WHERE owner_id = ?1 AND kind = 'connection'",
                             c.id);
    sim_conn_row_free(&c);
    sim_res_reply_done(req, rc);
}

/* The connection and table of path parameters {connection_id}, {schema}, {table}: 0, or
 * 404 and -1 (nothing to free then). */
static int sim_conn_table_or_404(struct sim_req *req, struct sim_conn_row *c,
                                 struct sim_conn_table *t)
{
    if (sim_conn_load_or_404(req, c) != 0)
        return -1;
    const char *schema = sim_req_param(req, "schema"), *table = sim_req_param(req, "table");
    if (!sim_conn_table_load(req->ws, c->id, schema, table, t)) {
        sim_reply_error(req, 404, "NOT_FOUND", "Table '%s.%s.%s' not found", c->name, schema,
                        table);
        sim_conn_row_free(c);
        return -1;
    }
    return 0;
}

static void sim_conn_purge_table(struct sim_req *req)
{
    struct sim_conn_row c;
    struct sim_conn_table t;
    if (sim_conn_table_or_404(req, &c, &t) != 0)
        return;
    sqlite3_stmt *st = sim_db_stmt(req->ws, "UPDATE sim_tables SET synced = 0, last_sync = NULL"
                                            " WHERE owner_id = ?1 AND sqlite_table = ?2");
    int rc = SQLITE_ERROR;
    if (st) {
        sqlite3_bind_text(st, 1, c.id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, t.sqlite_table, -1, SQLITE_TRANSIENT);
        rc = sim_res_step_done(st);
    }
    sim_conn_table_free(&t);
    sim_conn_row_free(&c);
    if (rc != SQLITE_DONE) {
        sim_res_reply_db_error(req);
        return;
    }
    sim_reply_empty(req, 204);
}

static void sim_conn_health(struct sim_req *req)
{
    struct sim_conn_row c;
    if (sim_conn_load_or_404(req, &c) != 0)
        return;
    /* The "remote" is the workspace database: probe it for real and time the probe. A host
     * in the reserved .invalid domain (RFC 2606) is unreachable, as it would be live. */
    json_t *cfg = json_loads(c.config, 0, NULL);
    const char *host = json_string_value(json_object_get(cfg, "host"));
    size_t hl = host ? strlen(host) : 0;
    bool unreachable = hl >= 8 && strcasecmp(host + hl - 8, ".invalid") == 0;
    uint64_t t0 = util_mono_us();
    sqlite3_stmt *st = sim_db_stmt(req->ws, "SELECT count(*) FROM sim_tables WHERE owner_id = ?1");
    bool ok = st != NULL;
    if (st) {
        sqlite3_bind_text(st, 1, c.id, -1, SQLITE_TRANSIENT);
        ok = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_reset(st);
    }
    long long latency = (long long)((util_mono_us() - t0) / 1000);
    json_t *err = json_null();
    if (unreachable) {
        json_decref(err);
        err = json_pack("s+", "could not connect to server: could not resolve host ", host);
        ok = false;
    } else if (!ok) {
        json_decref(err);
        err = json_string(sqlite3_errmsg(req->db));
    }
    json_decref(cfg);
    sim_reply_json(req, 200,
                   json_pack("{s:s,s:o,s:b,s:I}", "connection_id", c.id, "error", err, "healthy",
                             ok, "latency_ms", (json_int_t)latency));
    sim_conn_row_free(&c);
}

/* ------------------------------------------------------------------------------------ */
/* Table profile: statistics computed from the data (sim/profile.c)                      */

/* The profile answer of a synced table with data (statistics: sim/profile.c), or NULL with
 * *err (malloc'd) when the SQL failed. */
static json_t *sim_conn_profile_json(struct sim_req *req, const struct sim_conn_row *c,
                                     const struct sim_conn_table *t, json_t *cols, char **err)
{
    long long rows = 0;
    json_t *out_cols = sim_profile_columns(req->db, t->sqlite_table, cols, &rows, err);
    if (!out_cols)
        return NULL;
    return json_pack("{s:o,s:s,s:I,s:s,s:o,s:s}", "columns", out_cols, "connection", c->name,
                     "row_count", (json_int_t)rows, "schema", t->schema, "synced_at",
                     sim_res_str_or_null(t->last_sync), "table", t->table);
}

static void sim_conn_profile(struct sim_req *req)
{
    struct sim_conn_row c;
    struct sim_conn_table t;
    if (sim_conn_table_or_404(req, &c, &t) != 0)
        return;
    json_t *cols = NULL, *out = NULL;
    char *err = NULL;
    if (!t.synced)
        sim_reply_error(req, 404, "NOT_FOUND",
                        "No profile for table '%s.%s.%s': the table is not synced", c.name,
                        t.schema, t.table);
    else if (!(cols = sim_res_table_columns(req->db, t.sqlite_table)))
        sim_reply_error(req, 404, "NOT_FOUND", "Table '%s.%s.%s' has no data", c.name, t.schema,
                        t.table);
    else if (!(out = sim_conn_profile_json(req, &c, &t, cols, &err)))
        sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "Profiling '%s.%s.%s' failed: %s",
                        c.name, t.schema, t.table, err ? err : "unknown error");
    else
        sim_reply_json(req, 200, out);
    free(err);
    json_decref(cols);
    sim_conn_table_free(&t);
    sim_conn_row_free(&c);
}

/* ------------------------------------------------------------------------------------ */
/* Information schema                                                                    */

/* User pattern with % wildcards -> LIKE pattern with _ and \ escaped by '\'. malloc'd. */
static char *sim_conn_like_pattern(const char *p)
{
    size_t n = strlen(p);
    char *out = malloc(2 * n + 1), *o = out;
    if (!out)
        abort();
    for (; *p; p++) {
        if (*p == '_' || *p == '\\')
            *o++ = '\\';
        *o++ = *p;
    }
    *o = '\0';
    return out;
}

/* Cursor: hex of "catalog\x1fschema\x1ftable" of the last row returned. */
static char *sim_conn_cursor_encode(const char *a, const char *b, const char *c)
{
    char *raw;
    if (asprintf(&raw, "%s\x1f%s\x1f%s", a, b, c) < 0)
        abort();
    size_t n = strlen(raw);
    char *hex = malloc(2 * n + 1);
    if (!hex)
        abort();
    util_hex((const unsigned char *)raw, n, hex);
    free(raw);
    return hex;
}

/* 0 and three malloc'd parts, or -1 when the cursor is malformed. */
static int sim_conn_cursor_decode(const char *hex, char *parts[3])
{
    size_t n = strlen(hex);
    if (n == 0 || n % 2 || n > 4096)
        return -1;
    char *raw = malloc(n / 2 + 1);
    if (!raw)
        abort();
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1 || !strchr("0123456789abcdef", hex[2 * i]) ||
            !strchr("0123456789abcdef", hex[2 * i + 1]) || v == 0) {
            free(raw);
            return -1;
        }
        raw[i] = (char)v;
    }
    raw[n / 2] = '\0';
    char *s1 = strchr(raw, '\x1f');
    char *s2 = s1 ? strchr(s1 + 1, '\x1f') : NULL;
    if (!s1 || !s2 || strchr(s2 + 1, '\x1f')) {
        free(raw);
        return -1;
    }
    *s1 = *s2 = '\0';
    parts[0] = strdup(raw);
    parts[1] = strdup(s1 + 1);
    parts[2] = strdup(s2 + 1);
    free(raw);
    return 0;
}

/* Up to limit tables of the listing st as the API shows them; *has_more when there are
 * more, *next the cursor of the last one returned (malloc'd). */
static json_t *sim_conn_info_rows(struct sim_req *req, sqlite3_stmt *st, long limit,
                                  bool include_columns, bool *has_more, char **next)
{
    json_t *tables = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        if ((long)json_array_size(tables) == limit) {
            *has_more = true;
            break;
        }
        const char *cat = sim_res_col_text(st, 0), *sch = sim_res_col_text(st, 1),
                   *tab = sim_res_col_text(st, 2), *phys = sim_res_col_text(st, 3);
        json_t *cols = include_columns ? sim_res_table_columns(req->db, phys) : NULL;
        if (include_columns && !cols)
            cols = json_array();
        json_array_append_new(
            tables, json_pack("{s:o,s:s,s:s,s:o,s:s,s:b,s:s}", "columns", cols ? cols : json_null(),
                              "connection", cat, "connection_id", sim_res_col_text(st, 6),
                              "last_sync", sim_res_col_json(st, 5), "schema", sch, "synced",
                              sqlite3_column_int(st, 4) != 0, "table", tab));
        free(*next);
        *next = sim_conn_cursor_encode(cat, sch, tab);
    }
    return tables;
}

static void sim_conn_information_schema(struct sim_req *req)
{
    const char *conn_id = sim_req_query(req, "connection_id");
    const char *schema = sim_req_query(req, "schema");
    const char *table = sim_req_query(req, "table");
    const char *cursor = sim_req_query(req, "cursor");
    bool include_columns;
    long limit;
    if (sim_res_query_bool(req, "include_columns", false, &include_columns) != 0 ||
        sim_res_query_limit(req, 100, &limit) != 0)
        return;
    if (conn_id && *conn_id) {
        struct sim_conn_row c;
        if (!sim_conn_load(req->ws, conn_id, &c)) {
            sim_reply_error(req, 404, "NOT_FOUND", "Connection '%s' not found", conn_id);
            return;
        }
        sim_conn_row_free(&c);
    }
    char *after[3] = {NULL, NULL, NULL};
    if (cursor && *cursor && sim_conn_cursor_decode(cursor, after) != 0) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Invalid cursor");
        return;
    }
    char *schema_like = schema && *schema ? sim_conn_like_pattern(schema) : NULL;
    char *table_like = table && *table ? sim_conn_like_pattern(table) : NULL;
    sqlite3_stmt *st = sim_db_stmt(
        req->ws,
        "SELECT catalog, schema_name, table_name, sqlite_table, synced, last_sync, owner_id"
        " FROM sim_tables WHERE kind = 'connection'"
        " AND (?1 IS NULL OR owner_id = ?1)"
        " AND (?2 IS NULL OR schema_name LIKE ?2 ESCAPE '\\')"
        " AND (?3 IS NULL OR table_name LIKE ?3 ESCAPE '\\')"
        " AND (?4 IS NULL OR (catalog, schema_name, table_name) > (?4, ?5, ?6))"
        " ORDER BY catalog, schema_name, table_name LIMIT ?7");
    if (!st) {
        free(schema_like);
        free(table_like);
        for (int i = 0; i < 3; i++)
            free(after[i]);
        sim_res_reply_db_error(req);
        return;
    }
    if (conn_id && *conn_id)
        sqlite3_bind_text(st, 1, conn_id, -1, SQLITE_TRANSIENT);
    if (schema_like)
        sqlite3_bind_text(st, 2, schema_like, -1, SQLITE_TRANSIENT);
    if (table_like)
        sqlite3_bind_text(st, 3, table_like, -1, SQLITE_TRANSIENT);
    for (int i = 0; i < 3; i++)
        if (after[i])
            sqlite3_bind_text(st, 4 + i, after[i], -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 7, limit + 1);
    bool has_more = false;
    char *next = NULL;
    json_t *tables = sim_conn_info_rows(req, st, limit, include_columns, &has_more, &next);
    sqlite3_reset(st);
    free(schema_like);
    free(table_like);
    for (int i = 0; i < 3; i++)
        free(after[i]);
    json_t *nc = has_more && next ? json_string(next) : json_null();
    free(next);
    sim_reply_json(req, 200,
                   json_pack("{s:I,s:b,s:I,s:o,s:o}", "count", (json_int_t)json_array_size(tables),
                             "has_more", has_more, "limit", (json_int_t)limit, "next_cursor", nc,
                             "tables", tables));
}

/* ------------------------------------------------------------------------------------ */

int sim_connections_discover(struct sim_ws *ws, const char *connection_id)
{
    struct sim_conn_row c;
    if (!connection_id || !sim_conn_load(ws, connection_id, &c))
        return -1;
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT count(*) FROM sim_tables WHERE owner_id = ?1");
    long long have = 0;
    if (st) {
        sqlite3_bind_text(st, 1, c.id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
            have = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
    }
    int n = have > 0 ? 0 : sim_conn_discover(ws, c.id, c.name);
    sim_conn_row_free(&c);
    return n;
}

void sim_connections_register(struct sim_router *r)
{
    sim_route(r, "GET", "/v1/connection-types", sim_conn_types_list, SIM_ROUTE_DEFAULT);
    sim_route(r, "GET", "/v1/connection-types/{name}", sim_conn_types_get, SIM_ROUTE_DEFAULT);
    sim_route(r, "GET", "/v1/connections", sim_conn_list, SIM_ROUTE_DEFAULT);
    sim_route(r, "POST", "/v1/connections", sim_conn_create, SIM_ROUTE_DEFAULT);
    sim_route(r, "GET", "/v1/connections/{connection_id}", sim_conn_get, SIM_ROUTE_DEFAULT);
    sim_route(r, "DELETE", "/v1/connections/{connection_id}", sim_conn_delete, SIM_ROUTE_DEFAULT);
    sim_route(r, "DELETE", "/v1/connections/{connection_id}/cache", sim_conn_purge,
              SIM_ROUTE_DEFAULT);
    sim_route(r, "GET", "/v1/connections/{connection_id}/health", sim_conn_health,
              SIM_ROUTE_DEFAULT);
    sim_route(r, "DELETE", "/v1/connections/{connection_id}/tables/{schema}/{table}/cache",
              sim_conn_purge_table, SIM_ROUTE_DEFAULT);
    sim_route(r, "GET", "/v1/connections/{connection_id}/tables/{schema}/{table}/profile",
              sim_conn_profile, SIM_ROUTE_DEFAULT);
    sim_route(r, "GET", "/v1/information_schema", sim_conn_information_schema, SIM_ROUTE_DEFAULT);
}
