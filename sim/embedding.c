/*
 * embedding: /v1/embedding-providers of hotdata-sim. A provider is "local" or "service";
 * its API key is either an inline api_key (stored as an auto-managed secret that shows up
 * in /v1/secrets, has_secret true) or a reference to an existing secret by secret_name.
 *
 * Rules: names unique per workspace (409); api_key together with secret_name is 400; a
 * secret_name that names no secret is 400; provider_type outside local/service is 400.
 * Deleting a provider deletes its auto-managed secret, never a user's secret.
 */
#include "sim.h"
#include "sim_areas.h"
#include "sim_embedding.h"
#include "sim_res.h"
#include "sim_secrets.h"

#include <stdlib.h>
#include <string.h>

static const char sim_emb_schema[] =
    "CREATE TABLE IF NOT EXISTS res_embedding_providers ("
    " id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, provider_type TEXT NOT NULL,"
    " config TEXT, secret_id TEXT, secret_managed INTEGER NOT NULL DEFAULT 0,"
    " source TEXT NOT NULL DEFAULT 'user', created_at TEXT NOT NULL, updated_at TEXT NOT NULL);";

#define SIM_EMB_COLS                                                                               \
    "id, name, provider_type, config, secret_id IS NOT NULL AND secret_id IN (SELECT id FROM "     \
    "res_secrets), source, created_at, updated_at"

static json_t *sim_emb_row_json(sqlite3_stmt *st)
{
    const char *cfg = sim_res_col_text(st, 3);
    json_t *config = cfg ? json_loads(cfg, JSON_DECODE_ANY, NULL) : NULL;
    return json_pack("{s:o,s:o,s:o,s:o,s:b,s:o,s:o,s:o}", "id", sim_res_col_json(st, 0), "name",
                     sim_res_col_json(st, 1), "provider_type", sim_res_col_json(st, 2), "config",
                     config ? config : json_null(), "has_secret", sqlite3_column_int(st, 4) != 0,
                     "source", sim_res_col_json(st, 5), "created_at", sim_res_col_json(st, 6),
                     "updated_at", sim_res_col_json(st, 7));
}

static int sim_emb_name_taken(struct sim_ws *ws, const char *name, const char *except_id)
{
    sqlite3_stmt *st =
        sim_db_stmt(ws, "SELECT 1 FROM res_embedding_providers WHERE name = ?1 AND id IS NOT ?2");
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    if (except_id)
        sqlite3_bind_text(st, 2, except_id, -1, SQLITE_TRANSIENT);
    int taken = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return taken;
}

/* config: any JSON value, stored as text; absent -> NULL. */
static char *sim_emb_config_text(struct sim_req *req, int *present)
{
    json_t *cfg = json_is_object(req->body) ? json_object_get(req->body, "config") : NULL;
    *present = cfg != NULL;
    if (!cfg || json_is_null(cfg))
        return NULL;
    return json_dumps(cfg, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* The secret name of a provider's auto-managed api-key secret. */
static void sim_emb_managed_secret_name(const char *provider_id, char out[128])
{
    snprintf(out, 128, "embedding-provider-%s-api-key", provider_id);
}

static void sim_emb_list(struct sim_req *req)
{
    sqlite3_stmt *st = sim_db_stmt(
        req->ws, "SELECT " SIM_EMB_COLS " FROM res_embedding_providers ORDER BY created_at, id");
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, sim_emb_row_json(st));
    sqlite3_reset(st);
    sim_reply_json(req, 200, json_pack("{s:o}", "embedding_providers", arr));
}

/* A new provider's name and type, and not both api_key and secret_name: 0, or 400 and -1. */
static int sim_emb_check_new(struct sim_req *req, const char *name, const char *ptype,
                             bool key_and_secret)
{
    if (!*name) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Provider name must not be empty");
        return -1;
    }
    if (strcmp(ptype, "local") != 0 && strcmp(ptype, "service") != 0) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid provider_type '%s': expected \"local\" or \"service\"", ptype);
        return -1;
    }
    if (key_and_secret) {
        sim_reply_error(req, 400, "BAD_REQUEST", "api_key and secret_name cannot be used together");
        return -1;
    }
    return 0;
}

