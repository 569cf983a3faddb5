/*
 * cache_fill: what a fetch for the cache accumulates and stores: the leader's response tap,
 * the encoding and storing of the answer (freshness rules, Vary marker), the completion of
 * the coalesced flight, and the stale-while-revalidate background refresh.
 *
 * Ownership: a fill owns its accumulated head and body; a background refresh owns its
 * struct bgfetch until its upstream on_done.
 */
#include "cache_int.h"

#include "budget.h"
#include "budget_stage.h"
#include "coalesce.h"
#include "connmap.h"
#include "entry.h"
#include "hdr.h"
#include "route.h"
#include "store.h"
#include "upstream.h"
#include "upstream_stage.h"
#include "util.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>

void cache_fill_init(fill *f)
{
    memset(f, 0, sizeof *f);
    HG_OBJ_INIT(f, CACHE_FILL_MAGIC);
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

void cache_fill_free(fill *f)
{
    HG_CHECK_OBJ_NOTNULL(f, CACHE_FILL_MAGIC);
    cache_fleet_fill_over(f, NULL, 0, 0); /* a fill dropped unfinished: release its lease */
    fill_reset_response(f);
    free(f->body);
    f->body = NULL;
    free(f->stale);
    f->stale = NULL;
    evhttp_clear_headers(&f->vh);
    TAILQ_INIT(&f->vh);
    cache_tagset_free(&f->tags);
    HG_OBJ_FINI(f);
}

static void fill_head(fill *f, int status, const struct evkeyvalq *headers)
{
    HG_CHECK_OBJ_NOTNULL(f, CACHE_FILL_MAGIC);
    HG_CHECK(!f->done);
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
    uint64_t cap = cache_g.max_entry > (8u << 20) ? cache_g.max_entry : (8u << 20);
    return cap > FILL_HARD_CAP ? FILL_HARD_CAP : (size_t)cap;
}

static void fill_data(fill *f, const struct evbuffer *chunk)
{
    HG_CHECK_OBJ_NOTNULL(f, CACHE_FILL_MAGIC);
    HG_CHECK(f->blen <= f->bcap);
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

/* How long a fill's answer stays fresh, how it is flagged, whether it may go to the store
 * (*storable) and how long it may answer later requests from memory (*linger). */
typedef struct fill_life {
    uint64_t fresh, linger;
    uint32_t flags;
    int storable;
} fill_life;

/* The life of f's answer under the freshness rules R. */
static fill_life fill_life_of(const fill *f, const cache_rules *R)
{
    fill_life l = {0, 0, 0, 0};
    const char *body = (const char *)f->body;
    int st = f->status;
    if (st == 200 && !f->no_store) {
        switch (f->cls) {
        case FILL_QUERY:
            if (route_body_cacheable(body, f->blen)) {
                l.fresh = class_ttl(R, &f->pol, R->ttl_query_ms);
                l.storable = 1;
            }
            break;
        case FILL_METADATA:
            l.fresh = class_ttl(R, &f->pol, R->ttl_metadata_ms);
            l.storable = 1;
            break;
        case FILL_IMMUTABLE:
            if (route_body_is_terminal(&f->pol, st, body, f->blen)) {
                l.fresh = class_ttl(R, &f->pol, R->ttl_immutable_ms);
                if (!l.fresh)
                    l.fresh = ENTRY_FRESH_FOREVER;
                l.storable = 1;
            }
            break;
        }
    }
    if (!l.storable && f->cls == FILL_IMMUTABLE && st >= 200 && st < 300 && R->poll_ms) {
        /* a non-terminal poll answer: micro-cached in memory for the poll window */
        l.fresh = R->poll_ms;
        l.flags |= ENTRY_F_POLL;
        l.linger = R->poll_ms;
    }
    if (st == 404 && R->neg_ms && !f->no_store && f->cls != FILL_QUERY) {
        l.fresh = R->neg_ms;
        l.flags |= ENTRY_F_NEGATIVE;
        l.storable = 1;
    }
    if (l.storable && (f->tags.overflow || f->blen > cache_g.max_entry || !l.fresh ||
                       f->upstream_no_store || f->unshareable))
        l.storable = 0;
    if (f->upstream_no_store || f->unshareable)
        l.linger = 0;
    if (l.storable)
        l.linger = l.fresh < LINGER_STORED_MS ? l.fresh : LINGER_STORED_MS;
    return l;
}

/* Encode the fill's response; *storable tells whether it may go to the store, *linger how
 * long it may answer later requests from memory. */
static unsigned char *fill_encode(fill *f, size_t *len, int *storable, uint64_t *linger)
{
    const cache_rules *R = atomic_load_explicit(&cache_g.rules, memory_order_acquire);
    fill_life l = fill_life_of(f, R);
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
    in.status = f->status;
    in.flags = l.flags;
    in.stored_ms = util_wall_ms();
    in.fresh_ms = l.fresh;
    if (l.storable && !(l.flags & (ENTRY_F_NEGATIVE | ENTRY_F_POLL)) && f->cls != FILL_IMMUTABLE) {
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
    *storable = 0;
    *linger = 0;
    if (entry_encode(&in, &blob, len) != ENTRY_OK)
        return NULL;
    *storable = l.storable;
    *linger = l.linger;
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
    snprintf(f->v_cred, sizeof f->v_cred, "%s", cache_cred_identity(req->cred));
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
    int rc =
        store_put(cache_g.st, f->key.k, blob, len, exp, (const char *const *)f->tags.v, f->tags.n);
    free(blob);
    return rc;
}

/* Store the encoded answer (blob, len) when it still may be: its generations unchanged since
 * the fill started. *linger: 0 when it must not answer late comers either. */
static void fill_store(fill *f, const unsigned char *blob, size_t len, uint64_t *linger)
{
    if (!cache_g.st || !cache_tagset_current(&f->tags)) {
        INC(cache_ctr.store_skipped);
        *linger = 0; /* invalidated while in flight: do not hand it to late comers */
        return;
    }
    uint32_t exp = 0;
    entry_view v;
    if (entry_decode_nocheck(blob, len, &v) == ENTRY_OK)
        exp = entry_hard_expiry_s(v.stored_ms, v.fresh_ms, v.swr_ms, v.sie_ms);
    int rc = store_put(cache_g.st, f->has_vkey ? f->vkey.k : f->key.k, blob, len, exp,
                       (const char *const *)f->tags.v, f->tags.n);
    if (rc == 0 && f->has_vkey)
        rc = store_vary_marker(f, &v, exp);
    if (rc == 0)
        INC(cache_ctr.stores);
    else
        INC(cache_ctr.store_skipped);
    cache_fleet_fill_over(f, blob, len, rc == 0); /* and to L2 */
}

/* stale-if-error: the waiters get the expired entry too. */
static coalesce_result *fill_stale_result(fill *f)
{
    coalesce_result *cr = coalesce_result_new(COALESCE_KIND_ENTRY, f->stale, f->stale_len);
    cr->flags |= COALESCE_F_STALE;
    char names[512];
    if (cache_entry_vary(f->stale, f->stale_len, names, sizeof names)) {
        vary_src src = vary_src_of_fill(f);
        cachekey_vary(&f->key, names, cache_vary_value, &src, &cr->vkey);
        cr->has_vkey = 1;
    }
    return cr;
}

/* The answer for the waiters (stored first when it may be), or NULL when it cannot be
 * encoded. *linger: how long it may answer later requests. */
static coalesce_result *fill_answer_result(fill *f, uint64_t *linger)
{
    size_t len = 0;
    int storable = 0;
    unsigned char *blob = fill_encode(f, &len, &storable, linger);
    if (!blob)
        return NULL;
    if (f->vary[0]) {
        /* Vary: the answer belongs to the secondary key of the leader's request */
        vary_src src = vary_src_of_fill(f);
        cachekey_vary(&f->key, f->vary, cache_vary_value, &src, &f->vkey);
        f->has_vkey = 1;
    }
    if (storable)
        fill_store(f, blob, len, linger);
    coalesce_result *cr = coalesce_result_new(COALESCE_KIND_ENTRY, NULL, 0);
    cr->blob = blob; /* moved */
    cr->len = len;
    if (f->has_vkey) {
        cr->has_vkey = 1;
        cr->vkey = f->vkey;
    }
    return cr;
}

/* The failure the waiters get (res may be NULL). */
static coalesce_result *fill_error_result(const struct upstream_result *res)
{
    coalesce_result *cr = coalesce_result_new(COALESCE_KIND_ERROR, NULL, 0);
    const char *code = "BAD_GATEWAY", *msg = "upstream failed";
    int status = 502;
    if (res && res->outcome != UPSTREAM_OK)
        status = upstream_error_status(res->outcome, &code, &msg);
    cr->status = status;
    snprintf(cr->code, sizeof cr->code, "%s", code ? code : "BAD_GATEWAY");
    snprintf(cr->message, sizeof cr->message, "%s", msg ? msg : "upstream failed");
    return cr;
}

/*
 * The fill is over: store what may be stored and complete the flight (every waiter gets
 * the answer, or the stale entry, or the failure). ok: the upstream exchange completed;
 * res may be NULL.
 */
void cache_fill_finish(fill *f, int ok, const struct upstream_result *res)
{
    HG_CHECK_OBJ_NOTNULL(f, CACHE_FILL_MAGIC);
    if (f->done)
        return;
    f->done = 1;
    if (ok && f->head_seen && f->status == 200 && !f->too_big &&
        (f->pol.id == ROUTE_CONNECTIONS_LIST || f->pol.id == ROUTE_CONNECTIONS_GET))
        connmap_learn_json(f->ws, (const char *)f->body, f->blen); /* id -> name, see connmap.h */
    coalesce_result *cr = NULL;
    uint64_t linger = 0;
    int failed = !ok || !f->head_seen || f->status >= 500 || f->status == 429;
    if (failed && f->stale)
        cr = fill_stale_result(f);
    else if (ok && f->head_seen && !f->too_big && !f->unshareable)
        cr = fill_answer_result(f, &linger);
    cache_fleet_fill_over(f, NULL, 0, 0); /* not for L2: release the fleet's lease */
    if (!f->flight) {
        /* fetched alone (no-cache, async): nobody waits for it */
        coalesce_result_unref(cr);
        return;
    }
    if (!cr && (f->too_big || (f->unshareable && ok && f->head_seen))) {
        /* too large to share: every waiter fetches for itself */
        coalesce_release_all(f->flight);
        f->flight = NULL;
        return;
    }
    if (!cr)
        cr = fill_error_result(res);
    coalesce_complete(f->flight, cr, linger);
    f->flight = NULL;
}

/* the tap: invalidation on 2xx and the leader's fill */
static int tap_head(struct hg_req *req, void *arg, int status, const struct evkeyvalq *headers)
{
    cctx *c;
    HG_CAST_OBJ_NOTNULL(c, arg, CACHE_CTX_MAGIC);
    (void)req;
    if (c->inval && status >= 200 && status < 300) {
        struct route_tags t;
        bool all_ws = c->inval_all_ws;
        if (c->inval_body || c->f.pol.needs_body) {
            memset(&t, 0, sizeof t);
            route_invalidation_tags(&c->f.pol, c->inval_body, c->inval_body_len, connmap_resolve,
                                    c->ws, &t, &all_ws);
            cache_invalidate_route_tags(c, &t, all_ws || c->inval_all_ws);
        }
        cache_invalidate_route_tags(c, &c->inval_tags, all_ws);
        c->inval = 0; /* once */
    }
    if (c->leading)
        fill_head(&c->f, status, headers);
    return 0;
}

static void tap_data(struct hg_req *req, void *arg, const struct evbuffer *chunk)
{
    cctx *c;
    HG_CAST_OBJ_NOTNULL(c, arg, CACHE_CTX_MAGIC);
    (void)req;
    if (c->leading)
        fill_data(&c->f, chunk);
}

static void tap_done(struct hg_req *req, void *arg, int ok, const struct upstream_result *res)
{
    cctx *c;
    HG_CAST_OBJ_NOTNULL(c, arg, CACHE_CTX_MAGIC);
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
    cache_fill_finish(&c->f, ok, res);
}

void cache_add_tap(struct hg_req *req, cctx *c)
{
    HG_CHECK_OBJ_NOTNULL(c, CACHE_CTX_MAGIC);
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

/* Rewrite a request's headers h as a fill sends them upstream (the foreground fill and the
 * background refresh alike): Accept-Encoding: identity, no If-None-Match. */
static void fill_request_headers(struct evkeyvalq *h)
{
    hdr_remove_if(h, fill_replaces_header);
    hdr_add(h, "Accept-Encoding", 15, "identity", 8);
}

/* This request fetches for the cache (fl: the flight it leads, NULL: for itself only). */
void cache_become_leader(struct hg_req *req, cctx *c, coalesce_flight *fl)
{
    HG_CHECK_OBJ_NOTNULL(c, CACHE_CTX_MAGIC);
    HG_CHECK(!c->waiting && c->req == req);
    c->f.flight = fl;
    c->leading = 1;
    c->xcache = X_MISS;
    req->cache_outcome = "miss";
    fill_request_headers(&req->headers);
    fill_capture(&c->f, req);
    cache_add_tap(req, c);
}

/* A background refresh: the arg of its upstream callbacks. */
#define BGFETCH_MAGIC 0x7b2e94d3u
typedef struct bgfetch {
    unsigned magic; /* BGFETCH_MAGIC until bg_free */
    fill f;
    struct budget_ticket *ticket; /* budget_stage_background; NULL: not budgeted */
    int status;
    char *retry_after;
} bgfetch;

static int bg_head(void *arg, int status, const struct evkeyvalq *headers)
{
    bgfetch *b;
    HG_CAST_OBJ_NOTNULL(b, arg, BGFETCH_MAGIC);
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
    cache_fill_free(&b->f);
    HG_OBJ_FINI(b);
    free(b);
}

static int bg_data(void *arg, struct evbuffer *chunk)
{
    bgfetch *b;
    HG_CAST_OBJ_NOTNULL(b, arg, BGFETCH_MAGIC);
    fill_data(&b->f, chunk);
    evbuffer_drain(chunk, evbuffer_get_length(chunk));
    return 0;
}

static void bg_done(void *arg, const struct upstream_result *res)
{
    bgfetch *b;
    HG_CAST_OBJ_NOTNULL(b, arg, BGFETCH_MAGIC);
    cache_fill_finish(&b->f, res && res->outcome == UPSTREAM_OK, res);
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
    bgfetch *b;
    HG_CAST_OBJ_NOTNULL(b, arg, BGFETCH_MAGIC);
    budget_charge(b->ticket); /* a GET 502/503 sent again counts against the budget too */
}

static const struct upstream_callbacks bg_cb = {bg_head, bg_data, bg_done, NULL, bg_retry};

void cache_bg_refresh(struct hg_req *req, const fill *proto)
{
    HG_CHECK_OBJ_NOTNULL(proto, CACHE_FILL_MAGIC);
    if (coalesce_busy(&proto->ckey))
        return;
    struct upstream *up = pipeline_req_upstream(req);
    if (!up || !req->cred || !req->cred->token.data)
        return;
    /* optional work: only when the credential's budget has room right now */
    struct budget_ticket *ticket;
    if (!budget_stage_background(req, &ticket)) {
        INC(cache_ctr.revalidations_deferred);
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
    HG_OBJ_INIT(b, BGFETCH_MAGIC);
    b->ticket = ticket;
    cache_fill_init(&b->f);
    b->f.key = proto->key;
    b->f.ckey = proto->ckey;
    b->f.cls = proto->cls;
    b->f.pol = proto->pol;
    memcpy(b->f.ws, proto->ws, sizeof b->f.ws);
    b->f.flight = fl;
    for (size_t i = 0; i < proto->tags.n; i++)
        cache_tagset_add(&b->f.tags, proto->tags.v[i]);
    b->f.tags.overflow = proto->tags.overflow;
    memcpy(b->f.tags.gens, proto->tags.gens, sizeof proto->tags.gens);
    b->f.tags.ngens = proto->tags.ngens;

    /* the same request as the entry's, built as the foreground path builds it (the upstream
     * stage's upstream_req_from_client) from the headers a fill sends (cache_become_leader):
     * req was answered with the stale entry already, its headers are not read again */
    fill_request_headers(&req->headers);
    struct upstream_req *u = upstream_req_from_client(up, req);
    if (!u) {
        cache_fill_finish(&b->f, 0, NULL);
        bg_free(b);
        return;
    }
    fill_capture(&b->f, req);
    if (req->body_kind == HG_BODY_MEMORY && req->body) {
        struct evbuffer *copy = evbuffer_new();
        size_t n = evbuffer_get_length(req->body);
        evbuffer_add(copy, evbuffer_pullup(req->body, (ev_ssize_t)n), n);
        upstream_req_set_body_memory(u, copy);
        evbuffer_free(copy);
    }
    INC(cache_ctr.revalidations);
    if (upstream_send(u, &bg_cb, b) != 0) {
        cache_fill_finish(&b->f, 0, NULL);
        bg_free(b);
    }
}
