/*
 * test_cache_coalesce: request coalescing through the real hotgate and hotdata-sim.
 *   - 500 concurrent identical cold queries with the sim at 200 ms latency: exactly one
 *     upstream execution (sim /_sim/stats per sql_hash), every client gets the same
 *     answer, and no waiter waits longer than the upstream latency + 50 ms after its
 *     request went out;
 *   - polling: many clients polling the same non-terminal query run cost at most one
 *     upstream call per poll window;
 *   - the leader's failure (an injected 500, the upstream gone) reaches every waiter as
 *     that failure, not a hang;
 *   - a waiter whose client disconnects leaves without disturbing the others.
 * Concurrency comes from one libcurl multi handle (one connection per transfer).
 */
#include "cache_it.h"
#include "xfer_it.h"

#include <pthread.h>

static cit_env E;

static int setup(void **state)
{
    (void)state;
    return cit_start(&E, "cache-coalesce",
                     "ttl_query = 300s\nttl_metadata = 60s\npoll_window_ms = 250\n"
                     "stale_while_revalidate = 0\nstale_if_error = 0\n",
                     NULL);
}

static int teardown(void **state)
{
    (void)state;
    cit_stop(&E);
    return 0;
}

/* the first g_short_n transfers of run_many give up after g_short_ms (client disconnects) */
static int g_short_n;
static long g_short_ms;

/* Run n identical requests at once; fills xs[n]. body NULL = GET. timeout_ms per transfer. */
static void run_many(xfer *xs, int n, const char *method, const char *path, const char *body,
                     long timeout_ms)
{
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
    char url[1024];
    snprintf(url, sizeof url, "%s%s", E.base, path);
    for (int i = 0; i < n; i++) {
        xfer *x = &xs[i];
        memset(x, 0, sizeof *x);
        x->h = curl_easy_init();
        x->hl = curl_slist_append(NULL, "Authorization: Bearer " CIT_KEY_A);
        x->hl = curl_slist_append(x->hl, "Expect:");
        if (body)
            x->hl = curl_slist_append(x->hl, "Content-Type: application/json");
        curl_easy_setopt(x->h, CURLOPT_URL, url);
        curl_easy_setopt(x->h, CURLOPT_CUSTOMREQUEST, method);
        if (body)
            curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, x->hl);
        curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, x_write);
        curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(x->h, CURLOPT_HEADERFUNCTION, x_header);
        curl_easy_setopt(x->h, CURLOPT_HEADERDATA, x);
        curl_easy_setopt(x->h, CURLOPT_TIMEOUT_MS, i < g_short_n ? g_short_ms : timeout_ms);
        curl_easy_setopt(x->h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(x->h, CURLOPT_FORBID_REUSE, 1L);
        curl_easy_setopt(x->h, CURLOPT_PRIVATE, x);
        curl_multi_add_handle(m, x->h);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left))) {
        xfer *x;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &x->status);
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRETRANSFER_TIME, &x->pretransfer);
        curl_easy_getinfo(msg->easy_handle, CURLINFO_STARTTRANSFER_TIME, &x->starttransfer);
        curl_easy_getinfo(msg->easy_handle, CURLINFO_TOTAL_TIME, &x->total);
        if (msg->data.result != CURLE_OK)
            x->status = -(long)msg->data.result;
    }
    for (int i = 0; i < n; i++) {
        curl_multi_remove_handle(m, xs[i].h);
        curl_easy_cleanup(xs[i].h);
        curl_slist_free_all(xs[i].hl);
    }
    curl_multi_cleanup(m);
}

static void free_many(xfer *xs, int n)
{
    for (int i = 0; i < n; i++)
        free(xs[i].body);
}

