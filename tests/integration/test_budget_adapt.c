/*
 * test_budget_adapt: hotgate facing an upstream that sheds load.
 *   1. hotgate configured at 40/s in front of a sim limited to 20/s (burst 5): the batch
 *      client still sees no 429 (hotgate swallows the sim's 429s, honours Retry-After, and
 *      retries at the front of the queue) and the effective rate drops below 40 (AIMD).
 *   2. a sim answering one 429 with Retry-After: 2 (POST /_sim/faults): no upstream request
 *      on that credential for 2 s after it, then paced traffic again.
 *   3. issue #12: one lone 429 with Retry-After: 1 in an 80-query job at 10/s: the credential
 *      pauses, the rate is not cut (effective rate sampled all along, rate_decreases 0,
 *      shed_paused 1), exactly one upstream 429, no client 429.
 *   4. a second 429 within aimd_window after that pause: the rate is cut (rate_decreases 1).
 */
#include "budget_it.h"

static bit_env env;

typedef struct poller {
    volatile int stop;
    double min_eff, last_eff;
    long long shed;
} poller;

static void *poll_main(void *arg)
{
    poller *p = arg;
    p->min_eff = 1e9;
    while (!p->stop) {
        long long shed = 0;
        double e = bit_effective_rate(&env, &shed);
        if (e >= 0) {
            if (e < p->min_eff)
                p->min_eff = e;
            p->last_eff = e;
            p->shed = shed;
        }
        bit_sleep_ms(100);
    }
    return NULL;
}

static void test_above_upstream_limit(void **state)
{
    (void)state;
    assert_int_equal(bit_start(&env, "budget-adapt", 20, 5, 40, 5,
                               "[queue]\nmax_total = 2000\nmax_per_client = 1000\n"
                               "deadline = 120\n"),
                     0);
    bit_sim_stats s0 = {0}, s1 = {0};
    assert_int_equal(bit_sim_stats_get(&env, &s0), 0);
    poller p = {0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, poll_main, &p), 0);
    bit_run run;
    bit_run_queries(env.base, BIT_KEY_BATCH, 300, 50, 500000, NULL, &run);
    p.stop = 1;
    pthread_join(th, NULL);
    assert_int_equal(bit_sim_stats_get(&env, &s1), 0);
    double makespan = run.t_end - run.t_start;
    printf("# batch 300 @ 50 conns, hotgate 40/s vs sim 20/s: makespan %.2f s, 200s %d, "
           "client 429s %d, sim requests %lld, sim 429s %lld, hotgate saw %lld sheds, "
           "effective rate min %.1f last %.1f\n",
           makespan, run.by_status[200], run.n429, s1.requests - s0.requests, s1.r429 - s0.r429,
           p.shed, p.min_eff, p.last_eff);
    assert_int_equal(run.nerr, 0);
    assert_int_equal(run.n429, 0);
    assert_int_equal(run.by_status[200], 300);
    assert_true(p.min_eff < 40);
    /* it was the sim's limit that hotgate learnt from */
    assert_true(s1.r429 - s0.r429 >= 1);
    /* and it did not hammer the sim: far fewer 429s than requests */
    assert_true(s1.r429 - s0.r429 < 150);
    free(run.r);
    bit_stop(&env);
}

typedef struct bg {
    bit_run run;
} bg;

static void *bg_main(void *arg)
{
    bg *b = arg;
    bit_run_queries(env.base, BIT_KEY_BATCH, 70, 8, 600000, NULL, &b->run);
    return NULL;
}

typedef struct sample {
    double t;
    long long req, r429;
} sample;

