/*
 * test_budget: token bucket arithmetic over an injected clock, burst, concurrency cap,
 * Retry-After cooldown with a paced (burst-free) restart, AIMD steps, a lone shed explained by
 * Retry-After paying its pause and no rate cut (aimd_window), the fair queue behind
 * the budget (4:1 by class weight), deadlines, bounds, client limits, disconnects,
 * retries at the front; and one run of the real pacing thread with an event_base.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>
#include <pthread.h>

#include "route.h"
#include "budget.h"
#include "budget_stage.h"
#include "util.h"

#define MS 1000ull
#define SEC 1000000ull

static uint64_t fake_now;

static uint64_t fake_clock(void *arg)
{
    (void)arg;
    return fake_now;
}

/* ---- bucket ---- */

/* issue #10.1: a cooldown holds an unlimited bucket (no `rate`) too */
static void test_bucket_unlimited_cooldown(void **state)
{
    (void)state;
    budget_bucket b;
    budget_bucket_init(&b, 0, 0, 0);
    assert_int_equal(budget_bucket_take(&b, 0), 1);
    budget_bucket_cooldown(&b, 10 * MS, 30000 * MS);
    assert_int_equal(budget_bucket_take(&b, 11 * MS), 0);
    assert_int_equal(budget_bucket_take(&b, 30009 * MS), 0);
    assert_true(budget_bucket_ready_at(&b, 11 * MS) == 30010 * MS);
    assert_int_equal(budget_bucket_take(&b, 30010 * MS), 1);
    assert_int_equal(budget_bucket_take(&b, 30010 * MS), 1);
    assert_true(budget_bucket_ready_at(&b, 30011 * MS) == 30011 * MS);
}

