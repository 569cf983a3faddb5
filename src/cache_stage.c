/*
 * cache_stage: the stage's decisions for one request (see cache.h): bypass, lookup, fresh
 * hit / stale / only-if-cached, miss -> lead or join the coalesced fetch; and the response
 * path hooks (X-Cache, stale-if-error, client gone).
 *
 * Ownership: a request's struct cctx lives in req->cache_ctx and is freed by the cleanup
 * registered with pipeline_req_add_cleanup.
 */
#include "cache_int.h"

#include "bodykey.h"
#include "coalesce.h"
#include "entry.h"
#include "hdr.h"
#include "route.h"
#include "sqlkey.h"
#include "store.h"
#include "util.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>

static void ctx_cleanup(struct hg_req *req, void *arg)
{
    cctx *c;
    HG_CAST_OBJ_NOTNULL(c, arg, CACHE_CTX_MAGIC);
    if (c->leading && c->f.flight) {
        /* the leader went away without a result: hand the flight over */
        coalesce_abandon(c->f.flight);
        c->f.flight = NULL;
    }
    HG_CHECK(c->req == req && !c->waiting);
    cache_fill_free(&c->f);
    free(c->inval_body);
    HG_OBJ_FINI(c);
    free(c);
}

/* req's cache context (NULL when it has none yet), checked. */
static cctx *ctx_get(const struct hg_req *req)
{
    cctx *c = req->cache_ctx;
    HG_CHECK_OBJ(c, CACHE_CTX_MAGIC);
    HG_CHECK(!c || c->req == req);
    return c;
}

static cctx *ctx_of(struct hg_req *req)
{
    if (req->cache_ctx)
        return ctx_get(req);
    cctx *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    HG_OBJ_INIT(c, CACHE_CTX_MAGIC);
    c->req = req;
    cache_fill_init(&c->f);
    snprintf(c->ws, sizeof c->ws, "%s", req->workspace ? req->workspace : "");
    memcpy(c->f.ws, c->ws, sizeof c->f.ws);
    req->cache_ctx = c;
    pipeline_req_add_cleanup(req, ctx_cleanup, c);
    return c;
}

static void on_deliver(void *arg, coalesce_result *res, coalesce_flight *flight)
{
    cctx *c;
    HG_CAST_OBJ_NOTNULL(c, arg, CACHE_CTX_MAGIC);
    struct hg_req *req = c->req;
    HG_CHECK(c->waiting); /* delivered once, to a registered waiter */
    c->waiting = 0;
    if (res->kind == COALESCE_KIND_LEAD) {
        coalesce_result_unref(res);
        if (req->client_gone) {
            if (flight)
                coalesce_abandon(flight);
            pipeline_req_release(req);
            return;
        }
        /* promoted: fetch for the others (flight NULL: for ourselves only); the fleet first */
        if (cache_fleet_lead(req, c, flight))
            return;
        cache_become_leader(req, c, flight);
        pipeline_resume(req);
        return;
    }
    cachekey vk;
    if (res->kind == COALESCE_KIND_ENTRY && !req->client_gone &&
        !cache_result_fits(res, req, &c->f.key, &vk)) {
        /* the answer varies on a header we do not share with the leader: fetch for ourselves */
        coalesce_result_unref(res);
        cache_become_leader(req, c, NULL);
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
                    INC(cache_ctr.stale);
                else
                    INC(cache_ctr.coalesced);
                cache_serve_entry(req, &v, stale ? "STALE" : "COALESCED", util_wall_ms(),
                                  res->has_vkey ? &vk : &c->f.key);
            } else {
                pipeline_respond_error(req, 502, "BAD_GATEWAY", "coalesced answer unreadable",
                                       NULL);
            }
        } else {
            req->cache_outcome = "coalesced";
            INC(cache_ctr.coalesced);
            pipeline_respond_error(req, res->status ? res->status : 502, res->code, res->message,
                                   NULL);
        }
    }
    coalesce_result_unref(res);
    pipeline_req_release(req);
}

void cache_client_gone(struct hg_req *req)
{
    cctx *c = ctx_get(req);
    if (c && cache_fleet_client_gone(req, c))
        return;
    if (!c || !c->waiting)
        return;
    if (coalesce_leave(&c->f.ckey, c)) {
        /* removed before any delivery was scheduled: nothing will call us back */
        c->waiting = 0;
        pipeline_req_release(req);
    }
    /* else a delivery is on its way to this thread; on_deliver sees client_gone */
}

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

