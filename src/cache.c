/*
 * cache: see cache.h for the job and the rules. Layout of this file:
 *   state, generations, tags        (global, shared read-mostly)
 *   serving an entry                 (hit, stale, coalesced, 304)
 *   fills                            (what the leader / a background refresh accumulates)
 *   the stage                        (lookup, coalesce, bypass, invalidation taps)
 *   admin purge, metrics, init/shutdown
 *
 * Ownership: a request's struct cctx lives in req->cache_ctx and is freed by the cleanup
 * registered with pipeline_req_add_cleanup; a background refresh owns its struct bgfetch
 * until its upstream on_done. Fills own their accumulated head/body.
 */
#include "cache.h"

#include "admin.h"
#include "bodykey.h"
#include "budget.h"
#include "budget_stage.h"

#include "cachekey.h"
#include "coalesce.h"
#include "connmap.h"
#include "config.h"
#include "entry.h"
#include "hdr.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "sqlkey.h"
#include "store.h"
#include "store_lmdb.h"
#include "upstream.h"
#include "util.h"

#include <assert.h>
#include <ctype.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GEN_SLOTS 65536u
#define GEN_ALL 0u
#define GEN_CLEAN (GEN_SLOTS - 1) /* the run marker: 1 after a clean stop, 2 while running */
#define RUN_CLEAN 1u
#define RUN_RUNNING 2u
#define FILL_HARD_CAP (256ull << 20) /* bodies larger than this are not shared */
#define LINGER_STORED_MS 1000        /* cover the store's commit lag for just-fetched entries */
#define MAX_TAGS (ENTRY_MAX_GENS - 2)

/* ---- state ---- */

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

static struct {
    int enabled;
    store *st;
    _Atomic(cache_rules *) rules;
    uint64_t max_entry;
} G;

static _Atomic uint64_t g_gens[GEN_SLOTS];

static atomic_uint_fast64_t s_hit, s_miss, s_stale, s_coalesced, s_bypass, s_stores,
    s_store_skipped, s_invalidations, s_not_modified, s_only_if_cached, s_corrupt, s_sie,
    s_revalidations, s_revalidations_deferred, s_gen_mismatch, s_purges, s_zero_copy;

#define INC(c) atomic_fetch_add_explicit(&(c), 1, memory_order_relaxed)

/* ---- generations and tags ---- */
static uint32_t gen_slot(const char *scoped_tag)
{
    uint64_t h = entry_hash64(scoped_tag, strlen(scoped_tag), 0x9e3779b97f4a7c15ULL);
    return 1u + (uint32_t)(h % (GEN_SLOTS - 2));
}

static uint64_t gen_load(uint32_t slot)
{
    return atomic_load_explicit(&g_gens[slot], memory_order_acquire);
}

static void gen_bump(uint32_t slot)
{
    atomic_fetch_add_explicit(&g_gens[slot], 1, memory_order_acq_rel);
}

/* The workspace-scoped form of a route tag ("workspaces" is global: no workspace). */
static void scope_tag(const char *ws, const char *tag, char *out, size_t cap)
{
    if (strcmp(tag, "workspaces") == 0)
        snprintf(out, cap, "*|workspaces");
    else
        snprintf(out, cap, "%s|%s", ws && *ws ? ws : "-", tag);
}

static void ws_tag(const char *ws, char *out, size_t cap)
{
    snprintf(out, cap, "ws:%s", ws && *ws ? ws : "-");
}

/* An entry's generations still current? */
static int gens_current(const entry_view *v)
{
    for (size_t i = 0; i < v->n_gens; i++) {
        entry_gen g = entry_gen_at(v, i);
        if (g.slot >= GEN_SLOTS || gen_load(g.slot) != g.gen)
            return 0;
    }
    return 1;
}

typedef struct tagset {
    size_t n;
    char *v[MAX_TAGS + 1];
    entry_gen gens[ENTRY_MAX_GENS];
    size_t ngens;
    int overflow;
} tagset;

static void tagset_add(tagset *t, const char *scoped)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i], scoped) == 0)
            return;
    if (t->n >= MAX_TAGS) {
        t->overflow = 1;
        return;
    }
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
        scope_tag(ws, route_tags_get(rt, i), buf, sizeof buf);
        tagset_add(t, buf);
    }
}

/* Snapshot the generations of the tags (and the global one) now. */
static void tagset_snapshot(tagset *t)
{
    t->ngens = 0;
    t->gens[t->ngens++] = (entry_gen){GEN_ALL, gen_load(GEN_ALL)};
    for (size_t i = 0; i < t->n && t->ngens < ENTRY_MAX_GENS; i++) {
        uint32_t slot = gen_slot(t->v[i]);
        int dup = 0;
        for (size_t j = 0; j < t->ngens; j++)
            dup |= t->gens[j].slot == slot;
        if (!dup)
            t->gens[t->ngens++] = (entry_gen){slot, gen_load(slot)};
    }
}

static int tagset_current(const tagset *t)
{
    for (size_t i = 0; i < t->ngens; i++)
        if (gen_load(t->gens[i].slot) != t->gens[i].gen)
            return 0;
    return 1;
}

static void tagset_free(tagset *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i]);
    t->n = 0;
}

/* The coalescing key: the cache key mixed with the generations of the fill. */
static void coalesce_key_of(const cachekey *key, const tagset *t, cachekey *out)
{
    *out = *key;
    uint64_t h = entry_hash64(t->gens, sizeof(entry_gen) * t->ngens, 0);
    for (int i = 0; i < 8; i++)
        out->k[24 + i] ^= (uint8_t)(h >> (8 * i));
}

/* Invalidate: bump the generations, then queue the deletion of the tagged entries. */
static void invalidate_scoped(const char *scoped)
{
    gen_bump(gen_slot(scoped));
    if (G.st)
        store_del_tag(G.st, scoped);
}

static void invalidate_route_tags(const char *ws, const struct route_tags *rt, bool all_ws)
{
    char buf[600];
    if (all_ws || rt->overflow) {
        ws_tag(ws, buf, sizeof buf);
        invalidate_scoped(buf);
    }
    for (size_t i = 0; i < rt->n; i++) {
        scope_tag(ws, route_tags_get(rt, i), buf, sizeof buf);
        invalidate_scoped(buf);
    }
    INC(s_invalidations);
}

/* ---- credential identity ---- */
static const char *cred_identity(const struct hg_credential *cred)
{
    /* computed by config_load from the token (a rotated token gets entries of its own) */
    return cred && cred->cache_id[0] ? cred->cache_id : cred && cred->name ? cred->name : "-";
}

/* ---- Cache-Control ---- */
typedef struct cc {
    int no_store, no_cache, only_if_cached;
    long max_age; /* -1: none */
} cc;

/* The next element of a comma-separated header value (RFC 9110 5.6.1) from *p: its start, and
 * its length without trailing white space in *n; NULL at the end. */
static const char *list_next(const char **p, size_t *n)
{
    const char *q = *p;
    while (*q == ' ' || *q == '\t' || *q == ',')
        q++;
    if (!*q)
        return NULL;
    const char *s = q;
    while (*q && *q != ',')
        q++;
    *p = q;
    *n = (size_t)(q - s);
    while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t'))
        (*n)--;
    return s;
}

static void parse_cc(const struct hg_req *req, cc *c)
{
    memset(c, 0, sizeof *c);
    c->max_age = -1;
    const char *v = evhttp_find_header(&req->headers, "Cache-Control");
    const char *pragma = evhttp_find_header(&req->headers, "Pragma");
    if (pragma && strcasestr(pragma, "no-cache"))
        c->no_cache = 1;
    if (!v)
        return;
    const char *p = v;
    const char *s;
    size_t n;
    while ((s = list_next(&p, &n))) {
        if (n == 8 && strncasecmp(s, "no-store", 8) == 0)
            c->no_store = 1;
        else if (n == 8 && strncasecmp(s, "no-cache", 8) == 0)
            c->no_cache = 1;
        else if (n == 14 && strncasecmp(s, "only-if-cached", 14) == 0)
            c->only_if_cached = 1;
        else if (n > 8 && strncasecmp(s, "max-age=", 8) == 0) {
            char num[24];
            size_t l = n - 8 < sizeof num - 1 ? n - 8 : sizeof num - 1;
            memcpy(num, s + 8, l);
            num[l] = '\0';
            if (num[0] == '"')
                memmove(num, num + 1, strlen(num));
            char *end;
            long a = strtol(num, &end, 10);
            if (end != num && a >= 0)
                c->max_age = a;
        }
    }
}

/* ---- serving an entry ---- */
static void entry_etag(const entry_view *v, char *out, size_t cap)
{
    if (v->etag_len && v->etag_len < cap) {
        memcpy(out, v->etag, v->etag_len);
        out[v->etag_len] = '\0';
        return;
    }
    snprintf(out, cap, "\"hg-%016llx\"", (unsigned long long)v->checksum);
}

