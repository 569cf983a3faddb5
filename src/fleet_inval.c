/*
 * fleet_inval: invalidation stream publish, queue and tailer (see fleet_inval.h).
 */
#include "fleet_inval.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/rand.h>

#include "entry.h"
#include "log.h"
#include "redis.h"

#define QUEUE_MAX 256
#define READ_BLOCK_MS 1000
#define RETRY_MS 100
#define READ_COUNT "256"

/* HINCRBY the slots, XADD the tags; creates the generation epoch when the hash is new. */
static const char PUBLISH_LUA[] =
    "if redis.call('HEXISTS', KEYS[1], 'epoch') == 0 then\n"
    "  redis.call('HSET', KEYS[1], 'epoch', ARGV[3])\n"
    "end\n"
    "for i = 5, #ARGV do redis.call('HINCRBY', KEYS[1], ARGV[i], 1) end\n"
    "return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'o', ARGV[1], 't', ARGV[4])\n";

static struct rds_script s_publish;

typedef struct sid {
    uint64_t ms, seq;
} sid;

static struct {
    int running;
    struct fleet_inval_hooks hooks;
    char me[17];
    pthread_t thread;
    struct event_base *base;
    struct event *stop_ev, *read_ev, *drain_ev;
    struct rds *tail, *cmd;
    /* tailer state (tailer thread only) */
    int pos_known, ever_attached;
    sid pos;
    atomic_int attached;
    /* queue of unpublished invalidations: "*" or tags joined by '\n' */
    pthread_mutex_t qlock;
    char *queue[QUEUE_MAX];
    uint64_t qseq[QUEUE_MAX]; /* identity of each entry, so a drain never removes another */
    uint64_t next_seq;
    size_t qn;
    int draining;
    atomic_uint_fast64_t published, unacked, queued, applied, lost, remote_entries;
} F = {.qlock = PTHREAD_MUTEX_INITIALIZER};

const char *fleet_instance_id(void)
{
    return F.me;
}

uint32_t fleet_slot(const char *scoped)
{
    uint64_t h = entry_hash64(scoped, strlen(scoped), 0x6c32676e73ULL);
    return 1u + (uint32_t)(h % 65534u);
}

size_t fleet_gens_key(char *out, size_t cap)
{
    return rds_key(out, cap, "{fleet}", "gens");
}
size_t fleet_stream_key(char *out, size_t cap)
{
    return rds_key(out, cap, "{fleet}", "inval");
}
int fleet_inval_attached(void)
{
    return atomic_load(&F.attached);
}

static int sid_parse(const char *s, sid *out)
{
    char *e;
    out->ms = strtoull(s, &e, 10);
    if (*e != '-')
        return -1;
    out->seq = strtoull(e + 1, &e, 10);
    return *e ? -1 : 0;
}

static int sid_cmp(sid a, sid b)
{
    if (a.ms != b.ms)
        return a.ms < b.ms ? -1 : 1;
    return a.seq < b.seq ? -1 : a.seq > b.seq;
}

/* ---- publishing ---- */

/* The script's argv for one invalidation: keys, origin, maxlen, epoch candidate, text, slots. */
typedef struct pub {
    char *text;   /* "*" or tags joined by '\n' (owned, unless from the queue) */
    uint64_t seq; /* from the queue: its entry */
    void (*acked)(void *arg, int ok); /* a worker's publish: its caller (may be NULL) */
    void *acked_arg;
} pub;

static void queue_push(char *text)
{
    pthread_mutex_lock(&F.qlock);
    if (F.qn == QUEUE_MAX) {
        /* too many to keep one by one: one "everything" stands for all of them */
        for (size_t i = 0; i < F.qn; i++)
            free(F.queue[i]);
        F.queue[0] = strdup("*");
        F.qseq[0] = ++F.next_seq;
        F.qn = 1;
        free(text);
    } else {
        F.qseq[F.qn] = ++F.next_seq;
        F.queue[F.qn++] = text;
    }
    pthread_mutex_unlock(&F.qlock);
    atomic_fetch_add(&F.queued, 1);
    if (F.drain_ev)
        event_active(F.drain_ev, EV_TIMEOUT, 0);
}

