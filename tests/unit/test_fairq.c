/*
 * test_fairq: start-time fair queuing order (4:1 by weight, newcomers not behind a flood),
 * bounds per flow and in total, deadline expiry, removal, front re-queue.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fairq.h"

#define N 200

static fairq_item items[N];

static int idx(const fairq_item *it)
{
    return (int)(it - items);
}

static void test_weighted_order_4_to_1(void **state)
{
    (void)state;
    fairq q;
    fairq_init(&q, 0);
    fairq_flow *in = fairq_flow_get(&q, "interactive", 4, 0);
    fairq_flow *ba = fairq_flow_get(&q, "batch", 1, 0);
    memset(items, 0, sizeof items);
    /* batch floods first, then interactive queues as much */
    for (int i = 0; i < 100; i++)
        assert_int_equal(fairq_push(&q, ba, &items[i], 1000), FAIRQ_OK);
    for (int i = 100; i < 200; i++)
        assert_int_equal(fairq_push(&q, in, &items[i], 1000), FAIRQ_OK);
    assert_int_equal(q.count, 200);
    /* In the first 100 served, 80 are interactive: 4:1, and in every window of 5 the split
     * is 4:1 too (no long runs of the batch flow). */
    int ni = 0, nb = 0;
    for (int k = 0; k < 100; k++) {
        fairq_item *it = fairq_pop(&q);
        assert_non_null(it);
        assert_false(fairq_queued(it));
        if (idx(it) >= 100)
            ni++;
        else
            nb++;
        if (k % 5 == 4) {
            assert_int_equal(ni, (k + 1) / 5 * 4);
            assert_int_equal(nb, (k + 1) / 5);
        }
    }
    /* FIFO inside each flow */
    while (q.count)
        fairq_pop(&q);
    assert_null(fairq_pop(&q));
    fairq_destroy(&q);
}

static void test_fifo_within_flow(void **state)
{
    (void)state;
    fairq q;
    fairq_init(&q, 0);
    fairq_flow *f = fairq_flow_get(&q, "a", 1, 0);
    memset(items, 0, sizeof items);
    for (int i = 0; i < 10; i++)
        fairq_push(&q, f, &items[i], 100);
    for (int i = 0; i < 10; i++)
        assert_int_equal(idx(fairq_pop(&q)), i);
    fairq_destroy(&q);
}

static void test_newcomer_not_behind_flood(void **state)
{
    (void)state;
    fairq q;
    fairq_init(&q, 0);
    fairq_flow *ba = fairq_flow_get(&q, "batch", 1, 0);
    fairq_flow *in = fairq_flow_get(&q, "interactive", 4, 0);
    memset(items, 0, sizeof items);
    for (int i = 0; i < 150; i++)
        fairq_push(&q, ba, &items[i], 1000);
    for (int i = 0; i < 40; i++) /* batch served alone for a while */
        fairq_pop(&q);
    /* an interactive request arrives: at most one batch item is served before it */
    fairq_push(&q, in, &items[190], 1000);
    assert_true(fairq_position(&q, &items[190]) <= 1);
    int before = 0;
    for (;;) {
        fairq_item *it = fairq_pop(&q);
        if (it == &items[190])
            break;
        before++;
    }
    assert_true(before <= 1);
    /* a batch client is not starved by a sparse interactive one either */
    while (q.count)
        fairq_pop(&q);
    fairq_destroy(&q);
}

static void test_bounds(void **state)
{
    (void)state;
    fairq q;
    fairq_init(&q, 5);
    fairq_flow *a = fairq_flow_get(&q, "a", 1, 3);
    fairq_flow *b = fairq_flow_get(&q, "b", 1, 0);
    assert_ptr_equal(fairq_flow_get(&q, "a", 7, 9), a); /* existing flow kept */
    memset(items, 0, sizeof items);
    assert_int_equal(fairq_push(&q, a, &items[0], 10), FAIRQ_OK);
    assert_int_equal(fairq_push(&q, a, &items[1], 10), FAIRQ_OK);
    assert_int_equal(fairq_push(&q, a, &items[2], 10), FAIRQ_OK);
    assert_int_equal(fairq_push(&q, a, &items[3], 10), FAIRQ_FULL_FLOW);
    assert_false(fairq_queued(&items[3]));
    assert_int_equal(fairq_push(&q, b, &items[4], 10), FAIRQ_OK);
    assert_int_equal(fairq_push(&q, b, &items[5], 10), FAIRQ_OK);
    assert_int_equal(fairq_push(&q, b, &items[6], 10), FAIRQ_FULL_TOTAL);
    assert_int_equal(q.count, 5);
    assert_int_equal(a->count, 3);
    /* room again after one leaves */
    fairq_remove(&q, &items[0]);
    assert_int_equal(fairq_push(&q, b, &items[6], 10), FAIRQ_OK);
    while (q.count)
        fairq_pop(&q);
    fairq_destroy(&q);
}

