/*
 * sim_areas: the API areas' registration functions. sim/main.c calls every one of these
 * once at startup; each adds its routes (and schema, seed and reset hooks) to the router.
 *
 * Rules: declarations only; an area's functions for other areas live in its own
 * sim_<file>.h.
 */
#ifndef SIM_AREAS_H
#define SIM_AREAS_H

struct sim_router;

void sim_query_register(struct sim_router *r);         /* query.c: /v1/query, query-runs, results */
void sim_jobs_register(struct sim_router *r);          /* jobs.c: /v1/jobs */
void sim_refresh_register(struct sim_router *r);       /* refresh.c: /v1/refresh */
void sim_connections_register(struct sim_router *r);   /* connections, connection types,
                                                          information_schema, table profile */
void sim_secrets_register(struct sim_router *r);       /* /v1/secrets */
void sim_databases_register(struct sim_router *r);     /* /v1/databases */
void sim_datasets_register(struct sim_router *r);      /* /v1/datasets */
void sim_uploads_register(struct sim_router *r);       /* /v1/files */
void sim_saved_queries_register(struct sim_router *r); /* /v1/queries */
void sim_indexes_register(struct sim_router *r);       /* .../tables/{schema}/{table}/indexes */
void sim_embedding_register(struct sim_router *r);     /* /v1/embedding-providers */
void sim_workspaces_register(struct sim_router *r);    /* /v1/workspaces */

/* Every area above, in this order (sim/main.c and the router unit test). */
void sim_areas_register_all(struct sim_router *r);

#endif
