/*
 * sim_profile: column statistics for table profiles (sim/profile.c), used by the
 * connections area's GET .../tables/{schema}/{table}/profile.
 *
 * Rules: loop thread only; returned JSON is owned by the caller.
 */
#ifndef SIM_PROFILE_H
#define SIM_PROFILE_H

#include "sim.h"

/* Statistics of the table sqlite_table: cols is sim_res_table_columns' array; returns the
 * API's ColumnProfileInfo array and the table's row count, or NULL with *err (malloc'd)
 * when the SQL failed. */
json_t *sim_profile_columns(sqlite3 *db, const char *sqlite_table, json_t *cols,
                            long long *row_count, char **err);

#endif
