/*
 * fleet_l2: the fleet's shared cache (L2) and its cross-instance leases, in Redis.
 *
 * Job. On an L1 miss the instance's local coalescing leader asks Redis, in one round trip
 * (HMGET of the L2 generations of the request's tags, then one script on the entry's key and
 * its lease key), for either the entry or the key's lease:
 *   - an entry whose generations (and generation epoch) are the current ones and which is
 *     fresh by its own encoding (entry.h, checksum verified): FLEET_HIT;
 *   - no usable entry and the lease taken (SET NX PX, lease_ms: a little longer than the
 *     upstream timeout): FLEET_LEAD, with the generations to store the answer under;
 *   - the lease held by another instance: wait, without a client-visible cost beyond the
 *     leader's fetch: a pub/sub notification (<prefix>fill, one subscriber connection per
 *     worker) or the lease's expiry (leader crashed) runs the lookup again;
 *   - Redis down, slow (op_timeout) or failing: FLEET_FAIL, and the caller fetches as a single
 *     instance would.
 * fleet_put stores an answer (SET PX: its remaining freshness), releases the lease if still
 * ours and notifies the waiters, in one script; fleet_release only releases and notifies.
 *
 * Keys (Redis Cluster ready): <prefix>{<key hex>}e (entry) and <prefix>{<key hex>}l (lease)
 * share the hash tag of the cache key, so the scripts touch one slot; the generations hash
 * (<prefix>{fleet}gens) is read by a separate command. An L2 value is "HGL2", the generation
 * epoch, the (slot, generation) pairs it was filled under, then the L1 entry encoding
 * (entry.h) unchanged, with its checksum.
 *
 * Threading: everything runs on the calling worker's thread (its rds_worker connection and
 * its subscriber); a fleet_get and its callback belong to that thread.
 */
#ifndef HG_FLEET_L2_H
#define HG_FLEET_L2_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "entry.h"

typedef struct fleet_gens {
    int valid;
    char epoch[24];
    size_t n;
    uint32_t slot[ENTRY_MAX_GENS];
    uint64_t gen[ENTRY_MAX_GENS];
} fleet_gens;

enum fleet_outcome {
    FLEET_FAIL = 0, /* Redis could not help: fetch as one instance would */
    FLEET_HIT,      /* blob/len: a verified, fresh L1 entry encoding */
    FLEET_LEAD,     /* fetch; then fleet_put(..., gens, token) or fleet_release(token) */
};

typedef struct fleet_lease {
    fleet_gens gens;
    char token[48]; /* "" when no lease is held */
} fleet_lease;

/* blob is valid during the call only. lease: for FLEET_LEAD. */
typedef void (*fleet_get_fn)(void *arg, enum fleet_outcome o, const unsigned char *blob, size_t len,
                             const fleet_lease *lease);

typedef struct fleet_get fleet_get;

/* Start a lookup for key (32 bytes) with the request's scoped tags. NULL when Redis cannot be
 * asked now (disabled, down, circuit open): the caller goes on at once without it. Otherwise
 * fn runs exactly once, later, unless fleet_get_cancel is called first. */
fleet_get *fleet_get_start(struct event_base *base, const uint8_t key[32], const char *const *tags,
                           size_t ntags, uint64_t lease_ms, fleet_get_fn fn, void *arg);
/* The request went away: no callback will come. (A lease already taken is released.) */
void fleet_get_cancel(fleet_get *g);

/* Store blob (an L1 entry encoding, len <= [redis] max_entry_size) for px ms under the lease's
 * generations, release the lease, notify. Fire and forget. */
void fleet_put(const uint8_t key[32], const unsigned char *blob, size_t len, uint64_t px,
               const fleet_lease *lease);
/* Release the lease without storing (the answer is not for L2) and notify the waiters. */
void fleet_release(const uint8_t key[32], const fleet_lease *lease);

/* Module setup (after rds_init): scripts, metrics hooks. */
void fleet_l2_init(void);

/* Counters for the cache's metrics. */
void fleet_l2_metrics(struct evbuffer *out, void *arg);

#endif
