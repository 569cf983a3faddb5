/*
 * test_sim_query: the hotdata-sim contract for /v1/query, query runs, results, refresh and
 * jobs, plus auth and workspace rules, against a real simulator process.
 *
 * Rules: timing assertions only where the API defines states (queued/running, pending/ready)
 * and with generous margins; the simulator runs with slow phases (300 ms) so non-terminal
 * states are observable.
 */
#include "sim_core_it.h"

#define SEED_ROWS 2000

static int setup(void **state)
{
    (void)state;
    static const char *const extra[] = {"--seed-rows",
                                        "2000",
                                        "--result-delay-ms",
                                        "300",
                                        "--async-delay-ms",
                                        "300",
                                        "--job-delay-ms",
                                        "300",
                                        NULL};
    return sci_start(extra);
}

static int teardown(void **state)
{
    (void)state;
    sci_stop();
    return 0;
}

static bool is_prefixed(json_t *v, const char *prefix)
{
    return json_is_string(v) && strncmp(json_string_value(v), prefix, strlen(prefix)) == 0;
}

static void test_query_success_shape(void **state)
{
    (void)state;
    json_t *j = sci_query_ok("SELECT count(*) AS n FROM demo.public.orders");
    json_t *cols = json_object_get(j, "columns");
    assert_int_equal(json_array_size(cols), 1);
    assert_string_equal(json_string_value(json_array_get(cols, 0)), "n");
    json_t *nullable = json_object_get(j, "nullable");
    assert_int_equal(json_array_size(nullable), 1);
    assert_true(json_is_boolean(json_array_get(nullable, 0)));
    assert_true(json_is_integer(json_object_get(j, "row_count")));
    assert_int_equal(json_integer_value(json_object_get(j, "row_count")), 1);
    assert_true(json_is_integer(json_object_get(j, "execution_time_ms")));
    assert_true(is_prefixed(json_object_get(j, "query_run_id"), "qrun"));
    assert_true(is_prefixed(json_object_get(j, "result_id"), "res"));
    assert_true(json_is_null(json_object_get(j, "warning")));
    json_t *cell = json_array_get(json_array_get(json_object_get(j, "rows"), 0), 0);
    assert_true(json_is_integer(cell));
    assert_int_equal(json_integer_value(cell), SEED_ROWS);
    json_decref(j);

    /* different SQL, different (correct) answers; typed values and declared nullability */
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.customers"), 1000);
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.products"), 200);
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.orders o JOIN "
                                   "demo.public.customers c ON c.id = o.customer_id"),
                     SEED_ROWS);
    j = sci_query_ok("SELECT id, name, is_active, segment, synced_at FROM "
                     "demo.public.customers ORDER BY id LIMIT 3");
    json_t *row = json_array_get(json_object_get(j, "rows"), 0);
    assert_int_equal(json_integer_value(json_array_get(row, 0)), 1);
    assert_true(json_is_string(json_array_get(row, 1)));
    assert_true(json_is_boolean(json_array_get(row, 2)));
    nullable = json_object_get(j, "nullable");
    assert_true(json_is_false(json_array_get(nullable, 0)));
    assert_true(json_is_false(json_array_get(nullable, 1)));
    assert_true(json_is_true(json_array_get(nullable, 3))); /* segment is nullable */
    assert_int_equal(json_integer_value(json_object_get(j, "row_count")), 3);
    json_decref(j);
    /* quoted three-part names and literals that look like names */
    j = sci_query_ok(
        "SELECT 'demo.public.orders' AS s, count(*) FROM \"demo\".\"public\".\"orders\"");
    row = json_array_get(json_object_get(j, "rows"), 0);
    assert_string_equal(json_string_value(json_array_get(row, 0)), "demo.public.orders");
    assert_int_equal(json_integer_value(json_array_get(row, 1)), SEED_ROWS);
    json_decref(j);
}

