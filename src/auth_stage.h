/*
 * auth_stage: the pipeline's auth stage (see auth_stage.c and stages.h for its place).
 */
#ifndef HG_AUTH_STAGE_H
#define HG_AUTH_STAGE_H

#include "pipeline.h"

extern const struct hg_stage_ops auth_stage_ops;

#endif
