/*
 * cache_stage: the stage's decisions for one request (see cache.h): bypass, lookup, fresh
 * hit / stale / only-if-cached, miss -> lead or join the coalesced fetch; and the response
 * path hooks (X-Cache, stale-if-error, client gone).
 *
 * Ownership: a request's struct cctx lives in req->cache_ctx and is freed by the cleanup
 * registered with server_req_add_cleanup.
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
    cctx *c = arg;
    (void)req;
    if (c->leading && c->f.flight) {
        /* the leader went away without a result: hand the flight over */
        coalesce_abandon(c->f.flight);
        c->f.flight = NULL;
    }
    cache_fill_free(&c->f);
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
    cache_fill_init(&c->f);
    snprintf(c->ws, sizeof c->ws, "%s", req->workspace ? req->workspace : "");
    memcpy(c->f.ws, c->ws, sizeof c->f.ws);
    req->cache_ctx = c;
    server_req_add_cleanup(req, ctx_cleanup, c);
    return c;
}

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
            server_req_release(req);
            return;
        }
        /* promoted: fetch for the others (flight NULL: for ourselves only); the fleet first */
        if (cache_fleet_lead(req, c, flight))
            return;
        cache_become_leader(req, c, flight);
        server_pipeline_resume(req);
        return;
    }
    cachekey vk;
    if (res->kind == COALESCE_KIND_ENTRY && !req->client_gone &&
        !cache_result_fits(res, req, &c->f.key, &vk)) {
        /* the answer varies on a header we do not share with the leader: fetch for ourselves */
        coalesce_result_unref(res);
        cache_become_leader(req, c, NULL);
        server_pipeline_resume(req);
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
                server_respond_error(req, 502, "BAD_GATEWAY", "coalesced answer unreadable", NULL);
            }
        } else {
            req->cache_outcome = "coalesced";
            INC(cache_ctr.coalesced);
            server_respond_error(req, res->status ? res->status : 502, res->code, res->message,
                                 NULL);
        }
    }
    coalesce_result_unref(res);
    server_req_release(req);
}

