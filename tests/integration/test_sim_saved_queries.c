/*
 * test_sim_saved_queries: contract of /v1/queries on a running hotdata-sim: create (201 with
 * classification fields and sql_hash = SHA-256 of the SQL), get, list paging, update
 * semantics (omit keeps, null clears overrides, a no-op update makes no version), versions,
 * execute with an empty JSON body (a query run linked by saved_query_id/version), delete,
 * and the 400/404 errors.
 */
#include "sim_api.h"
#include "util.h"

static char *create_sq(const char *name, const char *sql)
{
    json_t *b = json_pack("{s:s,s:s,s:s,s:[s,s]}", "name", name, "sql", sql, "description", "d",
                          "tags", "t1", "t2");
    char *body = json_dumps(b, 0);
    json_decref(b);
    json_t *j = sim_api_expect("POST", "/v1/queries", body, 201);
    free(body);
    char *id = strdup(sim_api_str(j, "id"));
    json_decref(j);
    return id;
}

static void check_full_shape(json_t *j)
{
    sim_api_str(j, "id");
    sim_api_str(j, "name");
    sim_api_str(j, "sql");
    sim_api_str(j, "sql_hash");
    sim_api_str(j, "description");
    sim_api_str(j, "created_at");
    sim_api_str(j, "updated_at");
    sim_api_str(j, "category");
    sim_api_int(j, "latest_version");
    sim_api_int(j, "num_tables");
    sim_api_bool(j, "has_join");
    sim_api_bool(j, "has_aggregation");
    sim_api_bool(j, "has_group_by");
    sim_api_bool(j, "has_limit");
    sim_api_bool(j, "has_order_by");
    sim_api_bool(j, "has_predicate");
    assert_true(json_is_array(json_object_get(j, "tags")));
    assert_non_null(json_object_get(j, "table_size"));
}

static void test_create_classify_hash(void **state)
{
    const char *sql = "SELECT region, count(*) FROM demo.public.customers WHERE name <> 'a JOIN b'"
                      " GROUP BY region ORDER BY 2 DESC LIMIT 5";
    json_t *b = json_pack("{s:s,s:s}", "name", "by region", "sql", sql);
    char *body = json_dumps(b, 0);
    json_decref(b);
    json_t *j = sim_api_expect("POST", "/v1/queries", body, 201);
    free(body);
    check_full_shape(j);
    assert_string_equal(sim_api_str(j, "category"), "aggregation");
    assert_true(sim_api_bool(j, "has_aggregation"));
    assert_true(sim_api_bool(j, "has_group_by"));
    assert_true(sim_api_bool(j, "has_limit"));
    assert_true(sim_api_bool(j, "has_order_by"));
    assert_true(sim_api_bool(j, "has_predicate"));
    assert_false(sim_api_bool(j, "has_join")); /* JOIN inside a literal */
    assert_int_equal(sim_api_int(j, "num_tables"), 1);
    assert_int_equal(sim_api_int(j, "latest_version"), 1);
    sim_api_null(j, "table_size");
    assert_string_equal(sim_api_str(j, "description"), "");
    assert_int_equal(json_array_size(json_object_get(j, "tags")), 0);
    char want[65];
    util_sha256_hex(sql, strlen(sql), want);
    assert_string_equal(sim_api_str(j, "sql_hash"), want);
    json_decref(j);

    char *id = create_sq("joiny", "select * from demo.public.orders o join demo.public.customers c"
                                  " on o.customer_id = c.id");
    char path[128];
    snprintf(path, sizeof path, "/v1/queries/%s", id);
    j = sim_api_expect("GET", path, NULL, 200);
    check_full_shape(j);
    assert_string_equal(sim_api_str(j, "category"), "join");
    assert_true(sim_api_bool(j, "has_join"));
    assert_int_equal(sim_api_int(j, "num_tables"), 2);
    assert_string_equal(sim_api_str(j, "description"), "d");
    assert_int_equal(json_array_size(json_object_get(j, "tags")), 2);
    json_decref(j);
    free(id);
    id = create_sq("scan", "SELECT * FROM demo.public.products");
    snprintf(path, sizeof path, "/v1/queries/%s", id);
    j = sim_api_expect("GET", path, NULL, 200);
    assert_string_equal(sim_api_str(j, "category"), "scan");
    json_decref(j);
    free(id);
    id = create_sq("filtered", "SELECT * FROM demo.public.products WHERE id = 3");
    snprintf(path, sizeof path, "/v1/queries/%s", id);
    j = sim_api_expect("GET", path, NULL, 200);
    assert_string_equal(sim_api_str(j, "category"), "filtered_scan");
    json_decref(j);
    free(id);
}