static void sim_emb_create(struct sim_req *req)
{
    const char *name = NULL, *ptype = NULL, *api_key = NULL, *secret_name = NULL;
    bool has_key = false, has_secret_name = false;
    if (sim_body_str(req, "name", true, &name, NULL) != 0 ||
        sim_body_str(req, "provider_type", true, &ptype, NULL) != 0 ||
        sim_body_str(req, "api_key", false, &api_key, &has_key) != 0 ||
        sim_body_str(req, "secret_name", false, &secret_name, &has_secret_name) != 0)
        return;
    if (sim_emb_check_new(req, name, ptype, has_key && has_secret_name) != 0)
        return;
    char *secret_id = NULL;
    if (has_secret_name) {
        secret_id = sim_secret_id_by_name(req->ws, secret_name);
        if (!secret_id) {
            sim_reply_error(req, 400, "BAD_REQUEST", "Secret '%s' not found", secret_name);
            return;
        }
    }
    if (sim_emb_name_taken(req->ws, name, NULL)) {
        free(secret_id);
        sim_reply_error(req, 409, "CONFLICT", "Embedding provider '%s' already exists", name);
        return;
    }
    int cfg_present;
    char *config = sim_emb_config_text(req, &cfg_present);
    char id[64], now[40], sid[64];
    sim_id_new("emb", id);
    sim_now_rfc3339(now, false);
    if (has_key) {
        char sname[128];
        sim_emb_managed_secret_name(id, sname);
        if (sim_secret_put(req->ws, sname, api_key, sid) != 0) {
            free(config);
            sim_res_reply_db_error(req);
            return;
        }
        secret_id = strdup(sid);
    }
    sqlite3_stmt *st = sim_db_stmt(
        req->ws, "INSERT INTO res_embedding_providers(id, name, provider_type, config, secret_id,"
                 " secret_managed, created_at, updated_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?7)");
    if (!st) {
        free(config);
        free(secret_id);
        sim_res_reply_db_error(req);
        return;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, ptype, -1, SQLITE_TRANSIENT);
    if (config)
        sqlite3_bind_text(st, 4, config, -1, SQLITE_TRANSIENT);
    if (secret_id)
        sqlite3_bind_text(st, 5, secret_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 6, has_key ? 1 : 0);
    sqlite3_bind_text(st, 7, now, -1, SQLITE_TRANSIENT);
    int rc = sim_res_step_done(st);
    json_t *cfg = config ? json_loads(config, JSON_DECODE_ANY, NULL) : NULL;
    bool has_secret = secret_id != NULL;
    free(config);
    free(secret_id);
    if (rc != SQLITE_DONE) {
        json_decref(cfg);
        sim_res_reply_db_error(req);
        return;
    }
    sim_reply_json(req, 201,
                   json_pack("{s:o,s:s,s:s,s:s,s:s,s:b,s:s,s:s}", "config", cfg ? cfg : json_null(),
                             "created_at", now, "id", id, "name", name, "provider_type", ptype,
                             "has_secret", has_secret, "source", "user", "updated_at", now));
}

/* Load one provider row: 1 found (secret_id / managed filled), 0 not found. */
static int sim_emb_load(struct sim_ws *ws, const char *id, char **secret_id, int *managed)
{
    sqlite3_stmt *st = sim_db_stmt(
        ws, "SELECT secret_id, secret_managed FROM res_embedding_providers WHERE id = ?1");
    if (!st)
        return 0;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int found = sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        const char *s = sim_res_col_text(st, 0);
        if (secret_id)
            *secret_id = s ? strdup(s) : NULL;
        if (managed)
            *managed = sqlite3_column_int(st, 1);
    }
    sqlite3_reset(st);
    return found;
}