static void test_deadline_expiry(void **state)
{
    (void)state;
    fairq q;
    fairq_init(&q, 0);
    fairq_flow *a = fairq_flow_get(&q, "a", 1, 0);
    fairq_flow *b = fairq_flow_get(&q, "b", 4, 0);
    memset(items, 0, sizeof items);
    assert_true(fairq_next_deadline(&q) == UINT64_MAX);
    fairq_push(&q, a, &items[0], 500);
    fairq_push(&q, a, &items[1], 100); /* a shortened deadline, behind in FIFO order */
    fairq_push(&q, b, &items[2], 300);
    fairq_push(&q, b, &items[3], 900);
    assert_int_equal(fairq_next_deadline(&q), 100);
    assert_null(fairq_pop_expired(&q, 99));
    assert_ptr_equal(fairq_pop_expired(&q, 100), &items[1]);
    assert_null(fairq_pop_expired(&q, 100));
    assert_int_equal(fairq_next_deadline(&q), 300);
    assert_ptr_equal(fairq_pop_expired(&q, 600), &items[2]);
    assert_ptr_equal(fairq_pop_expired(&q, 600), &items[0]);
    assert_null(fairq_pop_expired(&q, 600));
    assert_int_equal(q.count, 1);
    assert_int_equal(a->count, 0);
    assert_int_equal(fairq_next_deadline(&q), 900);
    assert_ptr_equal(fairq_pop(&q), &items[3]);
    assert_true(fairq_next_deadline(&q) == UINT64_MAX);
    fairq_destroy(&q);
}

static void test_remove_on_disconnect(void **state)
{
    (void)state;
    fairq q;
    fairq_init(&q, 0);
    fairq_flow *a = fairq_flow_get(&q, "a", 1, 0);
    memset(items, 0, sizeof items);
    for (int i = 0; i < 50; i++)
        fairq_push(&q, a, &items[i], (uint64_t)(1000 - i)); /* reverse deadlines: heap work */
    /* the client of item 20 goes away: it is gone at once, the rest keeps its order */
    fairq_remove(&q, &items[20]);
    fairq_remove(&q, &items[20]); /* idempotent */
    fairq_remove(&q, &items[49]); /* the heap's top */
    fairq_remove(&q, &items[0]);
    assert_int_equal(q.count, 47);
    assert_int_equal(fairq_next_deadline(&q), 1000 - 48);
    for (int i = 1; i < 49; i++) {
        if (i == 20)
            continue;
        assert_int_equal(idx(fairq_pop(&q)), i);
    }
    assert_int_equal(q.count, 0);
    fairq_destroy(&q);
}

static void test_push_front_retry(void **state)
{
    (void)state;
    fairq q;
    fairq_init(&q, 2);
    fairq_flow *a = fairq_flow_get(&q, "a", 1, 0);
    fairq_flow *b = fairq_flow_get(&q, "b", 1, 0);
    memset(items, 0, sizeof items);
    fairq_push(&q, a, &items[0], 100);
    fairq_push(&q, b, &items[1], 200);
    fairq_item *first = fairq_pop(&q);
    assert_ptr_equal(first, &items[0]);
    fairq_push(&q, a, &items[2], 300);
    /* shed upstream: back at the front, with its deadline, even though the queue is full */
    fairq_push_front(&q, a, first);
    assert_int_equal(q.count, 3);
    assert_int_equal(first->deadline, 100);
    assert_ptr_equal(fairq_pop(&q), &items[0]);
    assert_ptr_equal(fairq_pop(&q), &items[1]);
    assert_ptr_equal(fairq_pop(&q), &items[2]);
    fairq_destroy(&q);
}

static void test_position_estimate(void **state)
{
    (void)state;
    fairq q;
    fairq_init(&q, 0);
    fairq_flow *ba = fairq_flow_get(&q, "batch", 1, 0);
    fairq_flow *in = fairq_flow_get(&q, "interactive", 4, 0);
    memset(items, 0, sizeof items);
    for (int i = 0; i < 20; i++)
        fairq_push(&q, ba, &items[i], 1000);
    assert_int_equal(fairq_position(&q, &items[19]), 19);
    assert_int_equal(fairq_position_new(&q, ba), 20);
    assert_true(fairq_position_new(&q, in) <= 1);
    while (q.count)
        fairq_pop(&q);
    fairq_destroy(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weighted_order_4_to_1),
        cmocka_unit_test(test_fifo_within_flow),
        cmocka_unit_test(test_newcomer_not_behind_flood),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_deadline_expiry),
        cmocka_unit_test(test_remove_on_disconnect),
        cmocka_unit_test(test_push_front_retry),
        cmocka_unit_test(test_position_estimate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