/* ---- the stage's decisions ---- */

/* Why a request on a cacheable route goes upstream without the cache (X-Cache: BYPASS). */
enum bypass_why {
    BYPASS_NONE = 0,
    BYPASS_BODY_STREAM,     /* a body too large to hold cannot be keyed */
    BYPASS_BODY_UNREADABLE, /* a query body the cache cannot read, or SQL / a dialect the lexer
                               is not certain of: the upstream judges it, not guesswork */
    BYPASS_NO_STORE,        /* Cache-Control: no-store */
    BYPASS_ASYNC,           /* an async submission (without async_after_ms) */
    BYPASS_ENCODING,        /* Accept-Encoding refuses identity: a stored answer is identity */
    BYPASS_NO_SQL,          /* a query whose SQL cannot be decoded */
    BYPASS_SQL,             /* SQL the cache does not keep (volatile, writing, ...) */
};

/* What the stage knows about one request on a cacheable route while it decides. */
typedef struct lookup {
    struct hg_req *req;
    const struct route_policy *p;
    enum fill_class cls;
    bool is_query;
    bool async_only;  /* async: true without async_after_ms: bypassed */
    bool async_after; /* async with async_after_ms: fetched alone, shared, not stored */
    cc cc;
    struct bodykey bk;
    struct sqlkey_query_req q; /* the SQL, decoded only when a decision needs it */
    int sql_judged, sql_ok;    /* sqlkey_is_cacheable, once */
    enum sqlkey_reason sql_why;
    cachekey key;
    uint64_t now;
    unsigned char *stale; /* a copy of an expired entry for stale-if-error */
    size_t stale_len;
} lookup;

/* A route the cache never answers: forwarded as is (X-Cache: BYPASS); mutations (and unknown
 * unsafe requests) invalidate on 2xx. */
static enum hg_stage_result forward_uncacheable(struct hg_req *req, const struct route_policy *p)
{
    int safe = req->method == EVHTTP_REQ_GET || req->method == EVHTTP_REQ_HEAD;
    cache_ensure_sql_hash(req);
    req->cache_outcome = "bypass";
    if (p->mutation || (p->id == ROUTE_UNKNOWN && !safe)) {
        cctx *c = ctx_of(req);
        c->xcache = X_BYPASS;
        cache_arm_invalidation(req, c, p);
    }
    return HG_NEXT;
}

/* sqlkey_is_cacheable of the query's (decoded) SQL, judged once. */
static int sql_cacheable(lookup *L)
{
    if (!L->sql_judged) {
        L->sql_ok = sqlkey_is_cacheable(L->q.sql, L->q.sql_len, &L->sql_why);
        L->sql_judged = 1;
    }
    return L->sql_ok;
}

/* A forwarded query changes the run/result lists, and what its SQL may write (all of the
 * workspace when the SQL cannot be read): invalidated after a 2xx. */
static void arm_query_invalidation(lookup *L, cctx *c, bool all_ws)
{
    c->f.pol = *L->p;
    cache_arm_invalidation(L->req, c, L->p);
    if (all_ws || cache_query_sql(L->req, &L->q) != 0)
        c->inval_all_ws = true;
    else if (!sql_cacheable(L) && sqlkey_reason_may_write(L->sql_why))
        cache_add_write_tags(c, &L->q);
}

/* Forward the request without the cache (X-Cache: BYPASS). */
static enum hg_stage_result bypass(lookup *L, enum bypass_why why)
{
    struct hg_req *req = L->req;
    req->cache_outcome = "bypass";
    INC(cache_ctr.bypass);
    cctx *c = ctx_of(req);
    c->xcache = X_BYPASS;
    if (L->is_query)
        arm_query_invalidation(L, c,
                               why == BYPASS_BODY_STREAM || why == BYPASS_BODY_UNREADABLE ||
                                   why == BYPASS_NO_SQL);
    free(L->stale);
    L->stale = NULL;
    sqlkey_query_req_free(&L->q);
    return HG_NEXT;
}

