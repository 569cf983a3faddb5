/*
 * router: the route table (method + path pattern with {param} segments -> handler, flags
 * and a request counter), its lookup, and the schema / seed / reset hooks areas register
 * with their routes.
 *
 * Rules: built at startup, read-only afterwards but for the counters. Path segments are
 * matched before percent-decoding (an encoded '/' stays inside its segment); parameter
 * values are decoded. The most literal segments win; a path that matches with another
 * method only is a 405, no match at all a 404.
 */
#include "sim_int.h"
#include "sim_router.h"
#include "sim_util.h"

#include <stdlib.h>
#include <string.h>

#define SIM_MAX_SEGS 32

void sim_router_init(struct sim_router *r)
{
    memset(r, 0, sizeof *r);
}

void sim_router_free(struct sim_router *r)
{
    for (size_t i = 0; i < r->n; i++) {
        struct sim_route_ent *e = &r->routes[i];
        for (size_t j = 0; j < e->nseg; j++)
            free(e->segs[j]);
        free(e->segs);
        free(e->pattern);
        free(e->key);
    }
    free(r->routes);
    free(r->schemas);
    free(r->seeds);
    free(r->resets);
    memset(r, 0, sizeof *r);
}

/* Split "/a/b/c" into segments (no empty ones except a trailing slash, which is dropped). */
static size_t sim_split_path(const char *path, char **segs, size_t max)
{
    size_t n = 0;
    const char *p = path;
    while (*p == '/')
        p++;
    while (*p && n < max) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        segs[n] = strndup(p, len);
        if (!segs[n])
            abort();
        n++;
        if (!e)
            break;
        p = e + 1;
    }
    return n;
}

void sim_route(struct sim_router *r, const char *method, const char *pattern, sim_handler_fn fn,
               unsigned flags)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->routes = realloc(r->routes, r->cap * sizeof *r->routes);
        if (!r->routes)
            abort();
    }
    struct sim_route_ent *e = &r->routes[r->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->method, sizeof e->method, "%s", method);
    e->pattern = sim_strdup(pattern);
    size_t klen = strlen(method) + strlen(pattern) + 2;
    e->key = malloc(klen);
    if (!e->key)
        abort();
    snprintf(e->key, klen, "%s %s", method, pattern);
    char *segs[SIM_MAX_SEGS];
    e->nseg = sim_split_path(pattern, segs, SIM_MAX_SEGS);
    e->segs = calloc(e->nseg ? e->nseg : 1, sizeof *e->segs);
    if (!e->segs)
        abort();
    for (size_t i = 0; i < e->nseg; i++) {
        e->segs[i] = segs[i];
        if (segs[i][0] != '{')
            e->nliteral++;
    }
    e->fn = fn;
    e->flags = flags;
}

void sim_router_add_schema(struct sim_router *r, const char *sql)
{
    r->schemas = realloc(r->schemas, (r->nschemas + 1) * sizeof *r->schemas);
    if (!r->schemas)
        abort();
    r->schemas[r->nschemas++] = sql;
}

void sim_router_add_seed(struct sim_router *r, void (*fn)(struct sim_ctx *, struct sim_ws *))
{
    r->seeds = realloc(r->seeds, (r->nseeds + 1) * sizeof *r->seeds);
    if (!r->seeds)
        abort();
    r->seeds[r->nseeds++] = fn;
}

void sim_router_on_reset(struct sim_router *r, void (*fn)(struct sim_ctx *))
{
    r->resets = realloc(r->resets, (r->nresets + 1) * sizeof *r->resets);
    if (!r->resets)
        abort();
    r->resets[r->nresets++] = fn;
}

/* Best route for method + segments; *path_known set when some method matches the path. */
static struct sim_route_ent *sim_router_match(struct sim_router *r, const char *method, char **segs,
                                              size_t nseg, bool *path_known)
{
    struct sim_route_ent *best = NULL;
    *path_known = false;
    for (size_t i = 0; i < r->n; i++) {
        struct sim_route_ent *e = &r->routes[i];
        if (e->nseg != nseg)
            continue;
        size_t j = 0;
        for (; j < nseg; j++) {
            if (e->segs[j][0] == '{') {
                if (segs[j][0] == '\0')
                    break;
                continue;
            }
            if (strcmp(e->segs[j], segs[j]) != 0)
                break;
        }
        if (j != nseg)
            continue;
        *path_known = true;
        if (strcmp(e->method, method) != 0)
            continue;
        if (!best || e->nliteral > best->nliteral)
            best = e;
    }
    return best;
}

struct sim_route_ent *sim_router_resolve(struct sim_router *r, const char *method,
                                         const char *rawpath, struct sim_req *req, int *status)
{
    char *segs[SIM_MAX_SEGS];
    size_t nseg = sim_split_path(rawpath, segs, SIM_MAX_SEGS);
    bool path_known = false;
    struct sim_route_ent *e = sim_router_match(r, method, segs, nseg, &path_known);
    for (size_t i = 0; e && req && i < nseg && req->nparams < SIM_MAX_PARAMS; i++) {
        if (e->segs[i][0] != '{')
            continue;
        req->param_names[req->nparams] = e->segs[i];
        req->param_values[req->nparams] = evhttp_uridecode(segs[i], 0, NULL);
        req->nparams++;
    }
    for (size_t i = 0; i < nseg; i++)
        free(segs[i]);
    *status = e ? 0 : path_known ? 405 : 404;
    return e;
}
