/*
 * fleet_l2: L2 lookups, leases, waits and stores (see fleet_l2.h).
 *
 * A fleet_get is one request's conversation with Redis: a "step" sends HMGET (generations)
 * and the lookup script together and decides when both replies are in; a wait parks it in the
 * worker's list until a fill notification for its key, the loss of the subscription, or a
 * timer (the lease's remaining time, at most WAIT_POLL_MS) runs the next step.
 */
#include "fleet_l2.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <openssl/rand.h>

#include "check.h"
#include "fleet_inval.h"
#include "redis.h"
#include "util.h"

#define L2_MAGIC "HGL2"
#define WAIT_POLL_MS 500 /* a waiter re-checks at least this often (a lost notification) */

/* KEYS[1] entry, KEYS[2] lease; ARGV[1] token, ARGV[2] lease ms, ARGV[3] "1": skip the entry */
static const char LOOKUP_LUA[] =
    "if ARGV[3] == '0' then\n"
    "  local v = redis.call('GET', KEYS[1])\n"
    "  if v then return {1, v} end\n"
    "end\n"
    "if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end\n"
    "return {3, redis.call('PTTL', KEYS[2])}\n";

/* KEYS[1] entry, KEYS[2] lease; ARGV[1] value, ARGV[2] px, ARGV[3] token, ARGV[4] channel,
 * ARGV[5] key hex, ARGV[6] "1": store */
static const char PUT_LUA[] =
    "if ARGV[6] == '1' then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end\n"
    "if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then\n"
    "  redis.call('DEL', KEYS[2])\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[4], ARGV[5])\n"
    "return 1\n";

static struct rds_script s_lookup, s_put;

static struct {
    atomic_uint_fast64_t hits, leads, waits, fails, stores, too_big, releases, takeovers,
        gen_mismatch, released;
    atomic_uint lease_seq;
} C;

#define FLEET_GET_MAGIC 0x4c19e2a7u
#define FLEET_W_MAGIC 0x91f07d36u

struct fleet_get {
    unsigned magic;             /* FLEET_GET_MAGIC: it comes back as callback and timer arg */
    LIST_ENTRY(fleet_get) link; /* in the worker's wait list while waiting */
    struct wstate *w;
    uint8_t key[32];
    char hex[65];
    char *tags[ENTRY_MAX_GENS];
    size_t ntags;
    uint64_t lease_ms;
    uint64_t started_ms;
    fleet_get_fn fn;
    void *arg;
    struct event *timer;
    int waiting;   /* in the list */
    int inflight;  /* replies still to come */
    int cancelled; /* no callback any more; freed when inflight is 0 */
    int force;     /* next step skips the entry (it was unusable) */
    int waited;    /* has waited for another instance's lease */
    fleet_lease lease;
    /* the current step's replies */
    int got_gens, gens_ok;
    redisReply *script; /* copied reply parts */
    int script_kind;
    long long pttl;
    unsigned char *val;
    size_t val_len;
};

/* Per worker thread. */
struct wstate {
    unsigned magic; /* FLEET_W_MAGIC: the subscriber's callback arg */
    struct event_base *base;
    struct rds *sub;
    LIST_HEAD(, fleet_get) waits;
    struct event *fail_ev; /* the worker's Redis failed: release every waiter (release_cb) */
    char channel[128];
};
static __thread struct wstate *tl_w;

static void step(fleet_get *g);
static void put_done(void *arg, const redisReply *rep);

/* ---- helpers ---- */

static void key_names(const fleet_get *g, char *ek, size_t ecap, char *lk, size_t lcap)
{
    char tag[72];
    snprintf(tag, sizeof tag, "{%s}", g->hex);
    rds_key(ek, ecap, tag, "e");
    rds_key(lk, lcap, tag, "l");
}

static void hex32(const uint8_t k[32], char out[65])
{
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = d[k[i] >> 4];
        out[2 * i + 1] = d[k[i] & 15];
    }
    out[64] = '\0';
}