/* If-None-Match (RFC 9110 13.1.2, weak comparison) against etag. */
static int etag_matches(const char *inm, const char *etag)
{
    if (!inm)
        return 0;
    const char *e = etag;
    if (strncmp(e, "W/", 2) == 0)
        e += 2;
    size_t el = strlen(e);
    const char *p = inm;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        const char *s = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if ((size_t)(p - s) == el && memcmp(s, e, el) == 0)
            return 1;
    }
    return 0;
}

static void add_header_n(struct evkeyvalq *h, const char *name, size_t nl, const char *value,
                         size_t vl)
{
    char nb[128], vb[1024];
    char *vp = vl < sizeof vb ? vb : malloc(vl + 1);
    if (!vp)
        abort();
    if (nl >= sizeof nb) {
        if (vp != vb)
            free(vp);
        return;
    }
    memcpy(nb, name, nl);
    nb[nl] = '\0';
    memcpy(vp, value, vl);
    vp[vl] = '\0';
    evhttp_add_header(h, nb, vp);
    if (vp != vb)
        free(vp);
}

/* Bodies at least this large are handed to the socket straight out of the LMDB map. */
#define ZERO_COPY_MIN (16u << 10)

static void zc_unpin(const void *data, size_t len, void *handle)
{
    (void)data;
    (void)len;
    if (G.st && G.st->api->unpin)
        G.st->api->unpin(G.st, handle);
}

/* Answer from an entry. from_store: v points into the store's read view (still open), so a
 * large body may be referenced instead of copied. */
static void serve_entry_ex(struct hg_req *req, const entry_view *v, const char *xcache,
                           uint64_t now_ms, const cachekey *key, int from_store)
{
    struct evkeyvalq h;
    TAILQ_INIT(&h);
    size_t pos = 0;
    entry_header eh;
    while (entry_header_next(v, &pos, &eh))
        add_header_n(&h, eh.name, eh.name_len, eh.value, eh.value_len);
    char etag[160], age[24];
    entry_etag(v, etag, sizeof etag);
    evhttp_add_header(&h, "ETag", etag);
    snprintf(age, sizeof age, "%llu", (unsigned long long)(entry_age_ms(v, now_ms) / 1000));
    evhttp_add_header(&h, "Age", age);
    evhttp_add_header(&h, "X-Cache", xcache);
    if (key) {
        char hex[65];
        cachekey_hex(key, hex);
        evhttp_add_header(&h, "X-Cache-Key", hex);
    }
    const char *inm = evhttp_find_header(&req->headers, "If-None-Match");
    if (v->status == 200 && etag_matches(inm, etag)) {
        INC(s_not_modified);
        pipeline_respond_buffer(req, 304, &h, NULL);
    } else {
        struct evbuffer *b = evbuffer_new();
        if (!b)
            abort();
        void *pin = NULL;
        if (from_store && v->body_len >= ZERO_COPY_MIN && G.st && G.st->api->pin &&
            (pin = G.st->api->pin(G.st)) != NULL) {
            /* zero copy: the socket writes straight from the map; the read view stays
             * open until the bytes are gone (zc_unpin) */
            if (evbuffer_add_reference(b, v->body, v->body_len, zc_unpin, pin) != 0) {
                G.st->api->unpin(G.st, pin);
                evbuffer_add(b, v->body, v->body_len);
            } else {
                INC(s_zero_copy);
            }
        } else if (v->body_len) {
            evbuffer_add(b, v->body, v->body_len); /* the one copy, out of the mmap */
        }
        pipeline_respond_buffer(req, v->status, &h, b);
        evbuffer_free(b);
    }
    evhttp_clear_headers(&h);
}

static void serve_entry(struct hg_req *req, const entry_view *v, const char *xcache,
                        uint64_t now_ms, const cachekey *key)
{
    serve_entry_ex(req, v, xcache, now_ms, key, 0);
}

/* ---- Vary ---- */

/*
 * Where the values of the headers a Vary names come from: a request's headers, as they go (or
 * would go) upstream. hotgate sets some itself: the credential (never the token: its identity),
 * the checked workspace, the request id, and on a fill Accept-Encoding: identity and no
 * If-None-Match (become_leader); the others are the client's, all copies joined in order.
 */
typedef struct vary_src {
    const struct evkeyvalq *h;
    const char *ws, *cred, *rid;
} vary_src;

static vary_src vary_src_of_req(const struct hg_req *req)
{
    vary_src s = {&req->headers, req->workspace, cred_identity(req->cred), req->request_id};
    return s;
}

static const char *vary_value(void *arg, const char *lname, char *buf, size_t cap)
{
    const vary_src *s = arg;
    if (strcmp(lname, "authorization") == 0)
        return s->cred;
    if (strcmp(lname, "x-workspace-id") == 0)
        return s->ws;
    if (strcmp(lname, "x-request-id") == 0)
        return s->rid;
    if (strcmp(lname, "accept-encoding") == 0)
        return "identity";
    if (strcmp(lname, "if-none-match") == 0 || strcmp(lname, "host") == 0 ||
        strcmp(lname, "expect") == 0 || hdr_is_hop_by_hop(lname))
        return NULL;
    size_t n = 0, total = 0;
    int found = 0;
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, s->h, next)
    {
        if (strcasecmp(kv->key, lname) != 0)
            continue;
        size_t l = strlen(kv->value);
        total += l + (found ? 2 : 0);
        if (n + l + 3 < cap) {
            if (found) {
                buf[n++] = ',';
                buf[n++] = ' ';
            }
            memcpy(buf + n, kv->value, l);
            n += l;
        }
        found = 1;
    }
    if (!found)
        return NULL;
    buf[n] = '\0';
    if (total != n) {
        /* too long to hold: its hash (joined again, in full) stands for it */
        char *all = malloc(total + 1);
        if (!all)
            abort();
        size_t k = 0;
        int first = 1;
        TAILQ_FOREACH(kv, s->h, next)
        {
            if (strcasecmp(kv->key, lname) != 0)
                continue;
            if (!first) {
                all[k++] = ',';
                all[k++] = ' ';
            }
            size_t l = strlen(kv->value);
            memcpy(all + k, kv->value, l);
            k += l;
            first = 0;
        }
        char hex[65];
        util_sha256_hex(all, k, hex);
        free(all);
        snprintf(buf, cap, "\x01sha256:%s", hex);
    }
    return buf;
}

/* ---- fills ---- */
enum fill_class { FILL_QUERY, FILL_METADATA, FILL_IMMUTABLE };

typedef struct fill {
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
} fill;

static void fill_init(fill *f)
{
    memset(f, 0, sizeof *f);
    TAILQ_INIT(&f->hdrs);
    TAILQ_INIT(&f->vh);
}

static void fill_reset_response(fill *f)
{
    evhttp_clear_headers(&f->hdrs);
    TAILQ_INIT(&f->hdrs);
    free(f->etag);
    f->etag = NULL;
    f->blen = 0;
    f->too_big = 0;
    f->upstream_no_store = 0;
    f->unshareable = 0;
    f->vary[0] = '\0';
    f->has_vkey = 0;
    f->status = 0;
}

static void fill_free(fill *f)
{
    fill_reset_response(f);
    free(f->body);
    f->body = NULL;
    free(f->stale);
    f->stale = NULL;
    evhttp_clear_headers(&f->vh);
    TAILQ_INIT(&f->vh);
    tagset_free(&f->tags);
}

static void fill_head(fill *f, int status, const struct evkeyvalq *headers)
{
    fill_reset_response(f);
    f->head_seen = 1;
    f->status = status;
    const struct evkeyval *kv;
    char vraw[1024];
    size_t vn = 0;
    int vary_overflow = 0;
    TAILQ_FOREACH(kv, headers, next)
    {
        if (strcasecmp(kv->key, "Vary") == 0) {
            size_t l = strlen(kv->value);
            if (vn + l + 2 > sizeof vraw) {
                vary_overflow = 1;
            } else {
                if (vn)
                    vraw[vn++] = ',';
                memcpy(vraw + vn, kv->value, l);
                vn += l;
            }
        } else if (strcasecmp(kv->key, "Content-Encoding") == 0) {
            /* a fill asks for identity; an encoded answer is no answer for everyone */
            const char *e = kv->value;
            while (*e == ' ' || *e == '\t')
                e++;
            if (strncasecmp(e, "identity", 8) != 0 || (e[8] && e[8] != ' ' && e[8] != '\t'))
                f->unshareable = 1;
        }
        if (strcasecmp(kv->key, "ETag") == 0) {
            free(f->etag);
            f->etag = strdup(kv->value);
        } else if (strcasecmp(kv->key, "Cache-Control") == 0 &&
                   (strcasestr(kv->value, "no-store") || strcasestr(kv->value, "private"))) {
            f->upstream_no_store = 1; /* RFC 9111: a shared cache must not keep it */
        } else if (entry_header_keep(kv->key)) {
            evhttp_add_header(&f->hdrs, kv->key, kv->value);
        }
    }
    vraw[vn] = '\0';
    bool any = false;
    cachekey_vary_names(vraw, f->vary, sizeof f->vary, &any);
    if (any || vary_overflow) {
        f->unshareable = 1; /* Vary: * (or more than can be tracked): never stored (RFC 9111) */
        f->vary[0] = '\0';
    }
}

