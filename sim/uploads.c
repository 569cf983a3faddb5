/*
 * uploads: /v1/files of hotdata-sim. POST takes the raw request body, which the framework
 * streams to a file under DIR/uploads/ as it arrives (route flag SIM_ROUTE_RAW_BODY), so an
 * upload of any size costs the simulator a fixed amount of memory. The handler only keeps
 * the file (renames it to DIR/uploads/<upload id>) and records it in res_uploads.
 *
 * Rules: empty bodies are 400; bodies over 2 GB are 413 unless ?streaming=true, which allows
 * up to 20 GB (--max-upload-bytes N: N and 10 N); content_type is the request's Content-Type header
 * (null when absent). An upload's status is "uploaded" until a dataset is created from it
 * ("consumed"; it stays usable). Datasets read the file through sim_upload_path (sim_res.h).
 */
#include "sim.h"
#include "sim_areas.h"
#include "sim_res.h"
#include "sim_uploads.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIM_UPLOAD_MAX (2ULL * 1000 * 1000 * 1000)
#define SIM_UPLOAD_MAX_STREAMING (20ULL * 1000 * 1000 * 1000)

static const char sim_upl_schema[] =
    "CREATE TABLE IF NOT EXISTS res_uploads ("
    " id TEXT PRIMARY KEY, path TEXT NOT NULL, size_bytes INTEGER NOT NULL,"
    " status TEXT NOT NULL, content_type TEXT, created_at TEXT NOT NULL);";

static json_t *sim_upl_row_json(sqlite3_stmt *st)
{
    /* id, size_bytes, status, content_type, created_at */
    return json_pack("{s:o,s:o,s:o,s:o,s:o}", "id", sim_res_col_json(st, 0), "size_bytes",
                     sim_res_col_json(st, 1), "status", sim_res_col_json(st, 2), "content_type",
                     sim_res_col_json(st, 3), "created_at", sim_res_col_json(st, 4));
}

static void sim_upl_create(struct sim_req *req)
{
    bool streaming;
    if (sim_res_query_bool(req, "streaming", false, &streaming) != 0)
        return;
    uint64_t limit = sim_uploads_max_bytes(req->ctx, streaming);
    if (!req->upload_path) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Upload body missing");
        return;
    }
    if (req->upload_size == 0) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Upload body is empty");
        return;
    }
    if (req->upload_size > limit) {
        sim_reply_error(req, 413, "PAYLOAD_TOO_LARGE",
                        "File too large: %llu bytes, the maximum is %llu bytes%s",
                        (unsigned long long)req->upload_size, (unsigned long long)limit,
                        streaming ? "" : " (use streaming=true for more)");
        return;
    }
    char id[64], now[40], *dir = NULL, *path = NULL;
    sim_id_new("upl", id);
    sim_now_rfc3339(now, false);
    const struct sim_config *cfg = sim_cfg(req->ctx);
    if (asprintf(&dir, "%s/uploads", cfg->data_dir) < 0 ||
        asprintf(&path, "%s/uploads/%s", cfg->data_dir, id) < 0)
        abort();
    mkdir(dir, 0755);
    free(dir);
    if (rename(req->upload_path, path) != 0) {
        sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "Storing the upload failed: %s",
                        strerror(errno));
        free(path);
        return;
    }
    /* the file is ours now: the framework must not unlink it */
    free(req->upload_path);
    req->upload_path = NULL;
    const char *ctype = req->content_type && *req->content_type ? req->content_type : NULL;
    sqlite3_stmt *st = sim_db_stmt(req->ws, "INSERT INTO res_uploads(id, path, size_bytes, status,"
                                            " content_type, created_at) VALUES (?1,?2,?3,"
                                            "'uploaded',?4,?5)");
    int rc = SQLITE_ERROR;
    if (st) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, path, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)req->upload_size);
        if (ctype)
            sqlite3_bind_text(st, 4, ctype, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 5, now, -1, SQLITE_TRANSIENT);
        rc = sim_res_step_done(st);
    }
    if (rc != SQLITE_DONE) {
        unlink(path);
        free(path);
        sim_res_reply_db_error(req);
        return;
    }
    free(path);
    sim_reply_json(req, 201,
                   json_pack("{s:o,s:s,s:s,s:I,s:s}", "content_type", sim_res_str_or_null(ctype),
                             "created_at", now, "id", id, "size_bytes",
                             (json_int_t)req->upload_size, "status", "uploaded"));
}

static void sim_upl_list(struct sim_req *req)
{
    const char *status = sim_req_query(req, "status");
    sqlite3_stmt *st = sim_db_stmt(req->ws, "SELECT id, size_bytes, status, content_type,"
                                            " created_at FROM res_uploads WHERE ?1 IS NULL OR"
                                            " status = ?1 ORDER BY created_at DESC, id");
    if (!st) {
        sim_res_reply_db_error(req);
        return;
    }
    if (status && *status)
        sqlite3_bind_text(st, 1, status, -1, SQLITE_TRANSIENT);
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, sim_upl_row_json(st));
    sqlite3_reset(st);
    sim_reply_json(req, 200, json_pack("{s:o}", "uploads", arr));
}

uint64_t sim_uploads_max_bytes(struct sim_ctx *ctx, bool streaming)
{
    uint64_t max = sim_cfg(ctx)->max_upload_bytes;
    if (max == 0)
        return streaming ? SIM_UPLOAD_MAX_STREAMING : SIM_UPLOAD_MAX;
    return streaming ? max * 10 : max;
}

void sim_uploads_register(struct sim_router *r)
{
    sim_router_add_schema(r, sim_upl_schema);
    sim_route(r, "POST", "/v1/files", sim_upl_create, SIM_ROUTE_RAW_BODY);
    sim_route(r, "GET", "/v1/files", sim_upl_list, SIM_ROUTE_DEFAULT);
}

char *sim_upload_path(struct sim_ws *ws, const char *upload_id, char **content_type)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "SELECT path, content_type FROM res_uploads WHERE id = ?1");
    if (!st)
        return NULL;
    sqlite3_bind_text(st, 1, upload_id, -1, SQLITE_TRANSIENT);
    char *path = NULL;
    if (sqlite3_step(st) == SQLITE_ROW) {
        path = strdup((const char *)sqlite3_column_text(st, 0));
        if (content_type) {
            const char *ct = sim_res_col_text(st, 1);
            *content_type = ct ? strdup(ct) : NULL;
        }
    }
    sqlite3_reset(st);
    return path;
}

void sim_upload_set_status(struct sim_ws *ws, const char *upload_id, const char *status)
{
    sqlite3_stmt *st = sim_db_stmt(ws, "UPDATE res_uploads SET status = ?2 WHERE id = ?1");
    if (!st)
        return;
    sqlite3_bind_text(st, 1, upload_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, status, -1, SQLITE_TRANSIENT);
    sim_res_step_done(st);
}
