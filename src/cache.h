/*
 * cache: the cache stage of hotgate's pipeline -- the reason hotgate exists.
 *
 * Job. For every request that has a route policy (route.h):
 *   - cacheable reads (query results, metadata, immutable objects once terminal): derive
 *     the key (cachekey.h), look it up in the store (store.h; LMDB by default) and answer a
 *     fresh hit at once (X-Cache: HIT, Age, ETag; If-None-Match -> 304); a stale entry
 *     inside stale-while-revalidate is served (X-Cache: STALE) and refreshed in the
 *     background, once per key; otherwise join or lead the coalesced fetch for the key
 *     (coalesce.h): the leader goes on to the budget and upstream stages with a response
 *     tap that stores what comes back, waiters get the same answer (X-Cache: COALESCED);
 *   - mutations (and forwarded writing SQL): after the upstream answered 2xx, and before
 *     the answer goes to the client, bump the invalidation generations of their tags
 *     (route.h), so no later request can be served an older entry, and queue the deletion
 *     of the tagged entries;
 *   - Cache-Control from the client (RFC 9111): no-store (bypass), no-cache (refetch and
 *     store), max-age=N, only-if-cached (504 when absent);
 *   - the key covers every input the upstream could answer differently to (cachekey.h,
 *     bodykey.h): a body that cannot be held, a query body it cannot read, and SQL the lexer is
 *     not certain of are forwarded, never cached;
 *   - a fill goes upstream with Accept-Encoding: identity and without If-None-Match; an
 *     encoded answer, or one with Vary: *, is neither stored nor shared; an answer with Vary is
 *     stored under a secondary key (cachekey_vary) behind a marker entry (ENTRY_F_VARY) under
 *     the primary key, and a coalesced waiter whose Vary values differ fetches for itself.
 *
 * Invalidation generations. A table of 65536 counters indexed by a hash of each
 * workspace-scoped tag (slot 0: everything). An entry records the counters of its tags
 * as they were when its fill STARTED; a hit is served only while they are unchanged. A
 * mutation bumps the counters (in memory, atomically) before its response is sent, so
 * invalidation is synchronous with respect to later requests and also covers fills that
 * were in flight. The counters are persisted on clean shutdown; after an unclean one the
 * global counter is bumped at start (everything older is invalid), so a crash can make
 * the cache cold but never stale. Coalescing keys include the counters too, so a request
 * that arrives after an invalidation never joins a fetch that started before it.
 *
 * Threading: cache_stage, the taps and the delivery callbacks run on the request's worker
 * thread; the hit path takes no lock shared by all workers (LMDB per-thread read txns,
 * atomic generation loads). The store's writer thread does all LMDB writes.
 */
#ifndef HG_CACHE_H
#define HG_CACHE_H

#include <event2/keyvalq_struct.h>

#include "pipeline.h"

struct hg_config;

/* Open the store, load generations, register /admin/purge and the metrics. Before
 * server_start(). 0, or -1 (logged). A disabled cache ([cache] enabled = no) is fine. */
int cache_init(const struct hg_config *cfg);

/* After server_stop(): flush and close the store, persist the generations. */
void cache_shutdown(void);
/* A reload: the freshness rules of cfg (TTLs, ttl.<class>, stale windows, poll window,
 * negative TTL) apply to fills that finish from now on. Cache dir/size, enabled and
 * max_entry_size need a restart. */
void cache_reconfigure(const struct hg_config *cfg);
/* 1 when the cache can serve (disabled counts as open), for /readyz. */
int cache_open(void);

/* The stage (the pipeline runs it: stages.c). */
enum hg_stage_result cache_stage(struct hg_req *req);

/*
 * Response path hooks for responses that stream from the upstream (the upstream stage calls
 * them through the pipeline, stages.c):
 * cache_xcache gives the X-Cache value (MISS, BYPASS) for the head about to be written,
 * or NULL; cache_upstream_failed is asked before the server forwards or answers a failed
 * upstream exchange (status >= 500, 429, or 0 for a connection error/timeout) and returns
 * 1 when the cache answered the client itself with a stale entry (stale-if-error): the
 * server then drops the upstream's answer (and cancels the transfer if it is running).
 * res: the failed exchange's result when status is 0 (it also completes the coalesced
 * fetch with that failure, since no tap on_done follows a failure before any head).
 */
const char *cache_xcache(const struct hg_req *req);
/* 1 when the answer about to stream should be held back until it arrived complete: a
 * stale copy is at hand (stale-if-error), so an upstream cut mid-body can still be
 * answered with it instead of a truncated response. */
int cache_hold_response(const struct hg_req *req);
/* A held answer is complete: 1 when it waits for the fleet's acknowledgement of the mutation's
 * invalidation (release(req) is called then, or at op_timeout at the latest). */
int cache_hold_gate(struct hg_req *req, void (*release)(struct hg_req *req));
struct upstream_result;
int cache_upstream_failed(struct hg_req *req, int status, const struct upstream_result *res);

/* The client went away (the pipeline's client_gone hook): a request waiting on a coalesced
 * fetch leaves it now and drops its hold; the other waiters are not disturbed. */
void cache_client_gone(struct hg_req *req);

/* Metrics text (also registered with metrics_register by cache_init). */
void cache_metrics(struct evbuffer *out, void *arg);

#endif
