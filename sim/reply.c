/*
 * reply: the reply writer. Every answer to a /v1 request leaves through sim_send: status
 * counted, Content-Type set, body (JSON text from sim_json_dumps, an API-shaped error from
 * util_api_error_json, or raw bytes) sent, request freed. The drop-mid fault is carried out
 * here: half the body, then the connection is closed from a timer.
 *
 * Rules: loop thread only; exactly one sim_reply_* per request (it frees the request); a
 * request whose client went away (req->ev NULL) is only freed.
 */
#include "sim_httpconn.h"
#include "sim_json.h"
#include "sim_reply.h"
#include "sim_stats.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

static void sim_free_ref(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

/* Send status + body (may be NULL) and free req. */
static void sim_send(struct sim_req *req, int status, const char *ctype, struct evbuffer *body)
{
    struct sim_req_x *x = req->priv;
    struct sim_ctx *ctx = req->ctx;
    struct evhttp_request *ev = req->ev;
    if (ev && status > 0) {
        struct evkeyvalq *oh = evhttp_request_get_output_headers(ev);
        if (ctype)
            evhttp_add_header(oh, "Content-Type", ctype);
        sim_stats_count_status(ctx, status);
        size_t len = body ? evbuffer_get_length(body) : 0;
        ctx->stats.bytes_out += len;
        struct sim_conn *conn = x->conn;
        if (conn && conn->pending == req)
            conn->pending = NULL;
        if (x->drop_mid && conn && len >= 2) {
            char cl[32];
            snprintf(cl, sizeof cl, "%zu", len);
            evhttp_add_header(oh, "Content-Length", cl);
            evhttp_send_reply_start(ev, status, util_reason_phrase(status));
            struct evbuffer *part = evbuffer_new();
            evbuffer_remove_buffer(body, part, len / 2);
            evhttp_send_reply_chunk(ev, part);
            evbuffer_free(part);
            ctx->stats.injected_drops_mid++;
            sim_conn_kill_after(conn, 50);
        } else {
            evhttp_send_reply(ev, status, util_reason_phrase(status), status == 204 ? NULL : body);
        }
    }
    sim_req_free(req);
}

void sim_reply_header(struct sim_req *req, const char *name, const char *value)
{
    if (req->ev)
        evhttp_add_header(evhttp_request_get_output_headers(req->ev), name, value);
}

void sim_reply_json(struct sim_req *req, int status, json_t *body)
{
    struct evbuffer *b = evbuffer_new();
    size_t len;
    char *s = sim_json_dumps(body, &len);
    if (body)
        json_decref(body);
    evbuffer_add_reference(b, s, len, sim_free_ref, NULL);
    sim_send(req, status, "application/json", b);
    evbuffer_free(b);
}

void sim_reply_empty(struct sim_req *req, int status)
{
    sim_send(req, status, NULL, NULL);
}

void sim_reply_raw(struct sim_req *req, int status, const char *content_type, struct evbuffer *buf)
{
    sim_send(req, status, content_type, buf);
}

static void sim_reply_error_msg(struct sim_req *req, int status, const char *code, const char *msg)
{
    char *s = util_api_error_json(status, code ? code : util_status_code_name(status), msg);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_reference(b, s, strlen(s), sim_free_ref, NULL);
    sim_send(req, status, "application/json", b);
    evbuffer_free(b);
}

void sim_reply_error(struct sim_req *req, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sim_reply_error_msg(req, status, code, msg);
}

void sim_send_json_ev(struct evhttp_request *ev, int status, json_t *body)
{
    size_t len;
    char *s = sim_json_dumps(body, &len);
    if (body)
        json_decref(body);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_reference(b, s, len, sim_free_ref, NULL);
    evhttp_add_header(evhttp_request_get_output_headers(ev), "Content-Type", "application/json");
    evhttp_send_reply(ev, status, util_reason_phrase(status), b);
    evbuffer_free(b);
}

void sim_send_error_ev(struct evhttp_request *ev, int status, const char *message)
{
    char *s = util_api_error_json(status, util_status_code_name(status), message);
    json_t *j = json_loads(s, 0, NULL);
    free(s);
    sim_send_json_ev(ev, status, j);
}

void sim_reply_retry_after(struct sim_req *req, int seconds, const char *msg)
{
    char ra[16];
    snprintf(ra, sizeof ra, "%d", seconds < 1 ? 1 : seconds);
    sim_reply_header(req, "Retry-After", ra);
    sim_reply_error_msg(req, 429, "OVERLOADED", msg);
}
