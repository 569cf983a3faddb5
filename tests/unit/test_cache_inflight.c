/*
 * test_cache_inflight: the in-flight table (src/coalesce.c): one leader per key, waiters get the
 * leader's result (a reference each), lingering results answer late joiners until they
 * expire, an abandoned flight promotes its oldest waiter, a waiter may leave, and delivery
 * across threads through event_base_once reaches each waiter on its own base.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "coalesce.h"
#include "util.h"

static cachekey mk(int i)
{
    cachekey k;
    util_sha256(&i, sizeof i, k.k);
    return k;
}

struct got {
    int calls;
    enum coalesce_kind kind;
    size_t len;
    coalesce_flight *flight;
    pthread_t thread;
};

static void on_deliver(void *arg, coalesce_result *res, coalesce_flight *flight)
{
    struct got *g = arg;
    g->calls++;
    g->kind = res->kind;
    g->len = res->len;
    g->flight = flight;
    g->thread = pthread_self();
    coalesce_result_unref(res);
}

static void test_leader_waiters(void **state)
{
    (void)state;
    cachekey k = mk(1);
    coalesce_flight *f, *f2;
    coalesce_result *done;
    struct got g[5];
    memset(g, 0, sizeof g);
    assert_int_equal(coalesce_join(&k, NULL, on_deliver, &g[0], &f, &done), COALESCE_LEADER);
    assert_non_null(f);
    for (int i = 1; i < 5; i++) {
        assert_int_equal(coalesce_join(&k, NULL, on_deliver, &g[i], &f2, &done), COALESCE_WAITER);
        assert_null(f2);
    }
    /* another key is independent */
    cachekey k2 = mk(2);
    coalesce_flight *fo;
    assert_int_equal(coalesce_join(&k2, NULL, on_deliver, NULL, &fo, &done), COALESCE_LEADER);
    coalesce_abandon(fo);
    /* waiter 2 leaves */
    assert_int_equal(coalesce_leave(&k, &g[2]), 1);
    assert_int_equal(coalesce_leave(&k, &g[2]), 0);
    coalesce_complete(f, coalesce_result_new(COALESCE_KIND_ENTRY, "abcdef", 6), 0);
    for (int i = 1; i < 5; i++) {
        assert_int_equal(g[i].calls, i == 2 ? 0 : 1);
        if (i != 2) {
            assert_int_equal(g[i].kind, COALESCE_KIND_ENTRY);
            assert_int_equal(g[i].len, 6);
        }
    }
    assert_int_equal(g[0].calls, 0);
    /* no linger: the next one leads again */
    assert_int_equal(coalesce_join(&k, NULL, on_deliver, &g[0], &f, &done), COALESCE_LEADER);
    coalesce_abandon(f);
}

static void test_linger(void **state)
{
    (void)state;
    cachekey k = mk(3);
    coalesce_flight *f;
    coalesce_result *done;
    struct got g = {0};
    assert_int_equal(coalesce_join(&k, NULL, on_deliver, &g, &f, &done), COALESCE_LEADER);
    coalesce_complete(f, coalesce_result_new(COALESCE_KIND_ENTRY, "xy", 2), 150);
    assert_int_equal(coalesce_join(&k, NULL, on_deliver, &g, &f, &done), COALESCE_DONE);
    assert_non_null(done);
    assert_int_equal(done->len, 2);
    coalesce_result_unref(done);
    usleep(200000);
    assert_int_equal(coalesce_join(&k, NULL, on_deliver, &g, &f, &done), COALESCE_LEADER);
    coalesce_complete(f, coalesce_result_new(COALESCE_KIND_ENTRY, "z", 1), 10000);
    coalesce_forget_all();
    assert_int_equal(coalesce_join(&k, NULL, on_deliver, &g, &f, &done), COALESCE_LEADER);
    coalesce_abandon(f);
}

/* The gauges: a finished fetch is no longer "in flight" (hotgate_cache_flights read 1 after
 * a single finished miss: the lingering result was counted as a flight), its lingering
 * result is counted apart, and is freed by the sweep once its time is up. */