static void test_500_identical_cold_queries(void **state)
{
    (void)state;
    const int N = 500;
    const char *sql = "SELECT id, customer_id, status FROM demo.public.orders WHERE id = 4242";
    assert_int_equal(cit_sim_faults(&E, "{\"latency_ms\":200}"), 0);
    char *body = cit_query_body(sql);
    xfer *xs = calloc((size_t)N, sizeof *xs);
    run_many(xs, N, "POST", "/v1/query", body, 10000);
    int ok = 0, miss = 0, coalesced = 0, hit = 0, same = 0;
    double worst_wait = 0, leader_wait = 0;
    for (int i = 0; i < N; i++) {
        if (xs[i].status == 200)
            ok++;
        if (strcmp(xs[i].xcache, "MISS") == 0) {
            miss++;
            leader_wait = xs[i].starttransfer - xs[i].pretransfer;
        } else if (strcmp(xs[i].xcache, "COALESCED") == 0)
            coalesced++;
        else if (strcmp(xs[i].xcache, "HIT") == 0)
            hit++;
        if (xs[i].len == xs[0].len && memcmp(xs[i].body, xs[0].body, xs[0].len) == 0)
            same++;
        double wait = xs[i].starttransfer - xs[i].pretransfer;
        if (wait > worst_wait)
            worst_wait = wait;
    }
    long long execs = cit_sim_sql_count(&E, sql);
    fprintf(stderr,
            "  500 cold: ok=%d miss=%d coalesced=%d hit=%d same=%d upstream=%lld "
            "leader's upstream wait=%.0f ms, worst wait after send=%.0f ms\n",
            ok, miss, coalesced, hit, same, execs, leader_wait * 1000, worst_wait * 1000);
    assert_int_equal(ok, N);
    assert_int_equal(same, N);
    assert_int_equal(miss, 1);
    assert_int_equal(miss + coalesced + hit, N);
    assert_int_equal(execs, 1);
    /* The upstream latency is the leader's time (200 ms injected + the query itself). On
     * the server side (hotgate's access log: head parsed -> answer queued) no waiter takes
     * longer than the leader + 50 ms; the client-side times above also hold the test
     * client's own handling of 500 sockets, so they only get a loose bound. */
    cit_sleep_ms(300); /* access log lines are flushed every 100 ms */
    long long leader_us = 0, worst_us = 0;
    char lp[700];
    snprintf(lp, sizeof lp, "%s/access.log", E.dir);
    FILE *lf = fopen(lp, "r");
    assert_non_null(lf);
    char line[4096], want[80];
    char hash[65];
    util_sha256_hex(sql, strlen(sql), hash);
    snprintf(want, sizeof want, "\"sql_hash\":\"%s\"", hash);
    while (fgets(line, sizeof line, lf)) {
        if (!strstr(line, want))
            continue;
        const char *l = strstr(line, "\"latency_us\":");
        long long us = l ? atoll(l + 13) : 0;
        if (strstr(line, "\"cache\":\"miss\""))
            leader_us = us;
        else if (strstr(line, "\"cache\":\"coalesced\"") && us > worst_us)
            worst_us = us;
    }
    fclose(lf);
    fprintf(stderr, "  server side: leader %lld ms, slowest waiter %lld ms\n", leader_us / 1000,
            worst_us / 1000);
    assert_true(leader_wait >= 0.200);
    assert_true(leader_us >= 200000);
    assert_true(worst_us <= leader_us + 50000);
    assert_true(worst_wait <= leader_wait + 0.250);
    free_many(xs, N);
    free(xs);
    free(body);
    assert_int_equal(cit_sim_faults(&E, "{}"), 0);
}

/* Many clients poll the same non-terminal query run: <= 1 upstream call per poll window. */
static void test_polling_coalesced(void **state)
{
    (void)state;
    /* an async query that stays running for a while */
    assert_int_equal(cit_sim_faults(&E, "{\"async_delay_ms\":3000}"), 0);
    hresp r;
    char *body = NULL;
    if (asprintf(&body, "{\"sql\":\"SELECT count(*) FROM demo.public.orders\",\"async\":true}") < 0)
        abort();
    assert_int_equal(cit_req(&E, CIT_KEY_A, "POST", "/v1/query", body, NULL, NULL, &r), 0);
    free(body);
    assert_int_equal(r.status, 202);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "query_run_id"));
    assert_non_null(id);
    char path[256];
    snprintf(path, sizeof path, "/v1/query-runs/%s", id);
    json_decref(j);
    hresp_free(&r);
    long long before = cit_sim_route_count(&E, "GET /v1/query-runs/{id}");
    double t0 = cit_now();
    int polls = 0;
    while (cit_now() - t0 < 1.0) {
        xfer xs[20];
        run_many(xs, 20, "GET", path, NULL, 5000);
        for (int i = 0; i < 20; i++) {
            assert_int_equal(xs[i].status, 200);
            assert_non_null(strstr(xs[i].body, "\"status\""));
        }
        free_many(xs, 20);
        polls += 20;
        cit_sleep_ms(20);
    }
    double dt = cit_now() - t0;
    long long upstream = cit_sim_route_count(&E, "GET /v1/query-runs/{id}") - before;
    long long allowed = (long long)(dt / 0.250) + 2;
    fprintf(stderr, "  polling: %d polls in %.2f s -> %lld upstream (allowed %lld)\n", polls, dt,
            upstream, allowed);
    assert_true(upstream >= 1);
    assert_true(upstream <= allowed);
    assert_int_equal(cit_sim_faults(&E, "{}"), 0);
}