static void test_query_errors(void **state)
{
    (void)state;
    long st = 0;
    json_t *j = sci("POST", "/v1/query", "{\"sql\":\"SELEC 1\"}", &st);
    assert_int_equal(st, 400);
    sci_assert_error(j, 400, "BAD_REQUEST");
    assert_non_null(strstr(json_string_value(json_object_get(j, "message")), "syntax error"));
    json_decref(j);

    j = sci("POST", "/v1/query", "{\"sql\":\"SELECT * FROM demo.public.nope\"}", &st);
    assert_int_equal(st, 400);
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);

    /* the seeded data cannot be modified, bookkeeping tables cannot be read */
    j = sci("POST", "/v1/query", "{\"sql\":\"DELETE FROM demo.public.orders\"}", &st);
    assert_int_equal(st, 400);
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
    j = sci("POST", "/v1/query", "{\"sql\":\"SELECT * FROM query_runs\"}", &st);
    assert_int_equal(st, 400);
    json_decref(j);
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.orders"), SEED_ROWS);

    /* malformed JSON, missing sql, wrong types, unknown fields ignored */
    j = sci("POST", "/v1/query", "{\"sql\":", &st);
    assert_int_equal(st, 400);
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
    j = sci("POST", "/v1/query", "{}", &st);
    assert_int_equal(st, 400);
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
    j = sci("POST", "/v1/query", "{\"sql\":1}", &st);
    assert_int_equal(st, 400);
    json_decref(j);
    j = sci("POST", "/v1/query", "{\"sql\":\"SELECT 1\",\"async\":\"yes\"}", &st);
    assert_int_equal(st, 400);
    json_decref(j);
    j = sci("POST", "/v1/query", "{\"sql\":\"SELECT 1\",\"whatever\":[1,2]}", &st);
    assert_int_equal(st, 200);
    json_decref(j);
    j = sci("POST", "/v1/query", "{\"sql\":\"SELECT 1\",\"async\":true,\"async_after_ms\":10}",
            &st);
    assert_int_equal(st, 400);
    json_decref(j);

    /* unknown route: API-shaped 404 */
    j = sci("GET", "/v1/no-such-thing", NULL, &st);
    assert_int_equal(st, 404);
    sci_assert_error(j, 404, "NOT_FOUND");
    json_decref(j);
}

static void test_auth_and_workspaces(void **state)
{
    (void)state;
    long st = 0;
    const char *q = "{\"sql\":\"SELECT 1\"}";
    json_t *j = sci_as(NULL, "ws_test", "POST", "/v1/query", q, &st);
    assert_int_equal(st, 401);
    sci_assert_error(j, 401, "UNAUTHORIZED");
    json_decref(j);
    j = sci_as("tok_wrong", "ws_test", "POST", "/v1/query", q, &st);
    assert_int_equal(st, 401);
    json_decref(j);
    j = sci_as("tok_tes", "ws_test", "POST", "/v1/query", q, &st);
    assert_int_equal(st, 401);
    json_decref(j);
    /* a token limited to ws_test may not use ws_other; unknown workspaces are 404 */
    j = sci_as("tok_test", "ws_other", "POST", "/v1/query", q, &st);
    assert_int_equal(st, 403);
    json_decref(j);
    j = sci_as("tok_test", "ws_nope", "POST", "/v1/query", q, &st);
    assert_int_equal(st, 404);
    sci_assert_error(j, 404, "NOT_FOUND");
    json_decref(j);
    j = sci_as("tok_test", NULL, "POST", "/v1/query", q, &st);
    assert_int_equal(st, 400);
    json_decref(j);
    j = sci_as("tok_other", "ws_other", "POST", "/v1/query", q, &st);
    assert_int_equal(st, 200);
    json_decref(j);
}

static void test_workspace_separation(void **state)
{
    (void)state;
    long st = 0;
    /* a refresh in ws_test changes ws_test only */
    long long before = sci_query_int("SELECT count(*) FROM demo.public.orders");
    json_t *j = sci("POST", "/v1/refresh",
                    "{\"connection_id\":\"conn_demo\",\"schema_name\":\"public\","
                    "\"table_name\":\"orders\",\"data\":true}",
                    &st);
    assert_int_equal(st, 200);
    json_decref(j);
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.orders"), before + 10);
    j = sci_as("tok_other", "ws_other", "POST", "/v1/query",
               "{\"sql\":\"SELECT count(*) FROM demo.public.orders\"}", &st);
    assert_int_equal(st, 200);
    assert_int_equal(
        json_integer_value(json_array_get(json_array_get(json_object_get(j, "rows"), 0), 0)),
        SEED_ROWS);
    json_decref(j);
    /* query runs are per workspace too */
    j = sci_as("tok_other", "ws_other", "GET", "/v1/query-runs?limit=1000", NULL, &st);
    assert_int_equal(st, 200);
    json_t *runs = json_object_get(j, "query_runs");
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        assert_string_not_equal(json_string_value(json_object_get(r, "sql_text")),
                                "SELECT count(*) FROM demo.public.products");
    }
    json_decref(j);
}