static int send_pub(struct rds *r, pub *p, rds_reply_fn fn)
{
    char gk[128], sk[128], maxlen[24], epoch[24];
    fleet_gens_key(gk, sizeof gk);
    fleet_stream_key(sk, sizeof sk);
    snprintf(maxlen, sizeof maxlen, "%llu", (unsigned long long)rds_stream_maxlen());
    unsigned char rnd[8];
    RAND_bytes(rnd, sizeof rnd);
    snprintf(epoch, sizeof epoch, "%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    const char *argv[6 + ENTRY_MAX_GENS];
    char slots[ENTRY_MAX_GENS][12];
    int argc = 0;
    argv[argc++] = gk;
    argv[argc++] = sk;
    argv[argc++] = F.me;
    argv[argc++] = maxlen;
    argv[argc++] = epoch;
    argv[argc++] = p->text;
    if (!strcmp(p->text, "*")) {
        argv[argc++] = "0";
    } else {
        const char *t = p->text;
        int n = 0;
        while (*t && n < ENTRY_MAX_GENS) {
            size_t l = strcspn(t, "\n");
            char one[600];
            snprintf(one, sizeof one, "%.*s", (int)l, t);
            snprintf(slots[n], sizeof slots[n], "%u", fleet_slot(one));
            argv[argc++] = slots[n++];
            t += l;
            if (*t)
                t++;
        }
    }
    return rds_eval(r, &s_publish, fn, p, 2, argc, argv, NULL);
}

static void pub_done(void *arg, const redisReply *rep)
{
    pub *p = arg;
    int ok = rep && rep->type == REDIS_REPLY_STRING;
    if (ok) {
        atomic_fetch_add(&F.published, 1);
        free(p->text);
    } else {
        atomic_fetch_add(&F.unacked, 1);
        queue_push(p->text); /* it may have been applied: a second bump only costs entries */
    }
    if (p->acked)
        p->acked(p->acked_arg, ok);
    free(p);
}

int fleet_inval_publish(struct rds *r, const char *const *scoped, size_t n, int all,
                        void (*acked)(void *arg, int ok), void *arg)
{
    if (!F.running)
        return 0;
    size_t len = 2;
    for (size_t i = 0; i < n && !all; i++)
        len += strlen(scoped[i]) + 1;
    char *text = malloc(len);
    if (!text)
        abort();
    if (all || n == 0 || n > ENTRY_MAX_GENS) {
        strcpy(text, "*");
    } else {
        text[0] = '\0';
        for (size_t i = 0; i < n; i++) {
            if (i)
                strcat(text, "\n");
            strcat(text, scoped[i]);
        }
    }
    pub *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    p->text = text;
    p->acked = acked;
    p->acked_arg = arg;
    if (r && send_pub(r, p, pub_done) == 0) {
        rds_flush(r); /* on the wire at once; the answer waits for the reply (acked) */
        return acked != NULL;
    }
    free(p);
    atomic_fetch_add(&F.unacked, 1);
    queue_push(text);
    return 0;
}

/* ---- the queue drain (tailer thread) ---- */

static void drain_next(void);

static void drained_one(void *arg, const redisReply *rep)
{
    pub *p = arg;
    F.draining = 0;
    free(p->text);
    if (rep && rep->type == REDIS_REPLY_STRING) {
        atomic_fetch_add(&F.published, 1);
        pthread_mutex_lock(&F.qlock);
        if (F.qn && F.qseq[0] == p->seq) {
            free(F.queue[0]);
            memmove(F.queue, F.queue + 1, (F.qn - 1) * sizeof *F.queue);
            memmove(F.qseq, F.qseq + 1, (F.qn - 1) * sizeof *F.qseq);
            F.qn--;
        } /* else the queue collapsed meanwhile: its "*" still goes out */
        pthread_mutex_unlock(&F.qlock);
        free(p);
        drain_next();
        return;
    }
    free(p);
    struct timeval tv = {0, RETRY_MS * 1000};
    event_add(F.drain_ev, &tv);
}

static void drain_next(void)
{
    if (F.draining || !rds_usable(F.cmd))
        return;
    pub *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    pthread_mutex_lock(&F.qlock);
    if (F.qn) {
        p->text = strdup(F.queue[0]);
        p->seq = F.qseq[0];
    }
    pthread_mutex_unlock(&F.qlock);
    if (!p->text) {
        free(p);
        return;
    }
    F.draining = 1;
    int rc = send_pub(F.cmd, p, drained_one);
    if (rc != 0) {
        F.draining = 0;
        free(p->text);
        free(p);
        struct timeval tv = {0, RETRY_MS * 1000};
        event_add(F.drain_ev, &tv);
    }
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    drain_next();
}

static void cmd_ready(void *arg)
{
    (void)arg;
    drain_next();
}

/* ---- the tailer ---- */

static void attach(void);

static void drop_all(const char *why)
{
    atomic_fetch_add(&F.lost, 1);
    log_msg(LOG_WARNING, "fleet: %s: dropping every L1 entry (invalidations may be missed)", why);
    if (F.hooks.apply_all)
        F.hooks.apply_all();
}

static void apply_text(const char *t, size_t len)
{
    if (len == 1 && t[0] == '*') {
        if (F.hooks.apply_all)
            F.hooks.apply_all();
        return;
    }
    const char *end = t + len;
    while (t < end) {
        const char *nl = memchr(t, '\n', (size_t)(end - t));
        size_t l = nl ? (size_t)(nl - t) : (size_t)(end - t);
        char one[600];
        if (l < sizeof one) {
            memcpy(one, t, l);
            one[l] = '\0';
            if (F.hooks.apply)
                F.hooks.apply(one);
        } else if (F.hooks.apply_all) {
            F.hooks.apply_all();
        }
        t += l + (nl ? 1 : 0);
    }
}

static void read_later(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(F.read_ev, &tv);
}

static void on_read(void *arg, const redisReply *rep);

static void read_more(void)
{
    if (!rds_usable(F.tail)) {
        atomic_store(&F.attached, 0);
        return; /* the on_ready of the reconnect attaches again */
    }
    char sk[128], pos[48], block[16];
    fleet_stream_key(sk, sizeof sk);
    snprintf(pos, sizeof pos, "%llu-%llu", (unsigned long long)F.pos.ms,
             (unsigned long long)F.pos.seq);
    snprintf(block, sizeof block, "%d", READ_BLOCK_MS);
    const char *argv[] = {"XREAD", "COUNT", READ_COUNT, "BLOCK", block, "STREAMS", sk, pos};
    if (rds_cmdv_within(F.tail, READ_BLOCK_MS + rds_op_timeout_ms() + 500, on_read, NULL, 8, argv,
                        NULL) != 0)
        read_later(RETRY_MS);
}

static void on_read(void *arg, const redisReply *rep)
{
    (void)arg;
    if (!rep) {
        atomic_store(&F.attached, 0);
        read_later(RETRY_MS);
        return;
    }
    if (rep->type == REDIS_REPLY_NIL) {
        /* idle for a second: check the log is still ours (deleted, replaced) */
        attach();
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_ARRAY || rep->element[0]->elements != 2) {
        read_later(RETRY_MS);
        return;
    }
    const redisReply *entries = rep->element[0]->element[1];
    for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        sid id;
        if (sid_parse(e->element[0]->str, &id) != 0)
            continue;
        const redisReply *fv = e->element[1];
        const char *origin = NULL, *text = NULL;
        size_t text_len = 0;
        for (size_t k = 0; fv->type == REDIS_REPLY_ARRAY && k + 1 < fv->elements; k += 2) {
            const redisReply *f = fv->element[k], *v = fv->element[k + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            if (!strcmp(f->str, "o"))
                origin = v->str;
            else if (!strcmp(f->str, "t")) {
                text = v->str;
                text_len = (size_t)v->len;
            }
        }
        if (text && (!origin || strcmp(origin, F.me))) {
            atomic_fetch_add(&F.remote_entries, 1);
            apply_text(text, text_len);
            atomic_fetch_add(&F.applied, 1);
        }
        F.pos = id;
    }
    read_more();
}

static const redisReply *field(const redisReply *rep, const char *name)
{
    for (size_t i = 0; i + 1 < rep->elements; i += 2)
        if (rep->element[i]->type == REDIS_REPLY_STRING && !strcmp(rep->element[i]->str, name))
            return rep->element[i + 1];
    return NULL;
}

static void on_info(void *arg, const redisReply *rep)
{
    (void)arg;
    if (!rep) {
        atomic_store(&F.attached, 0);
        read_later(RETRY_MS);
        return;
    }
    int first_attach = !F.ever_attached;
    F.ever_attached = 1;
    if (rep->type == REDIS_REPLY_ERROR) {
        /* "ERR no such key": nothing was ever published, or Redis lost the log */
        if (first_attach)
            drop_all("first attach to the invalidation log");
        else if (F.pos_known && (F.pos.ms || F.pos.seq))
            drop_all("the invalidation log is gone (Redis lost it)");
        F.pos = (sid){0, 0};
        F.pos_known = 1;
    } else if (rep->type == REDIS_REPLY_ARRAY) {
        const redisReply *lg = field(rep, "last-generated-id");
        const redisReply *fe = field(rep, "first-entry");
        const redisReply *added = field(rep, "entries-added");
        const redisReply *length = field(rep, "length");
        sid last = {0, 0}, first = {0, 0};
        int has_first = 0;
        if (lg && lg->type == REDIS_REPLY_STRING)
            sid_parse(lg->str, &last);
        if (fe && fe->type == REDIS_REPLY_ARRAY && fe->elements == 2 &&
            fe->element[0]->type == REDIS_REPLY_STRING)
            has_first = sid_parse(fe->element[0]->str, &first) == 0;
        if (first_attach) {
            drop_all("first attach to the invalidation log");
            F.pos = last;
        } else if (sid_cmp(last, F.pos) < 0) {
            drop_all("the invalidation log went back (Redis lost entries)");
            F.pos = last;
        } else if (sid_cmp(last, F.pos) > 0) {
            int missed = 0;
            if (!F.pos.ms && !F.pos.seq)
                missed = added && length && added->type == REDIS_REPLY_INTEGER &&
                         length->type == REDIS_REPLY_INTEGER && added->integer > length->integer;
            else
                missed = has_first && sid_cmp(first, F.pos) > 0;
            if (missed) {
                drop_all("our position fell off the invalidation log");
                F.pos = last;
            }
        }
        F.pos_known = 1;
    }
    if (!atomic_load(&F.attached))
        log_msg(LOG_INFO, "fleet: tailing the invalidation log from %llu-%llu",
                (unsigned long long)F.pos.ms, (unsigned long long)F.pos.seq);
    atomic_store(&F.attached, 1);
    read_more();
}

static void attach(void)
{
    char sk[128];
    fleet_stream_key(sk, sizeof sk);
    const char *argv[] = {"XINFO", "STREAM", sk};
    if (rds_cmdv_ex(F.tail, RDS_F_ERRORS, on_info, NULL, 3, argv, NULL) != 0)
        read_later(RETRY_MS);
}

static void tail_ready(void *arg)
{
    (void)arg;
    attach();
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (!rds_usable(F.tail)) {
        atomic_store(&F.attached, 0);
        return;
    }
    if (atomic_load(&F.attached))
        read_more();
    else
        attach();
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    event_base_loopbreak(F.base);
}

static void *tail_main(void *arg)
{
    (void)arg;
    event_base_loop(F.base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

int fleet_inval_start(const struct fleet_inval_hooks *hooks)
{
    if (!rds_enabled() || F.running)
        return 0;
    F.hooks = *hooks;
    unsigned char rnd[8];
    RAND_bytes(rnd, sizeof rnd);
    for (int i = 0; i < 8; i++)
        snprintf(F.me + 2 * i, 3, "%02x", rnd[i]);
    rds_script_init(&s_publish, PUBLISH_LUA);
    F.base = event_base_new();
    if (!F.base)
        return -1;
    F.stop_ev = event_new(F.base, -1, 0, stop_cb, NULL);
    F.read_ev = evtimer_new(F.base, read_cb, NULL);
    F.drain_ev = evtimer_new(F.base, drain_cb, NULL);
    F.tail = rds_new(F.base, "fleet-tail", tail_ready, NULL);
    F.cmd = rds_new(F.base, "fleet-cmd", cmd_ready, NULL);
    F.pos_known = 0;
    F.ever_attached = 0;
    F.running = 1;
    /* L1 may hold entries another instance invalidated while this one was down */
    drop_all("start with Redis");
    atomic_store(&F.lost, 0);
    if (pthread_create(&F.thread, NULL, tail_main, NULL) != 0) {
        F.running = 0;
        return -1;
    }
    return 0;
}

void fleet_inval_stop(void)
{
    if (!F.running)
        return;
    event_active(F.stop_ev, EV_TIMEOUT, 0);
    pthread_join(F.thread, NULL);
    F.running = 0;
    rds_free(F.tail);
    rds_free(F.cmd);
    F.tail = F.cmd = NULL;
    event_free(F.stop_ev);
    event_free(F.read_ev);
    event_free(F.drain_ev);
    F.drain_ev = NULL;
    event_base_free(F.base);
    F.base = NULL;
    pthread_mutex_lock(&F.qlock);
    for (size_t i = 0; i < F.qn; i++)
        free(F.queue[i]);
    F.qn = 0;
    pthread_mutex_unlock(&F.qlock);
    atomic_store(&F.attached, 0);
}

void fleet_inval_metrics(struct evbuffer *out, void *arg)
{
    (void)arg;
    if (!F.running)
        return;
    pthread_mutex_lock(&F.qlock);
    size_t qn = F.qn;
    pthread_mutex_unlock(&F.qlock);
    evbuffer_add_printf(
        out,
        "# HELP hotgate_fleet_invalidations_published_total Invalidations written to the "
        "fleet's stream.\n# TYPE hotgate_fleet_invalidations_published_total counter\n"
        "hotgate_fleet_invalidations_published_total %llu\n"
        "# HELP hotgate_fleet_inval_unacked_total Mutations' invalidations that Redis did not "
        "acknowledge (refused, failed or past op_timeout): queued, the answer released.\n"
        "# TYPE hotgate_fleet_inval_unacked_total counter\n"
        "hotgate_fleet_inval_unacked_total %llu\n"
        "# HELP hotgate_fleet_invalidations_queued_total Invalidations that could not be written "
        "at once (Redis down or slow) and were queued.\n"
        "# TYPE hotgate_fleet_invalidations_queued_total counter\n"
        "hotgate_fleet_invalidations_queued_total %llu\n"
        "# HELP hotgate_fleet_invalidations_pending Queued invalidations not yet written.\n"
        "# TYPE hotgate_fleet_invalidations_pending gauge\n"
        "hotgate_fleet_invalidations_pending %zu\n"
        "# HELP hotgate_fleet_invalidations_applied_total Other instances' invalidations applied "
        "to this L1.\n# TYPE hotgate_fleet_invalidations_applied_total counter\n"
        "hotgate_fleet_invalidations_applied_total %llu\n"
        "# HELP hotgate_fleet_l1_drops_total Times every L1 entry was dropped because "
        "invalidations may have been missed (log lost, position trimmed).\n"
        "# TYPE hotgate_fleet_l1_drops_total counter\nhotgate_fleet_l1_drops_total %llu\n"
        "# HELP hotgate_fleet_stream_attached 1 while the invalidation log is tailed.\n"
        "# TYPE hotgate_fleet_stream_attached gauge\nhotgate_fleet_stream_attached %d\n",
        (unsigned long long)atomic_load(&F.published), (unsigned long long)atomic_load(&F.unacked),
        (unsigned long long)atomic_load(&F.queued), qn, (unsigned long long)atomic_load(&F.applied),
        (unsigned long long)atomic_load(&F.lost), atomic_load(&F.attached));
}
