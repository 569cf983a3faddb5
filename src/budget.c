/*
 * budget: see budget.h for the job and the threading rules.
 *
 * Ticket states (all changes under the credential mutex):
 *   QUEUED  --pump grants-->  GRANTED --owner's event runs--> RUNNING
 *   QUEUED  --pump expires--> EXPIRED --owner's event runs--> (caller answers the verdict)
 *   RUNNING --budget_retry--> QUEUED (front of its flow, original tag and deadline)
 * A slot (inflight) is held from GRANTED/RUNNING until budget_done or budget_retry.
 */
#include "budget.h"

#include "fairq.h"
#include "util.h"

#include <assert.h>
#include <event2/event.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define US_PER_S 1000000.0
#define BUDGET_SPARE_CREDS 64 /* credentials a reload may add */
#define TOKEN_EPS 1e-9
#define GLOBAL_LOCAL_US 1000000 /* the local share's turn after the fleet's budget failed */

/* ---- token bucket ---- */

void budget_bucket_init(budget_bucket *b, double rate, double burst, uint64_t now_us)
{
    memset(b, 0, sizeof *b);
    b->rate = rate;
    b->eff = rate;
    b->burst = burst < 1 ? 1 : burst;
    b->tokens = b->burst;
    b->last_us = now_us;
}

void budget_bucket_set(budget_bucket *b, double rate, double burst, uint64_t now_us)
{
    if (rate == b->rate && (burst < 1 ? 1 : burst) == b->burst)
        return;
    if (b->rate <= 0 && rate > 0) {
        /* from unlimited to limited: start like a new bucket (keeping any cooldown) */
        uint64_t cd = b->cooldown_until_us;
        budget_bucket_init(b, rate, burst, now_us);
        b->cooldown_until_us = cd;
        if (cd > now_us)
            b->tokens = 0;
        return;
    }
    b->rate = rate;
    b->burst = burst < 1 ? 1 : burst;
    b->eff = rate; /* AIMD starts again from the new configured rate */
    b->decreased = 0;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
    if (b->tokens < -b->burst)
        b->tokens = -b->burst;
}

/* Tokens accrued from b->last_us to until_us at the effective rate, no climb (a pause). */
static void bucket_accrue_flat(budget_bucket *b, uint64_t until_us)
{
    if (until_us <= b->last_us)
        return;
    b->tokens += b->eff * (double)(until_us - b->last_us) / US_PER_S;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
    b->last_us = until_us;
}

void budget_bucket_advance(budget_bucket *b, uint64_t now_us, double increase_frac)
{
    if (b->rate <= 0 || now_us <= b->last_us)
        return;
    if (now_us < b->cooldown_until_us) {
        if (b->cooldown_keeps)
            bucket_accrue_flat(b, now_us);
        else
            b->tokens = 0;
        b->last_us = now_us;
        return;
    }
    if (b->cooldown_keeps)
        bucket_accrue_flat(b, b->cooldown_until_us);
    uint64_t from = b->last_us > b->cooldown_until_us ? b->last_us : b->cooldown_until_us;
    double dt = (double)(now_us - from) / US_PER_S;
    double eff0 = b->eff;
    if (increase_frac > 0 && b->eff < b->rate) {
        b->eff += increase_frac * b->rate * dt;
        if (b->eff > b->rate)
            b->eff = b->rate;
    }
    /* Tokens accrue at the mean rate over the interval (trapezoid, exact until the cap). */
    b->tokens += (eff0 + b->eff) / 2 * dt;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
    b->last_us = now_us;
}

int budget_bucket_take(budget_bucket *b, uint64_t now_us)
{
    /* a cooldown (the upstream's Retry-After) holds whatever the rate: an unlimited
     * bucket is unlimited only outside it */
    if (now_us < b->cooldown_until_us)
        return 0;
    if (b->rate <= 0)
        return 1;
    if (b->tokens < 1 - TOKEN_EPS)
        return 0;
    b->tokens -= 1;
    if (b->tokens < 0)
        b->tokens = 0;
    return 1;
}

void budget_bucket_refund(budget_bucket *b)
{
    if (b->rate <= 0)
        return;
    b->tokens += 1;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
}

void budget_bucket_charge(budget_bucket *b)
{
    if (b->rate <= 0)
        return;
    b->tokens -= 1;
    if (b->tokens < -b->burst)
        b->tokens = -b->burst;
}

uint64_t budget_bucket_ready_at(const budget_bucket *b, uint64_t now_us)
{
    if (b->rate <= 0)
        return now_us < b->cooldown_until_us ? b->cooldown_until_us : now_us;
    uint64_t from = now_us;
    double tokens = b->tokens;
    if (now_us < b->cooldown_until_us) {
        from = b->cooldown_until_us;
        tokens = 0;
        if (b->cooldown_keeps) {
            tokens = b->tokens + b->eff * (double)(from - now_us) / US_PER_S;
            if (tokens > b->burst)
                tokens = b->burst;
        }
    }
    if (tokens >= 1 - TOKEN_EPS)
        return from;
    assert(b->eff > 0);
    return from + (uint64_t)ceil((1 - tokens) / b->eff * US_PER_S);
}

void budget_bucket_cooldown(budget_bucket *b, uint64_t now_us, uint64_t dur_us)
{
    if (dur_us == 0)
        return;
    budget_bucket_advance(b, now_us, 0);
    if (now_us + dur_us > b->cooldown_until_us)
        b->cooldown_until_us = now_us + dur_us;
    b->cooldown_keeps = 0;
    b->tokens = 0;
    b->last_us = now_us;
}

void budget_bucket_pause(budget_bucket *b, uint64_t now_us, uint64_t dur_us)
{
    if (dur_us == 0)
        return;
    budget_bucket_advance(b, now_us, 0);
    int emptying = now_us < b->cooldown_until_us && !b->cooldown_keeps;
    if (now_us + dur_us > b->cooldown_until_us)
        b->cooldown_until_us = now_us + dur_us;
    b->cooldown_keeps = !emptying;
    if (b->last_us < now_us)
        b->last_us = now_us;
}