/* the results form under test: HG_TEST_RESULTS_NOT_READY=202 is the older one (harness.c) */
static bool results202(void)
{
    const char *v = getenv("HG_TEST_RESULTS_NOT_READY");
    return v && strcmp(v, "202") == 0;
}

/* Poll until ready; *status_seen is set to the HTTP status of a not-ready answer (202 in the
 * older form, 200 with status pending/processing and null data in the reference's). */
static json_t *wait_result_ready(const char *result_id, const char *query, long *status_seen)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/results/%s%s", result_id, query ? query : "");
    for (int i = 0; i < 100; i++) {
        long st = 0;
        json_t *j = sci("GET", path, NULL, &st);
        const char *s = json_string_value(json_object_get(j, "status"));
        if (st == 200 && s && strcmp(s, "ready") == 0)
            return j;
        assert_int_equal(st, results202() ? 202 : 200);
        assert_true(strcmp(s, "pending") == 0 || strcmp(s, "processing") == 0);
        if (results202()) {
            assert_null(json_object_get(j, "rows"));
        } else {
            /* the reference's shape: every field present, data null */
            static const char *const nulls[] = {"columns",   "nullable",      "rows",
                                                "row_count", "error_message", NULL};
            for (int k = 0; nulls[k]; k++) {
                assert_non_null(json_object_get(j, nulls[k]));
                assert_true(json_is_null(json_object_get(j, nulls[k])));
            }
            assert_string_equal(json_string_value(json_object_get(j, "result_id")), result_id);
        }
        if (status_seen)
            *status_seen = st;
        json_decref(j);
        sci_sleep_ms(50);
    }
    fail_msg("result %s never became ready", result_id);
    return NULL;
}

