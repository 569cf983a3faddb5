/*
 * sim_indexes (sim/indexes.c): what connections call of the table indexes area.
 *
 * Rules: loop thread only.
 */
#ifndef SIM_INDEXES_H
#define SIM_INDEXES_H

#include "sim_types.h"

/* Forget the index metadata (and SQLite indexes) of a connection, or of one of its tables
 * when schema/table are not NULL. */
void sim_indexes_drop_for(struct sim_ws *ws, const char *conn_id, const char *schema,
                          const char *table);

#endif