/* The most a fill holds in memory to share with its waiters: the largest storable entry
 * (at least 8 MiB); beyond it the waiters fetch for themselves. */
static size_t fill_cap(void)
{
    uint64_t cap = G.max_entry > (8u << 20) ? G.max_entry : (8u << 20);
    return cap > FILL_HARD_CAP ? FILL_HARD_CAP : (size_t)cap;
}

static void fill_data(fill *f, const struct evbuffer *chunk)
{
    size_t n = evbuffer_get_length(chunk);
    if (f->too_big || !n)
        return;
    if (f->blen + n > fill_cap()) {
        f->too_big = 1;
        return;
    }
    if (f->blen + n > f->bcap) {
        size_t cap = f->bcap ? f->bcap : 4096;
        while (cap < f->blen + n)
            cap *= 2;
        unsigned char *nb = realloc(f->body, cap);
        if (!nb)
            abort();
        f->body = nb;
        f->bcap = cap;
    }
    evbuffer_copyout((struct evbuffer *)chunk, f->body + f->blen, n);
    f->blen += n;
}

/* The TTL of a route's class: [cache] ttl.<class> when configured, else dflt. */
static uint64_t class_ttl(const cache_rules *R, const struct route_policy *p, uint64_t dflt)
{
    if (!p->ttl_class || !p->ttl_class[0])
        return dflt;
    for (size_t i = 0; i < R->n_class_ttl; i++)
        if (strcmp(R->class_ttl[i].name, p->ttl_class) == 0)
            return R->class_ttl[i].ms;
    return dflt;
}

/* Encode the fill's response; *storable tells whether it may go to the store, *linger how
 * long it may answer later requests from memory. */
static unsigned char *fill_encode(fill *f, size_t *len, int *storable, uint64_t *linger)
{
    uint64_t fresh = 0;
    uint32_t flags = 0;
    *storable = 0;
    *linger = 0;
    const cache_rules *R = atomic_load_explicit(&G.rules, memory_order_acquire);
    const char *body = (const char *)f->body;
    int st = f->status;
    if (st == 200 && !f->no_store) {
        switch (f->cls) {
        case FILL_QUERY:
            if (route_body_cacheable(body, f->blen)) {
                fresh = class_ttl(R, &f->pol, R->ttl_query_ms);
                *storable = 1;
            }
            break;
        case FILL_METADATA:
            fresh = class_ttl(R, &f->pol, R->ttl_metadata_ms);
            *storable = 1;
            break;
        case FILL_IMMUTABLE:
            if (route_body_is_terminal(&f->pol, st, body, f->blen)) {
                fresh = class_ttl(R, &f->pol, R->ttl_immutable_ms);
                if (!fresh)
                    fresh = ENTRY_FRESH_FOREVER;
                *storable = 1;
            }
            break;
        }
    }
    if (!*storable && f->cls == FILL_IMMUTABLE && st >= 200 && st < 300 && R->poll_ms) {
        /* a non-terminal poll answer: micro-cached in memory for the poll window */
        fresh = R->poll_ms;
        flags |= ENTRY_F_POLL;
        *linger = R->poll_ms;
    }
    if (st == 404 && R->neg_ms && !f->no_store && f->cls != FILL_QUERY) {
        fresh = R->neg_ms;
        flags |= ENTRY_F_NEGATIVE;
        *storable = 1;
    }
    if (*storable && (f->tags.overflow || f->blen > G.max_entry || !fresh || f->upstream_no_store ||
                      f->unshareable))
        *storable = 0;
    if (f->upstream_no_store || f->unshareable)
        *linger = 0;
    if (*storable)
        *linger = fresh < LINGER_STORED_MS ? fresh : LINGER_STORED_MS;

    entry_header hv[32];
    size_t nh = 0;
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, &f->hdrs, next)
    {
        if (nh == 32)
            break;
        hv[nh++] = (entry_header){kv->key, strlen(kv->key), kv->value, strlen(kv->value)};
    }
    entry_in in;
    memset(&in, 0, sizeof in);
    in.status = st;
    in.flags = flags;
    in.stored_ms = util_wall_ms();
    in.fresh_ms = fresh;
    if (*storable && !(flags & (ENTRY_F_NEGATIVE | ENTRY_F_POLL)) && f->cls != FILL_IMMUTABLE) {
        in.swr_ms = R->swr_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)R->swr_ms;
        in.sie_ms = R->sie_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)R->sie_ms;
    }
    in.etag = f->etag;
    in.etag_len = f->etag ? strlen(f->etag) : 0;
    in.headers = hv;
    in.n_headers = nh;
    in.tags = (const char *const *)f->tags.v;
    in.n_tags = f->tags.n;
    in.gens = f->tags.gens;
    in.n_gens = f->tags.ngens;
    in.body = f->body;
    in.body_len = f->blen;
    unsigned char *blob;
    if (entry_encode(&in, &blob, len) != ENTRY_OK) {
        *storable = 0;
        *linger = 0;
        return NULL;
    }
    return blob;
}

static vary_src vary_src_of_fill(const fill *f)
{
    vary_src s = {&f->vh, f->v_ws, f->v_cred, f->v_rid};
    return s;
}

/* Keep what the request sent upstream (for the Vary secondary key of the answer). */
static void fill_capture(fill *f, const struct hg_req *req)
{
    evhttp_clear_headers(&f->vh);
    TAILQ_INIT(&f->vh);
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, &req->headers, next)
    evhttp_add_header(&f->vh, kv->key, kv->value);
    snprintf(f->v_ws, sizeof f->v_ws, "%s", req->workspace ? req->workspace : "");
    snprintf(f->v_cred, sizeof f->v_cred, "%s", cred_identity(req->cred));
    snprintf(f->v_rid, sizeof f->v_rid, "%s", req->request_id);
}

/* The Vary marker under the primary key: the names, same tags, generations and lifetime as the
 * variant (v: the variant as encoded). 0 when queued. */
static int store_vary_marker(fill *f, const entry_view *v, uint32_t exp)
{
    entry_in in;
    memset(&in, 0, sizeof in);
    in.status = 200;
    in.flags = ENTRY_F_VARY;
    in.stored_ms = v->stored_ms;
    in.fresh_ms = v->fresh_ms;
    in.swr_ms = v->swr_ms;
    in.sie_ms = v->sie_ms;
    in.tags = (const char *const *)f->tags.v;
    in.n_tags = f->tags.n;
    in.gens = f->tags.gens;
    in.n_gens = f->tags.ngens;
    in.body = f->vary;
    in.body_len = strlen(f->vary);
    unsigned char *blob;
    size_t len;
    if (entry_encode(&in, &blob, &len) != ENTRY_OK)
        return -1;
    int rc = store_put(G.st, f->key.k, blob, len, exp, (const char *const *)f->tags.v, f->tags.n);
    free(blob);
    return rc;
}

/* The canonical Vary names of an encoded answer into names[cap]; 0 when it has no Vary. */
static int entry_vary(const void *blob, size_t len, char *names, size_t cap)
{
    entry_view v;
    names[0] = '\0';
    if (entry_decode_nocheck(blob, len, &v) != ENTRY_OK)
        return 0;
    char raw[1024];
    size_t n = 0, pos = 0;
    entry_header eh;
    while (entry_header_next(&v, &pos, &eh)) {
        if (eh.name_len != 4 || strncasecmp(eh.name, "Vary", 4) != 0)
            continue;
        if (n + eh.value_len + 2 > sizeof raw)
            return 1; /* (cannot happen: fill_head refused longer ones) no names: no match */
        if (n)
            raw[n++] = ',';
        memcpy(raw + n, eh.value, eh.value_len);
        n += eh.value_len;
    }
    raw[n] = '\0';
    bool any = false;
    return cachekey_vary_names(raw, names, cap, &any) > 0 || any;
}

/*
 * The fill is over: store what may be stored and complete the flight (every waiter gets
 * the answer, or the stale entry, or the failure). ok: the upstream exchange completed;
 * res may be NULL.
 */