static void test_bucket_arithmetic(void **state)
{
    (void)state;
    budget_bucket b;
    budget_bucket_init(&b, 10, 5, 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(budget_bucket_take(&b, 0), 1);
    assert_int_equal(budget_bucket_take(&b, 0), 0);
    assert_int_equal(budget_bucket_ready_at(&b, 0), 100 * MS);
    budget_bucket_advance(&b, 99 * MS, 0);
    assert_int_equal(budget_bucket_take(&b, 99 * MS), 0);
    budget_bucket_advance(&b, 100 * MS, 0);
    assert_int_equal(budget_bucket_take(&b, 100 * MS), 1);
    /* 250 ms: 2.5 tokens */
    budget_bucket_advance(&b, 350 * MS, 0);
    assert_int_equal(budget_bucket_take(&b, 350 * MS), 1);
    assert_int_equal(budget_bucket_take(&b, 350 * MS), 1);
    assert_int_equal(budget_bucket_take(&b, 350 * MS), 0);
    assert_int_equal(budget_bucket_ready_at(&b, 350 * MS), 400 * MS);
    /* idle for long: capped at burst */
    budget_bucket_advance(&b, 100 * SEC, 0);
    assert_true(b.tokens <= 5.0 && b.tokens > 4.99);
    /* refund never overfills */
    budget_bucket_refund(&b);
    assert_true(b.tokens <= 5.0);
    /* over 10 s from empty at 10/s: exactly 100 takes (no drift) */
    budget_bucket_init(&b, 10, 1, 0);
    int taken = 0;
    for (uint64_t t = 0; t <= 10 * SEC; t += MS) {
        budget_bucket_advance(&b, t, 0);
        while (budget_bucket_take(&b, t))
            taken++;
    }
    assert_int_equal(taken, 101); /* the initial token + 100 */
}

static void test_bucket_small_burst_and_unlimited(void **state)
{
    (void)state;
    budget_bucket b;
    budget_bucket_init(&b, 2, 0, 0);
    assert_true(b.burst == 1);
    assert_int_equal(budget_bucket_take(&b, 0), 1);
    assert_int_equal(budget_bucket_take(&b, 0), 0);
    budget_bucket_init(&b, 0, 0, 0); /* unlimited */
    for (int i = 0; i < 1000; i++)
        assert_int_equal(budget_bucket_take(&b, 0), 1);
    assert_int_equal(budget_bucket_ready_at(&b, 7), 7);
}

static void test_bucket_cooldown_smooth_resume(void **state)
{
    (void)state;
    budget_bucket b;
    budget_bucket_init(&b, 10, 5, 0);
    budget_bucket_cooldown(&b, 0, 2 * SEC);
    for (uint64_t t = 0; t < 2 * SEC; t += 10 * MS) {
        budget_bucket_advance(&b, t, 0.05);
        assert_int_equal(budget_bucket_take(&b, t), 0);
    }
    /* the pause ends with an empty bucket: the first token 100 ms after, then paced */
    assert_int_equal(budget_bucket_ready_at(&b, 1 * SEC), 2 * SEC + 100 * MS);
    budget_bucket_advance(&b, 2 * SEC, 0.05);
    assert_int_equal(budget_bucket_take(&b, 2 * SEC), 0);
    int taken = 0;
    for (uint64_t t = 2 * SEC; t <= 3 * SEC; t += MS) {
        budget_bucket_advance(&b, t, 0);
        while (budget_bucket_take(&b, t))
            taken++;
        /* never more than paced: no burst at the instant the pause ends */
        assert_true((uint64_t)taken <= (t - 2 * SEC) / (100 * MS));
    }
    assert_int_equal(taken, 10);
    /* a shorter cooldown while a longer one runs does not shorten it */
    budget_bucket_cooldown(&b, 3 * SEC, 5 * SEC);
    budget_bucket_cooldown(&b, 3 * SEC, 1 * SEC);
    assert_int_equal(b.cooldown_until_us, 8 * SEC);
}

static void test_bucket_aimd(void **state)
{
    (void)state;
    budget_bucket b;
    budget_bucket_init(&b, 10, 5, 0);
    assert_int_equal(budget_bucket_decrease(&b, 1 * SEC, 900 * MS, 0.7, 0.1), 1);
    assert_true(b.eff > 6.999 && b.eff < 7.001);
    /* a response to a request sent before that decrease does not count again */
    assert_int_equal(budget_bucket_decrease(&b, 1100 * MS, 950 * MS, 0.7, 0.1), 0);
    assert_true(b.eff > 6.999 && b.eff < 7.001);
    /* sent after it: another step */
    assert_int_equal(budget_bucket_decrease(&b, 1200 * MS, 1050 * MS, 0.7, 0.1), 1);
    assert_true(b.eff > 4.899 && b.eff < 4.901);
    /* floor at 10 % of the configured rate */
    for (int i = 0; i < 20; i++)
        budget_bucket_decrease(&b, (2 + (uint64_t)i) * SEC, (2 + (uint64_t)i) * SEC, 0.7, 0.1);
    assert_true(b.eff > 0.999 && b.eff < 1.001);
    /* additive climb: +5 % of 10/s = +0.5/s per second */
    uint64_t t = 30 * SEC;
    budget_bucket_advance(&b, t, 0.05);
    b.last_us = t;
    b.eff = 1;
    budget_bucket_advance(&b, t + 2 * SEC, 0.05);
    assert_true(b.eff > 1.999 && b.eff < 2.001);
    budget_bucket_advance(&b, t + 100 * SEC, 0.05);
    assert_true(b.eff == 10); /* capped at the configured rate */
    /* no climb during a cooldown */
    b.eff = 5;
    budget_bucket_cooldown(&b, t + 100 * SEC, 10 * SEC);
    budget_bucket_advance(&b, t + 109 * SEC, 0.05);
    assert_true(b.eff == 5);
}

/* issue #12: a pause (a lone shed explained by Retry-After) keeps the tokens and lets them
 * accrue up to the burst, without an AIMD climb; an emptying cooldown stays one */
static void test_bucket_pause_refills(void **state)
{
    (void)state;
    budget_bucket b;
    budget_bucket_init(&b, 10, 2, 0);
    assert_int_equal(budget_bucket_take(&b, 0), 1);
    assert_int_equal(budget_bucket_take(&b, 0), 1);
    b.eff = 9; /* below the rate: a pause must not climb it */
    budget_bucket_pause(&b, 0, 1 * SEC);
    assert_int_equal(b.cooldown_until_us, 1 * SEC);
    for (uint64_t t = 0; t < 1 * SEC; t += 10 * MS) {
        budget_bucket_advance(&b, t, 0.05);
        assert_int_equal(budget_bucket_take(&b, t), 0);
        /* the bucket will be full when the pause ends: the first token is due then */
        if (t >= 200 * MS)
            assert_int_equal(budget_bucket_ready_at(&b, t), 1 * SEC);
    }
    assert_true(b.eff == 9);
    budget_bucket_advance(&b, 1 * SEC, 0.05);
    assert_true(b.tokens > 1.999 && b.tokens <= 2);
    /* the burst the upstream banked too, then paced */
    assert_int_equal(budget_bucket_take(&b, 1 * SEC), 1);
    assert_int_equal(budget_bucket_take(&b, 1 * SEC), 1);
    assert_int_equal(budget_bucket_take(&b, 1 * SEC), 0);
    assert_int_equal(budget_bucket_ready_at(&b, 1 * SEC), 1 * SEC + 111112);
    /* a pause never turns a running emptying cooldown into a refilling one */
    budget_bucket_cooldown(&b, 2 * SEC, 1 * SEC);
    budget_bucket_pause(&b, 2 * SEC + 500 * MS, 1 * SEC);
    assert_int_equal(b.cooldown_until_us, 3 * SEC + 500 * MS);
    budget_bucket_advance(&b, 3 * SEC + 400 * MS, 0);
    assert_true(b.tokens == 0);
    assert_int_equal(budget_bucket_ready_at(&b, 3 * SEC), 3 * SEC + 500 * MS + 111112);
    /* and a cooldown ends a pause's refill */
    budget_bucket_init(&b, 10, 2, 0);
    budget_bucket_pause(&b, 0, 1 * SEC);
    budget_bucket_cooldown(&b, 100 * MS, 1 * SEC);
    budget_bucket_advance(&b, 1 * SEC, 0);
    assert_true(b.tokens == 0);
}

/* ---- budget with the fake clock, synchronous delivery ---- */

typedef struct rec {
    int go, expired;
    int order[256];
    int norder;
    budget_verdict v;
} rec;

typedef struct tk {
    rec *r;
    int id;
    budget_ticket *t;
    int state; /* 0 queued, 1 go, 2 expired */
} tk;

static void on_cb(budget_ticket *t, budget_outcome o, const budget_verdict *v, void *arg)
{
    tk *k = arg;
    assert_ptr_equal(k->t, t);
    if (o == BUDGET_GO) {
        k->state = 1;
        k->r->go++;
        if (k->r->norder < 256)
            k->r->order[k->r->norder++] = k->id;
    } else {
        assert_int_equal(o, BUDGET_EXPIRED);
        k->state = 2;
        k->r->expired++;
        k->r->v = *v;
    }
}

/* aimd_window of the budgets mk makes: 0 (every shed cuts, the policy before issue #12)
 * unless a test sets it */
static uint32_t mk_window_ms;

static budget *mk(double rate, double burst, unsigned maxc, unsigned qtotal, unsigned qclient,
                  uint32_t deadline_ms)
{
    static budget_cred_cfg creds[1];
    static budget_client_cfg clients[3];
    creds[0] = (budget_cred_cfg){"main", rate, burst, maxc};
    clients[0] = (budget_client_cfg){"web", "interactive", 4, 0, 0, 0};
    clients[1] = (budget_client_cfg){"etl", "batch", 1, 0, 0, 0};
    clients[2] = (budget_client_cfg){"capped", "batch", 1, 1, 1, 0};
    budget_params p = {0};
    p.creds = creds;
    p.ncreds = 1;
    p.clients = clients;
    p.nclients = 3;
    p.queue_max_total = qtotal;
    p.queue_max_per_client = qclient;
    p.queue_deadline_ms = deadline_ms;
    p.clock_us = fake_clock;
    p.aimd_window_ms = mk_window_ms;
    return budget_new(&p);
}

static budget_outcome admit(budget *b, const char *client, tk *k, rec *r, int id,
                            uint32_t deadline_ms, budget_verdict *v)
{
    memset(k, 0, sizeof *k);
    k->r = r;
    k->id = id;
    budget_outcome o = budget_admit(b, "main", client, NULL, deadline_ms, on_cb, k, &k->t, v);
    if (o == BUDGET_GO) {
        k->state = 1;
        r->go++;
        if (r->norder < 256)
            r->order[r->norder++] = id;
    }
    return o;
}

static void test_budget_concurrency_cap(void **state)
{
    (void)state;
    fake_now = 0;
    budget *b = mk(1000, 100, 2, 0, 0, 30000);
    rec r = {0};
    tk k[3];
    budget_verdict v;
    assert_int_equal(admit(b, "web", &k[0], &r, 0, 0, &v), BUDGET_GO);
    assert_int_equal(admit(b, "web", &k[1], &r, 1, 0, &v), BUDGET_GO);
    assert_int_equal(admit(b, "web", &k[2], &r, 2, 0, &v), BUDGET_WAIT);
    fake_now = 10 * SEC;
    budget_pump(b);
    assert_int_equal(k[2].state, 0); /* tokens plenty, but no slot */
    budget_result ok = {200, 0, 0};
    budget_done(k[0].t, &ok);
    budget_pump(b);
    assert_int_equal(k[2].state, 1);
    budget_done(k[1].t, &ok);
    budget_done(k[2].t, &ok);
    budget_free(b);
}

/* Retries the upstream module makes on its own are charged: the bucket goes into debt and
 * later admissions wait for it; budget_idle says when optional work may go. */
static void test_budget_charge_and_idle(void **state)
{
    (void)state;
    budget_bucket bb;
    budget_bucket_init(&bb, 10, 2, 0);
    assert_int_equal(budget_bucket_take(&bb, 0), 1);
    assert_int_equal(budget_bucket_take(&bb, 0), 1);
    budget_bucket_charge(&bb);
    budget_bucket_charge(&bb);
    budget_bucket_charge(&bb); /* debt is bounded by the burst */
    assert_true(bb.tokens >= -2.0 - 1e-9 && bb.tokens <= -2.0 + 1e-9);
    assert_int_equal(budget_bucket_ready_at(&bb, 0), 300 * MS); /* -2 -> 1 at 10/s */
    budget_bucket_init(&bb, 0, 1, 0);
    budget_bucket_charge(&bb); /* unlimited: nothing to charge */
    assert_int_equal(budget_bucket_take(&bb, 0), 1);

    fake_now = 0;
    budget *b = mk(10, 1, 2, 0, 0, 30000);
    rec r = {0};
    tk k[2];
    budget_verdict v;
    assert_true(budget_idle(b, "main"));
    assert_true(budget_idle(b, "nobody")); /* unbudgeted */
    assert_int_equal(admit(b, "web", &k[0], &r, 0, 0, &v), BUDGET_GO);
    assert_false(budget_idle(b, "main")); /* the token is gone */
    budget_charge(k[0].t);                /* the upstream module sent it again */
    fake_now = 100 * MS;                  /* one token accrued: pays the debt only */
    assert_false(budget_idle(b, "main"));
    assert_int_equal(admit(b, "web", &k[1], &r, 1, 0, &v), BUDGET_WAIT);
    budget_pump(b);
    assert_int_equal(k[1].state, 0);
    fake_now = 200 * MS;
    budget_pump(b);
    assert_int_equal(k[1].state, 1);
    budget_result ok = {200, 0, 0};
    budget_done(k[0].t, &ok);
    budget_done(k[1].t, &ok);
    char *js = budget_admin_json(b);
    if (!strstr(js, "\"retries_charged\": 1") && !strstr(js, "\"retries_charged\":1"))
        fail_msg("admin view: %s", js);
    free(js);
    /* a full concurrency cap also means no room */
    fake_now = 10 * SEC;
    assert_true(budget_idle(b, "main"));
    assert_int_equal(admit(b, "web", &k[0], &r, 2, 0, &v), BUDGET_GO);
    fake_now += 100 * MS;
    assert_int_equal(admit(b, "web", &k[1], &r, 3, 0, &v), BUDGET_GO);
    fake_now += 400 * MS;
    assert_false(budget_idle(b, "main")); /* a token, but both slots are taken */
    budget_done(k[0].t, &ok);
    budget_done(k[1].t, &ok);
    budget_free(b);
}

static void test_budget_cooldown_all_clients(void **state)
{
    (void)state;
    fake_now = 1 * SEC;
    budget *b = mk(10, 5, 0, 0, 0, 30000);
    rec r = {0};
    tk k[12];
    budget_verdict v;
    assert_int_equal(admit(b, "etl", &k[0], &r, 0, 0, &v), BUDGET_GO);
    budget_result shed = {429, 1, 2000};
    budget_done(k[0].t, &shed);
    /* every client waits, though the bucket had tokens */
    for (int i = 1; i < 11; i++)
        assert_int_equal(admit(b, i % 2 ? "web" : "etl", &k[i], &r, i, 0, &v), BUDGET_WAIT);
    for (uint64_t t = 1 * SEC; t <= 3 * SEC; t += 10 * MS) {
        fake_now = t;
        budget_pump(b);
        assert_int_equal(r.go, 1);
    }
    /* then paced (at most 10/s, at the lowered effective rate), never a burst */
    for (uint64_t t = 3 * SEC; t <= 5 * SEC; t += MS) {
        fake_now = t;
        budget_pump(b);
        assert_true((uint64_t)(r.go - 1) <= (t - 3 * SEC) / (100 * MS));
    }
    assert_int_equal(r.go, 11);
    assert_true(budget_effective_rate(b, "main") < 10);
    for (int i = 1; i < 11; i++)
        budget_done(k[i].t, NULL);
    budget_free(b);
}

static void test_budget_aimd_feedback(void **state)
{
    (void)state;
    fake_now = 1 * SEC;
    budget *b = mk(10, 10, 0, 0, 0, 30000);
    rec r = {0};
    tk k[4];
    budget_verdict v;
    for (int i = 0; i < 3; i++)
        assert_int_equal(admit(b, "etl", &k[i], &r, i, 0, &v), BUDGET_GO);
    budget_result shed = {429, 1, 0}; /* Retry-After: 0 -> no pause, but the rate drops */
    budget_done(k[0].t, &shed);
    double e1 = budget_effective_rate(b, "main");
    assert_true(e1 > 6.99 && e1 < 7.01);
    budget_done(k[1].t, &shed); /* same round trip: no second decrease */
    assert_true(budget_effective_rate(b, "main") > 6.99);
    fake_now = 1 * SEC + 1;
    assert_int_equal(admit(b, "etl", &k[3], &r, 3, 0, &v), BUDGET_GO);
    budget_result e503 = {503, 1, 0};
    budget_done(k[3].t, &e503);
    double e2 = budget_effective_rate(b, "main");
    assert_true(e2 > 4.89 && e2 < 4.91);
    budget_result plain503 = {503, 0, 0}; /* no Retry-After: an error, not shedding */
    budget_done(k[2].t, &plain503);
    assert_true(budget_effective_rate(b, "main") > 4.89);
    /* climbs back: +0.5/s per second */
    fake_now = 3 * SEC + 1;
    double e3 = budget_effective_rate(b, "main");
    assert_true(e3 > 5.89 && e3 < 5.91);
    fake_now = 60 * SEC;
    assert_true(budget_effective_rate(b, "main") == 10);
    char *js = budget_admin_json(b);
    json_t *j = json_loads(js, 0, NULL);
    assert_non_null(j);
    json_t *c0 = json_array_get(json_object_get(j, "credentials"), 0);
    assert_int_equal(json_integer_value(json_object_get(c0, "upstream_shed")), 3);
    assert_int_equal(json_integer_value(json_object_get(c0, "rate_decreases")), 2);
    json_decref(j);
    free(js);
    char *m = budget_metrics_text(b);
    assert_non_null(strstr(m, "hotgate_budget_effective_rate{credential=\"main\"} 10"));
    free(m);
    budget_free(b);
}

static long long cred_counter(budget *b, const char *key)
{
    char *js = budget_admin_json(b);
    json_t *j = json_loads(js, 0, NULL);
    assert_non_null(j);
    json_t *c0 = json_array_get(json_object_get(j, "credentials"), 0);
    json_t *m = strncmp(key, "global_", 7) == 0
                    ? json_object_get(json_object_get(c0, "global"),
                                      strcmp(key, "global_pauses") ? key + 7 : "fleet_pauses")
                    : json_object_get(c0, key);
    long long v = json_is_true(m) ? 1 : json_integer_value(m);
    json_decref(j);
    free(js);
    return v;
}

/* issue #12: a lone shed explained by Retry-After costs its pause, not the rate; a repeat
 * within aimd_window (of a request sent after the first was seen) cuts and restarts from an
 * empty bucket; a 429 without Retry-After, or Retry-After: 0, cuts even alone. */
static void test_budget_lone_shed_pauses(void **state)
{
    (void)state;
    mk_window_ms = 10000;
    fake_now = 1 * SEC;
    budget *b = mk(10, 2, 0, 0, 0, 60000);
    mk_window_ms = 0;
    rec r = {0};
    tk k[40];
    budget_verdict v;
    assert_int_equal(admit(b, "etl", &k[0], &r, 0, 0, &v), BUDGET_GO);
    assert_int_equal(admit(b, "etl", &k[1], &r, 1, 0, &v), BUDGET_GO);
    budget_result shed = {429, 1, 1000};
    fake_now = 1 * SEC + 10 * MS;
    budget_done(k[0].t, &shed);
    assert_true(budget_effective_rate(b, "main") == 10);
    assert_int_equal(cred_counter(b, "shed_paused"), 1);
    assert_int_equal(cred_counter(b, "rate_decreases"), 0);
    /* its sibling (sent before the shed was seen): the same event, no cut, no second count */
    budget_done(k[1].t, &shed);
    assert_true(budget_effective_rate(b, "main") == 10);
    assert_int_equal(cred_counter(b, "shed_paused"), 1);
    for (int i = 2; i < 12; i++)
        assert_int_equal(admit(b, i % 2 ? "web" : "etl", &k[i], &r, i, 0, &v), BUDGET_WAIT);
    for (uint64_t t = fake_now; t < 2 * SEC + 10 * MS; t += 10 * MS) {
        fake_now = t;
        budget_pump(b);
        assert_int_equal(r.go, 2); /* paused for every client */
    }
    /* the pause ends with the burst the upstream banked meanwhile, then the full rate */
    fake_now = 2 * SEC + 10 * MS;
    budget_pump(b);
    assert_int_equal(r.go, 4);
    for (uint64_t t = fake_now; t <= 2 * SEC + 810 * MS; t += MS) {
        fake_now = t;
        budget_pump(b);
    }
    assert_int_equal(r.go, 12); /* 2 + 8 in 800 ms: 10/s, not cut */
    assert_true(budget_effective_rate(b, "main") == 10);

    /* a request sent after that shed was seen, shed within the window: a cut, and the
     * restart is paced from an empty bucket */
    fake_now = 3 * SEC;
    budget_done(k[11].t, &shed);
    double e = budget_effective_rate(b, "main");
    assert_true(e > 6.99 && e < 7.01);
    assert_int_equal(cred_counter(b, "rate_decreases"), 1);
    assert_int_equal(cred_counter(b, "shed_paused"), 1);
    for (int i = 12; i < 20; i++)
        assert_int_equal(admit(b, "etl", &k[i], &r, i, 0, &v), BUDGET_WAIT);
    for (uint64_t t = fake_now; t <= 4 * SEC + 100 * MS; t += MS) {
        fake_now = t;
        budget_pump(b);
        assert_true(r.go - 12 <= (t > 4 * SEC ? (int)((t - 4 * SEC) / (140 * MS)) : 0));
    }
    for (int n = 0; r.go < 20 && n < 1000; n++) {
        fake_now += 10 * MS;
        budget_pump(b);
    }
    assert_int_equal(r.go, 20);
    for (int i = 2; i < 20; i++)
        if (i != 11)
            budget_done(k[i].t, NULL);

    /* long after the window: alone again, a pause without a cut */
    fake_now = 30 * SEC;
    assert_int_equal(admit(b, "etl", &k[20], &r, 20, 0, &v), BUDGET_GO);
    budget_done(k[20].t, &shed);
    assert_true(budget_effective_rate(b, "main") == 10);
    assert_int_equal(cred_counter(b, "shed_paused"), 2);
    assert_int_equal(cred_counter(b, "rate_decreases"), 1);

    /* a 429 without Retry-After explains nothing: a cut, even alone */
    fake_now = 60 * SEC;
    assert_int_equal(admit(b, "etl", &k[21], &r, 21, 0, &v), BUDGET_GO);
    budget_result bare = {429, 0, 0};
    budget_done(k[21].t, &bare);
    e = budget_effective_rate(b, "main");
    assert_true(e > 6.99 && e < 7.01);
    assert_int_equal(cred_counter(b, "rate_decreases"), 2);
    /* nor does Retry-After: 0 (no pause to pay) */
    fake_now = 120 * SEC;
    assert_int_equal(admit(b, "etl", &k[22], &r, 22, 0, &v), BUDGET_GO);
    budget_result zero = {429, 1, 0};
    budget_done(k[22].t, &zero);
    assert_int_equal(cred_counter(b, "rate_decreases"), 3);
    assert_int_equal(cred_counter(b, "shed_paused"), 2);
    char *m = budget_metrics_text(b);
    assert_non_null(strstr(m, "hotgate_budget_rate_decreases_total{credential=\"main\"} 3"));
    assert_non_null(strstr(m, "hotgate_budget_shed_paused_total{credential=\"main\"} 2"));
    free(m);
    budget_free(b);
}

/* ---- the fleet's budget: a recording global source (gbudget.c is the real one; its
 * script is tested against redis-server in test_gbudget) ---- */

typedef struct fake_src {
    int fail_ask; /* ask returns -1 */
    int asks, sheds, releases, last_empty;
    unsigned last_want, last_cap, last_debt;
    uint64_t last_shed_ms, last_slot;
} fake_src;

static int fs_ask(void *arg, const char *cred, unsigned want, double rate, double burst,
                  unsigned cap, unsigned debt)
{
    fake_src *f = arg;
    f->last_debt = debt;
    (void)cred, (void)rate, (void)burst;
    f->asks++;
    f->last_want = want;
    f->last_cap = cap;
    return f->fail_ask ? -1 : 0;
}

static void fs_shed(void *arg, const char *cred, uint64_t ms, int empty)
{
    fake_src *f = arg;
    (void)cred;
    f->sheds++;
    f->last_shed_ms = ms;
    f->last_empty = empty;
}

static void fs_release(void *arg, const char *cred, uint64_t slot)
{
    fake_src *f = arg;
    (void)cred;
    f->releases++;
    f->last_slot = slot;
}

static const budget_global_ops FS_OPS = {fs_ask, fs_shed, fs_release, NULL};

static void test_budget_global_source(void **state)
{
    (void)state;
    fake_now = 1 * SEC;
    mk_window_ms = 10000;
    budget *b = mk(10, 2, 0, 0, 0, 60000);
    mk_window_ms = 0;
    fake_src f = {0};
    budget_set_global(b, &FS_OPS, &f, 0.5);
    rec r = {0};
    tk k[40];
    budget_verdict v;
    /* no local token: the request waits for the fleet's answer */
    assert_int_equal(admit(b, "etl", &k[0], &r, 0, 0, &v), BUDGET_WAIT);
    budget_pump(b);
    assert_int_equal(f.asks, 1);
    assert_int_equal(f.last_want, 1);
    budget_pump(b); /* one ask at a time */
    assert_int_equal(f.asks, 1);
    budget_global_answer(b, "main", 1, 0, 0, 0, 0);
    assert_int_equal(r.go, 1);
    /* with the queue empty, one token is taken in hand: the next request goes at once */
    assert_int_equal(f.asks, 2);
    assert_int_equal(f.last_want, 1);
    budget_global_answer(b, "main", 1, 0, 0, 0, 0);
    assert_true(budget_idle(b, "main"));
    assert_int_equal(admit(b, "etl", &k[1], &r, 1, 0, &v), BUDGET_GO);
    /* three queued, the fleet grants one and says when to ask again */
    fake_now = 2 * SEC;
    budget_pump(b);
    int asks = f.asks;
    budget_global_answer(b, "main", 0, 0, 100, 0, 0); /* the hold: refused */
    for (int i = 2; i < 5; i++)
        assert_int_equal(admit(b, "etl", &k[i], &r, i, 0, &v), BUDGET_WAIT);
    budget_pump(b);
    assert_int_equal(f.asks, asks); /* not before retry_ms */
    fake_now = 2 * SEC + 100 * MS;
    budget_pump(b);
    assert_int_equal(f.asks, asks + 1);
    assert_int_equal(f.last_want, 3);
    budget_global_answer(b, "main", 1, 0, 100, 0, 0);
    assert_int_equal(r.go, 3);
    /* Redis out of reach (the answer failed): the local share, 0.5 x 10/s, burst 1 */
    fake_now = 2 * SEC + 200 * MS;
    budget_pump(b);
    int go0 = r.go;
    budget_global_answer(b, "main", 0, 0, 0, 0, 1);
    for (int i = 5; i < 15; i++)
        assert_int_equal(admit(b, "etl", &k[i], &r, i, 0, &v), BUDGET_WAIT);
    asks = f.asks;
    for (uint64_t t = fake_now; t <= 3 * SEC + 250 * MS; t += MS) {
        fake_now = t;
        budget_pump(b);
    }
    assert_int_equal(f.asks, asks + 1);        /* asked again only after 1 s of local share */
    assert_int_equal(f.last_debt, r.go - go0); /* what went on the local share is charged */
    int local = r.go - go0;
    assert_true(local >= 5 && local <= 6); /* 1 + 5/s over 1 s */
    char *js = budget_admin_json(b);
    assert_non_null(strstr(js, "\"local_share_grants\":"));
    free(js);
    budget_global_answer(b, "main", 0, 0, 0, 0, 1);
    /* ask refused at once (circuit open): local share at once */
    f.fail_ask = 1;
    fake_now = 5 * SEC;
    int go1 = r.go;
    budget_pump(b);
    assert_true(r.go > go1);
    f.fail_ask = 0;
    /* local share over, the fleet answers again: the queue drains */
    fake_now = 10 * SEC;
    for (int n = 0; n < 100 && r.go < 15; n++) {
        int before = f.asks;
        budget_pump(b);
        if (f.asks > before)
            budget_global_answer(b, "main", f.last_want, 0, 0, 0, 0);
        fake_now += 10 * MS;
    }
    assert_int_equal(r.go, 15);
    assert_int_equal(f.last_want, 1); /* the queue empty: a token to hold, asked for */
    budget_global_answer(b, "main", 1, 0, 0, 0, 0);
    /* the fleet is paused (some instance saw a Retry-After): this one pauses too */
    for (int i = 15; i < 17; i++)
        assert_int_equal(admit(b, "etl", &k[i], &r, i, 0, &v), i == 15 ? BUDGET_GO : BUDGET_WAIT);
    fake_now = 20 * SEC;
    int before = f.asks;
    budget_pump(b);
    assert_int_equal(f.asks, before + 1);
    budget_global_answer(b, "main", 0, 0, 0, 3000, 0);
    assert_int_equal(cred_counter(b, "global_pauses"), 1);
    fake_now = 22 * SEC;
    budget_pump(b);
    assert_int_equal(f.asks, before + 1); /* nothing asked during the pause */
    /* slots: granted with ids, released on done; a lone shed goes to the fleet as a pause */
    fake_now = 24 * SEC;
    budget_pump(b);
    budget_global_answer(b, "main", 2, 7, 0, 0, 0);
    assert_int_equal(k[16].state, 1);
    assert_int_equal(f.releases, 0);
    budget_result shed = {429, 1, 1500};
    budget_done(k[16].t, &shed);
    assert_int_equal(f.releases, 1);
    assert_int_equal(f.last_slot, 7);
    assert_int_equal(f.sheds, 1);
    assert_int_equal(f.last_shed_ms, 1500);
    assert_int_equal(f.last_empty, 0);
    for (int i = 0; i < 17; i++)
        if (i != 16)
            budget_done(k[i].t, NULL);
    budget_free(b);
}

static void test_budget_fair_4_to_1(void **state)
{
    (void)state;
    fake_now = 0;
    budget *b = mk(10, 1, 0, 0, 0, 600000);
    rec r = {0};
    static tk k[200];
    budget_verdict v;
    assert_int_equal(admit(b, "etl", &k[0], &r, 0, 0, &v), BUDGET_GO);
    for (int i = 1; i < 100; i++)
        assert_int_equal(admit(b, "etl", &k[i], &r, i, 0, &v), BUDGET_WAIT);
    for (int i = 100; i < 200; i++)
        assert_int_equal(admit(b, "web", &k[i], &r, i, 0, &v), BUDGET_WAIT);
    for (int s = 1; s <= 100; s++) {
        fake_now = (uint64_t)s * 100 * MS;
        budget_pump(b);
    }
    assert_int_equal(r.go, 101);
    int web = 0;
    for (int i = 1; i < 101; i++)
        web += r.order[i] >= 100;
    assert_true(web >= 78 && web <= 82);
    for (int i = 0; i < 200; i++)
        budget_done(k[i].t, NULL);
    budget_free(b);
}

static void test_budget_deadline_and_full(void **state)
{
    (void)state;
    fake_now = 0;
    budget *b = mk(1, 1, 0, 4, 3, 5000);
    rec r = {0};
    tk k[8];
    budget_verdict v;
    assert_int_equal(admit(b, "etl", &k[0], &r, 0, 0, &v), BUDGET_GO);
    assert_int_equal(admit(b, "etl", &k[1], &r, 1, 0, &v), BUDGET_WAIT);
    assert_int_equal(admit(b, "etl", &k[2], &r, 2, 1500, &v), BUDGET_WAIT);  /* shortened */
    assert_int_equal(admit(b, "etl", &k[3], &r, 3, 99000, &v), BUDGET_WAIT); /* clamped */
    /* per client bound: 3 */
    assert_int_equal(admit(b, "etl", &k[4], &r, 4, 0, &v), BUDGET_REJECT);
    assert_int_equal(v.status, 503);
    assert_string_equal(v.code, "QUEUE_FULL");
    assert_true(v.retry_after_s >= 3); /* 3 queued ahead at 1/s */
    assert_null(k[4].t);
    assert_int_equal(admit(b, "web", &k[5], &r, 5, 0, &v), BUDGET_WAIT);
    /* total bound: 4 */
    assert_int_equal(admit(b, "web", &k[6], &r, 6, 0, &v), BUDGET_REJECT);
    assert_string_equal(v.code, "QUEUE_FULL");
    /* t = 1 s: one token: etl's head (start tag 0, ties with web's, earlier) */
    fake_now = 1 * SEC;
    budget_pump(b);
    assert_int_equal(k[1].state, 1);
    /* t = 1.5 s: the shortened deadline expires */
    fake_now = 1500 * MS;
    budget_pump(b);
    assert_int_equal(k[2].state, 2);
    assert_int_equal(r.v.status, 503);
    assert_string_equal(r.v.code, "QUEUE_TIMEOUT");
    assert_true(r.v.retry_after_s >= 1);
    /* t = 2 s: web (tag 0) before etl's k3 (tag 2) */
    fake_now = 2 * SEC;
    budget_pump(b);
    assert_int_equal(k[5].state, 1);
    assert_int_equal(k[3].state, 0);
    /* t = 3 s: k3, within its deadline (clamped to the 5 s default) */
    fake_now = 3 * SEC;
    budget_pump(b);
    assert_int_equal(k[3].state, 1);
    for (int i = 0; i < 6; i++)
        if (i != 4)
            budget_done(k[i].t, NULL);
    budget_free(b);
}

static void test_budget_deadline_expiry_order(void **state)
{
    (void)state;
    fake_now = 0;
    budget *b = mk(1, 1, 0, 0, 0, 2000);
    rec r = {0};
    tk k[5];
    budget_verdict v;
    assert_int_equal(admit(b, "etl", &k[0], &r, 0, 0, &v), BUDGET_GO);
    budget_result shed = {429, 1, 10000};
    budget_done(k[0].t, &shed); /* 10 s pause: everything queued now times out */
    for (int i = 1; i < 5; i++)
        assert_int_equal(admit(b, "etl", &k[i], &r, i, 0, &v), BUDGET_WAIT);
    fake_now = 1999 * MS;
    budget_pump(b);
    assert_int_equal(r.expired, 0);
    fake_now = 2000 * MS;
    budget_pump(b);
    assert_int_equal(r.expired, 4);
    assert_string_equal(r.v.code, "QUEUE_TIMEOUT");
    assert_true(r.v.retry_after_s >= 8); /* the pause is part of the estimate */
    for (int i = 1; i < 5; i++)
        budget_done(k[i].t, NULL);
    budget_free(b);
}

static void test_budget_client_limit(void **state)
{
    (void)state;
    fake_now = 0;
    budget *b = mk(100, 10, 0, 0, 0, 30000);
    rec r = {0};
    tk k[3];
    budget_verdict v;
    assert_int_equal(admit(b, "capped", &k[0], &r, 0, 0, &v), BUDGET_GO);
    assert_int_equal(admit(b, "capped", &k[1], &r, 1, 0, &v), BUDGET_REJECT);
    assert_int_equal(v.status, 429);
    assert_string_equal(v.code, "OVERLOADED");
    assert_int_equal(v.retry_after_s, 1);
    assert_int_equal(admit(b, "web", &k[2], &r, 2, 0, &v), BUDGET_GO); /* others unaffected */
    fake_now = 1 * SEC;
    assert_int_equal(admit(b, "capped", &k[1], &r, 1, 0, &v), BUDGET_GO);
    for (int i = 0; i < 3; i++)
        budget_done(k[i].t, NULL);
    budget_free(b);
}

/* A reload: a queued ticket survives and goes when the new cap allows; a client's new own
 * limit applies to its existing flow; a new credential is budgeted; too many new ones are
 * refused without changing anything. */
static void test_budget_reconfigure(void **state)
{
    (void)state;
    fake_now = 0;
    budget *b = mk(1000, 100, 1, 0, 0, 30000);
    rec r = {0};
    tk k[4];
    budget_verdict v;
    assert_int_equal(admit(b, "web", &k[0], &r, 0, 0, &v), BUDGET_GO);
    assert_int_equal(admit(b, "web", &k[1], &r, 1, 0, &v), BUDGET_WAIT); /* cap 1 */

    budget_cred_cfg creds[2] = {{"main", 1000, 100, 2}, {"second", 1, 1, 0}};
    budget_client_cfg clients[1] = {{"web", "interactive", 4, 1, 1, 0}};
    budget_params p = {0};
    p.creds = creds;
    p.ncreds = 2;
    p.clients = clients;
    p.nclients = 1;
    p.queue_deadline_ms = 30000;
    assert_int_equal(budget_reconfigure(b, &p), 0);
    budget_pump(b);
    assert_int_equal(k[1].state, 1); /* the queued ticket went under the new cap of 2 */
    budget_done(k[0].t, NULL);
    /* web now has its own limit of 1/s burst 1: its flow existed before the reload */
    assert_int_equal(admit(b, "web", &k[2], &r, 2, 0, &v), BUDGET_GO);
    assert_int_equal(admit(b, "web", &k[3], &r, 3, 0, &v), BUDGET_REJECT);
    assert_int_equal(v.status, 429);
    for (int i = 1; i < 3; i++)
        budget_done(k[i].t, NULL);
    /* the new credential exists, with its rate */
    assert_true(budget_effective_rate(b, "second") > 0.99 &&
                budget_effective_rate(b, "second") < 1.01);
    assert_true(budget_effective_rate(b, "main") > 999);

    budget_cred_cfg many[80];
    char names[80][16];
    for (int i = 0; i < 80; i++) {
        snprintf(names[i], sizeof names[i], "c%d", i);
        many[i] = (budget_cred_cfg){names[i], 5, 1, 0};
    }
    p.creds = many;
    p.ncreds = 80;
    assert_int_equal(budget_reconfigure(b, &p), -1);
    assert_true(budget_effective_rate(b, "c0") < 0); /* nothing added */
    budget_free(b);
}

static void test_budget_disconnect_leaves_queue(void **state)
{
    (void)state;
    fake_now = 0;
    budget *b = mk(1, 1, 0, 0, 0, 30000);
    rec r = {0};
    tk k[4];
    budget_verdict v;
    assert_int_equal(admit(b, "etl", &k[0], &r, 0, 0, &v), BUDGET_GO);
    for (int i = 1; i < 4; i++)
        assert_int_equal(admit(b, "etl", &k[i], &r, i, 0, &v), BUDGET_WAIT);
    budget_done(k[1].t, NULL); /* the client went away */
    char *js = budget_admin_json(b);
    assert_non_null(strstr(js, "\"queued\":2"));
    free(js);
    fake_now = 1 * SEC;
    budget_pump(b);
    assert_int_equal(k[2].state, 1); /* its place went to the next one */
    assert_int_equal(k[1].state, 0);
    budget_done(k[0].t, NULL);
    budget_done(k[2].t, NULL);
    budget_done(k[3].t, NULL);
    budget_free(b);
}

static void test_budget_retry_front(void **state)
{
    (void)state;
    fake_now = 0;
    budget *b = mk(10, 1, 0, 0, 0, 3000);
    rec r = {0};
    tk k[4];
    budget_verdict v;
    assert_int_equal(admit(b, "etl", &k[0], &r, 0, 0, &v), BUDGET_GO);
    assert_int_equal(admit(b, "etl", &k[1], &r, 1, 0, &v), BUDGET_WAIT);
    assert_int_equal(admit(b, "web", &k[2], &r, 2, 0, &v), BUDGET_WAIT);
    budget_result shed = {429, 1, 1000};
    k[0].state = 0;
    assert_int_equal(budget_retry(k[0].t, &shed, &v), BUDGET_WAIT);
    for (uint64_t t = 0; t < 1200 * MS; t += 10 * MS) { /* eff 7/s after the shed */
        fake_now = t;
        budget_pump(b);
    }
    assert_int_equal(k[0].state, 1); /* the retried one goes first after the pause */
    assert_int_equal(k[1].state + k[2].state, 0);
    /* a retry whose deadline leaves no room expires */
    budget_result longshed = {429, 1, 5000};
    assert_int_equal(budget_retry(k[0].t, &longshed, &v), BUDGET_EXPIRED);
    assert_int_equal(v.status, 503);
    assert_string_equal(v.code, "QUEUE_TIMEOUT");
    for (int i = 0; i < 3; i++)
        budget_done(k[i].t, NULL);
    budget_free(b);
}

static void test_budget_unknown_credential(void **state)
{
    (void)state;
    budget *b = mk(1, 1, 0, 0, 0, 30000);
    budget_ticket *t = NULL;
    budget_verdict v;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(budget_admit(b, "nope", "web", NULL, 0, on_cb, NULL, &t, &v), BUDGET_GO);
        budget_done(t, NULL);
    }
    assert_true(budget_effective_rate(b, "nope") < 0);
    budget_free(b);
}

