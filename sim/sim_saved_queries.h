/*
 * sim_saved_queries (sim/saved_queries.c): what datasets call of /v1/queries.
 *
 * Rules: loop thread only.
 */
#ifndef SIM_SAVED_QUERIES_H
#define SIM_SAVED_QUERIES_H

#include "sim_types.h"

/* SQL of a saved query's version (0 = latest), malloc'd; NULL when unknown. */
char *sim_saved_query_sql(struct sim_ws *ws, const char *id, int version);
/* Create a saved query (version 1); id_out gets its id. 0 on success. */
int sim_saved_query_create(struct sim_ws *ws, const char *name, const char *sql,
                           const char *description, char id_out[64]);

#endif