/* Read what the key and the decisions need from the request (Cache-Control, the body's key
 * part, a query's flags): BYPASS_NONE, or why the cache stays out of it. */
static enum bypass_why read_request(lookup *L)
{
    struct hg_req *req = L->req;
    cache_parse_cc(req, &L->cc);
    if (req->body_kind == HG_BODY_STREAM)
        return BYPASS_BODY_STREAM;
    if (req->body_kind == HG_BODY_MEMORY && req->body) {
        size_t n = evbuffer_get_length(req->body);
        if (n)
            cache_body_key(evbuffer_pullup(req->body, (ev_ssize_t)n), n, L->is_query, &L->bk);
    }
    if (L->is_query) {
        if (!req->sql_hash[0])
            memcpy(req->sql_hash, L->bk.sql_hash, sizeof req->sql_hash);
        if (!L->bk.query_ok || !L->bk.sql_certain)
            return BYPASS_BODY_UNREADABLE;
        L->q.async = L->bk.async;
        L->q.has_async_after_ms = L->bk.has_async_after_ms;
        L->q.async_after_ms = L->bk.async_after_ms;
        L->async_only = L->q.async && !L->q.has_async_after_ms;
        L->async_after = L->q.async && L->q.has_async_after_ms;
    }
    if (L->cc.no_store)
        return BYPASS_NO_STORE;
    if (L->async_only)
        return BYPASS_ASYNC;
    if (cache_ae_refuses_identity(hdr_find(&req->headers, "Accept-Encoding")))
        return BYPASS_ENCODING;
    return BYPASS_NONE;
}

/* The key: the whole request but the documented never-answer-changing parts (cachekey.h). */
static void derive_key(lookup *L)
{
    struct hg_req *req = L->req;
    cachekey_in ki;
    memset(&ki, 0, sizeof ki);
    ki.cred_id = cache_cred_identity(req->cred);
    ki.workspace = req->workspace;
    ki.method = req->method_name;
    ki.path = req->path;
    ki.query = req->query;
    ki.accept = hdr_find(&req->headers, "Accept");
    ki.headers = &req->headers;
    ki.body = L->bk.kind != BODYKEY_NONE ? L->bk.digest : NULL;
    cachekey_derive(&ki, &L->key);
}

/* The current entry for L->key in the store, following a Vary marker to this request's
 * variant: 1 with *v (valid until store_release) and *hitkey its key, or 0. */
static int store_find(lookup *L, store_val *sv, entry_view *v, cachekey *hitkey)
{
    *hitkey = L->key; /* the entry's own key: the primary, or a Vary variant's */
    int rc = store_get(cache_g.st, L->key.k, sv);
    int drc = rc == 0 ? entry_decode(sv->data, sv->len, v) : ENTRY_OK;
    if (rc == 0 && drc == ENTRY_OK && (v->flags & ENTRY_F_VARY) && cache_gens_current(v)) {
        /* a Vary marker: the answer lives under the secondary key of this request */
        char names[512];
        size_t nl = v->body_len < sizeof names ? v->body_len : sizeof names - 1;
        memcpy(names, v->body, nl);
        names[nl] = '\0';
        vary_src src = cache_vary_src_of_req(L->req);
        cachekey_vary(&L->key, names, cache_vary_value, &src, hitkey);
        rc = store_get(cache_g.st, hitkey->k, sv);
        drc = rc == 0 ? entry_decode(sv->data, sv->len, v) : ENTRY_OK;
    }
    if (rc != 0)
        return 0;
    if (drc != ENTRY_OK) {
        INC(cache_ctr.corrupt);
        store_del(cache_g.st, hitkey->k);
        return 0;
    }
    if (!cache_gens_current(v)) {
        INC(cache_ctr.gen_mismatch);
        return 0;
    }
    /* a marker where an answer should be (a marker of a marker): a miss */
    return !(v->flags & ENTRY_F_VARY);
}

/* Refresh the entry of L in the background (stale-while-revalidate), once per key. */
static void refresh_in_background(lookup *L)
{
    if (L->is_query && cache_query_sql(L->req, &L->q) != 0)
        return; /* the refresh needs the SQL */
    fill proto;
    cache_fill_init(&proto);
    proto.key = L->key;
    proto.cls = L->cls;
    proto.pol = *L->p;
    cache_build_tags(&proto.tags, L->req, L->p, L->is_query ? &L->q : NULL);
    cache_tagset_snapshot(&proto.tags);
    cache_coalesce_key(&L->key, &proto.tags, &proto.ckey);
    cache_bg_refresh(L->req, &proto);
    cache_fill_free(&proto);
}

