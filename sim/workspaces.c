/*
 * workspaces: /v1/workspaces of hotdata-sim. Listing needs only the bearer token (route flag
 * SIM_ROUTE_NO_WORKSPACE): it shows the workspaces that token may use. Creating one makes a
 * real workspace (sim_ws_create: its own SQLite file, seeded like the others) that the
 * creating token can use at once; its provision_status is "pending" until a timer marks it
 * "provisioned" shortly after, as the service provisions in the background.
 *
 * Rules: the only organization is SIM_WS_ORG ("org_default"), the one every token belongs
 * to: another organization_public_id is 404 "Organization not found" (an empty one means the
 * default). A missing, empty or non-string
 * name is 422; a body that is not a JSON object is 400. Provisioning state lives in the
 * workspace's own database (res_workspace_meta), never in memory; a workspace whose timer was
 * lost with a restart counts as provisioned once its ready time has passed.
 */
#include "sim.h"
#include "sim_areas.h"
#include "sim_auth.h"
#include "sim_res.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define SIM_WS_ORG "org_default"

static const char sim_ws_schema[] =
    "CREATE TABLE IF NOT EXISTS res_workspace_meta ("
    " id INTEGER PRIMARY KEY CHECK (id = 1), provision_status TEXT NOT NULL,"
    " favorite INTEGER NOT NULL DEFAULT 0, ready_at_ms INTEGER);";

/* A workspace without a meta row (the ones given on the command line) is provisioned. */
static const char *sim_ws_provision_status(struct sim_ws *ws, int *favorite)
{
    static char status[32];
    snprintf(status, sizeof status, "provisioned");
    *favorite = 0;
    /* a timer lost with a restart must not leave a workspace pending forever: past its
     * ready time (plus a grace second) it counts as provisioned */
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT CASE WHEN provision_status = 'pending' AND"
                                       " ready_at_ms + 1000 < ?1 THEN 'provisioned' ELSE"
                                       " provision_status END, favorite FROM res_workspace_meta"
                                       " WHERE id = 1");
    if (!st)
        return status;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)util_wall_ms());
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *s = sim_res_col_text(st, 0);
        if (s)
            snprintf(status, sizeof status, "%s", s);
        *favorite = sqlite3_column_int(st, 1);
    }
    sqlite3_reset(st);
    return status;
}

static int sim_ws_check_org(struct sim_req *req, const char *org)
{
    if (org && *org && strcmp(org, SIM_WS_ORG) != 0) {
        sim_reply_error(req, 404, "NOT_FOUND", "Organization '%s' not found", org);
        return -1;
    }
    return 0;
}

static void sim_ws_list(struct sim_req *req)
{
    if (sim_ws_check_org(req, sim_req_query(req, "organization_public_id")) != 0)
        return;
    json_t *arr = json_array();
    size_t n = sim_ws_count(req->ctx);
    for (size_t i = 0; i < n; i++) {
        struct sim_ws *ws = sim_ws_at(req->ctx, i);
        if (!ws || !sim_token_may_use(req->token, ws->id))
            continue;
        int favorite = 0;
        const char *status = sim_ws_provision_status(ws, &favorite);
        char ns[128];
        snprintf(ns, sizeof ns, "workspace-%s", ws->id);
        json_array_append_new(arr,
                              json_pack("{s:s,s:s,s:b,s:b,s:s,s:s}", "public_id", ws->id, "name",
                                        ws->name ? ws->name : ws->id, "active", 1, "favorite",
                                        favorite, "provision_status", status, "namespace", ns));
    }
    sim_reply_json(req, 200, json_pack("{s:b,s:o}", "ok", 1, "workspaces", arr));
}

struct sim_ws_timer {
    struct sim_ctx *ctx;
    char id[64];
};

static void sim_ws_provisioned(void *arg)
{
    struct sim_ws_timer *t = arg;
    struct sim_ws *ws = sim_ws_find(t->ctx, t->id);
    if (ws) {
        sqlite3_stmt *st = sim_db_stmt(
            ws, "UPDATE res_workspace_meta SET provision_status = 'provisioned' WHERE id = 1");
        if (st)
            sim_res_step_done(st);
    }
    free(t);
}

static void sim_ws_create_handler(struct sim_req *req)
{
    if (!json_is_object(req->body)) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Invalid JSON body: expected an object");
        return;
    }
    json_t *org = json_object_get(req->body, "organization_public_id");
    if (org && !json_is_null(org) && !json_is_string(org)) {
        sim_reply_error(req, 422, NULL, "organization_public_id must be a string");
        return;
    }
    if (sim_ws_check_org(req, json_string_value(org)) != 0)
        return;
    json_t *name = json_object_get(req->body, "name");
    if (!json_is_string(name) || json_string_length(name) == 0) {
        sim_reply_error(req, 422, NULL, "Validation error: name is required (a non-empty string)");
        return;
    }
    if (json_string_length(name) > 200) {
        sim_reply_error(req, 422, NULL, "Validation error: name is longer than 200 characters");
        return;
    }
    struct sim_ws *ws = sim_ws_create(req->ctx, json_string_value(name), req->token);
    if (!ws) {
        sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "Creating the workspace failed");
        return;
    }
    int delay = sim_cfg(req->ctx)->job_delay_ms * 2;
    if (delay < 100)
        delay = 100;
    sqlite3_stmt *st = sim_db_stmt(ws, "INSERT OR REPLACE INTO res_workspace_meta(id,"
                                       " provision_status, favorite, ready_at_ms)"
                                       " VALUES (1, 'pending', 0, ?1)");
    if (st) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)(util_wall_ms() + (uint64_t)delay));
        sim_res_step_done(st);
    }
    struct sim_ws_timer *t = calloc(1, sizeof *t);
    if (!t)
        abort();
    t->ctx = req->ctx;
    snprintf(t->id, sizeof t->id, "%s", ws->id);
    sim_timer_after_drop(req->ctx, delay, sim_ws_provisioned, t, free);
    char ns[128];
    snprintf(ns, sizeof ns, "workspace-%s", ws->id);
    sim_reply_json(req, 201,
                   json_pack("{s:b,s:{s:s,s:s,s:s,s:s}}", "ok", 1, "workspace", "public_id", ws->id,
                             "name", ws->name ? ws->name : json_string_value(name),
                             "provision_status", "pending", "namespace", ns));
}

void sim_workspaces_register(struct sim_router *r)
{
    sim_router_add_schema(r, sim_ws_schema);
    sim_route(r, "GET", "/v1/workspaces", sim_ws_list, SIM_ROUTE_NO_WORKSPACE);
    sim_route(r, "POST", "/v1/workspaces", sim_ws_create_handler, SIM_ROUTE_NO_WORKSPACE);
}
