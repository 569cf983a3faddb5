/*
 * test_cache_stale: serving stale entries through the real hotgate and hotdata-sim.
 *   - stale-while-revalidate: just after expiry the stale entry is answered at once
 *     (X-Cache: STALE, even with a slow upstream) and refreshed in the background, once;
 *   - stale-if-error: past the SWR window, an upstream 500 or a dropped connection is
 *     answered with the expired entry (X-Cache: STALE), never with the error;
 *   - an upstream cut mid-body with a stale copy at hand: the leader and its merged waiters
 *     all get the stale copy (nothing of the cut answer reached them); without a usable
 *     stale copy the client sees an aborted transfer, never a complete answer;
 *   - negative caching of 404 for negative_ttl;
 *   - a background refresh is optional work: it waits for the credential's budget to have
 *     room (a token, a slot, nobody queued) and is skipped until then.
 * Faults are injected with the sim's POST /_sim/faults.
 */
#include "cache_it.h"

#include <pthread.h>

static cit_env E;

static int setup(void **state)
{
    (void)state;
    return cit_start(&E, "cache-stale",
                     "ttl_metadata = 1s\nstale_while_revalidate = 1s\nstale_if_error = 60s\n"
                     "negative_ttl = 2s\n",
                     NULL);
}

static int teardown(void **state)
{
    (void)state;
    cit_stop(&E);
    return 0;
}

static void test_stale_while_revalidate(void **state)
{
    (void)state;
    const char *p = "/v1/embedding-providers";
    const char *route = "GET /v1/embedding-providers";
    hresp r1, r2, r3;
    long long c0 = cit_sim_route_count(&E, route);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r1), 0);
    assert_string_equal(cit_xcache(&r1), "MISS");
    cit_sleep_ms(1300); /* expired, inside the 1 s SWR window */
    assert_int_equal(cit_sim_faults(&E, "{\"latency_ms\":400}"), 0);
    double t0 = cit_now();
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r2), 0);
    double dt = cit_now() - t0;
    assert_int_equal(r2.status, 200);
    assert_string_equal(cit_xcache(&r2), "STALE");
    assert_true(dt < 0.2); /* not waiting for the 400 ms upstream */
    assert_int_equal(r1.len, r2.len);
    assert_memory_equal(r1.body, r2.body, r1.len);
    /* a second stale read does not start a second refresh */
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r3), 0);
    hresp_free(&r3);
    cit_sleep_ms(700);
    assert_int_equal(cit_sim_route_count(&E, route) - c0, 2); /* the miss + one refresh */
    assert_int_equal(cit_sim_faults(&E, "{}"), 0);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r3), 0);
    assert_string_equal(cit_xcache(&r3), "HIT");
    hresp_free(&r1);
    hresp_free(&r2);
    hresp_free(&r3);
}

static void test_stale_if_error(void **state)
{
    (void)state;
    const char *p = "/v1/connection-types";
    hresp r1, r2;
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r1), 0);
    assert_string_equal(cit_xcache(&r1), "MISS");
    cit_sleep_ms(2300); /* past ttl (1 s) + swr (1 s), inside stale_if_error (60 s) */
    /* the upstream answers 500 */
    assert_int_equal(cit_sim_faults(&E, "{\"routes\":{\"GET /v1/connection-types\":"
                                        "{\"error_rate\":1.0,\"error_status\":500}}}"),
                     0);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r2), 0);
    assert_int_equal(r2.status, 200);
    assert_string_equal(cit_xcache(&r2), "STALE");
    assert_int_equal(r1.len, r2.len);
    assert_memory_equal(r1.body, r2.body, r1.len);
    hresp_free(&r2);
    /* the upstream drops the connection */
    assert_int_equal(cit_sim_faults(&E, "{\"routes\":{\"GET /v1/connection-types\":"
                                        "{\"drop\":\"before\",\"drop_rate\":1.0}}}"),
                     0);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r2), 0);
    assert_int_equal(r2.status, 200);
    assert_string_equal(cit_xcache(&r2), "STALE");
    hresp_free(&r2);
    /* a client that refuses stale answers (max-age) sees the error */
    assert_int_equal(cit_sim_faults(&E, "{\"routes\":{\"GET /v1/connection-types\":"
                                        "{\"error_rate\":1.0,\"error_status\":500}}}"),
                     0);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, "Cache-Control: max-age=1", NULL, &r2),
                     0);
    assert_int_equal(r2.status, 500);
    hresp_free(&r2);
    /* upstream healthy again: a fresh answer */
    assert_int_equal(cit_sim_faults(&E, "{}"), 0);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r2), 0);
    assert_int_equal(r2.status, 200);
    assert_string_equal(cit_xcache(&r2), "MISS");
    hresp_free(&r2);
    assert_true(cit_metric(&E, "hotgate_cache_stale_if_error_total") >= 2);
    hresp_free(&r1);
}

struct cut_arg {
    hresp r;
    int rc;
};

static void *cut_get(void *arg)
{
    struct cut_arg *a = arg;
    a->rc = cit_req(&E, CIT_KEY_A, "GET", "/v1/connections", NULL, NULL, NULL, &a->r);
    return NULL;
}

