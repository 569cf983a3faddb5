/*
 * test_cache_crash: hotgate killed with SIGKILL never serves an answer that a mutation it
 * acknowledged has invalidated, and its LMDB environment stays sound.
 *
 *  - refresh_then_kill9: a query is cached (HIT), POST /v1/refresh through hotgate answers
 *    2xx, hotgate is killed at once (no grace), restarted: the next read is a MISS whose
 *    rows equal the simulator's own answer (several rounds). Before the run marker fix the
 *    pre-refresh answer came back as a HIT.
 *  - unclean_stop_empties: after a kill -9 the cache starts empty (README's promise); after
 *    a clean stop it keeps its entries.
 *  - crash_loop: HG_CRASH_LOOPS (default 20) rounds of: a writer thread floods hotgate with
 *    distinct queries (stores) and refreshes (invalidations), hotgate is killed -9 at a
 *    varying moment, `mdb_stat` checks the environment, hotgate restarts and every probe
 *    query's answer through hotgate equals the simulator's.
 */
#include "cache_it.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

static cit_env E;

static int setup(void **state)
{
    (void)state;
    return cit_start(&E, "cache-crash",
                     "ttl_query = 300s\nttl_metadata = 300s\nstale_while_revalidate = 0\n"
                     "stale_if_error = 0\n",
                     NULL);
}

static int teardown(void **state)
{
    (void)state;
    cit_stop(&E);
    return 0;
}

static void kill9_hg(void)
{
    assert_true(E.hg.pid > 0);
    kill(E.hg.pid, SIGKILL);
    int st;
    waitpid(E.hg.pid, &st, 0);
    E.hg.pid = 0;
}

/* The "rows" of the simulator's own answer to sql (asked directly, as credential a). */
static json_t *sim_rows(const char *sql)
{
    char url[128];
    snprintf(url, sizeof url, "%s/v1/query", E.simurl);
    const char *h[] = {"Authorization: Bearer tok_test", "X-Workspace-Id: ws_test",
                       "Content-Type: application/json", NULL};
    char *b = cit_query_body(sql);
    hresp r;
    assert_int_equal(http_do("POST", url, h, b, strlen(b), &r), 0);
    free(b);
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    assert_non_null(j);
    json_t *rows = json_incref(json_object_get(j, "rows"));
    json_decref(j);
    hresp_free(&r);
    assert_non_null(rows);
    return rows;
}

/* hotgate's answer to sql: rows (new reference) and X-Cache into xc. */
static json_t *hg_rows(const char *sql, char *xc, size_t xcl)
{
    hresp r;
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    snprintf(xc, xcl, "%s", cit_xcache(&r));
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    assert_non_null(j);
    json_t *rows = json_incref(json_object_get(j, "rows"));
    json_decref(j);
    hresp_free(&r);
    assert_non_null(rows);
    return rows;
}

static int refresh_demo(void)
{
    hresp r;
    if (cit_req(&E, CIT_KEY_A, "POST", "/v1/refresh",
                "{\"connection_id\":\"conn_demo\",\"data\":true}", NULL, NULL, &r) != 0)
        return -1;
    int st = (int)r.status;
    hresp_free(&r);
    return st;
}

static void test_refresh_then_kill9(void **state)
{
    (void)state;
    const char *sql = "SELECT count(*) AS n, max(id) AS m FROM demo.public.orders";
    char xc[64];
    for (int round = 0; round < 5; round++) {
        json_decref(hg_rows(sql, xc, sizeof xc));
        json_t *cached = hg_rows(sql, xc, sizeof xc);
        assert_string_equal(xc, "HIT");
        cit_sleep_ms(100); /* the entry is committed: it would survive the kill */
        int st = refresh_demo();
        assert_true(st >= 200 && st < 300);
        kill9_hg(); /* right after the 2xx */
        assert_int_equal(cit_start_hg(&E), 0);
        json_t *fresh = hg_rows(sql, xc, sizeof xc);
        json_t *truth = sim_rows(sql);
        fprintf(stderr, "  round %d: after restart X-Cache %s\n", round, xc);
        assert_string_equal(xc, "MISS");
        assert_true(json_equal(fresh, truth));
        assert_false(json_equal(fresh, cached)); /* the refresh really changed the data */
        json_decref(cached);
        json_decref(fresh);
        json_decref(truth);
    }
}

