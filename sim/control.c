/*
 * control: the simulator's control plane under /_sim/ (loopback only, no auth; server.c
 * checks the peer): GET /_sim/stats, POST /_sim/reset[?data=1], GET|POST /_sim/faults.
 * Shapes are documented in sim/README.md. POST /_sim/faults replaces the whole fault
 * configuration (fields left out are off), so a test states exactly what it wants.
 *
 * Rules: loop thread only; never exposes a token (stats show a SHA-256 prefix).
 */
#include "sim_int.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

static void sim_fault_set_clear(struct sim_fault_set *s, bool global)
{
    s->latency_ms = global ? 0 : -1;
    s->jitter_ms = global ? 0 : -1;
    s->error_rate = global ? 0 : -1;
    s->error_status = global ? 500 : -1;
    s->drop = global ? SIM_DROP_NONE : -1;
    s->drop_rate = -1;
    s->stall_ms = global ? 0 : -1;
}

void sim_faults_clear(struct sim_faults *f)
{
    for (size_t i = 0; i < f->nroutes; i++)
        free(f->routes[i].route);
    free(f->routes);
    f->routes = NULL;
    f->nroutes = 0;
    sim_fault_set_clear(&f->global, true);
    f->retry_after_count = 0;
    f->retry_after_s = 1;
    f->async_delay_ms = -1;
}

static const char *sim_drop_name(int d)
{
    switch (d) {
    case SIM_DROP_BEFORE:
        return "before";
    case SIM_DROP_MID:
        return "mid";
    default:
        return "none";
    }
}

static int sim_get_int(json_t *o, const char *k, int *out, int min, int max, char *err,
                       size_t errlen)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        snprintf(err, errlen, "%s must be an integer in [%d, %d]", k, min, max);
        return -1;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

