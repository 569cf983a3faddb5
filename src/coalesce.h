/*
 * coalesce: the global table of fetches in flight, so that identical requests (same cache
 * key) make one upstream request (Varnish's waiting list, nginx's proxy_cache_lock).
 *
 * The first request for a key becomes the leader of a flight and fetches; the others join
 * as waiters. When the leader completes, every waiter gets the same result (a refcounted,
 * immutable coalesce_result) delivered on its OWN event base through event_base_once
 * (thread-safe: evthread_use_pthreads() is on), so waiters may live on other worker
 * threads. A completed flight may linger for a short time (the poll micro-cache, and the
 * gap until the store's writer has committed the entry): a request arriving then gets the
 * result at once (COALESCE_DONE).
 *
 * If the leader goes away without a result (its client vanished and its fetch was
 * abandoned) it hands the flight over: the oldest waiter is promoted to leader
 * (COALESCE_KIND_LEAD delivered to it) and fetches in its place, the others keep waiting.
 *
 * Threading: the table is sharded by key (64 shards, one mutex each); no lock is shared by
 * all workers. Delivery callbacks run on the waiter's base, never under a shard lock.
 * Ownership: a flight belongs to the table; the leader holds a coalesce_flight handle until
 * it calls coalesce_complete or coalesce_abandon (exactly once). A waiter's arg belongs to
 * the waiter; the table only passes it back to the delivery callback, exactly once.
 */
#ifndef HG_COALESCE_H
#define HG_COALESCE_H

#include <stddef.h>
#include <stdint.h>

#include "cachekey.h"

struct event_base;

enum coalesce_kind {
    COALESCE_KIND_ENTRY = 0, /* blob holds an encoded entry (entry.h): status/headers/body */
    COALESCE_KIND_ERROR,     /* the fetch failed without a response: status/code/message */
    COALESCE_KIND_LEAD,      /* (delivery only) you are the leader now: fetch, then complete;
                                with a NULL flight: fetch on your own, complete nothing */
};

#define COALESCE_F_STALE 0x1u /* the entry is a stale one served on the fetch's failure */

#define COALESCE_RESULT_MAGIC 0x2d6a81f4u
typedef struct coalesce_result {
    unsigned magic; /* COALESCE_RESULT_MAGIC while referenced (check.h) */
    int refs;       /* atomic */
    enum coalesce_kind kind;
    unsigned flags;
    int status;
    char code[48];
    char message[160];
    unsigned char *blob;
    size_t len;
    /* the answer carried Vary: the leader's secondary key (cachekey_vary); a waiter whose own
     * secondary key differs must not take the answer, and fetches for itself */
    int has_vkey;
    cachekey vkey;
} coalesce_result;

typedef struct coalesce_flight coalesce_flight;

/* Called on the waiter's base. res is a reference the callee must coalesce_result_unref.
 * For COALESCE_KIND_LEAD, flight is the flight the waiter now leads (else NULL). */
typedef void (*coalesce_deliver_fn)(void *arg, coalesce_result *res, coalesce_flight *flight);

enum coalesce_join {
    COALESCE_LEADER = 0, /* *flight set: fetch, then coalesce_complete/abandon */
    COALESCE_WAITER,     /* registered: fn(arg, ...) will be called on base later */
    COALESCE_DONE,       /* *done set (a reference): a lingering result, use it now */
};

/* Results: new with a copy of blob (may be NULL); refcount starts at 1. */
coalesce_result *coalesce_result_new(enum coalesce_kind kind, const void *blob, size_t len);
coalesce_result *coalesce_result_ref(coalesce_result *r);
void coalesce_result_unref(coalesce_result *r);

/*
 * Join the flight for key, or lead a new one. now_ms: util_mono_ms(). A lingering result
 * older than its linger time is dropped and a new flight started. max_waiters bounds a
 * flight (0 = unlimited): beyond it the caller is made leader of nothing and gets
 * COALESCE_LEADER with *flight == NULL (fetch alone, do not complete).
 */
enum coalesce_join coalesce_join(const cachekey *key, struct event_base *base,
                                 coalesce_deliver_fn fn, void *arg, coalesce_flight **flight,
                                 coalesce_result **done);

/* 1 when a flight for key is in the table (in flight or lingering). */
int coalesce_busy(const cachekey *key);

/* Remove a waiter before delivery (its client went away). 1 removed, 0 already delivered
 * or being delivered (the callback will still run). */
int coalesce_leave(const cachekey *key, void *arg);

/*
 * The leader's result: delivered to every waiter (a reference each); the flight then
 * lingers with the result until now + linger_ms (0: removed at once). Takes over the
 * caller's reference to res.
 */
void coalesce_complete(coalesce_flight *f, coalesce_result *res, uint64_t linger_ms);

/* The leader gives up without a result: promote the oldest waiter, or drop the flight. */
void coalesce_abandon(coalesce_flight *f);

/* The leader's answer cannot be shared (too large): every waiter is released to fetch on
 * its own (COALESCE_KIND_LEAD with a NULL flight), and the flight is dropped. */
void coalesce_release_all(coalesce_flight *f);

/* Drop lingering results (e.g. after an invalidation): all of them. */
void coalesce_forget_all(void);
/* Free the lingering results whose time is up (they are otherwise dropped lazily, when a
 * join walks their bucket): the metrics scrape calls it, so idle memory is given back and
 * the gauges count only live results. */
void coalesce_sweep_expired(void);

typedef struct coalesce_stats {
    uint64_t flights;                      /* flights started */
    uint64_t waiters;                      /* requests that joined a flight */
    uint64_t lingering;                    /* requests answered from a lingering result */
    uint64_t promoted;                     /* waiters promoted after an abandoned flight */
    uint64_t inflight;                     /* fetches in flight now (led, not completed) */
    uint64_t linger_results, linger_bytes; /* completed results kept for late joiners */
} coalesce_stats;
void coalesce_get_stats(coalesce_stats *out);

/* Free everything (shutdown; no flight may be in use). */
void coalesce_shutdown(void);

#endif
