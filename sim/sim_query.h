/*
 * sim_query (sim/query.c): query execution: POST /v1/query (sync and async), query runs,
 * results, and the async_after_ms waiters.
 *
 * Rules: loop thread only.
 */
#ifndef SIM_QUERY_H
#define SIM_QUERY_H

#include "sim_types.h"

/*
 * Run sql for req like POST /v1/query (sync): records a query run (with saved_query_id /
 * version when not NULL/0), persists a result, counts the sql_hash, replies 200 with the
 * query response or 400 with the engine's error. Used by saved-query execute.
 */
void sim_query_run_and_reply(struct sim_req *req, const char *sql, const char *saved_query_id,
                             int saved_query_version);

void sim_query_startup(struct sim_ctx *ctx); /* fix up runs/results left non-terminal */
int sim_query_async_delay(struct sim_ctx *ctx);
/* Free answered/expired async_after_ms waiters (all of them when ctx is shutting down). */
void sim_waiters_sweep(struct sim_ctx *ctx);

#endif
