/*
 * coalesce: see coalesce.h. 64 shards x 256 buckets of chained flights; the shard is picked
 * from the first key byte, the bucket from the next two (keys are SHA-256 output).
 * Expired lingering results are dropped lazily whenever a bucket is walked, plus one
 * extra bucket per join (an amortised sweep); at most COALESCE_MAX_LINGER results and
 * COALESCE_MAX_LINGER_BYTES of them are kept (memory stays bounded whatever the load).
 */
#include "coalesce.h"

#include "check.h"
#include "util.h"

#include <assert.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS 64
#define BUCKETS 256
#define COALESCE_MAX_LINGER 20000
#define COALESCE_MAX_LINGER_ENTRY (4u << 20)     /* larger results are not kept lingering */
#define COALESCE_MAX_LINGER_BYTES (128ull << 20) /* nor beyond this much in total */

typedef struct waiter {
    struct waiter *next;
    struct event_base *base;
    coalesce_deliver_fn fn;
    void *arg;
} waiter;

enum { F_INFLIGHT = 0, F_DONE };

/* A flight: the leader's handle (coalesce_flight *) and the promoted waiter's. */
#define COALESCE_FLIGHT_MAGIC 0x6e93b017u
struct coalesce_flight {
    unsigned magic; /* COALESCE_FLIGHT_MAGIC until flight_free */
    struct coalesce_flight *next;
    cachekey key;
    int state;
    unsigned shard;
    waiter *whead, *wtail;
    coalesce_result *res; /* F_DONE */
    uint64_t linger_until;
};

typedef struct shard {
    pthread_mutex_t lock;
    struct coalesce_flight *b[BUCKETS];
    unsigned sweep;
} shard;

static shard g_shards[SHARDS] = {[0 ... SHARDS - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER}};
static atomic_uint_fast64_t st_flights, st_waiters, st_lingering, st_promoted, st_inflight,
    st_linger_count, st_linger_bytes;

static unsigned shard_of(const cachekey *k)
{
    return k->k[0] % SHARDS;
}

static unsigned bucket_of(const cachekey *k)
{
    return (unsigned)(k->k[1] ^ k->k[2] << 1 ^ k->k[3] << 3) % BUCKETS;
}

coalesce_result *coalesce_result_new(enum coalesce_kind kind, const void *blob, size_t len)
{
    coalesce_result *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    HG_OBJ_INIT(r, COALESCE_RESULT_MAGIC);
    r->refs = 1;
    r->kind = kind;
    if (blob && len) {
        r->blob = malloc(len);
        if (!r->blob)
            abort();
        memcpy(r->blob, blob, len);
        r->len = len;
    }
    return r;
}

coalesce_result *coalesce_result_ref(coalesce_result *r)
{
    HG_CHECK_OBJ_NOTNULL(r, COALESCE_RESULT_MAGIC);
    HG_CHECK(__atomic_load_n(&r->refs, __ATOMIC_RELAXED) > 0);
    __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
    return r;
}

void coalesce_result_unref(coalesce_result *r)
{
    if (!r)
        return;
    HG_CHECK_OBJ(r, COALESCE_RESULT_MAGIC);
    int left = __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL);
    HG_CHECK(left >= 0);
    if (left == 0) {
        HG_OBJ_FINI(r);
        free(r->blob);
        free(r);
    }
}

static void flight_free(struct coalesce_flight *f)
{
    HG_CHECK_OBJ_NOTNULL(f, COALESCE_FLIGHT_MAGIC);
    assert(!f->whead);
    if (f->state == F_DONE) {
        atomic_fetch_sub(&st_linger_count, 1);
        atomic_fetch_sub(&st_linger_bytes, f->res ? f->res->len : 0);
    } else
        atomic_fetch_sub(&st_inflight, 1); /* freed without having completed */
    coalesce_result_unref(f->res);
    HG_OBJ_FINI(f);
    free(f);
}

/* unlink expired lingering flights of one bucket (shard locked); returns them chained */
static struct coalesce_flight *sweep_bucket(shard *s, unsigned b, uint64_t now)
{
    struct coalesce_flight **pp = &s->b[b], *dead = NULL;
    while (*pp) {
        struct coalesce_flight *f = *pp;
        if (f->state == F_DONE && f->linger_until <= now) {
            *pp = f->next;
            f->next = dead;
            dead = f;
        } else {
            pp = &f->next;
        }
    }
    return dead;
}

static void free_chain(struct coalesce_flight *f)
{
    while (f) {
        struct coalesce_flight *n = f->next;
        flight_free(f);
        f = n;
    }
}

