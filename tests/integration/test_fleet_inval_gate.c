/*
 * test_fleet_inval_gate: three hotgate instances, one redis-server, one hotdata-sim.
 *   - a mutation's answer reaches its client only after its fleet invalidation is in force:
 *     right after each answer of 200 data refreshes (spread over the instances), the
 *     invalidation stream already holds the refresh's entry. Every other round Redis holds
 *     back write commands for 30 ms (CLIENT PAUSE WRITE; reads such as XLEN go on), so an
 *     answer that left before Redis acknowledged the script would be caught;
 *   - Redis stopped (SIGSTOP): a mutation still answers 2xx (after at most about op_timeout),
 *     counted as unacknowledged (metric, access log "inval_unacked"), and its queued
 *     invalidation reaches the stream once Redis runs again.
 */
#include "fleet_it.h"

static fit_env F;

#define REFRESH_BODY "{\"connection_id\":\"conn_demo\",\"data\":true}"

static int setup(void **state)
{
    (void)state;
    return fit_start(&F, "fleet-gate", "ttl_query = 120s\n", "op_timeout = 400ms\n", NULL) == 0 &&
                   fit_wait_attached(&F, 10000) == 0
               ? 0
               : -1;
}

static int teardown(void **state)
{
    (void)state;
    fit_stop(&F);
    return 0;
}

static long long stream_len(void)
{
    return harness_redis_int(F.redis.port, "XLEN hgt:{fleet}inval");
}

static void test_answer_after_stream_entry(void **state)
{
    (void)state;
    int rounds = 200, early = 0, paused_rounds = 0;
    for (int i = 0; i < rounds; i++) {
        long long before = stream_len();
        assert_true(before >= 0);
        if (i % 2) {
            char *x = harness_redis(F.redis.port, "CLIENT PAUSE 30 WRITE");
            assert_non_null(x);
            free(x);
            paused_rounds++;
        }
        hresp r;
        assert_int_equal(cit_req(&F.g[i % FIT_N], CIT_KEY_A, "POST", "/v1/refresh", REFRESH_BODY,
                                 NULL, NULL, &r),
                         0);
        if (r.status < 200 || r.status >= 300)
            fprintf(stderr, "round %d: %ld %s\n", i, r.status, r.body);
        assert_true(r.status >= 200 && r.status < 300);
        hresp_free(&r);
        long long after = stream_len(); /* a read: not held by the pause */
        if (after <= before)
            early++;
    }
    fprintf(stderr, "  %d rounds (%d with writes paused): %d answers before their stream entry\n",
            rounds, paused_rounds, early);
    assert_int_equal(early, 0);
    double unacked = 0;
    for (int i = 0; i < FIT_N; i++)
        unacked += cit_metric(&F.g[i], "hotgate_fleet_inval_unacked_total");
    assert_true(unacked == 0);
}

static void test_redis_stopped_mutation_answers(void **state)
{
    (void)state;
    long long before = stream_len();
    assert_true(before >= 0);
    assert_int_equal(kill(F.redis.pid, SIGSTOP), 0);
    for (int i = 0; i < 3; i++) {
        hresp r;
        assert_int_equal(
            cit_req(&F.g[0], CIT_KEY_A, "POST", "/v1/refresh", REFRESH_BODY, NULL, NULL, &r), 0);
        assert_true(r.status >= 200 && r.status < 300);
        hresp_free(&r);
    }
    assert_true(cit_metric(&F.g[0], "hotgate_fleet_inval_unacked_total") >= 3);
    for (int t = 0; t < 200 && fit_access_count(&F, 0, "inval_unacked") < 3; t++)
        cit_sleep_ms(25); /* the access log is written out in batches */
    assert_true(fit_access_count(&F, 0, "inval_unacked") >= 3);
    assert_int_equal(kill(F.redis.pid, SIGCONT), 0);
    /* the queue publishes once Redis answers again */
    for (int t = 0; t < 400 && cit_metric(&F.g[0], "hotgate_fleet_invalidations_pending") != 0; t++)
        cit_sleep_ms(25);
    assert_int_equal(cit_metric(&F.g[0], "hotgate_fleet_invalidations_pending"), 0);
    assert_true(stream_len() > before);
    assert_int_equal(fit_wait_attached(&F, 20000), 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_after_stream_entry),
        cmocka_unit_test(test_redis_stopped_mutation_answers),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
