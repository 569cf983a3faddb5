/*
 * jobs: background jobs (GET /v1/jobs, GET /v1/jobs/{id}) and the API other areas use to
 * start them (sim_job_create in sim.h).
 *
 * A job is a row in the workspace's sim_jobs table plus, while it is not terminal, a timer
 * context here: pending for cfg.job_delay_ms, then running (attempts = 1) for another
 * job_delay_ms, then its work function runs on the loop and the outcome (succeeded,
 * partially_succeeded or failed, result JSON, error_message, completed_at) is stored.
 * Jobs left non-terminal by a previous process are marked failed at startup.
 * A job's result is null until it succeeded, then the object of the API's JobResult for its
 * type, built by the area that owns the work: data_refresh_table -> TableRefreshResult,
 * data_refresh_connection -> ConnectionRefreshResult (refresh.c), dataset_refresh ->
 * RefreshDatasetResponse (datasets.c), create_index -> IndexInfoResponse (indexes.c).
 *
 * Rules: loop thread only; the timer context owns the job's args until the work ran.
 */
#include "sim.h"
#include "sim_areas.h"
#include "sim_int.h"
#include "sim_jobs.h"
#include "sim_res.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sim_job_run {
    struct sim_ctx *ctx;
    struct sim_ws *ws;
    char id[64];
    sim_job_fn fn;
    json_t *args;
    int phase;
};

const char *sim_job_status_name(enum sim_job_status s)
{
    switch (s) {
    case SIM_JOB_PENDING:
        return "pending";
    case SIM_JOB_RUNNING:
        return "running";
    case SIM_JOB_SUCCEEDED:
        return "succeeded";
    case SIM_JOB_PARTIALLY_SUCCEEDED:
        return "partially_succeeded";
    case SIM_JOB_FAILED:
        return "failed";
    }
    return "failed";
}

/* A job still waiting for its next phase at shutdown (the next start marks it failed). */
static void sim_job_drop(void *arg)
{
    struct sim_job_run *j = arg;
    if (j->args)
        json_decref(j->args);
    free(j);
}

static void sim_job_step(void *arg)
{
    struct sim_job_run *j = arg;
    if (j->phase == 0) {
        sqlite3_stmt *st = sim_db_stmt(
            j->ws, "UPDATE sim_jobs SET status='running', attempts=attempts+1 WHERE id=?");
        if (st) {
            sqlite3_bind_text(st, 1, j->id, -1, SQLITE_TRANSIENT);
            sqlite3_step(st);
            sqlite3_reset(st);
        }
        j->phase = 1;
        sim_timer_after_drop(j->ctx, j->ctx->cfg.job_delay_ms, sim_job_step, j, sim_job_drop);
        return;
    }
    json_t *result = NULL;
    char *error = NULL;
    enum sim_job_status s = SIM_JOB_SUCCEEDED;
    if (j->fn)
        s = j->fn(j->ctx, j->ws, j->id, j->args, &result, &error);
    if (s != SIM_JOB_SUCCEEDED && s != SIM_JOB_PARTIALLY_SUCCEEDED)
        s = SIM_JOB_FAILED;
    if (s == SIM_JOB_FAILED && !error)
        error = sim_strdup("job failed");
    char now[40];
    sim_now_rfc3339(now, false);
    char *rtext = result ? json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    sqlite3_stmt *st = sim_db_stmt(j->ws, "UPDATE sim_jobs SET status=?, completed_at=?, "
                                          "error_message=?, result=? WHERE id=?");
    if (st) {
        sqlite3_bind_text(st, 1, sim_job_status_name(s), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, now, -1, SQLITE_TRANSIENT);
        if (error)
            sqlite3_bind_text(st, 3, error, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(st, 3);
        if (rtext)
            sqlite3_bind_text(st, 4, rtext, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(st, 4);
        sqlite3_bind_text(st, 5, j->id, -1, SQLITE_TRANSIENT);
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    free(rtext);
    free(error);
    if (result)
        json_decref(result);
    if (j->args)
        json_decref(j->args);
    free(j);
}

int sim_job_create(struct sim_ctx *ctx, struct sim_ws *ws, const char *job_type, sim_job_fn fn,
                   json_t *args, char id_out[64])
{
    char now[40];
    sim_now_rfc3339(now, false);
    sim_id_new("job", id_out);
    sqlite3_stmt *st = sim_db_stmt(ws, "INSERT INTO sim_jobs(id,job_type,status,attempts,"
                                       "created_at) VALUES(?,?,'pending',0,?)");
    if (!st) {
        if (args)
            json_decref(args);
        return -1;
    }
    sqlite3_bind_text(st, 1, id_out, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, job_type, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, now, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        if (args)
            json_decref(args);
        return -1;
    }
    struct sim_job_run *j = calloc(1, sizeof *j);
    if (!j)
        abort();
    j->ctx = ctx;
    j->ws = ws;
    snprintf(j->id, sizeof j->id, "%s", id_out);
    j->fn = fn;
    j->args = args;
    sim_timer_after_drop(ctx, ctx->cfg.job_delay_ms, sim_job_step, j, sim_job_drop);
    return 0;
}

#define SIM_JOB_COLS "id,job_type,status,attempts,created_at,completed_at,error_message,result"

static json_t *sim_job_row(sqlite3_stmt *st)
{
    json_t *result = json_null();
    if (sqlite3_column_type(st, 7) == SQLITE_TEXT) {
        json_t *r = json_loads((const char *)sqlite3_column_text(st, 7), JSON_DECODE_ANY, NULL);
        if (r) {
            json_decref(result);
            result = r;
        }
    }
#define OPT_TEXT(i)                                                                                \
    (sqlite3_column_type(st, i) == SQLITE_TEXT                                                     \
         ? json_string((const char *)sqlite3_column_text(st, i))                                   \
         : json_null())
    return json_pack(
        "{s:I,s:o,s:s,s:o,s:s,s:s,s:o,s:o}", "attempts", (json_int_t)sqlite3_column_int64(st, 3),
        "completed_at", OPT_TEXT(5), "created_at", (const char *)sqlite3_column_text(st, 4),
        "error_message", OPT_TEXT(6), "id", (const char *)sqlite3_column_text(st, 0), "job_type",
        (const char *)sqlite3_column_text(st, 1), "result", result, "status", OPT_TEXT(2));
#undef OPT_TEXT
}

json_t *sim_job_json(struct sim_ws *ws, const char *job_id)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT " SIM_JOB_COLS " FROM sim_jobs WHERE id=?");
    if (!st)
        return NULL;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_TRANSIENT);
    json_t *o = NULL;
    if (sqlite3_step(st) == SQLITE_ROW)
        o = sim_job_row(st);
    sqlite3_reset(st);
    return o;
}

void sim_jobs_reply_accepted(struct sim_req *req, const char *job_id, const char *job_type)
{
    char url[128];
    snprintf(url, sizeof url, "/v1/jobs/%s", job_id);
    sim_reply_json(req, 202,
                   json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", job_id, "job_id", job_id, "job_type",
                             job_type, "status", "pending", "status_url", url));
}

