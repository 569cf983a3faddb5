/*
 * store_lmdb: see store_lmdb.h and store.h.
 *
 * Databases in the one environment:
 *   "e"  key(32)                  -> entry blob
 *   "m"  key(32)                  -> meta {u32 atime_s, u32 expires_s}
 *   "x"  expires_s(BE32) key(32)  -> ""      expiry order (entries that expire)
 *   "l"  atime_s(BE32) key(32)    -> ""      LRU order, atime updated lazily
 *   "t"  tag                      -> key(32) DUPSORT|DUPFIXED tag index
 *   "g"  slot(u32)                -> gen(u64) invalidation generations
 *
 * Durability (why MDB_NOMETASYNC by default): the writer thread commits batches, so one
 * fdatasync per batch is paid off the request path; the meta page is not synced, so a
 * power loss can undo the last committed batches but never breaks the B-trees (LMDB's
 * ACI guarantees hold). MDB_NOSYNC would risk integrity on power loss on filesystems that
 * reorder writes, which a cache may not trade for speed. A process crash loses nothing
 * committed (the data is in the page cache). STORE_SYNC_NONE is for tests/benchmarks.
 * gens_save() syncs data and meta page (it carries cache.c's clean/running marker).
 *
 * Eviction: after every batch (and every second) the writer deletes entries whose hard
 * expiry passed (the "x" index, oldest first); when pages in use exceed high_water of
 * the map it deletes least recently used entries ("l" index, oldest atime first) until
 * below low_water, in its own committed transaction so the freed pages are reusable by
 * the next one. Access times are written lazily: a hit enqueues a touch at most once per
 * touch_interval per key per thread. MDB_MAP_FULL never reaches a caller: the batch is
 * aborted, space is evicted, the batch retried once, then op by op, dropping puts that
 * still do not fit (counted as put_skipped).
 */
#include "store_lmdb.h"

#include "entry.h"
#include "util.h"

#include <assert.h>
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define KLEN STORE_KEY_LEN
#define TAG_MAXKEY 256
#define EVICT_CHECK_EVERY 8

enum { OP_PUT, OP_DEL, OP_DEL_TAG, OP_PURGE, OP_TOUCH, OP_FLUSH };

typedef struct wop {
    struct wop *next;
    int type;
    uint8_t key[KLEN];
    uint32_t expires_s;
    uint32_t atime_s;
    void *val; /* PUT: blob copy */
    size_t len;
    char **tags; /* PUT: tag copies; DEL_TAG: tags[0] */
    size_t n_tags;
    uint64_t flush_seq; /* FLUSH */
} wop;

#define PIN_MAX 16 /* pinned read views per thread; beyond, callers copy */

typedef struct lreader {
    struct lreader *next;
    MDB_txn *txn;
    int active;
    uint64_t gets, hits, misses;
    /* read views kept alive past release() for zero-copy bodies (store_api.pin) */
    MDB_txn *pinned[PIN_MAX];
    MDB_txn *spare[PIN_MAX]; /* reset txns ready to be renewed */
    int npinned, nspare;
} lreader;

typedef struct lpin {
    lreader *r;
    MDB_txn *txn;
} lpin;

typedef struct slmdb {
    store base;
    uint64_t id;
    char dir[512];
    char path[600];
    MDB_env *env;
    MDB_dbi e, m, x, l, t, g;
    store_opts o;
    size_t psize;
    /* readers */
    pthread_mutex_t rlock;
    lreader *readers;
    /* writer queue */
    pthread_mutex_t qlock;
    pthread_cond_t qcond, fcond;
    wop *qhead, *qtail;
    size_t qlen, qbytes;
    uint64_t flush_next, flush_done;
    int stopping;
    pthread_t writer;
    uint32_t last_sweep_s;
    /* stats written by the writer (and the sync paths) */
    atomic_uint_fast64_t puts, put_skipped, dels, tag_dels, evictions, expired, map_full, batches,
        bytes_used, readers_gets, readers_hits, readers_misses;
} slmdb;

static atomic_uint_fast64_t g_store_ids = 1;

/* per-thread readers: a few (store id, reader) slots so tests may use several stores */
#define TL_SLOTS 4
static __thread struct {
    uint64_t id;
    lreader *r;
} tl_readers[TL_SLOTS];
static __thread unsigned tl_next;

/* per-thread touch dedup: key prefix -> second last touched */
#define TOUCH_SLOTS 512
static __thread struct {
    uint64_t store_id;
    uint64_t k;
    uint32_t at;
} tl_touch[TOUCH_SLOTS];