static void test_unclean_stop_empties(void **state)
{
    (void)state;
    const char *sql = "SELECT 'crash-empties' AS s, count(*) AS n FROM demo.public.products";
    char xc[64];
    json_decref(hg_rows(sql, xc, sizeof xc));
    json_decref(hg_rows(sql, xc, sizeof xc));
    assert_string_equal(xc, "HIT");
    cit_sleep_ms(200);
    /* a clean stop keeps entries */
    int st = harness_stop(&E.hg, 15000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(cit_start_hg(&E), 0);
    json_decref(hg_rows(sql, xc, sizeof xc));
    assert_string_equal(xc, "HIT");
    /* a kill does not, twice in a row (the second run was itself killed before a write) */
    kill9_hg();
    assert_int_equal(cit_start_hg(&E), 0);
    json_decref(hg_rows(sql, xc, sizeof xc));
    assert_string_equal(xc, "MISS");
    cit_sleep_ms(200);
    json_decref(hg_rows(sql, xc, sizeof xc));
    assert_string_equal(xc, "HIT");
    kill9_hg();
    assert_int_equal(cit_start_hg(&E), 0);
    kill9_hg();
    assert_int_equal(cit_start_hg(&E), 0);
    json_decref(hg_rows(sql, xc, sizeof xc));
    assert_string_equal(xc, "MISS");
}

/* ---- crash loop ---- */
static atomic_int g_stop;
static atomic_long g_sent;

static void *writer(void *arg)
{
    long seed = (long)(intptr_t)arg;
    for (long i = 0; !atomic_load(&g_stop); i++) {
        hresp r;
        if (i % 7 == 3) {
            refresh_demo();
        } else {
            char sql[160];
            snprintf(sql, sizeof sql,
                     "SELECT '%ld-%ld' AS k, count(*) AS n, max(id) AS m FROM demo.public.orders",
                     seed, i);
            if (cit_query(&E, CIT_KEY_A, sql, NULL, &r) == 0)
                hresp_free(&r);
        }
        atomic_fetch_add(&g_sent, 1);
    }
    return NULL;
}

static void test_crash_loop(void **state)
{
    (void)state;
    const char *env = getenv("HG_CRASH_LOOPS");
    int loops = env && atoi(env) > 0 ? atoi(env) : 20;
    const char *probes[] = {
        "SELECT count(*) AS n, max(id) AS m FROM demo.public.orders",
        "SELECT 'crash-probe' AS p, count(*) AS n FROM demo.public.products",
    };
    char cmd[900], xc[64];
    snprintf(cmd, sizeof cmd, "mdb_stat -e %s/cache >/dev/null", E.dir);
    unsigned seed = 12345;
    for (int loop = 0; loop < loops; loop++) {
        /* warm the probes so that a stale copy would be there to be served */
        for (size_t p = 0; p < sizeof probes / sizeof *probes; p++)
            json_decref(hg_rows(probes[p], xc, sizeof xc));
        atomic_store(&g_stop, 0);
        pthread_t th[2];
        for (intptr_t t = 0; t < 2; t++)
            pthread_create(&th[t], NULL, writer, (void *)(loop * 2 + t));
        seed = seed * 1103515245u + 12345u;
        cit_sleep_ms(150 + (int)((seed >> 8) % 400));
        kill9_hg();
        atomic_store(&g_stop, 1);
        for (int t = 0; t < 2; t++)
            pthread_join(th[t], NULL);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(cit_start_hg(&E), 0);
        for (size_t p = 0; p < sizeof probes / sizeof *probes; p++) {
            json_t *got = hg_rows(probes[p], xc, sizeof xc);
            json_t *truth = sim_rows(probes[p]);
            if (!json_equal(got, truth)) {
                char *a = json_dumps(got, JSON_COMPACT), *b = json_dumps(truth, JSON_COMPACT);
                fprintf(stderr, "  loop %d probe %zu (%s): hotgate %s, sim %s\n", loop, p, xc, a,
                        b);
                free(a);
                free(b);
                fail();
            }
            json_decref(got);
            json_decref(truth);
        }
    }
    fprintf(stderr, "  crash loop: %d kill -9 restarts, %ld requests sent, mdb_stat clean\n", loops,
            atomic_load(&g_sent));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refresh_then_kill9),
        cmocka_unit_test(test_unclean_stop_empties),
        cmocka_unit_test(test_crash_loop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