static void test_runs_and_results_lifecycle(void **state)
{
    (void)state;
    const char *sql = "SELECT id, status FROM demo.public.orders ORDER BY id LIMIT 25";
    json_t *q = sci_query_ok(sql);
    char run_id[64], result_id[64];
    snprintf(run_id, sizeof run_id, "%s", json_string_value(json_object_get(q, "query_run_id")));
    snprintf(result_id, sizeof result_id, "%s", json_string_value(json_object_get(q, "result_id")));

    /* the result is persisted in the background: not ready first, then ready, never changing */
    long seen = 0;
    json_t *r = wait_result_ready(result_id, NULL, &seen);
    assert_int_equal(seen, results202() ? 202 : 200);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "ready");
    assert_string_equal(json_string_value(json_object_get(r, "result_id")), result_id);
    assert_true(json_equal(json_object_get(r, "rows"), json_object_get(q, "rows")));
    assert_true(json_equal(json_object_get(r, "columns"), json_object_get(q, "columns")));
    assert_int_equal(json_integer_value(json_object_get(r, "row_count")), 25);
    assert_true(json_is_null(json_object_get(r, "error_message")));
    json_decref(r);

    /* pagination of rows and the total header */
    hresp h;
    char path[256];
    snprintf(path, sizeof path, "/v1/results/%s?offset=20&limit=10", result_id);
    assert_int_equal(sci_raw("tok_test", "ws_test", "GET", path, NULL, NULL, &h), 0);
    assert_int_equal(h.status, 200);
    char *tot = hresp_header(&h, "X-Total-Row-Count");
    assert_non_null(tot);
    assert_string_equal(tot, "25");
    free(tot);
    r = json_loadb(h.body, h.len, 0, NULL);
    hresp_free(&h);
    assert_int_equal(json_array_size(json_object_get(r, "rows")), 5);
    assert_true(json_equal(json_array_get(json_object_get(r, "rows"), 0),
                           json_array_get(json_object_get(q, "rows"), 20)));
    json_decref(r);

    /* the run */
    long st = 0;
    snprintf(path, sizeof path, "/v1/query-runs/%s", run_id);
    r = sci("GET", path, NULL, &st);
    assert_int_equal(st, 200);
    char hash[65], tokhash[65], user[32];
    util_sha256_hex(sql, strlen(sql), hash);
    util_sha256_hex("tok_test", 8, tokhash);
    snprintf(user, sizeof user, "user_%.10s", tokhash);
    assert_string_equal(json_string_value(json_object_get(r, "sql_hash")), hash);
    assert_string_equal(json_string_value(json_object_get(r, "sql_text")), sql);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "succeeded");
    assert_string_equal(json_string_value(json_object_get(r, "result_id")), result_id);
    assert_string_equal(json_string_value(json_object_get(r, "user_public_id")), user);
    assert_true(json_is_string(json_object_get(r, "snapshot_id")));
    assert_true(json_is_string(json_object_get(r, "trace_id")));
    assert_true(json_is_string(json_object_get(r, "created_at")));
    assert_true(json_is_string(json_object_get(r, "completed_at")));
    assert_true(json_is_integer(json_object_get(r, "row_count")));
    assert_true(json_is_integer(json_object_get(r, "server_processing_ms")));
    assert_true(json_is_null(json_object_get(r, "saved_query_id")));
    json_decref(r);
    json_decref(q);

    /* list pagination with cursors: newest first, no overlap */
    json_decref(sci_query_ok("SELECT 1"));
    json_decref(sci_query_ok("SELECT 2"));
    json_decref(sci_query_ok("SELECT 3"));
    json_t *p1 = sci("GET", "/v1/query-runs?limit=2", NULL, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_integer_value(json_object_get(p1, "count")), 2);
    assert_int_equal(json_integer_value(json_object_get(p1, "limit")), 2);
    assert_true(json_is_true(json_object_get(p1, "has_more")));
    const char *cur = json_string_value(json_object_get(p1, "next_cursor"));
    assert_non_null(cur);
    json_t *runs1 = json_object_get(p1, "query_runs");
    assert_string_equal(json_string_value(json_object_get(json_array_get(runs1, 0), "sql_text")),
                        "SELECT 3");
    snprintf(path, sizeof path, "/v1/query-runs?limit=2&cursor=%s", cur);
    json_t *p2 = sci("GET", path, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(p2, "query_runs"), 0), "sql_text")),
                        "SELECT 1");
    json_decref(p1);
    json_decref(p2);
    json_t *f = sci("GET", "/v1/query-runs?status=failed,cancelled", NULL, &st);
    assert_int_equal(st, 200);
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(f, "query_runs"), i, it)
    {
        assert_string_equal(json_string_value(json_object_get(it, "status")), "failed");
    }
    json_decref(f);
    f = sci("GET", "/v1/query-runs?cursor=garbage", NULL, &st);
    assert_int_equal(st, 400);
    json_decref(f);

    /* results list */
    json_t *l = sci("GET", "/v1/results?limit=2&offset=1", NULL, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_integer_value(json_object_get(l, "limit")), 2);
    assert_int_equal(json_integer_value(json_object_get(l, "offset")), 1);
    assert_int_equal(json_integer_value(json_object_get(l, "count")), 2);
    assert_true(json_is_boolean(json_object_get(l, "has_more")));
    json_t *first = json_array_get(json_object_get(l, "results"), 0);
    assert_true(is_prefixed(json_object_get(first, "id"), "res"));
    assert_true(json_is_string(json_object_get(first, "status")));
    json_decref(l);
    /* above the maximum the limit is clamped (issue 14), not refused */
    l = sci("GET", "/v1/results?limit=5000", NULL, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_integer_value(json_object_get(l, "limit")), 1000);
    json_decref(l);
    l = sci("GET", "/v1/results?limit=0", NULL, &st);
    assert_int_equal(st, 400);
    json_decref(l);
}

static void test_not_found(void **state)
{
    (void)state;
    static const char *const paths[] = {"/v1/query-runs/qrun_nope", "/v1/results/res_nope",
                                        "/v1/jobs/job_nope"};
    for (size_t i = 0; i < 3; i++) {
        long st = 0;
        json_t *j = sci("GET", paths[i], NULL, &st);
        assert_int_equal(st, 404);
        sci_assert_error(j, 404, "NOT_FOUND");
        json_decref(j);
    }
}

static json_t *get_run(const char *id)
{
    char path[128];
    long st = 0;
    snprintf(path, sizeof path, "/v1/query-runs/%s", id);
    json_t *j = sci("GET", path, NULL, &st);
    assert_int_equal(st, 200);
    return j;
}

