/*
 * sim_datasets (sim/datasets.c): what other areas call of /v1/datasets.
 *
 * Rules: loop thread only.
 */
#ifndef SIM_DATASETS_H
#define SIM_DATASETS_H

#include "sim_types.h"

/*
 * POST /v1/refresh with dataset_id. Must reply to req: 200 null when !async, or 202 with a
 * job (sim_jobs_reply_accepted) when async; 404 "Dataset not found" when unknown.
 */
void sim_datasets_refresh(struct sim_req *req, const char *dataset_id, bool async);

#endif
