/*
 * budget: keeps upstream traffic inside each credential's rate budget, queues instead of
 * failing, and shares the budget fairly between clients.
 *
 * Per upstream credential: a token bucket (rate/s, burst) and a cap on concurrent upstream
 * requests. Only requests that really go upstream pass here (cache hits and coalesced
 * waiters never reach this stage), each taking one token and one concurrency slot; the slot
 * is given back by budget_done. When the upstream sheds load (429, or 503 with
 * Retry-After) the credential enters a cooldown until Retry-After has passed, for every
 * client. A lone shed that Retry-After explains (a Retry-After > 0, and no shed within
 * aimd_window after the end of the last pause) costs its pause and nothing else: the rate
 * is not cut and the bucket refills during the pause, as the upstream's does. Any other shed
 * (a 429 without Retry-After, or a repeat within the window of a request sent after the
 * last shed was seen) ends with an empty bucket, so sending resumes at the paced rate and
 * never with a burst, and follows AIMD: it (at most once per round trip: only a response to
 * a request sent after the last decrease counts) multiplies the effective rate by
 * aimd_decrease down to aimd_floor x rate; every second without a cooldown it climbs back by
 * aimd_increase x rate, up to the configured rate.
 *
 * Requests that cannot go now wait in a fairq (SFQ, one flow per client, weighted by
 * class) bounded per client and in total, each with a deadline. Rejections are API-shaped:
 * 503 QUEUE_FULL / QUEUE_TIMEOUT, or 429 OVERLOADED when a client exceeds its own optional
 * rate limit; all with a Retry-After estimated from the queue position and the effective
 * rate (plus any cooldown).
 *
 * Threading: one mutex per credential guards its bucket, queue and counters; every worker
 * thread calls budget_admit/budget_done directly. A ticket that has to wait carries an
 * event on the caller's own event_base; when the ticket is granted (or expires) that event
 * is activated (event_active from another thread is safe: core enables evthread pthreads)
 * and its callback runs on the caller's thread. Pacing and expiry are driven by one timer
 * per credential on the budget's own thread (budget_start): it fires when the next token is
 * due or the next deadline passes, grants what is admissible, and re-arms itself; workers
 * kick it (event_active) when they queue or free a slot. No busy loop, no per-request timer.
 * Lock order: credential mutex, then libevent's base locks (event_active inside the mutex
 * is what makes a grant and a concurrent budget_done from the owner race-free).
 *
 * Tests: budget_new with a clock in budget_params and no budget_start; tickets admitted with
 * base == NULL get their callback called synchronously by budget_pump (outside the lock).
 *
 * Ownership: the budget owns credentials, flows and tickets. A ticket returned by
 * budget_admit belongs to the caller until it passes it to budget_done, exactly once,
 * whatever happened (sent, expired, client gone).
 */
#ifndef HG_BUDGET_H
#define HG_BUDGET_H

#include <stdint.h>

struct event_base;

/* ---- token bucket (pure arithmetic, exposed for tests) ---- */

typedef struct budget_bucket {
    double rate;   /* configured tokens per second; <= 0: unlimited */
    double eff;    /* effective rate (AIMD), in [floor, rate] */
    double burst;  /* >= 1 */
    double tokens; /* in [-burst, burst]: below 0 after charges (budget_bucket_charge) */
    uint64_t last_us;
    uint64_t cooldown_until_us;
    uint64_t last_decrease_us;
    int decreased;      /* last_decrease_us is valid */
    int cooldown_keeps; /* the cooldown is a pause (budget_bucket_pause): tokens accrue */
} budget_bucket;

void budget_bucket_init(budget_bucket *b, double rate, double burst, uint64_t now_us);
/* Refill up to now and climb the effective rate by increase_frac x rate per second (0: no
 * AIMD climb). Nothing accrues during a cooldown. */
void budget_bucket_advance(budget_bucket *b, uint64_t now_us, double increase_frac);
/* Take one token if there is one (call advance first): 1 taken, 0 not. */
int budget_bucket_take(budget_bucket *b, uint64_t now_us);
/* Put a token back (a request that was admitted but never sent). */
void budget_bucket_refund(budget_bucket *b);
/* Take a token whether or not there is one (the bucket may go into debt, down to -burst):
 * for requests that went out without asking, so later ones wait for them. */
void budget_bucket_charge(budget_bucket *b);
/* A reload changed rate/burst: keep the tokens (clamped) and any cooldown; the effective
 * rate restarts from the new rate. */
