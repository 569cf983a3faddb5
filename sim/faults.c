/*
 * faults: fault injection. The configuration of /_sim/faults and the --latency-ms ...
 * options (a global fault set plus per-route overrides, one-shot 429s, the async delay
 * override) in and out of JSON, and the fault stage of the /v1 pipeline, after auth and
 * rate limiting: one-shot 429, stall (no answer, connection closed after stall_ms), drop
 * before the response, drop mid-response (sim_reply sends half the body), injected error
 * status, then latency + jitter on a timer.
 *
 * Rules: loop thread only. A configuration is validated whole before it replaces the old
 * one. Dice come from sim_rand01 (the context's xorshift), never from the id generator.
 */
#include "sim_faults.h"
#include "sim_httpconn.h"
#include "sim_loop.h"
#include "sim_reply.h"
#include "sim_util.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The effective fault set for a route: per-route fields override the global ones. */
static struct sim_fault_set sim_faults_for(struct sim_ctx *ctx, const char *route)
{
    struct sim_fault_set s = ctx->faults.global;
    for (size_t i = 0; i < ctx->faults.nroutes; i++) {
        struct sim_route_fault *rf = &ctx->faults.routes[i];
        if (strcmp(rf->route, route) != 0)
            continue;
        if (rf->set.latency_ms >= 0)
            s.latency_ms = rf->set.latency_ms;
        if (rf->set.jitter_ms >= 0)
            s.jitter_ms = rf->set.jitter_ms;
        if (rf->set.error_rate >= 0)
            s.error_rate = rf->set.error_rate;
        if (rf->set.error_status >= 0)
            s.error_status = rf->set.error_status;
        if (rf->set.drop >= 0)
            s.drop = rf->set.drop;
        if (rf->set.drop_rate >= 0)
            s.drop_rate = rf->set.drop_rate;
        if (rf->set.stall_ms >= 0)
            s.stall_ms = rf->set.stall_ms;
    }
    return s;
}

/* The latency timer fired: go on unless the client left meanwhile. */
static void sim_latency_done(void *arg)
{
    struct sim_req *req = arg;
    if (!req->ev) {
        sim_req_free(req);
        return;
    }
    struct sim_req_x *x = req->priv;
    x->resume(req);
}

/* Latency plus jitter of a fault set, in ms (0: none). */
static int sim_faults_latency(struct sim_ctx *ctx, const struct sim_fault_set *fs)
{
    int lat = fs->latency_ms > 0 ? fs->latency_ms : 0;
    if (fs->jitter_ms > 0)
        lat += (int)(sim_rand01(ctx) * (fs->jitter_ms + 1));
    return lat;
}

/* Stall or drop the connection before any response: -1 when it did, else 0 (maybe with
 * the drop-mid flag set for the reply writer). */
static int sim_faults_connection(struct sim_req *req, const struct sim_fault_set *fs)
{
    struct sim_ctx *ctx = req->ctx;
    struct sim_req_x *x = req->priv;
    if (fs->stall_ms > 0) {
        ctx->stats.injected_stalls++;
        x->abandoned = true;
        sim_conn_kill_after(x->conn, fs->stall_ms);
        return -1;
    }
    double drop_rate = fs->drop_rate >= 0 ? fs->drop_rate : 1.0;
    if (fs->drop == SIM_DROP_BEFORE && sim_rand01(ctx) < drop_rate) {
        ctx->stats.injected_drops_before++;
        struct sim_conn *c = x->conn;
        sim_req_free(req);
        sim_conn_kill_after(c, 0);
        return -1;
    }
    if (fs->drop == SIM_DROP_MID && sim_rand01(ctx) < drop_rate)
        x->drop_mid = true;
    return 0;
}

int sim_faults_apply(struct sim_req *req, void (*next)(struct sim_req *req))
{
    struct sim_ctx *ctx = req->ctx;
    if (ctx->faults.retry_after_count > 0) {
        ctx->faults.retry_after_count--;
        ctx->stats.one_shot_429++;
        sim_reply_retry_after(req, ctx->faults.retry_after_s, "Service overloaded (injected)");
        return -1;
    }
    struct sim_fault_set fs = sim_faults_for(ctx, req->route);
    if (sim_faults_connection(req, &fs) < 0)
        return -1;
    if (fs.error_rate > 0 && sim_rand01(ctx) < fs.error_rate) {
        int st = fs.error_status > 0 ? fs.error_status : 500;
        ctx->stats.injected_errors++;
        sim_reply_error(req, st, util_status_code_name(st), "Injected fault: upstream error %d",
                        st);
        return -1;
    }
    int lat = sim_faults_latency(ctx, &fs);
    if (lat > 0) {
        struct sim_req_x *x = req->priv;
        ctx->stats.delayed++;
        x->resume = next;
        sim_timer_after_drop(ctx, lat, sim_latency_done, req, sim_req_drop);
        return -1;
    }
    return 0;
}
