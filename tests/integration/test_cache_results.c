/*
 * test_cache_results: GET /v1/results/{id} through hotgate while the result is not ready, in
 * both forms the simulator speaks (HG_TEST_RESULTS_NOT_READY, see CMakeLists.txt): the
 * reference's 200 with status pending/processing and null data (default), and the older 202
 * pending/processing + 409 failed. A not-ready answer is never stored as the final one: the
 * client sees the result become ready through hotgate, and only a ready answer is a HIT
 * (poll_window_ms = 0: no poll micro-cache of non-terminal answers either).
 */
#include "cache_it.h"

#include <stdbool.h>

static cit_env E;

static bool results202(void)
{
    const char *v = getenv("HG_TEST_RESULTS_NOT_READY");
    return v && strcmp(v, "202") == 0;
}

static int setup(void **state)
{
    (void)state;
    static const char *const sim_extra[] = {
        "--quiet", "--seed-rows",      "300", "--result-delay-ms",
        "700",     "--async-delay-ms", "50",  NULL};
    return cit_start(&E, "cache-results",
                     "ttl_metadata = 60s\nttl_query = 300s\nstale_while_revalidate = 0\n"
                     "stale_if_error = 0\nnegative_ttl = 60s\npoll_window_ms = 0\n",
                     sim_extra);
}

static int teardown(void **state)
{
    (void)state;
    cit_stop(&E);
    return 0;
}

static char *status_of(const hresp *r)
{
    json_t *j = json_loadb(r->body, r->len, 0, NULL);
    const char *s = json_string_value(json_object_get(j, "status"));
    char *out = strdup(s ? s : "");
    json_decref(j);
    return out;
}

static void run_until_ready(const char *rid, const char *query)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/results/%s%s", rid, query);
    int not_ready = 0, ready = 0;
    for (int i = 0; i < 400 && !ready; i++) {
        hresp r;
        assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", path, NULL, NULL, NULL, &r), 0);
        char *s = status_of(&r);
        if (r.status == 200 && !strcmp(s, "ready")) {
            ready = 1;
        } else {
            assert_true(!strcmp(s, "pending") || !strcmp(s, "processing"));
            assert_int_equal(r.status, results202() ? 202 : 200);
            /* a not-ready answer is never served from the cache */
            assert_string_not_equal(cit_xcache(&r), "HIT");
            not_ready++;
        }
        free(s);
        hresp_free(&r);
        if (!ready)
            cit_sleep_ms(30);
    }
    assert_true(not_ready > 0); /* the sim's delay makes the first answer not ready */
    assert_true(ready);
    /* now a ready answer is stored: the next one is a HIT, still ready */
    hresp r;
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", path, NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    char *s = status_of(&r);
    assert_string_equal(s, "ready");
    free(s);
    assert_string_equal(cit_xcache(&r), "HIT");
    hresp_free(&r);
}

static char *query_result_id(const char *sql)
{
    hresp r;
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    char *rid = strdup(json_string_value(json_object_get(j, "result_id")));
    json_decref(j);
    hresp_free(&r);
    return rid;
}

static void test_not_ready_never_final(void **state)
{
    (void)state;
    char *rid = query_result_id("SELECT id, status FROM demo.public.orders ORDER BY id LIMIT 7");
    run_until_ready(rid, "");
    free(rid);
    rid = query_result_id("SELECT id FROM demo.public.orders ORDER BY id LIMIT 9");
    run_until_ready(rid, "?offset=2&limit=3");
    free(rid);
}

/* A failed result: 409 (older form) or 200 status failed (reference form), never a cached
 * pending answer in front of it (a failed result is failed at once in the sim). */
static void test_failed_result(void **state)
{
    (void)state;
    hresp r;
    assert_int_equal(cit_req(&E, CIT_KEY_A, "POST", "/v1/query",
                             "{\"sql\":\"SELECT nope FROM demo.public.orders\",\"async\":true}",
                             NULL, NULL, &r),
                     0);
    assert_int_equal(r.status, 202);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    char run[128];
    snprintf(run, sizeof run, "/v1/query-runs/%s",
             json_string_value(json_object_get(j, "query_run_id")));
    json_decref(j);
    hresp_free(&r);
    char rid[128] = "";
    for (int i = 0; i < 200 && !rid[0]; i++) {
        assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", run, NULL, NULL, NULL, &r), 0);
        j = json_loadb(r.body, r.len, 0, NULL);
        const char *res = json_string_value(json_object_get(j, "result_id"));
        if (res)
            snprintf(rid, sizeof rid, "/v1/results/%s", res);
        json_decref(j);
        hresp_free(&r);
        if (!rid[0])
            cit_sleep_ms(30);
    }
    assert_true(rid[0]);
    int done = 0;
    for (int i = 0; i < 400 && !done; i++) {
        assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", rid, NULL, NULL, NULL, &r), 0);
        char *s = status_of(&r);
        if (results202() ? r.status == 409 : !strcmp(s, "failed")) {
            done = 1;
            if (!results202()) {
                assert_int_equal(r.status, 200);
                j = json_loadb(r.body, r.len, 0, NULL);
                assert_true(json_is_string(json_object_get(j, "error_message")));
                json_decref(j);
            }
        } else {
            assert_string_not_equal(cit_xcache(&r), "HIT");
        }
        free(s);
        hresp_free(&r);
        if (!done)
            cit_sleep_ms(30);
    }
    assert_true(done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_ready_never_final),
        cmocka_unit_test(test_failed_result),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
