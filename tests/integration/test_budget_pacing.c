/*
 * test_budget_pacing: hotgate keeps a batch job inside the upstream's rate limit.
 *
 * Real hotdata-sim with --rate 20 --burst 5 per token, real hotgate with [credential main]
 * rate 20 and burst 2: hotgate paces; most of the sim's burst of 5 is left as slack for
 * the jitter between a grant and the request's arrival upstream (worker scheduling, curl),
 * so that arrivals bunched by up to 150 ms never exceed the sim's bucket, while a pacing
 * timer that fires late loses no capacity (tokens accrue up to 2). The cache is off so
 * that every query goes upstream.
 *   1. 400 distinct queries from a batch client, 50 at once: the client sees no 429, the
 *      sim answered no 429, the makespan is close to the ideal 20 s.
 *   2. 200 more from the batch client while an interactive client (same credential) sends
 *      one query every 200 ms: the interactive p99 wait stays under 1 s.
 */
#include "budget_it.h"

static bit_env env;

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return bit_start(&env, "budget-pacing", 20, 5, 20, 2,
                     "[queue]\nmax_total = 2000\nmax_per_client = 1000\ndeadline = 120\n");
}

static int teardown(void **state)
{
    (void)state;
    bit_stop(&env);
    curl_global_cleanup();
    return 0;
}

/* Watches the sim's event loop: the latency of GET /_sim/stats every 20 ms. The sim is one
 * thread, so a slow answer is a stall of the whole upstream (SQLite I/O, CPU starvation). */
typedef struct stall_probe {
    volatile int stop;
    double max_s, at_s;
    double t0;
} stall_probe;

static void *stall_main(void *arg)
{
    stall_probe *p = arg;
    char url[128];
    snprintf(url, sizeof url, "%s/_sim/stats", env.simurl);
    while (!p->stop) {
        double a = bit_now();
        hresp r;
        if (http_do("GET", url, NULL, NULL, 0, &r) == 0)
            hresp_free(&r);
        double d = bit_now() - a;
        if (d > p->max_s) {
            p->max_s = d;
            p->at_s = a - p->t0;
        }
        bit_sleep_ms(20);
    }
    return NULL;
}

static void test_batch_paced_no_429(void **state)
{
    (void)state;
    bit_sim_stats s0 = {0}, s1 = {0};
    assert_int_equal(bit_sim_stats_get(&env, &s0), 0);
    stall_probe probe = {0};
    probe.t0 = bit_now();
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stall_main, &probe), 0);
    bit_run run;
    bit_run_queries(env.base, BIT_KEY_BATCH, 400, 50, 100000, NULL, &run);
    probe.stop = 1;
    pthread_join(th, NULL);
    assert_int_equal(bit_sim_stats_get(&env, &s1), 0);
    double makespan = run.t_end - run.t_start;
    long long sim429 = s1.r429 - s0.r429;
    printf("# batch 400 @ 50 conns through hotgate 20/s: makespan %.2f s (ideal %.2f s), "
           "200s %d, client 429s %d, errors %d, sim requests %lld, sim 429s %lld; longest sim "
           "stall %.3f s at +%.1f s\n",
           makespan, (400 - 2) / 20.0, run.by_status[200], run.n429, run.nerr,
           s1.requests - s0.requests, sim429, probe.max_s, probe.at_s);
    for (int i = 0; i < run.n; i++)
        if (run.r[i].status != 200) {
            printf("# request %d: status %ld body %s\n", i, run.r[i].status, run.r[i].resp);
            break;
        }
    assert_int_equal(run.nerr, 0);
    assert_int_equal(run.n429, 0);
    assert_int_equal(run.by_status[200], 400);
    /* hotgate never sends faster than 20/s (+ its burst of 2): the sim answers no 429.
     * The sim's burst of 5 at 20/s absorbs 250 ms of bunching; when the sim itself stalls
     * longer than that (its single loop blocked: seen under a load average of 10 on the
     * shared 2-core box), the requests that arrived meanwhile meet a bucket capped at 5 and
     * the excess is shed. Such 429s are accepted only when the probe saw the stall, and no
     * more than the stall explains; hotgate retries them, the client sees none. */
    if (sim429 > 0) {
        printf("# NOTE: %lld upstream 429(s) after a %.3f s stall of the sim\n", sim429,
               probe.max_s);
        assert_true(probe.max_s >= 0.2);
        assert_true(sim429 <= (long long)(probe.max_s * 20) + 1);
    }
    assert_true(s1.requests - s0.requests <= 400 + sim429);
    assert_true(makespan >= 17.0);
    assert_true(makespan <= 30.0);
    free(run.r);
}