int budget_bucket_decrease(budget_bucket *b, uint64_t now_us, uint64_t sent_us, double factor,
                           double floor_frac)
{
    if (b->rate <= 0 || (b->decreased && sent_us <= b->last_decrease_us))
        return 0;
    double floor = b->rate * floor_frac;
    b->eff *= factor;
    if (b->eff < floor)
        b->eff = floor;
    b->last_decrease_us = now_us;
    b->decreased = 1;
    return 1;
}

/* ---- state ---- */

enum { T_RUNNING, T_QUEUED, T_GRANTED, T_EXPIRED };

typedef struct budget_cred budget_cred;

/* Per (credential, client): fairq_flow.user */
typedef struct budget_flow {
    char *cls;
    double weight;
    int limited;
    budget_bucket client_bucket;
    uint64_t admitted, rej_full, rej_timeout, rej_client;
} budget_flow;

struct budget_cred {
    char *name;
    budget *b;
    pthread_mutex_t mu;
    budget_bucket bucket;
    unsigned max_concurrent, inflight;
    fairq q;
    struct event *pump_ev; /* on b->base, NULL without the thread */
    uint64_t admitted, admitted_queued, rej_full, rej_timeout, rej_client;
    uint64_t shed_seen, decreases, retries;
    uint64_t charged; /* retries of the upstream module charged (budget_charge) */
    /* the last shed seen (feedback): when, and when the pause it caused ends */
    uint64_t shed_last_us, shed_pause_end_us;
    int shed_any;
    uint64_t shed_paused; /* lone sheds answered by a pause alone */
    /* the fleet's budget (budget_set_global): tokens granted and not used yet, their next
     * slot, an ask without answer, when to ask again, until when the local share runs */
    unsigned g_want, g_tokens, g_debt, g_debt_sent;
    uint64_t g_slot, g_retry_at, g_local_until;
    budget_bucket g_local;
    uint64_t g_asks, g_fails, g_local_grants, g_paused;
};

struct budget_ticket {
    fairq_item qi;
    budget_cred *cred; /* NULL: an unbudgeted credential */
    fairq_flow *flow;
    int state;
    int holds_slot;
    struct event_base *base; /* the caller's; NULL in synchronous (test) mode */
    struct event *ev;        /* on base, made when the ticket first has to wait */
    budget_cb cb;
    void *arg;
    budget_verdict verdict;
    uint64_t sent_us; /* when granted */
    budget_ticket *next_ready;
    uint64_t gslot; /* a slot of the fleet's cap (0: none) */
};

struct budget {
    budget_params p;
    budget_client_cfg *clients;
    unsigned nclients;
    /* credentials are only ever added (budget_reconfigure): creds[] has room for
     * creds_cap, ncreds is published after the new slot is filled */
    budget_cred **creds;
    unsigned creds_cap;
    _Atomic unsigned ncreds;
    struct event_base *base;
    pthread_t thread;
    int running;
    const budget_global_ops *gops; /* NULL: this instance alone */
    void *garg;
    double gshare;
};

static uint64_t now_us(const budget *b)
{
    return b->p.clock_us ? b->p.clock_us(b->p.clock_arg) : util_mono_us();
}

static void clients_copy(const budget_params *p, budget_client_cfg **out, unsigned *n)
{
    budget_client_cfg *v = calloc(p->nclients ? p->nclients : 1, sizeof *v);
    if (!v)
        abort();
    for (unsigned i = 0; i < p->nclients; i++) {
        v[i] = p->clients[i];
        v[i].name = util_xstrdup(p->clients[i].name);
        v[i].cls = util_xstrdup(p->clients[i].cls ? p->clients[i].cls : "default");
        if (!(v[i].weight > 0))
            v[i].weight = 1;
    }
    *out = v;
    *n = p->nclients;
}

static void clients_free(budget_client_cfg *v, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        free((char *)v[i].name);
        free((char *)v[i].cls);
    }
    free(v);
}

static budget_cred *cred_new(budget *b, const budget_cred_cfg *cc, uint64_t now)
{
    budget_cred *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->name = util_xstrdup(cc->name);
    c->b = b;
    pthread_mutex_init(&c->mu, NULL);
    budget_bucket_init(&c->bucket, cc->rate, cc->burst, now);
    if (b->gops) /* added by a reload: its local share too */
        budget_bucket_init(&c->g_local, cc->rate * b->gshare, cc->burst * b->gshare, now);
    c->max_concurrent = cc->max_concurrent;
    fairq_init(&c->q, b->p.queue_max_total);
    return c;
}

static unsigned ncreds(const budget *b)
{
    return atomic_load_explicit(&((budget *)b)->ncreds, memory_order_acquire);
}

budget *budget_new(const budget_params *p)
{
    budget *b = calloc(1, sizeof *b);
    if (!b)
        abort();
    b->p = *p;
    if (!b->p.retry_after_cap_ms)
        b->p.retry_after_cap_ms = 300000;
    if (!b->p.default_cooldown_ms)
        b->p.default_cooldown_ms = 1000;
    if (!(b->p.aimd_decrease > 0 && b->p.aimd_decrease < 1))
        b->p.aimd_decrease = 0.7;
    if (!(b->p.aimd_floor > 0 && b->p.aimd_floor <= 1))
        b->p.aimd_floor = 0.1;
    if (!(b->p.aimd_increase > 0))
        b->p.aimd_increase = 0.05;
    if (!b->p.queue_deadline_ms)
        b->p.queue_deadline_ms = 30000;
    b->p.creds = NULL;
    b->p.clients = NULL;

    clients_copy(p, &b->clients, &b->nclients);

    uint64_t now = now_us(b);
    b->creds_cap = p->ncreds + BUDGET_SPARE_CREDS;
    b->creds = calloc(b->creds_cap, sizeof *b->creds);
    if (!b->creds)
        abort();
    for (unsigned i = 0; i < p->ncreds; i++)
        b->creds[i] = cred_new(b, &p->creds[i], now);
    atomic_store(&b->ncreds, p->ncreds);
    return b;
}

static void flow_free_all(budget_cred *c)
{
    for (size_t i = 0; i < c->q.nflows; i++) {
        budget_flow *bf = c->q.flows[i]->user;
        if (bf) {
            free(bf->cls);
            free(bf);
        }
    }
}