static void sim_emb_get(struct sim_req *req)
{
    sim_res_reply_row(req, "SELECT " SIM_EMB_COLS " FROM res_embedding_providers WHERE id = ?1",
                      sim_req_param(req, "id"), sim_emb_row_json, "Embedding provider");
}

/* The fields of a PUT body. */
struct sim_emb_change {
    const char *name, *api_key, *secret_name;
    bool has_name, has_key, has_secret_name;
    bool clear_secret; /* secret_name sent as JSON null: drop the reference */
};

/* Read and check a PUT body; *new_secret gets the id of a named secret (malloc'd). 0, or
 * the request answered (400/409) and -1. */
static int sim_emb_update_args(struct sim_req *req, const char *id, struct sim_emb_change *ch,
                               char **new_secret)
{
    memset(ch, 0, sizeof *ch);
    *new_secret = NULL;
    if (sim_body_str(req, "name", false, &ch->name, &ch->has_name) != 0 ||
        sim_body_str(req, "api_key", false, &ch->api_key, &ch->has_key) != 0 ||
        sim_body_str(req, "secret_name", false, &ch->secret_name, &ch->has_secret_name) != 0)
        return -1;
    ch->clear_secret =
        json_is_object(req->body) && json_is_null(json_object_get(req->body, "secret_name"));
    if (ch->has_key && (ch->has_secret_name || ch->clear_secret)) {
        sim_reply_error(req, 400, "BAD_REQUEST", "api_key and secret_name cannot be used together");
        return -1;
    }
    if (ch->has_name && !*ch->name) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Provider name must not be empty");
        return -1;
    }
    if (ch->has_secret_name) {
        *new_secret = sim_secret_id_by_name(req->ws, ch->secret_name);
        if (!*new_secret) {
            sim_reply_error(req, 400, "BAD_REQUEST", "Secret '%s' not found", ch->secret_name);
            return -1;
        }
    }
    if (ch->has_name && sim_emb_name_taken(req->ws, ch->name, id)) {
        free(*new_secret);
        *new_secret = NULL;
        sim_reply_error(req, 409, "CONFLICT", "Embedding provider '%s' already exists", ch->name);
        return -1;
    }
    return 0;
}

/* Move the provider's secret reference: to a managed secret holding a new api_key, to a
 * named secret, or to none (a managed secret no longer referenced is deleted; a referenced
 * user secret stays). SQLITE_DONE or the error. */
static int sim_emb_update_secret(struct sim_ws *ws, const char *id, const struct sim_emb_change *ch,
                                 char **new_secret, const char *old_secret, int managed)
{
    if (ch->has_key) {
        char sname[128], sid[64];
        sim_emb_managed_secret_name(id, sname);
        if (sim_secret_put(ws, sname, ch->api_key, sid) != 0)
            return SQLITE_ERROR;
        *new_secret = strdup(sid);
        managed = 1;
    } else if (ch->has_secret_name || ch->clear_secret) {
        if (old_secret && managed)
            sim_secret_delete_id(ws, old_secret);
        managed = 0;
    } else {
        return SQLITE_DONE;
    }
    sqlite3_stmt *st = sim_db_stmt(ws, "UPDATE res_embedding_providers SET secret_id = ?2,"
                                       " secret_managed = ?3 WHERE id = ?1");
    if (!st)
        return SQLITE_ERROR;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    if (*new_secret)
        sqlite3_bind_text(st, 2, *new_secret, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 3, managed);
    return sim_res_step_done(st);
}

/* Run sql with ?1 = id and ?2 = text (NULL: SQL NULL) and ?3 = now. */
static int sim_emb_exec(struct sim_ws *ws, const char *sql, const char *id, const char *text,
                        const char *now)
{
    sqlite3_stmt *st = sim_db_stmt(ws, sql);
    if (!st)
        return SQLITE_ERROR;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    if (text)
        sqlite3_bind_text(st, 2, text, -1, SQLITE_TRANSIENT);
    if (now)
        sqlite3_bind_text(st, 3, now, -1, SQLITE_TRANSIENT);
    return sim_res_step_done(st);
}