/* Answer from the store when the entry allows: 1 when answered (a fresh hit, or a stale one
 * inside stale-while-revalidate, refreshed in the background). Otherwise an entry inside
 * stale-if-error is kept in L->stale for an upstream failure. */
static int answer_from_store(lookup *L)
{
    struct hg_req *req = L->req;
    store_val sv;
    entry_view v;
    cachekey hitkey;
    if (store_find(L, &sv, &v, &hitkey)) {
        uint64_t age_s = entry_age_ms(&v, L->now) / 1000;
        int age_ok = L->cc.max_age < 0 || age_s <= (uint64_t)L->cc.max_age;
        if (entry_is_fresh(&v, L->now) && age_ok) {
            INC(cache_ctr.hit);
            req->cache_outcome = "hit";
            cache_serve_entry_ex(req, &v, "HIT", L->now, &hitkey, 1);
            store_release(cache_g.st);
            cache_g.st->api->touch(cache_g.st, hitkey.k);
            return 1;
        }
        if (entry_in_swr(&v, L->now) && L->cc.max_age < 0 && !L->async_after) {
            INC(cache_ctr.stale);
            req->cache_outcome = "stale";
            cache_serve_entry_ex(req, &v, "STALE", L->now, &hitkey, 1);
            store_release(cache_g.st);
            refresh_in_background(L);
            return 1;
        }
        if (entry_in_sie(&v, L->now) && L->cc.max_age < 0 && v.status == 200) {
            L->stale = malloc(sv.len);
            if (!L->stale)
                abort();
            memcpy(L->stale, sv.data, sv.len);
            L->stale_len = sv.len;
        }
    }
    store_release(cache_g.st);
    return 0;
}

/* Set up c's fill for the key of L: tags (and their generations now), the coalescing key,
 * invalidation by a forwarded query or a saved query's execution. */
static void prepare_fill(lookup *L, cctx *c)
{
    HG_CHECK(!c->leading && !c->waiting && c->f.tags.n == 0); /* once per request */
    fill *f = &c->f;
    f->key = L->key;
    f->cls = L->cls;
    f->pol = *L->p;
    f->stale = L->stale; /* moved */
    f->stale_len = L->stale_len;
    L->stale = NULL;
    if (L->is_query || L->p->id == ROUTE_SAVED_QUERIES_EXECUTE)
        cache_arm_invalidation(L->req, c, L->p); /* they change the run/result lists */
    cache_build_tags(&f->tags, L->req, L->p, L->is_query ? &L->q : NULL);
    if (L->async_after)
        f->no_store = 1; /* an async answer is not the sync one: share it, do not keep it */
    cache_tagset_snapshot(&f->tags);
    cache_coalesce_key(&L->key, &f->tags, &f->ckey);
}

/* This request fetches for the cache (fl: the flight it leads, NULL: for itself only). */
static enum hg_stage_result lead(struct hg_req *req, cctx *c, coalesce_flight *fl)
{
    if (cache_fleet_lead(req, c, fl)) {
        req->cache_outcome = "miss";
        return HG_ASYNC; /* L2, or another instance's fetch, first */
    }
    INC(cache_ctr.miss);
    cache_become_leader(req, c, fl);
    return HG_NEXT;
}

/* A fetch of the key just finished and lingers: served when still usable, else fetched alone
 * (without disturbing the table). */
static enum hg_stage_result take_lingering(lookup *L, cctx *c, coalesce_result *done)
{
    entry_view v;
    cachekey vk;
    if (entry_decode(done->blob, done->len, &v) == ENTRY_OK && cache_gens_current(&v) &&
        (entry_is_fresh(&v, L->now) || (v.flags & ENTRY_F_POLL)) &&
        cache_result_fits(done, L->req, &L->key, &vk)) {
        INC(cache_ctr.hit);
        L->req->cache_outcome = "hit";
        cache_serve_entry(L->req, &v, "HIT", L->now, done->has_vkey ? &vk : &L->key);
        coalesce_result_unref(done);
        return HG_DONE;
    }
    coalesce_result_unref(done);
    return lead(L->req, c, NULL);
}

