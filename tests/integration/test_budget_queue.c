/*
 * test_budget_queue: the documented answers of the budget queue, against a real sim and a
 * real hotgate paced at 2 requests/s (burst 1), queue bounded at 4 per client and 6 in
 * total, deadline 3 s:
 *   - queue full: 503 QUEUE_FULL with Retry-After, the queued ones still succeed;
 *   - deadline (shortened with X-Hotgate-Queue-Timeout): 503 QUEUE_TIMEOUT + Retry-After;
 *   - a client over its own rate limit: 429 OVERLOADED + Retry-After;
 *   - a client that disconnects leaves the queue at once (and never reaches the upstream);
 *   - an upstream 429 on a mutation reaches the client with its Retry-After, while a GET is
 *     retried by hotgate after the pause (the client sees only the 200).
 */
#include "budget_it.h"

static bit_env env;

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return bit_start(&env, "budget-queue", 0, 0, 2, 1,
                     "[queue]\nmax_total = 6\nmax_per_client = 4\ndeadline = 3\n");
}

static int teardown(void **state)
{
    (void)state;
    bit_stop(&env);
    curl_global_cleanup();
    return 0;
}

/* the bucket (burst 1 at 2/s) is full again after 0.5 s; wait a little more */
static void settle(void)
{
    bit_sleep_ms(800);
}

static void check_error(const bit_req *q, long status, const char *code)
{
    assert_int_equal(q->status, status);
    assert_true(atoi(q->retry_after) >= 1);
    json_t *j = json_loads(q->resp, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        code);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), status);
    json_decref(j);
}

static void test_queue_full(void **state)
{
    (void)state;
    settle();
    bit_run run;
    bit_run_queries(env.base, BIT_KEY_BATCH, 8, 8, 1000, NULL, &run);
    printf("# 8 at once, 1 token + 4 queue places: 200s %d, 503s %d (%.2f s)\n", run.by_status[200],
           run.by_status[503], run.t_end - run.t_start);
    assert_int_equal(run.by_status[200], 5);
    assert_int_equal(run.by_status[503], 3);
    for (int i = 0; i < run.n; i++)
        if (run.r[i].status == 503) {
            check_error(&run.r[i], 503, "QUEUE_FULL");
            assert_true(run.r[i].t1 - run.r[i].t0 < 1.0); /* answered at once */
            printf("#   QUEUE_FULL Retry-After: %s\n", run.r[i].retry_after);
        }
    free(run.r);
}

static void test_queue_deadline(void **state)
{
    (void)state;
    settle();
    bit_run run;
    bit_run_queries(env.base, BIT_KEY_BATCH, 5, 5, 2000, "X-Hotgate-Queue-Timeout: 0.7", &run);
    printf("# 5 at once with a 0.7 s queue timeout at 2/s: 200s %d, 503s %d\n", run.by_status[200],
           run.by_status[503]);
    assert_int_equal(run.by_status[200], 2);
    assert_int_equal(run.by_status[503], 3);
    for (int i = 0; i < run.n; i++)
        if (run.r[i].status == 503) {
            check_error(&run.r[i], 503, "QUEUE_TIMEOUT");
            double waited = run.r[i].t1 - run.r[i].t0;
            assert_true(waited >= 0.6 && waited < 2.0);
            printf("#   QUEUE_TIMEOUT after %.2f s, Retry-After: %s\n", waited,
                   run.r[i].retry_after);
        }
    free(run.r);
}

static void test_client_rate_limit(void **state)
{
    (void)state;
    settle();
    char ra[32];
    long st = bit_query(env.base, BIT_KEY_CAPPED, "SELECT 3001", NULL, NULL, ra, sizeof ra);
    assert_int_equal(st, 200);
    bit_run run;
    bit_run_queries(env.base, BIT_KEY_CAPPED, 1, 1, 3002, NULL, &run);
    check_error(&run.r[0], 429, "OVERLOADED");
    printf("# capped client over its 1/s: 429 OVERLOADED, Retry-After: %s\n", run.r[0].retry_after);
    free(run.r);
}