static void test_cut_mid_body(void **state)
{
    (void)state;
    const char *p = "/v1/connections";
    hresp r1, r2;
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r1), 0);
    assert_int_equal(r1.status, 200);
    assert_string_equal(cit_xcache(&r1), "MISS");
    cit_sleep_ms(2300); /* past ttl (1 s) + swr (1 s), inside stale_if_error (60 s) */
    /* the upstream sends the head and half the body, then cuts (slowly: waiters merge) */
    assert_int_equal(cit_sim_faults(&E, "{\"routes\":{\"GET /v1/connections\":"
                                        "{\"drop\":\"mid\",\"drop_rate\":1.0,"
                                        "\"latency_ms\":400}}}"),
                     0);
    double c0 = cit_metric(&E, "hotgate_cache_stale_if_error_total");
    enum { N = 6 };
    struct cut_arg a[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        memset(&a[i], 0, sizeof a[i]);
        pthread_create(&th[i], NULL, cut_get, &a[i]);
        if (i == 0)
            cit_sleep_ms(50); /* the first one leads */
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        fprintf(stderr, "  client %d: rc %d status %ld X-Cache %s\n", i, a[i].rc,
                (long)a[i].r.status, a[i].rc == 0 ? cit_xcache(&a[i].r) : "-");
        assert_int_equal(a[i].rc, 0);
        assert_int_equal(a[i].r.status, 200);
        assert_string_equal(cit_xcache(&a[i].r), "STALE");
        assert_int_equal(a[i].r.len, r1.len);
        assert_memory_equal(a[i].r.body, r1.body, r1.len);
        hresp_free(&a[i].r);
    }
    assert_true(cit_metric(&E, "hotgate_cache_stale_if_error_total") >= c0 + 1);
    /* no usable stale copy (the client refuses stale answers): the body already streams
     * when the cut comes, so the client must see an aborted transfer */
    memset(&r2, 0, sizeof r2);
    int rc = cit_req(&E, CIT_KEY_A, "GET", p, NULL, "Cache-Control: max-age=1", NULL, &r2);
    fprintf(stderr, "  no stale copy: rc %d status %ld len %zu (complete: %zu)\n", rc,
            (long)r2.status, r2.len, r1.len);
    assert_true(rc != 0 || r2.status >= 500);
    hresp_free(&r2);
    assert_int_equal(cit_sim_faults(&E, "{}"), 0);
    hresp_free(&r1);
}

static void test_negative_cache(void **state)
{
    (void)state;
    const char *p = "/v1/datasets/ds_does_not_exist";
    long long c0 = cit_sim_route_count(&E, "GET /v1/datasets/{id}");
    hresp r;
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 404);
    hresp_free(&r);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(cit_xcache(&r), "HIT");
    hresp_free(&r);
    assert_int_equal(cit_sim_route_count(&E, "GET /v1/datasets/{id}") - c0, 1);
    cit_sleep_ms(2200);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(cit_xcache(&r), "MISS");
    hresp_free(&r);
}

/* ---- refreshes inside the rate budget ---- */

static cit_env EB;

static int setup_budget(void **state)
{
    (void)state;
    /* credential a: one request per 2 s */
    return cit_start(&EB, "cache-swr-budget",
                     "ttl_metadata = 1s\nstale_while_revalidate = 20s\n"
                     "[credential a]\nrate = 0.5\nburst = 1\n",
                     NULL);
}

static int teardown_budget(void **state)
{
    (void)state;
    cit_stop(&EB);
    return 0;
}

static void test_refresh_waits_for_budget(void **state)
{
    (void)state;
    const char *p = "/v1/embedding-providers";
    const char *route = "GET /v1/embedding-providers";
    hresp r;
    long long c0 = cit_sim_route_count(&EB, route);
    assert_int_equal(cit_req(&EB, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "MISS"); /* takes the token */
    hresp_free(&r);
    cit_sleep_ms(2300); /* expired (1 s), inside SWR; the token is back */
    /* a foreground miss takes the token */
    assert_int_equal(cit_req(&EB, CIT_KEY_A, "GET", "/v1/connection-types", NULL, NULL, NULL, &r),
                     0);
    assert_string_equal(cit_xcache(&r), "MISS");
    hresp_free(&r);
    /* stale answered at once; the refresh is skipped: no room in the budget */
    double d0 = cit_metric(&EB, "hotgate_cache_revalidations_deferred_total");
    assert_int_equal(cit_req(&EB, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "STALE");
    hresp_free(&r);
    cit_sleep_ms(300);
    assert_int_equal(cit_sim_route_count(&EB, route) - c0, 1);
    assert_true(cit_metric(&EB, "hotgate_cache_revalidations_deferred_total") - d0 >= 1);
    /* once the budget has room again, the next stale read refreshes */
    cit_sleep_ms(2300);
    assert_int_equal(cit_req(&EB, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "STALE");
    hresp_free(&r);
    for (int i = 0; i < 40 && cit_sim_route_count(&EB, route) - c0 < 2; i++)
        cit_sleep_ms(50);
    assert_int_equal(cit_sim_route_count(&EB, route) - c0, 2);
    cit_sleep_ms(200);
    assert_int_equal(cit_req(&EB, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "HIT");
    hresp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stale_while_revalidate),
        cmocka_unit_test(test_stale_if_error),
        cmocka_unit_test(test_cut_mid_body),
        cmocka_unit_test(test_negative_cache),
    };
    const struct CMUnitTest budget_tests[] = {
        cmocka_unit_test(test_refresh_waits_for_budget),
    };
    int fails = cmocka_run_group_tests_name("stale", tests, setup, teardown);
    fails += cmocka_run_group_tests_name("stale within the budget", budget_tests, setup_budget,
                                         teardown_budget);
    return fails;
}