static void test_parse_queue_timeout(void **state)
{
    (void)state;
    assert_int_equal(budget_parse_queue_timeout("2"), 2000);
    assert_int_equal(budget_parse_queue_timeout("0.25"), 250);
    assert_int_equal(budget_parse_queue_timeout(" 3 "), 3000);
    assert_int_equal(budget_parse_queue_timeout("0"), 0);
    assert_int_equal(budget_parse_queue_timeout("-1"), 0);
    assert_int_equal(budget_parse_queue_timeout("x"), 0);
    assert_int_equal(budget_parse_queue_timeout("5s"), 0);
    assert_int_equal(budget_parse_queue_timeout(NULL), 0);
}

/* ---- the real thing: pacing thread + a worker event_base ---- */

typedef struct live {
    struct event_base *base;
    int go;
    uint64_t first_us, last_us;
    budget_ticket *t[20];
} live;

typedef struct live_arg {
    live *l;
    int i;
} live_arg;

static void live_cb(budget_ticket *t, budget_outcome o, const budget_verdict *v, void *arg)
{
    (void)v;
    live_arg *a = arg;
    assert_int_equal(o, BUDGET_GO);
    assert_ptr_equal(a->l->t[a->i], t);
    a->l->go++;
    a->l->last_us = util_mono_us();
    budget_done(t, NULL);
    a->l->t[a->i] = NULL;
    if (a->l->go == 20)
        event_base_loopbreak(a->l->base);
}