void budget_bucket_set(budget_bucket *b, double rate, double burst, uint64_t now_us);
/* When the next whole token is available (>= now). */
uint64_t budget_bucket_ready_at(const budget_bucket *b, uint64_t now_us);
/* Stop sending until now + dur: the bucket is emptied so the restart is paced. */
void budget_bucket_cooldown(budget_bucket *b, uint64_t now_us, uint64_t dur_us);
/* Stop sending until now + dur, keeping the tokens: they accrue during the pause (no AIMD
 * climb) up to the burst, as the upstream's own bucket refills while nothing is sent, so
 * the restart may use the burst. A running emptying cooldown (budget_bucket_cooldown) stays
 * one: only its end may move later. */
void budget_bucket_pause(budget_bucket *b, uint64_t now_us, uint64_t dur_us);
/* Multiplicative decrease, once per round trip: only when sent_us > the last decrease.
 * Returns 1 when the rate was lowered. */
int budget_bucket_decrease(budget_bucket *b, uint64_t now_us, uint64_t sent_us, double factor,
                           double floor_frac);

/* ---- configuration ---- */

typedef struct budget_cred_cfg {
    const char *name;
    double rate;             /* requests per second; <= 0 unlimited */
    double burst;            /* bucket size; < 1 taken as 1 */
    unsigned max_concurrent; /* 0: no cap */
} budget_cred_cfg;

typedef struct budget_client_cfg {
    const char *name;
    const char *cls;     /* class name, for metrics ("interactive", "batch") */
    double weight;       /* the class weight; <= 0 taken as 1 */
    double rate, burst;  /* the client's own limit; rate <= 0: none */
    unsigned max_queued; /* 0: the [queue] max_per_client default */
} budget_client_cfg;

typedef struct budget_params {
    const budget_cred_cfg *creds;
    unsigned ncreds;
    const budget_client_cfg *clients;
    unsigned nclients;
    unsigned queue_max_total;        /* per credential queue; 0: unbounded */
    unsigned queue_max_per_client;   /* 0: unbounded */
    uint32_t queue_deadline_ms;      /* default and maximum wait in the queue */
    uint32_t retry_after_cap_ms;     /* longest cooldown honoured; 0: 300 s */
    uint32_t default_cooldown_ms;    /* a 429 without a usable Retry-After; 0: 1000 */
    double aimd_decrease;            /* 0: 0.7 */
    double aimd_floor;               /* fraction of rate; 0: 0.1 */
    double aimd_increase;            /* fraction of rate per second; 0: 0.05 */
    uint32_t aimd_window_ms;         /* 0: every shed cuts (no lone pauses) */
    uint64_t (*clock_us)(void *arg); /* NULL: util_mono_us */
    void *clock_arg;
} budget_params;

typedef struct budget budget;
typedef struct budget_ticket budget_ticket;

budget *budget_new(const budget_params *p);
/* Start the pacing thread (own event_base). Without it, call budget_pump (tests). */
int budget_start(budget *b);
/* Stop the thread; every ticket must have been given back. */
void budget_free(budget *b);
/* A reload (any thread): new credentials are added, existing ones take their new rate,
 * burst and cap (tokens, cooldown, queue and counters kept), clients their new class
 * weight, own rate and queue bound, the queue its new limits and deadline; queued tickets
 * stay queued. A credential no longer configured keeps its state for the requests that
 * still use it. p->clock_us is ignored. -1 when more than 64 credentials were added since
 * budget_new (nothing changed then: a restart is needed). */
int budget_reconfigure(budget *b, const budget_params *p);

/* ---- admission ---- */

typedef enum {
    BUDGET_GO = 0,      /* send upstream now */
    BUDGET_WAIT = 1,    /* queued: the callback will say GO or EXPIRED */
    BUDGET_REJECT = 2,  /* answer the client with the verdict; no ticket */
    BUDGET_EXPIRED = 3, /* (callback / retry) the deadline passed: answer with the verdict */
} budget_outcome;

/* What to answer when the budget says no: status 503 or 429, an API error code and a
 * Retry-After in whole seconds (>= 1). */
typedef struct budget_verdict {
    int status;
    const char *code;    /* "QUEUE_FULL", "QUEUE_TIMEOUT", "OVERLOADED" (static) */
    const char *message; /* static */
    unsigned retry_after_s;
} budget_verdict;

/* Called on the ticket's event_base thread with GO or EXPIRED. The ticket is still the
 * caller's: it must eventually be passed to budget_done. v points into the ticket: it is
 * valid until budget_done. */
typedef void (*budget_cb)(budget_ticket *t, budget_outcome o, const budget_verdict *v, void *arg);

/*
 * Ask to send one request upstream on credential cred for client (unknown clients get
 * weight 1 and the default bounds). deadline_ms: the client's own queue timeout (0: the
 * configured default; larger values are clamped to it).
 * GO: *t is set, send now. WAIT: *t is set, wait for cb on base. REJECT: *v is filled, *t is
 * NULL. An unknown credential is not budgeted (GO with a ticket that costs nothing).
 */