static uint32_t now_s(void)
{
    return (uint32_t)(util_wall_ms() / 1000);
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t rbe32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* the index key of a tag: the tag itself, or "#" + sha256 hex when long */
static size_t tag_key(const char *tag, char out[TAG_MAXKEY + 1])
{
    size_t l = strlen(tag);
    if (l > 0 && l <= TAG_MAXKEY) {
        memcpy(out, tag, l + 1);
        return l;
    }
    out[0] = '#';
    util_sha256_hex(tag, l, out + 1);
    return 65;
}

/* ---- space accounting ---- */
static uint64_t used_pages(slmdb *s, MDB_txn *txn)
{
    MDB_dbi dbis[] = {0, 1, s->e, s->m, s->x, s->l, s->t, s->g};
    uint64_t pages = 2; /* meta pages */
    for (size_t i = 0; i < sizeof dbis / sizeof dbis[0]; i++) {
        MDB_stat st;
        if (mdb_stat(txn, dbis[i], &st) == 0)
            pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    }
    return pages;
}

static uint64_t used_bytes(slmdb *s, MDB_txn *txn)
{
    return used_pages(s, txn) * s->psize;
}

/* ---- entry removal with its index records ---- */
static int del_entry(slmdb *s, MDB_txn *txn, const uint8_t *key)
{
    MDB_val k = {KLEN, (void *)key}, v;
    int found = 0;
    if (mdb_get(txn, s->m, &k, &v) == 0 && v.mv_size == 8) {
        uint32_t at, ex;
        memcpy(&at, v.mv_data, 4);
        memcpy(&ex, (char *)v.mv_data + 4, 4);
        uint8_t ik[4 + KLEN];
        memcpy(ik + 4, key, KLEN);
        MDB_val iv = {sizeof ik, ik};
        be32(ik, at);
        mdb_del(txn, s->l, &iv, NULL);
        if (ex) {
            be32(ik, ex);
            mdb_del(txn, s->x, &iv, NULL);
        }
        mdb_del(txn, s->m, &k, NULL);
        found = 1;
    }
    if (mdb_get(txn, s->e, &k, &v) == 0) {
        entry_view ev;
        if (entry_decode_nocheck(v.mv_data, v.mv_size, &ev) == ENTRY_OK) {
            /* copy the tag keys first: deleting from "t" does not touch "e", but keep
             * the view independent of page changes anyway */
            size_t pos = 0;
            const char *tg;
            size_t tl;
            char **copies = NULL;
            size_t n = 0;
            if (ev.n_tags) {
                copies = calloc(ev.n_tags, sizeof *copies);
                if (!copies)
                    abort();
            }
            while (entry_tag_next(&ev, &pos, &tg, &tl) && n < ev.n_tags) {
                copies[n] = strndup(tg, tl);
                if (!copies[n])
                    abort();
                n++;
            }
            for (size_t i = 0; i < n; i++) {
                char tk[TAG_MAXKEY + 1];
                size_t tkl = tag_key(copies[i], tk);
                MDB_val tkv = {tkl, tk}, kv = {KLEN, (void *)key};
                mdb_del(txn, s->t, &tkv, &kv);
                free(copies[i]);
            }
            free(copies);
        }
        mdb_del(txn, s->e, &k, NULL);
        found = 1;
    }
    return found;
}

/* Expire then evict inside txn; returns MDB error or 0. target_bytes: stop below it. */
static int evict_in(slmdb *s, MDB_txn *txn, uint64_t target_bytes, unsigned max_ops)
{
    uint32_t now = now_s();
    MDB_cursor *c;
    int rc;
    unsigned ops = 0;
    uint8_t key[KLEN];
    /* 1. expired entries, oldest expiry first */
    for (;;) {
        if ((rc = mdb_cursor_open(txn, s->x, &c)) != 0)
            return rc;
        MDB_val k, v;
        rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
        int have = rc == 0 && k.mv_size == 4 + KLEN && rbe32(k.mv_data) <= now;
        uint32_t exp = 0;
        if (have) {
            exp = rbe32(k.mv_data);
            memcpy(key, (uint8_t *)k.mv_data + 4, KLEN);
        }
        mdb_cursor_close(c);
        if (!have || ops >= max_ops)
            break;
        if (del_entry(s, txn, key)) {
            atomic_fetch_add(&s->expired, 1);
        } else {
            /* dangling index record */
            uint8_t ik[4 + KLEN];
            be32(ik, exp);
            memcpy(ik + 4, key, KLEN);
            MDB_val iv = {sizeof ik, ik};
            mdb_del(txn, s->x, &iv, NULL);
        }
        ops++;
    }
    if (!target_bytes)
        return 0;
    /* 2. least recently used until below target */
    unsigned since_check = EVICT_CHECK_EVERY;
    for (;;) {
        if (++since_check >= EVICT_CHECK_EVERY) {
            since_check = 0;
            if (used_bytes(s, txn) <= target_bytes)
                break;
        }
        if (ops >= max_ops)
            break;
        if ((rc = mdb_cursor_open(txn, s->l, &c)) != 0)
            return rc;
        MDB_val k, v;
        rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
        int have = rc == 0 && k.mv_size == 4 + KLEN;
        uint8_t ik[4 + KLEN];
        if (have) {
            memcpy(ik, k.mv_data, sizeof ik);
            memcpy(key, ik + 4, KLEN);
        }
        mdb_cursor_close(c);
        if (!have) {
            /* no LRU records left: drop whatever entries remain, one at a time */
            if ((rc = mdb_cursor_open(txn, s->e, &c)) != 0)
                return rc;
            rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
            have = rc == 0 && k.mv_size == KLEN;
            if (have)
                memcpy(key, k.mv_data, KLEN);
            mdb_cursor_close(c);
            if (!have)
                break;
            del_entry(s, txn, key);
        } else if (!del_entry(s, txn, key)) {
            MDB_val iv = {sizeof ik, ik};
            mdb_del(txn, s->l, &iv, NULL);
        }
        atomic_fetch_add(&s->evictions, 1);
        ops++;
    }
    return 0;
}

static uint64_t high_bytes(slmdb *s)
{
    return (uint64_t)((double)s->o.map_size * s->o.high_water);
}

static uint64_t low_bytes(slmdb *s)
{
    return (uint64_t)((double)s->o.map_size * s->o.low_water);
}

/* One committed eviction transaction making room for `need` more bytes. */
static int evict_txn(slmdb *s, uint64_t need, int force)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc)
        return rc;
    uint64_t used = used_bytes(s, txn);
    uint64_t target = 0;
    if (force || used + need > high_bytes(s)) {
        uint64_t low = low_bytes(s);
        target = low > need ? low - need : 1;
    }
    uint64_t before = atomic_load(&s->evictions) + atomic_load(&s->expired);
    rc = evict_in(s, txn, target, 1u << 20);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    atomic_store(&s->bytes_used, used_bytes(s, txn));
    if (atomic_load(&s->evictions) + atomic_load(&s->expired) == before) {
        /* nothing removed: no commit (and no sync) for an idle sweep */
        mdb_txn_abort(txn);
        s->last_sweep_s = now_s();
        return 0;
    }
    rc = mdb_txn_commit(txn);
    if (rc == 0)
        s->last_sweep_s = now_s();
    return rc;
}