static void test_budget_thread_paces(void **state)
{
    (void)state;
    evthread_use_pthreads();
    budget_cred_cfg cred = {"main", 100, 1, 0};
    budget_params p = {0};
    p.creds = &cred;
    p.ncreds = 1;
    p.queue_deadline_ms = 10000;
    budget *b = budget_new(&p);
    assert_int_equal(budget_start(b), 0);
    live l = {0};
    live_arg args[20];
    l.base = event_base_new();
    l.first_us = util_mono_us();
    for (int i = 0; i < 20; i++) {
        args[i] = (live_arg){&l, i};
        budget_verdict v;
        budget_outcome o = budget_admit(b, "main", "x", l.base, 0, live_cb, &args[i], &l.t[i], &v);
        if (o == BUDGET_GO) {
            l.go++;
            budget_done(l.t[i], NULL);
            l.t[i] = NULL;
        } else {
            assert_int_equal(o, BUDGET_WAIT);
        }
    }
    assert_int_equal(l.go, 1);
    struct timeval guard = {5, 0};
    event_base_loopexit(l.base, &guard);
    event_base_dispatch(l.base);
    assert_int_equal(l.go, 20);
    uint64_t took = l.last_us - l.first_us;
    /* 19 tokens at 100/s: 190 ms, with scheduling slack */
    assert_true(took >= 180 * MS);
    assert_true(took < 1500 * MS);
    budget_free(b);
    event_base_free(l.base);
}

