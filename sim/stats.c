/*
 * stats: the counters of GET /_sim/stats and their JSON form. The pipeline, the reply
 * writer, the fault stage and the stream filter bump the fields of ctx->stats directly;
 * the functions here are the ones with more than an increment.
 *
 * Rules: loop thread only; tokens show only as their hash12, never themselves.
 */
#include "sim_int.h"
#include "sim_stats.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

void sim_stats_count_sql(struct sim_ctx *ctx, const char *hash)
{
    json_t *v = json_object_get(ctx->stats.sql_hashes, hash);
    if (v)
        json_integer_set(v, json_integer_value(v) + 1);
    else
        json_object_set_new(ctx->stats.sql_hashes, hash, json_integer(1));
    ctx->stats.queries_executed++;
}

void sim_stats_clear(struct sim_ctx *ctx)
{
    json_t *h = ctx->stats.sql_hashes;
    memset(&ctx->stats, 0, sizeof ctx->stats);
    if (h)
        json_object_clear(h);
    else
        h = json_object();
    ctx->stats.sql_hashes = h;
    for (size_t i = 0; i < ctx->router.n; i++)
        ctx->router.routes[i].count = 0;
}

void sim_stats_count_status(struct sim_ctx *ctx, int status)
{
    int cls = status / 100;
    if (cls >= 1 && cls <= 5)
        ctx->stats.status[cls]++;
}

json_t *sim_stats_json(struct sim_ctx *ctx)
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
