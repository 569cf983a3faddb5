/*
 * test_fleet_l2: three hotgate instances, one redis-server, one hotdata-sim.
 *   - a query cached through one instance is an L2 hit on the others (X-Cache: HIT, the
 *     L2-hit metric, "l2_hit" in the access log), filled into their L1 (the next hit there
 *     costs no Redis lookup), one upstream query in all;
 *   - an answer over [redis] max_entry_size stays in L1 only;
 *   - a data refresh through one instance: right after its answer no instance answers the
 *     old result from L2, and the instances that held it in L1 stop serving it once they
 *     applied the stream entry;
 *   - /admin/redis and the hotgate_redis_* metrics show the connection up.
 */
#include "fleet_it.h"

static fit_env F;

static int setup(void **state)
{
    (void)state;
    return fit_start(&F, "fleet-l2", "ttl_query = 120s\n", "max_entry_size = 4K\n", NULL) == 0 &&
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

static void query_expect(int i, const char *sql, const char *xcache, char **body)
{
    hresp r;
    assert_int_equal(cit_query(&F.g[i], CIT_KEY_A, sql, NULL, &r), 0);
    if (r.status != 200)
        fprintf(stderr, "instance %d: %ld %s\n", i, r.status, r.body);
    assert_int_equal(r.status, 200);
    if (strcmp(cit_xcache(&r), xcache) != 0)
        fprintf(stderr, "instance %d: X-Cache %s, expected %s\n", i, cit_xcache(&r), xcache);
    assert_string_equal(cit_xcache(&r), xcache);
    if (body)
        *body = strdup(r.body);
    hresp_free(&r);
}

static void test_admin_and_metrics_show_redis(void **state)
{
    (void)state;
    hresp r;
    assert_int_equal(cit_admin_get(&F.g[0], "/admin/redis", &r), 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "up");
    assert_true(json_integer_value(json_object_get(j, "connections_up")) >= 1);
    json_decref(j);
    hresp_free(&r);
    assert_true(cit_metric(&F.g[0], "hotgate_redis_connections_up") >= 1);
}

static void test_hit_on_another_instance(void **state)
{
    (void)state;
    const char *sql = "SELECT id, status FROM demo.public.orders WHERE id = 17";
    char *b0, *b1, *b2;
    query_expect(0, sql, "MISS", &b0);
    assert_int_equal(fit_wait_l2_entries(&F, 1, 5000), 0); /* the fill's store: fire and forget */
    query_expect(1, sql, "HIT", &b1);
    query_expect(2, sql, "HIT", &b2);
    assert_string_equal(b0, b1);
    assert_string_equal(b0, b2);
    assert_int_equal(cit_sim_sql_count(&F.g[0], sql), 1);
    assert_int_equal(fit_metric_l(&F, 1, "hotgate_fleet_l2_lookups_total{outcome=\"hit\"}"), 1);
    assert_int_equal(fit_metric_l(&F, 0, "hotgate_fleet_l2_lookups_total{outcome=\"lead\"}"), 1);
    /* the L2 hit filled instance 1's L1: the next hit there asks Redis nothing */
    double ok_before = fit_metric_l(&F, 1, "hotgate_redis_commands_total{result=\"ok\"}");
    query_expect(1, sql, "HIT", NULL);
    assert_int_equal(fit_metric_l(&F, 1, "hotgate_fleet_l2_lookups_total{outcome=\"hit\"}"), 1);
    assert_true(fit_metric_l(&F, 1, "hotgate_redis_commands_total{result=\"ok\"}") == ok_before);
    assert_int_equal(cit_sim_sql_count(&F.g[0], sql), 1);
    free(b0);
    free(b1);
    free(b2);
}

static void test_big_entry_stays_l1(void **state)
{
    (void)state;
    /* ~200 rows: well over the 4K max_entry_size of this test's [redis] */
    const char *sql = "SELECT id, customer_id, status, amount FROM demo.public.orders "
                      "WHERE id <= 200 ORDER BY id";
    query_expect(0, sql, "MISS", NULL);
    query_expect(0, sql, "HIT", NULL);
    query_expect(1, sql, "MISS", NULL);
    assert_int_equal(cit_sim_sql_count(&F.g[0], sql), 2);
    assert_true(cit_metric(&F.g[0], "hotgate_fleet_l2_too_big_total") >= 1);
}

static void test_refresh_through_one_reaches_all(void **state)
{
    (void)state;
    const char *sql = "SELECT count(*) AS n, max(id) AS m FROM demo.public.orders";
    char *old;
    long long entries = fit_l2_entries(&F);
    query_expect(0, sql, "MISS", &old);
    assert_int_equal(fit_wait_l2_entries(&F, entries + 1, 5000), 0);
    query_expect(1, sql, "HIT", NULL); /* L2 -> L1 of instance 1 */
    query_expect(1, sql, "HIT", NULL); /* its L1 */
    double applied1 = cit_metric(&F.g[1], "hotgate_fleet_invalidations_applied_total");
    double applied2 = cit_metric(&F.g[2], "hotgate_fleet_invalidations_applied_total");
    hresp r;
    assert_int_equal(cit_req(&F.g[0], CIT_KEY_A, "POST", "/v1/refresh",
                             "{\"connection_id\":\"conn_demo\",\"data\":true}", NULL, NULL, &r),
                     0);
    assert_true(r.status >= 200 && r.status < 300);
    hresp_free(&r);
    /* instance 2 never held it in L1: right after the answer, L2 no longer serves the old
     * entry (its generations were bumped before the refresh's answer left instance 0) */
    char *fresh2;
    query_expect(2, sql, "MISS", &fresh2);
    assert_string_not_equal(fresh2, old);
    /* instance 1 held it in L1: it stops serving it once it applied the stream entry */
    assert_int_equal(
        fit_wait_metric(&F, 1, "hotgate_fleet_invalidations_applied_total", applied1 + 1, 5000), 0);
    assert_int_equal(
        fit_wait_metric(&F, 2, "hotgate_fleet_invalidations_applied_total", applied2 + 1, 5000), 0);
    hresp q;
    assert_int_equal(cit_query(&F.g[1], CIT_KEY_A, sql, NULL, &q), 0);
    assert_int_equal(q.status, 200);
    assert_string_not_equal(q.body, old);
    hresp_free(&q);
    /* and instance 0 itself */
    assert_int_equal(cit_query(&F.g[0], CIT_KEY_A, sql, NULL, &q), 0);
    assert_string_not_equal(q.body, old);
    hresp_free(&q);
    free(old);
    free(fresh2);
}

static void test_access_log_tells_l2(void **state)
{
    (void)state;
    harness_stop(&F.g[1].hg, 5000); /* flushes its access log */
    assert_true(fit_access_count(&F, 1, "\"cache\":\"l2_hit\"") >= 1);
    assert_true(fit_access_count(&F, 1, "\"cache\":\"hit\"") >= 1);
    assert_int_equal(cit_start_hg(&F.g[1]), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admin_and_metrics_show_redis),
        cmocka_unit_test(test_hit_on_another_instance),
        cmocka_unit_test(test_big_entry_stays_l1),
        cmocka_unit_test(test_refresh_through_one_reaches_all),
        cmocka_unit_test(test_access_log_tells_l2),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