/* A miss: lead the coalesced fetch of the key, wait for it, or take its lingering result. */
static enum hg_stage_result miss(lookup *L)
{
    struct hg_req *req = L->req;
    if (L->is_query && cache_query_sql(req, &L->q) != 0)
        return bypass(L, BYPASS_NO_SQL);
    if (L->is_query && !sql_cacheable(L))
        return bypass(L, BYPASS_SQL);
    cctx *c = ctx_of(req);
    prepare_fill(L, c);
    sqlkey_query_req_free(&L->q);
    if (L->cc.no_cache || L->async_after) {
        /* go upstream ourselves (and refresh the entry); an async submission's answer may
         * be a 202, so it neither joins nor leads the sync fetches of the same SQL */
        return lead(req, c, NULL);
    }
    coalesce_flight *fl = NULL;
    coalesce_result *done = NULL;
    switch (coalesce_join(&c->f.ckey, pipeline_req_base(req), on_deliver, c, &fl, &done)) {
    case COALESCE_DONE:
        return take_lingering(L, c, done);
    case COALESCE_WAITER:
        c->waiting = 1;
        req->cache_outcome = "coalesced";
        return HG_ASYNC;
    case COALESCE_LEADER:
    default:
        return lead(req, c, fl);
    }
}

enum hg_stage_result cache_stage(struct hg_req *req)
{
    if (!cache_g.enabled) {
        cache_ensure_sql_hash(req);
        return HG_NEXT;
    }
    if (!req->route || req->route->id == ROUTE_NOT_API)
        return HG_NEXT;
    route_complete(req->route);                /* the row's tags: only the cache reads them */
    const struct route_policy *p = req->route; /* the route stage's row of the table */
    cache_fleet_attach(req);
    enum fill_class cls;
    if (!class_of(p, &cls) || p->head || p->mutation)
        return forward_uncacheable(req, p);

    lookup L;
    memset(&L, 0, sizeof L);
    L.req = req;
    L.p = p;
    L.cls = cls;
    L.is_query = p->id == ROUTE_QUERY;
    enum bypass_why why = read_request(&L);
    if (why != BYPASS_NONE)
        return bypass(&L, why);
    derive_key(&L);
    L.now = util_wall_ms();
    if (!L.cc.no_cache && cache_g.st && answer_from_store(&L)) {
        sqlkey_query_req_free(&L.q);
        return HG_DONE;
    }
    if (L.cc.only_if_cached) {
        free(L.stale);
        sqlkey_query_req_free(&L.q);
        cache_only_if_cached_miss(req);
        return HG_DONE;
    }
    return miss(&L);
}

const char *cache_xcache(const struct hg_req *req)
{
    const cctx *c = ctx_get(req);
    if (!c)
        return cache_g.enabled && req->cache_outcome && strcmp(req->cache_outcome, "bypass") == 0
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
    const cctx *c = ctx_get(req);
    return c && ((c->f.stale && !c->answered_stale) || c->gate_pending);
}

int cache_upstream_failed(struct hg_req *req, int status, const struct upstream_result *res)
{
    cctx *c = ctx_get(req);
    if (!c || !(status == 0 || status == 429 || status >= 500))
        return 0;
    int served = 0;
    entry_view v;
    if (c->f.stale && !c->answered_stale && !req->responded && req->conn &&
        entry_decode(c->f.stale, c->f.stale_len, &v) == ENTRY_OK && cache_gens_current(&v) &&
        entry_in_sie(&v, util_wall_ms())) {
        c->answered_stale = 1;
        INC(cache_ctr.sie);
        INC(cache_ctr.stale);
        req->cache_outcome = "stale";
        cache_serve_entry(req, &v, "STALE", util_wall_ms(), &c->f.key);
        served = 1;
    }
    if (c->leading && (served || status == 0)) {
        /* no tap on_done follows (the transfer is dropped, or failed before any head):
         * complete the flight here; the waiters get the stale entry or the failure */
        cache_fill_finish(&c->f, 0, res);
        c->leading = 0;
    }
    return served;
}
