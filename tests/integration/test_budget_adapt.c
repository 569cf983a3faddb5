/*
 * test_budget_adapt: hotgate facing an upstream that sheds load.
 *   1. hotgate configured at 40/s in front of a sim limited to 20/s (burst 5): the batch
 *      client still sees no 429 (hotgate swallows the sim's 429s, honours Retry-After, and
 *      retries at the front of the queue) and the effective rate drops below 40 (AIMD).
 *   2. a sim answering one 429 with Retry-After: 2 (POST /_sim/faults): no upstream request
 *      on that credential for 2 s after it, then paced traffic again.
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

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_above_upstream_limit),
        cmocka_unit_test(test_one_shot_retry_after),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
