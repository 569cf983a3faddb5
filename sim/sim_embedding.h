/*
 * sim_embedding (sim/embedding.c): what indexes call of /v1/embedding-providers.
 *
 * Rules: loop thread only.
 */
#ifndef SIM_EMBEDDING_H
#define SIM_EMBEDDING_H

#include "sim_types.h"

/* 1 when an embedding provider with this id exists. */
int sim_embedding_exists(struct sim_ws *ws, const char *id);

#endif
