/*
 * sim_util (sim/util.c): small helpers with no simulator state: the log line, an aborting
 * strdup, random ids and RFC 3339 timestamps.
 *
 * Rules: no local include but sim_types.h; callable from any thread (sim_log writes one
 * line to stderr).
 */
#ifndef SIM_UTIL_H
#define SIM_UTIL_H

#include "sim_types.h"

/* One line "<time> hotdata-sim: <message>" on stderr. */
void sim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* strdup that aborts on OOM; NULL stays NULL. */
char *sim_strdup(const char *s);
/* prefix + "_" + 20 random [a-z0-9]; out must hold 64 bytes. E.g. sim_id_new("conn", b). */
void sim_id_new(const char *prefix, char out[64]);
/* Now as RFC 3339 UTC "2026-01-01T00:00:00Z" (seconds) or with milliseconds
 * "2026-01-01T00:00:00.123Z" (ms != 0). out holds 40 bytes. */
void sim_now_rfc3339(char out[40], bool ms);

#endif
