/*
 * budget_stage: see budget_stage.h.
 *
 * Per request state (req->budget_ctx, freed by a cleanup when the request is freed):
 * the ticket, whether this upstream attempt is being retried, and what the upstream said.
 * Every path ends with exactly one budget_done for the ticket: in the tap's on_done for a
 * finished exchange, when the queue deadline passes, or in the cleanup (client gone,
 * request abandoned).
 */
#include "budget_stage.h"

#include "admin.h"
#include "budget.h"
#include "config.h"
#include "gbudget.h"
#include "hdr.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "retry_after.h"
#include "route.h"
#include "upstream.h"
#include "util.h"

#include <assert.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#define QUEUE_TIMEOUT_HEADER "X-Hotgate-Queue-Timeout"

static budget *g_budget;
static gbudget *g_gbudget; /* the fleet's budget in Redis ([redis] enabled) */
static _Atomic uint32_t g_ra_cap_ms = RETRY_AFTER_DEFAULT_CAP_MS;
static _Atomic unsigned g_shed_retries = 3; /* [queue] shed_retries */

typedef struct bs_ctx {
    budget_ticket *ticket;
    uint32_t deadline_ms;
    int waiting;        /* HG_ASYNC in the queue: the ticket callback resumes or answers */
    int retrying;       /* the tap asked the server to drop this answer and run us again */
    budget_result shed; /* the upstream's shed answer (last head seen) */
    int tapped;
    unsigned shed_retries; /* attempts of this request the upstream shed and we resent */
} bs_ctx;

struct budget *budget_stage_budget(void)
{
    return g_budget;
}

/* ---- answers ---- */

static void respond_verdict(struct hg_req *req, const budget_verdict *v)
{
    struct evkeyvalq h;
    TAILQ_INIT(&h);
    char ra[16];
    snprintf(ra, sizeof ra, "%u", v->retry_after_s ? v->retry_after_s : 1);
    evhttp_add_header(&h, "Retry-After", ra);
    pipeline_respond_error(req, v->status, v->code, v->message, &h);
    evhttp_clear_headers(&h);
}

/* ---- the response tap ---- */

/* The upstream's answer for the budget; ra: its Retry-After value or NULL. Whether it is a
 * shed (429, or 503 with a usable Retry-After). */
static int shed_status(int status, const char *ra, budget_result *r)
{
    memset(r, 0, sizeof *r);
    r->status = status;
    uint32_t ms = 0;
    if (ra && retry_after_parse(ra, util_wall_ms(), g_ra_cap_ms, &ms)) {
        r->has_retry_after = 1;
        r->retry_after_ms = ms;
    }
    return status == 429 || (status == 503 && r->has_retry_after);
}

void budget_stage_charge(struct hg_req *req)
{
    bs_ctx *x = req ? req->budget_ctx : NULL;
    if (x && x->ticket)
        budget_charge(x->ticket);
}

static void background_ticket_cb(budget_ticket *t, budget_outcome o, const budget_verdict *v,
                                 void *arg)
{
    /* never waited on: a ticket that had to queue is given back at once */
    (void)t, (void)o, (void)v, (void)arg;
}

int budget_stage_background(struct hg_req *req, struct budget_ticket **t)
{
    *t = NULL;
    if (!g_budget || !req->cred)
        return 1;
    if (!budget_idle(g_budget, req->cred->name))
        return 0;
    budget_verdict v;
    const char *client = req->client ? req->client->name : NULL;
    budget_outcome o = budget_admit(g_budget, req->cred->name, client, pipeline_req_base(req), 0,
                                    background_ticket_cb, NULL, t, &v);
    if (o == BUDGET_GO)
        return 1;
    budget_done(*t, NULL); /* lost a race for the token: queued, or rejected (NULL) */
    *t = NULL;
    return 0;
}

void budget_stage_background_done(struct budget_ticket *t, int status, const char *retry_after)
{
    if (!t)
        return;
    budget_result r;
    shed_status(status, retry_after, &r);
    budget_done(t, status ? &r : NULL);
}

static int tap_on_head(struct hg_req *req, void *arg, int status, const struct evkeyvalq *headers)
{
    bs_ctx *x = arg;
    memset(&x->shed, 0, sizeof x->shed);
    if (!x->ticket)
        return 0;
    budget_result r;
    if (!shed_status(status, headers ? evhttp_find_header(headers, "Retry-After") : NULL, &r))
        return 0;
    x->shed = r; /* for on_done: cooldown and AIMD even when the client gets the answer */
    if (req->body_kind == HG_BODY_STREAM || req->responded || req->client_gone || !req->route ||
        !req->route->replay_ok || /* the routing table's column */
        x->shed_retries >= atomic_load(&g_shed_retries))
        return 0; /* the client gets the shed answer, Retry-After and all */
    x->shed_retries++;
    /* the upstream stage drops this answer (the transfer is cancelled: no on_done follows) and runs
     * the pipeline again from this stage, where budget_retry re-queues the ticket */
    x->retrying = 1;
    return HG_TAP_RETRY;
}

