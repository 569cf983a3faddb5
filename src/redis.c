/*
 * redis: async Redis connections with per-command deadlines, a circuit breaker, Sentinel
 * discovery and a script helper (see redis.h for the rules).
 *
 * One struct rds is one logical connection: at most one live redisAsyncContext (r->ac) at a
 * time. Every hiredis callback carries the context it was made for and checks r->ac == ac, so
 * callbacks of a context that was dropped (timeout, circuit, failover) are recognised as stale.
 * Every command is a struct rds_op: hiredis holds it until its reply (or NULL when the context
 * dies) and only then frees it; the caller's callback runs once, at the reply or at the
 * deadline, whichever is first (op->answered).
 */
#include "redis.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <openssl/sha.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "admin.h"
#include "check.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define MAX_SENTINELS 8

enum rds_state {
    RDS_DOWN = 0,   /* no context; retry_ev pending */
    RDS_SENTINEL,   /* asking a sentinel for the primary */
    RDS_CONNECTING, /* context made, handshake running */
    RDS_READY,      /* handshake done, circuit closed */
};

#define RDS_MAGIC 0x7d3a91c4u
#define RDS_OP_MAGIC 0x2be6f015u

struct rds {
    unsigned magic; /* RDS_MAGIC: it comes back as hiredis's ac->data */
    struct event_base *base;
    char name[32];
    enum rds_state st;
    redisAsyncContext *ac;  /* the primary (RDS_CONNECTING, RDS_READY) */
    redisAsyncContext *sac; /* a sentinel (RDS_SENTINEL) */
    struct event *retry_ev; /* reconnect after backoff */
    struct event *dl_ev;    /* connect/handshake/sentinel deadline */
    unsigned failures;      /* consecutive */
    unsigned backoff_ms;
    unsigned sentinel_next; /* which sentinel to ask next */
    char host[256];         /* primary address in use */
    int port;
    void (*on_ready)(void *);
    void *ready_arg;
    void (*on_fail)(void *); /* rds_on_failure */
    void *fail_arg;
    rds_message_fn sub_fn; /* rds_subscribe */
    void *sub_arg;
    int counted_up;
    int freeing;
};

/* Process-wide settings, copied at rds_init. */
static struct {
    int enabled;
    char host[256];
    int port;
    char unix_path[256];
    int db;
    char *password; /* mlock'ed copy, NULL = no AUTH */
    size_t password_len;
    size_t password_map;
    char prefix[72];
    uint64_t connect_timeout_ms, op_timeout_ms, max_entry_size, stream_maxlen;
    double local_share;
    struct {
        char host[256];
        int port;
    } sentinels[MAX_SENTINELS];
    unsigned nsentinels;
    char master_name[128];
} G;

static struct {
    atomic_uint_fast64_t ok, err, timeout, refused, lost, connects, connect_fail, circuit_opens,
        sentinel_ok, sentinel_fail, failovers, noscript;
    atomic_uint up, total;
    pthread_mutex_t lock; /* last_master, last_error */
    char last_master[300];
    char last_error[200];
} S = {.lock = PTHREAD_MUTEX_INITIALIZER};

static __thread struct rds *tls_worker;

struct rds_op {
    unsigned magic; /* RDS_OP_MAGIC: it comes back as hiredis's privdata and a timer's arg */
    struct rds *r;
    redisAsyncContext *ac;
    rds_reply_fn fn;
    void *arg;
    struct event *timer;
    unsigned flags;
    int answered;
    int inflight; /* hiredis callbacks still to come for this op */
    /* rds_eval: what to resend after NOSCRIPT */
    const struct rds_script *script;
    int argc;
    char **argv;
    size_t *argvlen;
};

static void rds_connect(struct rds *r);
static void rds_drop(struct rds *r, const char *why, int failure);

static void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&S.lock);
    vsnprintf(S.last_error, sizeof S.last_error, fmt, ap);
    pthread_mutex_unlock(&S.lock);
    va_end(ap);
}

/* ---- configuration ---- */