static long long admin_queued(void)
{
    char url[128];
    snprintf(url, sizeof url, "%s/admin/budget", env.admin);
    json_t *j = bit_get_json(url);
    assert_non_null(j);
    json_t *c = json_array_get(json_object_get(j, "credentials"), 0);
    long long q = json_integer_value(json_object_get(c, "queued"));
    json_decref(j);
    return q;
}

static void test_disconnect_leaves_queue(void **state)
{
    (void)state;
    settle();
    bit_sim_stats s0 = {0}, s1 = {0};
    assert_int_equal(bit_sim_stats_get(&env, &s0), 0);
    /* one takes the token, three queue; the clients give up after 300 ms */
    bit_timeout_ms = 300;
    bit_run run;
    bit_run_queries(env.base, BIT_KEY_BATCH, 4, 4, 4000, NULL, &run);
    bit_timeout_ms = 0;
    double t_gone = bit_now();
    long long q = admin_queued();
    double t_seen = bit_now();
    printf("# 3 queued clients hung up: queued %lld, %.0f ms after they left\n", q,
           (t_seen - t_gone) * 1000);
    assert_int_equal(q, 0);
    bit_sleep_ms(2000); /* past the grants they would have had at 0.5, 1.0, 1.5 s */
    assert_int_equal(bit_sim_stats_get(&env, &s1), 0);
    printf("# sim saw %lld request(s) of the 4\n", s1.requests - s0.requests);
    assert_true(s1.requests - s0.requests <= 1);
    free(run.r);
}

static void inject_429(int seconds)
{
    char url[128], body[96];
    snprintf(url, sizeof url, "%s/_sim/faults", env.simurl);
    snprintf(body, sizeof body, "{\"retry_after\":{\"count\":1,\"seconds\":%d}}", seconds);
    const char *h[] = {"Content-Type: application/json", NULL};
    hresp r;
    assert_int_equal(http_do("POST", url, h, body, strlen(body), &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
}

static void test_shed_mutation_passed_safe_retried(void **state)
{
    (void)state;
    settle();
    char auth[128];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", BIT_KEY_BATCH);
    const char *h[] = {auth, "Content-Type: application/json", NULL};
    /* a mutation that is not safe to replay: the client gets the upstream's 429 */
    inject_429(1);
    char *url = harness_url("%s/v1/secrets", env.base);
    const char *body = "{\"name\":\"budget_test\",\"value\":\"v\"}";
    hresp r;
    assert_int_equal(http_do("POST", url, h, body, strlen(body), &r), 0);
    char *ra = hresp_header(&r, "Retry-After");
    printf("# POST /v1/secrets shed upstream: client sees %ld, Retry-After: %s\n", r.status,
           ra ? ra : "(none)");
    assert_int_equal(r.status, 429);
    assert_non_null(ra);
    assert_string_equal(ra, "1");
    free(ra);
    hresp_free(&r);
    free(url);
    /* a GET is retried by hotgate after the pause: the client sees only the 200 */
    settle();
    settle();
    inject_429(1);
    url = harness_url("%s/v1/connections", env.base);
    double t0 = bit_now();
    assert_int_equal(http_do("GET", url, h, NULL, 0, &r), 0);
    double took = bit_now() - t0;
    printf("# GET /v1/connections shed upstream: client sees %ld after %.2f s\n", r.status, took);
    assert_int_equal(r.status, 200);
    assert_true(took >= 0.9);
    hresp_free(&r);
    free(url);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_queue_deadline),
        cmocka_unit_test(test_client_rate_limit),
        cmocka_unit_test(test_disconnect_leaves_queue),
        /* last: the sheds lower the effective rate, which the tests above time against */
        cmocka_unit_test(test_shed_mutation_passed_safe_retried),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
