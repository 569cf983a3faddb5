/*
 * cache_fleet: the cache stage's side of the fleet tier (fleet_l2.h, fleet_inval.h).
 *
 * - The local coalescing leader of a missed key asks L2 before the upstream
 *   (cache_fleet_lead): an L2 hit fills L1 (re-encoded with this instance's generations),
 *   answers the client (X-Cache: HIT, access log "l2_hit") and completes the local flight, so
 *   this instance's waiters keep today's in-process coalescing; a lease makes this request the
 *   fleet's fetcher (its fill is then stored in L2 too, cache_fleet_fill_over); waiting for
 *   another instance's lease costs no upstream call; any Redis trouble falls back to the
 *   single-instance path at once (at most op_timeout later).
 * - Invalidations are published after the local ones (cache_fleet_publish) and the other
 *   instances' are applied here (apply hooks, on the tailer thread).
 * The L1 hit path never gets here.
 */
#include "cache_int.h"

#include "check.h"
#include "fleet_inval.h"
#include "fleet_l2.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define IMMUTABLE_L2_MS (24ull * 3600 * 1000) /* an immutable entry's lifetime in L2 */

static int s_on;

/* ---- remote invalidations (tailer thread) ---- */

static void apply_tag(const char *scoped)
{
    cache_invalidate_scoped(scoped);
}

static void apply_all(void)
{
    cache_gen_bump(GEN_ALL);
    coalesce_forget_all();
}

int cache_fleet_init(const struct hg_config *cfg)
{
    (void)cfg;
    s_on = rds_enabled() && cache_g.enabled;
    if (!s_on)
        return 0;
    fleet_l2_init();
    metrics_register(fleet_l2_metrics, NULL);
    metrics_register(fleet_inval_metrics, NULL);
    struct fleet_inval_hooks h = {apply_tag, apply_all};
    return fleet_inval_start(&h);
}

void cache_fleet_shutdown(void)
{
    if (s_on)
        fleet_inval_stop();
    s_on = 0;
}

void cache_fleet_attach(struct hg_req *req)
{
    if (s_on)
        (void)rds_worker(pipeline_req_base(req));
}

void cache_fleet_publish(const char *const *scoped, size_t n, int all)
{
    if (s_on)
        (void)fleet_inval_publish(rds_worker_current(), scoped, n, all, NULL, NULL);
}

/* Redis answered a mutation's invalidation (ok), or failed / missed op_timeout (it is queued):
 * the answer may go once every one of the mutation's publishes is over. */
static void gate_acked(void *arg, int ok)
{
    cctx *c = arg;
    HG_CHECK_OBJ_NOTNULL(c, CACHE_CTX_MAGIC);
    struct hg_req *req = c->req;
    if (!ok)
        req->cache_outcome = "inval_unacked"; /* the access log says so */
    if (--c->gate_pending == 0 && c->gate_release) {
        void (*fn)(struct hg_req *) = c->gate_release;
        c->gate_release = NULL;
        fn(req);
    }
    pipeline_req_release(req); /* the publish's hold */
}

void cache_fleet_publish_gated(cctx *c, const char *const *scoped, size_t n, int all)
{
    if (!s_on)
        return; /* L1 only: nothing to wait for */
    struct hg_req *req = c->req;
    pipeline_req_hold(req); /* the request outlives the reply */
    if (fleet_inval_publish(rds_worker_current(), scoped, n, all, gate_acked, c)) {
        c->gate_pending++;
        return;
    }
    req->cache_outcome = "inval_unacked"; /* refused at once (circuit open): queued */
    pipeline_req_release(req);
}

int cache_hold_gate(struct hg_req *req, void (*release)(struct hg_req *req))
{
    cctx *c = req->cache_ctx;
    if (!c)
        return 0;
    HG_CHECK_OBJ(c, CACHE_CTX_MAGIC);
    if (!c->gate_pending)
        return 0;
    c->gate_release = release;
    return 1;
}

/* ---- L2 lookups ---- */

/* The L1 encoding of an L2 entry, with this instance's generations (f's snapshot). */
static unsigned char *reencode(const unsigned char *blob, size_t len, const fill *f,
                               size_t *out_len)
{
    entry_view v;
    if (entry_decode(blob, len, &v) != ENTRY_OK)
        return NULL;
    entry_header hv[64];
    size_t nh = 0, pos = 0;
    entry_header h;
    while (nh < 64 && entry_header_next(&v, &pos, &h))
        hv[nh++] = h;
    if (nh != v.n_headers)
        return NULL;
    entry_in in;
    memset(&in, 0, sizeof in);
    in.status = v.status;
    in.flags = v.flags;
    in.stored_ms = v.stored_ms;
    in.fresh_ms = v.fresh_ms;
    in.swr_ms = v.swr_ms;
    in.sie_ms = v.sie_ms;
    in.etag = v.etag;
    in.etag_len = v.etag_len;
    in.headers = hv;
    in.n_headers = nh;
    in.tags = (const char *const *)f->tags.v;
    in.n_tags = f->tags.n;
    in.gens = f->tags.gens;
    in.n_gens = f->tags.ngens;
    in.body = v.body;
    in.body_len = v.body_len;
    unsigned char *out;
    if (entry_encode(&in, &out, out_len) != ENTRY_OK)
        return NULL;
    return out;
}

