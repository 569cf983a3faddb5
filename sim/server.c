/*
 * server: the HTTP side of hotdata-sim: the context's life (new, listen, free), the evhttp
 * entry point (control plane under /_sim/ for loopback peers, everything else /v1), and the
 * per-request pipeline, each stage in the module that owns it:
 *   request object (httpconn) -> query string, streamed upload -> route (router: 404/405)
 *   -> token and rate limit (auth: 401/429) -> faults (faults) -> workspace (auth:
 *   400/404/403) -> body (raw to a file, or JSON: 400) -> the area's handler.
 *
 * Rules: one thread, one event loop; nothing here blocks (latency and stalls are timers).
 * Ownership: struct sim_req (sim_req_new) is freed by the reply that answers it (sim_reply).
 */
#include "sim_auth.h"
#include "sim_control.h"
#include "sim_faults.h"
#include "sim_httpconn.h"
#include "sim_int.h"
#include "sim_loop.h"
#include "sim_reply.h"
#include "sim_router.h"
#include "sim_server.h"
#include "sim_stats.h"
#include "sim_store.h"
#include "sim_stream.h"
#include "sim_util.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

/* ------------------------------------------------------------------------------------ */
/* request stages                                                                        */

/* Query string a=b&c into req->query (keys without '=' get an empty value). */
static void sim_parse_query(struct sim_req *req, const struct evhttp_uri *uri)
{
    const char *q = evhttp_uri_get_query(uri);
    if (!q || !*q)
        return;
    char *dup = sim_strdup(q), *save = NULL;
    for (char *kv = strtok_r(dup, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq)
            *eq = '\0';
        char *k = evhttp_uridecode(kv, 1, NULL);
        char *v = evhttp_uridecode(eq ? eq + 1 : "", 1, NULL);
        if (k && v && *k)
            evhttp_add_header(&req->query, k, v);
        free(k);
        free(v);
    }
    free(dup);
}

/* A body the connection filter streamed to disk: owned by req from here on. */
static void sim_take_upload(struct sim_req *req)
{
    struct sim_upload *up = sim_stream_take(
        req->ctx, evhttp_find_header(evhttp_request_get_input_headers(req->ev), "X-Sim-Upload-Id"));
    if (up) {
        req->upload_path = up->path;
        req->upload_size = up->size;
        free(up);
    }
}

/* RAW_BODY route: the body as a file. Not streamed (e.g. the filter passed it through):
 * spill the buffered body. 0, or -1 when it was answered 500. */
static int sim_raw_body(struct sim_req *req, struct evbuffer *in)
{
    struct sim_ctx *ctx = req->ctx;
    if (!req->upload_path) {
        char path[1024];
        snprintf(path, sizeof path, "%s/uploads/body-%llu.part", ctx->cfg.data_dir,
                 (unsigned long long)++ctx->upload_seq);
        FILE *f = fopen(path, "wb");
        if (!f) {
            sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "cannot store upload");
            return -1;
        }
        size_t len = evbuffer_get_length(in);
        if (len)
            fwrite(evbuffer_pullup(in, -1), 1, len, f);
        fclose(f);
        req->upload_path = sim_strdup(path);
        req->upload_size = len;
    }
    ctx->stats.uploads++;
    ctx->stats.upload_bytes += req->upload_size;
    return 0;
}

/* JSON body into req->body (NULL when empty or only white space). 0, or -1 when it was
 * answered 400. */
static int sim_json_body(struct sim_req *req, struct evbuffer *in)
{
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return 0;
    const char *p = (const char *)evbuffer_pullup(in, -1);
    size_t i = 0;
    while (i < len && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
        i++;
    if (i == len)
        return 0;
    json_error_t jerr;
    req->body = json_loadb(p, len, JSON_DECODE_ANY, &jerr);
    if (!req->body) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Invalid JSON body: %s at line %d", jerr.text,
                        jerr.line);
        return -1;
    }
    return 0;
}

/* After the faults: workspace, body, handler. */
static void sim_stage_handler(struct sim_req *req)
{
    struct sim_req_x *x = req->priv;
    if (!(x->route->flags & SIM_ROUTE_NO_WORKSPACE) && sim_auth_workspace(req) < 0)
        return;
    req->content_type =
        evhttp_find_header(evhttp_request_get_input_headers(req->ev), "Content-Type");
    struct evbuffer *in = evhttp_request_get_input_buffer(req->ev);
    int rc =
        (x->route->flags & SIM_ROUTE_RAW_BODY) ? sim_raw_body(req, in) : sim_json_body(req, in);
    if (rc == 0)
        x->route->fn(req);
}

/* Route the request: 0 with x->route set, or -1 when it was answered 404/405. */
static int sim_stage_route(struct sim_req *req, const char *rawpath)
{
    struct sim_ctx *ctx = req->ctx;
    struct sim_req_x *x = req->priv;
    int status;
    struct sim_route_ent *e = sim_router_resolve(&ctx->router, req->method, rawpath, req, &status);
    if (!e) {
        ctx->stats.unmatched++;
        if (status == 405)
            sim_reply_error(req, 405, "METHOD_NOT_ALLOWED", "Method %s not allowed for %s",
                            req->method, req->path);
        else
            sim_reply_error(req, 404, "NOT_FOUND", "No route for %s %s", req->method, req->path);
        return -1;
    }
    x->route = e;
    req->route = e->key;
    e->count++;
    return 0;
}

