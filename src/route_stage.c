/*
 * route_stage: the pipeline's second stage (stages.h). Every request that passed auth gets
 * its row of the routing table (route_match_columns, route.h) in req->route, for the whole
 * life of the request; the stages after it read their columns there:
 *   readonly_ok  auth's mode check, here: a read-only client is refused (403) anything else;
 *   replay_ok    the budget's shed-and-retry (budget_stage.c);
 *   cache_class, mutation, tags, invalidations  the cache (cache_stage.c), which first adds
 *                the tags (route_complete): a request the cache does not look at (cache
 *                off, not an API path) builds none.
 * The SQL hash for the access log is set by the cache stage from its memo of the body (a hit
 * parses no JSON).
 *
 * Storage: a policy is a few KB; each worker thread keeps a few spare ones (a request is
 * made and freed on its worker's thread), so a request costs no allocation in the steady
 * state. They are freed when the worker's loop ends (thread_end).
 */
#include "route_stage.h"

#include <stdlib.h>

#include "auth.h"
#include "metrics.h"
#include "route.h"

#define SPARES 8

static __thread struct route_policy *spare[SPARES];
static __thread int nspare;

static struct route_policy *policy_get(void)
{
    if (nspare)
        return spare[--nspare];
    struct route_policy *p = malloc(sizeof *p);
    if (!p)
        abort();
    return p;
}

static void route_req_free(struct hg_req *req)
{
    struct route_policy *p = req->route;
    req->route = NULL;
    if (!p)
        return;
    if (nspare < SPARES)
        spare[nspare++] = p;
    else
        free(p);
}

static void route_thread_end(void)
{
    while (nspare)
        free(spare[--nspare]);
}

static enum hg_stage_result route_run(struct hg_req *req)
{
    struct route_policy *p = policy_get();
    route_match_columns(req->method_name, req->path, req->query, p); /* tags: the cache */
    req->route = p;
    if (!auth_mode_allows(req->client->mode, p)) {
        metrics_inc(M_AUTH_FORBIDDEN, 1);
        pipeline_respond_error(req, 403, NULL, "method not allowed for a read-only client", NULL);
        return HG_DONE;
    }
    return HG_NEXT;
}

const struct hg_stage_ops route_stage_ops = {
    .name = "route",
    .run = route_run,
    .req_free = route_req_free,
    .thread_end = route_thread_end,
};