static int parse_url(const char *url)
{
    if (!strncmp(url, "unix:", 5)) {
        const char *p = url + 5;
        while (p[0] == '/' && p[1] == '/')
            p++; /* unix:///path and unix:/path */
        if (*p != '/' || strlen(p) >= sizeof G.unix_path)
            return -1;
        snprintf(G.unix_path, sizeof G.unix_path, "%s", p);
        return 0;
    }
    if (strncmp(url, "redis://", 8))
        return -1;
    const char *h = url + 8, *at = strchr(h, '@');
    if (at)
        h = at + 1; /* credentials in the URL are not used: password_file */
    const char *end = h + strcspn(h, "/");
    const char *colon = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb)
            return -1;
        snprintf(G.host, sizeof G.host, "%.*s", (int)(rb - h - 1), h + 1);
        colon = rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        snprintf(G.host, sizeof G.host, "%.*s", (int)((colon ? colon : end) - h), h);
    }
    G.port = 6379;
    if (colon) {
        char *e;
        long v = strtol(colon + 1, &e, 10);
        if (e != end || v <= 0 || v > 65535)
            return -1;
        G.port = (int)v;
    }
    if (*end == '/' && end[1]) {
        char *e;
        long v = strtol(end + 1, &e, 10);
        if (*e || v < 0 || v > 1000000)
            return -1;
        G.db = (int)v;
    }
    return G.host[0] ? 0 : -1;
}

static int parse_sentinels(const char *list)
{
    const char *p = list;
    while (*p && G.nsentinels < MAX_SENTINELS) {
        while (*p == ',' || *p == ' ')
            p++;
        size_t n = strcspn(p, ", ");
        if (!n)
            break;
        char one[256];
        if (n >= sizeof one)
            return -1;
        snprintf(one, sizeof one, "%.*s", (int)n, p);
        char *colon = strrchr(one, ':');
        if (!colon)
            return -1;
        *colon = '\0';
        long port = strtol(colon + 1, NULL, 10);
        if (port <= 0 || port > 65535)
            return -1;
        snprintf(G.sentinels[G.nsentinels].host, sizeof G.sentinels[0].host, "%s",
                 one[0] == '[' ? one + 1 : one);
        char *rb = strchr(G.sentinels[G.nsentinels].host, ']');
        if (rb)
            *rb = '\0';
        G.sentinels[G.nsentinels++].port = (int)port;
        p += n;
    }
    return G.nsentinels ? 0 : -1;
}

int rds_enabled(void)
{
    return G.enabled;
}
uint64_t rds_op_timeout_ms(void)
{
    return G.op_timeout_ms;
}
uint64_t rds_max_entry_size(void)
{
    return G.max_entry_size;
}
uint64_t rds_stream_maxlen(void)
{
    return G.stream_maxlen;
}
double rds_local_share(void)
{
    return G.local_share;
}