typedef struct retry_live {
    struct event_base *base;
    pthread_t owner;
    int go, on_owner;
} retry_live;

static void retry_cb(budget_ticket *t, budget_outcome o, const budget_verdict *v, void *arg)
{
    (void)t;
    (void)v;
    retry_live *r = arg;
    assert_int_equal(o, BUDGET_GO);
    r->go++;
    r->on_owner = pthread_equal(pthread_self(), r->owner);
    event_base_loopbreak(r->base);
}

/* A ticket admitted at once (no event yet) and then shed upstream waits and is woken on its
 * owner's thread, not on the pacing thread. */
static void test_budget_thread_retry_of_immediate_ticket(void **state)
{
    (void)state;
    evthread_use_pthreads();
    budget_cred_cfg cred = {"main", 100, 1, 0};
    budget_params p = {0};
    p.creds = &cred;
    p.ncreds = 1;
    p.queue_deadline_ms = 10000;
    budget *b = budget_new(&p);
    assert_int_equal(budget_start(b), 0);
    retry_live r = {0};
    r.base = event_base_new();
    r.owner = pthread_self();
    budget_ticket *t = NULL;
    budget_verdict v;
    assert_int_equal(budget_admit(b, "main", "x", r.base, 0, retry_cb, &r, &t, &v), BUDGET_GO);
    budget_result shed = {429, 1, 100};
    uint64_t t0 = util_mono_us();
    assert_int_equal(budget_retry(t, &shed, &v), BUDGET_WAIT);
    struct timeval guard = {5, 0};
    event_base_loopexit(r.base, &guard);
    event_base_dispatch(r.base);
    assert_int_equal(r.go, 1);
    assert_true(r.on_owner);
    assert_true(util_mono_us() - t0 >= 100 * MS); /* after the Retry-After pause */
    budget_done(t, NULL);
    budget_free(b);
    event_base_free(r.base);
}

