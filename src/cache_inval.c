/*
 * cache_inval: invalidation generations and tags (see cache.h for the rules).
 *
 * A table of 65536 counters indexed by a hash of each workspace-scoped tag (slot 0:
 * everything). An entry records the counters of its tags as they were when its fill started;
 * a mutation bumps them (atomically, before its answer is sent) and queues the deletion of the
 * tagged entries. Connection-scoped invalidation resolves a connection id to its name through
 * connmap. The generations are persisted with a run marker (clean stop / running).
 */
#include "cache_int.h"

#include "connmap.h"
#include "log.h"
#include "route.h"
#include "sqlkey.h"
#include "store.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static uint32_t gen_slot(const char *scoped_tag)
{
    uint64_t h = entry_hash64(scoped_tag, strlen(scoped_tag), 0x9e3779b97f4a7c15ULL);
    return 1u + (uint32_t)(h % (GEN_SLOTS - 2));
}

void cache_gen_bump(uint32_t slot)
{
    HG_CHECK(slot < GEN_CLEAN); /* the run marker's slot is never a tag's */
    atomic_fetch_add_explicit(&cache_gens[slot], 1, memory_order_acq_rel);
}

/* The workspace-scoped form of a route tag ("workspaces" is global: no workspace). */
void cache_scope_tag(const char *ws, const char *tag, char *out, size_t cap)
{
    if (strcmp(tag, "workspaces") == 0)
        snprintf(out, cap, "*|workspaces");
    else
        snprintf(out, cap, "%s|%s", ws && *ws ? ws : "-", tag);
}

void cache_ws_tag(const char *ws, char *out, size_t cap)
{
    snprintf(out, cap, "ws:%s", ws && *ws ? ws : "-");
}

void cache_tagset_add(tagset *t, const char *scoped)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i], scoped) == 0)
            return;
    if (t->n >= MAX_TAGS) {
        t->overflow = 1;
        return;
    }
    HG_CHECK(t->n < MAX_TAGS);
    t->v[t->n] = strdup(scoped);
    if (!t->v[t->n])
        abort();
    t->n++;
}

static void tagset_add_route(tagset *t, const char *ws, const struct route_tags *rt)
{
    if (rt->overflow)
        t->overflow = 1;
    for (size_t i = 0; i < rt->n; i++) {
        char buf[600];
        cache_scope_tag(ws, route_tags_get(rt, i), buf, sizeof buf);
        cache_tagset_add(t, buf);
    }
}

/* Snapshot the generations of the tags (and the global one) now. */
void cache_tagset_snapshot(tagset *t)
{
    /* every tag's generation fits next to the global one: an entry never outlives the
     * invalidation of a tag it did not record */
    HG_CHECK(t->n <= MAX_TAGS && MAX_TAGS + 1 <= ENTRY_MAX_GENS);
    t->ngens = 0;
    t->gens[t->ngens++] = (entry_gen){GEN_ALL, cache_gen_load(GEN_ALL)};
    for (size_t i = 0; i < t->n && t->ngens < ENTRY_MAX_GENS; i++) {
        uint32_t slot = gen_slot(t->v[i]);
        int dup = 0;
        for (size_t j = 0; j < t->ngens; j++)
            dup |= t->gens[j].slot == slot;
        if (!dup)
            t->gens[t->ngens++] = (entry_gen){slot, cache_gen_load(slot)};
    }
}

int cache_tagset_current(const tagset *t)
{
    for (size_t i = 0; i < t->ngens; i++)
        if (cache_gen_load(t->gens[i].slot) != t->gens[i].gen)
            return 0;
    return 1;
}

void cache_tagset_free(tagset *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i]);
    t->n = 0;
}

/* The coalescing key: the cache key mixed with the generations of the fill. */
void cache_coalesce_key(const cachekey *key, const tagset *t, cachekey *out)
{
    *out = *key;
    uint64_t h = entry_hash64(t->gens, sizeof(entry_gen) * t->ngens, 0);
    for (int i = 0; i < 8; i++)
        out->k[24 + i] ^= (uint8_t)(h >> (8 * i));
}

/* Invalidate: bump the generations, then queue the deletion of the tagged entries. */
void cache_invalidate_scoped(const char *scoped)
{
    cache_gen_bump(gen_slot(scoped));
    if (cache_g.st)
        store_del_tag(cache_g.st, scoped);
}

