/*
 * sim_auth (sim/auth.c): who may call: the bearer token (401), its per-token rate limit
 * (token bucket, 429 with Retry-After), and its access to the X-Workspace-Id workspace
 * (400 missing, 404 unknown, 403 not allowed).
 *
 * Rules: loop thread only; tokens are compared in constant time and never logged.
 */
#ifndef SIM_AUTH_H
#define SIM_AUTH_H

#include "sim_types.h"

/* Token and rate limit of a routed request: 0 when it may go on (req->token set), else it
 * was answered (401 or 429) and -1. */
int sim_auth_admit(struct sim_req *req);
/* The workspace of a request (X-Workspace-Id): 0 with req->ws / req->db set, else it was
 * answered (400, 404 or 403) and -1. */
int sim_auth_workspace(struct sim_req *req);
/* May this token use this workspace? */
bool sim_token_may_use(const struct sim_token *tok, const char *ws_id);

#endif