size_t rds_key(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s%s%s", G.prefix, a ? a : "", b ? b : "");
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

void rds_counts(unsigned *up, unsigned *total)
{
    *up = atomic_load(&S.up);
    *total = atomic_load(&S.total);
}

/* ---- circuit and connection state ---- */

static void mark_up(struct rds *r, int up)
{
    if (up && !r->counted_up) {
        atomic_fetch_add(&S.up, 1);
        r->counted_up = 1;
    } else if (!up && r->counted_up) {
        atomic_fetch_sub(&S.up, 1);
        r->counted_up = 0;
    }
}

static void note_success(struct rds *r)
{
    r->failures = 0;
    r->backoff_ms = 0;
}

/* A failure (timeout, lost connection) of a command on a ready connection. */
static void note_failure(struct rds *r, const char *why)
{
    if (++r->failures >= RDS_TRIP && r->st == RDS_READY) {
        atomic_fetch_add(&S.circuit_opens, 1);
        log_msg(LOG_WARNING, "redis %s: circuit open after %u failures (%s)", r->name, r->failures,
                why);
        rds_drop(r, why, 1);
    }
    if (r->on_fail)
        r->on_fail(r->fail_arg);
}

void rds_on_failure(struct rds *r, void (*fn)(void *arg), void *arg)
{
    if (!r)
        return;
    r->on_fail = fn;
    r->fail_arg = arg;
}

static void schedule_retry(struct rds *r)
{
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (r->backoff_ms > BACKOFF_MAX_MS)
        r->backoff_ms = BACKOFF_MAX_MS;
    /* +-25 % jitter so that a fleet does not reconnect in lockstep */
    unsigned ms = r->backoff_ms * 3 / 4 + (unsigned)(random() % (r->backoff_ms / 2 + 1));
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(r->retry_ev, &tv);
}

static void arm_deadline(struct rds *r, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(r->dl_ev, &tv);
}

/* Drop the contexts (pending commands are answered NULL by hiredis) and go DOWN. */
static void rds_drop(struct rds *r, const char *why, int failure)
{
    redisAsyncContext *ac = r->ac, *sac = r->sac;
    int was_ready = r->st == RDS_READY;
    r->ac = NULL;
    r->sac = NULL;
    r->st = RDS_DOWN;
    mark_up(r, 0);
    event_del(r->dl_ev);
    if (why && was_ready) {
        set_error("%s: %s", r->name, why);
        log_msg(LOG_WARNING, "redis %s: connection dropped: %s", r->name, why);
    }
    if (ac)
        redisAsyncFree(ac); /* runs the pending callbacks with NULL; they see r->ac != ac */
    if (sac)
        redisAsyncFree(sac);
    if (r->sub_fn && was_ready)
        r->sub_fn(r->sub_arg, NULL, NULL, 0);
    if (r->on_fail && was_ready)
        r->on_fail(r->fail_arg);
    if (!r->freeing) {
        if (failure)
            schedule_retry(r);
        else {
            struct timeval now = {0, 0};
            event_add(r->retry_ev, &now);
        }
    }
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rds *r = arg;
    HG_CHECK_OBJ_NOTNULL(r, RDS_MAGIC);
    rds_connect(r);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rds *r = arg;
    HG_CHECK_OBJ_NOTNULL(r, RDS_MAGIC);
    atomic_fetch_add(&S.connect_fail, 1);
    set_error("%s: %s timed out", r->name,
              r->st == RDS_SENTINEL ? "sentinel lookup" : "connect/handshake");
    if (r->st == RDS_SENTINEL)
        atomic_fetch_add(&S.sentinel_fail, 1);
    rds_drop(r, NULL, 1);
}

/* ---- handshake ---- */

static void handshake_fail(struct rds *r, const char *what, const redisReply *rep)
{
    atomic_fetch_add(&S.connect_fail, 1);
    set_error("%s: %s: %s", r->name, what,
              rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "no reply");
    rds_drop(r, NULL, 1);
}

static void hs_step_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rds *r = ac->data;
    HG_CHECK_OBJ(r, RDS_MAGIC);
    const redisReply *rep = reply;
    const char *what = priv;
    if (!r || r->ac != ac || r->st != RDS_CONNECTING)
        return;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        handshake_fail(r, what, rep);
        return;
    }
    if (!strcmp(what, "ROLE")) {
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
            rep->element[0]->type != REDIS_REPLY_STRING || strcmp(rep->element[0]->str, "master")) {
            handshake_fail(r, "ROLE (the sentinel's primary is not a primary yet)", NULL);
            return;
        }
    }
    if (!strcmp(what, "PING")) {
        event_del(r->dl_ev);
        r->st = RDS_READY;
        note_success(r);
        mark_up(r, 1);
        atomic_fetch_add(&S.connects, 1);
        pthread_mutex_lock(&S.lock);
        if (G.unix_path[0])
            snprintf(S.last_master, sizeof S.last_master, "unix:%s", G.unix_path);
        else
            snprintf(S.last_master, sizeof S.last_master, "%s:%d", r->host, r->port);
        pthread_mutex_unlock(&S.lock);
        log_msg(LOG_INFO, "redis %s: connected to %s:%d", r->name, r->host, r->port);
        if (r->on_ready)
            r->on_ready(r->ready_arg);
    }
}

static void connect_cb(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct rds *r = ac->data;
    HG_CHECK_OBJ(r, RDS_MAGIC);
    if (!r || r->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees ac after this callback */
        r->ac = NULL;
        atomic_fetch_add(&S.connect_fail, 1);
        set_error("%s: connect: %s", r->name, ac->errstr);
        r->st = RDS_DOWN;
        event_del(r->dl_ev);
        schedule_retry(r);
        return;
    }
    if (G.password) {
        const char *argv[2] = {"AUTH", G.password};
        size_t lens[2] = {4, G.password_len};
        redisAsyncCommandArgv(ac, hs_step_cb, (void *)"AUTH", 2, argv, lens);
    }
    if (G.db)
        redisAsyncCommand(ac, hs_step_cb, (void *)"SELECT", "SELECT %d", G.db);
    if (G.nsentinels)
        redisAsyncCommand(ac, hs_step_cb, (void *)"ROLE", "ROLE");
    redisAsyncCommand(ac, hs_step_cb, (void *)"PING", "PING");
}

static void disconnect_cb(const redisAsyncContext *cac, int status)
{
    (void)status;
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct rds *r = ac->data;
    HG_CHECK_OBJ(r, RDS_MAGIC);
    if (!r || r->ac != ac)
        return;
    /* hiredis frees ac after this callback */
    r->ac = NULL;
    atomic_fetch_add(&S.lost, 1);
    rds_drop(r, ac->errstr[0] ? ac->errstr : "connection closed", 1);
}