static void tap_on_done(struct hg_req *req, void *arg, int ok, const struct upstream_result *res)
{
    bs_ctx *x = arg;
    (void)req;
    (void)ok;
    if (!x->ticket || x->retrying)
        return;
    budget_result r = {0};
    if (x->shed.status)
        r = x->shed;
    else if (res)
        r.status = res->http_status;
    budget_done(x->ticket, &r);
    x->ticket = NULL;
}

static void ctx_cleanup(struct hg_req *req, void *arg)
{
    bs_ctx *x = arg;
    (void)req;
    /* a shed answer whose transfer was dropped without on_done (stale-if-error served
     * by the cache, client gone) still counts for the cooldown */
    if (x->ticket)
        budget_done(x->ticket, x->shed.status ? &x->shed : NULL);
    free(x);
}

/* ---- queue callback: on the request's worker thread ---- */

static void on_ticket(budget_ticket *t, budget_outcome o, const budget_verdict *v, void *arg)
{
    struct hg_req *req = arg;
    bs_ctx *x = req->budget_ctx;
    assert(x && x->ticket == t && x->waiting);
    x->waiting = 0;
    if (o == BUDGET_GO && !req->client_gone) {
        pipeline_resume(req);
        return;
    }
    /* expired (or the client is gone): answer, give the ticket back, let the request go.
     * v lives in the ticket: answer before budget_done frees it */
    if (o != BUDGET_GO)
        respond_verdict(req, v);
    budget_done(t, NULL);
    x->ticket = NULL;
    pipeline_req_release(req);
}

void budget_stage_client_gone(struct hg_req *req)
{
    bs_ctx *x = req ? req->budget_ctx : NULL;
    if (!x || !x->waiting || !x->ticket)
        return;
    /* leave the queue at once; the request is released (its last holder) */
    budget_done(x->ticket, NULL);
    x->ticket = NULL;
    x->waiting = 0;
    pipeline_req_release(req);
}

/* ---- the stage ---- */

enum hg_stage_result budget_stage_run(struct hg_req *req)
{
    if (!g_budget || !req->cred)
        return HG_NEXT;
    bs_ctx *x = req->budget_ctx;
    budget_outcome o;
    budget_verdict v;
    if (x && x->retrying && x->ticket) {
        /* the upstream shed our last attempt: back to the front of the queue */
        x->retrying = 0;
        budget_result shed = x->shed;
        memset(&x->shed, 0, sizeof x->shed);
        o = budget_retry(x->ticket, &shed, &v);
        if (o == BUDGET_EXPIRED) {
            budget_done(x->ticket, NULL);
            x->ticket = NULL;
            respond_verdict(req, &v);
            return HG_DONE;
        }
        assert(o == BUDGET_WAIT);
        x->waiting = 1;
        return HG_ASYNC;
    }
    if (x && x->ticket) {
        /* run again after another tap dropped an answer: that attempt is over */
        budget_done(x->ticket, x->shed.status ? &x->shed : NULL);
        x->ticket = NULL;
        x->retrying = 0;
    }
    if (!x) {
        x = calloc(1, sizeof *x);
        if (!x)
            abort();
        req->budget_ctx = x;
        if (pipeline_req_add_cleanup(req, ctx_cleanup, x) != 0) {
            free(x);
            req->budget_ctx = NULL;
            return HG_NEXT; /* cannot track it: let it through rather than leak a slot */
        }
        const char *qt = hdr_find(&req->headers, QUEUE_TIMEOUT_HEADER);
        x->deadline_ms = budget_parse_queue_timeout(qt);
        if (qt) /* absent (the usual case): no second walk */
            evhttp_remove_header(&req->headers, QUEUE_TIMEOUT_HEADER);
    }
    if (!x->tapped) {
        struct hg_tap tap = {tap_on_head, NULL, tap_on_done, x};
        if (pipeline_req_add_tap(req, &tap) == 0)
            x->tapped = 1;
    }
    const char *client = req->client ? req->client->name : NULL;
    o = budget_admit(g_budget, req->cred->name, client, pipeline_req_base(req), x->deadline_ms,
                     on_ticket, req, &x->ticket, &v);
    switch (o) {
    case BUDGET_GO:
        return HG_NEXT;
    case BUDGET_WAIT:
        x->waiting = 1;
        return HG_ASYNC;
    default:
        respond_verdict(req, &v);
        return HG_DONE;
    }
}

