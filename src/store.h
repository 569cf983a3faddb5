/*
 * store: the cache's storage backend interface, a small table of function pointers in the
 * manner of Knot Resolver's struct kr_cdb_api. LMDB (store_lmdb.c) is the default; a
 * Redis backend can sit behind the same table later.
 *
 * Keys are fixed 32-byte cache keys (cachekey.h); values are opaque entry blobs
 * (entry.h). The store also keeps a tag index (tag -> keys) for invalidation and space
 * reclamation, an eviction order (expired first, then least recently used), and a small
 * table of invalidation generations that must survive restarts.
 *
 * Threading and ownership:
 *  - get() may be called from any thread. It hands out a pointer into the backend's
 *    memory (for LMDB: the read transaction's mmap) that stays valid until the same
 *    thread calls release(); the caller copies what it needs (at most once) and releases
 *    before returning to its event loop. No lock shared by all threads is taken.
 *  - put/del/del_tag/purge/touch are asynchronous: they copy their arguments onto a
 *    queue that one writer thread drains in batched transactions. flush() waits until
 *    everything queued before it is committed (tests, shutdown, admin purge).
 *  - gens_save() is synchronous (a mutation's response waits for it).
 *  - close() must be called after every other thread stopped using the store.
 */
#ifndef HG_STORE_H
#define HG_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_KEY_LEN 32

typedef struct store store;

typedef struct store_opts {
    const char *dir;           /* directory of the environment (created if missing) */
    uint64_t map_size;         /* bytes; the hard size of the cache */
    double high_water;         /* fraction of map_size that triggers eviction (0.9) */
    double low_water;          /* eviction stops below this fraction (high_water - 0.1) */
    uint64_t max_entry_size;   /* larger values are not stored (0: map_size / 8) */
    unsigned touch_interval_s; /* LRU access time granularity (default 10 s) */
    int sync_mode;             /* STORE_SYNC_* */
} store_opts;

/* Durability: see store_lmdb.c. */
#define STORE_SYNC_META_ASYNC 0 /* default: data synced per commit, meta page lazily */
#define STORE_SYNC_NONE 1       /* no fsync at all (tests, benchmarks on tmpfs) */
#define STORE_SYNC_FULL 2       /* fsync data and meta on every commit */

typedef struct store_stats {
    uint64_t gets, hits, misses; /* get() outcomes */
    uint64_t puts, put_skipped;  /* committed puts; puts dropped (too big, map full) */
    uint64_t dels, tag_dels;     /* entries deleted by key / by tag */
    uint64_t evictions, expired; /* LRU evictions, expired entries removed */
    uint64_t map_full;           /* MDB_MAP_FULL met (never reaches a client) */
    uint64_t batches;            /* writer transactions committed */
    uint64_t entries;            /* entries in the store now */
    uint64_t bytes_used;         /* pages in use * page size */
    uint64_t map_size;
    uint64_t queue_len; /* ops waiting for the writer */
} store_stats;

typedef struct store_val {
    const void *data;
    size_t len;
} store_val;

/* iterate callback: return non-zero to stop. */
typedef int (*store_iter_cb)(const uint8_t key[STORE_KEY_LEN], const void *val, size_t len,
                             void *arg);

typedef struct store_api {
    const char *name;
    int (*open)(store **out, const store_opts *o, char *err, size_t errlen);
    void (*close)(store *s);
    /* 0 found (*out set, valid until release), 1 not found, <0 error */
    int (*get)(store *s, const uint8_t key[STORE_KEY_LEN], store_val *out);
    void (*release)(store *s);
    /* queue a put; tags NUL-terminated strings; expires_s: wall seconds, 0 never.
     * 0 queued, <0 refused (too big / closing). */
    int (*put)(store *s, const uint8_t key[STORE_KEY_LEN], const void *val, size_t len,
               uint32_t expires_s, const char *const *tags, size_t n_tags);
    int (*del)(store *s, const uint8_t key[STORE_KEY_LEN]);
    int (*del_tag)(store *s, const char *tag);
    int (*purge_all)(store *s);
    /* note an access for LRU (cheap; deduplicated per thread) */
    void (*touch)(store *s, const uint8_t key[STORE_KEY_LEN]);
    int (*flush)(store *s);
    /* run expiry + eviction now (synchronously, in the caller's thread) */
    int (*evict)(store *s);
    /* walk all entries in key order inside one read txn (not on the hit path) */
    int (*iterate)(store *s, store_iter_cb cb, void *arg);
    void (*stats)(store *s, store_stats *out);
    /* generations: load all persisted (slot, gen) pairs into table[n] (others stay) */
    int (*gens_load)(store *s, uint64_t *table, size_t n);
    int (*gens_save)(store *s, const uint32_t *slots, const uint64_t *gens, size_t n);
    /* Zero-copy serving: keep this thread's current read view (everything get() handed out
     * since the last release) valid past release(), until unpin(handle) -- called on the
     * same thread, e.g. from an evbuffer_add_reference cleanup once the socket took the
     * bytes. NULL when not possible (too many pins, no view): copy instead. May be NULL
     * in backends that cannot pin. */
    void *(*pin)(store *s);
    void (*unpin)(store *s, void *handle);
} store_api;

/* Every backend's handle starts with this. */
struct store {
    const store_api *api;
};

extern const store_api store_lmdb_api;

static inline int store_get(store *s, const uint8_t *k, store_val *v)
{
    return s->api->get(s, k, v);
}
static inline void store_release(store *s)
{
    s->api->release(s);
}
static inline int store_put(store *s, const uint8_t *k, const void *v, size_t len, uint32_t exp,
                            const char *const *tags, size_t n)
{
    return s->api->put(s, k, v, len, exp, tags, n);
}
static inline int store_del(store *s, const uint8_t *k)
{
    return s->api->del(s, k);
}
static inline int store_del_tag(store *s, const char *tag)
{
    return s->api->del_tag(s, tag);
}
static inline int store_flush(store *s)
{
    return s->api->flush(s);
}
static inline void store_close(store *s)
{
    if (s)
        s->api->close(s);
}

#endif
