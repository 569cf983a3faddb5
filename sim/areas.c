/*
 * areas: registers every API area with the router, in one fixed order (the order only
 * matters for the per-workspace schema and seed hooks, which run in registration order).
 *
 * Rules: nothing but the calls; an area's own file owns its routes.
 */
#include "sim_areas.h"

void sim_areas_register_all(struct sim_router *r)
{
    sim_query_register(r);
    sim_jobs_register(r);
    sim_refresh_register(r);
    sim_connections_register(r);
    sim_secrets_register(r);
    sim_databases_register(r);
    sim_datasets_register(r);
    sim_uploads_register(r);
    sim_saved_queries_register(r);
    sim_indexes_register(r);
    sim_embedding_register(r);
    sim_workspaces_register(r);
}