static void test_one_shot_retry_after(void **state)
{
    (void)state;
    /* hotgate at 10/s, well under the sim's 20/s: the only 429 is the injected one */
    assert_int_equal(bit_start(&env, "budget-fault", 20, 5, 10, 2,
                               "[queue]\nmax_total = 2000\nmax_per_client = 1000\n"
                               "deadline = 60\n"),
                     0);
    bg b;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bg_main, &b), 0);
    bit_sleep_ms(1000);
    /* the baseline is taken before the fault is armed: the 429 may come at once */
    bit_sim_stats base = {0};
    assert_int_equal(bit_sim_stats_get(&env, &base), 0);
    char url[128];
    snprintf(url, sizeof url, "%s/_sim/faults", env.simurl);
    const char *fault = "{\"retry_after\":{\"count\":1,\"seconds\":2}}";
    const char *h[] = {"Content-Type: application/json", NULL};
    hresp r;
    assert_int_equal(http_do("POST", url, h, fault, strlen(fault), &r), 0);
    printf("# POST /_sim/faults -> %ld %s\n", r.status, r.body);
    assert_true(r.status >= 200 && r.status < 300);
    hresp_free(&r);
    static sample s[400];
    int ns = 0;
    double t_end = bit_now() + 4.5;
    int cooldown_seen = 0;
    while (bit_now() < t_end && ns < 400) {
        bit_sim_stats st = {0};
        if (bit_sim_stats_get(&env, &st) == 0) {
            s[ns].t = bit_now();
            s[ns].req = st.requests;
            s[ns].r429 = st.r429;
            ns++;
        }
        if (!cooldown_seen && ns > 0 && s[ns - 1].r429 > base.r429) {
            char aurl[128];
            snprintf(aurl, sizeof aurl, "%s/admin/budget", env.admin);
            json_t *j = bit_get_json(aurl);
            json_t *c = json_array_get(json_object_get(j, "credentials"), 0);
            cooldown_seen = json_is_true(json_object_get(c, "cooldown_active"));
            json_decref(j);
        }
        bit_sleep_ms(20);
    }
    pthread_join(th, NULL);
    /* t429: the first sample showing the 429 (it happened at or before it) */
    int k = -1;
    for (int i = 0; i < ns; i++)
        if (s[i].r429 > base.r429) {
            k = i;
            break;
        }
    assert_true(k >= 0);
    double t429 = s[k].t;
    /* requests hotgate sent before it read the 429 may still land just after it: the quiet
     * period is measured from 100 ms after the 429 was counted */
    int j = k;
    while (j < ns && s[j].t < t429 + 0.1)
        j++;
    assert_true(j < ns);
    long long req_at = s[j].req;
    double last_quiet = t429, resumed = 0;
    for (int i = j; i < ns; i++) {
        if (s[i].req == req_at && !resumed)
            last_quiet = s[i].t;
        else if (!resumed)
            resumed = s[i].t;
    }
    printf("# one-shot 429 Retry-After: 2: upstream quiet for >= %.2f s after the 429 was "
           "counted, resumed %.2f s after it; cooldown visible in /admin/budget: %s; batch "
           "client 429s %d, 200s %d\n",
           last_quiet - t429, resumed ? resumed - t429 : -1.0, cooldown_seen ? "yes" : "no",
           b.run.n429, b.run.by_status[200]);
    assert_true(last_quiet - t429 >= 1.85);
    assert_true(resumed > 0 && resumed - t429 < 2.8);
    assert_int_equal(b.run.n429, 0);
    assert_int_equal(b.run.by_status[200], 70);
    free(b.run.r);
    bit_stop(&env);
}

/* one 429 with Retry-After: seconds on the sim's next /v1 request */
static void inject_429(int seconds)
{
    char url[128], body[96];
    snprintf(url, sizeof url, "%s/_sim/faults", env.simurl);
    snprintf(body, sizeof body, "{\"retry_after\":{\"count\":1,\"seconds\":%d}}", seconds);
    const char *h[] = {"Content-Type: application/json", NULL};
    hresp r;
    assert_int_equal(http_do("POST", url, h, body, strlen(body), &r), 0);
    assert_true(r.status >= 200 && r.status < 300);
    hresp_free(&r);
}

/* a counter of credential main in /admin/budget (-1 on error) */
static long long admin_counter(const char *key)
{
    char url[128];
    snprintf(url, sizeof url, "%s/admin/budget", env.admin);
    json_t *j = bit_get_json(url);
    if (!j)
        return -1;
    json_t *c = json_array_get(json_object_get(j, "credentials"), 0);
    long long v = json_is_integer(json_object_get(c, key))
                      ? json_integer_value(json_object_get(c, key))
                      : json_is_true(json_object_get(c, key));
    json_decref(j);
    return v;
}

typedef struct job {
    int n, conc, offset;
    bit_run run;
} job;

static void *job_main(void *arg)
{
    job *jb = arg;
    bit_run_queries(env.base, BIT_KEY_BATCH, jb->n, jb->conc, jb->offset, NULL, &jb->run);
    return NULL;
}