static void fill_finish(fill *f, int ok, const struct upstream_result *res)
{
    if (f->done)
        return;
    f->done = 1;
    if (ok && f->head_seen && f->status == 200 && !f->too_big &&
        (f->pol.id == ROUTE_CONNECTIONS_LIST || f->pol.id == ROUTE_CONNECTIONS_GET))
        connmap_learn_json(f->ws, (const char *)f->body, f->blen); /* id -> name, see connmap.h */
    coalesce_result *cr = NULL;
    uint64_t linger = 0;
    int failed = !ok || !f->head_seen || f->status >= 500 || f->status == 429;
    if (failed && f->stale) {
        /* stale-if-error: the waiters get the expired entry too */
        cr = coalesce_result_new(COALESCE_KIND_ENTRY, f->stale, f->stale_len);
        cr->flags |= COALESCE_F_STALE;
        char names[512];
        if (entry_vary(f->stale, f->stale_len, names, sizeof names)) {
            vary_src src = vary_src_of_fill(f);
            cachekey_vary(&f->key, names, vary_value, &src, &cr->vkey);
            cr->has_vkey = 1;
        }
    } else if (ok && f->head_seen && !f->too_big && !f->unshareable) {
        size_t len = 0;
        int storable = 0;
        unsigned char *blob = fill_encode(f, &len, &storable, &linger);
        if (blob) {
            if (f->vary[0]) {
                /* Vary: the answer belongs to the secondary key of the leader's request */
                vary_src src = vary_src_of_fill(f);
                cachekey_vary(&f->key, f->vary, vary_value, &src, &f->vkey);
                f->has_vkey = 1;
            }
            if (storable && G.st && tagset_current(&f->tags)) {
                uint32_t exp = 0;
                entry_view v;
                if (entry_decode_nocheck(blob, len, &v) == ENTRY_OK)
                    exp = entry_hard_expiry_s(v.stored_ms, v.fresh_ms, v.swr_ms, v.sie_ms);
                int rc = store_put(G.st, f->has_vkey ? f->vkey.k : f->key.k, blob, len, exp,
                                   (const char *const *)f->tags.v, f->tags.n);
                if (rc == 0 && f->has_vkey)
                    rc = store_vary_marker(f, &v, exp);
                if (rc == 0)
                    INC(s_stores);
                else
                    INC(s_store_skipped);
            } else if (storable) {
                INC(s_store_skipped);
                linger = 0; /* invalidated while in flight: do not hand it to late comers */
            }
            cr = coalesce_result_new(COALESCE_KIND_ENTRY, NULL, 0);
            cr->blob = blob; /* moved */
            cr->len = len;
            if (f->has_vkey) {
                cr->has_vkey = 1;
                cr->vkey = f->vkey;
            }
        }
    }
    if (!f->flight) {
        /* fetched alone (no-cache, async): nobody waits for it */
        coalesce_result_unref(cr);
        return;
    }
    if (!cr) {
        if (f->too_big || (f->unshareable && ok && f->head_seen)) {
            /* too large to share: every waiter fetches for itself */
            coalesce_release_all(f->flight);
            f->flight = NULL;
            return;
        }
        cr = coalesce_result_new(COALESCE_KIND_ERROR, NULL, 0);
        const char *code = "BAD_GATEWAY", *msg = "upstream failed";
        int status = 502;
        if (res && res->outcome != UPSTREAM_OK)
            status = upstream_error_status(res->outcome, &code, &msg);
        cr->status = status;
        snprintf(cr->code, sizeof cr->code, "%s", code ? code : "BAD_GATEWAY");
        snprintf(cr->message, sizeof cr->message, "%s", msg ? msg : "upstream failed");
    }
    coalesce_complete(f->flight, cr, linger);
    f->flight = NULL;
}

/* ---- per-request context ---- */
enum { X_NONE = 0, X_MISS, X_BYPASS, X_STALE };

typedef struct cctx {
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
} cctx;

static void ctx_cleanup(struct hg_req *req, void *arg)
{
    cctx *c = arg;
    (void)req;
    if (c->leading && c->f.flight) {
        /* the leader went away without a result: hand the flight over */
        coalesce_abandon(c->f.flight);
        c->f.flight = NULL;
    }
    fill_free(&c->f);
    free(c->inval_body);
    free(c);
}

static cctx *ctx_of(struct hg_req *req)
{
    if (req->cache_ctx)
        return req->cache_ctx;
    cctx *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->req = req;
    fill_init(&c->f);
    snprintf(c->ws, sizeof c->ws, "%s", req->workspace ? req->workspace : "");
    memcpy(c->f.ws, c->ws, sizeof c->f.ws);
    req->cache_ctx = c;
    pipeline_req_add_cleanup(req, ctx_cleanup, c);
    return c;
}

/* the tap: invalidation on 2xx and the leader's fill */
static int tap_head(struct hg_req *req, void *arg, int status, const struct evkeyvalq *headers)
{
    cctx *c = arg;
    (void)req;
    if (c->inval && status >= 200 && status < 300) {
        struct route_tags t;
        bool all_ws = c->inval_all_ws;
        if (c->inval_body || c->f.pol.needs_body) {
            memset(&t, 0, sizeof t);
            route_invalidation_tags(&c->f.pol, c->inval_body, c->inval_body_len, connmap_resolve,
                                    c->ws, &t, &all_ws);
            invalidate_route_tags(c->ws, &t, all_ws || c->inval_all_ws);
        }
        invalidate_route_tags(c->ws, &c->inval_tags, all_ws);
        c->inval = 0; /* once */
    }
    if (c->leading)
        fill_head(&c->f, status, headers);
    return 0;
}

static void tap_data(struct hg_req *req, void *arg, const struct evbuffer *chunk)
{
    cctx *c = arg;
    (void)req;
    if (c->leading)
        fill_data(&c->f, chunk);
}

static void tap_done(struct hg_req *req, void *arg, int ok, const struct upstream_result *res)
{
    cctx *c = arg;
    if (!c->leading)
        return;
    c->leading = 0;
    if (!ok && !res && req->client_gone && c->f.flight) {
        /* our client went away and the transfer was cancelled: another waiter fetches */
        coalesce_abandon(c->f.flight);
        c->f.flight = NULL;
        c->f.done = 1;
        return;
    }
    fill_finish(&c->f, ok, res);
}

static void add_tap(struct hg_req *req, cctx *c)
{
    struct hg_tap t = {tap_head, tap_data, tap_done, c};
    for (int i = 0; i < req->ntaps; i++)
        if (req->taps[i].arg == c)
            return;
    pipeline_req_add_tap(req, &t);
}

/* A header a fill does not send as the client did: Accept-Encoding (identity is asked for:
 * what is stored must suit every client) and If-None-Match (the cache answers it itself; the
 * upstream's 304 is no answer to store or to give the waiters). */
static int fill_replaces_header(const char *name)
{
    return strcasecmp(name, "Accept-Encoding") == 0 || strcasecmp(name, "If-None-Match") == 0;
}

/* This request fetches for the cache (fl: the flight it leads, NULL: for itself only). */
static void become_leader(struct hg_req *req, cctx *c, coalesce_flight *fl)
{
    c->f.flight = fl;
    c->leading = 1;
    c->xcache = X_MISS;
    req->cache_outcome = "miss";
    struct evkeyval *kv, *next;
    for (kv = TAILQ_FIRST(&req->headers); kv; kv = next) {
        next = TAILQ_NEXT(kv, next);
        if (fill_replaces_header(kv->key)) {
            TAILQ_REMOVE(&req->headers, kv, next);
            free(kv->key);
            free(kv->value);
            free(kv);
        }
    }
    hdr_add(&req->headers, "Accept-Encoding", 15, "identity", 8);
    fill_capture(&c->f, req);
    add_tap(req, c);
}

/* May req take a coalesced result? Unless the answer varies on a header whose value req does
 * not share with the leader's request. *vk: req's secondary key when the answer has one. */
static int result_fits(const coalesce_result *r, const struct hg_req *req, const cachekey *key,
                       cachekey *vk)
{
    if (!r->has_vkey)
        return 1;
    char names[512];
    if (!entry_vary(r->blob, r->len, names, sizeof names) || !names[0])
        return 0;
    vary_src src = vary_src_of_req(req);
    cachekey_vary(key, names, vary_value, &src, vk);
    return memcmp(vk->k, r->vkey.k, CACHEKEY_LEN) == 0;
}

/* ---- background refresh (stale-while-revalidate) ---- */
typedef struct bgfetch {
    fill f;
    struct budget_ticket *ticket; /* budget_stage_background; NULL: not budgeted */
    int status;
    char *retry_after;
} bgfetch;

static int bg_head(void *arg, int status, const struct evkeyvalq *headers)
{
    bgfetch *b = arg;
    b->status = status;
    const char *ra = evhttp_find_header(headers, "Retry-After");
    if (ra && !b->retry_after)
        b->retry_after = strdup(ra);
    fill_head(&b->f, status, headers);
    return 0;
}

static void bg_free(bgfetch *b)
{
    budget_stage_background_done(b->ticket, b->status, b->retry_after);
    free(b->retry_after);
    fill_free(&b->f);
    free(b);
}

static int bg_data(void *arg, struct evbuffer *chunk)
{
    bgfetch *b = arg;
    fill_data(&b->f, chunk);
    evbuffer_drain(chunk, evbuffer_get_length(chunk));
    return 0;
}

static void bg_done(void *arg, const struct upstream_result *res)
{
    bgfetch *b = arg;
    fill_finish(&b->f, res && res->outcome == UPSTREAM_OK, res);
    bg_free(b);
}

static void noop_deliver(void *arg, coalesce_result *res, coalesce_flight *flight)
{
    (void)arg;
    if (res->kind == COALESCE_KIND_LEAD && flight)
        coalesce_abandon(flight);
    coalesce_result_unref(res);
}

static void bg_retry(void *arg)
{
    bgfetch *b = arg;
    budget_charge(b->ticket); /* a GET 502/503 sent again counts against the budget too */
}

static const struct upstream_callbacks bg_cb = {bg_head, bg_data, bg_done, NULL, bg_retry};