enum coalesce_join coalesce_join(const cachekey *key, struct event_base *base,
                                 coalesce_deliver_fn fn, void *arg, coalesce_flight **flight,
                                 coalesce_result **done)
{
    unsigned si = shard_of(key), bi = bucket_of(key);
    shard *s = &g_shards[si];
    uint64_t now = util_mono_ms();
    *flight = NULL;
    *done = NULL;
    waiter *w = calloc(1, sizeof *w);
    if (!w)
        abort();
    w->base = base;
    w->fn = fn;
    w->arg = arg;
    pthread_mutex_lock(&s->lock);
    struct coalesce_flight *dead = sweep_bucket(s, bi, now);
    unsigned extra = s->sweep++ % BUCKETS;
    if (extra != bi) {
        struct coalesce_flight *d2 = sweep_bucket(s, extra, now);
        while (d2) {
            struct coalesce_flight *n = d2->next;
            d2->next = dead;
            dead = d2;
            d2 = n;
        }
    }
    struct coalesce_flight *f = s->b[bi];
    while (f && memcmp(f->key.k, key->k, CACHEKEY_LEN) != 0)
        f = f->next;
    enum coalesce_join out;
    if (f && f->state == F_DONE) {
        *done = coalesce_result_ref(f->res);
        out = COALESCE_DONE;
        atomic_fetch_add(&st_lingering, 1);
    } else if (f) {
        if (f->wtail)
            f->wtail->next = w;
        else
            f->whead = w;
        f->wtail = w;
        w = NULL;
        out = COALESCE_WAITER;
        atomic_fetch_add(&st_waiters, 1);
    } else {
        f = calloc(1, sizeof *f);
        if (!f)
            abort();
        HG_OBJ_INIT(f, COALESCE_FLIGHT_MAGIC);
        f->key = *key;
        f->shard = si;
        f->state = F_INFLIGHT;
        f->next = s->b[bi];
        s->b[bi] = f;
        *flight = f;
        out = COALESCE_LEADER;
        atomic_fetch_add(&st_flights, 1);
        atomic_fetch_add(&st_inflight, 1);
    }
    pthread_mutex_unlock(&s->lock);
    free(w);
    free_chain(dead);
    return out;
}

int coalesce_busy(const cachekey *key)
{
    shard *s = &g_shards[shard_of(key)];
    uint64_t now = util_mono_ms();
    pthread_mutex_lock(&s->lock);
    struct coalesce_flight *f = s->b[bucket_of(key)];
    while (f && memcmp(f->key.k, key->k, CACHEKEY_LEN) != 0)
        f = f->next;
    int busy = f && (f->state == F_INFLIGHT || f->linger_until > now);
    pthread_mutex_unlock(&s->lock);
    return busy;
}