/* ---- applying queued operations ---- */
static int apply_put(slmdb *s, MDB_txn *txn, wop *op)
{
    int rc;
    del_entry(s, txn, op->key);
    MDB_val k = {KLEN, op->key}, v = {op->len, op->val};
    if ((rc = mdb_put(txn, s->e, &k, &v, 0)) != 0)
        return rc;
    uint32_t at = now_s();
    uint8_t meta[8];
    memcpy(meta, &at, 4);
    memcpy(meta + 4, &op->expires_s, 4);
    MDB_val mv = {8, meta};
    if ((rc = mdb_put(txn, s->m, &k, &mv, 0)) != 0)
        return rc;
    uint8_t ik[4 + KLEN];
    memcpy(ik + 4, op->key, KLEN);
    MDB_val iv = {sizeof ik, ik}, empty = {0, NULL};
    be32(ik, at);
    if ((rc = mdb_put(txn, s->l, &iv, &empty, 0)) != 0)
        return rc;
    if (op->expires_s) {
        be32(ik, op->expires_s);
        if ((rc = mdb_put(txn, s->x, &iv, &empty, 0)) != 0)
            return rc;
    }
    for (size_t i = 0; i < op->n_tags; i++) {
        char tk[TAG_MAXKEY + 1];
        size_t tkl = tag_key(op->tags[i], tk);
        MDB_val tkv = {tkl, tk}, kv = {KLEN, op->key};
        rc = mdb_put(txn, s->t, &tkv, &kv, MDB_NODUPDATA);
        if (rc && rc != MDB_KEYEXIST)
            return rc;
    }
    return 0;
}

static int apply_touch(slmdb *s, MDB_txn *txn, wop *op)
{
    MDB_val k = {KLEN, op->key}, v;
    if (mdb_get(txn, s->m, &k, &v) != 0 || v.mv_size != 8)
        return 0;
    uint32_t at, ex;
    memcpy(&at, v.mv_data, 4);
    memcpy(&ex, (char *)v.mv_data + 4, 4);
    if (at >= op->atime_s)
        return 0;
    uint8_t ik[4 + KLEN];
    memcpy(ik + 4, op->key, KLEN);
    MDB_val iv = {sizeof ik, ik}, empty = {0, NULL};
    be32(ik, at);
    mdb_del(txn, s->l, &iv, NULL);
    be32(ik, op->atime_s);
    int rc = mdb_put(txn, s->l, &iv, &empty, 0);
    if (rc)
        return rc;
    uint8_t meta[8];
    memcpy(meta, &op->atime_s, 4);
    memcpy(meta + 4, &ex, 4);
    MDB_val mv = {8, meta};
    return mdb_put(txn, s->m, &k, &mv, 0);
}

