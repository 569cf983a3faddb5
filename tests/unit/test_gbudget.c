/*
 * test_gbudget: the fleet budget's Lua script against a real redis-server (started on a free
 * port): a burst then refusal with the wait until the next token, refill capped at the burst,
 * the fleet's pause key (only ever grows, an emptying shed also empties the bucket), and the
 * concurrency cap's slot leases (released, or back by themselves when a crashed instance's
 * lease expires). The script takes its time from Redis (TIME), so the tests pick rates that
 * make elapsed time irrelevant, or only wait to make time pass.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "gbudget.h"
#include "harness_redis.h"

static hproc g_redis;
static char *g_dir;
static const char *g_debt = "0"; /* the next take's debt */

typedef struct take_r {
    long long n, retry_ms, paused_ms, first;
} take_r;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* take on credential tag (keys {tag}:b/p/s) */
static take_r take(const char *tag, const char *rate, const char *burst, const char *want,
                   const char *cap, const char *lease, const char *owner)
{
    char b[64], p[64], s[64];
    snprintf(b, sizeof b, "budget:{%s}:b", tag);
    snprintf(p, sizeof p, "budget:{%s}:p", tag);
    snprintf(s, sizeof s, "budget:{%s}:s", tag);
    char *out =
        harness_redis(g_redis.port, "EVAL %s 3 %s %s %s take %s %s %s %s %s %s %s",
                      gbudget_script(), b, p, s, rate, burst, want, cap, lease, owner, g_debt);
    assert_non_null(out);
    take_r r = {-1, -1, -1, -1};
    assert_int_equal(sscanf(out, "%lld %lld %lld %lld", &r.n, &r.retry_ms, &r.paused_ms, &r.first),
                     4);
    free(out);
    return r;
}

static void op(const char *tag, const char *name, const char *a1, const char *a2)
{
    char b[64], p[64], s[64];
    snprintf(b, sizeof b, "budget:{%s}:b", tag);
    snprintf(p, sizeof p, "budget:{%s}:p", tag);
    snprintf(s, sizeof s, "budget:{%s}:s", tag);
    char *out = a2 ? harness_redis(g_redis.port, "EVAL %s 3 %s %s %s %s %s %s", gbudget_script(), b,
                                   p, s, name, a1, a2)
                   : harness_redis(g_redis.port, "EVAL %s 3 %s %s %s %s %s", gbudget_script(), b, p,
                                   s, name, a1);
    assert_non_null(out);
    assert_string_equal(out, "1");
    free(out);
}

static void test_burst_then_refused(void **state)
{
    (void)state;
    /* 0.001/s: nothing accrues while the test runs */
    take_r r = take("burst", "0.001", "3", "5", "0", "60000", "a");
    assert_int_equal(r.n, 3);
    assert_int_equal(r.paused_ms, 0);
    assert_int_equal(r.first, 0);                              /* no cap: no slots */
    assert_true(r.retry_ms > 990000 && r.retry_ms <= 1000000); /* one token at 0.001/s */
    r = take("burst", "0.001", "3", "1", "0", "60000", "b");   /* another instance: same bucket */
    assert_int_equal(r.n, 0);
    assert_true(r.retry_ms > 990000);
}

/* requests sent on an instance's local share are charged at its next take, down to -burst */
static void test_debt(void **state)
{
    (void)state;
    take_r r = take("debt", "0.001", "5", "1", "0", "60000", "a");
    assert_int_equal(r.n, 1); /* 4 left */
    g_debt = "2";
    r = take("debt", "0.001", "5", "5", "0", "60000", "a");
    g_debt = "0";
    assert_int_equal(r.n, 2); /* 4 - 2 */
    g_debt = "100";
    r = take("debt", "0.001", "5", "5", "0", "60000", "a");
    g_debt = "0";
    assert_int_equal(r.n, 0);
    char *t = harness_redis(g_redis.port, "HGET budget:{debt}:b tokens");
    assert_non_null(t);
    assert_true(strtod(t, NULL) > -5.001 && strtod(t, NULL) < -4.99); /* floored at -burst */
    free(t);
}