/* The budget's retry safety: the routing table's replay_ok column (route.h). */
static int budget_stage_retry_safe(const char *method, const char *path)
{
    struct route_policy p;
    route_match(method, path, NULL, &p);
    return p.replay_ok;
}

static void test_retry_safe_routes(void **state)
{
    (void)state;
    assert_true(budget_stage_retry_safe("GET", "/v1/connections"));
    assert_true(budget_stage_retry_safe("HEAD", "/v1/results/r1"));
    assert_true(budget_stage_retry_safe("POST", "/v1/query"));
    assert_true(budget_stage_retry_safe("POST", "/v1/queries/sq_1/execute"));
    assert_false(budget_stage_retry_safe("POST", "/v1/queries"));
    assert_false(budget_stage_retry_safe("POST", "/v1/queries//execute"));
    assert_false(budget_stage_retry_safe("POST", "/v1/queries/a/b/execute"));
    assert_false(budget_stage_retry_safe("POST", "/v1/queries/sq_1/execute/x"));
    assert_false(budget_stage_retry_safe("POST", "/v1/query/x"));
    assert_false(budget_stage_retry_safe("POST", "/v1/secrets"));
    assert_false(budget_stage_retry_safe("DELETE", "/v1/connections/c1"));
    assert_false(budget_stage_retry_safe("PUT", "/v1/query"));
    assert_false(budget_stage_retry_safe(NULL, "/v1/query"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_arithmetic),
        cmocka_unit_test(test_bucket_unlimited_cooldown),
        cmocka_unit_test(test_bucket_small_burst_and_unlimited),
        cmocka_unit_test(test_bucket_cooldown_smooth_resume),
        cmocka_unit_test(test_bucket_aimd),
        cmocka_unit_test(test_bucket_pause_refills),
        cmocka_unit_test(test_budget_concurrency_cap),
        cmocka_unit_test(test_budget_charge_and_idle),
        cmocka_unit_test(test_budget_cooldown_all_clients),
        cmocka_unit_test(test_budget_aimd_feedback),
        cmocka_unit_test(test_budget_lone_shed_pauses),
        cmocka_unit_test(test_budget_global_source),
        cmocka_unit_test(test_budget_fair_4_to_1),
        cmocka_unit_test(test_budget_deadline_and_full),
        cmocka_unit_test(test_budget_deadline_expiry_order),
        cmocka_unit_test(test_budget_client_limit),
        cmocka_unit_test(test_budget_disconnect_leaves_queue),
        cmocka_unit_test(test_budget_reconfigure),
        cmocka_unit_test(test_budget_retry_front),
        cmocka_unit_test(test_budget_unknown_credential),
        cmocka_unit_test(test_parse_queue_timeout),
        cmocka_unit_test(test_retry_safe_routes),
        cmocka_unit_test(test_budget_thread_paces),
        cmocka_unit_test(test_budget_thread_retry_of_immediate_ticket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
