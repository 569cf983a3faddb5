/*
 * connmap: which connection name (as SQL spells it: `prod_pg.public.orders`) a connection id
 * (as the API's paths and refresh bodies carry it) stands for, per workspace, learned from
 * the upstream's own answers passing through the cache (GET /v1/connections and
 * GET /v1/connections/{id}). The cache hands connmap_resolve to route_invalidation_tags, so
 * a refresh or purge of one connection invalidates the query results over that connection
 * only, instead of every query result of the workspace.
 *
 * Rules: only facts the upstream stated are kept (an id's name never changes: the API has no
 * rename); an id not learned yet resolves to nothing and the caller falls back to the wide
 * invalidation, so a missing or lost entry costs cache hits, never correctness. Bounded:
 * when the table fills up it is emptied and learning starts again. Thread-safe (one mutex;
 * used on fills and mutations, never on the hit path).
 */
#ifndef HG_CONNMAP_H
#define HG_CONNMAP_H

#include <stdbool.h>
#include <stddef.h>

#define CONNMAP_CAPACITY 2048 /* entries kept before the table is emptied */

/* Learn from a JSON answer body: {"connections":[{"id","name"},...]} or {"id","name",...}.
 * Anything else (not JSON, other shapes, ids/names too long or empty) is ignored. */
void connmap_learn_json(const char *workspace, const char *body, size_t len);

/* Learn one pair. */
void connmap_learn(const char *workspace, const char *id, const char *name);

/* route_conn_name_fn: ctx is the workspace (const char *). True with name[cap] set when
 * known. */
bool connmap_resolve(void *ctx, const char *id, char *name, size_t cap);

/* Entries known (tests, metrics). */
size_t connmap_size(void);

/* Forget everything (tests). */
void connmap_reset(void);

#endif