static void test_refill_capped_at_burst(void **state)
{
    (void)state;
    take_r r = take("refill", "1000", "2", "2", "0", "60000", "a");
    assert_int_equal(r.n, 2);
    sleep_ms(50); /* 50 tokens' worth at 1000/s: the burst holds */
    r = take("refill", "1000", "2", "10", "0", "60000", "a");
    assert_int_equal(r.n, 2);
}

static void test_pause_key(void **state)
{
    (void)state;
    take_r r = take("pause", "0.001", "5", "1", "0", "60000", "a");
    assert_int_equal(r.n, 1);
    op("pause", "shed", "60000", "0"); /* a Retry-After of 60 s seen by some instance */
    r = take("pause", "0.001", "5", "1", "0", "60000", "b");
    assert_int_equal(r.n, 0);
    assert_true(r.paused_ms > 50000 && r.paused_ms <= 60000);
    op("pause", "shed", "10", "0"); /* a shorter one does not shorten it */
    r = take("pause", "0.001", "5", "1", "0", "60000", "b");
    assert_true(r.paused_ms > 50000);
    /* the pause over (here: removed), the bucket kept its tokens (a lone explained shed) */
    assert_int_equal(harness_redis_int(g_redis.port, "DEL budget:{pause}:p"), 1);
    r = take("pause", "0.001", "5", "10", "0", "60000", "b");
    assert_int_equal(r.n, 4);
    /* an emptying shed: the pause, then an empty bucket */
    r = take("pause2", "0.001", "5", "1", "0", "60000", "a");
    assert_int_equal(r.n, 1);
    op("pause2", "shed", "30", "1");
    r = take("pause2", "0.001", "5", "1", "0", "60000", "a");
    assert_true(r.paused_ms > 0 && r.paused_ms <= 30);
    sleep_ms(80);
    r = take("pause2", "0.001", "5", "1", "0", "60000", "a");
    assert_int_equal(r.paused_ms, 0);
    assert_int_equal(r.n, 0);
}

static void test_slots(void **state)
{
    (void)state;
    /* no rate, a cap of 2 */
    take_r r = take("slots", "0", "1", "5", "2", "60000", "inst1");
    assert_int_equal(r.n, 2);
    assert_true(r.first >= 1);
    long long first = r.first;
    r = take("slots", "0", "1", "1", "2", "60000", "inst2");
    assert_int_equal(r.n, 0);
    assert_true(r.retry_ms > 0);
    assert_int_equal(harness_redis_int(g_redis.port, "ZCARD budget:{slots}:s"), 2);
    char member[64];
    snprintf(member, sizeof member, "inst1:%lld", first);
    op("slots", "release", member, NULL);
    r = take("slots", "0", "1", "1", "2", "60000", "inst2");
    assert_int_equal(r.n, 1);
    assert_int_equal(r.first, first + 2);
    /* a crashed instance's slot comes back when its lease expires */
    r = take("lease", "0", "1", "1", "1", "100", "dead");
    assert_int_equal(r.n, 1);
    r = take("lease", "0", "1", "1", "1", "100", "alive");
    assert_int_equal(r.n, 0);
    sleep_ms(200);
    r = take("lease", "0", "1", "1", "1", "100", "alive");
    assert_int_equal(r.n, 1);
    /* rate and cap together: the smaller wins, and a refused slot costs no token */
    r = take("both", "0.001", "3", "3", "1", "60000", "a");
    assert_int_equal(r.n, 1);
    r = take("both", "0.001", "3", "3", "5", "60000", "a");
    assert_int_equal(r.n, 2);
}

static int setup(void **state)
{
    (void)state;
    g_dir = harness_tmpdir("gbudget");
    return harness_start_redis(&g_redis, g_dir, 0);
}

static int teardown(void **state)
{
    (void)state;
    harness_stop(&g_redis, 2000);
    harness_rmdir(g_dir);
    free(g_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refused),
        cmocka_unit_test(test_refill_capped_at_burst),
        cmocka_unit_test(test_debt),
        cmocka_unit_test(test_pause_key),
        cmocka_unit_test(test_slots),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
