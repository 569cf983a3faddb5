/*
 * sim_databases (sim/databases.c): /v1/databases and the database scope of a request.
 *
 * Rules: loop thread only.
 */
#ifndef SIM_DATABASES_H
#define SIM_DATABASES_H

#include "sim_types.h"

bool sim_database_exists(struct sim_ws *ws, const char *id);
/*
 * The database a request is scoped to: X-Database-Id header or body database_id (NULL when
 * neither). Replies 400 (both given and different, or not a string) or 404 (unknown id) and
 * returns -1; else 0 with *db_id pointing into the request.
 */
int sim_req_database(struct sim_req *req, const char **db_id);
/* Make owner_id's tables (a dataset) belong to db_id (NULL: unscoped). 0 or -1. */
int sim_table_scope_set(struct sim_ws *ws, const char *owner_id, const char *db_id);

#endif
