/*
 * fleet_inval: invalidation across a fleet of hotgate instances, through Redis.
 *
 * Job. A mutation seen by one instance bumps, in one script call, the L2 generations of its
 * tags (a hash of counters, <prefix>{fleet}gens, HINCRBY) and appends the tags to a bounded
 * Redis Stream (<prefix>{fleet}inval, XADD MAXLEN ~ [redis] stream_maxlen). The command is
 * written to the Redis socket at once (rds_flush) and its reply is reported to the caller
 * (acked): the cache holds the mutation's answer back until then (cache_fleet.c), or until the
 * command failed / missed op_timeout (then the invalidation is queued, see below). Every instance
 * tails the stream from its last id (XREAD BLOCK on a connection of its own thread) and applies
 * entries of other instances to its L1 within milliseconds.
 *
 * Catching up. The tailer remembers the last id it applied. When it (re)attaches it compares
 * with the stream: stream gone while we had a position, or its last id below ours (Redis lost
 * the log: a restart without persistence, a failover to a lagging replica), or our own last
 * entry trimmed away (we were cut off for longer than the stream covers) -> every L1
 * generation is dropped (apply_all): it cannot know which ones it missed. At start the
 * instance's L1 (LMDB, persisted) is dropped too, as invalidations made while it was down
 * are unknown to it.
 *
 * Redis down at a mutation. The local invalidation has happened already (the cache does it
 * first). The tags are queued (bounded: 256 batches, beyond that one "everything" entry) and
 * published when Redis answers again, so the other instances catch up then. An instance that
 * dies with a queue loses it: the README says so.
 *
 * Threading: fleet_inval_publish runs on a worker thread (its rds_worker connection); the
 * tailer and the queue drain run on the module's own thread; the hooks are called there and
 * must be thread-safe (the cache's generation bumps are atomics, store_del_tag queues).
 */
#ifndef HG_FLEET_INVAL_H
#define HG_FLEET_INVAL_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

struct rds;

struct fleet_inval_hooks {
    void (*apply)(const char *scoped_tag); /* invalidate one tag in this instance's L1 */
    void (*apply_all)(void);               /* drop every L1 entry (bump the global gen) */
};

/* Start the tailer thread (no-op when Redis is disabled). 0 or -1. */
int fleet_inval_start(const struct fleet_inval_hooks *hooks);
void fleet_inval_stop(void);

/* Publish an invalidation of n scoped tags (all != 0: of everything) from a worker thread:
 * sent at once on r (and flushed), queued when r is NULL, down or the command fails.
 * acked (may be NULL): called once on r's thread with ok = 1 when Redis acknowledged the script
 * (the generations and the stream entry are in force), 0 when it failed or missed op_timeout
 * (the invalidation went to the queue). Returns 1 when acked will be called, 0 when the
 * invalidation was queued at once (acked is not called; counted as unacknowledged). */
int fleet_inval_publish(struct rds *r, const char *const *scoped, size_t n, int all,
                        void (*acked)(void *arg, int ok), void *arg);

/* The L2 generation slot of a scoped tag (1..65534; 0 is "everything"). */
uint32_t fleet_slot(const char *scoped_tag);

/* This process's identity in the fleet (random at start, hex). */
const char *fleet_instance_id(void);

/* Keys: the generation hash and the stream (share the {fleet} hash tag). */
size_t fleet_gens_key(char *out, size_t cap);
size_t fleet_stream_key(char *out, size_t cap);

/* 1 while the tailer is attached to the stream (for tests and /admin). */
int fleet_inval_attached(void);

/* Metrics text. */
void fleet_inval_metrics(struct evbuffer *out, void *arg);

#endif