budget_outcome budget_admit(budget *b, const char *cred, const char *client,
                            struct event_base *base, uint32_t deadline_ms, budget_cb cb, void *arg,
                            budget_ticket **t, budget_verdict *v);

/* How the upstream answered, for cooldown and AIMD: status 0 when nothing was sent or the
 * transfer failed without a status. */
typedef struct budget_result {
    int status;
    int has_retry_after;
    uint32_t retry_after_ms;
} budget_result;

/* Give the ticket back (any state: queued, granted, sent, expired). r: the upstream's
 * answer, or NULL when nothing was sent. Frees the ticket. */
void budget_done(budget_ticket *t, const budget_result *r);

/*
 * The upstream shed this request (r: 429 or 503) and it is safe to send again: record the
 * shed (cooldown, AIMD), give the slot back and queue the ticket at the front of its client
 * with its original deadline. WAIT: the callback will fire again. EXPIRED: the deadline
 * leaves no time for a retry, *v says what to answer (the ticket must still go to
 * budget_done).
 */
budget_outcome budget_retry(budget_ticket *t, const budget_result *r, budget_verdict *v);

/* The request of ticket t (running) is being sent again by the upstream module (a GET
 * answered 502/503): charge its credential one token, in debt if need be, so the budget's
 * long-run rate holds. No-op for an unbudgeted credential. */
void budget_charge(budget_ticket *t);

/* Whether a request on cred could go upstream right now without waiting: a token, a free
 * concurrency slot and nobody queued. For optional work (background refreshes): when 0, skip
 * it. A 1 takes nothing: follow with budget_admit. Unknown credentials: 1. */
int budget_idle(budget *b, const char *cred);

/* Drive pacing and expiry for every credential now (tests; the thread does it otherwise). */
void budget_pump(budget *b);

/* ---- a fleet-wide budget (gbudget.c keeps it in Redis) ----
 *
 * With a global source set, a credential's tokens and concurrency slots come from it: the
 * pacing thread asks for as many as requests are queued (ops->ask, on the budget thread), and
 * the answer (budget_global_answer, on the budget thread) grants them; admission never takes
 * a local token then (a request goes through the queue and the pump). Sheds go to the source
 * too (ops->shed: the fleet pauses). While the source is unreachable (ask returns -1 or the
 * answer is a failure) the credential runs a local bucket at local_share x its rate for a
 * second before asking again: a client request never fails and never waits on the source
 * longer than one answer. The fair queue, AIMD and the local concurrency count stay here. */
typedef struct budget_global_ops {
    /* Ask for up to want tokens of cred (rate: its effective rate now, burst, cap: its
     * max_concurrent; debt: requests sent on the local share since the last answer, to be
     * charged first, so a short outage does not add to the fleet's rate). 0:
     * budget_global_answer follows; -1: unreachable now. */
    int (*ask)(void *arg, const char *cred, unsigned want, double rate, double burst, unsigned cap,
               unsigned debt);
    /* The upstream shed on cred: pause the fleet for ms; empty: its bucket empties too (any
     * thread). */
    void (*shed)(void *arg, const char *cred, uint64_t ms, int empty);
    /* A slot the source granted is free again (any thread). */
    void (*release)(void *arg, const char *cred, uint64_t slot);
    /* budget_free: the thread has stopped, its event base still exists: free what is on it. */
    void (*stop)(void *arg);
} budget_global_ops;

/* Before any request (after budget_start). local_share in (0, 1]. */
void budget_set_global(budget *b, const budget_global_ops *ops, void *arg, double local_share);
/* The pacing thread's event base (the source's connection lives on it). */
struct event_base *budget_event_base(budget *b);
/* The answer to ask (budget thread): n tokens, their slots first_slot.. (0: no cap); when
 * n < want, ask again in retry_ms; paused_ms > 0: the fleet is paused that long; failed: no
 * answer (the local share takes over). */
void budget_global_answer(budget *b, const char *cred, unsigned n, uint64_t first_slot,
                          uint64_t retry_ms, uint64_t paused_ms, int failed);

/* ---- observation ---- */

/* Effective rate of a credential (-1 when unknown). */
double budget_effective_rate(budget *b, const char *cred);
/* The admin view: a malloc'd JSON document (GET /admin/budget). */
char *budget_admin_json(budget *b);
/* Prometheus text lines (hotgate_budget_*), malloc'd. */
char *budget_metrics_text(budget *b);

/* Parse an X-Hotgate-Queue-Timeout value (seconds, decimals allowed) into ms; 0 when
 * absent or invalid. */
uint32_t budget_parse_queue_timeout(const char *value);

#endif