/* ---- admin view and metrics ---- */

static void admin_budget(struct evhttp_request *r, void *arg)
{
    (void)arg;
    char *js = budget_admin_json(g_budget);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, js, strlen(js));
    evbuffer_add(b, "\n", 1);
    free(js);
    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", "application/json");
    evhttp_send_reply(r, 200, "OK", b);
    evbuffer_free(b);
}

static void collect_metrics(struct evbuffer *out, void *arg)
{
    (void)arg;
    if (!g_budget)
        return;
    char *s = budget_metrics_text(g_budget);
    evbuffer_add(out, s, strlen(s));
    free(s);
}

/* budget_params from cfg; the arrays are malloc'd (free them with params_free). */
static budget_params params_of(const struct hg_config *cfg)
{
    size_t nc = cfg->n_credentials, nk = cfg->n_clients;
    budget_cred_cfg *creds = calloc(nc ? nc : 1, sizeof *creds);
    budget_client_cfg *clients = calloc(nk ? nk : 1, sizeof *clients);
    if (!creds || !clients)
        abort();
    for (size_t i = 0; i < nc; i++) {
        const struct hg_credential *c = &cfg->credentials[i];
        creds[i].name = c->name;
        creds[i].rate = c->rate;
        creds[i].burst = c->burst ? c->burst : (c->rate > 1 ? c->rate : 1);
        creds[i].max_concurrent = c->max_concurrent;
    }
    for (size_t i = 0; i < nk; i++) {
        const struct hg_client *k = &cfg->clients[i];
        clients[i].name = k->name;
        clients[i].cls = k->class_name ? k->class_name : "interactive";
        clients[i].weight = k->cls ? k->cls->weight : 1;
        clients[i].rate = k->rate;
        clients[i].burst = k->burst ? k->burst : (k->rate > 1 ? k->rate : 1);
        clients[i].max_queued = k->max_queued;
    }
    budget_params p = {0};
    p.creds = creds;
    p.ncreds = (unsigned)nc;
    p.clients = clients;
    p.nclients = (unsigned)nk;
    p.queue_max_total = cfg->queue.max_total;
    p.queue_max_per_client = cfg->queue.max_per_client;
    p.queue_deadline_ms =
        cfg->queue.deadline_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)cfg->queue.deadline_ms;
    uint32_t cap = RETRY_AFTER_DEFAULT_CAP_MS;
    if (cfg->queue.retry_after_max_ms)
        cap = cfg->queue.retry_after_max_ms > UINT32_MAX ? UINT32_MAX
                                                         : (uint32_t)cfg->queue.retry_after_max_ms;
    atomic_store(&g_ra_cap_ms, cap);
    atomic_store(&g_shed_retries, cfg->queue.shed_retries);
    p.retry_after_cap_ms = cap;
    p.aimd_decrease = cfg->queue.aimd_decrease;
    p.aimd_floor = cfg->queue.aimd_floor;
    p.aimd_increase = cfg->queue.aimd_increase;
    p.aimd_window_ms =
        cfg->queue.aimd_window_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)cfg->queue.aimd_window_ms;
    return p;
}

static void params_free(budget_params *p)
{
    free((void *)p->creds);
    free((void *)p->clients);
}

int budget_stage_init(const struct hg_config *cfg)
{
    assert(!g_budget);
    budget_params p = params_of(cfg);
    g_budget = budget_new(&p);
    params_free(&p);
    if (budget_start(g_budget) != 0) {
        log_msg(LOG_ERR, "budget: cannot start the pacing thread");
        budget_free(g_budget);
        g_budget = NULL;
        return -1;
    }
    /* with Redis the credential's budget is the fleet's; its local share while Redis is out */
    int limited = 0;
    for (size_t i = 0; i < cfg->n_credentials; i++)
        limited |= cfg->credentials[i].rate > 0 || cfg->credentials[i].max_concurrent > 0;
    g_gbudget = gbudget_new(g_budget, cfg->upstream.timeout_ms + 5000, limited);
    if (g_gbudget)
        budget_set_global(g_budget, gbudget_ops(), g_gbudget, rds_local_share());
    admin_register("/admin/budget", admin_budget, NULL);
    metrics_register(collect_metrics, NULL);
    return 0;
}

int budget_stage_reconfigure(const struct hg_config *cfg)
{
    if (!g_budget)
        return 0;
    budget_params p = params_of(cfg);
    int rc = budget_reconfigure(g_budget, &p);
    params_free(&p);
    return rc;
}

void budget_stage_shutdown(void)
{
    budget_free(g_budget);
    g_budget = NULL;
    gbudget_free(g_gbudget);
    g_gbudget = NULL;
}