/* The leader's failure is every waiter's failure: same status, no hang. */
static void test_leader_failure_reaches_waiters(void **state)
{
    (void)state;
    const int N = 50;
    const char *sql = "SELECT max(id) AS m FROM demo.public.orders";
    assert_int_equal(cit_sim_faults(&E, "{\"routes\":{\"POST /v1/query\":{\"latency_ms\":200,"
                                        "\"error_rate\":1.0,\"error_status\":500}}}"),
                     0);
    char *body = cit_query_body(sql);
    xfer *xs = calloc((size_t)N, sizeof *xs);
    double t0 = cit_now();
    run_many(xs, N, "POST", "/v1/query", body, 10000);
    double dt = cit_now() - t0;
    int five = 0;
    for (int i = 0; i < N; i++)
        five += xs[i].status == 500;
    fprintf(stderr, "  leader failure: %d/%d got 500 in %.0f ms\n", five, N, dt * 1000);
    assert_int_equal(five, N);
    assert_true(dt < 3.0);
    free_many(xs, N);

    /* the upstream holds the request, then closes without answering: one upstream call,
     * every waiter gets the leader's 502 when the leader does */
    assert_int_equal(cit_sim_faults(&E, "{\"routes\":{\"POST /v1/query\":{\"stall_ms\":300}}}"), 0);
    long long r0 = cit_sim_route_count(&E, "POST /v1/query");
    t0 = cit_now();
    run_many(xs, N, "POST", "/v1/query", body, 10000);
    dt = cit_now() - t0;
    int gw = 0;
    for (int i = 0; i < N; i++)
        gw += xs[i].status == 502;
    long long calls = cit_sim_route_count(&E, "POST /v1/query") - r0;
    fprintf(stderr,
            "  upstream stalls then closes: %d/%d got 502 in %.0f ms, %lld upstream call(s)\n", gw,
            N, dt * 1000, calls);
    assert_int_equal(gw, N);
    /* 1 fetch; libcurl itself may resend once a request whose reused connection closed
     * without any answer byte (it cannot tell that from a stale keep-alive connection) */
    assert_true(calls >= 1 && calls <= 2);
    assert_true(dt < 3.0);
    free_many(xs, N);
    assert_int_equal(cit_sim_faults(&E, "{}"), 0);

    /* upstream gone entirely: waiters get the 502 too, at once */
    int simport = E.sim.port;
    (void)simport;
    harness_stop(&E.sim, 3000);
    t0 = cit_now();
    run_many(xs, N, "POST", "/v1/query", body, 10000);
    dt = cit_now() - t0;
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += xs[i].status == 502 || xs[i].status == 504;
    fprintf(stderr, "  upstream down: %d/%d got 502/504 in %.0f ms\n", bad, N, dt * 1000);
    assert_int_equal(bad, N);
    assert_true(dt < 6.0);
    free_many(xs, N);
    free(xs);
    free(body);
}

struct leader_arg {
    const char *body;
    hresp r;
};

static void *leader_thread(void *p)
{
    struct leader_arg *a = p;
    cit_req(&E, CIT_KEY_A, "POST", "/v1/query", a->body, NULL, NULL, &a->r);
    return NULL;
}

/* Waiters whose clients give up leave; the leader and the other waiters are undisturbed. */
static void test_waiter_disconnect(void **state)
{
    (void)state;
    const char *sql = "SELECT min(id) AS lo FROM demo.public.orders WHERE id > 17";
    assert_int_equal(cit_sim_faults(&E, "{\"latency_ms\":400}"), 0);
    char *body = cit_query_body(sql);
    struct leader_arg la = {body, {0}};
    pthread_t t;
    pthread_create(&t, NULL, leader_thread, &la);
    cit_sleep_ms(100); /* the leader's fetch is in flight */
    const int N = 60;
    xfer *xs = calloc((size_t)N, sizeof *xs);
    g_short_n = 30;
    g_short_ms = 100;
    run_many(xs, N, "POST", "/v1/query", body, 10000);
    g_short_n = 0;
    pthread_join(t, NULL);
    int gave_up = 0, ok = 0;
    for (int i = 0; i < N; i++) {
        if (i < 30)
            gave_up += xs[i].status < 0;
        else
            ok += xs[i].status == 200 && xs[i].len == la.r.len &&
                  memcmp(xs[i].body, la.r.body, la.r.len) == 0;
    }
    fprintf(stderr, "  disconnecting waiters: %d gave up, %d/30 others got the leader's answer\n",
            gave_up, ok);
    assert_int_equal(la.r.status, 200);
    assert_int_equal(gave_up, 30);
    assert_int_equal(ok, 30);
    assert_int_equal(cit_sim_sql_count(&E, sql), 1);
    free_many(xs, N);
    free(xs);
    hresp_free(&la.r);
    free(body);
    assert_int_equal(cit_sim_faults(&E, "{}"), 0);
    /* hotgate is still healthy */
    hresp r;
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "HIT");
    hresp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_500_identical_cold_queries),
        cmocka_unit_test(test_polling_coalesced),
        cmocka_unit_test(test_waiter_disconnect),
        cmocka_unit_test(test_leader_failure_reaches_waiters),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