static void bg_refresh(struct hg_req *req, const fill *proto)
{
    if (coalesce_busy(&proto->ckey))
        return;
    struct upstream *up = pipeline_req_upstream(req);
    if (!up || !req->cred || !req->cred->token.data)
        return;
    /* optional work: only when the credential's budget has room right now */
    struct budget_ticket *ticket;
    if (!budget_stage_background(req, &ticket)) {
        INC(s_revalidations_deferred);
        return;
    }
    coalesce_flight *fl;
    coalesce_result *done;
    if (coalesce_join(&proto->ckey, NULL, noop_deliver, NULL, &fl, &done) != COALESCE_LEADER) {
        /* lost a race: someone else refreshes (our waiter slot gets a no-op) */
        if (done)
            coalesce_result_unref(done);
        budget_stage_background_done(ticket, 0, NULL);
        return;
    }
    bgfetch *b = calloc(1, sizeof *b);
    if (!b)
        abort();
    b->ticket = ticket;
    fill_init(&b->f);
    b->f.key = proto->key;
    b->f.ckey = proto->ckey;
    b->f.cls = proto->cls;
    b->f.pol = proto->pol;
    memcpy(b->f.ws, proto->ws, sizeof b->f.ws);
    b->f.flight = fl;
    for (size_t i = 0; i < proto->tags.n; i++)
        tagset_add(&b->f.tags, proto->tags.v[i]);
    b->f.tags.overflow = proto->tags.overflow;
    memcpy(b->f.tags.gens, proto->tags.gens, sizeof proto->tags.gens);
    b->f.tags.ngens = proto->tags.ngens;

    char *target = NULL;
    if (asprintf(&target, "%s%s%s", req->path, req->query ? "?" : "",
                 req->query ? req->query : "") < 0)
        abort();
    struct upstream_req *u = upstream_req_new(up, req->method_name, target);
    free(target);
    if (!u) {
        fill_finish(&b->f, 0, NULL);
        bg_free(b);
        return;
    }
    upstream_req_set_bearer(u, req->cred->token.data, req->cred->token.len);
    /* the same request as the entry's: every header the client sent that goes upstream (the
     * key covers them), as a fill sends them (become_leader) */
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, &req->headers, next)
    {
        if (hdr_forward_to_upstream(kv->key) && !fill_replaces_header(kv->key))
            upstream_req_add_header(u, kv->key, kv->value);
    }
    upstream_req_add_header(u, "Accept-Encoding", "identity");
    if (req->workspace)
        upstream_req_add_header(u, "X-Workspace-Id", req->workspace);
    upstream_req_add_header(u, "X-Request-Id", req->request_id);
    fill_capture(&b->f, req);
    if (req->body_kind == HG_BODY_MEMORY && req->body) {
        struct evbuffer *copy = evbuffer_new();
        size_t n = evbuffer_get_length(req->body);
        evbuffer_add(copy, evbuffer_pullup(req->body, (ev_ssize_t)n), n);
        upstream_req_set_body_memory(u, copy);
        evbuffer_free(copy);
    }
    INC(s_revalidations);
    if (upstream_send(u, &bg_cb, b) != 0) {
        fill_finish(&b->f, 0, NULL);
        bg_free(b);
    }
}

/* ---- waiters ---- */
static void on_deliver(void *arg, coalesce_result *res, coalesce_flight *flight)
{
    cctx *c = arg;
    struct hg_req *req = c->req;
    c->waiting = 0;
    if (res->kind == COALESCE_KIND_LEAD) {
        coalesce_result_unref(res);
        if (req->client_gone) {
            if (flight)
                coalesce_abandon(flight);
            pipeline_req_release(req);
            return;
        }
        /* promoted: fetch for the others (flight NULL: for ourselves only) */
        become_leader(req, c, flight);
        pipeline_resume(req);
        return;
    }
    cachekey vk;
    if (res->kind == COALESCE_KIND_ENTRY && !req->client_gone &&
        !result_fits(res, req, &c->f.key, &vk)) {
        /* the answer varies on a header we do not share with the leader: fetch for ourselves */
        coalesce_result_unref(res);
        become_leader(req, c, NULL);
        pipeline_resume(req);
        return;
    }
    if (!req->client_gone) {
        if (res->kind == COALESCE_KIND_ENTRY) {
            entry_view v;
            if (entry_decode(res->blob, res->len, &v) == ENTRY_OK) {
                int stale = (res->flags & COALESCE_F_STALE) != 0;
                req->cache_outcome = stale ? "stale" : "coalesced";
                if (stale)
                    INC(s_stale);
                else
                    INC(s_coalesced);
                serve_entry(req, &v, stale ? "STALE" : "COALESCED", util_wall_ms(),
                            res->has_vkey ? &vk : &c->f.key);
            } else {
                pipeline_respond_error(req, 502, "BAD_GATEWAY", "coalesced answer unreadable", NULL);
            }
        } else {
            req->cache_outcome = "coalesced";
            INC(s_coalesced);
            pipeline_respond_error(req, res->status ? res->status : 502, res->code, res->message,
                                 NULL);
        }
    }
    coalesce_result_unref(res);
    pipeline_req_release(req);
}

/* The tags of a cacheable request: its workspace, the route's, and for queries the
 * tables the SQL reads. */
static void build_tags(tagset *t, const struct hg_req *req, const struct route_policy *p,
                       const struct sqlkey_query_req *q)
{
    char buf[600];
    ws_tag(req->workspace, buf, sizeof buf);
    tagset_add(t, buf);
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

void cache_client_gone(struct hg_req *req)
{
    cctx *c = req->cache_ctx;
    if (!c || !c->waiting)
        return;
    if (coalesce_leave(&c->f.ckey, c)) {
        /* removed before any delivery was scheduled: nothing will call us back */
        c->waiting = 0;
        pipeline_req_release(req);
    }
    /* else a delivery is on its way to this thread; on_deliver sees client_gone */
}

/* ---- the stage ---- */
static int class_of(const struct route_policy *p, enum fill_class *cls)
{
    switch (p->cache_class) {
    case ROUTE_CACHE_QUERY:
        *cls = FILL_QUERY;
        return 1;
    case ROUTE_CACHE_METADATA:
        *cls = FILL_METADATA;
        return 1;
    case ROUTE_CACHE_IMMUTABLE:
        *cls = FILL_IMMUTABLE;
        return 1;
    default:
        return 0;
    }
}

/* Set up invalidation after a 2xx for a request that changes upstream state. */
static void arm_invalidation(struct hg_req *req, cctx *c, const struct route_policy *p)
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
    add_tap(req, c);
}

/* Forwarded SQL that may write: invalidate what it may have written after a 2xx. */
static void add_write_tags(cctx *c, const struct sqlkey_query_req *q)
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

static void only_if_cached_miss(struct hg_req *req)
{
    INC(s_only_if_cached);
    req->cache_outcome = "miss";
    pipeline_respond_error(req, 504, "GATEWAY_TIMEOUT",
                         "not in cache (Cache-Control: only-if-cached)", NULL);
}

/*
 * Per-thread memo of recent request bodies: the exact body bytes -> their key part and, for
 * POST /v1/query, what the cache acts on (sql_hash, async flags, certainty). Clients repeat
 * identical bodies (dashboards, retries), and a hit then needs neither a JSON parse nor the SQL
 * canonicalisation. Compared byte for byte.
 */
#define BMEMO_SLOTS 16
#define BMEMO_MAX_BODY 2048

typedef struct bmemo {
    uint64_t h;
    size_t len;
    bool valid, query;
    struct bodykey bk;
    unsigned char body[BMEMO_MAX_BODY];
} bmemo;

static __thread bmemo tl_bmemo[BMEMO_SLOTS];

static void body_key(const void *body, size_t len, bool query, struct bodykey *bk)
{
    if (len > BMEMO_MAX_BODY) {
        bodykey_derive(body, len, query, bk, NULL, NULL);
        return;
    }
    uint64_t h = entry_hash64(body, len, query ? 0x51 : 0x52);
    bmemo *m = &tl_bmemo[h % BMEMO_SLOTS];
    if (m->valid && m->h == h && m->len == len && m->query == query &&
        memcmp(m->body, body, len) == 0) {
        *bk = m->bk;
        return;
    }
    bodykey_derive(body, len, query, bk, NULL, NULL);
    m->valid = true;
    m->h = h;
    m->len = len;
    m->query = query;
    m->bk = *bk;
    memcpy(m->body, body, len);
}

/* The decoded SQL of a query body, off the hit path: 0, or -1 when it has none. */
static int q_need(struct hg_req *req, struct sqlkey_query_req *q)
{
    if (q->sql)
        return 0;
    if (req->body_kind != HG_BODY_MEMORY || !req->body)
        return -1;
    size_t n = evbuffer_get_length(req->body);
    const char *b = (const char *)evbuffer_pullup(req->body, (ev_ssize_t)n);
    struct bodykey bk;
    bodykey_derive(b, n, true, &bk, &q->sql, &q->sql_len);
    return q->sql ? 0 : -1;
}