static void test_stats_after_one_miss(void **state)
{
    (void)state;
    coalesce_stats a, b;
    coalesce_sweep_expired();
    coalesce_get_stats(&a);
    cachekey k = mk(7);
    coalesce_flight *f;
    coalesce_result *done;
    struct got g = {0};
    assert_int_equal(coalesce_join(&k, NULL, on_deliver, &g, &f, &done), COALESCE_LEADER);
    coalesce_get_stats(&b);
    assert_int_equal(b.inflight, a.inflight + 1);
    coalesce_complete(f, coalesce_result_new(COALESCE_KIND_ENTRY, "abc", 3), 20);
    coalesce_get_stats(&b);
    assert_int_equal(b.inflight, a.inflight);
    assert_int_equal(b.linger_results, a.linger_results + 1);
    assert_int_equal(b.linger_bytes, a.linger_bytes + 3);
    usleep(50000);
    coalesce_sweep_expired(); /* nobody joined that bucket: the sweep frees it */
    coalesce_get_stats(&b);
    assert_int_equal(b.linger_results, a.linger_results);
    assert_int_equal(b.linger_bytes, a.linger_bytes);
    /* without linger, and abandoned: nothing stays counted */
    assert_int_equal(coalesce_join(&k, NULL, on_deliver, &g, &f, &done), COALESCE_LEADER);
    coalesce_complete(f, coalesce_result_new(COALESCE_KIND_ENTRY, "abc", 3), 0);
    assert_int_equal(coalesce_join(&k, NULL, on_deliver, &g, &f, &done), COALESCE_LEADER);
    coalesce_abandon(f);
    coalesce_get_stats(&b);
    assert_int_equal(b.inflight, a.inflight);
    assert_int_equal(b.linger_results, a.linger_results);
}

static void test_abandon_promotes(void **state)
{
    (void)state;
    cachekey k = mk(4);
    coalesce_flight *f, *fx;
    coalesce_result *done;
    struct got a = {0}, b = {0};
    assert_int_equal(coalesce_join(&k, NULL, on_deliver, NULL, &f, &done), COALESCE_LEADER);
    assert_int_equal(coalesce_join(&k, NULL, on_deliver, &a, &fx, &done), COALESCE_WAITER);
    assert_int_equal(coalesce_join(&k, NULL, on_deliver, &b, &fx, &done), COALESCE_WAITER);
    coalesce_abandon(f);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.kind, COALESCE_KIND_LEAD);
    assert_non_null(a.flight);
    assert_int_equal(b.calls, 0);
    coalesce_complete(a.flight, coalesce_result_new(COALESCE_KIND_ERROR, NULL, 0), 0);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.kind, COALESCE_KIND_ERROR);
}

/* waiters on other threads' bases get the result on their own thread */
struct thr {
    struct event_base *base;
    struct got g;
    pthread_t tid;
};

static void *loop(void *p)
{
    struct thr *t = p;
    t->tid = pthread_self();
    event_base_loop(t->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static void test_cross_thread(void **state)
{
    (void)state;
    evthread_use_pthreads();
    struct thr t[3];
    memset(t, 0, sizeof t);
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        t[i].base = event_base_new();
        pthread_create(&th[i], NULL, loop, &t[i]);
    }
    cachekey k = mk(5);
    coalesce_flight *f, *fx;
    coalesce_result *done;
    assert_int_equal(coalesce_join(&k, NULL, on_deliver, NULL, &f, &done), COALESCE_LEADER);
    for (int i = 0; i < 3; i++)
        assert_int_equal(coalesce_join(&k, t[i].base, on_deliver, &t[i].g, &fx, &done),
                         COALESCE_WAITER);
    coalesce_complete(f, coalesce_result_new(COALESCE_KIND_ENTRY, "1234", 4), 0);
    for (int n = 0; n < 200; n++) {
        int all = 1;
        for (int i = 0; i < 3; i++)
            all &= __atomic_load_n(&t[i].g.calls, __ATOMIC_ACQUIRE) == 1;
        if (all)
            break;
        usleep(5000);
    }
    for (int i = 0; i < 3; i++) {
        event_base_loopbreak(t[i].base);
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].g.calls, 1);
        assert_int_equal(t[i].g.len, 4);
        assert_true(pthread_equal(t[i].g.thread, t[i].tid));
        event_base_free(t[i].base);
    }
    coalesce_stats st;
    coalesce_get_stats(&st);
    assert_true(st.flights >= 5);
    coalesce_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leader_waiters),       cmocka_unit_test(test_linger),
        cmocka_unit_test(test_stats_after_one_miss), cmocka_unit_test(test_abandon_promotes),
        cmocka_unit_test(test_cross_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