/* 200 {"id","name","updated_at"} after an update. */
static void sim_emb_reply_updated(struct sim_req *req, const char *id, const char *now)
{
    sqlite3_stmt *st =
        sim_db_stmt(req->ws, "SELECT name FROM res_embedding_providers WHERE id = ?1");
    json_t *nm = NULL;
    if (st) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
            nm = sim_res_col_json(st, 0);
        sqlite3_reset(st);
    }
    sim_reply_json(
        req, 200,
        json_pack("{s:s,s:o,s:s}", "id", id, "name", nm ? nm : json_null(), "updated_at", now));
}

static void sim_emb_update(struct sim_req *req)
{
    const char *id = sim_req_param(req, "id");
    char *old_secret = NULL, *new_secret = NULL;
    int managed = 0;
    if (!sim_emb_load(req->ws, id, &old_secret, &managed)) {
        sim_reply_error(req, 404, "NOT_FOUND", "Embedding provider '%s' not found", id);
        return;
    }
    struct sim_emb_change ch;
    if (sim_emb_update_args(req, id, &ch, &new_secret) != 0) {
        free(old_secret);
        return;
    }
    char now[40];
    sim_now_rfc3339(now, false);
    int rc = sim_emb_update_secret(req->ws, id, &ch, &new_secret, old_secret, managed);
    int cfg_present = 0;
    char *config = sim_emb_config_text(req, &cfg_present);
    if (rc == SQLITE_DONE && cfg_present)
        rc = sim_emb_exec(req->ws, "UPDATE res_embedding_providers SET config = ?2 WHERE id = ?1",
                          id, config, NULL);
    free(config);
    if (rc == SQLITE_DONE)
        rc = sim_emb_exec(req->ws,
                          "UPDATE res_embedding_providers SET name = coalesce(?2, name),"
                          " updated_at = ?3 WHERE id = ?1",
                          id, ch.has_name ? ch.name : NULL, now);
    free(old_secret);
    free(new_secret);
    if (rc != SQLITE_DONE) {
        sim_res_reply_db_error(req);
        return;
    }
    sim_emb_reply_updated(req, id, now);
}

static void sim_emb_delete(struct sim_req *req)
{
    const char *id = sim_req_param(req, "id");
    char *secret = NULL;
    int managed = 0;
    if (!sim_emb_load(req->ws, id, &secret, &managed)) {
        sim_reply_error(req, 404, "NOT_FOUND", "Embedding provider '%s' not found", id);
        return;
    }
    if (secret && managed)
        sim_secret_delete_id(req->ws, secret);
    free(secret);
    sim_res_reply_done(
        req, sim_res_exec_id(req->ws, "DELETE FROM res_embedding_providers WHERE id = ?1", id));
}

void sim_embedding_register(struct sim_router *r)
{
    sim_router_add_schema(r, sim_emb_schema);
    sim_route(r, "GET", "/v1/embedding-providers", sim_emb_list, SIM_ROUTE_DEFAULT);
    sim_route(r, "POST", "/v1/embedding-providers", sim_emb_create, SIM_ROUTE_DEFAULT);
    sim_route(r, "GET", "/v1/embedding-providers/{id}", sim_emb_get, SIM_ROUTE_DEFAULT);
    sim_route(r, "PUT", "/v1/embedding-providers/{id}", sim_emb_update, SIM_ROUTE_DEFAULT);
    sim_route(r, "DELETE", "/v1/embedding-providers/{id}", sim_emb_delete, SIM_ROUTE_DEFAULT);
}

int sim_embedding_exists(struct sim_ws *ws, const char *id)
{
    return sim_emb_load(ws, id, NULL, NULL);
}
