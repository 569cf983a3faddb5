/*
 * cache_int: private to the cache module's files (cache.c, cache_inval.c, cache_serve.c,
 * cache_fill.c, cache_stage.c, cache_admin.c): the shared state, the types of a fill and of a
 * request's cache context, and the functions one file offers the others. Not for other
 * modules: their interface is cache.h.
 */
#ifndef HG_CACHE_INT_H
#define HG_CACHE_INT_H

#include "cache.h"
#include "check.h"

#include "config.h"
#include "cachekey.h"
#include "coalesce.h"
#include "entry.h"
#include "fleet_l2.h"
#include "route.h"
#include "store.h"

#include <event2/keyvalq_struct.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GEN_SLOTS 65536u
#define GEN_ALL 0u
#define GEN_CLEAN (GEN_SLOTS - 1) /* the run marker: 1 after a clean stop, 2 while running */
#define RUN_CLEAN 1u
#define RUN_RUNNING 2u
#define FILL_HARD_CAP (256ull << 20) /* bodies larger than this are not shared */
#define LINGER_STORED_MS 1000        /* cover the store's commit lag for just-fetched entries */
#define MAX_TAGS (ENTRY_MAX_GENS - 2)

struct sqlkey_query_req;
struct upstream_result;
struct evhttp_request;

/* The freshness rules a reload may change (cache_reconfigure): read through one atomic
 * pointer per fill; replaced rules are kept (small, no secrets) until cache_shutdown, as a
 * fill on another thread may still be reading them. */
typedef struct cache_rules {
    uint64_t ttl_query_ms, ttl_metadata_ms, ttl_immutable_ms, swr_ms, sie_ms, poll_ms, neg_ms;
    struct {
        char name[32];
        uint64_t ms;
    } class_ttl[32];
    size_t n_class_ttl;
    struct cache_rules *retired; /* the rules this one replaced */
} cache_rules;

/* The module's state (cache.c). */
struct cache_global {
    int enabled;
    store *st;
    _Atomic(cache_rules *) rules;
    uint64_t max_entry;
};
extern struct cache_global cache_g;

/* The invalidation generations (cache_inval.c). */
extern _Atomic uint64_t cache_gens[GEN_SLOTS];

/* The counters behind cache_metrics. */
struct cache_counters {
    atomic_uint_fast64_t hit, miss, stale, coalesced, bypass, stores, store_skipped, invalidations,
        not_modified, only_if_cached, corrupt, sie, revalidations, revalidations_deferred,
        gen_mismatch, purges, zero_copy;
};
extern struct cache_counters cache_ctr;

#define INC(c) atomic_fetch_add_explicit(&(c), 1, memory_order_relaxed)

static inline uint64_t cache_gen_load(uint32_t slot)
{
    return atomic_load_explicit(&cache_gens[slot], memory_order_acquire);
}

/* An entry's generations still current? */
static inline int cache_gens_current(const entry_view *v)
{
    for (size_t i = 0; i < v->n_gens; i++) {
        entry_gen g = entry_gen_at(v, i);
        if (g.slot >= GEN_SLOTS || cache_gen_load(g.slot) != g.gen)
            return 0;
    }
    return 1;
}

/* The identity a credential's entries are keyed by (computed by config_load from the token:
 * a rotated token gets entries of its own). */
static inline const char *cache_cred_identity(const struct hg_credential *cred)
{
    return cred && cred->cache_id[0] ? cred->cache_id : cred && cred->name ? cred->name : "-";
}

typedef struct tagset {
    size_t n;
    char *v[MAX_TAGS + 1];
    entry_gen gens[ENTRY_MAX_GENS];
    size_t ngens;
    int overflow;
} tagset;

typedef struct cc {
    int no_store, no_cache, only_if_cached;
    long max_age; /* -1: none */
} cc;

/*
 * Where the values of the headers a Vary names come from: a request's headers, as they go (or
 * would go) upstream. hotgate sets some itself: the credential (never the token: its identity),
 * the checked workspace, the request id, and on a fill Accept-Encoding: identity and no
 * If-None-Match (cache_become_leader); the others are the client's, all copies joined in order.
 */
typedef struct vary_src {
    const struct evkeyvalq *h;
    const char *ws, *cred, *rid;
} vary_src;

