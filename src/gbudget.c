/*
 * gbudget: see gbudget.h.
 *
 * An ask is one EVALSHA "take" on the budget thread's own connection; its reply (or its
 * failure, at op_timeout at the latest) goes back through budget_global_answer on the same
 * thread. Sheds and releases arrive on worker threads: they are queued under a mutex and sent
 * by an event on the budget thread; a lost release costs a slot until its lease expires, a
 * lost shed only means the other instances learn of the upstream's pause from their own 429.
 */
#include "gbudget.h"

#include <event2/event.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"

#define GB_KEY_MAX 512
#define GB_NAME_MAX 128

/* Times in ms from redis.call('TIME'). A pause ("p") only ever grows; an emptying shed also
 * empties the bucket and starts its refill at the end of the pause (ts in the future). */
static const char GB_LUA[] =
    "if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000\n"
    "local op = ARGV[1]\n"
    "if op == 'shed' then\n"
    "  local ms = tonumber(ARGV[2])\n"
    "  if redis.call('PTTL', KEYS[2]) < ms then\n"
    "    redis.call('SET', KEYS[2], '1', 'PX', ms)\n"
    "  end\n"
    "  if ARGV[3] == '1' then\n"
    "    redis.call('HSET', KEYS[1], 'tokens', 0, 'ts', now + ms)\n"
    "    redis.call('PEXPIRE', KEYS[1], ms + 3600000)\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    "if op == 'release' then\n"
    "  redis.call('ZREM', KEYS[3], ARGV[2])\n"
    "  return 1\n"
    "end\n"
    "local pt = redis.call('PTTL', KEYS[2])\n"
    "if pt > 0 then return {0, 0, pt, 0} end\n"
    "local rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local want, cap, lease = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local tokens = want\n"
    "local ts = now\n"
    "if rate > 0 then\n"
    "  local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
    "  tokens, ts = tonumber(h[1]), tonumber(h[2])\n"
    "  if not tokens or not ts then tokens, ts = burst, now end\n"
    "  if now > ts then\n"
    "    tokens = math.min(burst, tokens + (now - ts) * rate / 1000)\n"
    "    ts = now\n"
    "  end\n"
    "  local debt = tonumber(ARGV[8]) or 0\n"
    "  if debt > 0 then tokens = math.max(-burst, tokens - debt) end\n"
    "end\n"
    "local n = math.min(want, math.floor(tokens + 1e-9))\n"
    "if n < 0 then n = 0 end\n"
    "local retry = 0\n"
    "if cap > 0 then\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)\n"
    "  local free = cap - redis.call('ZCARD', KEYS[3])\n"
    "  if free < n then\n"
    "    n = math.max(0, free)\n"
    "    retry = 20\n"
    "  end\n"
    "end\n"
    "local first = 0\n"
    "if rate > 0 then\n"
    "  tokens = tokens - n\n"
    "  redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', ts)\n"
    "  redis.call('PEXPIRE', KEYS[1], 3600000)\n"
    "  if n < want and tokens < 1 then\n"
    "    retry = math.max(retry, math.ceil((1 - tokens) * 1000 / rate))\n"
    "  end\n"
    "end\n"
    "if n > 0 and cap > 0 then\n"
    "  local last = redis.call('HINCRBY', KEYS[1], 'seq', n)\n"
    "  first = last - n + 1\n"
    "  for i = first, last do\n"
    "    redis.call('ZADD', KEYS[3], now + lease, ARGV[7] .. ':' .. i)\n"
    "  end\n"
    "  redis.call('PEXPIRE', KEYS[3], lease + 60000)\n"
    "end\n"
    "return {n, retry, 0, first}\n";

static struct rds_script s_budget;

typedef struct gb_op {
    struct gb_op *next;
    int release; /* 1: release slot, 0: shed */
    uint64_t ms, slot;
    int empty;
    char cred[GB_NAME_MAX];
} gb_op;

struct gbudget {
    budget *b;
    struct rds *r; /* made on the budget thread at the first ask */
    char owner[17];
    uint64_t lease_ms;
    pthread_mutex_t mu;
    gb_op *ops; /* queued sheds and releases */
    struct event *flush_ev;
};

typedef struct gb_ask {
    gbudget *g;
    char cred[GB_NAME_MAX];
} gb_ask;

const char *gbudget_script(void)
{
    return GB_LUA;
}

/* The three keys of cred into k[0..2] (0 when a name does not fit). */
static int keys_of(const char *cred, char k[3][GB_KEY_MAX])
{
    char tag[GB_NAME_MAX + 16];
    if ((size_t)snprintf(tag, sizeof tag, "budget:{%s}", cred) >= sizeof tag)
        return 0;
    return rds_key(k[0], GB_KEY_MAX, tag, ":b") && rds_key(k[1], GB_KEY_MAX, tag, ":p") &&
           rds_key(k[2], GB_KEY_MAX, tag, ":s");
}

static long long reply_int(const redisReply *e)
{
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer;
    if (e->type == REDIS_REPLY_STRING)
        return strtoll(e->str, NULL, 10);
    return -1;
}

static void on_take(void *arg, const redisReply *reply)
{
    gb_ask *a = arg;
    long long v[4] = {-1, -1, -1, -1};
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 4)
        for (int i = 0; i < 4; i++)
            v[i] = reply_int(reply->element[i]);
    int ok = v[0] >= 0 && v[1] >= 0 && v[2] >= 0 && v[3] >= 0;
    budget_global_answer(a->g->b, a->cred, ok ? (unsigned)v[0] : 0, ok ? (uint64_t)v[3] : 0,
                         ok ? (uint64_t)v[1] : 0, ok ? (uint64_t)v[2] : 0, !ok);
    free(a);
}

