/*
 * test_fleet_failure: Redis trouble never fails a client request (three hotgate instances,
 * one redis-server, one hotdata-sim, a load of queries on every instance throughout).
 *   - Redis killed (kill -9) and restarted on the same port mid-load: zero failed requests; a
 *     data refresh made through one instance while Redis is down is visible through that
 *     instance at once, and through the others once Redis is back (its queued invalidation is
 *     published, and the others drop what they may have missed): no stale answer after it
 *     returns; /admin/redis and the metrics show the outage and the recovery;
 *   - Redis stalled (DEBUG SLEEP) mid-load: zero failed requests, the circuit opens.
 */
#include "fleet_it.h"

#include <pthread.h>
#include <stdatomic.h>

static fit_env F;
static const char *const LOAD_SQL[] = {
    "SELECT id, status FROM demo.public.orders WHERE id = 11",
    "SELECT id, status FROM demo.public.orders WHERE id = 12",
    "SELECT id, status FROM demo.public.orders WHERE id = 13",
    "SELECT count(*) AS n FROM demo.public.orders WHERE status = 'shipped'",
};
#define NLOAD (sizeof LOAD_SQL / sizeof *LOAD_SQL)

static int setup(void **state)
{
    (void)state;
    /* the upstream timeout is generous: a data refresh of the demo connection rewrites every
     * row of its PostgreSQL tables (0.2-0.7 s on a quiet machine), and under a loaded CI box
     * with this test's own load it passed the default 5 s (504), which is not what this test
     * is about */
    return fit_start(&F, "fleet-fail", "ttl_query = 2s\n", "op_timeout = 100ms\n",
                     "timeout = 30") == 0 &&
                   fit_wait_attached(&F, 10000) == 0
               ? 0
               : -1;
}

static void load_stop_all(void);

static int teardown(void **state)
{
    (void)state;
    load_stop_all();
    fit_stop(&F);
    return 0;
}

/* ---- load: one thread per instance, queries in a loop until stopped ---- */

typedef struct load {
    int inst;
    atomic_int *stop;
    long ok, failed;
} load;

static void *load_main(void *arg)
{
    load *l = arg;
    for (unsigned i = 0; !atomic_load(l->stop); i++) {
        hresp r;
        int rc = cit_query(&F.g[l->inst], CIT_KEY_A, LOAD_SQL[i % NLOAD], NULL, &r);
        if (rc == 0 && r.status == 200) {
            l->ok++;
        } else {
            l->failed++;
            fprintf(stderr, "load on instance %d: rc %d status %ld %s\n", l->inst, rc,
                    rc == 0 ? r.status : 0L, rc == 0 && r.body ? r.body : "");
        }
        if (rc == 0)
            hresp_free(&r);
    }
    return NULL;
}

typedef struct loadset {
    atomic_int stop;
    int running;
    load l[FIT_N];
    pthread_t t[FIT_N];
} loadset;

/* static, not on a test's stack: a failed assertion leaves the test function while the load
 * threads still run; teardown stops them */
static loadset ls;

static void load_start(loadset *s)
{
    atomic_store(&s->stop, 0);
    s->running = 1;
    for (int i = 0; i < FIT_N; i++) {
        s->l[i] = (load){.inst = i, .stop = &s->stop};
        pthread_create(&s->t[i], NULL, load_main, &s->l[i]);
    }
}

static void load_stop(loadset *s, long *ok, long *failed)
{
    atomic_store(&s->stop, 1);
    *ok = *failed = 0;
    if (!s->running)
        return;
    s->running = 0;
    for (int i = 0; i < FIT_N; i++) {
        pthread_join(s->t[i], NULL);
        *ok += s->l[i].ok;
        *failed += s->l[i].failed;
    }
}

static void load_stop_all(void)
{
    long ok, failed;
    load_stop(&ls, &ok, &failed);
}