/* sql_hash for the access log: the SHA-256 of the exact SQL of a POST /v1/query (memoised). */
static void ensure_sql_hash(struct hg_req *req)
{
    if (req->sql_hash[0] || req->method != EVHTTP_REQ_POST || req->body_kind != HG_BODY_MEMORY ||
        !req->body || strcmp(req->path, "/v1/query") != 0)
        return;
    size_t n = evbuffer_get_length(req->body);
    struct bodykey bk;
    body_key(evbuffer_pullup(req->body, (ev_ssize_t)n), n, true, &bk);
    memcpy(req->sql_hash, bk.sql_hash, sizeof req->sql_hash);
}

/* A query forwarded without the cache: it changes the run/result lists, and what it may write
 * (all of the workspace when its SQL cannot be read) after a 2xx. */
static enum hg_stage_result query_bypass(struct hg_req *req, const struct route_policy *p,
                                         struct sqlkey_query_req *q, bool all_ws)
{
    req->cache_outcome = "bypass";
    INC(s_bypass);
    cctx *c = ctx_of(req);
    c->xcache = X_BYPASS;
    c->f.pol = *p;
    arm_invalidation(req, c, p);
    if (all_ws || q_need(req, q) != 0) {
        c->inval_all_ws = true;
    } else {
        enum sqlkey_reason why;
        if (!sqlkey_is_cacheable(q->sql, q->sql_len, &why) && sqlkey_reason_may_write(why))
            add_write_tags(c, q);
    }
    sqlkey_query_req_free(q);
    return HG_NEXT;
}

static enum hg_stage_result plain_bypass(struct hg_req *req)
{
    req->cache_outcome = "bypass";
    INC(s_bypass);
    ctx_of(req)->xcache = X_BYPASS;
    return HG_NEXT;
}

/*
 * Accept-Encoding that refuses identity ("identity;q=0", or "*;q=0" without identity listed):
 * a stored answer is identity, so such a request is not answered from the cache.
 */
static int ae_refuses_identity(const char *ae)
{
    if (!ae || !strstr(ae, "q=0"))
        return 0;
    int identity = -1, star = -1; /* -1 absent, 0 refused, 1 accepted */
    const char *p = ae;
    const char *s;
    size_t n;
    while ((s = list_next(&p, &n))) {
        size_t tl = 0;
        while (tl < n && s[tl] != ';' && s[tl] != ' ' && s[tl] != '\t')
            tl++;
        int acc = 1;
        const char *q = memchr(s, ';', n);
        if (q) {
            const char *qv = strstr(q, "q=");
            if (qv && qv < s + n) {
                double v = strtod(qv + 2, NULL);
                acc = v > 0.0;
            }
        }
        if (tl == 8 && strncasecmp(s, "identity", 8) == 0)
            identity = acc;
        else if (tl == 1 && s[0] == '*')
            star = acc;
    }
    return identity == 0 || (identity == -1 && star == 0);
}

static __thread struct route_policy tl_policy;

enum hg_stage_result cache_stage(struct hg_req *req)
{
    if (!G.enabled) {
        ensure_sql_hash(req);
        return HG_NEXT;
    }
    const struct route_policy *p = req->route;
    if (!p) {
        /* no route stage in front of us: match here (the policy is copied where kept) */
        route_match(req->method_name, req->path, req->query, &tl_policy);
        p = &tl_policy;
    }
    if (p->id == ROUTE_NOT_API)
        return HG_NEXT;
    int safe = req->method == EVHTTP_REQ_GET || req->method == EVHTTP_REQ_HEAD;
    enum fill_class cls;
    int cacheable = class_of(p, &cls) && !p->head && !p->mutation;

    if (!cacheable) {
        /* never cached: forwarded as is (X-Cache: BYPASS), mutations invalidate on 2xx */
        ensure_sql_hash(req);
        req->cache_outcome = "bypass";
        if (p->mutation || (p->id == ROUTE_UNKNOWN && !safe)) {
            cctx *c = ctx_of(req);
            c->xcache = X_BYPASS;
            arm_invalidation(req, c, p);
        }
        return HG_NEXT;
    }

    cc ccv;
    parse_cc(req, &ccv);

    /* ---- the key: the whole request but the documented never-answer-changing parts ---- */
    int is_query = p->id == ROUTE_QUERY;
    struct sqlkey_query_req q;
    memset(&q, 0, sizeof q);
    struct bodykey bk;
    memset(&bk, 0, sizeof bk);
    if (req->body_kind == HG_BODY_STREAM) {
        /* a body too large to hold cannot be keyed: not answered from the cache */
        return is_query ? query_bypass(req, p, &q, true) : plain_bypass(req);
    }
    if (req->body_kind == HG_BODY_MEMORY && req->body) {
        size_t n = evbuffer_get_length(req->body);
        if (n)
            body_key(evbuffer_pullup(req->body, (ev_ssize_t)n), n, is_query, &bk);
    }
    if (is_query) {
        if (!req->sql_hash[0])
            memcpy(req->sql_hash, bk.sql_hash, sizeof req->sql_hash);
        /* not a body the cache can read (the upstream answers it), or SQL / a dialect the
         * lexer is not certain of: forwarded, never judged by guesswork */
        if (!bk.query_ok || !bk.sql_certain)
            return query_bypass(req, p, &q, true);
        q.async = bk.async;
        q.has_async_after_ms = bk.has_async_after_ms;
        q.async_after_ms = bk.async_after_ms;
    }
    int async_only = is_query && q.async && !q.has_async_after_ms;
    int async_after = is_query && q.async && q.has_async_after_ms;

    if (ccv.no_store || async_only ||
        ae_refuses_identity(hdr_find(&req->headers, "Accept-Encoding"))) {
        if (is_query)
            return query_bypass(req, p, &q, false);
        return plain_bypass(req);
    }

    cachekey_in ki;
    memset(&ki, 0, sizeof ki);
    ki.cred_id = cred_identity(req->cred);
    ki.workspace = req->workspace;
    ki.method = req->method_name;
    ki.path = req->path;
    ki.query = req->query;
    ki.accept = hdr_find(&req->headers, "Accept");
    ki.headers = &req->headers;
    ki.body = bk.kind != BODYKEY_NONE ? bk.digest : NULL;
    cachekey key;
    cachekey_derive(&ki, &key);

    /* ---- lookup ---- */
    uint64_t now = util_wall_ms();
    unsigned char *stale_copy = NULL;
    size_t stale_len = 0;
    if (!ccv.no_cache && G.st) {
        store_val sv;
        cachekey hitkey = key; /* the entry's own key: the primary, or a Vary variant's */
        int rc = store_get(G.st, key.k, &sv);
        entry_view v;
        int drc = rc == 0 ? entry_decode(sv.data, sv.len, &v) : ENTRY_OK;
        if (rc == 0 && drc == ENTRY_OK && (v.flags & ENTRY_F_VARY) && gens_current(&v)) {
            /* a Vary marker: the answer lives under the secondary key of this request */
            char names[512];
            size_t nl = v.body_len < sizeof names ? v.body_len : sizeof names - 1;
            memcpy(names, v.body, nl);
            names[nl] = '\0';
            vary_src src = vary_src_of_req(req);
            cachekey_vary(&key, names, vary_value, &src, &hitkey);
            rc = store_get(G.st, hitkey.k, &sv);
            drc = rc == 0 ? entry_decode(sv.data, sv.len, &v) : ENTRY_OK;
        }
        if (rc == 0) {
            if (drc != ENTRY_OK) {
                INC(s_corrupt);
                store_del(G.st, hitkey.k);
            } else if (!gens_current(&v)) {
                INC(s_gen_mismatch);
            } else if (v.flags & ENTRY_F_VARY) {
                /* a marker where an answer should be (a marker of a marker): a miss */
            } else {
                uint64_t age_s = entry_age_ms(&v, now) / 1000;
                int age_ok = ccv.max_age < 0 || age_s <= (uint64_t)ccv.max_age;
                if (entry_is_fresh(&v, now) && age_ok) {
                    INC(s_hit);
                    req->cache_outcome = "hit";
                    serve_entry_ex(req, &v, "HIT", now, &hitkey, 1);
                    store_release(G.st);
                    G.st->api->touch(G.st, hitkey.k);
                    sqlkey_query_req_free(&q);
                    return HG_DONE;
                }
                if (entry_in_swr(&v, now) && ccv.max_age < 0 && !async_after) {
                    INC(s_stale);
                    req->cache_outcome = "stale";
                    serve_entry_ex(req, &v, "STALE", now, &hitkey, 1);
                    store_release(G.st);
                    if (is_query && q_need(req, &q) != 0)
                        return HG_DONE; /* answered; the refresh needs the SQL */
                    /* refresh in the background, once per key */
                    fill proto;
                    fill_init(&proto);
                    proto.key = key;
                    proto.cls = cls;
                    proto.pol = *p;
                    build_tags(&proto.tags, req, p, is_query ? &q : NULL);
                    tagset_snapshot(&proto.tags);
                    coalesce_key_of(&key, &proto.tags, &proto.ckey);
                    bg_refresh(req, &proto);
                    fill_free(&proto);
                    sqlkey_query_req_free(&q);
                    return HG_DONE;
                }
                if (entry_in_sie(&v, now) && ccv.max_age < 0 && v.status == 200) {
                    stale_copy = malloc(sv.len);
                    if (!stale_copy)
                        abort();
                    memcpy(stale_copy, sv.data, sv.len);
                    stale_len = sv.len;
                }
            }
        }
        store_release(G.st);
    }