static void open_primary(struct rds *r)
{
    redisAsyncContext *ac =
        G.unix_path[0] ? redisAsyncConnectUnix(G.unix_path) : redisAsyncConnect(r->host, r->port);
    if (!ac || ac->err) {
        atomic_fetch_add(&S.connect_fail, 1);
        set_error("%s: connect: %s", r->name, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        r->st = RDS_DOWN;
        schedule_retry(r);
        return;
    }
    ac->data = r;
    r->ac = ac;
    r->st = RDS_CONNECTING;
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    arm_deadline(r, G.connect_timeout_ms + G.op_timeout_ms);
}

/* ---- Sentinel ---- */

static void sentinel_next(struct rds *r)
{
    r->sentinel_next = (r->sentinel_next + 1) % G.nsentinels;
}

static void sentinel_reply_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    struct rds *r = ac->data;
    HG_CHECK_OBJ(r, RDS_MAGIC);
    const redisReply *rep = reply;
    if (!r || r->sac != ac || r->st != RDS_SENTINEL)
        return;
    r->sac = NULL;
    event_del(r->dl_ev);
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_STRING) {
        atomic_fetch_add(&S.sentinel_fail, 1);
        set_error("%s: sentinel %s:%d does not know master '%s'", r->name,
                  G.sentinels[r->sentinel_next].host, G.sentinels[r->sentinel_next].port,
                  G.master_name);
        sentinel_next(r);
        redisAsyncDisconnect(ac);
        r->st = RDS_DOWN;
        schedule_retry(r);
        return;
    }
    atomic_fetch_add(&S.sentinel_ok, 1);
    char prev[300];
    snprintf(prev, sizeof prev, "%s:%d", r->host, r->port);
    snprintf(r->host, sizeof r->host, "%s", rep->element[0]->str);
    r->port = atoi(rep->element[1]->str);
    char now[300];
    snprintf(now, sizeof now, "%s:%d", r->host, r->port);
    if (strcmp(prev, ":0") && strcmp(prev, now)) {
        atomic_fetch_add(&S.failovers, 1);
        log_msg(LOG_WARNING, "redis %s: primary moved from %s to %s (Sentinel)", r->name, prev,
                now);
    }
    redisAsyncDisconnect(ac); /* frees it once this callback returns */
    open_primary(r);
}

static void sentinel_connect_cb(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct rds *r = ac->data;
    HG_CHECK_OBJ(r, RDS_MAGIC);
    if (!r || r->sac != ac)
        return;
    if (status != REDIS_OK) {
        r->sac = NULL;
        atomic_fetch_add(&S.sentinel_fail, 1);
        set_error("%s: sentinel %s:%d: %s", r->name, G.sentinels[r->sentinel_next].host,
                  G.sentinels[r->sentinel_next].port, ac->errstr);
        sentinel_next(r);
        r->st = RDS_DOWN;
        event_del(r->dl_ev);
        schedule_retry(r);
    }
}

static void sentinel_disconnect_cb(const redisAsyncContext *cac, int status)
{
    (void)status;
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct rds *r = ac->data;
    HG_CHECK_OBJ(r, RDS_MAGIC);
    if (!r || r->sac != ac)
        return;
    r->sac = NULL; /* the reply callback (NULL) already handled it, or will not come */
}

static void ask_sentinel(struct rds *r)
{
    const char *h = G.sentinels[r->sentinel_next].host;
    int port = G.sentinels[r->sentinel_next].port;
    redisAsyncContext *ac = redisAsyncConnect(h, port);
    if (!ac || ac->err) {
        atomic_fetch_add(&S.sentinel_fail, 1);
        if (ac)
            redisAsyncFree(ac);
        sentinel_next(r);
        r->st = RDS_DOWN;
        schedule_retry(r);
        return;
    }
    ac->data = r;
    r->sac = ac;
    r->st = RDS_SENTINEL;
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, sentinel_connect_cb);
    redisAsyncSetDisconnectCallback(ac, sentinel_disconnect_cb);
    const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", G.master_name};
    redisAsyncCommandArgv(ac, sentinel_reply_cb, NULL, 3, argv, NULL);
    arm_deadline(r, G.connect_timeout_ms + G.op_timeout_ms);
}

static void rds_connect(struct rds *r)
{
    if (r->st != RDS_DOWN || r->freeing)
        return;
    if (G.nsentinels)
        ask_sentinel(r);
    else
        open_primary(r);
}

