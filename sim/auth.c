/*
 * auth: who may call. The bearer token of a routed request (401 when missing or unknown,
 * compared in constant time), its token bucket (429 with Retry-After when empty; --rate,
 * --burst), and its access to the workspace named by X-Workspace-Id (400 when missing, 404
 * when unknown, 403 when the token's =list leaves it out).
 *
 * Rules: loop thread only; a token is never logged or echoed (stats count by index).
 */
#include "sim_auth.h"
#include "sim_int.h"
#include "sim_reply.h"
#include "sim_store.h"
#include "util.h"

#include <math.h>
#include <string.h>
#include <strings.h>

static struct sim_token *sim_auth(struct sim_ctx *ctx, struct evhttp_request *ev)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(ev), "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    const char *t = h + 7;
    while (*t == ' ')
        t++;
    size_t tl = strlen(t);
    struct sim_token *found = NULL;
    for (size_t i = 0; i < ctx->cfg.ntokens; i++) {
        struct sim_token *tok = &ctx->cfg.tokens[i];
        size_t l = strlen(tok->token);
        if (l == tl && util_ct_equal(tok->token, t, l))
            found = tok;
    }
    return found;
}

bool sim_token_may_use(const struct sim_token *tok, const char *ws_id)
{
    if (tok->all_workspaces)
        return true;
    for (size_t i = 0; i < tok->nallowed; i++)
        if (strcmp(tok->allowed[i], ws_id) == 0)
            return true;
    return false;
}

/* Token bucket: 0 when admitted, else the Retry-After seconds. */
static int sim_rate_admit(struct sim_ctx *ctx, struct sim_token *tok)
{
    if (ctx->cfg.rate <= 0)
        return 0;
    uint64_t now = util_mono_us();
    double burst = ctx->cfg.burst > 0 ? ctx->cfg.burst : ctx->cfg.rate;
    if (tok->bucket_ts_us == 0) {
        tok->bucket = burst;
    } else {
        tok->bucket += (double)(now - tok->bucket_ts_us) / 1e6 * ctx->cfg.rate;
        if (tok->bucket > burst)
            tok->bucket = burst;
    }
    tok->bucket_ts_us = now;
    if (tok->bucket >= 1.0) {
        tok->bucket -= 1.0;
        return 0;
    }
    int s = (int)ceil((1.0 - tok->bucket) / ctx->cfg.rate);
    return s < 1 ? 1 : s;
}

int sim_auth_admit(struct sim_req *req)
{
    struct sim_ctx *ctx = req->ctx;
    req->token = sim_auth(ctx, req->ev);
    if (!req->token) {
        sim_reply_error(req, 401, "UNAUTHORIZED", "Missing or invalid authorization");
        return -1;
    }
    size_t ti = (size_t)(req->token - ctx->cfg.tokens);
    ctx->stats.token_counts[ti]++;

    int ra = sim_rate_admit(ctx, req->token);
    if (ra > 0) {
        ctx->stats.rate_limited++;
        ctx->stats.token_429[ti]++;
        sim_reply_retry_after(req, ra, "Rate limit exceeded, retry later");
        return -1;
    }
    return 0;
}

int sim_auth_workspace(struct sim_req *req)
{
    const char *wsid =
        evhttp_find_header(evhttp_request_get_input_headers(req->ev), "X-Workspace-Id");
    if (!wsid || !*wsid) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Missing X-Workspace-Id header");
        return -1;
    }
    struct sim_ws *ws = sim_ws_find(req->ctx, wsid);
    if (!ws) {
        sim_reply_error(req, 404, "NOT_FOUND", "Workspace '%s' not found", wsid);
        return -1;
    }
    if (!sim_token_may_use(req->token, wsid)) {
        sim_reply_error(req, 403, "FORBIDDEN", "Token may not use workspace '%s'", wsid);
        return -1;
    }
    req->ws = ws;
    req->db = ws->db;
    return 0;
}