static int apply_del_tag(slmdb *s, MDB_txn *txn, const char *tag)
{
    char tk[TAG_MAXKEY + 1];
    size_t tkl = tag_key(tag, tk);
    MDB_val tkv = {tkl, tk}, v;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->t, &c);
    if (rc)
        return rc;
    uint8_t *keys = NULL;
    size_t n = 0, cap = 0;
    rc = mdb_cursor_get(c, &tkv, &v, MDB_SET_KEY);
    while (rc == 0) {
        if (v.mv_size == KLEN) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                keys = realloc(keys, cap * KLEN);
                if (!keys)
                    abort();
            }
            memcpy(keys + n * KLEN, v.mv_data, KLEN);
            n++;
        }
        rc = mdb_cursor_get(c, &tkv, &v, MDB_NEXT_DUP);
    }
    mdb_cursor_close(c);
    for (size_t i = 0; i < n; i++)
        if (del_entry(s, txn, keys + i * KLEN))
            atomic_fetch_add(&s->tag_dels, 1);
    free(keys);
    MDB_val tk2 = {tkl, tk};
    rc = mdb_del(txn, s->t, &tk2, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int apply_purge(slmdb *s, MDB_txn *txn)
{
    MDB_dbi dbis[] = {s->e, s->m, s->x, s->l, s->t};
    for (size_t i = 0; i < sizeof dbis / sizeof dbis[0]; i++) {
        int rc = mdb_drop(txn, dbis[i], 0);
        if (rc)
            return rc;
    }
    return 0;
}

static int apply_op(slmdb *s, MDB_txn *txn, wop *op)
{
    MDB_val k = {KLEN, op->key};
    switch (op->type) {
    case OP_PUT:
        return apply_put(s, txn, op);
    case OP_DEL:
        if (del_entry(s, txn, k.mv_data))
            atomic_fetch_add(&s->dels, 1);
        return 0;
    case OP_DEL_TAG:
        return apply_del_tag(s, txn, op->tags[0]);
    case OP_PURGE:
        return apply_purge(s, txn);
    case OP_TOUCH:
        return apply_touch(s, txn, op);
    default:
        return 0;
    }
}

static void wop_free(wop *op)
{
    for (size_t i = 0; i < op->n_tags; i++)
        free(op->tags[i]);
    free(op->tags);
    free(op->val);
    free(op);
}

/* Apply a list of ops in one txn; returns MDB error (txn aborted) or 0 (committed). */
static int apply_batch(slmdb *s, wop *list, int count_puts)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc)
        return rc;
    uint64_t puts = 0;
    for (wop *op = list; op; op = op->next) {
        rc = apply_op(s, txn, op);
        if (rc) {
            mdb_txn_abort(txn);
            return rc;
        }
        if (op->type == OP_PUT)
            puts++;
    }
    /* expire in passing, bounded */
    rc = evict_in(s, txn, 0, 256);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    atomic_store(&s->bytes_used, used_bytes(s, txn));
    rc = mdb_txn_commit(txn);
    if (rc == 0) {
        atomic_fetch_add(&s->batches, 1);
        if (count_puts)
            atomic_fetch_add(&s->puts, puts);
    }
    return rc;
}

static void process(slmdb *s, wop *list)
{
    uint64_t need = 0;
    for (wop *op = list; op; op = op->next)
        if (op->type == OP_PUT)
            need += op->len + op->len / 8 + 256 * (op->n_tags + 4);
    uint64_t used = atomic_load(&s->bytes_used);
    if (used + need > high_bytes(s) || now_s() - s->last_sweep_s >= 5)
        evict_txn(s, need, 0);
    int rc = apply_batch(s, list, 1);
    if (rc == MDB_MAP_FULL || rc == MDB_TXN_FULL) {
        atomic_fetch_add(&s->map_full, 1);
        evict_txn(s, need, 1);
        rc = apply_batch(s, list, 1);
    }
    if (rc) {
        /* op by op; a put that still does not fit is dropped */
        if (rc == MDB_MAP_FULL)
            atomic_fetch_add(&s->map_full, 1);
        for (wop *op = list; op; op = op->next) {
            wop *next = op->next;
            op->next = NULL;
            int r = apply_batch(s, op, 1);
            if (r == MDB_MAP_FULL) {
                atomic_fetch_add(&s->map_full, 1);
                evict_txn(s, op->len + 4096, 1);
                r = apply_batch(s, op, 1);
            }
            if (r && op->type == OP_PUT)
                atomic_fetch_add(&s->put_skipped, 1);
            else if (r)
                fprintf(stderr, "store_lmdb: op %d failed: %s\n", op->type, mdb_strerror(r));
            op->next = next;
        }
    }
}