    if (ccv.only_if_cached) {
        free(stale_copy);
        sqlkey_query_req_free(&q);
        only_if_cached_miss(req);
        return HG_DONE;
    }

    /* ---- miss: tags, cacheability, coalescing ---- */
    if (is_query && q_need(req, &q) != 0) {
        free(stale_copy);
        return query_bypass(req, p, &q, true);
    }
    cctx *c = ctx_of(req);
    fill *f = &c->f;
    f->key = key;
    f->cls = cls;
    f->pol = *p;
    f->stale = stale_copy;
    f->stale_len = stale_len;
    if (is_query) {
        enum sqlkey_reason why;
        int ok = sqlkey_is_cacheable(q.sql, q.sql_len, &why);
        /* forwarded queries change the run/result lists (and writing SQL its tables) */
        arm_invalidation(req, c, p);
        if (!ok) {
            if (sqlkey_reason_may_write(why))
                add_write_tags(c, &q);
            sqlkey_query_req_free(&q);
            req->cache_outcome = "bypass";
            INC(s_bypass);
            c->xcache = X_BYPASS;
            free(f->stale);
            f->stale = NULL;
            return HG_NEXT;
        }
        build_tags(&f->tags, req, p, &q);
    } else {
        build_tags(&f->tags, req, p, NULL);
        if (p->id == ROUTE_SAVED_QUERIES_EXECUTE)
            arm_invalidation(req, c, p);
    }
    sqlkey_query_req_free(&q);
    if (async_after)
        f->no_store = 1; /* an async answer is not the sync one: share it, do not keep it */
    tagset_snapshot(&f->tags);
    coalesce_key_of(&key, &f->tags, &f->ckey);

    if (ccv.no_cache || async_after) {
        /* go upstream ourselves (and refresh the entry); an async submission's answer may
         * be a 202, so it neither joins nor leads the sync fetches of the same SQL */
        INC(s_miss);
        become_leader(req, c, NULL);
        return HG_NEXT;
    }
    coalesce_flight *fl = NULL;
    coalesce_result *done = NULL;
    switch (coalesce_join(&f->ckey, pipeline_req_base(req), on_deliver, c, &fl, &done)) {
    case COALESCE_DONE: {
        entry_view v;
        cachekey vk;
        if (entry_decode(done->blob, done->len, &v) == ENTRY_OK && gens_current(&v) &&
            (entry_is_fresh(&v, now) || (v.flags & ENTRY_F_POLL)) &&
            result_fits(done, req, &key, &vk)) {
            INC(s_hit);
            req->cache_outcome = "hit";
            serve_entry(req, &v, "HIT", now, done->has_vkey ? &vk : &key);
            coalesce_result_unref(done);
            return HG_DONE;
        }
        coalesce_result_unref(done);
        /* an unusable lingering result: fetch alone, do not disturb the table */
        INC(s_miss);
        become_leader(req, c, NULL);
        return HG_NEXT;
    }
    case COALESCE_WAITER:
        c->waiting = 1;
        req->cache_outcome = "coalesced";
        return HG_ASYNC;
    case COALESCE_LEADER:
    default:
        INC(s_miss);
        become_leader(req, c, fl);
        return HG_NEXT;
    }
}

const char *cache_xcache(const struct hg_req *req)
{
    const cctx *c = req->cache_ctx;
    if (!c)
        return G.enabled && req->cache_outcome && strcmp(req->cache_outcome, "bypass") == 0
                   ? "BYPASS"
                   : NULL;
    if (c->answered_stale)
        return NULL;
    switch (c->xcache) {
    case X_MISS:
        return "MISS";
    case X_BYPASS:
        return "BYPASS";
    default:
        return NULL;
    }
}

int cache_hold_response(const struct hg_req *req)
{
    const cctx *c = req->cache_ctx;
    return c && c->f.stale && !c->answered_stale;
}

int cache_upstream_failed(struct hg_req *req, int status, const struct upstream_result *res)
{
    cctx *c = req->cache_ctx;
    if (!c || !(status == 0 || status == 429 || status >= 500))
        return 0;
    int served = 0;
    entry_view v;
    if (c->f.stale && !c->answered_stale && !req->responded && req->conn &&
        entry_decode(c->f.stale, c->f.stale_len, &v) == ENTRY_OK && gens_current(&v) &&
        entry_in_sie(&v, util_wall_ms())) {
        c->answered_stale = 1;
        INC(s_sie);
        INC(s_stale);
        req->cache_outcome = "stale";
        serve_entry(req, &v, "STALE", util_wall_ms(), &c->f.key);
        served = 1;
    }
    if (c->leading && (served || status == 0)) {
        /* no tap on_done follows (the transfer is dropped, or failed before any head):
         * complete the flight here; the waiters get the stale entry or the failure */
        fill_finish(&c->f, 0, res);
        c->leading = 0;
    }
    return served;
}

/* ---- admin purge ---- */
static void admin_reply(struct evhttp_request *r, int status, const char *json)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, json, strlen(json));
    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", "application/json");
    evhttp_send_reply(r, status, status == 200 ? "OK" : "Error", b);
    evbuffer_free(b);
}

static void admin_error(struct evhttp_request *r, int status, const char *msg)
{
    char *j = util_api_error_json(status, NULL, msg);
    admin_reply(r, status, j);
    free(j);
}