/* the sim's own limit is well above hotgate's 10/s: the only 429s are the injected ones */
static int start_lone(const char *tag)
{
    return bit_start(&env, tag, 40, 10, 10, 2,
                     "[queue]\nmax_total = 2000\nmax_per_client = 1000\ndeadline = 60\n");
}

static void test_lone_shed_no_cut(void **state)
{
    (void)state;
    assert_int_equal(start_lone("budget-lone"), 0);
    bit_sim_stats s0 = {0}, s1 = {0};
    assert_int_equal(bit_sim_stats_get(&env, &s0), 0);
    poller p = {0};
    pthread_t th, pt;
    job jb = {80, 50, 700000, {0}};
    assert_int_equal(pthread_create(&pt, NULL, poll_main, &p), 0);
    assert_int_equal(pthread_create(&th, NULL, job_main, &jb), 0);
    bit_sleep_ms(3000);
    inject_429(1);
    pthread_join(th, NULL);
    p.stop = 1;
    pthread_join(pt, NULL);
    assert_int_equal(bit_sim_stats_get(&env, &s1), 0);
    long long shed = admin_counter("upstream_shed"), paused = admin_counter("shed_paused"),
              cuts = admin_counter("rate_decreases");
    printf("# 80 queries at 10/s, one injected 429 (Retry-After: 1): makespan %.2f s (ideal "
           "7.8 s), client 429s %d, 200s %d, sim requests %lld, sim 429s %lld, hotgate "
           "upstream_shed %lld shed_paused %lld rate_decreases %lld, effective rate min %.1f\n",
           jb.run.t_end - jb.run.t_start, jb.run.n429, jb.run.by_status[200],
           s1.requests - s0.requests, s1.r429 - s0.r429, shed, paused, cuts, p.min_eff);
    assert_int_equal(jb.run.nerr, 0);
    assert_int_equal(jb.run.n429, 0);
    assert_int_equal(jb.run.by_status[200], 80);
    assert_int_equal(s1.r429 - s0.r429, 1);
    assert_int_equal(s1.requests - s0.requests, 81); /* the shed one was sent again */
    assert_int_equal(shed, 1);
    assert_int_equal(paused, 1);
    assert_int_equal(cuts, 0);
    assert_true(p.min_eff == 10); /* never cut, at any sample */
    free(jb.run.r);
    bit_stop(&env);
}

static void test_repeated_shed_cuts(void **state)
{
    (void)state;
    assert_int_equal(start_lone("budget-repeat"), 0);
    pthread_t th;
    job jb = {100, 20, 800000, {0}};
    assert_int_equal(pthread_create(&th, NULL, job_main, &jb), 0);
    bit_sleep_ms(1500);
    inject_429(1);
    /* wait for that pause to be seen and to end: the next shed is a repeat in the window */
    int seen = 0;
    for (int i = 0; i < 200 && !seen; i++) {
        seen = admin_counter("upstream_shed") == 1;
        bit_sleep_ms(20);
    }
    assert_true(seen);
    for (int i = 0; i < 300 && admin_counter("cooldown_active") == 1; i++)
        bit_sleep_ms(10);
    bit_sleep_ms(500);
    assert_int_equal(admin_counter("rate_decreases"), 0);
    inject_429(1);
    pthread_join(th, NULL);
    long long shed = admin_counter("upstream_shed"), paused = admin_counter("shed_paused"),
              cuts = admin_counter("rate_decreases");
    double eff = bit_effective_rate(&env, NULL);
    printf("# two 429s (Retry-After: 1) a second apart: client 429s %d, 200s %d, upstream_shed "
           "%lld shed_paused %lld rate_decreases %lld, effective rate now %.2f\n",
           jb.run.n429, jb.run.by_status[200], shed, paused, cuts, eff);
    assert_int_equal(jb.run.nerr, 0);
    assert_int_equal(jb.run.n429, 0);
    assert_int_equal(jb.run.by_status[200], 100);
    assert_int_equal(shed, 2);
    assert_int_equal(paused, 1);
    assert_int_equal(cuts, 1);
    free(jb.run.r);
    bit_stop(&env);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_above_upstream_limit),
        cmocka_unit_test(test_one_shot_retry_after),
        cmocka_unit_test(test_lone_shed_no_cut),
        cmocka_unit_test(test_repeated_shed_cuts),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
