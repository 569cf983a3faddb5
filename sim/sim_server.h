/*
 * sim_server (sim/server.c): the simulator context's life (new, listen, free) and the
 * HTTP entry point that runs every /v1 request through the pipeline.
 *
 * Rules: loop thread only.
 */
#ifndef SIM_SERVER_H
#define SIM_SERVER_H

#include "sim_types.h"

/* A context with the default configuration (main.c fills in the command line). */
struct sim_ctx *sim_ctx_new(void);
/* Listen on cfg.listen_host:listen_port. 0 or -1 (logged). */
int sim_server_start(struct sim_ctx *ctx);
void sim_ctx_free(struct sim_ctx *ctx);

#endif