int coalesce_leave(const cachekey *key, void *arg)
{
    shard *s = &g_shards[shard_of(key)];
    int removed = 0;
    pthread_mutex_lock(&s->lock);
    struct coalesce_flight *f = s->b[bucket_of(key)];
    while (f && memcmp(f->key.k, key->k, CACHEKEY_LEN) != 0)
        f = f->next;
    if (f) {
        waiter **pp = &f->whead, *prev = NULL;
        while (*pp) {
            if ((*pp)->arg == arg) {
                waiter *w = *pp;
                *pp = w->next;
                if (f->wtail == w)
                    f->wtail = prev;
                free(w);
                removed = 1;
                break;
            }
            prev = *pp;
            pp = &(*pp)->next;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return removed;
}

#define COALESCE_DELIVERY_MAGIC 0x41c8e25au
typedef struct delivery {
    unsigned magic; /* the arg of deliver_cb (event_base_once) */
    coalesce_deliver_fn fn;
    void *arg;
    coalesce_result *res;
    coalesce_flight *flight;
} delivery;

static void deliver_cb(evutil_socket_t fd, short what, void *p)
{
    (void)fd;
    (void)what;
    delivery *d;
    HG_CAST_OBJ_NOTNULL(d, p, COALESCE_DELIVERY_MAGIC);
    HG_CHECK_OBJ_NOTNULL(d->res, COALESCE_RESULT_MAGIC);
    HG_CHECK_OBJ(d->flight, COALESCE_FLIGHT_MAGIC);
    d->fn(d->arg, d->res, d->flight);
    HG_OBJ_FINI(d);
    free(d);
}

static void deliver(waiter *w, coalesce_result *res, coalesce_flight *flight)
{
    delivery *d = calloc(1, sizeof *d);
    if (!d)
        abort();
    HG_OBJ_INIT(d, COALESCE_DELIVERY_MAGIC);
    d->fn = w->fn;
    d->arg = w->arg;
    d->res = res;
    d->flight = flight;
    static const struct timeval zero = {0, 0};
    if (!w->base || event_base_once(w->base, -1, EV_TIMEOUT, deliver_cb, d, &zero) != 0)
        deliver_cb(-1, 0, d); /* no base (tests) or libevent refused: deliver here */
    free(w);
}

static void unlink_flight(shard *s, struct coalesce_flight *f)
{
    struct coalesce_flight **pp = &s->b[bucket_of(&f->key)];
    while (*pp && *pp != f)
        pp = &(*pp)->next;
    assert(*pp == f);
    *pp = f->next;
}

void coalesce_complete(coalesce_flight *f, coalesce_result *res, uint64_t linger_ms)
{
    HG_CHECK_OBJ_NOTNULL(f, COALESCE_FLIGHT_MAGIC);
    assert(f && res && f->state == F_INFLIGHT);
    shard *s = &g_shards[f->shard];
    pthread_mutex_lock(&s->lock);
    waiter *list = f->whead;
    f->whead = f->wtail = NULL;
    int keep = linger_ms > 0 && atomic_load(&st_linger_count) < COALESCE_MAX_LINGER &&
               res->len <= COALESCE_MAX_LINGER_ENTRY &&
               atomic_load(&st_linger_bytes) + res->len <= COALESCE_MAX_LINGER_BYTES;
    /* references for the waiters, taken under the lock before the flight can go away */
    for (waiter *w = list; w; w = w->next)
        coalesce_result_ref(res);
    if (keep) {
        f->state = F_DONE;
        atomic_fetch_sub(&st_inflight, 1); /* lingering from now on, no longer in flight */
        f->res = coalesce_result_ref(res);
        f->linger_until = util_mono_ms() + linger_ms;
        atomic_fetch_add(&st_linger_count, 1);
        atomic_fetch_add(&st_linger_bytes, res->len);
    } else {
        unlink_flight(s, f);
    }
    pthread_mutex_unlock(&s->lock);
    if (!keep)
        flight_free(f);
    while (list) {
        waiter *n = list->next;
        deliver(list, res, NULL);
        list = n;
    }
    coalesce_result_unref(res);
}

void coalesce_abandon(coalesce_flight *f)
{
    HG_CHECK_OBJ_NOTNULL(f, COALESCE_FLIGHT_MAGIC);
    assert(f && f->state == F_INFLIGHT);
    shard *s = &g_shards[f->shard];
    pthread_mutex_lock(&s->lock);
    waiter *w = f->whead;
    if (w) {
        f->whead = w->next;
        if (!f->whead)
            f->wtail = NULL;
        w->next = NULL;
    } else {
        unlink_flight(s, f);
    }
    pthread_mutex_unlock(&s->lock);
    if (w) {
        atomic_fetch_add(&st_promoted, 1);
        deliver(w, coalesce_result_new(COALESCE_KIND_LEAD, NULL, 0), f);
    } else {
        flight_free(f);
    }
}

void coalesce_release_all(coalesce_flight *f)
{
    HG_CHECK_OBJ_NOTNULL(f, COALESCE_FLIGHT_MAGIC);
    assert(f && f->state == F_INFLIGHT);
    shard *s = &g_shards[f->shard];
    pthread_mutex_lock(&s->lock);
    waiter *list = f->whead;
    f->whead = f->wtail = NULL;
    unlink_flight(s, f);
    pthread_mutex_unlock(&s->lock);
    flight_free(f);
    while (list) {
        waiter *n = list->next;
        atomic_fetch_add(&st_promoted, 1);
        deliver(list, coalesce_result_new(COALESCE_KIND_LEAD, NULL, 0), NULL);
        list = n;
    }
}

/* Drop the lingering results that expired by now (UINT64_MAX: all of them). */
static void sweep_all(uint64_t now)
{
    for (unsigned i = 0; i < SHARDS; i++) {
        shard *s = &g_shards[i];
        struct coalesce_flight *dead = NULL;
        pthread_mutex_lock(&s->lock);
        for (unsigned b = 0; b < BUCKETS; b++) {
            struct coalesce_flight *d = sweep_bucket(s, b, now);
            while (d) {
                struct coalesce_flight *n = d->next;
                d->next = dead;
                dead = d;
                d = n;
            }
        }
        pthread_mutex_unlock(&s->lock);
        free_chain(dead);
    }
}

void coalesce_forget_all(void)
{
    sweep_all(UINT64_MAX);
}

void coalesce_sweep_expired(void)
{
    sweep_all(util_mono_ms());
}

void coalesce_get_stats(coalesce_stats *out)
{
    out->flights = atomic_load(&st_flights);
    out->waiters = atomic_load(&st_waiters);
    out->lingering = atomic_load(&st_lingering);
    out->promoted = atomic_load(&st_promoted);
    out->inflight = atomic_load(&st_inflight);
    out->linger_results = atomic_load(&st_linger_count);
    out->linger_bytes = atomic_load(&st_linger_bytes);
}

void coalesce_shutdown(void)
{
    for (unsigned i = 0; i < SHARDS; i++) {
        shard *s = &g_shards[i];
        pthread_mutex_lock(&s->lock);
        for (unsigned b = 0; b < BUCKETS; b++) {
            struct coalesce_flight *f = s->b[b];
            s->b[b] = NULL;
            while (f) {
                struct coalesce_flight *n = f->next;
                while (f->whead) {
                    waiter *w = f->whead;
                    f->whead = w->next;
                    free(w);
                }
                flight_free(f);
                f = n;
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
}