typedef struct inter {
    volatile int stop;
    double lat[400];
    long status[400];
    int n;
} inter;

static void *interactive_main(void *arg)
{
    inter *it = arg;
    int i = 0;
    while (!it->stop && it->n < 400) {
        double t0 = bit_now();
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT %d", 900000 + i++);
        double secs = 0;
        long st = bit_query(env.base, BIT_KEY_WEB, sql, NULL, &secs, NULL, 0);
        it->lat[it->n] = secs;
        it->status[it->n] = st;
        it->n++;
        double left = 0.2 - (bit_now() - t0);
        if (left > 0)
            bit_sleep_ms((int)(left * 1000));
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_interactive_not_starved(void **state)
{
    (void)state;
    bit_sim_stats s0 = {0}, s1 = {0};
    assert_int_equal(bit_sim_stats_get(&env, &s0), 0);
    inter *it = calloc(1, sizeof *it);
    pthread_t th;
    bit_sleep_ms(1500); /* let the bucket refill after the previous test */
    bit_run run;
    /* the batch floods the queue first; the interactive client starts into the backlog */
    stall_probe probe = {0};
    probe.t0 = bit_now();
    pthread_t pth;
    assert_int_equal(pthread_create(&pth, NULL, stall_main, &probe), 0);
    assert_int_equal(pthread_create(&th, NULL, interactive_main, it), 0);
    bit_run_queries(env.base, BIT_KEY_BATCH, 200, 50, 200000, NULL, &run);
    it->stop = 1;
    pthread_join(th, NULL);
    probe.stop = 1;
    pthread_join(pth, NULL);
    assert_int_equal(bit_sim_stats_get(&env, &s1), 0);
    double sorted[400];
    memcpy(sorted, it->lat, sizeof(double) * (size_t)it->n);
    qsort(sorted, (size_t)it->n, sizeof(double), cmp_double);
    int bad = 0;
    for (int i = 0; i < it->n; i++)
        bad += it->status[i] != 200;
    double p50 = sorted[it->n / 2];
    double p99 = sorted[(it->n * 99) / 100 >= it->n ? it->n - 1 : (it->n * 99) / 100];
    double mx = sorted[it->n - 1];
    printf("# interactive during batch: %d queries, p50 %.3f s, p99 %.3f s, max %.3f s, "
           "non-200 %d; batch 200 in %.2f s, batch 429s %d; sim 429s %lld; longest sim stall "
           "%.3f s\n",
           it->n, p50, p99, mx, bad, run.t_end - run.t_start, run.n429, s1.r429 - s0.r429,
           probe.max_s);
    assert_true(it->n >= 20);
    assert_int_equal(bad, 0);
    assert_int_equal(run.n429, 0);
    assert_int_equal(run.by_status[200], 200);
    long long sim429 = s1.r429 - s0.r429;
    if (sim429 == 0) {
        assert_true(p99 <= 1.0);
    } else {
        /* only a stall of the sim itself explains upstream 429s here (see the batch test);
         * the 1 s cooldown that follows delays every client, interactive ones too */
        printf("# NOTE: %lld upstream 429(s) after a %.3f s stall of the sim\n", sim429,
               probe.max_s);
        assert_true(probe.max_s >= 0.2);
        assert_true(sim429 <= (long long)(probe.max_s * 20) + 1);
        assert_true(p99 <= 1.0 + 1.5);
    }
    free(run.r);
    free(it);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_paced_no_429),
        cmocka_unit_test(test_interactive_not_starved),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
