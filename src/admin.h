/*
 * admin: the admin listener (libevent's evhttp on worker 0's loop): /healthz (public),
 * /metrics (admin token), and the endpoints other modules register (ready.c's /readyz,
 * the cache's purge, ...).
 *
 * Rules: handlers run on the admin thread (worker 0's event base). The admin token is the
 * one of the current config snapshot (a reload can rotate it), compared in constant time.
 * Register endpoints before server_start().
 */
#ifndef HG_ADMIN_H
#define HG_ADMIN_H

#include <event2/event.h>
#include <event2/http.h>

struct hg_config;
struct upstream;

/* Handler for an admin endpoint: write the answer with evhttp_send_reply(). Runs on the
 * admin thread, after the admin token was checked. */
typedef void (*admin_fn)(struct evhttp_request *req, void *arg);

/* Register an admin endpoint for `path` (exact). Up to 16. */
int admin_register(const char *path, admin_fn fn, void *arg);
/* The same for an endpoint that needs no admin token (like /healthz, /readyz). */
int admin_register_public(const char *path, admin_fn fn, void *arg);

/* The admin thread's event base and upstream handle (worker 0's; NULL before
 * admin_start), for admin-side work such as the /readyz probe. */
struct event_base *admin_loop(void);
struct upstream *admin_upstream(void);

/* Listen on cfg->admin.listen on base (server.c: worker 0's loop and upstream handle).
 * 0 or -1. */
int admin_start(struct event_base *base, struct upstream *up, const struct hg_config *boot_cfg);
/* Stop listening (server.c, after the workers stopped). */
void admin_stop(void);

#endif