static void *writer_main(void *arg)
{
    slmdb *s = arg;
    pthread_mutex_lock(&s->qlock);
    for (;;) {
        while (!s->qhead && !s->stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            int rc = pthread_cond_timedwait(&s->qcond, &s->qlock, &ts);
            if (rc == ETIMEDOUT && !s->qhead)
                break;
        }
        wop *list = s->qhead;
        s->qhead = s->qtail = NULL;
        s->qlen = 0;
        s->qbytes = 0;
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->qlock);

        uint64_t flushed = 0;
        /* split out flush markers; keep op order */
        wop *work = NULL, **tail = &work;
        for (wop *op = list; op;) {
            wop *next = op->next;
            if (op->type == OP_FLUSH) {
                if (op->flush_seq > flushed)
                    flushed = op->flush_seq;
                free(op);
            } else {
                op->next = NULL;
                *tail = op;
                tail = &op->next;
            }
            op = next;
        }
        if (work)
            process(s, work);
        else if (now_s() - s->last_sweep_s >= 5)
            evict_txn(s, 0, 0);
        for (wop *op = work; op;) {
            wop *next = op->next;
            wop_free(op);
            op = next;
        }
        pthread_mutex_lock(&s->qlock);
        if (flushed > s->flush_done) {
            s->flush_done = flushed;
            pthread_cond_broadcast(&s->fcond);
        }
        if (stopping && !s->qhead)
            break;
    }
    pthread_mutex_unlock(&s->qlock);
    return NULL;
}