static void g_free(fleet_get *g)
{
    HG_OBJ_FINI(g);
    if (g->timer)
        event_free(g->timer);
    for (size_t i = 0; i < g->ntags; i++)
        free(g->tags[i]);
    free(g->val);
    free(g);
}

static void unpark(fleet_get *g)
{
    if (g->waiting) {
        LIST_REMOVE(g, link);
        g->waiting = 0;
    }
    if (g->timer)
        event_del(g->timer);
}

static void finish(fleet_get *g, enum fleet_outcome o, const unsigned char *blob, size_t len)
{
    unpark(g);
    switch (o) {
    case FLEET_HIT:
        atomic_fetch_add(&C.hits, 1);
        break;
    case FLEET_LEAD:
        atomic_fetch_add(&C.leads, 1);
        if (g->waited)
            atomic_fetch_add(&C.takeovers, 1);
        break;
    default:
        atomic_fetch_add(&C.fails, 1);
    }
    fleet_get_fn fn = g->fn;
    void *arg = g->arg;
    g->cancelled = 1; /* done: no second callback */
    fn(arg, o, blob, len, &g->lease);
    if (!g->inflight)
        g_free(g);
}

/* ---- the per-worker subscriber ---- */

static void on_fill_msg(void *arg, const char *channel, const char *payload, size_t len)
{
    struct wstate *w = arg;
    HG_CHECK_OBJ_NOTNULL(w, FLEET_W_MAGIC);
    fleet_get *g, *next;
    for (g = LIST_FIRST(&w->waits); g; g = next) {
        next = LIST_NEXT(g, link);
        /* channel NULL: the subscription was lost; everyone looks again now */
        if (!channel || (len == 64 && memcmp(payload, g->hex, 64) == 0)) {
            struct timeval zero = {0, 0};
            event_add(g->timer, &zero);
        }
    }
}

/* The worker's connection failed a command or dropped: a waiter parked on another instance's
 * lease would only find Redis failing again at its next look (up to WAIT_POLL_MS later, plus
 * op_timeout): every waiter of this worker goes to fetch itself now (its local flight still
 * coalesces this instance's requests). */
static void release_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct wstate *w = arg;
    HG_CHECK_OBJ_NOTNULL(w, FLEET_W_MAGIC);
    fleet_get *g;
    while ((g = LIST_FIRST(&w->waits)) != NULL) {
        atomic_fetch_add(&C.released, 1);
        finish(g, FLEET_FAIL, NULL, 0); /* unparks g */
    }
}

static void on_worker_fail(void *arg)
{
    struct wstate *w = arg;
    HG_CHECK_OBJ_NOTNULL(w, FLEET_W_MAGIC);
    if (LIST_FIRST(&w->waits))
        event_active(w->fail_ev, EV_TIMEOUT, 0);
}

static void sub_ready(void *arg)
{
    struct wstate *w = arg;
    HG_CHECK_OBJ_NOTNULL(w, FLEET_W_MAGIC);
    rds_subscribe(w->sub, w->channel, on_fill_msg, w);
}

static void wstate_exit(void)
{
    struct wstate *w = tl_w;
    if (!w)
        return;
    fleet_get *g;
    while ((g = LIST_FIRST(&w->waits)) != NULL) {
        unpark(g);
        finish(g, FLEET_FAIL, NULL, 0);
    }
    rds_on_failure(rds_worker_current(), NULL, NULL);
    event_free(w->fail_ev);
    rds_free(w->sub);
    HG_OBJ_FINI(w);
    free(w);
    tl_w = NULL;
}

static struct wstate *wstate(struct event_base *base)
{
    if (tl_w)
        return tl_w;
    struct wstate *w = calloc(1, sizeof *w);
    if (!w)
        abort();
    HG_OBJ_INIT(w, FLEET_W_MAGIC);
    w->base = base;
    LIST_INIT(&w->waits);
    rds_key(w->channel, sizeof w->channel, "{fleet}", "fill");
    w->sub = rds_new(base, "fleet-sub", sub_ready, w);
    w->fail_ev = event_new(base, -1, 0, release_cb, w);
    if (!w->fail_ev)
        abort();
    rds_on_failure(rds_worker(base), on_worker_fail, w);
    tl_w = w;
    return w;
}

