/*
 * zz_areas_weak: weak fallbacks for the API areas owned by sim-resources, so hotdata-sim
 * links before (or without) their files. The strong definitions in sim/connections.c etc.
 * win. Rules: register nothing, touch nothing. The "zz_" prefix is load-bearing: simcore is
 * a static archive and GNU ld loads the FIRST member that defines an undefined symbol, so
 * this file must sort after every area file or its weak stubs would shadow them.
 */
#include "sim.h"

__attribute__((weak)) void sim_connections_register(struct sim_router *r)
{
    (void)r;
}

__attribute__((weak)) void sim_secrets_register(struct sim_router *r)
{
    (void)r;
}

__attribute__((weak)) void sim_datasets_register(struct sim_router *r)
{
    (void)r;
}

__attribute__((weak)) void sim_uploads_register(struct sim_router *r)
{
    (void)r;
}

__attribute__((weak)) void sim_saved_queries_register(struct sim_router *r)
{
    (void)r;
}

__attribute__((weak)) void sim_indexes_register(struct sim_router *r)
{
    (void)r;
}

__attribute__((weak)) void sim_embedding_register(struct sim_router *r)
{
    (void)r;
}

__attribute__((weak)) void sim_workspaces_register(struct sim_router *r)
{
    (void)r;
}

__attribute__((weak)) void sim_datasets_refresh(struct sim_req *req, const char *dataset_id,
                                                bool async)
{
    (void)async;
    sim_reply_error(req, 404, "NOT_FOUND", "Dataset '%s' not found", dataset_id);
}

__attribute__((weak)) int sim_connections_discover(struct sim_ws *ws, const char *connection_id)
{
    (void)ws;
    (void)connection_id;
    return 0;
}

__attribute__((weak)) uint64_t sim_uploads_max_bytes(struct sim_ctx *ctx, bool streaming)
{
    (void)ctx;
    (void)streaming;
    return UINT64_MAX;
}