static void sim_handle_v1(struct sim_ctx *ctx, struct evhttp_request *ev, const char *method,
                          const struct evhttp_uri *uri)
{
    const char *rawpath = evhttp_uri_get_path(uri);
    if (!rawpath || !*rawpath)
        rawpath = "/";
    struct sim_req *req = sim_req_new(ctx, ev, method);
    req->path = evhttp_uridecode(rawpath, 0, NULL);
    ctx->stats.requests_total++;
    sim_take_upload(req);
    sim_parse_query(req, uri);
    if (sim_stage_route(req, rawpath) < 0 || sim_auth_admit(req) < 0 ||
        sim_faults_apply(req, sim_stage_handler) < 0)
        return;
    sim_stage_handler(req);
}

/* ------------------------------------------------------------------------------------ */
/* entry point                                                                           */

static bool sim_peer_is_loopback(struct evhttp_request *ev)
{
    char *addr = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evhttp_request_get_connection(ev), &addr, &port);
    if (!addr)
        return false;
    return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
           strncmp(addr, "::ffff:127.", 11) == 0;
}

static const char *sim_method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    default:
        return "OTHER";
    }
}

static void sim_gencb(struct evhttp_request *ev, void *arg)
{
    struct sim_ctx *ctx = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!uri || !path) {
        sim_send_error_ev(ev, 400, "Malformed request URI");
        return;
    }
    if (strncmp(path, "/_sim/", 6) == 0) {
        if (!sim_peer_is_loopback(ev)) {
            sim_send_error_ev(ev, 403, "control plane is loopback only");
            return;
        }
        sim_control_handle(ctx, ev, path);
        return;
    }
    sim_handle_v1(ctx, ev, sim_method_name(evhttp_request_get_command(ev)), uri);
}

/* ------------------------------------------------------------------------------------ */
/* lifecycle                                                                             */

struct sim_ctx *sim_ctx_new(void)
{
    struct sim_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        abort();
    sim_router_init(&ctx->router);
    sim_faults_clear(&ctx->faults);
    ctx->stats.sql_hashes = json_object();
    util_random(&ctx->rng, sizeof ctx->rng);
    if (!ctx->rng)
        ctx->rng = 0x9E3779B97F4A7C15ULL;
    sim_conns_init(ctx);
    ctx->cfg.seed_rows = 100000;
    ctx->cfg.async_delay_ms = 200;
    ctx->cfg.result_delay_ms = 50;
    ctx->cfg.results_not_ready = 200;
    ctx->cfg.job_delay_ms = 200;
    snprintf(ctx->cfg.listen_host, sizeof ctx->cfg.listen_host, "127.0.0.1");
    ctx->cfg.listen_port = 8788;
    ctx->started_ms = util_mono_ms();
    return ctx;
}

int sim_server_start(struct sim_ctx *ctx)
{
    ctx->http = evhttp_new(ctx->base);
    if (!ctx->http)
        return -1;
    evhttp_set_allowed_methods(ctx->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                              EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                              EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
    evhttp_set_bevcb(ctx->http, sim_stream_bevcb, ctx);
    evhttp_set_gencb(ctx->http, sim_gencb, ctx);
    evhttp_set_timeout(ctx->http, 300);
    evhttp_set_max_headers_size(ctx->http, 64 * 1024);
    if (evhttp_bind_socket(ctx->http, ctx->cfg.listen_host, (ev_uint16_t)ctx->cfg.listen_port) !=
        0) {
        sim_log("cannot listen on %s:%d", ctx->cfg.listen_host, ctx->cfg.listen_port);
        return -1;
    }
    return 0;
}

void sim_ctx_free(struct sim_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->http)
        evhttp_free(ctx->http); /* closes connections: close callbacks free sim_conns */
    sim_conns_free(ctx);
    sim_stream_free_all(ctx);
    sim_store_close(ctx);
    sim_router_free(&ctx->router);
    sim_faults_clear(&ctx->faults);
    json_decref(ctx->stats.sql_hashes);
    for (size_t i = 0; i < ctx->cfg.ntokens; i++) {
        struct sim_token *t = &ctx->cfg.tokens[i];
        util_wipe(t->token, strlen(t->token));
        free(t->token);
        for (size_t j = 0; j < t->nallowed; j++)
            free(t->allowed[j]);
        free(t->allowed);
    }
    for (size_t i = 0; i < ctx->cfg.nws_ids; i++)
        free(ctx->cfg.ws_ids[i]);
    free(ctx->cfg.data_dir);
    if (ctx->base)
        event_base_free(ctx->base); /* drops the pending one-shot events */
    sim_loop_free_timers(ctx);
    free(ctx);
}
