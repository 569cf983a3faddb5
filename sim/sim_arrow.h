/*
 * sim_arrow (sim/arrow.c): a stored result page as an Apache Arrow IPC stream, the body of
 * GET /v1/results/{id}?format=arrow.
 *
 * Rules: pure; unit tested in tests/unit/test_sim_core.c.
 */
#ifndef SIM_ARROW_H
#define SIM_ARROW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <jansson.h>

/* Rows [offset, offset + limit) of a stored result (data: its "columns", "types",
 * "nullable", "rows") appended to out as one Arrow IPC stream. */
int sim_arrow_encode(json_t *data, size_t offset, size_t limit, struct evbuffer *out);

#endif