static int enqueue(slmdb *s, wop *op)
{
    pthread_mutex_lock(&s->qlock);
    if (s->stopping) {
        pthread_mutex_unlock(&s->qlock);
        wop_free(op);
        return -1;
    }
    /* a writer that cannot keep up sheds puts, never memory */
    if (op->type == OP_PUT && (s->qbytes + op->len > s->o.map_size / 4 || s->qlen > 100000)) {
        pthread_mutex_unlock(&s->qlock);
        atomic_fetch_add(&s->put_skipped, 1);
        wop_free(op);
        return -1;
    }
    if (op->type == OP_TOUCH && s->qlen > 100000) {
        pthread_mutex_unlock(&s->qlock);
        wop_free(op);
        return 0;
    }
    op->next = NULL;
    if (s->qtail)
        s->qtail->next = op;
    else
        s->qhead = op;
    s->qtail = op;
    s->qlen++;
    s->qbytes += op->len;
    pthread_cond_signal(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
    return 0;
}

static wop *wop_new(int type, const uint8_t *key)
{
    wop *op = calloc(1, sizeof *op);
    if (!op)
        abort();
    op->type = type;
    if (key)
        memcpy(op->key, key, KLEN);
    return op;
}

/* ---- api ---- */
/* The options of o with the defaults and limits applied. */
static store_opts opts_normalised(const store_opts *o)
{
    store_opts n = *o;
    if (!n.map_size)
        n.map_size = 1ull << 30;
    if (n.high_water <= 0 || n.high_water > 0.99)
        n.high_water = 0.9;
    if (n.low_water <= 0 || n.low_water >= n.high_water)
        n.low_water = n.high_water > 0.2 ? n.high_water - 0.1 : n.high_water / 2;
    if (!n.max_entry_size || n.max_entry_size > n.map_size / 8)
        n.max_entry_size = n.map_size / 8;
    if (!n.touch_interval_s)
        n.touch_interval_s = 10;
    return n;
}

/* Create and open the environment of s (in s->dir): 0, or an LMDB error. */
static int env_open(slmdb *s)
{
    int rc;
    if ((rc = mdb_env_create(&s->env)) != 0)
        return rc;
    mdb_env_set_maxdbs(s->env, 8);
    mdb_env_set_maxreaders(s->env, 1024);
    size_t page = 4096;
    uint64_t ms = (s->o.map_size + page - 1) / page * page;
    if ((rc = mdb_env_set_mapsize(s->env, ms)) != 0)
        return rc;
    unsigned flags = MDB_NOTLS | MDB_NORDAHEAD;
    if (s->o.sync_mode == STORE_SYNC_NONE)
        flags |= MDB_NOSYNC;
    else if (s->o.sync_mode == STORE_SYNC_META_ASYNC)
        flags |= MDB_NOMETASYNC;
    if ((rc = mdb_env_open(s->env, s->dir, flags, 0640)) != 0)
        return rc;
    int dead = 0;
    mdb_reader_check(s->env, &dead);
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    s->o.map_size = info.me_mapsize;
    MDB_stat est;
    mdb_env_stat(s->env, &est);
    s->psize = est.ms_psize;
    return 0;
}

/* Open (create) the databases and read the bytes in use: 0, or an LMDB error. */
static int dbs_open(slmdb *s)
{
    MDB_txn *txn;
    int rc;
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
        return rc;
    if ((rc = mdb_dbi_open(txn, "e", MDB_CREATE, &s->e)) ||
        (rc = mdb_dbi_open(txn, "m", MDB_CREATE, &s->m)) ||
        (rc = mdb_dbi_open(txn, "x", MDB_CREATE, &s->x)) ||
        (rc = mdb_dbi_open(txn, "l", MDB_CREATE, &s->l)) ||
        (rc = mdb_dbi_open(txn, "t", MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED, &s->t)) ||
        (rc = mdb_dbi_open(txn, "g", MDB_CREATE | MDB_INTEGERKEY, &s->g))) {
        mdb_txn_abort(txn);
        return rc;
    }
    atomic_store(&s->bytes_used, used_bytes(s, txn));
    return mdb_txn_commit(txn);
}

/* Free an slmdb whose writer never started. */
static void discard_unopened(slmdb *s)
{
    pthread_mutex_destroy(&s->rlock);
    pthread_mutex_destroy(&s->qlock);
    pthread_cond_destroy(&s->qcond);
    pthread_cond_destroy(&s->fcond);
    free(s);
}

static int s_open(store **out, const store_opts *o, char *err, size_t errlen)
{
    slmdb *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->base.api = &store_lmdb_api;
    s->id = atomic_fetch_add(&g_store_ids, 1);
    s->o = opts_normalised(o);
    snprintf(s->dir, sizeof s->dir, "%s", o->dir ? o->dir : ".");
    snprintf(s->path, sizeof s->path, "%s/data.mdb", s->dir);
    pthread_mutex_init(&s->rlock, NULL);
    pthread_mutex_init(&s->qlock, NULL);
    pthread_cond_init(&s->qcond, NULL);
    pthread_cond_init(&s->fcond, NULL);

    if (mkdir(s->dir, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cache dir %s: %s", s->dir, strerror(errno));
        discard_unopened(s);
        return -1;
    }
    int rc = env_open(s);
    if (rc == 0)
        rc = dbs_open(s);
    if (rc != 0) {
        snprintf(err, errlen, "lmdb %s: %s", s->dir, mdb_strerror(rc));
        if (s->env)
            mdb_env_close(s->env);
        discard_unopened(s);
        return -1;
    }
    s->last_sweep_s = 0;
    if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
        snprintf(err, errlen, "cannot start the cache writer thread");
        mdb_env_close(s->env);
        discard_unopened(s);
        return -1;
    }
    *out = &s->base;
    return 0;
}

static void s_close(store *st)
{
    slmdb *s = (slmdb *)st;
    pthread_mutex_lock(&s->qlock);
    s->stopping = 1;
    pthread_cond_signal(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
    pthread_join(s->writer, NULL);
    for (lreader *r = s->readers; r;) {
        lreader *next = r->next;
        if (r->txn)
            mdb_txn_abort(r->txn);
        for (int i = 0; i < r->npinned; i++)
            mdb_txn_abort(r->pinned[i]); /* a pin outliving the store: its view goes too */
        for (int i = 0; i < r->nspare; i++)
            mdb_txn_abort(r->spare[i]);
        free(r);
        r = next;
    }
    for (unsigned i = 0; i < TL_SLOTS; i++)
        if (tl_readers[i].id == s->id)
            tl_readers[i].id = 0, tl_readers[i].r = NULL;
    mdb_env_close(s->env);
    pthread_mutex_destroy(&s->rlock);
    pthread_mutex_destroy(&s->qlock);
    pthread_cond_destroy(&s->qcond);
    pthread_cond_destroy(&s->fcond);
    free(s);
}

static lreader *reader_of(slmdb *s)
{
    for (unsigned i = 0; i < TL_SLOTS; i++)
        if (tl_readers[i].id == s->id)
            return tl_readers[i].r;
    lreader *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    pthread_mutex_lock(&s->rlock);
    r->next = s->readers;
    s->readers = r;
    pthread_mutex_unlock(&s->rlock);
    unsigned slot = TL_SLOTS;
    for (unsigned i = 0; i < TL_SLOTS; i++)
        if (tl_readers[i].id == 0) {
            slot = i;
            break;
        }
    if (slot == TL_SLOTS)
        slot = tl_next++ % TL_SLOTS;
    tl_readers[slot].id = s->id;
    tl_readers[slot].r = r;
    return r;
}

static int s_get(store *st, const uint8_t key[KLEN], store_val *out)
{
    slmdb *s = (slmdb *)st;
    lreader *r = reader_of(s);
    int rc;
    if (!r->active) {
        if (!r->txn && r->nspare)
            r->txn = r->spare[--r->nspare];
        rc = r->txn ? mdb_txn_renew(r->txn) : mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn);
        if (rc) {
            if (r->txn) {
                mdb_txn_abort(r->txn);
                r->txn = NULL;
            }
            return -1;
        }
        r->active = 1;
    }
    r->gets++;
    MDB_val k = {KLEN, (void *)key}, v;
    rc = mdb_get(r->txn, s->e, &k, &v);
    if (rc == MDB_NOTFOUND) {
        r->misses++;
        return 1;
    }
    if (rc)
        return -1;
    r->hits++;
    out->data = v.mv_data;
    out->len = v.mv_size;
    return 0;
}

static void s_release(store *st)
{
    slmdb *s = (slmdb *)st;
    lreader *r = reader_of(s);
    if (r->active) {
        mdb_txn_reset(r->txn);
        r->active = 0;
    }
}

static void *s_pin(store *st)
{
    slmdb *s = (slmdb *)st;
    lreader *r = reader_of(s);
    if (!r->active || !r->txn || r->npinned >= PIN_MAX)
        return NULL;
    lpin *p = malloc(sizeof *p);
    if (!p)
        return NULL;
    p->r = r;
    p->txn = r->txn;
    r->pinned[r->npinned++] = r->txn;
    r->txn = NULL; /* the next get() takes a spare or begins a new read txn */
    r->active = 0;
    return p;
}

static void s_unpin(store *st, void *handle)
{
    (void)st;
    lpin *p = handle;
    if (!p)
        return;
    lreader *r = p->r;
    for (int i = 0; i < r->npinned; i++) {
        if (r->pinned[i] == p->txn) {
            r->pinned[i] = r->pinned[--r->npinned];
            mdb_txn_reset(p->txn);
            if (r->nspare < PIN_MAX)
                r->spare[r->nspare++] = p->txn;
            else
                mdb_txn_abort(p->txn);
            break;
        }
    }
    free(p);
}

static int s_put(store *st, const uint8_t key[KLEN], const void *val, size_t len,
                 uint32_t expires_s, const char *const *tags, size_t n_tags)
{
    slmdb *s = (slmdb *)st;
    if (len > s->o.max_entry_size) {
        atomic_fetch_add(&s->put_skipped, 1);
        return -1;
    }
    wop *op = wop_new(OP_PUT, key);
    op->val = malloc(len ? len : 1);
    if (!op->val)
        abort();
    memcpy(op->val, val, len);
    op->len = len;
    op->expires_s = expires_s;
    if (n_tags) {
        op->tags = calloc(n_tags, sizeof *op->tags);
        if (!op->tags)
            abort();
        for (size_t i = 0; i < n_tags; i++) {
            op->tags[i] = strdup(tags[i]);
            if (!op->tags[i])
                abort();
        }
        op->n_tags = n_tags;
    }
    return enqueue(s, op);
}

static int s_del(store *st, const uint8_t key[KLEN])
{
    return enqueue((slmdb *)st, wop_new(OP_DEL, key));
}

static int s_del_tag(store *st, const char *tag)
{
    wop *op = wop_new(OP_DEL_TAG, NULL);
    op->tags = calloc(1, sizeof *op->tags);
    if (!op->tags || !(op->tags[0] = strdup(tag)))
        abort();
    op->n_tags = 1;
    return enqueue((slmdb *)st, op);
}

static int s_purge_all(store *st)
{
    return enqueue((slmdb *)st, wop_new(OP_PURGE, NULL));
}

static void s_touch(store *st, const uint8_t key[KLEN])
{
    slmdb *s = (slmdb *)st;
    uint64_t k;
    memcpy(&k, key, 8);
    unsigned slot = (unsigned)(k % TOUCH_SLOTS);
    uint32_t now = now_s();
    if (tl_touch[slot].store_id == s->id && tl_touch[slot].k == k &&
        now - tl_touch[slot].at < s->o.touch_interval_s)
        return;
    tl_touch[slot].store_id = s->id;
    tl_touch[slot].k = k;
    tl_touch[slot].at = now;
    wop *op = wop_new(OP_TOUCH, key);
    op->atime_s = now;
    enqueue(s, op);
}

static int s_flush(store *st)
{
    slmdb *s = (slmdb *)st;
    wop *op = wop_new(OP_FLUSH, NULL);
    pthread_mutex_lock(&s->qlock);
    if (s->stopping) {
        pthread_mutex_unlock(&s->qlock);
        free(op);
        return -1;
    }
    uint64_t seq = ++s->flush_next;
    op->flush_seq = seq;
    if (s->qtail)
        s->qtail->next = op;
    else
        s->qhead = op;
    s->qtail = op;
    pthread_cond_signal(&s->qcond);
    while (s->flush_done < seq)
        pthread_cond_wait(&s->fcond, &s->qlock);
    pthread_mutex_unlock(&s->qlock);
    return 0;
}

static int s_evict(store *st)
{
    slmdb *s = (slmdb *)st;
    return evict_txn(s, 0, 0) == 0 ? 0 : -1;
}

/* A read-only transaction and a cursor on dbi (the caller closes both): 0, or -1. */
static int ro_cursor(slmdb *s, MDB_dbi dbi, MDB_txn **txn, MDB_cursor **c)
{
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn) != 0)
        return -1;
    if (mdb_cursor_open(*txn, dbi, c) != 0) {
        mdb_txn_abort(*txn);
        return -1;
    }
    return 0;
}

