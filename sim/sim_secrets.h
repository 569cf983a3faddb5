/*
 * sim_secrets (sim/secrets.c): what connections and embedding providers call of /v1/secrets.
 *
 * Rules: loop thread only; secret values never leave the workspace database.
 */
#ifndef SIM_SECRETS_H
#define SIM_SECRETS_H

#include "sim_types.h"

/* Secret id of the secret named name (malloc'd), NULL when unknown. */
char *sim_secret_id_by_name(struct sim_ws *ws, const char *name);
/* 1 when a secret with this id exists. */
int sim_secret_exists_id(struct sim_ws *ws, const char *id);
/* Create or update the secret name with value; id_out (64 bytes) gets its id. 0 on success. */
int sim_secret_put(struct sim_ws *ws, const char *name, const char *value, char id_out[64]);
/* Delete a secret by id (no-op when unknown). */
void sim_secret_delete_id(struct sim_ws *ws, const char *id);

#endif