enum fill_class { FILL_QUERY, FILL_METADATA, FILL_IMMUTABLE };

/* A fill: what one fetch for the cache accumulates (cache_fill.c). */
#define CACHE_FILL_MAGIC 0x3f1d2c5bu
typedef struct fill {
    unsigned magic; /* CACHE_FILL_MAGIC from cache_fill_init to cache_fill_free */
    cachekey key, ckey;
    coalesce_flight *flight; /* NULL: fetch alone (no-cache, over the waiter cap) */
    enum fill_class cls;
    struct route_policy pol; /* copy: a background fill outlives its request */
    char ws[256];            /* the request's workspace ("" if none) */
    int no_store;            /* compute the answer for waiters, but store nothing */
    tagset tags;
    /* response */
    int status, head_seen, done;
    struct evkeyvalq hdrs;
    char *etag;
    unsigned char *body;
    size_t blen, bcap;
    int too_big;
    int upstream_no_store; /* the upstream said Cache-Control: no-store / private */
    int unshareable;       /* Vary: * or an encoded body: neither stored nor given to others */
    char vary[512];        /* the answer's Vary names, canonical (cachekey_vary_names) */
    /* the request as it went upstream, for the Vary secondary key */
    struct evkeyvalq vh;
    char v_ws[256], v_cred[33], v_rid[65];
    int has_vkey;
    cachekey vkey;
    /* stale-if-error fallback: a copy of the expired entry */
    unsigned char *stale;
    size_t stale_len;
    /* the fleet's lease for this key is ours: store the answer in L2 too (cache_fleet.c) */
    int l2_lead;
    fleet_lease l2;
} fill;

enum { X_NONE = 0, X_MISS, X_BYPASS, X_STALE };

/* A request's cache context: req->cache_ctx (void *), and the arg of the tap, the cleanup
 * and the coalesced delivery. */
#define CACHE_CTX_MAGIC 0x5c7e0a91u
typedef struct cctx {
    unsigned magic; /* CACHE_CTX_MAGIC while it lives */
    struct hg_req *req;
    int xcache;         /* X-Cache for responses that stream from upstream */
    int leading;        /* fill is active (leader or fetching alone) */
    int waiting;        /* registered as a waiter */
    int answered_stale; /* stale-if-error answer given by the cache */
    fill f;
    /* invalidation after a 2xx */
    int inval;
    struct route_tags inval_tags;
    bool inval_all_ws;
    char *inval_body; /* POST /v1/refresh body */
    size_t inval_body_len;
    char ws[256];
    /* waiting for L2 / another instance's lease (cache_fleet.c), for the local flight */
    struct fleet_get *fleet_wait;
    coalesce_flight *fleet_flight;
    /* the mutation's fleet invalidations not yet acknowledged by Redis (cache_fleet.c): the
     * answer is held until then; gate_release: the terminal stage's, once it waits */
    int gate_pending;
    void (*gate_release)(struct hg_req *req);
} cctx;

/* ---- cache_inval.c ---- */
void cache_gen_bump(uint32_t slot);
void cache_scope_tag(const char *ws, const char *tag, char *out, size_t cap);
void cache_ws_tag(const char *ws, char *out, size_t cap);
void cache_tagset_add(tagset *t, const char *scoped);
/* Snapshot the generations of the tags (and the global one) now. */
void cache_tagset_snapshot(tagset *t);
int cache_tagset_current(const tagset *t);
void cache_tagset_free(tagset *t);
/* The coalescing key: the cache key mixed with the generations of the fill. */
void cache_coalesce_key(const cachekey *key, const tagset *t, cachekey *out);
/* Invalidate: bump the generations, then queue the deletion of the tagged entries. */
void cache_invalidate_scoped(const char *scoped);
void cache_invalidate_route_tags(cctx *c, const struct route_tags *rt, bool all_ws);
/* The tags of a cacheable request: its workspace, the route's, and for queries the tables the
 * SQL reads. */
void cache_build_tags(tagset *t, const struct hg_req *req, const struct route_policy *p,
                      const struct sqlkey_query_req *q);