/* ---- a step ---- */

static void wait_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fleet_get *g = arg;
    HG_CHECK_OBJ_NOTNULL(g, FLEET_GET_MAGIC);
    unpark(g);
    step(g);
}

static void park(fleet_get *g, long long pttl)
{
    atomic_fetch_add(&C.waits, 1);
    g->waited = 1;
    if (!g->waiting) {
        LIST_INSERT_HEAD(&g->w->waits, g, link);
        g->waiting = 1;
    }
    long long ms = pttl < 0 ? 1 : pttl + 2;
    if (ms > WAIT_POLL_MS)
        ms = WAIT_POLL_MS;
    if (!rds_usable(g->w->sub) && ms > 50)
        ms = 50; /* no notifications now: poll */
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(g->timer, &tv);
}

/* Is the L2 value usable for us: our epoch and generations, an intact fresh entry? Sets
 * *blob to the entry encoding inside val. */
static int value_usable(const fleet_get *g, const unsigned char *val, size_t len,
                        const unsigned char **blob, size_t *blen)
{
    if (len < 6 || memcmp(val, L2_MAGIC, 4) != 0)
        return 0;
    size_t off = 4;
    size_t el = val[off++];
    if (off + el + 1 > len || el >= sizeof g->lease.gens.epoch)
        return 0;
    if (strlen(g->lease.gens.epoch) != el || memcmp(val + off, g->lease.gens.epoch, el) != 0)
        return 0;
    off += el;
    size_t n = val[off++];
    if (n != g->lease.gens.n || off + n * 12 > len)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t slot;
        uint64_t gen;
        memcpy(&slot, val + off, 4);
        memcpy(&gen, val + off + 4, 8);
        off += 12;
        if (slot != g->lease.gens.slot[i] || gen != g->lease.gens.gen[i])
            return 0;
    }
    entry_view v;
    if (entry_decode(val + off, len - off, &v) != ENTRY_OK)
        return 0;
    if (!entry_is_fresh(&v, util_wall_ms()) || (v.flags & (ENTRY_F_VARY | ENTRY_F_POLL)))
        return 0;
    *blob = val + off;
    *blen = len - off;
    return 1;
}

static void decide(fleet_get *g)
{
    if (!g->gens_ok || g->script_kind == 0) {
        finish(g, FLEET_FAIL, NULL, 0);
        return;
    }
    if (g->script_kind == 1) {
        const unsigned char *blob;
        size_t blen;
        if (g->lease.gens.epoch[0] && value_usable(g, g->val, g->val_len, &blob, &blen)) {
            finish(g, FLEET_HIT, blob, blen);
            return;
        }
        atomic_fetch_add(&C.gen_mismatch, 1);
        g->force = 1; /* stale or of older generations: take the lease and fetch */
        step(g);
        return;
    }
    if (g->script_kind == 2) {
        if (!g->lease.gens.epoch[0]) {
            /* a new Redis (or one that lost the hash): start the generation epoch. Two
             * instances may race here; the loser's entry then never matches, harmlessly. */
            unsigned char rnd[8];
            RAND_bytes(rnd, sizeof rnd);
            for (int i = 0; i < 8; i++)
                snprintf(g->lease.gens.epoch + 2 * i, 3, "%02x", rnd[i]);
            char gk[128];
            fleet_gens_key(gk, sizeof gk);
            const char *argv[4] = {"HSETNX", gk, "epoch", g->lease.gens.epoch};
            rds_cmdv(rds_worker_current(), put_done, NULL, 4, argv, NULL);
        }
        finish(g, FLEET_LEAD, NULL, 0);
        return;
    }
    /* another instance holds the lease */
    if (util_mono_ms() - g->started_ms > 2 * g->lease_ms) {
        finish(g, FLEET_FAIL, NULL, 0); /* leases keep changing hands: go alone */
        return;
    }
    park(g, g->pttl);
}

