/*
 * upstream_stage: the pipeline's last stage: forward the client's request to the upstream
 * (upstream.h) and stream the answer back (pipeline_respond_*), with response taps, held
 * answers (cache_hold_response: nothing reaches the client before the answer is complete),
 * tap-requested retries and stale-if-error through the stages' upstream_failed hooks.
 *
 * Rules: the upstream request of a client request is built by upstream_req_from_client
 * only (hop-by-hop headers removed, client Authorization replaced by the credential's
 * token, X-Workspace-Id and X-Request-Id added): the foreground path and the cache's
 * background refresh share it.
 */
#ifndef HG_UPSTREAM_STAGE_H
#define HG_UPSTREAM_STAGE_H

#include "pipeline.h"

struct upstream;
struct upstream_req;

extern const struct hg_stage_ops upstream_stage_ops;

/* A new upstream request on up for req's method, target and headers (no body set). */
struct upstream_req *upstream_req_from_client(struct upstream *up, const struct hg_req *req);

#endif