/* Set up invalidation after a 2xx for a request that changes upstream state. */
void cache_arm_invalidation(struct hg_req *req, cctx *c, const struct route_policy *p);
/* Forwarded SQL that may write: invalidate what it may have written after a 2xx. */
void cache_add_write_tags(cctx *c, const struct sqlkey_query_req *q);
void cache_gens_persist(unsigned marker);

/* ---- cache_serve.c ---- */
void cache_parse_cc(const struct hg_req *req, cc *c);
int cache_ae_refuses_identity(const char *ae);
/* Answer from an entry. from_store: v points into the store's read view (still open), so a
 * large body may be referenced instead of copied. */
void cache_serve_entry_ex(struct hg_req *req, const entry_view *v, const char *xcache,
                          uint64_t now_ms, const cachekey *key, int from_store);
void cache_serve_entry(struct hg_req *req, const entry_view *v, const char *xcache, uint64_t now_ms,
                       const cachekey *key);
vary_src cache_vary_src_of_req(const struct hg_req *req);
/* cachekey_vary's value callback over a vary_src. */
const char *cache_vary_value(void *arg, const char *lname, char *buf, size_t cap);
/* The canonical Vary names of an encoded answer into names[cap]; 0 when it has no Vary. */
int cache_entry_vary(const void *blob, size_t len, char *names, size_t cap);
/* May req take a coalesced result? *vk: req's secondary key when the answer has one. */
int cache_result_fits(const coalesce_result *r, const struct hg_req *req, const cachekey *key,
                      cachekey *vk);
void cache_only_if_cached_miss(struct hg_req *req);

/* ---- cache_fill.c ---- */
void cache_fill_init(fill *f);
void cache_fill_free(fill *f);
/* Store what may be stored and complete the flight. ok: the upstream exchange completed. */
void cache_fill_finish(fill *f, int ok, const struct upstream_result *res);
/* Add the cache's response tap (invalidation on 2xx, the leader's fill) once. */
void cache_add_tap(struct hg_req *req, cctx *c);
/* This request fetches for the cache (fl: the flight it leads, NULL: for itself only). */
void cache_become_leader(struct hg_req *req, cctx *c, coalesce_flight *fl);
/* Refresh proto's key in the background (stale-while-revalidate), once per key. */
void cache_bg_refresh(struct hg_req *req, const fill *proto);

/* ---- cache_body.c ---- */
struct bodykey;
/* The key part of a request body (memoised per thread). query: a POST /v1/query body. */
void cache_body_key(const void *body, size_t len, bool query, struct bodykey *bk);
/* The decoded SQL of a query body into q (once; off the hit path): 0, or -1 when it has none. */
int cache_query_sql(struct hg_req *req, struct sqlkey_query_req *q);
/* sql_hash for the access log: the SHA-256 of the exact SQL of a POST /v1/query (memoised). */
void cache_ensure_sql_hash(struct hg_req *req);

/* ---- cache_fleet.c (the fleet tier: L2, leases, invalidation across instances) ---- */
int cache_fleet_init(const struct hg_config *cfg);
void cache_fleet_shutdown(void);
/* Make sure this worker has its Redis connection (cheap; before a mutation needs it). */
void cache_fleet_attach(struct hg_req *req);
/* The local coalescing leader asks L2 / the fleet's lease first: 1 when it went async (it
 * resumes or answers the request later), 0 to go on at once as a single instance. */
int cache_fleet_lead(struct hg_req *req, cctx *c, coalesce_flight *fl);
/* The client left while the fleet was asked: 1 when handled (request released). */
int cache_fleet_client_gone(struct hg_req *req, cctx *c);
/* A fill is over: blob/len the encoded answer (NULL: none), stored: it went to L1. Stores in L2
 * or releases the lease when the fill holds one; a no-op otherwise. */
void cache_fleet_fill_over(fill *f, const unsigned char *blob, size_t len, int stored);
/* Tell the other instances (after the local invalidation). */
void cache_fleet_publish(const char *const *scoped, size_t n, int all);
/* The same for a mutation's answer (c): held until Redis acknowledged it (cache_hold_gate). */
void cache_fleet_publish_gated(cctx *c, const char *const *scoped, size_t n, int all);

/* ---- cache_admin.c ---- */
void cache_admin_purge(struct evhttp_request *r, void *arg);

#endif