/* Go on as the single-instance path would: fetch for the local flight. */
static void lead_locally(struct hg_req *req, cctx *c, coalesce_flight *fl)
{
    if (req->client_gone) {
        if (fl)
            coalesce_abandon(fl); /* a local waiter takes over */
        pipeline_req_release(req);
        return;
    }
    cache_become_leader(req, c, fl);
    pipeline_resume(req);
}

static int serve_l2_hit(struct hg_req *req, cctx *c, coalesce_flight *fl, const unsigned char *blob,
                        size_t len)
{
    fill *f = &c->f;
    size_t l1len;
    unsigned char *l1 = reencode(blob, len, f, &l1len);
    if (!l1)
        return 0;
    entry_view v;
    if (entry_decode(l1, l1len, &v) != ENTRY_OK) {
        free(l1);
        return 0;
    }
    if (cache_g.st && cache_tagset_current(&f->tags)) {
        uint32_t exp = entry_hard_expiry_s(v.stored_ms, v.fresh_ms, v.swr_ms, v.sie_ms);
        if (store_put(cache_g.st, f->key.k, l1, l1len, exp, (const char *const *)f->tags.v,
                      f->tags.n) == 0)
            INC(cache_ctr.stores);
    }
    coalesce_result *cr = coalesce_result_new(COALESCE_KIND_ENTRY, NULL, 0);
    cr->blob = l1; /* moved */
    cr->len = l1len;
    if (!req->client_gone) {
        req->cache_outcome = "l2_hit";
        cache_serve_entry(req, &v, "HIT", util_wall_ms(), &f->key);
    }
    if (fl)
        coalesce_complete(fl, cr, LINGER_STORED_MS);
    else
        coalesce_result_unref(cr);
    pipeline_req_release(req);
    return 1;
}

static void on_fleet(void *arg, enum fleet_outcome o, const unsigned char *blob, size_t len,
                     const fleet_lease *lease)
{
    cctx *c = arg;
    HG_CHECK_OBJ_NOTNULL(c, CACHE_CTX_MAGIC);
    struct hg_req *req = c->req;
    coalesce_flight *fl = c->fleet_flight;
    c->fleet_wait = NULL;
    c->fleet_flight = NULL;
    if (o == FLEET_HIT && serve_l2_hit(req, c, fl, blob, len))
        return;
    if (o == FLEET_LEAD) {
        if (req->client_gone) {
            fleet_release(c->f.key.k, lease);
        } else {
            c->f.l2 = *lease;
            c->f.l2.gens.valid = 1;
            c->f.l2_lead = 1;
        }
    }
    INC(cache_ctr.miss);
    lead_locally(req, c, fl);
}

int cache_fleet_lead(struct hg_req *req, cctx *c, coalesce_flight *fl)
{
    fill *f = &c->f;
    if (!s_on || !fl || f->no_store || f->tags.overflow)
        return 0;
    uint64_t lease_ms = req->cfg->upstream.timeout_ms + 1000;
    fleet_get *g = fleet_get_start(pipeline_req_base(req), f->key.k, (const char *const *)f->tags.v,
                                   f->tags.n, lease_ms, on_fleet, c);
    if (!g)
        return 0;
    c->fleet_wait = g;
    c->fleet_flight = fl;
    return 1;
}

int cache_fleet_client_gone(struct hg_req *req, cctx *c)
{
    if (!c->fleet_wait)
        return 0;
    fleet_get_cancel(c->fleet_wait);
    c->fleet_wait = NULL;
    if (c->fleet_flight)
        coalesce_abandon(c->fleet_flight);
    c->fleet_flight = NULL;
    pipeline_req_release(req);
    return 1;
}

void cache_fleet_fill_over(fill *f, const unsigned char *blob, size_t len, int stored)
{
    if (!f->l2_lead)
        return;
    f->l2_lead = 0;
    entry_view v;
    if (!blob || !stored || f->has_vkey || entry_decode(blob, len, &v) != ENTRY_OK ||
        (v.flags & (ENTRY_F_POLL | ENTRY_F_VARY))) {
        fleet_release(f->key.k, &f->l2);
        return;
    }
    uint64_t now = util_wall_ms(), px;
    if (v.fresh_ms == ENTRY_FRESH_FOREVER)
        px = IMMUTABLE_L2_MS;
    else if (v.stored_ms + v.fresh_ms > now)
        px = v.stored_ms + v.fresh_ms - now;
    else
        px = 0;
    if (!px) {
        fleet_release(f->key.k, &f->l2);
        return;
    }
    fleet_put(f->key.k, blob, len, px, &f->l2);
}