static char *query_body(int i, const char *sql)
{
    hresp r;
    assert_int_equal(cit_query(&F.g[i], CIT_KEY_A, sql, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    char *rows = j ? json_dumps(json_object_get(j, "rows"), JSON_COMPACT) : NULL;
    json_decref(j);
    hresp_free(&r);
    return rows ? rows : strdup("(none)");
}

static const char *admin_redis_status(int i)
{
    static char st[32];
    hresp r;
    st[0] = '\0';
    if (cit_admin_get(&F.g[i], "/admin/redis", &r) == 0) {
        json_t *j = json_loadb(r.body, r.len, 0, NULL);
        snprintf(st, sizeof st, "%s", json_string_value(json_object_get(j, "status")));
        json_decref(j);
        hresp_free(&r);
    }
    return st;
}

static void test_redis_killed_and_restarted(void **state)
{
    (void)state;
    const char *sql = "SELECT count(*) AS n, max(id) AS m FROM demo.public.orders";
    /* every instance holds the answer (L1) */
    char *old = query_body(0, sql);
    for (int i = 1; i < FIT_N; i++)
        free(query_body(i, sql));
    load_start(&ls);
    cit_sleep_ms(300);
    int port = F.redis.port;
    kill(F.redis.pid, SIGKILL);
    harness_stop(&F.redis, 100);
    for (int i = 0; i < FIT_N; i++) {
        for (int t = 0; t < 400 && cit_metric(&F.g[i], "hotgate_redis_connections_up") != 0; t++)
            cit_sleep_ms(25);
        assert_int_equal(cit_metric(&F.g[i], "hotgate_redis_connections_up"), 0);
    }
    for (int t = 0; t < 200 && strcmp(admin_redis_status(0), "down"); t++)
        cit_sleep_ms(50);
    assert_string_equal(admin_redis_status(0), "down");
    cit_sleep_ms(300); /* load runs on L1 and the upstream alone */
    /* a refresh through instance 0 while Redis is down: instance 0 invalidates at once */
    hresp r;
    assert_int_equal(cit_req(&F.g[0], CIT_KEY_A, "POST", "/v1/refresh",
                             "{\"connection_id\":\"conn_demo\",\"data\":true}", NULL, NULL, &r),
                     0);
    if (r.status < 200 || r.status >= 300)
        fprintf(stderr, "  refresh during the outage: %ld %s\n", r.status, r.body ? r.body : "");
    assert_true(r.status >= 200 && r.status < 300);
    hresp_free(&r);
    char *fresh = query_body(0, sql);
    assert_string_not_equal(fresh, old);
    assert_true(cit_metric(&F.g[0], "hotgate_fleet_invalidations_pending") >= 1);
    /* Redis comes back on the same address (empty: no persistence) */
    assert_int_equal(harness_start_redis(&F.redis, F.dir, port), 0);
    assert_int_equal(fit_wait_attached(&F, 20000), 0);
    for (int t = 0; t < 400 && cit_metric(&F.g[0], "hotgate_fleet_invalidations_pending") != 0; t++)
        cit_sleep_ms(25);
    assert_int_equal(cit_metric(&F.g[0], "hotgate_fleet_invalidations_pending"), 0);
    for (int t = 0; t < 400 && strcmp(admin_redis_status(0), "up"); t++)
        cit_sleep_ms(50); /* every connection back (each on its own backoff) */
    /* the queued invalidation went into the new Redis's stream */
    assert_true(harness_redis_int(F.redis.port, "XLEN hgt:{fleet}inval") >= 1);
    assert_string_equal(admin_redis_status(0), "up");
    /* no instance answers the old result any more */
    for (int i = 0; i < FIT_N; i++) {
        char *now = query_body(i, sql);
        assert_string_not_equal(now, old);
        free(now);
    }
    cit_sleep_ms(300);
    long ok, failed;
    load_stop(&ls, &ok, &failed);
    fprintf(stderr, "  load during the outage: %ld ok, %ld failed\n", ok, failed);
    assert_int_equal(failed, 0);
    assert_true(ok > 0);
    free(old);
    free(fresh);
}

static void test_redis_stalled(void **state)
{
    (void)state;
    double opens = 0;
    for (int i = 0; i < FIT_N; i++)
        opens += cit_metric(&F.g[i], "hotgate_redis_circuit_opens_total");
    load_start(&ls);
    cit_sleep_ms(200);
    /* Redis stops answering for 2 s (every client of it waits) */
    pid_t pid = fork();
    if (pid == 0) {
        char *x = harness_redis(F.redis.port, "DEBUG SLEEP 2");
        free(x);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    assert_int_equal(fit_wait_attached(&F, 20000), 0);
    cit_sleep_ms(300);
    long ok, failed;
    load_stop(&ls, &ok, &failed);
    fprintf(stderr, "  load during the stall: %ld ok, %ld failed\n", ok, failed);
    assert_int_equal(failed, 0);
    assert_true(ok > 0);
    double after = 0;
    for (int i = 0; i < FIT_N; i++)
        after += cit_metric(&F.g[i], "hotgate_redis_circuit_opens_total");
    assert_true(after > opens);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redis_killed_and_restarted),
        cmocka_unit_test(test_redis_stalled),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