static void test_async_lifecycle(void **state)
{
    (void)state;
    long st = 0;
    json_t *a = sci("POST", "/v1/query",
                    "{\"sql\":\"SELECT count(*) FROM demo.public.customers\",\"async\":true}", &st);
    assert_int_equal(st, 202);
    const char *rid = json_string_value(json_object_get(a, "query_run_id"));
    assert_non_null(rid);
    assert_string_equal(json_string_value(json_object_get(a, "status")), "queued");
    char url[128];
    snprintf(url, sizeof url, "/v1/query-runs/%s", rid);
    assert_string_equal(json_string_value(json_object_get(a, "status_url")), url);
    /* queued -> running -> succeeded, observed in order */
    int saw_queued = 0, saw_running = 0;
    json_t *run = NULL;
    for (int i = 0; i < 200; i++) {
        run = get_run(rid);
        const char *s = json_string_value(json_object_get(run, "status"));
        if (!strcmp(s, "queued")) {
            assert_int_equal(saw_running, 0);
            saw_queued = 1;
        } else if (!strcmp(s, "running")) {
            saw_running = 1;
        } else {
            assert_string_equal(s, "succeeded");
            break;
        }
        json_decref(run);
        run = NULL;
        sci_sleep_ms(40);
    }
    assert_non_null(run);
    assert_true(saw_queued);
    assert_true(saw_running);
    const char *res = json_string_value(json_object_get(run, "result_id"));
    assert_non_null(res);
    json_t *r = wait_result_ready(res, NULL, NULL);
    assert_int_equal(
        json_integer_value(json_array_get(json_array_get(json_object_get(r, "rows"), 0), 0)), 1000);
    json_decref(r);
    json_decref(run);
    json_decref(a);

    /* async_after_ms: finished in time -> 200 with the full result */
    json_t *b = sci("POST", "/v1/query",
                    "{\"sql\":\"SELECT count(*) FROM demo.public.products\",\"async\":true,"
                    "\"async_after_ms\":5000}",
                    &st);
    assert_int_equal(st, 200);
    assert_int_equal(
        json_integer_value(json_array_get(json_array_get(json_object_get(b, "rows"), 0), 0)), 200);
    assert_true(json_is_string(json_object_get(b, "result_id")));
    json_decref(b);

    /* ... not in time -> 202 and the run keeps going */
    json_decref(sci_ctl("POST", "/_sim/faults", "{\"async_delay_ms\":1500}"));
    b = sci("POST", "/v1/query", "{\"sql\":\"SELECT 42\",\"async\":true,\"async_after_ms\":1000}",
            &st);
    assert_int_equal(st, 202);
    char rid2[64];
    snprintf(rid2, sizeof rid2, "%s", json_string_value(json_object_get(b, "query_run_id")));
    json_decref(b);
    json_decref(sci_ctl("POST", "/_sim/faults", "{}"));
    for (int i = 0; i < 200; i++) {
        run = get_run(rid2);
        if (!strcmp(json_string_value(json_object_get(run, "status")), "succeeded"))
            break;
        json_decref(run);
        run = NULL;
        sci_sleep_ms(50);
    }
    assert_non_null(run);
    json_decref(run);

    /* an async query that fails: run failed, result failed -> 409 */
    b = sci("POST", "/v1/query", "{\"sql\":\"SELECT nope FROM demo.public.orders\",\"async\":true}",
            &st);
    assert_int_equal(st, 202);
    snprintf(rid2, sizeof rid2, "%s", json_string_value(json_object_get(b, "query_run_id")));
    json_decref(b);
    for (int i = 0; i < 200; i++) {
        run = get_run(rid2);
        if (!strcmp(json_string_value(json_object_get(run, "status")), "failed"))
            break;
        json_decref(run);
        run = NULL;
        sci_sleep_ms(50);
    }
    assert_non_null(run);
    assert_true(json_is_string(json_object_get(run, "error_message")));
    char path[128];
    snprintf(path, sizeof path, "/v1/results/%s",
             json_string_value(json_object_get(run, "result_id")));
    json_t *fr = NULL;
    for (int i = 0; i < 100; i++) { /* past pending/processing */
        json_decref(fr);
        fr = sci("GET", path, NULL, &st);
        const char *s = json_string_value(json_object_get(fr, "status"));
        if (st == 409 || (st == 200 && s && strcmp(s, "failed") == 0))
            break;
        sci_sleep_ms(50);
    }
    if (results202()) {
        assert_int_equal(st, 409);
        sci_assert_error(fr, 409, "CONFLICT");
    } else {
        /* the reference's form: 200, status failed, the error message, null data */
        assert_int_equal(st, 200);
        assert_string_equal(json_string_value(json_object_get(fr, "status")), "failed");
        assert_true(json_is_string(json_object_get(fr, "error_message")));
        assert_true(json_is_null(json_object_get(fr, "rows")));
    }
    json_decref(fr);
    json_decref(run);
}

