/*
 * sim_stream (sim/stream.c): a bufferevent filter in front of evhttp that streams
 * RAW_BODY uploads to disk as they arrive (see sim/stream.c).
 *
 * Rules: loop thread only.
 */
#ifndef SIM_STREAM_H
#define SIM_STREAM_H

#include "sim_int.h"

#include <event2/bufferevent.h>

/* evhttp_set_bevcb callback: a new connection's bufferevent with the filter. */
struct bufferevent *sim_stream_bevcb(struct event_base *base, void *arg);
/* Take the finished upload announced by header X-Sim-Upload-Id (NULL if none/unknown). */
struct sim_upload *sim_stream_take(struct sim_ctx *ctx, const char *id_header);
void sim_stream_free_all(struct sim_ctx *ctx);

#endif