static void pump_cred(budget_cred *c);
static int global(const budget_cred *c);
static int cred_take(budget_cred *c, uint64_t now, uint64_t *gslot);
static int cred_has_token(budget_cred *c, uint64_t now);
static uint64_t cred_ready_at(budget_cred *c, uint64_t now);
static int cred_ask(budget_cred *c, uint64_t now);
static void cred_release(budget_cred *c, budget_ticket *t);

static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump_cred(arg);
}

static void *thread_main(void *arg)
{
    budget *b = arg;
    event_base_loop(b->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

int budget_start(budget *b)
{
    assert(!b->running);
    b->base = event_base_new();
    if (!b->base)
        return -1;
    for (unsigned i = 0, n_ = ncreds(b); i < n_; i++) {
        b->creds[i]->pump_ev = event_new(b->base, -1, 0, pump_cb, b->creds[i]);
        if (!b->creds[i]->pump_ev)
            return -1;
    }
    if (pthread_create(&b->thread, NULL, thread_main, b) != 0)
        return -1;
    b->running = 1;
    return 0;
}

void budget_free(budget *b)
{
    if (!b)
        return;
    if (b->running) {
        event_base_loopbreak(b->base);
        pthread_join(b->thread, NULL);
    }
    if (b->gops && b->gops->stop)
        b->gops->stop(b->garg);
    for (unsigned i = 0, n_ = ncreds(b); i < n_; i++) {
        budget_cred *c = b->creds[i];
        assert(c->q.count == 0);
        if (c->pump_ev)
            event_free(c->pump_ev);
        flow_free_all(c);
        fairq_destroy(&c->q);
        pthread_mutex_destroy(&c->mu);
        free(c->name);
        free(c);
    }
    if (b->base)
        event_base_free(b->base);
    clients_free(b->clients, b->nclients);
    free(b->creds);
    free(b);
}

/* A flow's settings from its client's config (NULL: an unknown client). Under c->mu. */
static void flow_configure(budget_cred *c, fairq_flow *f, budget_flow *bf,
                           const budget_client_cfg *cc, uint64_t now, int fresh)
{
    free(bf->cls);
    bf->cls = util_xstrdup(cc ? cc->cls : "default");
    bf->weight = cc ? cc->weight : 1;
    f->weight = bf->weight;
    unsigned maxq = c->b->p.queue_max_per_client;
    if (cc && cc->max_queued)
        maxq = cc->max_queued;
    f->max_queued = maxq;
    if (cc && cc->rate > 0) {
        if (fresh || !bf->limited)
            budget_bucket_init(&bf->client_bucket, cc->rate, cc->burst, now);
        else
            budget_bucket_set(&bf->client_bucket, cc->rate, cc->burst, now);
        bf->limited = 1;
    } else {
        bf->limited = 0;
    }
}

static const budget_client_cfg *client_cfg(const budget *b, const char *name)
{
    for (unsigned i = 0; i < b->nclients; i++)
        if (strcmp(b->clients[i].name, name) == 0)
            return &b->clients[i];
    return NULL;
}

static budget_cred *cred_find(budget *b, const char *name);
static void kick(budget_cred *c);

int budget_reconfigure(budget *b, const budget_params *p)
{
    uint64_t now = now_us(b);
    unsigned added = 0;
    for (unsigned i = 0; i < p->ncreds; i++)
        added += cred_find(b, p->creds[i].name) == NULL;
    if (ncreds(b) + added > b->creds_cap)
        return -1;
    /* credentials new to the budget get a slot first (published before any request of the
     * new configuration can name them) */
    for (unsigned i = 0; i < p->ncreds; i++) {
        if (cred_find(b, p->creds[i].name))
            continue;
        unsigned n = ncreds(b);
        budget_cred *c = cred_new(b, &p->creds[i], now);
        if (b->base) {
            c->pump_ev = event_new(b->base, -1, 0, pump_cb, c);
            if (!c->pump_ev)
                abort();
        }
        b->creds[n] = c;
        atomic_store_explicit(&b->ncreds, n + 1, memory_order_release);
    }
    budget_client_cfg *nc, *oc;
    unsigned nn, on;
    clients_copy(p, &nc, &nn);
    /* every reader of b->p and b->clients holds one credential mutex: holding them all
     * (always in slot order; nothing else holds two) makes the swap atomic for them */
    unsigned n = ncreds(b);
    for (unsigned i = 0; i < n; i++)
        pthread_mutex_lock(&b->creds[i]->mu);
    oc = b->clients;
    on = b->nclients;
    b->clients = nc;
    b->nclients = nn;
    b->p.queue_max_total = p->queue_max_total;
    b->p.queue_max_per_client = p->queue_max_per_client;
    if (p->queue_deadline_ms)
        b->p.queue_deadline_ms = p->queue_deadline_ms;
    if (p->retry_after_cap_ms)
        b->p.retry_after_cap_ms = p->retry_after_cap_ms;
    if (p->aimd_decrease > 0 && p->aimd_decrease < 1)
        b->p.aimd_decrease = p->aimd_decrease;
    if (p->aimd_floor > 0 && p->aimd_floor <= 1)
        b->p.aimd_floor = p->aimd_floor;
    if (p->aimd_increase > 0)
        b->p.aimd_increase = p->aimd_increase;
    b->p.aimd_window_ms = p->aimd_window_ms;
    for (unsigned i = 0; i < n; i++) {
        budget_cred *c = b->creds[i];
        const budget_cred_cfg *cc = NULL;
        for (unsigned k = 0; k < p->ncreds; k++)
            if (strcmp(p->creds[k].name, c->name) == 0)
                cc = &p->creds[k];
        if (cc) { /* a credential no longer configured keeps its last settings: only
                     requests that started before the reload can still use it */
            budget_bucket_advance(&c->bucket, now, b->p.aimd_increase);
            budget_bucket_set(&c->bucket, cc->rate, cc->burst, now);
            if (b->gops)
                budget_bucket_set(&c->g_local, cc->rate * b->gshare, cc->burst * b->gshare, now);
            c->max_concurrent = cc->max_concurrent;
        }
        c->q.max_total = b->p.queue_max_total;
        for (size_t k = 0; k < c->q.nflows; k++) {
            fairq_flow *f = c->q.flows[k];
            if (f->user)
                flow_configure(c, f, f->user, client_cfg(b, f->name), now, 0);
        }
    }
    for (unsigned i = n; i-- > 0;)
        pthread_mutex_unlock(&b->creds[i]->mu);
    clients_free(oc, on);
    for (unsigned i = 0; i < n; i++)
        kick(b->creds[i]); /* a higher rate or cap may let queued requests go now */
    return 0;
}

static budget_cred *cred_find(budget *b, const char *name)
{
    if (!name)
        return NULL;
    for (unsigned i = 0, n_ = ncreds(b); i < n_; i++)
        if (strcmp(b->creds[i]->name, name) == 0)
            return b->creds[i];
    return NULL;
}

/* The flow of client on c, created from its config on first use. Under c->mu. */
static fairq_flow *flow_get(budget_cred *c, const char *client, uint64_t now)
{
    const char *name = client ? client : "-";
    fairq_flow *f = fairq_flow_find(&c->q, name);
    if (f)
        return f;
    budget_flow *bf = calloc(1, sizeof *bf);
    if (!bf)
        abort();
    f = fairq_flow_get(&c->q, name, 1, 0);
    f->user = bf;
    flow_configure(c, f, bf, client_cfg(c->b, name), now, 1);
    return f;
}

static int slot_free(const budget_cred *c)
{
    return c->max_concurrent == 0 || c->inflight < c->max_concurrent;
}

static unsigned secs_ceil(double s)
{
    if (!(s > 1))
        return 1;
    if (s > 86400)
        return 86400;
    return (unsigned)ceil(s);
}

/* Seconds until a request `ahead` places back in the queue would go. Under c->mu. */
static unsigned estimate_s(const budget_cred *c, unsigned ahead, uint64_t now)
{
    double s = 0;
    if (c->bucket.cooldown_until_us > now)
        s += (double)(c->bucket.cooldown_until_us - now) / US_PER_S;
    if (c->bucket.rate > 0 && c->bucket.eff > 0)
        s += (ahead + 1) / c->bucket.eff;
    return secs_ceil(s);
}

static void set_verdict(budget_verdict *v, int status, const char *code, const char *msg,
                        unsigned ra)
{
    v->status = status;
    v->code = code;
    v->message = msg;
    v->retry_after_s = ra ? ra : 1;
}

static void kick(budget_cred *c)
{
    if (c->pump_ev)
        event_active(c->pump_ev, EV_TIMEOUT, 1);
}

/* Tell the owner; under c->mu. Synchronous tickets are chained on *ready and called by the
 * pump after it unlocks. */
static void deliver(budget_ticket *t, budget_ticket **ready)
{
    if (t->ev) {
        event_active(t->ev, EV_TIMEOUT, 1);
    } else {
        t->next_ready = *ready;
        *ready = t;
    }
}

static void ticket_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    budget_ticket *t = arg;
    budget_cred *c = t->cred;
    budget_outcome o;
    pthread_mutex_lock(&c->mu);
    if (t->state == T_GRANTED) {
        t->state = T_RUNNING;
        o = BUDGET_GO;
    } else if (t->state == T_EXPIRED) {
        o = BUDGET_EXPIRED;
    } else {
        pthread_mutex_unlock(&c->mu); /* stale activation: nothing to tell */
        return;
    }
    pthread_mutex_unlock(&c->mu);
    t->cb(t, o, &t->verdict, t->arg);
}

/* The event that wakes the owner when a waiting ticket is granted or expires. Made under
 * the credential mutex before the ticket is queued, so that the pump never sees a queued
 * ticket without it (a ticket without one would be delivered on the pump's thread);
 * event_new takes no base lock. */
static void ticket_event(budget_ticket *t)
{
    if (t->base && !t->ev) {
        t->ev = event_new(t->base, -1, 0, ticket_cb, t);
        if (!t->ev)
            abort();
    }
}

budget_outcome budget_admit(budget *b, const char *cred, const char *client,
                            struct event_base *base, uint32_t deadline_ms, budget_cb cb, void *arg,
                            budget_ticket **tp, budget_verdict *v)
{
    *tp = NULL;
    memset(v, 0, sizeof *v);
    budget_ticket *t = calloc(1, sizeof *t);
    if (!t)
        abort();
    t->cb = cb;
    t->arg = arg;
    t->base = base;
    t->qi.heap_idx = (size_t)-1;
    budget_cred *c = cred_find(b, cred);
    if (!c) {
        t->state = T_RUNNING;
        *tp = t;
        return BUDGET_GO;
    }
    t->cred = c;

    pthread_mutex_lock(&c->mu);
    if (deadline_ms == 0 || deadline_ms > b->p.queue_deadline_ms)
        deadline_ms = b->p.queue_deadline_ms;
    uint64_t now = now_us(b);
    fairq_flow *f = flow_get(c, client, now);
    budget_flow *bf = f->user;
    t->flow = f;
    if (bf->limited) {
        budget_bucket_advance(&bf->client_bucket, now, 0);
        if (!budget_bucket_take(&bf->client_bucket, now)) {
            uint64_t at = budget_bucket_ready_at(&bf->client_bucket, now);
            bf->rej_client++;
            c->rej_client++;
            pthread_mutex_unlock(&c->mu);
            set_verdict(v, 429, "OVERLOADED", "client rate limit exceeded, retry later",
                        secs_ceil((double)(at - now) / US_PER_S));
            free(t);
            return BUDGET_REJECT;
        }
    }
    budget_bucket_advance(&c->bucket, now, b->p.aimd_increase);
    if (c->q.count == 0 && slot_free(c) && cred_take(c, now, &t->gslot)) {
        c->inflight++;
        c->admitted++;
        bf->admitted++;
        t->holds_slot = 1;
        t->state = T_RUNNING;
        t->sent_us = now;
        t->qi.deadline = now + (uint64_t)deadline_ms * 1000; /* kept for a retry */
        int refill = global(c) && c->g_tokens == 0;
        pthread_mutex_unlock(&c->mu);
        if (refill)
            kick(c); /* the token in hand was spent: take another */
        *tp = t;
        return BUDGET_GO;
    }
    unsigned ahead = fairq_position_new(&c->q, f);
    fairq_status st = fairq_push(&c->q, f, &t->qi, now + (uint64_t)deadline_ms * 1000);
    if (st != FAIRQ_OK) {
        if (bf->limited)
            budget_bucket_refund(&bf->client_bucket);
        bf->rej_full++;
        c->rej_full++;
        unsigned ra = estimate_s(c, ahead, now);
        pthread_mutex_unlock(&c->mu);
        set_verdict(v, 503, "QUEUE_FULL",
                    st == FAIRQ_FULL_FLOW ? "too many requests of this client are waiting for "
                                            "upstream budget"
                                          : "the upstream budget queue is full",
                    ra);
        free(t);
        return BUDGET_REJECT;
    }
    t->state = T_QUEUED;
    ticket_event(t);
    pthread_mutex_unlock(&c->mu);
    kick(c);
    *tp = t;
    return BUDGET_WAIT;
}

/* The upstream's answer: cooldown and AIMD. Under c->mu. */
static void feedback(budget_cred *c, const budget_result *r, uint64_t sent_us, uint64_t now)
{
    if (!r)
        return;
    int shed = r->status == 429 || (r->status == 503 && r->has_retry_after);
    if (!shed)
        return;
    budget *b = c->b;
    c->shed_seen++;
    uint64_t ms =
        r->has_retry_after ? r->retry_after_ms : (r->status == 429 ? b->p.default_cooldown_ms : 0);
    if (ms > b->p.retry_after_cap_ms)
        ms = b->p.retry_after_cap_ms;
    budget_bucket_advance(&c->bucket, now, b->p.aimd_increase);
    /* sent before the last shed was seen: the same overload, no new evidence */
    int sibling = c->shed_any && sent_us <= c->shed_last_us;
    int repeated = c->shed_any && !sibling &&
                   now < c->shed_pause_end_us + (uint64_t)b->p.aimd_window_ms * 1000;
    if (r->has_retry_after && ms > 0 && b->p.aimd_window_ms > 0 && !repeated) {
        /* explained by its Retry-After: it costs the pause, not the rate */
        budget_bucket_pause(&c->bucket, now, ms * 1000);
        c->shed_paused += !sibling;
    } else {
        budget_bucket_cooldown(&c->bucket, now, ms * 1000);
        if (budget_bucket_decrease(&c->bucket, now, sent_us, b->p.aimd_decrease, b->p.aimd_floor))
            c->decreases++;
    }
    if (b->gops && ms > 0)
        b->gops->shed(b->garg, c->name, ms, c->bucket.cooldown_keeps == 0);
    c->shed_any = 1;
    c->shed_last_us = now;
    if (now + ms * 1000 > c->shed_pause_end_us)
        c->shed_pause_end_us = now + ms * 1000;
}

void budget_done(budget_ticket *t, const budget_result *r)
{
    if (!t)
        return;
    budget_cred *c = t->cred;
    if (c) {
        int wake = 0;
        pthread_mutex_lock(&c->mu);
        if (t->state == T_QUEUED)
            fairq_remove(&c->q, &t->qi);
        if (t->holds_slot) {
            assert(c->inflight > 0);
            c->inflight--;
            wake = c->q.count > 0;
        }
        uint64_t now = now_us(c->b);
        feedback(c, r, t->sent_us, now);
        cred_release(c, t);
        if (t->ev)
            event_free(t->ev); /* drops a pending activation too; we are its base's thread */
        pthread_mutex_unlock(&c->mu);
        if (wake)
            kick(c);
    }
    free(t);
}

void budget_charge(budget_ticket *t)
{
    budget_cred *c = t ? t->cred : NULL;
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    uint64_t now = now_us(c->b);
    budget_bucket_advance(&c->bucket, now, c->b->p.aimd_increase);
    budget_bucket_charge(&c->bucket);
    c->charged++;
    pthread_mutex_unlock(&c->mu);
}

int budget_idle(budget *b, const char *cred)
{
    budget_cred *c = cred_find(b, cred);
    if (!c)
        return 1;
    pthread_mutex_lock(&c->mu);
    uint64_t now = now_us(b);
    budget_bucket_advance(&c->bucket, now, b->p.aimd_increase);
    int idle = c->q.count == 0 && slot_free(c) && cred_has_token(c, now);
    pthread_mutex_unlock(&c->mu);
    return idle;
}

budget_outcome budget_retry(budget_ticket *t, const budget_result *r, budget_verdict *v)
{
    budget_cred *c = t->cred;
    memset(v, 0, sizeof *v);
    if (!c) {
        set_verdict(v, 503, "QUEUE_TIMEOUT", "upstream overloaded", 1);
        return BUDGET_EXPIRED;
    }
    assert(t->state == T_RUNNING && t->holds_slot);
    pthread_mutex_lock(&c->mu);
    uint64_t now = now_us(c->b);
    feedback(c, r, t->sent_us, now);
    cred_release(c, t);
    c->inflight--;
    t->holds_slot = 0;
    c->retries++;
    uint64_t earliest = cred_ready_at(c, now);
    if (earliest >= t->qi.deadline) {
        budget_flow *bf = t->flow->user;
        bf->rej_timeout++;
        c->rej_timeout++;
        set_verdict(v, 503, "QUEUE_TIMEOUT",
                    "the upstream is shedding load and the request's queue deadline passed",
                    estimate_s(c, c->q.count, now));
        pthread_mutex_unlock(&c->mu);
        kick(c);
        return BUDGET_EXPIRED;
    }
    fairq_push_front(&c->q, t->flow, &t->qi);
    ticket_event(t); /* a ticket admitted at once had none */
    t->state = T_QUEUED;
    pthread_mutex_unlock(&c->mu);
    kick(c);
    return BUDGET_WAIT;
}

/* One credential: expire, grant, re-arm. */
static void pump_cred(budget_cred *c)
{
    budget *b = c->b;
    budget_ticket *ready = NULL;
    pthread_mutex_lock(&c->mu);
    uint64_t now = now_us(b);
    budget_bucket_advance(&c->bucket, now, b->p.aimd_increase);
    fairq_item *it;
    while ((it = fairq_pop_expired(&c->q, now))) {
        budget_ticket *t = (budget_ticket *)it;
        budget_flow *bf = t->flow->user;
        bf->rej_timeout++;
        c->rej_timeout++;
        assert(t->ev || !c->pump_ev); /* never deliver on the pump's thread */
        t->state = T_EXPIRED;
        set_verdict(&t->verdict, 503, "QUEUE_TIMEOUT",
                    "the request waited too long for upstream budget",
                    estimate_s(c, c->q.count, now));
        deliver(t, &ready);
    }
    uint64_t gslot;
grant:
    while (c->q.count > 0 && slot_free(c) && cred_take(c, now, &gslot)) {
        budget_ticket *t = (budget_ticket *)fairq_pop(&c->q);
        t->gslot = gslot;
        assert(t && t->state == T_QUEUED);
        assert(t->ev || !c->pump_ev);
        budget_flow *bf = t->flow->user;
        t->state = T_GRANTED;
        t->holds_slot = 1;
        t->sent_us = now;
        c->inflight++;
        c->admitted++;
        c->admitted_queued++;
        bf->admitted++;
        deliver(t, &ready);
    }
    if (cred_ask(c, now))
        goto grant; /* the fleet's budget is out of reach: the local share grants */
    uint64_t next = fairq_next_deadline(&c->q);
    if (c->q.count > 0 && slot_free(c)) {
        uint64_t at = cred_ready_at(c, now);
        if (at < next)
            next = at;
    }
    if (c->pump_ev && next != UINT64_MAX) {
        uint64_t d = next > now ? next - now : 0;
        struct timeval tv = {(time_t)(d / 1000000), (suseconds_t)(d % 1000000)};
        event_add(c->pump_ev, &tv);
    }
    pthread_mutex_unlock(&c->mu);
    while (ready) {
        budget_ticket *t = ready;
        ready = t->next_ready;
        ticket_cb(-1, 0, t);
    }
}

void budget_pump(budget *b)
{
    for (unsigned i = 0, n_ = ncreds(b); i < n_; i++)
        pump_cred(b->creds[i]);
}

/* ---- the fleet's budget (budget_set_global) ---- */

static int global(const budget_cred *c)
{
    return c->b->gops && (c->bucket.rate > 0 || c->max_concurrent > 0);
}

struct event_base *budget_event_base(budget *b)
{
    return b->base;
}

void budget_set_global(budget *b, const budget_global_ops *ops, void *arg, double local_share)
{
    if (!(local_share > 0 && local_share <= 1))
        local_share = 1;
    uint64_t now = now_us(b);
    for (unsigned i = 0, n_ = ncreds(b); i < n_; i++) {
        budget_cred *c = b->creds[i];
        pthread_mutex_lock(&c->mu);
        budget_bucket_init(&c->g_local, c->bucket.rate * local_share, c->bucket.burst * local_share,
                           now);
        pthread_mutex_unlock(&c->mu);
    }
    b->gshare = local_share;
    b->garg = arg;
    b->gops = ops;
}

/* One token (and slot) for t: the fleet's, or the local share's while the fleet's budget is
 * out of reach; any pause holds. Under c->mu. */
static int cred_take(budget_cred *c, uint64_t now, uint64_t *gslot)
{
    *gslot = 0;
    if (!global(c))
        return budget_bucket_take(&c->bucket, now);
    if (now < c->bucket.cooldown_until_us)
        return 0;
    if (c->g_tokens > 0) {
        c->g_tokens--;
        *gslot = c->g_slot ? c->g_slot++ : 0;
        return 1;
    }
    if (now >= c->g_local_until)
        return 0;
    budget_bucket_advance(&c->g_local, now, 0);
    if (!budget_bucket_take(&c->g_local, now))
        return 0;
    c->g_local_grants++;
    if (c->g_debt < 1000)
        c->g_debt++;
    return 1;
}

/* Whether a request could take a token now. Under c->mu. */
static int cred_has_token(budget_cred *c, uint64_t now)
{
    if (now < c->bucket.cooldown_until_us)
        return 0;
    if (!global(c))
        return c->bucket.rate <= 0 || c->bucket.tokens >= 1 - TOKEN_EPS;
    if (c->g_tokens > 0)
        return 1;
    if (now >= c->g_local_until)
        return 0;
    budget_bucket_advance(&c->g_local, now, 0);
    return c->g_local.tokens >= 1 - TOKEN_EPS;
}

/* When the next token may come (a wake-up for the pump). Under c->mu. */
static uint64_t cred_ready_at(budget_cred *c, uint64_t now)
{
    if (!global(c))
        return budget_bucket_ready_at(&c->bucket, now);
    uint64_t at = now;
    if (c->bucket.cooldown_until_us > at)
        at = c->bucket.cooldown_until_us;
    if (c->g_tokens > 0)
        return at;
    if (now < c->g_local_until) {
        uint64_t l = budget_bucket_ready_at(&c->g_local, at);
        return l < c->g_local_until ? l : c->g_local_until;
    }
    if (c->g_want)
        return UINT64_MAX; /* the answer kicks the pump */
    return c->g_retry_at > at ? c->g_retry_at : at;
}

/* Ask the fleet for what the queue needs, when it is time. 1: out of reach, the local share
 * runs now (grant again). Under c->mu, on the budget thread. */
static int cred_ask(budget_cred *c, uint64_t now)
{
    /* with nothing queued, one token is held in hand (without a cap: a held slot would keep
     * it from the other instances): the next request, or a background refresh, goes at once */
    if (!global(c) || (c->q.count == 0 && c->max_concurrent) || !slot_free(c) || c->g_want ||
        c->g_tokens || now < c->g_retry_at || now < c->g_local_until ||
        now < c->bucket.cooldown_until_us)
        return 0;
    unsigned want = c->q.count == 0 ? 1 : c->q.count < 32 ? c->q.count : 32;
    if (c->max_concurrent && c->max_concurrent - c->inflight < want)
        want = c->max_concurrent - c->inflight;
    budget *b = c->b;
    budget_bucket_advance(&c->bucket, now, b->p.aimd_increase);
    c->g_asks++;
    c->g_want = want;
    c->g_debt_sent = c->g_debt;
    if (b->gops->ask(b->garg, c->name, want, c->bucket.rate > 0 ? c->bucket.eff : 0,
                     c->bucket.burst, c->max_concurrent, c->g_debt) == 0)
        return 0;
    c->g_want = 0;
    c->g_fails++;
    c->g_local_until = now + GLOBAL_LOCAL_US;
    return 1;
}

void budget_global_answer(budget *b, const char *cred, unsigned n, uint64_t first_slot,
                          uint64_t retry_ms, uint64_t paused_ms, int failed)
{
    budget_cred *c = cred_find(b, cred);
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    uint64_t now = now_us(b);
    unsigned want = c->g_want;
    c->g_want = 0;
    if (failed) {
        c->g_fails++;
        c->g_local_until = now + GLOBAL_LOCAL_US;
    } else {
        c->g_local_until = 0;
        c->g_debt -= c->g_debt_sent < c->g_debt ? c->g_debt_sent : c->g_debt; /* charged */
        c->g_tokens += n;
        if (n)
            c->g_slot = first_slot;
        if (paused_ms) {
            budget_bucket_pause(&c->bucket, now, paused_ms * 1000);
            c->g_paused++;
        } else if (n < want) {
            c->g_retry_at = now + (retry_ms ? retry_ms : 1) * 1000;
        }
    }
    pthread_mutex_unlock(&c->mu);
    pump_cred(c);
}

/* Give the fleet's slot of t back. Under c->mu (release only queues it). */
static void cred_release(budget_cred *c, budget_ticket *t)
{
    if (t->gslot && c->b->gops)
        c->b->gops->release(c->b->garg, c->name, t->gslot);
    t->gslot = 0;
}

/* ---- observation ---- */

double budget_effective_rate(budget *b, const char *cred)
{
    budget_cred *c = cred_find(b, cred);
    if (!c)
        return -1;
    pthread_mutex_lock(&c->mu);
    budget_bucket_advance(&c->bucket, now_us(b), b->p.aimd_increase);
    double r = c->bucket.rate > 0 ? c->bucket.eff : 0;
    pthread_mutex_unlock(&c->mu);
    return r;
}

/* The fleet's budget as this credential sees it. Under c->mu. */
static json_t *global_json(const budget_cred *c, uint64_t now)
{
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "mode",
                     now < c->g_local_until ? "local_share" : "redis", "asks",
                     (json_int_t)c->g_asks, "failures", (json_int_t)c->g_fails, "fleet_pauses",
                     (json_int_t)c->g_paused, "local_share_grants", (json_int_t)c->g_local_grants,
                     "tokens_held", (json_int_t)c->g_tokens);
}