static json_t *wait_job(const char *id, const char *terminal, int *saw_pending, int *saw_running)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    for (int i = 0; i < 200; i++) {
        long st = 0;
        json_t *j = sci("GET", path, NULL, &st);
        assert_int_equal(st, 200);
        const char *s = json_string_value(json_object_get(j, "status"));
        if (!strcmp(s, "pending"))
            *saw_pending = 1;
        else if (!strcmp(s, "running"))
            *saw_running = 1;
        else if (!strcmp(s, terminal))
            return j;
        else
            fail_msg("unexpected job status %s", s);
        json_decref(j);
        sci_sleep_ms(40);
    }
    fail_msg("job %s did not finish", id);
    return NULL;
}

static void test_refresh_and_jobs(void **state)
{
    (void)state;
    long st = 0;
    long long n0 = sci_query_int("SELECT count(*) FROM demo.public.orders");
    char *s0 = sci_query_str("SELECT max(synced_at) FROM demo.public.orders");
    sci_sleep_ms(5);
    json_t *j = sci("POST", "/v1/refresh",
                    "{\"connection_id\":\"conn_demo\",\"schema_name\":\"public\","
                    "\"table_name\":\"orders\",\"data\":true}",
                    &st);
    assert_int_equal(st, 200);
    /* the API's TableRefreshResult (issue 14; was null); test_sim_shapes checks every field */
    assert_int_equal(sci_json_int(j, "rows_synced", NULL), n0 + 10);
    json_decref(j);
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.orders"), n0 + 10);
    char *s1 = sci_query_str("SELECT max(synced_at) FROM demo.public.orders");
    assert_true(strcmp(s1, s0) > 0);
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.orders WHERE synced_at = "
                                   "(SELECT max(synced_at) FROM demo.public.orders)"),
                     n0 + 10);

    /* async whole-connection refresh: a job with real transitions, then changed data */
    j = sci("POST", "/v1/refresh", "{\"connection_id\":\"conn_demo\",\"data\":true,\"async\":true}",
            &st);
    assert_int_equal(st, 202);
    assert_string_equal(json_string_value(json_object_get(j, "job_type")),
                        "data_refresh_connection");
    assert_string_equal(json_string_value(json_object_get(j, "status")), "pending");
    char id[64];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(j, "id")));
    assert_true(strncmp(id, "job", 3) == 0);
    json_decref(j);
    int sp = 0, sr = 0;
    json_t *job = wait_job(id, "succeeded", &sp, &sr);
    assert_true(sp);
    assert_true(sr);
    assert_true(json_is_integer(json_object_get(job, "attempts")));
    assert_int_equal(json_integer_value(json_object_get(job, "attempts")), 1);
    assert_true(json_is_string(json_object_get(job, "completed_at")));
    assert_true(json_is_string(json_object_get(job, "created_at")));
    assert_true(json_is_null(json_object_get(job, "error_message")));
    assert_int_equal(sci_json_int(json_object_get(job, "result"), "tables_refreshed", NULL), 3);
    json_decref(job);
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.orders"), n0 + 20);
    assert_int_equal(sci_query_int("SELECT count(*) FROM demo.public.customers"), 1001);
    char *s2 = sci_query_str("SELECT max(synced_at) FROM demo.public.products");
    assert_true(strcmp(s2, s0) > 0);

    /* jobs list with filters */
    j = sci("GET", "/v1/jobs?job_type=data_refresh_connection&status=succeeded,failed", NULL, &st);
    assert_int_equal(st, 200);
    json_t *jobs = json_object_get(j, "jobs");
    assert_true(json_array_size(jobs) >= 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(jobs, 0), "id")), id);
    json_decref(j);
    j = sci("GET", "/v1/jobs?status=running", NULL, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(json_object_get(j, "jobs")), 0);
    json_decref(j);

    /* schema refresh answers a SchemaRefreshResult; invalid requests */
    j = sci("POST", "/v1/refresh", "{\"connection_id\":\"conn_demo\"}", &st);
    assert_int_equal(st, 200);
    json_decref(j);
    j = sci("POST", "/v1/refresh", "{\"data\":true}", &st);
    assert_int_equal(st, 400);
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
    j = sci("POST", "/v1/refresh", "{\"connection_id\":\"conn_nope\",\"data\":true}", &st);
    assert_int_equal(st, 404);
    sci_assert_error(j, 404, "NOT_FOUND");
    json_decref(j);
    j = sci("POST", "/v1/refresh", "{\"connection_id\":\"conn_demo\",\"async\":true}", &st);
    assert_int_equal(st, 400);
    json_decref(j);
    j = sci("POST", "/v1/refresh",
            "{\"connection_id\":\"conn_demo\",\"schema_name\":\"public\",\"table_name\":"
            "\"nope\",\"data\":true}",
            &st);
    assert_int_equal(st, 404);
    json_decref(j);
    free(s0);
    free(s1);
    free(s2);
}