/* ---- lifecycle ---- */

static struct rds *rds_make(struct event_base *base, const char *name)
{
    struct rds *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    HG_OBJ_INIT(r, RDS_MAGIC);
    r->base = base;
    snprintf(r->name, sizeof r->name, "%s", name);
    r->retry_ev = evtimer_new(base, retry_cb, r);
    r->dl_ev = evtimer_new(base, deadline_cb, r);
    if (!r->retry_ev || !r->dl_ev)
        abort();
    if (!G.nsentinels) {
        snprintf(r->host, sizeof r->host, "%s", G.host);
        r->port = G.port;
    }
    atomic_fetch_add(&S.total, 1);
    rds_connect(r);
    return r;
}

struct rds *rds_new(struct event_base *base, const char *name, void (*on_ready)(void *arg),
                    void *arg)
{
    if (!G.enabled)
        return NULL;
    struct rds *r = rds_make(base, name);
    r->on_ready = on_ready;
    r->ready_arg = arg;
    return r;
}

void rds_free(struct rds *r)
{
    if (!r)
        return;
    r->freeing = 1;
    r->sub_fn = NULL;
    rds_drop(r, NULL, 0);
    event_free(r->retry_ev);
    event_free(r->dl_ev);
    atomic_fetch_sub(&S.total, 1);
    HG_OBJ_FINI(r);
    free(r);
}

struct rds *rds_worker(struct event_base *base)
{
    if (!G.enabled)
        return NULL;
    if (!tls_worker)
        tls_worker = rds_make(base, "worker");
    return tls_worker;
}

static void (*s_exit_fns[4])(void);
static int s_n_exit_fns;

void rds_at_worker_exit(void (*fn)(void))
{
    for (int i = 0; i < s_n_exit_fns; i++)
        if (s_exit_fns[i] == fn)
            return;
    if (s_n_exit_fns < 4)
        s_exit_fns[s_n_exit_fns++] = fn;
}

void rds_worker_exit(void)
{
    for (int i = 0; i < s_n_exit_fns; i++)
        s_exit_fns[i]();
    rds_free(tls_worker);
    tls_worker = NULL;
}

int rds_usable(const struct rds *r)
{
    return r && r->st == RDS_READY && r->ac;
}

/* ---- commands ---- */

static void op_free(struct rds_op *op)
{
    HG_OBJ_FINI(op);
    if (op->timer)
        event_free(op->timer);
    for (int i = 0; i < op->argc; i++)
        free(op->argv[i]);
    free(op->argv);
    free(op->argvlen);
    free(op);
}

static void op_answer(struct rds_op *op, const redisReply *rep)
{
    if (op->answered)
        return;
    op->answered = 1;
    if (op->timer)
        event_del(op->timer);
    op->fn(op->arg, rep);
}

static void op_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rds_op *op = arg;
    HG_CHECK_OBJ_NOTNULL(op, RDS_OP_MAGIC);
    struct rds *r = op->r;
    atomic_fetch_add(&S.timeout, 1);
    op_answer(op, NULL);
    if (r->ac == op->ac)
        note_failure(r, "op_timeout");
}

static int op_send(struct rds_op *op, int argc, const char *const argv[], const size_t lens[]);

static void op_reply_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rds_op *op = priv;
    HG_CHECK_OBJ_NOTNULL(op, RDS_OP_MAGIC);
    struct rds *r = ac->data;
    HG_CHECK_OBJ(r, RDS_MAGIC);
    HG_CHECK_OBJ(r, RDS_MAGIC);
    const redisReply *rep = reply;
    op->inflight--;
    int live = r && r->ac == ac;
    if (!rep) {
        op_answer(op, NULL);
    } else if (rep->type == REDIS_REPLY_ERROR) {
        if (op->script && !op->answered && !strncmp(rep->str, "NOSCRIPT", 8) && live) {
            /* load it and run it again, inside the same deadline */
            atomic_fetch_add(&S.noscript, 1);
            const char *la[3] = {"SCRIPT", "LOAD", op->script->src};
            redisAsyncCommandArgv(ac, NULL, NULL, 3, la, NULL);
            op->script = NULL; /* once */
            if (op_send(op, op->argc, (const char *const *)op->argv, op->argvlen) == 0)
                return;
            op_answer(op, NULL);
        } else {
            atomic_fetch_add(&S.err, 1);
            if (!strncmp(rep->str, "READONLY", 8) && live) {
                /* the primary became a replica: find the new one */
                op_answer(op, (op->flags & RDS_F_ERRORS) ? rep : NULL);
                if (op->inflight == 0)
                    op_free(op);
                if (r->ac == ac)
                    rds_drop(r, "READONLY (failover)", 0);
                return;
            }
            op_answer(op, (op->flags & RDS_F_ERRORS) ? rep : NULL);
        }
    } else {
        if (!op->answered) {
            atomic_fetch_add(&S.ok, 1);
            if (live)
                note_success(r);
        }
        op_answer(op, rep);
    }
    if (op->inflight == 0)
        op_free(op);
}