char *budget_admin_json(budget *b)
{
    json_t *root = json_object();
    json_t *arr = json_array();
    for (unsigned i = 0, n_ = ncreds(b); i < n_; i++) {
        budget_cred *c = b->creds[i];
        pthread_mutex_lock(&c->mu);
        uint64_t now = now_us(b);
        budget_bucket_advance(&c->bucket, now, b->p.aimd_increase);
        uint64_t cd = c->bucket.cooldown_until_us > now ? c->bucket.cooldown_until_us - now : 0;
        json_t *jc = json_pack(
            "{s:s, s:f, s:f, s:f, s:f, s:I, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
            "s:I}",
            "name", c->name, "rate", c->bucket.rate, "effective_rate",
            c->bucket.rate > 0 ? c->bucket.eff : 0.0, "burst", c->bucket.burst, "tokens",
            c->bucket.tokens, "max_concurrent", (json_int_t)c->max_concurrent, "inflight",
            (json_int_t)c->inflight, "cooldown_active", cd > 0, "cooldown_remaining_ms",
            (json_int_t)(cd / 1000), "queued", (json_int_t)c->q.count, "admitted",
            (json_int_t)c->admitted, "admitted_after_wait", (json_int_t)c->admitted_queued,
            "upstream_shed", (json_int_t)c->shed_seen, "rate_decreases", (json_int_t)c->decreases,
            "retries", (json_int_t)c->retries, "rejected_queue_full", (json_int_t)c->rej_full,
            "rejected_queue_timeout", (json_int_t)c->rej_timeout);
        json_object_set_new(jc, "rejected_client_budget", json_integer((json_int_t)c->rej_client));
        json_object_set_new(jc, "retries_charged", json_integer((json_int_t)c->charged));
        json_object_set_new(jc, "shed_paused", json_integer((json_int_t)c->shed_paused));
        if (b->gops)
            json_object_set_new(jc, "global", global_json(c, now));
        json_t *clients = json_array();
        for (size_t k = 0; k < c->q.nflows; k++) {
            fairq_flow *f = c->q.flows[k];
            budget_flow *bf = f->user;
            json_array_append_new(
                clients,
                json_pack("{s:s, s:s, s:f, s:I, s:I, s:I, s:I, s:I}", "name", f->name, "class",
                          bf->cls, "weight", bf->weight, "queued", (json_int_t)f->count, "admitted",
                          (json_int_t)bf->admitted, "rejected_queue_full", (json_int_t)bf->rej_full,
                          "rejected_queue_timeout", (json_int_t)bf->rej_timeout,
                          "rejected_client_budget", (json_int_t)bf->rej_client));
        }
        pthread_mutex_unlock(&c->mu);
        json_object_set_new(jc, "clients", clients);
        json_array_append_new(arr, jc);
    }
    json_object_set_new(root, "credentials", arr);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!s)
        abort();
    return s;
}

