/*
 * route_stage: the pipeline's route stage (see route_stage.c and stages.h for its place).
 */
#ifndef HG_ROUTE_STAGE_H
#define HG_ROUTE_STAGE_H

#include "pipeline.h"

extern const struct hg_stage_ops route_stage_ops;

#endif