void cache_client_gone(struct hg_req *req)
{
    cctx *c = req->cache_ctx;
    if (c && cache_fleet_client_gone(req, c))
        return;
    if (!c || !c->waiting)
        return;
    if (coalesce_leave(&c->f.ckey, c)) {
        /* removed before any delivery was scheduled: nothing will call us back */
        c->waiting = 0;
        server_req_release(req);
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
    INC(cache_ctr.bypass);
    cctx *c = ctx_of(req);
    c->xcache = X_BYPASS;
    c->f.pol = *p;
    cache_arm_invalidation(req, c, p);
    if (all_ws || q_need(req, q) != 0) {
        c->inval_all_ws = true;
    } else {
        enum sqlkey_reason why;
        if (!sqlkey_is_cacheable(q->sql, q->sql_len, &why) && sqlkey_reason_may_write(why))
            cache_add_write_tags(c, q);
    }
    sqlkey_query_req_free(q);
    return HG_NEXT;
}

static enum hg_stage_result plain_bypass(struct hg_req *req)
{
    req->cache_outcome = "bypass";
    INC(cache_ctr.bypass);
    ctx_of(req)->xcache = X_BYPASS;
    return HG_NEXT;
}

static __thread struct route_policy tl_policy;

enum hg_stage_result cache_stage(struct hg_req *req)
{
    if (!cache_g.enabled) {
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
    cache_fleet_attach(req);
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
            cache_arm_invalidation(req, c, p);
        }
        return HG_NEXT;
    }

    cc ccv;
    cache_parse_cc(req, &ccv);

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
        cache_ae_refuses_identity(hdr_find(&req->headers, "Accept-Encoding"))) {
        if (is_query)
            return query_bypass(req, p, &q, false);
        return plain_bypass(req);
    }

    cachekey_in ki;
    memset(&ki, 0, sizeof ki);
    ki.cred_id = cache_cred_identity(req->cred);
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
    if (!ccv.no_cache && cache_g.st) {
        store_val sv;
        cachekey hitkey = key; /* the entry's own key: the primary, or a Vary variant's */
        int rc = store_get(cache_g.st, key.k, &sv);
        entry_view v;
        int drc = rc == 0 ? entry_decode(sv.data, sv.len, &v) : ENTRY_OK;
        if (rc == 0 && drc == ENTRY_OK && (v.flags & ENTRY_F_VARY) && cache_gens_current(&v)) {
            /* a Vary marker: the answer lives under the secondary key of this request */
            char names[512];
            size_t nl = v.body_len < sizeof names ? v.body_len : sizeof names - 1;
            memcpy(names, v.body, nl);
            names[nl] = '\0';
            vary_src src = cache_vary_src_of_req(req);
            cachekey_vary(&key, names, cache_vary_value, &src, &hitkey);
            rc = store_get(cache_g.st, hitkey.k, &sv);
            drc = rc == 0 ? entry_decode(sv.data, sv.len, &v) : ENTRY_OK;
        }
        if (rc == 0) {
            if (drc != ENTRY_OK) {
                INC(cache_ctr.corrupt);
                store_del(cache_g.st, hitkey.k);
            } else if (!cache_gens_current(&v)) {
                INC(cache_ctr.gen_mismatch);
            } else if (v.flags & ENTRY_F_VARY) {
                /* a marker where an answer should be (a marker of a marker): a miss */
            } else {
                uint64_t age_s = entry_age_ms(&v, now) / 1000;
                int age_ok = ccv.max_age < 0 || age_s <= (uint64_t)ccv.max_age;
                if (entry_is_fresh(&v, now) && age_ok) {
                    INC(cache_ctr.hit);
                    req->cache_outcome = "hit";
                    cache_serve_entry_ex(req, &v, "HIT", now, &hitkey, 1);
                    store_release(cache_g.st);
                    cache_g.st->api->touch(cache_g.st, hitkey.k);
                    sqlkey_query_req_free(&q);
                    return HG_DONE;
                }
                if (entry_in_swr(&v, now) && ccv.max_age < 0 && !async_after) {
                    INC(cache_ctr.stale);
                    req->cache_outcome = "stale";
                    cache_serve_entry_ex(req, &v, "STALE", now, &hitkey, 1);
                    store_release(cache_g.st);
                    if (is_query && q_need(req, &q) != 0)
                        return HG_DONE; /* answered; the refresh needs the SQL */
                    /* refresh in the background, once per key */
                    fill proto;
                    cache_fill_init(&proto);
                    proto.key = key;
                    proto.cls = cls;
                    proto.pol = *p;
                    cache_build_tags(&proto.tags, req, p, is_query ? &q : NULL);
                    cache_tagset_snapshot(&proto.tags);
                    cache_coalesce_key(&key, &proto.tags, &proto.ckey);
                    cache_bg_refresh(req, &proto);
                    cache_fill_free(&proto);
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
        store_release(cache_g.st);
    }

    if (ccv.only_if_cached) {
        free(stale_copy);
        sqlkey_query_req_free(&q);
        cache_only_if_cached_miss(req);
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
        cache_arm_invalidation(req, c, p);
        if (!ok) {
            if (sqlkey_reason_may_write(why))
                cache_add_write_tags(c, &q);
            sqlkey_query_req_free(&q);
            req->cache_outcome = "bypass";
            INC(cache_ctr.bypass);
            c->xcache = X_BYPASS;
            free(f->stale);
            f->stale = NULL;
            return HG_NEXT;
        }
        cache_build_tags(&f->tags, req, p, &q);
    } else {
        cache_build_tags(&f->tags, req, p, NULL);
        if (p->id == ROUTE_SAVED_QUERIES_EXECUTE)
            cache_arm_invalidation(req, c, p);
    }
    sqlkey_query_req_free(&q);
    if (async_after)
        f->no_store = 1; /* an async answer is not the sync one: share it, do not keep it */
    cache_tagset_snapshot(&f->tags);
    cache_coalesce_key(&key, &f->tags, &f->ckey);

    if (ccv.no_cache || async_after) {
        /* go upstream ourselves (and refresh the entry); an async submission's answer may
         * be a 202, so it neither joins nor leads the sync fetches of the same SQL */
        INC(cache_ctr.miss);
        cache_become_leader(req, c, NULL);
        return HG_NEXT;
    }
    coalesce_flight *fl = NULL;
    coalesce_result *done = NULL;
    switch (coalesce_join(&f->ckey, server_req_base(req), on_deliver, c, &fl, &done)) {
    case COALESCE_DONE: {
        entry_view v;
        cachekey vk;
        if (entry_decode(done->blob, done->len, &v) == ENTRY_OK && cache_gens_current(&v) &&
            (entry_is_fresh(&v, now) || (v.flags & ENTRY_F_POLL)) &&
            cache_result_fits(done, req, &key, &vk)) {
            INC(cache_ctr.hit);
            req->cache_outcome = "hit";
            cache_serve_entry(req, &v, "HIT", now, done->has_vkey ? &vk : &key);
            coalesce_result_unref(done);
            return HG_DONE;
        }
        coalesce_result_unref(done);
        /* an unusable lingering result: fetch alone, do not disturb the table */
        INC(cache_ctr.miss);
        cache_become_leader(req, c, NULL);
        return HG_NEXT;
    }
    case COALESCE_WAITER:
        c->waiting = 1;
        req->cache_outcome = "coalesced";
        return HG_ASYNC;
    case COALESCE_LEADER:
    default:
        if (cache_fleet_lead(req, c, fl)) {
            req->cache_outcome = "miss";
            return HG_ASYNC; /* L2, or another instance's fetch, first */
        }
        INC(cache_ctr.miss);
        cache_become_leader(req, c, fl);
        return HG_NEXT;
    }
}

const char *cache_xcache(const struct hg_req *req)
{
    const cctx *c = req->cache_ctx;
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