static int sim_get_rate(json_t *o, const char *k, double *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1) {
        snprintf(err, errlen, "%s must be a number in [0, 1]", k);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

static int sim_set_from_json(struct sim_fault_set *s, json_t *o, char *err, size_t errlen)
{
    if (!json_is_object(o)) {
        snprintf(err, errlen, "fault set must be an object");
        return -1;
    }
    if (sim_get_int(o, "latency_ms", &s->latency_ms, 0, 600000, err, errlen) < 0 ||
        sim_get_int(o, "jitter_ms", &s->jitter_ms, 0, 600000, err, errlen) < 0 ||
        sim_get_int(o, "stall_ms", &s->stall_ms, 0, 3600000, err, errlen) < 0 ||
        sim_get_int(o, "error_status", &s->error_status, 400, 599, err, errlen) < 0 ||
        sim_get_rate(o, "error_rate", &s->error_rate, err, errlen) < 0 ||
        sim_get_rate(o, "drop_rate", &s->drop_rate, err, errlen) < 0)
        return -1;
    json_t *d = json_object_get(o, "drop");
    if (d && !json_is_null(d)) {
        const char *v = json_string_value(d);
        if (!v) {
            snprintf(err, errlen, "drop must be \"none\", \"before\" or \"mid\"");
            return -1;
        }
        if (!strcmp(v, "none"))
            s->drop = SIM_DROP_NONE;
        else if (!strcmp(v, "before") || !strcmp(v, "before_response"))
            s->drop = SIM_DROP_BEFORE;
        else if (!strcmp(v, "mid") || !strcmp(v, "mid_response"))
            s->drop = SIM_DROP_MID;
        else {
            snprintf(err, errlen, "drop must be \"none\", \"before\" or \"mid\"");
            return -1;
        }
    }
    return 0;
}

int sim_faults_from_json(struct sim_faults *f, json_t *j, char *err, size_t errlen)
{
    if (!json_is_object(j)) {
        snprintf(err, errlen, "body must be a JSON object");
        return -1;
    }
    struct sim_faults n;
    memset(&n, 0, sizeof n);
    sim_faults_clear(&n);
    if (sim_set_from_json(&n.global, j, err, errlen) < 0)
        goto fail;
    json_t *ra = json_object_get(j, "retry_after");
    if (ra && !json_is_null(ra)) {
        if (!json_is_object(ra)) {
            snprintf(err, errlen, "retry_after must be {\"count\":N,\"seconds\":S}");
            goto fail;
        }
        if (sim_get_int(ra, "count", &n.retry_after_count, 0, 1000000, err, errlen) < 0 ||
            sim_get_int(ra, "seconds", &n.retry_after_s, 1, 3600, err, errlen) < 0)
            goto fail;
    }
    if (sim_get_int(j, "async_delay_ms", &n.async_delay_ms, 0, 600000, err, errlen) < 0)
        goto fail;
    json_t *routes = json_object_get(j, "routes");
    if (routes && !json_is_null(routes)) {
        if (!json_is_object(routes)) {
            snprintf(err, errlen, "routes must be an object keyed by \"METHOD /pattern\"");
            goto fail;
        }
        const char *key;
        json_t *v;
        json_object_foreach(routes, key, v)
        {
            n.routes = realloc(n.routes, (n.nroutes + 1) * sizeof *n.routes);
            if (!n.routes)
                abort();
            struct sim_route_fault *rf = &n.routes[n.nroutes++];
            rf->route = sim_strdup(key);
            sim_fault_set_clear(&rf->set, false);
            if (sim_set_from_json(&rf->set, v, err, errlen) < 0)
                goto fail;
        }
    }
    sim_faults_clear(f);
    *f = n;
    return 0;
fail:
    sim_faults_clear(&n);
    return -1;
}

static json_t *sim_set_to_json(const struct sim_fault_set *s)
{
    json_t *o = json_object();
    if (s->latency_ms >= 0)
        json_object_set_new(o, "latency_ms", json_integer(s->latency_ms));
    if (s->jitter_ms >= 0)
        json_object_set_new(o, "jitter_ms", json_integer(s->jitter_ms));
    if (s->error_rate >= 0)
        json_object_set_new(o, "error_rate", json_real(s->error_rate));
    if (s->error_status >= 0)
        json_object_set_new(o, "error_status", json_integer(s->error_status));
    if (s->drop >= 0)
        json_object_set_new(o, "drop", json_string(sim_drop_name(s->drop)));
    json_object_set_new(o, "drop_rate", json_real(s->drop_rate >= 0 ? s->drop_rate : 1.0));
    if (s->stall_ms >= 0)
        json_object_set_new(o, "stall_ms", json_integer(s->stall_ms));
    return o;
}

json_t *sim_faults_to_json(const struct sim_faults *f)
{
    json_t *o = sim_set_to_json(&f->global);
    json_object_set_new(
        o, "retry_after",
        json_pack("{s:i,s:i}", "count", f->retry_after_count, "seconds", f->retry_after_s));
    json_object_set_new(o, "async_delay_ms",
                        f->async_delay_ms >= 0 ? json_integer(f->async_delay_ms) : json_null());
    json_t *routes = json_object();
    for (size_t i = 0; i < f->nroutes; i++)
        json_object_set_new(routes, f->routes[i].route, sim_set_to_json(&f->routes[i].set));
    json_object_set_new(o, "routes", routes);
    return o;
}

static json_t *sim_stats_json(struct sim_ctx *ctx)
{
    struct sim_stats *s = &ctx->stats;
    json_t *routes = json_object();
    for (size_t i = 0; i < ctx->router.n; i++)
        if (ctx->router.routes[i].count)
            json_object_set_new(routes, ctx->router.routes[i].key,
                                json_integer((json_int_t)ctx->router.routes[i].count));
    json_t *tokens = json_object();
    for (size_t i = 0; i < ctx->cfg.ntokens; i++)
        json_object_set_new(tokens, ctx->cfg.tokens[i].hash12,
                            json_pack("{s:I,s:I}", "requests", (json_int_t)s->token_counts[i],
                                      "rate_limited", (json_int_t)s->token_429[i]));
    json_t *status = json_object();
    for (int c = 1; c <= 5; c++) {
        char k[8];
        snprintf(k, sizeof k, "%dxx", c);
        json_object_set_new(status, k, json_integer((json_int_t)s->status[c]));
    }
    json_t *ws = json_array();
    for (size_t i = 0; i < ctx->nws; i++)
        json_array_append_new(ws, json_string(ctx->ws[i]->id));
    return json_pack(
        "{s:I,s:I,s:o,s:o,s:O,s:o,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I,s:I},s:I,s:{s:I,s:I},"
        "s:{s:I,s:I},s:I,s:I,s:o}",
        "requests_total", (json_int_t)s->requests_total, "unmatched", (json_int_t)s->unmatched,
        "routes", routes, "status", status, "sql_hashes", s->sql_hashes, "tokens", tokens,
        "rate_limited", (json_int_t)s->rate_limited, "retry_after_injected",
        (json_int_t)s->one_shot_429, "responses_429",
        (json_int_t)(s->rate_limited + s->one_shot_429), "faults", "errors",
        (json_int_t)s->injected_errors, "drops_before", (json_int_t)s->injected_drops_before,
        "drops_mid", (json_int_t)s->injected_drops_mid, "stalls", (json_int_t)s->injected_stalls,
        "delayed", (json_int_t)s->delayed, "queries_executed", (json_int_t)s->queries_executed,
        "connections", "open", (json_int_t)ctx->nconns, "accepted",
        (json_int_t)s->connections_accepted, "uploads", "count", (json_int_t)s->uploads, "bytes",
        (json_int_t)s->upload_bytes, "bytes_out", (json_int_t)s->bytes_out, "uptime_ms",
        (json_int_t)(util_mono_ms() - ctx->started_ms), "workspaces", ws);
}

void sim_control_handle(struct sim_ctx *ctx, struct evhttp_request *ev, const char *path)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(ev);
    if (strcmp(path, "/_sim/stats") == 0) {
        if (m != EVHTTP_REQ_GET) {
            sim_send_error_ev(ctx, ev, 405, "use GET");
            return;
        }
        sim_send_json_ev(ctx, ev, 200, sim_stats_json(ctx));
        return;
    }
    if (strcmp(path, "/_sim/reset") == 0) {
        if (m != EVHTTP_REQ_POST) {
            sim_send_error_ev(ctx, ev, 405, "use POST");
            return;
        }
        const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(ev));
        bool data = q && (strstr(q, "data=1") || strstr(q, "data=true"));
        sim_stats_clear(ctx);
        for (size_t i = 0; i < ctx->cfg.ntokens; i++)
            ctx->cfg.tokens[i].bucket_ts_us = 0;
        if (data && sim_store_reset_data(ctx) < 0) {
            sim_send_error_ev(ctx, ev, 500, "re-seeding failed");
            return;
        }
        sim_send_json_ev(ctx, ev, 200, json_pack("{s:b,s:b}", "ok", 1, "data", data));
        return;
    }
    if (strcmp(path, "/_sim/faults") == 0) {
        if (m == EVHTTP_REQ_GET) {
            sim_send_json_ev(ctx, ev, 200, sim_faults_to_json(&ctx->faults));
            return;
        }
        if (m != EVHTTP_REQ_POST && m != EVHTTP_REQ_PUT) {
            sim_send_error_ev(ctx, ev, 405, "use GET or POST");
            return;
        }
        struct evbuffer *in = evhttp_request_get_input_buffer(ev);
        size_t len = evbuffer_get_length(in);
        json_error_t jerr;
        json_t *j =
            len ? json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &jerr) : json_object();
        if (!j) {
            sim_send_error_ev(ctx, ev, 400, "Invalid JSON body");
            return;
        }
        char err[256] = "";
        int rc = sim_faults_from_json(&ctx->faults, j, err, sizeof err);
        json_decref(j);
        if (rc < 0) {
            sim_send_error_ev(ctx, ev, 400, err);
            return;
        }
        sim_send_json_ev(ctx, ev, 200, sim_faults_to_json(&ctx->faults));
        return;
    }
    sim_send_error_ev(ctx, ev, 404, "unknown control endpoint");
}
