/*
 * gbudget: the fleet's rate budget in Redis: every instance sharing a credential (by its
 * [credential NAME]) takes its tokens, concurrency slots and Retry-After pauses from one
 * place, so N instances configured at R/s together send at most R/s upstream (± burst).
 *
 * One Lua script (loaded once, run with EVALSHA through the redis module), three keys per
 * credential with one hash tag, so they share a Redis Cluster slot:
 *   <prefix>budget:{NAME}:b  hash: tokens, ts (ms, Redis's own TIME), seq (slot ids)
 *   <prefix>budget:{NAME}:p  the fleet's pause: exists (PX) while a Retry-After holds
 *   <prefix>budget:{NAME}:s  zset of concurrency slot leases (member owner:id, score expiry
 *                            in ms): a crashed instance's slots come back when they expire
 * Time is taken inside Redis (TIME), never from the instances' clocks.
 *
 * This module is the budget's global source (budget_global_ops): asks run on the budget's
 * pacing thread over a dedicated connection on its event base; sheds and slot releases come
 * from any thread and are queued to that thread. Any Redis trouble (circuit open, timeout,
 * error) is an unanswered ask: the budget runs its local share ([redis] local_share) then.
 */
#ifndef HG_GBUDGET_H
#define HG_GBUDGET_H

#include <stdint.h>

#include "budget.h"

typedef struct gbudget gbudget;

/* The global source for b (whose thread runs): slot leases last lease_ms; connect_now:
 * open its connection at once (a credential has a rate or a cap), else at the first ask (a
 * reload may add one). NULL when Redis is disabled. Then budget_set_global(b,
 * gbudget_ops(), g, share). */
gbudget *gbudget_new(budget *b, uint64_t lease_ms, int connect_now);
const budget_global_ops *gbudget_ops(void);
/* After budget_free (which stopped it). */
void gbudget_free(gbudget *g);

/* The script's source (tests run it against a real redis-server). KEYS: bucket, pause,
 * slots. ARGV[1] the operation:
 *   take rate burst want cap lease_ms owner debt
 *        -> {granted, retry_ms, paused_ms, first_slot}; debt (requests sent on the local
 *           share) is taken first, the bucket going down to -burst at most
 *   shed ms empty(0|1)                      -> 1 (the pause only ever grows)
 *   release member                          -> 1 */
const char *gbudget_script(void);

#endif