/* One credential's own gauges and counters. Under c->mu. */
static void metrics_cred_lines(struct util_buf *sp, const budget_cred *c, uint64_t now)
{
    const char *n = c->name;
    util_buf_printf(sp, "hotgate_budget_rate{credential=\"%s\"} %g\n", n, c->bucket.rate);
    util_buf_printf(sp, "hotgate_budget_effective_rate{credential=\"%s\"} %g\n", n,
                    c->bucket.rate > 0 ? c->bucket.eff : 0.0);
    util_buf_printf(sp, "hotgate_budget_cooldown_active{credential=\"%s\"} %d\n", n,
                    c->bucket.cooldown_until_us > now);
    util_buf_printf(sp, "hotgate_budget_inflight{credential=\"%s\"} %u\n", n, c->inflight);
    util_buf_printf(sp, "hotgate_budget_upstream_shed_total{credential=\"%s\"} %llu\n", n,
                    (unsigned long long)c->shed_seen);
    util_buf_printf(sp, "hotgate_budget_retries_total{credential=\"%s\"} %llu\n", n,
                    (unsigned long long)c->retries);
    util_buf_printf(sp, "hotgate_budget_rate_decreases_total{credential=\"%s\"} %llu\n", n,
                    (unsigned long long)c->decreases);
    util_buf_printf(sp, "hotgate_budget_shed_paused_total{credential=\"%s\"} %llu\n", n,
                    (unsigned long long)c->shed_paused);
    util_buf_printf(sp, "hotgate_budget_retries_charged_total{credential=\"%s\"} %llu\n", n,
                    (unsigned long long)c->charged);
    if (!c->b->gops)
        return;
    util_buf_printf(sp, "hotgate_budget_global_local_share{credential=\"%s\"} %d\n", n,
                    now < c->g_local_until);
    util_buf_printf(sp, "hotgate_budget_global_asks_total{credential=\"%s\"} %llu\n", n,
                    (unsigned long long)c->g_asks);
    util_buf_printf(sp, "hotgate_budget_global_failures_total{credential=\"%s\"} %llu\n", n,
                    (unsigned long long)c->g_fails);
    util_buf_printf(sp, "hotgate_budget_global_pauses_total{credential=\"%s\"} %llu\n", n,
                    (unsigned long long)c->g_paused);
    util_buf_printf(sp, "hotgate_budget_local_share_grants_total{credential=\"%s\"} %llu\n", n,
                    (unsigned long long)c->g_local_grants);
}

