/*
 * sim_stats (sim/stats.c): the counters GET /_sim/stats shows (requests, statuses, faults,
 * tokens by hash prefix, SQL hashes, connections, uploads) and their JSON form.
 *
 * Rules: loop thread only; never holds a token itself (tokens show as hash12).
 */
#ifndef SIM_STATS_H
#define SIM_STATS_H

#include "sim_types.h"

/* Count one execution of SQL whose sql_hash is hash (GET /_sim/stats "sql_hashes"). */
void sim_stats_count_sql(struct sim_ctx *ctx, const char *hash);
/* Count one reply status by class (1xx..5xx). */
void sim_stats_count_status(struct sim_ctx *ctx, int status);
/* Zero every counter (POST /_sim/reset), including the per-route request counts. */
void sim_stats_clear(struct sim_ctx *ctx);
/* The GET /_sim/stats body. New reference. */
json_t *sim_stats_json(struct sim_ctx *ctx);

#endif