void cache_invalidate_route_tags(cctx *c, const struct route_tags *rt, bool all_ws)
{
    const char *ws = c->ws;
    char buf[MAX_TAGS + 1][600];
    const char *sent[MAX_TAGS + 1];
    size_t n = 0;
    int overflow = 0;
    if (all_ws || rt->overflow) {
        cache_ws_tag(ws, buf[n], sizeof buf[n]);
        cache_invalidate_scoped(buf[n]);
        sent[n] = buf[n];
        n++;
    }
    for (size_t i = 0; i < rt->n; i++) {
        char one[600];
        cache_scope_tag(ws, route_tags_get(rt, i), one, sizeof one);
        cache_invalidate_scoped(one);
        if (n <= MAX_TAGS) {
            memcpy(buf[n], one, sizeof one);
            sent[n] = buf[n];
            n++;
        } else {
            overflow = 1;
        }
    }
    /* the other instances: after the local bumps; the answer waits for Redis's acknowledgement
     * (cache_fleet.c); more tags than an entry carries: everything, to be safe */
    cache_fleet_publish_gated(c, sent, n, overflow);
    INC(cache_ctr.invalidations);
}

/* The tags of a cacheable request: its workspace, the route's, and for queries the
 * tables the SQL reads. */
void cache_build_tags(tagset *t, const struct hg_req *req, const struct route_policy *p,
                      const struct sqlkey_query_req *q)
{
    char buf[600];
    cache_ws_tag(req->workspace, buf, sizeof buf);
    cache_tagset_add(t, buf);
    tagset_add_route(t, req->workspace, &p->tags);
    if (q) {
        struct sqlkey_refs refs = {0};
        sqlkey_table_refs(q->sql, q->sql_len, &refs);
        struct route_tags qt;
        memset(&qt, 0, sizeof qt);
        route_query_tags(&refs, &qt);
        tagset_add_route(t, req->workspace, &qt);
        sqlkey_refs_free(&refs);
    }
}

/* Set up invalidation after a 2xx for a request that changes upstream state. */
void cache_arm_invalidation(struct hg_req *req, cctx *c, const struct route_policy *p)
{
    c->inval = 1;
    c->inval_all_ws = p->inval_workspace;
    if (p->needs_body) {
        c->inval_tags = p->inval; /* made precise from the body once the answer is 2xx */
    } else {
        /* a connection's q-tags by its name when connmap knows it, else "queries" */
        bool all = false;
        route_invalidation_tags(p, NULL, 0, connmap_resolve, c->ws, &c->inval_tags, &all);
        c->inval_all_ws = c->inval_all_ws || all;
    }
    if (p->needs_body && req->body_kind == HG_BODY_MEMORY && req->body) {
        size_t n = evbuffer_get_length(req->body);
        c->inval_body = malloc(n + 1);
        if (!c->inval_body)
            abort();
        evbuffer_copyout(req->body, c->inval_body, n);
        c->inval_body[n] = '\0';
        c->inval_body_len = n;
    } else if (p->needs_body) {
        c->inval_all_ws = true; /* body not available: the widest action */
    }
    if (c->f.pol.id != p->id)
        c->f.pol = *p;
    cache_add_tap(req, c);
}

/* Forwarded SQL that may write: invalidate what it may have written after a 2xx. */
void cache_add_write_tags(cctx *c, const struct sqlkey_query_req *q)
{
    struct sqlkey_refs refs = {0};
    sqlkey_table_refs(q->sql, q->sql_len, &refs);
    struct route_tags wt;
    memset(&wt, 0, sizeof wt);
    bool all = false;
    route_sql_write_tags(&refs, &wt, &all);
    sqlkey_refs_free(&refs);
    for (size_t i = 0; i < wt.n; i++)
        route_tags_add(&c->inval_tags, "", route_tags_get(&wt, i), SIZE_MAX);
    c->inval_all_ws |= all || wt.overflow || c->inval_tags.overflow;
}

void cache_gens_persist(unsigned marker)
{
    if (!cache_g.st)
        return;
    uint32_t *slots = malloc(sizeof(uint32_t) * GEN_SLOTS);
    uint64_t *vals = malloc(sizeof(uint64_t) * GEN_SLOTS);
    if (!slots || !vals)
        abort();
    size_t n = 0;
    for (uint32_t i = 0; i < GEN_SLOTS - 1; i++) {
        uint64_t g = cache_gen_load(i);
        if (g) {
            slots[n] = i;
            vals[n++] = g;
        }
    }
    slots[n] = GEN_CLEAN;
    vals[n++] = (uint64_t)marker;
    if (cache_g.st->api->gens_save(cache_g.st, slots, vals, n) != 0)
        log_msg(LOG_ERR, "cache: could not persist the invalidation generations");
    free(slots);
    free(vals);
}
