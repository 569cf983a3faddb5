/*
 * sim_json (sim/json.c): the JSON text writer of every reply. Compact like
 * json_dumps(JSON_COMPACT | JSON_ENCODE_ANY), but reals in their shortest round-trip form
 * (6357564.64, not 6357564.6399999997), still reals ("2.0"), as the live service writes them.
 *
 * Rules: pure (no simulator state); unit tested in tests/unit/test_sim_core.c.
 */
#ifndef SIM_JSON_H
#define SIM_JSON_H

#include <stddef.h>

#include <jansson.h>

/* j as JSON text; j NULL -> "null". malloc'd; *len (may be NULL) gets the length. */
char *sim_json_dumps(const json_t *j, size_t *len);
/* One real as sim_json_dumps writes it; returns the length. */
int sim_json_real_str(double v, char out[32]);

#endif