static void admin_purge(struct evhttp_request *r, void *arg)
{
    (void)arg;
    if (evhttp_request_get_command(r) != EVHTTP_REQ_POST) {
        admin_error(r, 405, "use POST");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(r);
    size_t n = evbuffer_get_length(in);
    const char *b = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    json_error_t je;
    json_t *o = n ? json_loadb(b, n, 0, &je) : NULL;
    if (!o || !json_is_object(o)) {
        json_decref(o);
        admin_error(r, 400,
                    "body must be a JSON object: {\"all\":true} | {\"workspace\":W} | "
                    "{\"workspace\":W,\"tag\":T} | {\"key\":HEX}");
        return;
    }
    const char *ws = json_string_value(json_object_get(o, "workspace"));
    const char *tag = json_string_value(json_object_get(o, "tag"));
    const char *key = json_string_value(json_object_get(o, "key"));
    json_t *all = json_object_get(o, "all");
    char what[700];
    if (json_is_true(all)) {
        gen_bump(GEN_ALL);
        if (G.st)
            G.st->api->purge_all(G.st);
        snprintf(what, sizeof what, "all");
    } else if (key) {
        cachekey k;
        if (cachekey_parse_hex(key, &k) != 0) {
            json_decref(o);
            admin_error(r, 400, "key must be 64 hex characters (the X-Cache-Key header)");
            return;
        }
        if (G.st)
            store_del(G.st, k.k);
        snprintf(what, sizeof what, "key");
    } else if (tag && ws) {
        char buf[600];
        scope_tag(ws, tag, buf, sizeof buf);
        invalidate_scoped(buf);
        snprintf(what, sizeof what, "tag");
    } else if (ws) {
        char buf[600];
        ws_tag(ws, buf, sizeof buf);
        invalidate_scoped(buf);
        snprintf(what, sizeof what, "workspace");
    } else {
        json_decref(o);
        admin_error(r, 400, "nothing to purge: give all, workspace (+ tag) or key");
        return;
    }
    json_decref(o);
    coalesce_forget_all();
    if (G.st)
        store_flush(G.st);
    INC(s_purges);
    char out[800];
    snprintf(out, sizeof out, "{\"ok\":true,\"purged\":\"%s\"}", what);
    admin_reply(r, 200, out);
}

/* ---- metrics ---- */
void cache_metrics(struct evbuffer *out, void *arg)
{
    (void)arg;
    evbuffer_add_printf(out, "# HELP hotgate_cache_requests_total Cacheable requests by cache "
                             "outcome.\n# TYPE hotgate_cache_requests_total counter\n");
    const struct {
        const char *n;
        atomic_uint_fast64_t *v;
    } o[] = {{"hit", &s_hit},
             {"miss", &s_miss},
             {"stale", &s_stale},
             {"coalesced", &s_coalesced},
             {"bypass", &s_bypass}};
    for (size_t i = 0; i < sizeof o / sizeof o[0]; i++)
        evbuffer_add_printf(out, "hotgate_cache_requests_total{outcome=\"%s\"} %llu\n", o[i].n,
                            (unsigned long long)atomic_load(o[i].v));
    const struct {
        const char *n, *h;
        uint64_t v;
    } c[] = {
        {"hotgate_cache_stores_total", "Entries handed to the store.", atomic_load(&s_stores)},
        {"hotgate_cache_store_skipped_total", "Cacheable answers not stored.",
         atomic_load(&s_store_skipped)},
        {"hotgate_cache_invalidations_total", "Mutations that invalidated tags.",
         atomic_load(&s_invalidations)},
        {"hotgate_cache_not_modified_total", "304 answers to If-None-Match.",
         atomic_load(&s_not_modified)},
        {"hotgate_cache_only_if_cached_misses_total", "504 answers to only-if-cached.",
         atomic_load(&s_only_if_cached)},
        {"hotgate_cache_corrupt_total", "Entries failing their checksum (deleted).",
         atomic_load(&s_corrupt)},
        {"hotgate_cache_stale_if_error_total", "Stale answers given on upstream failure.",
         atomic_load(&s_sie)},
        {"hotgate_cache_revalidations_total", "Background refreshes started.",
         atomic_load(&s_revalidations)},
        {"hotgate_cache_revalidations_deferred_total",
         "Background refreshes skipped: the credential's budget had no room.",
         atomic_load(&s_revalidations_deferred)},
        {"hotgate_cache_generation_misses_total", "Entries found but invalidated.",
         atomic_load(&s_gen_mismatch)},
        {"hotgate_cache_admin_purges_total", "Admin purges.", atomic_load(&s_purges)},
        {"hotgate_cache_zero_copy_total", "Large hit bodies written straight from the map.",
         atomic_load(&s_zero_copy)},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", c[i].n, c[i].h,
                            c[i].n, c[i].n, (unsigned long long)c[i].v);
    if (G.st) {
        store_stats st;
        G.st->api->stats(G.st, &st);
        evbuffer_add_printf(
            out,
            "# HELP hotgate_cache_evictions_total Entries evicted (LRU) or expired.\n"
            "# TYPE hotgate_cache_evictions_total counter\n"
            "hotgate_cache_evictions_total{reason=\"lru\"} %llu\n"
            "hotgate_cache_evictions_total{reason=\"expired\"} %llu\n"
            "# HELP hotgate_cache_bytes_used Bytes of the cache map in use.\n"
            "# TYPE hotgate_cache_bytes_used gauge\nhotgate_cache_bytes_used %llu\n"
            "# HELP hotgate_cache_bytes_max Size of the cache map.\n"
            "# TYPE hotgate_cache_bytes_max gauge\nhotgate_cache_bytes_max %llu\n"
            "# HELP hotgate_cache_entries Entries in the store.\n"
            "# TYPE hotgate_cache_entries gauge\nhotgate_cache_entries %llu\n"
            "# HELP hotgate_cache_store_map_full_total MDB_MAP_FULL met and handled.\n"
            "# TYPE hotgate_cache_store_map_full_total counter\n"
            "hotgate_cache_store_map_full_total %llu\n"
            "# HELP hotgate_cache_store_dropped_total Puts the store dropped.\n"
            "# TYPE hotgate_cache_store_dropped_total counter\n"
            "hotgate_cache_store_dropped_total %llu\n",
            (unsigned long long)st.evictions, (unsigned long long)st.expired,
            (unsigned long long)st.bytes_used, (unsigned long long)st.map_size,
            (unsigned long long)st.entries, (unsigned long long)st.map_full,
            (unsigned long long)st.put_skipped);
    }
    coalesce_stats cs;
    coalesce_sweep_expired();
    coalesce_get_stats(&cs);
    evbuffer_add_printf(out,
                        "# HELP hotgate_cache_flights_total Coalesced fetches started.\n"
                        "# TYPE hotgate_cache_flights_total counter\n"
                        "hotgate_cache_flights_total %llu\n"
                        "# HELP hotgate_cache_flights Upstream fetches in flight now.\n"
                        "# TYPE hotgate_cache_flights gauge\nhotgate_cache_flights %llu\n"
                        "# HELP hotgate_cache_lingering_results Finished fetches kept in memory "
                        "for requests arriving just after (poll window, store commit lag).\n"
                        "# TYPE hotgate_cache_lingering_results gauge\n"
                        "hotgate_cache_lingering_results %llu\n"
                        "# HELP hotgate_cache_lingering_bytes Bytes of those results.\n"
                        "# TYPE hotgate_cache_lingering_bytes gauge\n"
                        "hotgate_cache_lingering_bytes %llu\n",
                        (unsigned long long)cs.flights, (unsigned long long)cs.inflight,
                        (unsigned long long)cs.linger_results, (unsigned long long)cs.linger_bytes);
}

/* ---- init / shutdown ---- */
static void persist_gens(unsigned marker)
{
    if (!G.st)
        return;
    uint32_t *slots = malloc(sizeof(uint32_t) * GEN_SLOTS);
    uint64_t *vals = malloc(sizeof(uint64_t) * GEN_SLOTS);
    if (!slots || !vals)
        abort();
    size_t n = 0;
    for (uint32_t i = 0; i < GEN_SLOTS - 1; i++) {
        uint64_t g = gen_load(i);
        if (g) {
            slots[n] = i;
            vals[n++] = g;
        }
    }
    slots[n] = GEN_CLEAN;
    vals[n++] = (uint64_t)marker;
    if (G.st->api->gens_save(G.st, slots, vals, n) != 0)
        log_msg(LOG_ERR, "cache: could not persist the invalidation generations");
    free(slots);
    free(vals);
}

void cache_reconfigure(const struct hg_config *cfg)
{
    cache_rules *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    r->ttl_query_ms = cfg->cache.ttl_query_ms;
    r->ttl_metadata_ms = cfg->cache.ttl_metadata_ms;
    r->ttl_immutable_ms = cfg->cache.ttl_immutable_ms;
    r->swr_ms = cfg->cache.stale_while_revalidate_ms;
    r->sie_ms = cfg->cache.stale_if_error_ms;
    r->poll_ms = cfg->cache.poll_window_ms;
    r->neg_ms = cfg->cache.negative_ttl_ms;
    r->n_class_ttl = cfg->cache.n_class_ttl < 32 ? cfg->cache.n_class_ttl : 32;
    for (size_t i = 0; i < r->n_class_ttl; i++) {
        memcpy(r->class_ttl[i].name, cfg->cache.class_ttl[i].name, sizeof r->class_ttl[i].name);
        r->class_ttl[i].ms = cfg->cache.class_ttl[i].ms;
    }
    r->retired = atomic_exchange(&G.rules, r);
}

int cache_open(void)
{
    return !G.enabled || G.st != NULL;
}

int cache_init(const struct hg_config *cfg)
{
    memset(&G, 0, sizeof G);
    G.enabled = cfg->cache.enabled;
    G.max_entry = cfg->cache.max_entry_size ? cfg->cache.max_entry_size : (64ull << 20);
    cache_reconfigure(cfg);
    for (uint32_t i = 0; i < GEN_SLOTS; i++)
        atomic_store(&g_gens[i], 0);
    admin_register("/admin/purge", admin_purge, NULL);
    metrics_register(cache_metrics, NULL);
    if (!G.enabled)
        return 0;
    store_opts o;
    memset(&o, 0, sizeof o);
    o.dir = cfg->cache.dir;
    o.map_size = cfg->cache.size;
    o.high_water = cfg->cache.high_water > 0 ? cfg->cache.high_water : 0.9;
    o.max_entry_size = G.max_entry;
    const char *sync = getenv("HOTGATE_CACHE_NOSYNC");
    o.sync_mode = sync && *sync == '1' ? STORE_SYNC_NONE : STORE_SYNC_META_ASYNC;
    char err[512];
    if (store_lmdb_api.open(&G.st, &o, err, sizeof err) != 0) {
        log_msg(LOG_ERR, "cache: %s", err);
        G.st = NULL;
        return -1;
    }
    uint64_t *table = calloc(GEN_SLOTS, sizeof *table);
    if (!table)
        abort();
    G.st->api->gens_load(G.st, table, GEN_SLOTS);
    /* A store never opened by hotgate has no marker at all. Any marker but "clean" means the
     * previous run was killed (or lost power) while it was running: invalidations it made
     * in memory, and mutations in flight upstream, may not be reflected in the store. */
    int clean = table[GEN_CLEAN] == RUN_CLEAN;
    int fresh_store = 1;
    for (uint32_t i = 0; i < GEN_SLOTS && fresh_store; i++)
        fresh_store = table[i] == 0;
    for (uint32_t i = 0; i < GEN_SLOTS - 1; i++)
        atomic_store(&g_gens[i], table[i]);
    free(table);
    if (!clean && !fresh_store) {
        /* the last run did not end cleanly: invalidations may be lost, trust nothing (and
         * free the space of what can no longer be served) */
        gen_bump(GEN_ALL);
        G.st->api->purge_all(G.st);
        log_msg(LOG_WARNING, "cache: the previous run did not stop cleanly: cache emptied");
    }
    persist_gens(RUN_RUNNING); /* committed and synced before the first request is served */
    return 0;
}

void cache_shutdown(void)
{
    if (G.st) {
        store_flush(G.st);
        persist_gens(RUN_CLEAN);
        store_close(G.st);
        G.st = NULL;
    }
    coalesce_shutdown();
    for (cache_rules *r = atomic_exchange(&G.rules, NULL), *next; r; r = next) {
        next = r->retired;
        free(r);
    }
    G.enabled = 0;
}