static void test_result_arrow(void **state)
{
    (void)state;
    json_t *q = sci_query_ok("SELECT id, amount, status, note FROM demo.public.orders ORDER BY id "
                             "LIMIT 10");
    char rid[64];
    snprintf(rid, sizeof rid, "%s", json_string_value(json_object_get(q, "result_id")));
    json_decref(q);
    json_decref(wait_result_ready(rid, NULL, NULL));
    char path[128];
    for (int variant = 0; variant < 2; variant++) {
        hresp h;
        if (variant == 0) {
            snprintf(path, sizeof path, "/v1/results/%s?format=arrow", rid);
            assert_int_equal(sci_raw("tok_test", "ws_test", "GET", path, NULL, NULL, &h), 0);
        } else {
            snprintf(path, sizeof path, "/v1/results/%s", rid);
            assert_int_equal(sci_raw("tok_test", "ws_test", "GET", path, NULL,
                                     "Accept: application/vnd.apache.arrow.stream", &h),
                             0);
        }
        assert_int_equal(h.status, 200);
        char *ct = hresp_header(&h, "Content-Type");
        assert_non_null(ct);
        assert_string_equal(ct, "application/vnd.apache.arrow.stream");
        free(ct);
        /* an IPC stream: continuation marker, then a Schema message; ends with EOS */
        assert_true(h.len > 16);
        static const unsigned char cont[4] = {0xff, 0xff, 0xff, 0xff};
        assert_memory_equal(h.body, cont, 4);
        static const unsigned char eos[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
        assert_memory_equal(h.body + h.len - 8, eos, 8);
        assert_non_null(memmem(h.body, h.len, "amount", 6));
        hresp_free(&h);
    }
}

/* Reals are written as the live service writes them: shortest round-trip text, still reals. */
static void test_real_text(void **state)
{
    (void)state;
    hresp r;
    const char *q = "{\"sql\":\"SELECT round(6357564.639999, 2) AS a, 2.0 AS b, 0.1 + 0.2 AS c,"
                    " 1.0 / 3 AS d\"}";
    assert_int_equal(sci_raw("tok_test", "ws_test", "POST", "/v1/query", q, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "[[6357564.64,2.0,0.30000000000000004,0.3333333333333333]]"));
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    char path[256];
    snprintf(path, sizeof path, "/v1/results/%s",
             json_string_value(json_object_get(j, "result_id")));
    json_decref(j);
    hresp_free(&r);
    /* the stored result reads back the same */
    for (int i = 0; i < 100; i++) {
        assert_int_equal(sci_raw("tok_test", "ws_test", "GET", path, NULL, NULL, &r), 0);
        if (r.status == 200 && strstr(r.body, "\"status\":\"ready\""))
            break;
        hresp_free(&r);
        sci_sleep_ms(20);
    }
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "[[6357564.64,2.0,0.30000000000000004,0.3333333333333333]]"));
    hresp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_success_shape),
        cmocka_unit_test(test_query_errors),
        cmocka_unit_test(test_auth_and_workspaces),
        cmocka_unit_test(test_workspace_separation),
        cmocka_unit_test(test_runs_and_results_lifecycle),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_async_lifecycle),
        cmocka_unit_test(test_refresh_and_jobs),
        cmocka_unit_test(test_result_arrow),
        cmocka_unit_test(test_real_text),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
