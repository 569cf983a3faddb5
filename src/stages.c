/*
 * stages: see stages.h. The cache and budget modules export their hooks as functions;
 * their ops are assembled here so those modules need not know the contract's layout.
 */
#include "stages.h"

#include "auth_stage.h"
#include "budget_stage.h"
#include "cache.h"
#include "route_stage.h"
#include "upstream_stage.h"

static const struct hg_stage_ops cache_stage_ops = {
    .name = "cache",
    .run = cache_stage,
    .client_gone = cache_client_gone,
    .upstream_failed = cache_upstream_failed,
    .hold_response = cache_hold_response,
    .hold_gate = cache_hold_gate,
    .head_field = cache_xcache, /* X-Cache: MISS/BYPASS on forwarded answers */
    .head_field_name = "X-Cache",
};

static const struct hg_stage_ops budget_stage_ops = {
    .name = "budget",
    .run = budget_stage_run,
    .client_gone = budget_stage_client_gone,
    .upstream_retry = budget_stage_charge,
    .retry_entry = 1,
};

static const struct hg_stage_ops *const table[] = {
    &auth_stage_ops, &route_stage_ops, &cache_stage_ops, &budget_stage_ops, &upstream_stage_ops,
};

const struct hg_stage_ops *const *stages_default(int *n)
{
    *n = (int)(sizeof table / sizeof *table);
    return table;
}
