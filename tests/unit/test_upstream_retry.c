/*
 * test_upstream_retry: the retry rule both upstream transports share (upstream.c,
 * upstream_impl.h): upstream_retry_decide replays a swallowed GET 502/503, and a failure
 * before any request byte reached the server (connect error; a protocol error or timeout
 * with nothing sent) of a replayable request, while retries and time are left; never after
 * a head was delivered, never a body that cannot be sent again, never once the request
 * timeout is used up. upstream_retry_allowed and upstream_backoff_ms bound it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "upstream_impl.h"
#include "util.h"

static struct hg_config cfg_with(unsigned retries, uint64_t timeout_ms, uint64_t backoff_ms)
{
    struct hg_config c;
    memset(&c, 0, sizeof c);
    c.upstream.retries = retries;
    c.upstream.timeout_ms = timeout_ms;
    c.upstream.retry_backoff_ms = backoff_ms;
    return c;
}

/* An attempt that failed before anything was sent, first attempt, just started. */
static struct upstream_attempt_end fresh_end(enum upstream_outcome o)
{
    struct upstream_attempt_end e;
    memset(&e, 0, sizeof e);
    e.outcome = o;
    e.replayable = 1;
    e.attempts = 1;
    e.started_ms = util_mono_ms();
    return e;
}

static void test_nothing_sent_is_retried(void **state)
{
    (void)state;
    struct hg_config c = cfg_with(2, 60000, 10);
    struct upstream_attempt_end e = fresh_end(UPSTREAM_CONNECT_ERROR);
    assert_true(upstream_retry_decide(&c, &e));
    e = fresh_end(UPSTREAM_PROTOCOL_ERROR); /* e.g. a reset pooled connection */
    assert_true(upstream_retry_decide(&c, &e));
    e = fresh_end(UPSTREAM_TIMEOUT);
    assert_true(upstream_retry_decide(&c, &e));
    /* a connect error is safe even if the transport counted the request as sent */
    e = fresh_end(UPSTREAM_CONNECT_ERROR);
    e.sent = 1;
    assert_true(upstream_retry_decide(&c, &e));
}

static void test_sent_is_not_retried(void **state)
{
    (void)state;
    struct hg_config c = cfg_with(2, 60000, 10);
    /* a request byte reached the server: it may have acted (not idempotent in general) */
    struct upstream_attempt_end e = fresh_end(UPSTREAM_PROTOCOL_ERROR);
    e.sent = 1;
    assert_false(upstream_retry_decide(&c, &e));
    e = fresh_end(UPSTREAM_TIMEOUT);
    e.sent = 1;
    assert_false(upstream_retry_decide(&c, &e));
    /* outcomes that are never retried */
    e = fresh_end(UPSTREAM_OK);
    assert_false(upstream_retry_decide(&c, &e));
    e = fresh_end(UPSTREAM_TLS_ERROR);
    assert_false(upstream_retry_decide(&c, &e));
    e = fresh_end(UPSTREAM_BODY_ERROR);
    assert_false(upstream_retry_decide(&c, &e));
    e = fresh_end(UPSTREAM_CANCELLED);
    assert_false(upstream_retry_decide(&c, &e));
}

static void test_head_delivered_or_not_replayable(void **state)
{
    (void)state;
    struct hg_config c = cfg_with(2, 60000, 10);
    struct upstream_attempt_end e = fresh_end(UPSTREAM_CONNECT_ERROR);
    e.head_delivered = 1; /* the client has seen a head: never replayed */
    assert_false(upstream_retry_decide(&c, &e));
    e = fresh_end(UPSTREAM_CONNECT_ERROR);
    e.replayable = 0; /* a streamed body already consumed */
    assert_false(upstream_retry_decide(&c, &e));
    e = fresh_end(UPSTREAM_CONNECT_ERROR);
    e.no_retry = 1;
    assert_false(upstream_retry_decide(&c, &e));
}

static void test_retries_and_time_bound(void **state)
{
    (void)state;
    struct hg_config c = cfg_with(2, 60000, 10);
    struct upstream_attempt_end e = fresh_end(UPSTREAM_CONNECT_ERROR);
    e.attempts = 2;
    assert_true(upstream_retry_decide(&c, &e)); /* retries = 2: attempts 1 and 2 may retry */
    e.attempts = 3;
    assert_false(upstream_retry_decide(&c, &e));
    struct hg_config none = cfg_with(0, 60000, 10);
    e.attempts = 1;
    assert_false(upstream_retry_decide(&none, &e));
    /* the request timeout is used up: no new attempt, whatever the retries left */
    e = fresh_end(UPSTREAM_CONNECT_ERROR);
    e.started_ms = util_mono_ms() - 61000;
    assert_false(upstream_retry_decide(&c, &e));
    assert_false(upstream_retry_allowed(&c, 0, 1, e.started_ms));
    assert_true(upstream_retry_allowed(&c, 0, 1, util_mono_ms()));
    assert_false(upstream_retry_allowed(&c, 1, 1, util_mono_ms()));
}

static void test_discarding_gateway_error(void **state)
{
    (void)state;
    struct hg_config c = cfg_with(2, 60000, 10);
    /* a GET 502/503 swallowed at the head (retry_allowed was checked then): replayed once
     * its body was read away (OK) or the connection broke while reading it */
    struct upstream_attempt_end e = fresh_end(UPSTREAM_OK);
    e.discarding = 1;
    e.sent = 1;
    assert_true(upstream_retry_decide(&c, &e));
    e.outcome = UPSTREAM_PROTOCOL_ERROR;
    assert_true(upstream_retry_decide(&c, &e));
    e.outcome = UPSTREAM_TIMEOUT;
    assert_false(upstream_retry_decide(&c, &e));
    e.outcome = UPSTREAM_CANCELLED;
    assert_false(upstream_retry_decide(&c, &e));
}

static void test_backoff(void **state)
{
    (void)state;
    struct hg_config c = cfg_with(8, 60000, 100);
    for (int i = 0; i < 200; i++) {
        uint64_t b1 = upstream_backoff_ms(&c, 1);
        assert_true(b1 >= 50 && b1 < 150); /* base +-50 % */
        uint64_t b3 = upstream_backoff_ms(&c, 3);
        assert_true(b3 >= 200 && b3 < 600); /* base * 4 */
        uint64_t b20 = upstream_backoff_ms(&c, 20);
        assert_true(b20 >= 3200 && b20 < 9600); /* capped at base * 64 */
    }
    struct hg_config zero = cfg_with(8, 60000, 0);
    assert_int_equal(upstream_backoff_ms(&zero, 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_sent_is_retried),
        cmocka_unit_test(test_sent_is_not_retried),
        cmocka_unit_test(test_head_delivered_or_not_replayable),
        cmocka_unit_test(test_retries_and_time_bound),
        cmocka_unit_test(test_discarding_gateway_error),
        cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