static void on_gens(void *arg, const redisReply *rep)
{
    fleet_get *g = arg;
    HG_CHECK_OBJ_NOTNULL(g, FLEET_GET_MAGIC);
    g->inflight--;
    if (g->cancelled) {
        if (!g->inflight)
            g_free(g);
        return;
    }
    g->got_gens = 1;
    g->gens_ok = 0;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == g->lease.gens.n + 1) {
        g->gens_ok = 1;
        const redisReply *e = rep->element[0];
        if (e->type == REDIS_REPLY_STRING && (size_t)e->len < sizeof g->lease.gens.epoch)
            snprintf(g->lease.gens.epoch, sizeof g->lease.gens.epoch, "%s", e->str);
        else
            g->lease.gens.epoch[0] = '\0';
        for (size_t i = 0; i < g->lease.gens.n; i++) {
            e = rep->element[i + 1];
            g->lease.gens.gen[i] = e->type == REDIS_REPLY_STRING ? strtoull(e->str, NULL, 10) : 0;
        }
    }
}

static void on_lookup(void *arg, const redisReply *rep)
{
    fleet_get *g = arg;
    HG_CHECK_OBJ_NOTNULL(g, FLEET_GET_MAGIC);
    g->inflight--;
    if (g->cancelled) {
        /* a lease taken for a request that left meanwhile: give it back */
        if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
            rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[0]->integer == 2 &&
            g->lease.token[0] && g->fn)
            fleet_release(g->key, &g->lease);
        if (!g->inflight)
            g_free(g);
        return;
    }
    g->script_kind = 0;
    free(g->val);
    g->val = NULL;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER) {
        g->script_kind = (int)rep->element[0]->integer;
        if (g->script_kind == 1 && rep->elements == 2 &&
            rep->element[1]->type == REDIS_REPLY_STRING) {
            g->val_len = (size_t)rep->element[1]->len;
            g->val = malloc(g->val_len ? g->val_len : 1);
            if (!g->val)
                abort();
            memcpy(g->val, rep->element[1]->str, g->val_len);
        } else if (g->script_kind == 3 && rep->elements == 2 &&
                   rep->element[1]->type == REDIS_REPLY_INTEGER) {
            g->pttl = rep->element[1]->integer;
        } else if (g->script_kind != 2) {
            g->script_kind = 0;
        }
    }
    if (g->got_gens)
        decide(g);
    else
        finish(g, FLEET_FAIL, NULL, 0);
}

static void step(fleet_get *g)
{
    struct rds *r = rds_worker_current();
    if (!rds_usable(r)) {
        finish(g, FLEET_FAIL, NULL, 0);
        return;
    }
    char gk[128];
    fleet_gens_key(gk, sizeof gk);
    const char *argv[3 + ENTRY_MAX_GENS];
    char slots[ENTRY_MAX_GENS][12];
    int argc = 0;
    argv[argc++] = "HMGET";
    argv[argc++] = gk;
    argv[argc++] = "epoch";
    for (size_t i = 0; i < g->lease.gens.n; i++) {
        snprintf(slots[i], sizeof slots[i], "%u", g->lease.gens.slot[i]);
        argv[argc++] = slots[i];
    }
    g->got_gens = 0;
    g->gens_ok = 0;
    if (rds_cmdv(r, on_gens, g, argc, argv, NULL) != 0) {
        finish(g, FLEET_FAIL, NULL, 0);
        return;
    }
    g->inflight++;
    char ek[128], lk[128], lease_ms[24];
    key_names(g, ek, sizeof ek, lk, sizeof lk);
    snprintf(lease_ms, sizeof lease_ms, "%llu", (unsigned long long)g->lease_ms);
    const char *sargv[5] = {ek, lk, g->lease.token, lease_ms, g->force ? "1" : "0"};
    g->force = 0;
    if (rds_eval(r, &s_lookup, on_lookup, g, 2, 5, sargv, NULL) != 0) {
        /* the HMGET reply still comes; finish now and let it free us */
        finish(g, FLEET_FAIL, NULL, 0);
        return;
    }
    g->inflight++;
}