static void test_errors(void **state)
{
    sim_api_expect_error("POST", "/v1/queries", "{\"sql\":\"select 1\"}", 400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/queries", "{\"name\":\"n\"}", 400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/queries", "{\"name\":\"n\",\"sql\":\"\"}", 400,
                         "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/queries", "{\"name\":1,\"sql\":\"select 1\"}", 400,
                         "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/queries",
                         "{\"name\":\"n\",\"sql\":\"select 1\",\"tags\":\"x\"}", 400,
                         "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/queries",
                         "{\"name\":\"n\",\"sql\":\"select 1\",\"tags\":[1]}", 400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/queries", "{\"name\":", 400, "BAD_REQUEST");
    sim_api_expect_error("GET", "/v1/queries/svq_nope", NULL, 404, "NOT_FOUND");
    sim_api_expect_error("PUT", "/v1/queries/svq_nope", "{\"name\":\"x\"}", 404, "NOT_FOUND");
    sim_api_expect_error("DELETE", "/v1/queries/svq_nope", NULL, 404, "NOT_FOUND");
    sim_api_expect_error("GET", "/v1/queries/svq_nope/versions", NULL, 404, "NOT_FOUND");
    sim_api_expect_error("POST", "/v1/queries/svq_nope/execute", "", 404, "NOT_FOUND");
    char *id = create_sq("upd_err", "select 1");
    char path[128];
    snprintf(path, sizeof path, "/v1/queries/%s", id);
    sim_api_expect_error("PUT", path, "{\"sql\":5}", 400, "BAD_REQUEST");
    sim_api_expect_error("PUT", path, "{\"category_override\":true}", 400, "BAD_REQUEST");
    sim_api_expect_error("PUT", path, "[]", 400, "BAD_REQUEST");
    free(id);
}

static void test_update_semantics_and_versions(void **state)
{
    char *id = create_sq("evolving", "SELECT * FROM demo.public.products");
    char path[128], vpath[160];
    snprintf(path, sizeof path, "/v1/queries/%s", id);
    snprintf(vpath, sizeof vpath, "/v1/queries/%s/versions", id);

    /* SQL change: new version, new classification, name kept */
    json_t *j =
        sim_api_expect("PUT", path, "{\"sql\":\"SELECT count(*) FROM demo.public.products\"}", 200);
    check_full_shape(j);
    assert_int_equal(sim_api_int(j, "latest_version"), 2);
    assert_string_equal(sim_api_str(j, "name"), "evolving");
    assert_string_equal(sim_api_str(j, "category"), "aggregation");
    json_decref(j);

    /* overrides */
    j = sim_api_expect("PUT", path,
                       "{\"category_override\":\"join\",\"table_size_override\":\"large\"}", 200);
    assert_string_equal(sim_api_str(j, "category"), "join");
    assert_string_equal(sim_api_str(j, "table_size"), "large");
    assert_int_equal(sim_api_int(j, "latest_version"), 3);
    json_decref(j);
    /* omitted: kept */
    j = sim_api_expect("PUT", path, "{\"name\":\"evolved\"}", 200);
    assert_string_equal(sim_api_str(j, "category"), "join");
    assert_string_equal(sim_api_str(j, "table_size"), "large");
    assert_string_equal(sim_api_str(j, "name"), "evolved");
    assert_int_equal(sim_api_int(j, "latest_version"), 4);
    json_decref(j);
    /* null: cleared, back to auto */
    j = sim_api_expect("PUT", path, "{\"category_override\":null,\"table_size_override\":null}",
                       200);
    assert_string_equal(sim_api_str(j, "category"), "aggregation");
    sim_api_null(j, "table_size");
    assert_int_equal(sim_api_int(j, "latest_version"), 5);
    json_decref(j);
    /* an update that changes nothing makes no version */
    j = sim_api_expect("PUT", path, "{\"name\":\"evolved\",\"sql\":null}", 200);
    assert_int_equal(sim_api_int(j, "latest_version"), 5);
    json_decref(j);

    j = sim_api_expect("GET", vpath, NULL, 200);
    assert_int_equal(sim_api_int(j, "count"), 5);
    assert_false(sim_api_bool(j, "has_more"));
    assert_string_equal(sim_api_str(j, "saved_query_id"), id);
    json_t *vs = json_object_get(j, "versions");
    json_t *v1 = NULL;
    for (size_t i = 0; i < json_array_size(vs); i++) {
        json_t *v = json_array_get(vs, i);
        sim_api_str(v, "sql");
        sim_api_str(v, "sql_hash");
        sim_api_str(v, "created_at");
        sim_api_str(v, "category");
        sim_api_int(v, "num_tables");
        sim_api_bool(v, "has_join");
        assert_non_null(json_object_get(v, "table_size"));
        if (sim_api_int(v, "version") == 1)
            v1 = v;
    }
    assert_non_null(v1);
    assert_string_equal(sim_api_str(v1, "sql"), "SELECT * FROM demo.public.products");
    assert_string_equal(sim_api_str(v1, "category"), "scan");
    json_decref(j);
    j = sim_api_expect("GET", "/v1/queries?limit=1", NULL, 200);
    assert_int_equal(sim_api_int(j, "count"), 1);
    assert_true(sim_api_bool(j, "has_more"));
    sim_api_int(j, "limit");
    sim_api_int(j, "offset");
    json_t *q = json_array_get(json_object_get(j, "queries"), 0);
    sim_api_str(q, "id");
    sim_api_str(q, "name");
    sim_api_str(q, "description");
    sim_api_int(q, "latest_version");
    assert_true(json_is_array(json_object_get(q, "tags")));
    sim_api_str(q, "created_at");
    sim_api_str(q, "updated_at");
    json_decref(j);
    snprintf(vpath, sizeof vpath, "/v1/queries/%s/versions?limit=2&offset=1", id);
    j = sim_api_expect("GET", vpath, NULL, 200);
    assert_int_equal(sim_api_int(j, "count"), 2);
    assert_true(sim_api_bool(j, "has_more"));
    json_decref(j);
    free(id);
}

static void test_execute_and_delete(void **state)
{
    char *id = create_sq("exec", "SELECT count(*) AS n FROM demo.public.customers");
    char path[160], rpath[256];
    snprintf(path, sizeof path, "/v1/queries/%s/execute", id);
    /* empty body with Content-Type: application/json, as the official clients send it */
    char *url = harness_url("http://127.0.0.1:%d%s", sim_api_proc.port, path);
    const char *hdrs[] = {"Authorization: Bearer tok_test", "X-Workspace-Id: ws_test",
                          "Content-Type: application/json", NULL};
    hresp r;
    assert_int_equal(http_do("POST", url, hdrs, "", 0, &r), 0);
    free(url);
    if (r.status != 200)
        fprintf(stderr, "execute: %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    hresp_free(&r);
    assert_non_null(j);
    assert_int_equal(sim_api_int(j, "row_count"), 1);
    assert_true(json_is_array(json_object_get(j, "columns")));
    assert_true(json_is_array(json_object_get(j, "rows")));
    snprintf(rpath, sizeof rpath, "/v1/query-runs/%s", sim_api_str(j, "query_run_id"));
    json_decref(j);
    j = sim_api_expect("GET", rpath, NULL, 200);
    assert_string_equal(sim_api_str(j, "saved_query_id"), id);
    assert_int_equal(sim_api_int(j, "saved_query_version"), 1);
    json_decref(j);

    /* after an update the run is linked to the new version */
    char qpath[128];
    snprintf(qpath, sizeof qpath, "/v1/queries/%s", id);
    json_decref(sim_api_expect("PUT", qpath, "{\"sql\":\"SELECT 1 AS one\"}", 200));
    j = sim_api_expect("POST", path, "{}", 200);
    snprintf(rpath, sizeof rpath, "/v1/query-runs/%s", sim_api_str(j, "query_run_id"));
    json_decref(j);
    j = sim_api_expect("GET", rpath, NULL, 200);
    assert_int_equal(sim_api_int(j, "saved_query_version"), 2);
    json_decref(j);

    sim_api_expect_204("DELETE", qpath);
    sim_api_expect_error("GET", qpath, NULL, 404, "NOT_FOUND");
    sim_api_expect_error("POST", path, "{}", 404, "NOT_FOUND");
    free(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_classify_hash),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_update_semantics_and_versions),
        cmocka_unit_test(test_execute_and_delete),
    };
    return cmocka_run_group_tests(tests, sim_api_start, sim_api_stop);
}
