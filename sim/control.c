/*
 * control: the simulator's control plane under /_sim/ (loopback only, no auth; server.c
 * checks the peer): GET /_sim/stats, POST /_sim/reset[?data=1], GET|POST /_sim/faults.
 * Shapes are documented in sim/README.md. POST /_sim/faults replaces the whole fault
 * configuration (fields left out are off), so a test states exactly what it wants.
 *
 * Rules: loop thread only; never exposes a token (stats show a SHA-256 prefix).
 */
#include "sim_control.h"
#include "sim_faults.h"
#include "sim_int.h"
#include "sim_reply.h"
#include "sim_stats.h"
#include "sim_store.h"

#include <string.h>

#include <event2/buffer.h>

/* POST /_sim/reset[?data=1]: counters and token buckets; with data=1 the databases too. */
static void sim_control_reset(struct sim_ctx *ctx, struct evhttp_request *ev)
{
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(ev));
    bool data = q && (strstr(q, "data=1") || strstr(q, "data=true"));
    sim_stats_clear(ctx);
    for (size_t i = 0; i < ctx->cfg.ntokens; i++)
        ctx->cfg.tokens[i].bucket_ts_us = 0;
    if (data && sim_store_reset_data(ctx) < 0) {
        sim_send_error_ev(ev, 500, "re-seeding failed");
        return;
    }
    sim_send_json_ev(ev, 200, json_pack("{s:b,s:b}", "ok", 1, "data", data));
}

/* POST|PUT /_sim/faults: replace the whole fault configuration. */
static void sim_control_set_faults(struct sim_ctx *ctx, struct evhttp_request *ev)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(ev);
    size_t len = evbuffer_get_length(in);
    json_error_t jerr;
    json_t *j =
        len ? json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &jerr) : json_object();
    if (!j) {
        sim_send_error_ev(ev, 400, "Invalid JSON body");
        return;
    }
    char err[256] = "";
    int rc = sim_faults_from_json(&ctx->faults, j, err, sizeof err);
    json_decref(j);
    if (rc < 0) {
        sim_send_error_ev(ev, 400, err);
        return;
    }
    sim_send_json_ev(ev, 200, sim_faults_to_json(&ctx->faults));
}

void sim_control_handle(struct sim_ctx *ctx, struct evhttp_request *ev, const char *path)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(ev);
    if (strcmp(path, "/_sim/stats") == 0) {
        if (m != EVHTTP_REQ_GET)
            sim_send_error_ev(ev, 405, "use GET");
        else
            sim_send_json_ev(ev, 200, sim_stats_json(ctx));
    } else if (strcmp(path, "/_sim/reset") == 0) {
        if (m != EVHTTP_REQ_POST)
            sim_send_error_ev(ev, 405, "use POST");
        else
            sim_control_reset(ctx, ev);
    } else if (strcmp(path, "/_sim/faults") == 0) {
        if (m == EVHTTP_REQ_GET)
            sim_send_json_ev(ev, 200, sim_faults_to_json(&ctx->faults));
        else if (m != EVHTTP_REQ_POST && m != EVHTTP_REQ_PUT)
            sim_send_error_ev(ev, 405, "use GET or POST");
        else
            sim_control_set_faults(ctx, ev);
    } else {
        sim_send_error_ev(ev, 404, "unknown control endpoint");
    }
}