fleet_get *fleet_get_start(struct event_base *base, const uint8_t key[32], const char *const *tags,
                           size_t ntags, uint64_t lease_ms, fleet_get_fn fn, void *arg)
{
    struct rds *r = rds_worker(base);
    if (!rds_usable(r) || ntags + 1 > ENTRY_MAX_GENS)
        return NULL;
    struct wstate *w = wstate(base);
    fleet_get *g = calloc(1, sizeof *g);
    if (!g)
        abort();
    HG_OBJ_INIT(g, FLEET_GET_MAGIC);
    g->w = w;
    memcpy(g->key, key, 32);
    hex32(key, g->hex);
    g->lease_ms = lease_ms;
    g->started_ms = util_mono_ms();
    g->fn = fn;
    g->arg = arg;
    g->timer = evtimer_new(base, wait_cb, g);
    /* slot 0 ("everything") and the tags' slots, without repeats */
    g->lease.gens.slot[g->lease.gens.n++] = 0;
    for (size_t i = 0; i < ntags; i++) {
        uint32_t s = fleet_slot(tags[i]);
        int dup = 0;
        for (size_t j = 0; j < g->lease.gens.n; j++)
            dup |= g->lease.gens.slot[j] == s;
        if (!dup)
            g->lease.gens.slot[g->lease.gens.n++] = s;
    }
    snprintf(g->lease.token, sizeof g->lease.token, "%s:%u", fleet_instance_id(),
             atomic_fetch_add(&C.lease_seq, 1));
    step(g);
    return g;
}

void fleet_get_cancel(fleet_get *g)
{
    if (!g || g->cancelled)
        return;
    unpark(g);
    g->cancelled = 1;
    if (!g->inflight)
        g_free(g);
}

/* ---- store / release ---- */

static void put_done(void *arg, const redisReply *rep)
{
    (void)arg;
    (void)rep;
}

static void send_put(const uint8_t key[32], const unsigned char *val, size_t vlen, uint64_t px,
                     const char *token, int store)
{
    struct rds *r = rds_worker_current();
    if (!rds_usable(r))
        return; /* the lease expires by itself; waiters look again then */
    fleet_get tmp;
    hex32(key, tmp.hex);
    char ek[128], lk[128], pxs[24], ch[128];
    key_names(&tmp, ek, sizeof ek, lk, sizeof lk);
    snprintf(pxs, sizeof pxs, "%llu", (unsigned long long)(px ? px : 1));
    rds_key(ch, sizeof ch, "{fleet}", "fill");
    const char *argv[8] = {
        ek, lk, store ? (const char *)val : "", pxs, token, ch, tmp.hex, store ? "1" : "0"};
    size_t lens[8] = {
        strlen(ek), strlen(lk), store ? vlen : 0, strlen(pxs), strlen(token), strlen(ch), 64, 1};
    if (rds_eval(r, &s_put, put_done, NULL, 2, 8, argv, lens) == 0)
        rds_flush(r); /* the waiters' notification goes out now, not at the next loop turn */
}