static void sim_jobs_list(struct sim_req *req)
{
    long limit, offset;
    if (sim_res_query_limit(req, 50, &limit) < 0 ||
        sim_req_query_int(req, "offset", 0, 0, 1L << 40, &offset) < 0)
        return;
    const char *type = sim_req_query(req, "job_type");
    const char *status = sim_req_query(req, "status");
    sqlite3_stmt *st = sim_db_stmt(
        req->ws, "SELECT " SIM_JOB_COLS " FROM sim_jobs WHERE (?1 IS NULL OR job_type = ?1) "
                 "AND (?2 IS NULL OR instr(',' || ?2 || ',', ',' || status || ',') > 0) "
                 "ORDER BY seq DESC LIMIT ?3 OFFSET ?4");
    if (!st) {
        sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "jobs unavailable");
        return;
    }
    if (type && *type)
        sqlite3_bind_text(st, 1, type, -1, SQLITE_TRANSIENT);
    if (status && *status) {
        char *s = sim_strdup(status), *w = s;
        for (char *p = s; *p; p++)
            if (*p != ' ')
                *w++ = *p;
        *w = '\0';
        sqlite3_bind_text(st, 2, s, -1, free);
    }
    sqlite3_bind_int64(st, 3, limit);
    sqlite3_bind_int64(st, 4, offset);
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, sim_job_row(st));
    sqlite3_reset(st);
    sim_reply_json(req, 200, json_pack("{s:o}", "jobs", arr));
}

static void sim_jobs_get(struct sim_req *req)
{
    const char *id = sim_req_param(req, "id");
    json_t *o = sim_job_json(req->ws, id);
    if (!o) {
        sim_reply_error(req, 404, "NOT_FOUND", "Job '%s' not found", id);
        return;
    }
    sim_reply_json(req, 200, o);
}

void sim_jobs_startup(struct sim_ctx *ctx)
{
    for (size_t i = 0; i < sim_ws_count(ctx); i++) {
        struct sim_ws *ws = sim_ws_at(ctx, i);
        sim_db_exec(ws->db, "UPDATE sim_jobs SET status='failed', completed_at=created_at, "
                            "error_message='simulator restarted before the job finished' "
                            "WHERE status IN ('pending','running')");
    }
}

void sim_jobs_register(struct sim_router *r)
{
    sim_route(r, "GET", "/v1/jobs", sim_jobs_list, 0);
    sim_route(r, "GET", "/v1/jobs/{id}", sim_jobs_get, 0);
}