char *budget_metrics_text(budget *b)
{
    struct util_buf s = {0};
    util_buf_printf(&s,
                    "# HELP hotgate_budget_effective_rate upstream requests/s allowed now (AIMD)\n"
                    "# TYPE hotgate_budget_rate gauge\n"
                    "# TYPE hotgate_budget_effective_rate gauge\n"
                    "# TYPE hotgate_budget_cooldown_active gauge\n"
                    "# TYPE hotgate_budget_inflight gauge\n"
                    "# TYPE hotgate_budget_upstream_shed_total counter\n"
                    "# TYPE hotgate_budget_admitted_total counter\n"
                    "# TYPE hotgate_budget_rejected_total counter\n"
                    "# TYPE hotgate_budget_retries_total counter\n"
                    "# TYPE hotgate_budget_rate_decreases_total counter\n"
                    "# TYPE hotgate_budget_shed_paused_total counter\n"
                    "# TYPE hotgate_budget_global_local_share gauge\n"
                    "# TYPE hotgate_budget_global_asks_total counter\n"
                    "# TYPE hotgate_budget_global_failures_total counter\n"
                    "# TYPE hotgate_budget_global_pauses_total counter\n"
                    "# TYPE hotgate_budget_local_share_grants_total counter\n"
                    "# TYPE hotgate_budget_retries_charged_total counter\n"
                    "# TYPE hotgate_budget_queued gauge\n"
                    "# TYPE hotgate_budget_queue_depth gauge\n"
                    "# TYPE hotgate_budget_class_queue_depth gauge\n");
    for (unsigned i = 0, n_ = ncreds(b); i < n_; i++) {
        budget_cred *c = b->creds[i];
        pthread_mutex_lock(&c->mu);
        uint64_t now = now_us(b);
        budget_bucket_advance(&c->bucket, now, b->p.aimd_increase);
        const char *n = c->name;
        metrics_cred_lines(&s, c, now);
        util_buf_printf(&s, "hotgate_budget_queued{credential=\"%s\"} %u\n", n, c->q.count);
        for (size_t k = 0; k < c->q.nflows; k++) {
            fairq_flow *f = c->q.flows[k];
            budget_flow *bf = f->user;
            const char *cl = f->name;
            util_buf_printf(
                &s, "hotgate_budget_queue_depth{credential=\"%s\",client=\"%s\",class=\"%s\"} %u\n",
                n, cl, bf->cls, f->count);
            util_buf_printf(&s,
                            "hotgate_budget_admitted_total{credential=\"%s\",client=\"%s\"} %llu\n",
                            n, cl, (unsigned long long)bf->admitted);
            util_buf_printf(&s,
                            "hotgate_budget_rejected_total{credential=\"%s\",client=\"%s\","
                            "reason=\"queue_full\"} %llu\n",
                            n, cl, (unsigned long long)bf->rej_full);
            util_buf_printf(&s,
                            "hotgate_budget_rejected_total{credential=\"%s\",client=\"%s\","
                            "reason=\"queue_timeout\"} %llu\n",
                            n, cl, (unsigned long long)bf->rej_timeout);
            util_buf_printf(&s,
                            "hotgate_budget_rejected_total{credential=\"%s\",client=\"%s\","
                            "reason=\"client_budget\"} %llu\n",
                            n, cl, (unsigned long long)bf->rej_client);
        }
        /* Per class: sum the flows of each class name (few flows, quadratic is fine). */
        for (size_t k = 0; k < c->q.nflows; k++) {
            budget_flow *bf = c->q.flows[k]->user;
            int seen = 0;
            for (size_t j = 0; j < k && !seen; j++)
                seen = strcmp(((budget_flow *)c->q.flows[j]->user)->cls, bf->cls) == 0;
            if (seen)
                continue;
            unsigned depth = 0;
            for (size_t j = k; j < c->q.nflows; j++)
                if (strcmp(((budget_flow *)c->q.flows[j]->user)->cls, bf->cls) == 0)
                    depth += c->q.flows[j]->count;
            util_buf_printf(&s,
                            "hotgate_budget_class_queue_depth{credential=\"%s\",class=\"%s\"} %u\n",
                            n, bf->cls, depth);
        }
        pthread_mutex_unlock(&c->mu);
    }
    return util_buf_take(&s);
}

uint32_t budget_parse_queue_timeout(const char *value)
{
    if (!value)
        return 0;
    char *end = NULL;
    double s = strtod(value, &end);
    if (end == value || !(s > 0) || !isfinite(s))
        return 0;
    while (*end == ' ' || *end == '\t')
        end++;
    if (*end)
        return 0;
    if (s > 86400)
        s = 86400;
    uint32_t ms = (uint32_t)(s * 1000);
    return ms ? ms : 1;
}