static int gb_ask_fn(void *arg, const char *cred, unsigned want, double rate, double burst,
                     unsigned cap, unsigned debt)
{
    gbudget *g = arg;
    if (!g->r)
        g->r = rds_new(budget_event_base(g->b), "budget", NULL, NULL);
    char k[3][GB_KEY_MAX];
    if (!g->r || !rds_usable(g->r) || strlen(cred) >= GB_NAME_MAX || !keys_of(cred, k))
        return -1;
    char srate[32], sburst[32], swant[16], scap[16], slease[24], sdebt[16];
    snprintf(sdebt, sizeof sdebt, "%u", debt);
    snprintf(srate, sizeof srate, "%.6f", rate > 0 ? rate : 0);
    snprintf(sburst, sizeof sburst, "%.6f", burst >= 1 ? burst : 1);
    snprintf(swant, sizeof swant, "%u", want);
    snprintf(scap, sizeof scap, "%u", cap);
    snprintf(slease, sizeof slease, "%llu", (unsigned long long)g->lease_ms);
    const char *argv[] = {k[0],  k[1], k[2],   "take",   srate, sburst,
                          swant, scap, slease, g->owner, sdebt};
    gb_ask *a = calloc(1, sizeof *a);
    if (!a)
        abort();
    a->g = g;
    snprintf(a->cred, sizeof a->cred, "%s", cred);
    if (rds_eval(g->r, &s_budget, on_take, a, 3, 11, argv, NULL) != 0) {
        free(a);
        return -1;
    }
    return 0;
}

static void queue_op(gbudget *g, gb_op *op)
{
    if (!g->flush_ev) { /* stopped */
        free(op);
        return;
    }
    pthread_mutex_lock(&g->mu);
    op->next = g->ops;
    g->ops = op;
    pthread_mutex_unlock(&g->mu);
    event_active(g->flush_ev, EV_TIMEOUT, 1);
}

static void gb_shed_fn(void *arg, const char *cred, uint64_t ms, int empty)
{
    gb_op *op = calloc(1, sizeof *op);
    if (!op)
        abort();
    op->ms = ms;
    op->empty = empty;
    snprintf(op->cred, sizeof op->cred, "%s", cred);
    queue_op(arg, op);
}

static void gb_release_fn(void *arg, const char *cred, uint64_t slot)
{
    gb_op *op = calloc(1, sizeof *op);
    if (!op)
        abort();
    op->release = 1;
    op->slot = slot;
    snprintf(op->cred, sizeof op->cred, "%s", cred);
    queue_op(arg, op);
}

static void op_done(void *arg, const redisReply *reply)
{
    (void)arg;
    (void)reply; /* best effort: see the module comment */
}

static void send_op(gbudget *g, const gb_op *op)
{
    char k[3][GB_KEY_MAX], a1[96], a2[8];
    if (!g->r || !rds_usable(g->r) || !keys_of(op->cred, k))
        return;
    if (op->release)
        snprintf(a1, sizeof a1, "%s:%llu", g->owner, (unsigned long long)op->slot);
    else
        snprintf(a1, sizeof a1, "%llu", (unsigned long long)op->ms);
    snprintf(a2, sizeof a2, "%d", op->empty);
    const char *argv[] = {k[0], k[1], k[2], op->release ? "release" : "shed", a1, a2};
    rds_eval(g->r, &s_budget, op_done, NULL, 3, op->release ? 5 : 6, argv, NULL);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gbudget *g = arg;
    if (!g->r) /* made here, on the budget thread (gbudget_new kicks this once) */
        g->r = rds_new(budget_event_base(g->b), "budget", NULL, NULL);
    pthread_mutex_lock(&g->mu);
    gb_op *list = g->ops;
    g->ops = NULL;
    pthread_mutex_unlock(&g->mu);
    while (list) {
        gb_op *op = list;
        list = op->next;
        send_op(g, op);
        free(op);
    }
}

static void gb_stop_fn(void *arg)
{
    gbudget *g = arg;
    rds_free(g->r);
    g->r = NULL;
    if (g->flush_ev)
        event_free(g->flush_ev);
    g->flush_ev = NULL;
}

static const budget_global_ops GB_OPS = {gb_ask_fn, gb_shed_fn, gb_release_fn, gb_stop_fn};

const budget_global_ops *gbudget_ops(void)
{
    return &GB_OPS;
}

gbudget *gbudget_new(budget *b, uint64_t lease_ms, int connect_now)
{
    if (!rds_enabled() || !budget_event_base(b))
        return NULL;
    rds_script_init(&s_budget, GB_LUA);
    gbudget *g = calloc(1, sizeof *g);
    if (!g)
        abort();
    g->b = b;
    g->lease_ms = lease_ms ? lease_ms : 60000;
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        abort();
    for (int i = 0; i < 8; i++)
        snprintf(g->owner + 2 * i, 3, "%02x", rnd[i]);
    pthread_mutex_init(&g->mu, NULL);
    g->flush_ev = event_new(budget_event_base(b), -1, 0, flush_cb, g);
    if (!g->flush_ev)
        abort();
    if (connect_now) /* connect now, not at the first ask */
        event_active(g->flush_ev, EV_TIMEOUT, 1);
    return g;
}

void gbudget_free(gbudget *g)
{
    if (!g)
        return;
    gb_op *op = g->ops;
    while (op) {
        gb_op *n = op->next;
        free(op);
        op = n;
    }
    pthread_mutex_destroy(&g->mu);
    free(g);
}