static int s_iterate(store *st, store_iter_cb cb, void *arg)
{
    slmdb *s = (slmdb *)st;
    MDB_txn *txn;
    MDB_cursor *c;
    if (ro_cursor(s, s->e, &txn, &c) != 0)
        return -1;
    MDB_val k, v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (k.mv_size == KLEN && cb(k.mv_data, v.mv_data, v.mv_size, arg))
            break;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    return 0;
}

static void s_stats(store *st, store_stats *out)
{
    slmdb *s = (slmdb *)st;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->rlock);
    for (lreader *r = s->readers; r; r = r->next) {
        out->gets += r->gets;
        out->hits += r->hits;
        out->misses += r->misses;
    }
    pthread_mutex_unlock(&s->rlock);
    out->puts = atomic_load(&s->puts);
    out->put_skipped = atomic_load(&s->put_skipped);
    out->dels = atomic_load(&s->dels);
    out->tag_dels = atomic_load(&s->tag_dels);
    out->evictions = atomic_load(&s->evictions);
    out->expired = atomic_load(&s->expired);
    out->map_full = atomic_load(&s->map_full);
    out->batches = atomic_load(&s->batches);
    out->map_size = s->o.map_size;
    MDB_txn *txn;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0) {
        MDB_stat es;
        if (mdb_stat(txn, s->e, &es) == 0)
            out->entries = es.ms_entries;
        out->bytes_used = used_bytes(s, txn);
        mdb_txn_abort(txn);
    } else {
        out->bytes_used = atomic_load(&s->bytes_used);
    }
    pthread_mutex_lock(&s->qlock);
    out->queue_len = s->qlen;
    pthread_mutex_unlock(&s->qlock);
}

