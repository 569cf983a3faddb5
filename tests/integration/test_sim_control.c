/*
 * test_sim_control: hotdata-sim's control plane (/_sim/stats, /_sim/reset, /_sim/faults),
 * rate limiting and every fault knob, against a real simulator process started with
 * --rate 5 --burst 2.
 *
 * Rules: latency is asserted as a lower bound with margin (never an upper bound on speed);
 * each test leaves the fault configuration empty and the stats reset.
 */
#include "sim_core_it.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sys/time.h>

static int setup(void **state)
{
    (void)state;
    static const char *const extra[] = {"--seed-rows", "1000", "--rate", "5", "--burst", "2", NULL};
    return sci_start(extra);
}

static int teardown(void **state)
{
    (void)state;
    sci_stop();
    return 0;
}

static double now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Fresh state between tests: no faults, zero stats, full token buckets. */
static void clean(void)
{
    json_decref(sci_ctl("POST", "/_sim/faults", "{}"));
    json_decref(sci_ctl("POST", "/_sim/reset", NULL));
}

/* Requests are throttled at 5/s (burst 2): space them out so tests other than the rate
 * test are not disturbed. */
static void pace(void)
{
    sci_sleep_ms(210);
}

static void test_rate_limit_429(void **state)
{
    (void)state;
    clean();
    int ok = 0, limited = 0;
    for (int i = 0; i < 8; i++) {
        hresp r;
        assert_int_equal(
            sci_raw("tok_test", "ws_test", "POST", "/v1/query", "{\"sql\":\"SELECT 1\"}", NULL, &r),
            0);
        if (r.status == 200) {
            ok++;
        } else {
            assert_int_equal(r.status, 429);
            limited++;
            char *ra = hresp_header(&r, "Retry-After");
            assert_non_null(ra);
            char *end;
            long secs = strtol(ra, &end, 10);
            assert_true(*end == '\0' && secs >= 1);
            free(ra);
            json_t *j = json_loadb(r.body, r.len, 0, NULL);
            sci_assert_error(j, 429, "OVERLOADED");
            json_decref(j);
        }
        hresp_free(&r);
    }
    /* a burst of 2 plus at most a token or two refilled while sending */
    assert_true(ok >= 2 && ok <= 4);
    assert_true(limited >= 4);
    /* buckets are per token: tok_other is not affected */
    hresp r;
    assert_int_equal(sci_raw("tok_other", "ws_other", "GET", "/v1/jobs", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    json_t *s = sci_ctl("GET", "/_sim/stats", NULL);
    assert_int_equal(sci_json_int(s, "rate_limited", NULL), limited);
    assert_int_equal(sci_json_int(s, "responses_429", NULL), limited);
    json_decref(s);
    /* the bucket refills */
    sci_sleep_ms(1100);
    assert_int_equal(sci_raw("tok_test", "ws_test", "GET", "/v1/jobs", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
}

static void test_stats_and_reset(void **state)
{
    (void)state;
    clean();
    const char *sql = "SELECT count(*) FROM demo.public.customers";
    for (int i = 0; i < 3; i++) {
        json_decref(sci_query_ok(sql));
        pace();
    }
    json_decref(sci_query_ok("SELECT 7"));
    pace();
    long st;
    json_decref(sci("GET", "/v1/jobs", NULL, &st));
    pace();
    json_t *s = sci_ctl("GET", "/_sim/stats", NULL);
    char hash[65], hash7[65], tok[65];
    util_sha256_hex(sql, strlen(sql), hash);
    util_sha256_hex("SELECT 7", 8, hash7);
    util_sha256_hex("tok_test", 8, tok);
    tok[12] = '\0';
    assert_int_equal(sci_json_int(s, "sql_hashes", hash), 3);
    assert_int_equal(sci_json_int(s, "sql_hashes", hash7), 1);
    assert_int_equal(sci_json_int(s, "routes", "POST /v1/query"), 4);
    assert_int_equal(sci_json_int(s, "routes", "GET /v1/jobs"), 1);
    assert_int_equal(sci_json_int(s, "requests_total", NULL), 5);
    assert_int_equal(sci_json_int(s, "queries_executed", NULL), 4);
    json_t *t = json_object_get(json_object_get(s, "tokens"), tok);
    assert_non_null(t);
    assert_int_equal(sci_json_int(t, "requests", NULL), 5);
    char *dump = json_dumps(s, 0);
    assert_null(strstr(dump, "tok_test")); /* never the token itself */
    free(dump);
    json_decref(s);

    json_decref(sci_ctl("POST", "/_sim/reset", NULL));
    s = sci_ctl("GET", "/_sim/stats", NULL);
    assert_int_equal(sci_json_int(s, "requests_total", NULL), 0);
    assert_int_equal(json_object_size(json_object_get(s, "sql_hashes")), 0);
    assert_int_equal(json_object_size(json_object_get(s, "routes")), 0);
    json_decref(s);

    /* reset with data=1 re-seeds: a refresh's extra rows disappear */
    json_decref(sci("POST", "/v1/refresh",
                    "{\"connection_id\":\"conn_demo\",\"schema_name\":\"public\","
                    "\"table_name\":\"orders\",\"data\":true}",
                    &st));
    assert_int_equal(st, 200);
    pace();
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.orders"), 1010);
    pace();
    json_decref(sci_ctl("POST", "/_sim/reset?data=1", NULL));
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.orders"), 1000);
    pace();
    /* the control plane needs no token, /v1 does */
    json_t *j = sci_as(NULL, NULL, "GET", "/v1/jobs", NULL, &st);
    assert_int_equal(st, 401);
    json_decref(j);
    pace();
}

static double timed_get(const char *path, long *status)
{
    double t0 = now_s();
    hresp r;
    assert_int_equal(sci_raw("tok_test", "ws_test", "GET", path, NULL, NULL, &r), 0);
    *status = r.status;
    hresp_free(&r);
    return now_s() - t0;
}

static void *slow_get(void *arg)
{
    long *status = arg;
    hresp r;
    if (sci_raw("tok_test", "ws_test", "GET", "/v1/jobs", NULL, NULL, &r) == 0)
        *status = r.status;
    hresp_free(&r);
    return NULL;
}

static void test_fault_latency(void **state)
{
    (void)state;
    clean();
    json_t *f = sci_ctl("POST", "/_sim/faults", "{\"latency_ms\":400,\"jitter_ms\":100}");
    assert_int_equal(sci_json_int(f, "latency_ms", NULL), 400);
    assert_int_equal(sci_json_int(f, "jitter_ms", NULL), 100);
    json_decref(f);
    long st;
    double t0;
    double dt = timed_get("/v1/jobs", &st);
    assert_int_equal(st, 200);
    assert_true(dt >= 0.38);
    pace();
    /* per route: only GET /v1/jobs/{id} is slow */
    json_decref(sci_ctl("POST", "/_sim/faults",
                        "{\"routes\":{\"GET /v1/jobs/{id}\":{\"latency_ms\":600}}}"));
    f = sci_ctl("GET", "/_sim/faults", NULL);
    assert_int_equal(sci_json_int(json_object_get(f, "routes"), "GET /v1/jobs/{id}", "latency_ms"),
                     600);
    assert_int_equal(sci_json_int(f, "latency_ms", NULL), 0);
    json_decref(f);
    dt = timed_get("/v1/jobs/job_x", &st);
    assert_int_equal(st, 404);
    assert_true(dt >= 0.58);
    pace();
    double fast = timed_get("/v1/jobs", &st);
    assert_int_equal(st, 200);
    assert_true(fast < dt); /* the other route is not delayed */
    pace();
    /* latency is non-blocking (a timer, not a sleep): two concurrent delayed requests
     * overlap instead of queueing behind each other */
    clean();
    json_decref(sci_ctl("POST", "/_sim/faults", "{\"latency_ms\":1000}"));
    long s1 = 0, s2 = 0;
    pthread_t t1, t2;
    t0 = now_s();
    pthread_create(&t1, NULL, slow_get, &s1);
    pthread_create(&t2, NULL, slow_get, &s2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    double both = now_s() - t0;
    assert_int_equal(s1, 200);
    assert_int_equal(s2, 200);
    assert_true(both >= 0.95);
    assert_true(both < 1.9); /* serialised they would take >= 2 s */
    f = sci_ctl("GET", "/_sim/stats", NULL);
    assert_int_equal(sci_json_int(f, "faults", "delayed"), 2);
    json_decref(f);
    clean();
}

static void test_fault_error_rate(void **state)
{
    (void)state;
    clean();
    static const int statuses[] = {500, 502, 503};
    static const char *const codes[] = {"INTERNAL_SERVER_ERROR", "BAD_GATEWAY",
                                        "SERVICE_UNAVAILABLE"};
    for (int i = 0; i < 3; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"error_rate\":1.0,\"error_status\":%d}", statuses[i]);
        json_decref(sci_ctl("POST", "/_sim/faults", body));
        long st;
        json_t *j = sci("GET", "/v1/jobs", NULL, &st);
        assert_int_equal(st, statuses[i]);
        sci_assert_error(j, statuses[i], codes[i]);
        json_decref(j);
        pace();
    }
    json_t *s = sci_ctl("GET", "/_sim/stats", NULL);
    assert_int_equal(sci_json_int(s, "faults", "errors"), 3);
    json_decref(s);
    /* error_rate 0 on one route overrides the global rate */
    json_decref(sci_ctl("POST", "/_sim/faults",
                        "{\"error_rate\":1.0,\"routes\":{\"GET /v1/jobs\":{\"error_rate\":0}}}"));
    long st;
    json_decref(sci("GET", "/v1/jobs", NULL, &st));
    assert_int_equal(st, 200);
    pace();
    json_decref(sci("GET", "/v1/query-runs", NULL, &st));
    assert_int_equal(st, 500);
    pace();
    /* invalid fault configs are rejected and leave the old one in place */
    json_t *bad = sci_as(NULL, NULL, "POST", "/_sim/faults", "{\"error_rate\":2}", &st);
    assert_int_equal(st, 400);
    json_decref(bad);
    bad = sci_as(NULL, NULL, "POST", "/_sim/faults", "{\"drop\":\"sometimes\"}", &st);
    assert_int_equal(st, 400);
    json_decref(bad);
    json_t *f = sci_ctl("GET", "/_sim/faults", NULL);
    assert_true(json_number_value(json_object_get(f, "error_rate")) > 0.99);
    json_decref(f);
    clean();
}

static void test_fault_drops(void **state)
{
    (void)state;
    clean();
    hresp r;
    json_decref(sci_ctl("POST", "/_sim/faults", "{\"drop\":\"before\"}"));
    int rc = sci_raw("tok_test", "ws_test", "GET", "/v1/jobs", NULL, NULL, &r);
    assert_int_equal(rc, CURLE_GOT_NOTHING);
    hresp_free(&r);
    pace();
    json_decref(sci_ctl("POST", "/_sim/faults", "{\"drop\":\"mid\"}"));
    rc = sci_raw("tok_test", "ws_test", "POST", "/v1/query",
                 "{\"sql\":\"SELECT id, name FROM demo.public.customers\"}", NULL, &r);
    assert_int_equal(rc, CURLE_PARTIAL_FILE);
    assert_true(r.len > 0); /* headers and part of the body did arrive */
    hresp_free(&r);
    pace();
    json_t *s = sci_ctl("GET", "/_sim/stats", NULL);
    assert_int_equal(sci_json_int(s, "faults", "drops_before"), 1);
    assert_int_equal(sci_json_int(s, "faults", "drops_mid"), 1);
    json_decref(s);
    /* per route drop leaves other routes alone */
    json_decref(
        sci_ctl("POST", "/_sim/faults", "{\"routes\":{\"POST /v1/query\":{\"drop\":\"before\"}}}"));
    assert_int_equal(sci_raw("tok_test", "ws_test", "GET", "/v1/jobs", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    pace();
    clean();
    /* the simulator is still healthy */
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.orders"), 1000);
    pace();
}

static void test_fault_stall(void **state)
{
    (void)state;
    clean();
    json_decref(sci_ctl("POST", "/_sim/faults", "{\"stall_ms\":1200}"));
    double t0 = now_s();
    hresp r;
    int rc = sci_raw("tok_test", "ws_test", "GET", "/v1/jobs", NULL, NULL, &r);
    double dt = now_s() - t0;
    assert_int_equal(rc, CURLE_GOT_NOTHING);
    assert_true(dt >= 1.15);
    hresp_free(&r);
    json_t *s = sci_ctl("GET", "/_sim/stats", NULL);
    assert_int_equal(sci_json_int(s, "faults", "stalls"), 1);
    json_decref(s);
    clean();
    pace();
}

static void test_fault_one_shot_retry_after(void **state)
{
    (void)state;
    clean();
    json_t *f = sci_ctl("POST", "/_sim/faults", "{\"retry_after\":{\"count\":2,\"seconds\":3}}");
    assert_int_equal(sci_json_int(f, "retry_after", "count"), 2);
    json_decref(f);
    for (int i = 0; i < 2; i++) {
        hresp r;
        assert_int_equal(sci_raw("tok_test", "ws_test", "GET", "/v1/jobs", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 429);
        char *ra = hresp_header(&r, "Retry-After");
        assert_non_null(ra);
        assert_string_equal(ra, "3");
        free(ra);
        json_t *j = json_loadb(r.body, r.len, 0, NULL);
        sci_assert_error(j, 429, "OVERLOADED");
        json_decref(j);
        hresp_free(&r);
        pace();
    }
    long st;
    json_decref(sci("GET", "/v1/jobs", NULL, &st));
    assert_int_equal(st, 200);
    f = sci_ctl("GET", "/_sim/faults", NULL);
    assert_int_equal(sci_json_int(f, "retry_after", "count"), 0);
    json_decref(f);
    json_t *s = sci_ctl("GET", "/_sim/stats", NULL);
    assert_int_equal(sci_json_int(s, "retry_after_injected", NULL), 2);
    json_decref(s);
    clean();
    pace();
}

static void test_state_survives_restart(void **state)
{
    (void)state;
    clean();
    json_t *q = sci_query_ok("SELECT 'persist me'");
    char run[64];
    snprintf(run, sizeof run, "%s", json_string_value(json_object_get(q, "query_run_id")));
    json_decref(q);
    harness_stop(&sci_proc, 5000);
    static const char *const extra[] = {"--seed-rows", "1000", "--rate", "5", "--burst", "2", NULL};
    assert_int_equal(harness_start_sim(&sci_proc, sci_dir, extra), 0);
    char path[128];
    snprintf(path, sizeof path, "/v1/query-runs/%s", run);
    long st;
    json_t *j = sci("GET", path, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(j, "sql_text")), "SELECT 'persist me'");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_limit_429),
        cmocka_unit_test(test_stats_and_reset),
        cmocka_unit_test(test_fault_latency),
        cmocka_unit_test(test_fault_error_rate),
        cmocka_unit_test(test_fault_drops),
        cmocka_unit_test(test_fault_stall),
        cmocka_unit_test(test_fault_one_shot_retry_after),
        cmocka_unit_test(test_state_survives_restart),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
