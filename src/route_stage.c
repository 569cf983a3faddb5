/*
 * route_stage: the pipeline's second stage (stages.h). Refuses (403) what the client's
 * mode does not allow (auth_mode_allows: read-only clients may only read). The SQL hash
 * for the access log is set by the cache stage from its memo of the body (a hit parses no
 * JSON); req->route stays NULL here: the cache stage matches the route policy (route.h).
 */
#include "route_stage.h"

#include "auth.h"
#include "metrics.h"

static enum hg_stage_result route_run(struct hg_req *req)
{
    if (!auth_mode_allows(req->client->mode, req->method_name, req->path)) {
        metrics_inc(M_AUTH_FORBIDDEN, 1);
        pipeline_respond_error(req, 403, NULL, "method not allowed for a read-only client", NULL);
        return HG_DONE;
    }
    return HG_NEXT;
}

const struct hg_stage_ops route_stage_ops = {
    .name = "route",
    .run = route_run,
};