static int op_send(struct rds_op *op, int argc, const char *const argv[], const size_t lens[])
{
    if (redisAsyncCommandArgv(op->ac, op_reply_cb, op, argc, (const char **)argv, lens) != REDIS_OK)
        return -1;
    op->inflight++;
    return 0;
}

static struct rds_op *op_new(struct rds *r, unsigned flags, rds_reply_fn fn, void *arg)
{
    struct rds_op *op = calloc(1, sizeof *op);
    if (!op)
        abort();
    HG_OBJ_INIT(op, RDS_OP_MAGIC);
    op->r = r;
    op->ac = r->ac;
    op->fn = fn;
    op->arg = arg;
    op->flags = flags;
    return op;
}

static int op_start(struct rds_op *op, int argc, const char *const argv[], const size_t lens[],
                    uint64_t timeout_ms)
{
    struct rds *r = op->r;
    if (op_send(op, argc, argv, lens) != 0) {
        atomic_fetch_add(&S.refused, 1);
        op_free(op);
        return -1;
    }
    if (!(op->flags & RDS_F_NOTIMEOUT)) {
        op->timer = evtimer_new(r->base, op_timeout_cb, op);
        struct timeval tv = {(time_t)(timeout_ms / 1000),
                             (suseconds_t)((timeout_ms % 1000) * 1000)};
        evtimer_add(op->timer, &tv);
    }
    return 0;
}

int rds_cmdv_ex(struct rds *r, unsigned flags, rds_reply_fn fn, void *arg, int argc,
                const char *const argv[], const size_t argvlen[])
{
    if (!rds_usable(r)) {
        atomic_fetch_add(&S.refused, 1);
        return -1;
    }
    return op_start(op_new(r, flags, fn, arg), argc, argv, argvlen, G.op_timeout_ms);
}

int rds_cmdv_within(struct rds *r, uint64_t timeout_ms, rds_reply_fn fn, void *arg, int argc,
                    const char *const argv[], const size_t argvlen[])
{
    if (!rds_usable(r)) {
        atomic_fetch_add(&S.refused, 1);
        return -1;
    }
    return op_start(op_new(r, 0, fn, arg), argc, argv, argvlen, timeout_ms);
}

void rds_flush(struct rds *r)
{
    if (rds_usable(r))
        redisAsyncHandleWrite(r->ac);
}

struct rds *rds_worker_current(void)
{
    return tls_worker;
}

int rds_cmdv(struct rds *r, rds_reply_fn fn, void *arg, int argc, const char *const argv[],
             const size_t argvlen[])
{
    return rds_cmdv_ex(r, 0, fn, arg, argc, argv, argvlen);
}

void rds_script_init(struct rds_script *s, const char *src)
{
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)src, strlen(src), md);
    s->src = src;
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
}

int rds_eval(struct rds *r, const struct rds_script *s, rds_reply_fn fn, void *arg, int nkeys,
             int argc, const char *const argv[], const size_t argvlen[])
{
    if (!rds_usable(r)) {
        atomic_fetch_add(&S.refused, 1);
        return -1;
    }
    struct rds_op *op = op_new(r, 0, fn, arg);
    op->script = s;
    op->argc = argc + 3;
    op->argv = calloc((size_t)op->argc, sizeof *op->argv);
    op->argvlen = calloc((size_t)op->argc, sizeof *op->argvlen);
    if (!op->argv || !op->argvlen)
        abort();
    char nk[16];
    snprintf(nk, sizeof nk, "%d", nkeys);
    const char *head[3] = {"EVALSHA", s->sha, nk};
    for (int i = 0; i < op->argc; i++) {
        const char *src = i < 3 ? head[i] : argv[i - 3];
        size_t len = i < 3 ? strlen(src) : argvlen ? argvlen[i - 3] : strlen(src);
        op->argv[i] = malloc(len + 1);
        if (!op->argv[i])
            abort();
        memcpy(op->argv[i], src, len);
        op->argv[i][len] = '\0';
        op->argvlen[i] = len;
    }
    return op_start(op, op->argc, (const char *const *)op->argv, op->argvlen, G.op_timeout_ms);
}