void fleet_put(const uint8_t key[32], const unsigned char *blob, size_t len, uint64_t px,
               const fleet_lease *lease)
{
    const fleet_gens *gs = &lease->gens;
    size_t el = strlen(gs->epoch);
    size_t vlen = 4 + 1 + el + 1 + gs->n * 12 + len;
    if (!gs->valid || len > rds_max_entry_size()) {
        if (gs->valid)
            atomic_fetch_add(&C.too_big, 1);
        fleet_release(key, lease);
        return;
    }
    unsigned char *val = malloc(vlen);
    if (!val)
        abort();
    size_t off = 0;
    memcpy(val, L2_MAGIC, 4);
    off = 4;
    val[off++] = (unsigned char)el;
    memcpy(val + off, gs->epoch, el);
    off += el;
    val[off++] = (unsigned char)gs->n;
    for (size_t i = 0; i < gs->n; i++) {
        memcpy(val + off, &gs->slot[i], 4);
        memcpy(val + off + 4, &gs->gen[i], 8);
        off += 12;
    }
    memcpy(val + off, blob, len);
    atomic_fetch_add(&C.stores, 1);
    send_put(key, val, vlen, px, lease->token, 1);
    free(val);
}

void fleet_release(const uint8_t key[32], const fleet_lease *lease)
{
    atomic_fetch_add(&C.releases, 1);
    send_put(key, NULL, 0, 0, lease->token, 0);
}

void fleet_l2_init(void)
{
    rds_script_init(&s_lookup, LOOKUP_LUA);
    rds_script_init(&s_put, PUT_LUA);
    rds_at_worker_exit(wstate_exit);
}

void fleet_l2_metrics(struct evbuffer *out, void *arg)
{
    (void)arg;
    if (!rds_enabled())
        return;
    evbuffer_add_printf(
        out,
        "# HELP hotgate_fleet_l2_lookups_total L2 lookups of local coalescing leaders by outcome "
        "(hit: answered from L2; lead: this instance fetches for the fleet; fail: Redis could "
        "not help, fetched as a single instance).\n"
        "# TYPE hotgate_fleet_l2_lookups_total counter\n"
        "hotgate_fleet_l2_lookups_total{outcome=\"hit\"} %llu\n"
        "hotgate_fleet_l2_lookups_total{outcome=\"lead\"} %llu\n"
        "hotgate_fleet_l2_lookups_total{outcome=\"fail\"} %llu\n"
        "# HELP hotgate_fleet_lease_waits_total Waits for another instance's lease.\n"
        "# TYPE hotgate_fleet_lease_waits_total counter\nhotgate_fleet_lease_waits_total %llu\n"
        "# HELP hotgate_fleet_lease_takeovers_total Leases taken after waiting (the holder "
        "failed or its answer was not usable).\n"
        "# TYPE hotgate_fleet_lease_takeovers_total counter\n"
        "hotgate_fleet_lease_takeovers_total %llu\n"
        "# HELP hotgate_fleet_lease_waits_released_total Lease waiters sent to fetch themselves "
        "at once because their worker's Redis connection failed.\n"
        "# TYPE hotgate_fleet_lease_waits_released_total counter\n"
        "hotgate_fleet_lease_waits_released_total %llu\n"
        "# HELP hotgate_fleet_l2_stale_total L2 entries found but not usable (older "
        "generations, expired, damaged).\n"
        "# TYPE hotgate_fleet_l2_stale_total counter\nhotgate_fleet_l2_stale_total %llu\n"
        "# HELP hotgate_fleet_l2_stores_total Entries written to L2.\n"
        "# TYPE hotgate_fleet_l2_stores_total counter\nhotgate_fleet_l2_stores_total %llu\n"
        "# HELP hotgate_fleet_l2_too_big_total Entries over [redis] max_entry_size kept in L1 "
        "only.\n# TYPE hotgate_fleet_l2_too_big_total counter\n"
        "hotgate_fleet_l2_too_big_total %llu\n",
        (unsigned long long)atomic_load(&C.hits), (unsigned long long)atomic_load(&C.leads),
        (unsigned long long)atomic_load(&C.fails), (unsigned long long)atomic_load(&C.waits),
        (unsigned long long)atomic_load(&C.takeovers), (unsigned long long)atomic_load(&C.released),
        (unsigned long long)atomic_load(&C.gen_mismatch),
        (unsigned long long)atomic_load(&C.stores), (unsigned long long)atomic_load(&C.too_big));
}
