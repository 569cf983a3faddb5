/*
 * redis: hotgate's Redis client layer (the fleet tier's transport), on hiredis 0.14's async
 * API and its libevent adapter.
 *
 * Job. Give every worker thread one async connection to the Redis primary on the worker's own
 * event base (rds_worker()), and modules that need one a dedicated connection on a base of
 * their choosing (rds_new(): the invalidation stream tailer's XREAD BLOCK, a pub/sub
 * subscriber). Every command has a deadline ([redis] op_timeout, 50 ms by default): a command
 * that misses it is answered to its caller as a failure at the deadline and its late reply is
 * dropped, so Redis can never add more than op_timeout to a client request.
 *
 * Rules.
 *   - rds_cmd*() returns 0 when the command was sent: its callback then runs exactly once, on
 *     the connection's thread, with the reply or with NULL (timeout, connection lost, error
 *     reply unless RDS_F_ERRORS). It returns -1 when the command was not sent (no connection
 *     yet, circuit open, Redis disabled): the callback is never called and the caller goes on
 *     without Redis at once. A callback may issue further commands.
 *   - Circuit breaker: RDS_TRIP consecutive failures (timeouts or lost connections) open the
 *     circuit: the connection is dropped, commands are refused at once, and after a backoff
 *     (100 ms doubling to 5 s, reset by a success) the client reconnects; the handshake (AUTH,
 *     SELECT, ROLE behind Sentinel, PING) is the half-open probe, and only its success closes
 *     the circuit again.
 *   - Sentinel ([redis] sentinel + sentinel_master): before every (re)connect the primary's
 *     address is asked of the sentinels in turn (SENTINEL get-master-addr-by-name) and checked
 *     with ROLE; a -READONLY reply (the primary became a replica in a failover) drops the
 *     connection, so the next connect finds the new primary.
 *   - Keys: rds_key() prefixes [redis] key_prefix. Callers that touch several keys in one
 *     script put the shared part in a hash tag ({...}) so the keys live in one Cluster slot.
 *   - Secrets: the password is copied at rds_init into locked memory and never logged.
 *   - Threading: an rds and its callbacks belong to the thread that runs its event base.
 *     rds_worker() returns the calling worker thread's own client (made on first use, freed by
 *     rds_worker_exit() when the worker loop ends). Statistics are process-wide atomics.
 */
#ifndef HG_REDIS_H
#define HG_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

struct hg_config;
struct rds;

/* Consecutive failures that open the circuit. */
#define RDS_TRIP 3

/* A reply, or NULL for a failure (see the rules above). The reply is freed after return. */
typedef void (*rds_reply_fn)(void *arg, const redisReply *reply);

/* Flags of rds_cmdv_ex. */
#define RDS_F_ERRORS 1u    /* pass error replies to the callback instead of NULL */
#define RDS_F_NOTIMEOUT 2u /* no op_timeout (blocking commands bring their own deadline) */

/* Read [redis] of cfg (which need not outlive the call), register metrics and /admin/redis.
 * Before server_start(). Disabled Redis is fine (every rds_* then refuses). 0 or -1. */
int rds_init(const struct hg_config *cfg);
/* After server_stop(): free what is left, wipe the password copy. */
void rds_shutdown(void);
/* 1 when [redis] enabled. */
int rds_enabled(void);
/* [redis] settings after rds_init. */
uint64_t rds_op_timeout_ms(void);
uint64_t rds_max_entry_size(void);
uint64_t rds_stream_maxlen(void);
double rds_local_share(void);

/* fn runs on each worker thread in rds_worker_exit (before its client is freed): modules with
 * per-thread Redis state free it there. Before server_start. Up to 4. */
void rds_at_worker_exit(void (*fn)(void));

/* The calling worker thread's client on base (created, and connecting, on first use); NULL
 * when Redis is disabled. */
struct rds *rds_worker(struct event_base *base);
/* The worker loop of the calling thread ended (its base still exists): free its client. */
void rds_worker_exit(void);

/* A dedicated connection on base, named for logs and /admin (e.g. "tailer"). NULL when
 * disabled. on_ready (may be NULL) runs each time the connection becomes usable (after each
 * successful handshake), e.g. to (re)subscribe. */
struct rds *rds_new(struct event_base *base, const char *name, void (*on_ready)(void *arg),
                    void *arg);
void rds_free(struct rds *r);

/* 1 when the connection is up and its circuit closed: a command would be sent now. */
int rds_usable(const struct rds *r);

/* Send argv (binary-safe; argvlen NULL = strlen). See the rules for the return value. */
int rds_cmdv(struct rds *r, rds_reply_fn fn, void *arg, int argc, const char *const argv[],
             const size_t argvlen[]);
int rds_cmdv_ex(struct rds *r, unsigned flags, rds_reply_fn fn, void *arg, int argc,
                const char *const argv[], const size_t argvlen[]);

/* The same with its own deadline (e.g. XREAD BLOCK n: a little more than n). */
int rds_cmdv_within(struct rds *r, uint64_t timeout_ms, rds_reply_fn fn, void *arg, int argc,
                    const char *const argv[], const size_t argvlen[]);

/* Write what is queued for r to its socket now instead of at the next loop turn: a command
 * sent before the caller goes on (an invalidation before the mutation's answer leaves). */
void rds_flush(struct rds *r);

/* fn(arg) runs on r's thread each time one of r's commands fails (op_timeout) and when r's
 * connection drops (lost, circuit open); NULL to stop. fn must not free r; it should defer
 * heavy work (event_active). */
void rds_on_failure(struct rds *r, void (*fn)(void *arg), void *arg);

/* This thread's worker client if it exists (NULL otherwise; never creates one). */
struct rds *rds_worker_current(void);

/*
 * SUBSCRIBE channel on a dedicated connection (rds_new). fn runs with (channel, payload) for
 * every message, and with (NULL, NULL) when the subscription is lost (the connection went
 * down: messages may have been missed). Call it again from on_ready after a reconnect.
 * 0 sent, -1 not.
 */
typedef void (*rds_message_fn)(void *arg, const char *channel, const char *payload, size_t len);
int rds_subscribe(struct rds *r, const char *channel, rds_message_fn fn, void *arg);

/*
 * Scripts: loaded once per Redis (SCRIPT LOAD on the first NOSCRIPT) and run with EVALSHA; the
 * SHA-1 is computed here, so the first call costs no extra round trip unless Redis lacks the
 * script (new server, SCRIPT FLUSH, failover), which is then handled inside the same deadline.
 */
struct rds_script {
    const char *src;
    char sha[41]; /* filled by rds_script_init */
};
void rds_script_init(struct rds_script *s, const char *src);
/* EVALSHA s->sha nkeys keys... args...: argv holds the keys then the args. */
int rds_eval(struct rds *r, const struct rds_script *s, rds_reply_fn fn, void *arg, int nkeys,
             int argc, const char *const argv[], const size_t argvlen[]);

/* key_prefix + the parts, concatenated into out (NUL-terminated); its length, or 0 when it did
 * not fit. */
size_t rds_key(char *out, size_t cap, const char *a, const char *b);

/* Health for /readyz-like checks and tests: connections up / made. */
void rds_counts(unsigned *up, unsigned *total);

#endif
