/*
 * sim_connections (sim/connections.c): what other areas call of /v1/connections.
 *
 * Rules: loop thread only.
 */
#ifndef SIM_CONNECTIONS_H
#define SIM_CONNECTIONS_H

#include "sim_types.h"

/*
 * Schema discovery of a connection: when the connection has no tables yet (created with
 * skip_discovery), create and register its tables, as creating it without skip_discovery
 * would have. Returns the number of tables discovered (0 when it already had tables), -1
 * when the connection is unknown or discovery failed. For a schema refresh (POST
 * /v1/refresh with data=false).
 */
int sim_connections_discover(struct sim_ws *ws, const char *connection_id);

#endif
