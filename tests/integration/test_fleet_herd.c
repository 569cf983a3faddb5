/*
 * test_fleet_herd: cross-instance coalescing with three hotgate instances, one redis-server,
 * one hotdata-sim.
 *   - 90 concurrent identical cold queries spread over the three instances (30 each) with the
 *     sim slow: exactly one upstream query, every client answered 200 with the same rows;
 *   - the lease holder killed with kill -9 in the middle of its fetch: the other instances,
 *     parked on its lease, answer after the lease expired (one of them takes it over, the
 *     other waits for that one): two upstream queries in all, no client error.
 * Concurrency: one libcurl multi handle, one connection per transfer.
 */
#include "fleet_it.h"
#include "xfer_it.h"

#include <pthread.h>

static fit_env F;

static int setup(void **state)
{
    (void)state;
    /* op_timeout 1 s: a loaded test machine must not turn Redis round trips into fallbacks
     * (which would be correct, but add upstream queries this test counts) */
    return fit_start(&F, "fleet-herd", "ttl_query = 120s\n", "op_timeout = 1s\n", "timeout = 6") ==
                       0 &&
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

/* n POST /v1/query transfers at once; transfer i goes to instance inst[i]. */
static void run_many(xfer *xs, int n, const int *inst, const char *body)
{
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
    for (int i = 0; i < n; i++) {
        xfer *x = &xs[i];
        memset(x, 0, sizeof *x);
        char url[256];
        snprintf(url, sizeof url, "%s/v1/query", F.g[inst[i]].base);
        x->h = curl_easy_init();
        x->hl = curl_slist_append(NULL, "Authorization: Bearer " CIT_KEY_A);
        x->hl = curl_slist_append(x->hl, "Expect:");
        x->hl = curl_slist_append(x->hl, "Content-Type: application/json");
        curl_easy_setopt(x->h, CURLOPT_URL, url);
        curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, x->hl);
        curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, x_write);
        curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(x->h, CURLOPT_HEADERFUNCTION, x_header);
        curl_easy_setopt(x->h, CURLOPT_HEADERDATA, x);
        curl_easy_setopt(x->h, CURLOPT_TIMEOUT_MS, 60000L);
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

/* The rows of an answer (the run/result ids differ between fetches, the rows must not). */
static char *rows_of(const char *body)
{
    json_t *j = json_loads(body, 0, NULL);
    if (!j)
        return strdup("(unparsable)");
    char *s = json_dumps(json_object_get(j, "rows"), JSON_COMPACT);
    json_decref(j);
    return s ? s : strdup("(none)");
}

static void test_90_identical_cold_queries_over_three(void **state)
{
    (void)state;
    const int N = 90;
    const char *sql = "SELECT id, customer_id, status FROM demo.public.orders WHERE id = 777";
    assert_int_equal(
        cit_sim_faults(&F.g[0], "{\"routes\":{\"POST /v1/query\":{\"latency_ms\":400}}}"), 0);
    char *body = cit_query_body(sql);
    xfer *xs = calloc((size_t)N, sizeof *xs);
    int *inst = calloc((size_t)N, sizeof *inst);
    for (int i = 0; i < N; i++)
        inst[i] = i % FIT_N;
    run_many(xs, N, inst, body);
    int hits = 0, misses = 0, coalesced = 0;
    char *rows0 = NULL;
    for (int i = 0; i < N; i++) {
        if (xs[i].status != 200)
            fprintf(stderr, "transfer %d (instance %d): %ld %s\n", i, inst[i], xs[i].status,
                    xs[i].body ? xs[i].body : "");
        assert_int_equal(xs[i].status, 200);
        char *rows = rows_of(xs[i].body);
        if (!rows0)
            rows0 = strdup(rows);
        assert_string_equal(rows, rows0);
        free(rows);
        hits += !strcmp(xs[i].xcache, "HIT");
        misses += !strcmp(xs[i].xcache, "MISS");
        coalesced += !strcmp(xs[i].xcache, "COALESCED");
        free(xs[i].body);
    }
    fprintf(stderr, "  90 over 3 instances: %d MISS, %d HIT (L2), %d COALESCED\n", misses, hits,
            coalesced);
    assert_int_equal(cit_sim_sql_count(&F.g[0], sql), 1);
    assert_int_equal(misses, 1);
    assert_int_equal(hits + misses + coalesced, N);
    free(rows0);
    free(xs);
    free(inst);
    free(body);
    assert_int_equal(cit_sim_faults(&F.g[0], "{}"), 0);
}

/* one request through instance 0 in a thread (its client sees an error: instance 0 dies) */
typedef struct bg {
    const char *sql;
    hresp r;
    int rc;
} bg;

static void *bg_query(void *arg)
{
    bg *b = arg;
    b->rc = cit_query(&F.g[0], CIT_KEY_A, b->sql, NULL, &b->r);
    return NULL;
}

static long long lease_keys(void)
{
    char *k = harness_redis(F.redis.port, "EVAL %s 0", "return #redis.call('KEYS', 'hgt:{*}l')");
    long long n = k ? strtoll(k, NULL, 10) : 0;
    free(k);
    return n;
}

typedef struct many_arg {
    xfer *xs;
    int n;
    const int *inst;
    const char *body;
} many_arg;

static void *bg_many(void *arg)
{
    many_arg *a = arg;
    run_many(a->xs, a->n, a->inst, a->body);
    return NULL;
}

static void test_lease_holder_killed(void **state)
{
    (void)state;
    const char *sql = "SELECT id, status FROM demo.public.orders WHERE id = 4711";
    /* the fetch takes 3 s; upstream timeout 6 s -> the lease lives 7 s */
    assert_int_equal(
        cit_sim_faults(&F.g[0], "{\"routes\":{\"POST /v1/query\":{\"latency_ms\":3000}}}"), 0);
    double waits1 = cit_metric(&F.g[1], "hotgate_fleet_lease_waits_total");
    double waits2 = cit_metric(&F.g[2], "hotgate_fleet_lease_waits_total");
    /* static: a failed assertion must not leave the threads writing into a dead stack */
    static bg b;
    memset(&b, 0, sizeof b);
    b.sql = sql;
    pthread_t t;
    pthread_create(&t, NULL, bg_query, &b);
    /* instance 0 holds the lease (the only one in flight) */
    int seen = 0;
    for (int i = 0; i < 500 && !seen; i++) {
        seen = lease_keys() == 1;
        if (!seen)
            cit_sleep_ms(10);
    }
    assert_true(seen);
    /* instances 1 and 2 ask: they park on the lease */
    char *body = cit_query_body(sql);
    static xfer xs[2];
    static int inst[2] = {1, 2};
    static many_arg ma;
    ma = (many_arg){xs, 2, inst, body};
    pthread_t t2;
    pthread_create(&t2, NULL, bg_many, &ma);
    assert_int_equal(fit_wait_metric(&F, 1, "hotgate_fleet_lease_waits_total", waits1 + 1, 10000),
                     0);
    assert_int_equal(fit_wait_metric(&F, 2, "hotgate_fleet_lease_waits_total", waits2 + 1, 10000),
                     0);
    /* the holder dies mid-fetch */
    kill(F.g[0].hg.pid, SIGKILL);
    pthread_join(t, NULL);
    harness_stop(&F.g[0].hg, 100);
    hresp_free(&b.r);
    pthread_join(t2, NULL);
    for (int i = 0; i < 2; i++) {
        if (xs[i].status != 200)
            fprintf(stderr, "instance %d: %ld %s\n", inst[i], xs[i].status,
                    xs[i].body ? xs[i].body : "");
        assert_int_equal(xs[i].status, 200);
        free(xs[i].body);
    }
    /* the dead leader's query and one takeover */
    assert_int_equal(cit_sim_sql_count(&F.g[1], sql), 2);
    double takeovers = cit_metric(&F.g[1], "hotgate_fleet_lease_takeovers_total") +
                       cit_metric(&F.g[2], "hotgate_fleet_lease_takeovers_total");
    assert_true(takeovers >= 1);
    free(body);
    assert_int_equal(cit_sim_faults(&F.g[1], "{}"), 0);
    assert_int_equal(cit_start_hg(&F.g[0]), 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_90_identical_cold_queries_over_three),
        cmocka_unit_test(test_lease_holder_killed),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