static int s_gens_load(store *st, uint64_t *table, size_t n)
{
    slmdb *s = (slmdb *)st;
    MDB_txn *txn;
    MDB_cursor *c;
    if (ro_cursor(s, s->g, &txn, &c) != 0)
        return -1;
    MDB_val k, v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (k.mv_size == sizeof(unsigned) && v.mv_size == 8) {
            unsigned slot;
            uint64_t gen;
            memcpy(&slot, k.mv_data, sizeof slot);
            memcpy(&gen, v.mv_data, 8);
            if (slot < n)
                table[slot] = gen;
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    return 0;
}

static int gens_save_try(slmdb *s, const uint32_t *slots, const uint64_t *gens, size_t n, int retry)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc)
        return -1;
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned slot = slots[i];
        MDB_val k = {sizeof slot, &slot}, v = {8, (void *)&gens[i]};
        rc = mdb_put(txn, s->g, &k, &v, 0);
    }
    if (rc) {
        mdb_txn_abort(txn);
        if (rc == MDB_MAP_FULL && retry) {
            atomic_fetch_add(&s->map_full, 1);
            evict_txn(s, 4096 * (n + 1), 1);
            return gens_save_try(s, slots, gens, n, 0);
        }
        return -1;
    }
    if (mdb_txn_commit(txn) != 0)
        return -1;
    /* the generations table holds the run marker (cache.c): make it survive a power loss
     * too, meta page included (rare: start and stop) */
    if (s->o.sync_mode != STORE_SYNC_NONE && mdb_env_sync(s->env, 1) != 0)
        return -1;
    return 0;
}

static int s_gens_save(store *st, const uint32_t *slots, const uint64_t *gens, size_t n)
{
    return gens_save_try((slmdb *)st, slots, gens, n, 1);
}

const char *store_lmdb_path(store *st)
{
    return ((slmdb *)st)->path;
}

const store_api store_lmdb_api = {
    .name = "lmdb",
    .open = s_open,
    .close = s_close,
    .get = s_get,
    .release = s_release,
    .put = s_put,
    .del = s_del,
    .del_tag = s_del_tag,
    .purge_all = s_purge_all,
    .touch = s_touch,
    .flush = s_flush,
    .evict = s_evict,
    .iterate = s_iterate,
    .stats = s_stats,
    .gens_load = s_gens_load,
    .gens_save = s_gens_save,
    .pin = s_pin,
    .unpin = s_unpin,
};
