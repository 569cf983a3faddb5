/*
 * server: hotgate's process-level frame: worker threads, listening sockets, accept, drain
 * on shutdown, config reload signals. Everything a request meets on its way lives below:
 *
 *   server.c    workers, listeners, accept, drain; hands the stage table to the pipeline
 *   admin.c     the admin listener (worker 0): /healthz, /metrics, registered endpoints
 *   conn.c      client connections: socket I/O, the HTTP/1.1 codec (http1.c), bodies,
 *               keep-alive, timeouts, backpressure
 *   pipeline.c  the request object (req.h) and the stage sequence (stages.h):
 *               auth -> route -> cache -> budget -> upstream, and the respond API
 *
 * Threading: every worker thread has its own event_base, its own connections and its
 * own upstream handle (upstream.h: libcurl multi or the native HTTP/1.1 client). Only the
 * functions below are called from the main thread.
 */
#ifndef HG_SERVER_H
#define HG_SERVER_H

struct hg_config;

/* Start listeners and worker threads for cfg (which must outlive the server). Returns 0,
 * or -1 with the reason logged (e.g. a listen address in use). */
int server_start(const struct hg_config *cfg);

/* Stop accepting, let in-flight requests finish for up to cfg->server.drain_timeout_ms,
 * then stop the workers and free everything. Safe to call from the main thread only. */
void server_stop(void);

/* A new config snapshot was published (cfgsnap_publish): every worker lets go of the old
 * one now, even when idle, so that its tokens are wiped once its last request ends. */
void server_config_changed(void);

/* 1 once SIGTERM/SIGINT started draining (for /readyz). */
int server_draining(void);

#endif
