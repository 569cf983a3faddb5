/*
 * stages: hotgate's stage table, in the order a request passes it (pipeline.h):
 *
 *   auth -> route -> cache -> budget -> upstream
 *
 * The only place that names every stage: server.c hands stages_default() to
 * pipeline_set_stages() at start. Each stage lives in its own module (auth_stage.c,
 * route_stage.c, cache.h, budget_stage.h, upstream_stage.c) and knows the pipeline only.
 */
#ifndef HG_STAGES_H
#define HG_STAGES_H

#include "pipeline.h"

/* The table and its length. */
const struct hg_stage_ops *const *stages_default(int *n);

#endif
