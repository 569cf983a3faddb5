/*
 * sim_router (sim/router.c): the table of routes (method + path pattern with {param}
 * segments -> handler and flags) and its lookup, plus the per-workspace schema, seed and
 * reset hooks the API areas register next to their routes.
 *
 * Rules: built once at startup (sim/main.c calls the areas' *_register functions), then
 * read-only but for the per-route request counters. A lookup picks the route with the most
 * literal segments among those whose method and shape match.
 */
#ifndef SIM_ROUTER_H
#define SIM_ROUTER_H

#include "sim_types.h"

/*
 * Register a handler. method: "GET", "POST", "PUT", "DELETE", "PATCH". pattern: absolute
 * path, segments in braces are parameters: "/v1/connections/{connection_id}/health".
 * Literal segments win over parameters when two patterns could both match.
 */
void sim_route(struct sim_router *r, const char *method, const char *pattern, sim_handler_fn fn,
               unsigned flags);

/* Extra per-workspace schema (CREATE TABLE IF NOT EXISTS ...; run on every workspace DB
 * at open, after the core schema). sql must stay valid for the life of the process. */
void sim_router_add_schema(struct sim_router *r, const char *sql);
/* Called once for each freshly created workspace DB, after the core seed. */
void sim_router_add_seed(struct sim_router *r, void (*fn)(struct sim_ctx *, struct sim_ws *));
/* Called after POST /_sim/reset?data=1 recreated every workspace DB. */
void sim_router_on_reset(struct sim_router *r, void (*fn)(struct sim_ctx *));

void sim_router_init(struct sim_router *r);
void sim_router_free(struct sim_router *r);

struct sim_route_ent;
/*
 * The route for method + raw (still percent-encoded) path. On a match, req's param_names /
 * param_values / nparams are filled (values percent-decoded, owned by req) when req is not
 * NULL, and *status is 0. Without one, NULL and *status is 405 when some other method has
 * this path, else 404.
 */
struct sim_route_ent *sim_router_resolve(struct sim_router *r, const char *method,
                                         const char *rawpath, struct sim_req *req, int *status);

#endif
