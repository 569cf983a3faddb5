/*
 * test_fleet_inval_gate: three hotgate instances, one redis-server, one hotdata-sim.
 *   - a mutation's answer reaches its client only after its fleet invalidation is in force:
 *     right after each answer of 200 data refreshes (spread over the instances), the
 *     invalidation stream already holds the refresh's entry. Every other round Redis holds
 *     back write commands for 30 ms (CLIENT PAUSE WRITE; reads such as XLEN go on), so an
 *     answer that left before Redis acknowledged the script would be caught;
 *   - Redis stopped (SIGSTOP): a mutation still answers 2xx (after at most about op_timeout),
 *     counted as unacknowledged (metric, access log "inval_unacked"), and its queued
 *     invalidation reaches the stream once Redis runs again;
 *   - waiters parked on another instance's lease while Redis stops (SIGSTOP) and the workers'
 *     commands fail: every request still answers 200 (the waiters are released to fetch
 *     themselves; hotgate_fleet_lease_waits_released_total counts them).
 */
#include "fleet_it.h"

#include <pthread.h>

static fit_env F;

#define REFRESH_BODY "{\"connection_id\":\"conn_demo\",\"data\":true}"

static int setup(void **state)
{
    (void)state;
    return fit_start(&F, "fleet-gate", "ttl_query = 120s\n", "op_timeout = 150ms\n", NULL) == 0 &&
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

typedef struct bgq {
    int inst;
    char sql[200];
    hresp r;
    int rc;
} bgq;

static void *bg_query(void *arg)
{
    bgq *b = arg;
    b->rc = cit_query(&F.g[b->inst], CIT_KEY_A, b->sql, NULL, &b->r);
    return NULL;
}

static long long lease_keys(void)
{
    char *k = harness_redis(F.redis.port, "EVAL %s 0", "return #redis.call('KEYS', 'hgt:{*}l')");
    long long n = k ? strtoll(k, NULL, 10) : 0;
    free(k);
    return n;
}

#define NWAIT 4  /* parked on instance 0's lease: 2 through instance 1, 2 through 2 */
#define NOTHER 8 /* other cold queries while Redis is stopped: their commands fail */

static void test_waiters_released_when_redis_stops(void **state)
{
    (void)state;
    const char *sql = "SELECT id, status FROM demo.public.orders WHERE id = 4242";
    assert_int_equal(
        cit_sim_faults(&F.g[0], "{\"routes\":{\"POST /v1/query\":{\"latency_ms\":1500}}}"), 0);
    double w1 = cit_metric(&F.g[1], "hotgate_fleet_lease_waits_total");
    double w2 = cit_metric(&F.g[2], "hotgate_fleet_lease_waits_total");
    /* static: a failed assertion must not leave the threads writing into a dead stack */
    static bgq lead, wait[NWAIT], other[NOTHER];
    static pthread_t tl, tw[NWAIT], to[NOTHER];
    memset(&lead, 0, sizeof lead);
    lead.inst = 0;
    snprintf(lead.sql, sizeof lead.sql, "%s", sql);
    pthread_create(&tl, NULL, bg_query, &lead);
    int seen = 0;
    for (int i = 0; i < 500 && !seen; i++) {
        seen = lease_keys() >= 1;
        if (!seen)
            cit_sleep_ms(10);
    }
    assert_true(seen);
    for (int i = 0; i < NWAIT; i++) {
        memset(&wait[i], 0, sizeof wait[i]);
        wait[i].inst = 1 + i % 2;
        snprintf(wait[i].sql, sizeof wait[i].sql, "%s", sql);
        pthread_create(&tw[i], NULL, bg_query, &wait[i]);
    }
    assert_int_equal(fit_wait_metric(&F, 1, "hotgate_fleet_lease_waits_total", w1 + 1, 10000), 0);
    assert_int_equal(fit_wait_metric(&F, 2, "hotgate_fleet_lease_waits_total", w2 + 1, 10000), 0);
    assert_int_equal(kill(F.redis.pid, SIGSTOP), 0);
    for (int i = 0; i < NOTHER; i++) {
        memset(&other[i], 0, sizeof other[i]);
        other[i].inst = 1 + i % 2;
        snprintf(other[i].sql, sizeof other[i].sql,
                 "SELECT id, status FROM demo.public.orders WHERE id = %d", 5000 + i);
        pthread_create(&to[i], NULL, bg_query, &other[i]);
    }
    pthread_join(tl, NULL);
    int bad = lead.rc != 0 || lead.r.status != 200;
    hresp_free(&lead.r);
    for (int i = 0; i < NWAIT; i++) {
        pthread_join(tw[i], NULL);
        if (wait[i].rc != 0 || wait[i].r.status != 200) {
            fprintf(stderr, "waiter %d: %d %ld\n", i, wait[i].rc, wait[i].r.status);
            bad++;
        }
        hresp_free(&wait[i].r);
    }
    for (int i = 0; i < NOTHER; i++) {
        pthread_join(to[i], NULL);
        if (other[i].rc != 0 || other[i].r.status != 200) {
            fprintf(stderr, "other %d: %d %ld\n", i, other[i].rc, other[i].r.status);
            bad++;
        }
        hresp_free(&other[i].r);
    }
    assert_int_equal(kill(F.redis.pid, SIGCONT), 0);
    double released = cit_metric(&F.g[1], "hotgate_fleet_lease_waits_released_total") +
                      cit_metric(&F.g[2], "hotgate_fleet_lease_waits_released_total");
    fprintf(stderr, "  waiters released at once: %.0f; upstream queries of the shared key: %lld\n",
            released, (long long)cit_sim_sql_count(&F.g[0], sql));
    assert_int_equal(bad, 0);
    assert_int_equal(cit_sim_faults(&F.g[0], "{}"), 0);
    assert_int_equal(fit_wait_attached(&F, 20000), 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_after_stream_entry),
        cmocka_unit_test(test_redis_stopped_mutation_answers),
        cmocka_unit_test(test_waiters_released_when_redis_stops),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