/* ---- pub/sub ---- */

static void sub_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    struct rds *r = ac->data;
    HG_CHECK_OBJ(r, RDS_MAGIC);
    const redisReply *rep = reply;
    if (!r || r->ac != ac || !r->sub_fn)
        return;
    if (!rep)
        return; /* the drop tells sub_fn */
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
        rep->element[0]->type == REDIS_REPLY_STRING && !strcmp(rep->element[0]->str, "message") &&
        rep->element[2]->type == REDIS_REPLY_STRING)
        r->sub_fn(r->sub_arg, rep->element[1]->str, rep->element[2]->str,
                  (size_t)rep->element[2]->len);
}

int rds_subscribe(struct rds *r, const char *channel, rds_message_fn fn, void *arg)
{
    if (!rds_usable(r))
        return -1;
    r->sub_fn = fn;
    r->sub_arg = arg;
    const char *argv[2] = {"SUBSCRIBE", channel};
    return redisAsyncCommandArgv(r->ac, sub_cb, NULL, 2, argv, NULL) == REDIS_OK ? 0 : -1;
}

/* ---- metrics and /admin/redis ---- */

static void rds_metrics(struct evbuffer *out, void *arg)
{
    (void)arg;
    if (!G.enabled)
        return;
    evbuffer_add_printf(
        out,
        "# HELP hotgate_redis_connections_up Redis connections ready (handshake done, circuit "
        "closed).\n# TYPE hotgate_redis_connections_up gauge\nhotgate_redis_connections_up %u\n"
        "# HELP hotgate_redis_connections Redis connections hotgate keeps (one per worker + "
        "dedicated).\n# TYPE hotgate_redis_connections gauge\nhotgate_redis_connections %u\n"
        "# HELP hotgate_redis_commands_total Redis commands by result (refused: not sent, the "
        "connection was down or its circuit open).\n"
        "# TYPE hotgate_redis_commands_total counter\n"
        "hotgate_redis_commands_total{result=\"ok\"} %llu\n"
        "hotgate_redis_commands_total{result=\"error\"} %llu\n"
        "hotgate_redis_commands_total{result=\"timeout\"} %llu\n"
        "hotgate_redis_commands_total{result=\"refused\"} %llu\n"
        "# HELP hotgate_redis_connects_total Redis connection attempts by result.\n"
        "# TYPE hotgate_redis_connects_total counter\n"
        "hotgate_redis_connects_total{result=\"ok\"} %llu\n"
        "hotgate_redis_connects_total{result=\"failed\"} %llu\n"
        "# HELP hotgate_redis_disconnects_total Ready Redis connections lost.\n"
        "# TYPE hotgate_redis_disconnects_total counter\nhotgate_redis_disconnects_total %llu\n"
        "# HELP hotgate_redis_circuit_opens_total Times a connection's circuit opened.\n"
        "# TYPE hotgate_redis_circuit_opens_total counter\n"
        "hotgate_redis_circuit_opens_total %llu\n"
        "# HELP hotgate_redis_sentinel_lookups_total Primary lookups through Sentinel.\n"
        "# TYPE hotgate_redis_sentinel_lookups_total counter\n"
        "hotgate_redis_sentinel_lookups_total{result=\"ok\"} %llu\n"
        "hotgate_redis_sentinel_lookups_total{result=\"failed\"} %llu\n"
        "# HELP hotgate_redis_failovers_total Primary address changes seen through Sentinel.\n"
        "# TYPE hotgate_redis_failovers_total counter\nhotgate_redis_failovers_total %llu\n"
        "# HELP hotgate_redis_script_loads_total Scripts (re)loaded after NOSCRIPT.\n"
        "# TYPE hotgate_redis_script_loads_total counter\nhotgate_redis_script_loads_total %llu\n",
        atomic_load(&S.up), atomic_load(&S.total), (unsigned long long)atomic_load(&S.ok),
        (unsigned long long)atomic_load(&S.err), (unsigned long long)atomic_load(&S.timeout),
        (unsigned long long)atomic_load(&S.refused), (unsigned long long)atomic_load(&S.connects),
        (unsigned long long)atomic_load(&S.connect_fail), (unsigned long long)atomic_load(&S.lost),
        (unsigned long long)atomic_load(&S.circuit_opens),
        (unsigned long long)atomic_load(&S.sentinel_ok),
        (unsigned long long)atomic_load(&S.sentinel_fail),
        (unsigned long long)atomic_load(&S.failovers),
        (unsigned long long)atomic_load(&S.noscript));
}

