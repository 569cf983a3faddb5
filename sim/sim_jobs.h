/*
 * sim_jobs (sim/jobs.c): background jobs. Stored in the workspace table sim_jobs;
 * GET /v1/jobs serves them.
 *
 * Rules: loop thread only; a job's work runs from a timer on the loop.
 */
#ifndef SIM_JOBS_H
#define SIM_JOBS_H

#include "sim_types.h"

enum sim_job_status {
    SIM_JOB_PENDING,
    SIM_JOB_RUNNING,
    SIM_JOB_SUCCEEDED,
    SIM_JOB_PARTIALLY_SUCCEEDED,
    SIM_JOB_FAILED,
};

/*
 * The work of a job: runs on the loop when the job leaves "running". Set *result (a JSON
 * value, stolen; may stay NULL) and, on failure, *error (malloc'd message). Return the
 * terminal status (SUCCEEDED, PARTIALLY_SUCCEEDED or FAILED).
 */
typedef enum sim_job_status (*sim_job_fn)(struct sim_ctx *ctx, struct sim_ws *ws,
                                          const char *job_id, json_t *args, json_t **result,
                                          char **error);

/*
 * Create a job of job_type ("data_refresh_table", "create_index", ...): stored as pending,
 * running after cfg.job_delay_ms (attempts = 1), then fn runs after another job_delay_ms
 * and its outcome is stored. args is stolen and handed to fn. id_out (64 bytes) gets the
 * job id. 0 on success. Jobs still pending/running when the process stops are marked
 * failed at the next start.
 */
int sim_job_create(struct sim_ctx *ctx, struct sim_ws *ws, const char *job_type, sim_job_fn fn,
                   json_t *args, char id_out[64]);
/* The job as the API shows it (GET /v1/jobs/{id} body), NULL when unknown. */
json_t *sim_job_json(struct sim_ws *ws, const char *job_id);
/* Reply 202 {"id","job_id","job_type","status":"pending","status_url":"/v1/jobs/<id>"}. */
void sim_jobs_reply_accepted(struct sim_req *req, const char *job_id, const char *job_type);

void sim_jobs_startup(struct sim_ctx *ctx);
const char *sim_job_status_name(enum sim_job_status s);

#endif