static void json_str(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            evbuffer_add_printf(out, "\\%c", c);
        else if (c < 0x20)
            evbuffer_add_printf(out, "\\u%04x", c);
        else
            evbuffer_add(out, s, 1);
    }
    evbuffer_add(out, "\"", 1);
}

static void admin_redis(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evbuffer *out = evbuffer_new();
    char master[300], err[200];
    pthread_mutex_lock(&S.lock);
    snprintf(master, sizeof master, "%s", S.last_master);
    snprintf(err, sizeof err, "%s", S.last_error);
    pthread_mutex_unlock(&S.lock);
    unsigned up = atomic_load(&S.up), total = atomic_load(&S.total);
    evbuffer_add_printf(out,
                        "{\"enabled\":%s,\"status\":\"%s\",\"connections_up\":%u,"
                        "\"connections\":%u,\"primary\":",
                        G.enabled ? "true" : "false",
                        !G.enabled   ? "disabled"
                        : up == 0    ? "down"
                        : up < total ? "degraded"
                                     : "up",
                        up, total);
    json_str(out, master);
    evbuffer_add_printf(out, ",\"sentinel\":%s,\"key_prefix\":", G.nsentinels ? "true" : "false");
    json_str(out, G.prefix);
    evbuffer_add_printf(
        out, ",\"op_timeout_ms\":%llu,\"last_error\":", (unsigned long long)G.op_timeout_ms);
    json_str(out, err);
    evbuffer_add_printf(
        out,
        ",\"commands\":{\"ok\":%llu,\"error\":%llu,\"timeout\":%llu,"
        "\"refused\":%llu},\"circuit_opens\":%llu,\"failovers\":%llu}\n",
        (unsigned long long)atomic_load(&S.ok), (unsigned long long)atomic_load(&S.err),
        (unsigned long long)atomic_load(&S.timeout), (unsigned long long)atomic_load(&S.refused),
        (unsigned long long)atomic_load(&S.circuit_opens),
        (unsigned long long)atomic_load(&S.failovers));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

/* ---- init ---- */

int rds_init(const struct hg_config *cfg)
{
    static int registered;
    rds_shutdown();
    memset(&G, 0, sizeof G);
    G.enabled = cfg->redis.enabled;
    if (!registered) {
        registered = 1;
        metrics_register(rds_metrics, NULL);
        admin_register("/admin/redis", admin_redis, NULL);
    }
    if (!G.enabled)
        return 0;
    if (parse_url(cfg->redis.url) != 0) {
        log_msg(LOG_ERR, "[redis] url %s: cannot read host, port and db", cfg->redis.url);
        return -1;
    }
    snprintf(G.prefix, sizeof G.prefix, "%s", cfg->redis.key_prefix ? cfg->redis.key_prefix : "");
    G.connect_timeout_ms = cfg->redis.connect_timeout_ms;
    G.op_timeout_ms = cfg->redis.op_timeout_ms ? cfg->redis.op_timeout_ms : 50;
    G.max_entry_size = cfg->redis.max_entry_size;
    G.stream_maxlen = cfg->redis.stream_maxlen;
    G.local_share = cfg->redis.local_share;
    if (cfg->redis.sentinel) {
        if (parse_sentinels(cfg->redis.sentinel) != 0) {
            log_msg(LOG_ERR, "[redis] sentinel %s: expected host:port[,host:port...]",
                    cfg->redis.sentinel);
            return -1;
        }
        snprintf(G.master_name, sizeof G.master_name, "%s",
                 cfg->redis.sentinel_master ? cfg->redis.sentinel_master : "");
    }
    if (cfg->redis.password.data && cfg->redis.password.len) {
        long pg = sysconf(_SC_PAGESIZE);
        size_t map = ((cfg->redis.password.len + 1 + (size_t)pg - 1) / (size_t)pg) * (size_t)pg;
        void *m = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return -1;
        madvise(m, map, MADV_DONTDUMP);
        (void)mlock(m, map);
        memcpy(m, cfg->redis.password.data, cfg->redis.password.len);
        G.password = m;
        G.password_len = cfg->redis.password.len;
        G.password_map = map;
    }
    return 0;
}

void rds_shutdown(void)
{
    if (G.password) {
        explicit_bzero(G.password, G.password_len);
        munlock(G.password, G.password_map);
        munmap(G.password, G.password_map);
        G.password = NULL;
    }
}
