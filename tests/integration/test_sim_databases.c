/*
 * test_sim_databases: the inputs of today's API that the simulator answers differently to:
 * /v1/databases, the database scope of a query (X-Database-Id header or database_id body
 * field) and of the datasets created in it, dialect (result column name case), and
 * default_catalog / default_schema for unqualified table names.
 *
 * Rules: a real hotdata-sim process; every assertion tells two answers apart (or the 400).
 */
#include "sim_core_it.h"

static int setup(void **state)
{
    (void)state;
    static const char *const extra[] = {"--seed-rows", "500", "--async-delay-ms", "50", NULL};
    return sci_start(extra);
}

static int teardown(void **state)
{
    (void)state;
    sci_stop();
    return 0;
}

/* request with one extra header (e.g. "X-Database-Id: db_..."); returns the parsed body */
static json_t *req_h(const char *method, const char *path, const char *body, const char *hdr,
                     long *st)
{
    hresp r;
    assert_int_equal(sci_raw("tok_test", "ws_test", method, path, body, hdr, &r), 0);
    *st = r.status;
    json_t *j = r.len ? json_loadb(r.body, r.len, 0, NULL) : NULL;
    hresp_free(&r);
    return j;
}

static char *make_db(const char *name)
{
    char body[128];
    snprintf(body, sizeof body, "{\"name\":\"%s\"}", name);
    long st = 0;
    json_t *j = sci("POST", "/v1/databases", body, &st);
    assert_int_equal(st, 201);
    const char *id = json_string_value(json_object_get(j, "id"));
    assert_non_null(id);
    assert_memory_equal(id, "db_", 3);
    assert_string_equal(json_string_value(json_object_get(j, "name")), name);
    assert_true(json_is_string(json_object_get(j, "created_at")));
    char *out = strdup(id);
    json_decref(j);
    return out;
}

static void test_databases_crud(void **state)
{
    (void)state;
    char *a = make_db("crud_a");
    long st = 0;
    json_t *j = sci("POST", "/v1/databases", "{\"name\":\"crud_a\"}", &st);
    sci_assert_error(j, 409, "CONFLICT");
    json_decref(j);
    j = sci("POST", "/v1/databases", "{\"name\":\"bad name!\"}", &st);
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
    j = sci("POST", "/v1/databases", "{}", &st);
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
    j = sci("GET", "/v1/databases", NULL, &st);
    assert_int_equal(st, 200);
    json_t *arr = json_object_get(j, "databases");
    bool found = false;
    for (size_t i = 0; i < json_array_size(arr); i++)
        found |= !strcmp(json_string_value(json_object_get(json_array_get(arr, i), "id")), a);
    assert_true(found);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), json_array_size(arr));
    json_decref(j);
    char path[128];
    snprintf(path, sizeof path, "/v1/databases/%s", a);
    j = sci("GET", path, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "crud_a");
    json_decref(j);
    /* another workspace does not see it */
    j = sci_as("tok_other", "ws_other", "GET", path, NULL, &st);
    sci_assert_error(j, 404, "NOT_FOUND");
    json_decref(j);
    j = sci("DELETE", path, NULL, &st);
    assert_int_equal(st, 204);
    json_decref(j);
    j = sci("GET", path, NULL, &st);
    sci_assert_error(j, 404, "NOT_FOUND");
    json_decref(j);
    j = sci("DELETE", path, NULL, &st);
    sci_assert_error(j, 404, "NOT_FOUND");
    json_decref(j);
    free(a);
}

#define DS_BODY                                                                                    \
    "{\"label\":\"%s\",\"table_name\":\"%s\",\"source\":{\"inline\":{\"format\":\"csv\","          \
    "\"content\":\"v\\n%d\\n\"}}}"

static void test_query_scope_and_datasets(void **state)
{
    (void)state;
    char *d1 = make_db("scope_1"), *d2 = make_db("scope_2");
    char h1[128], h2[128], body[512];
    snprintf(h1, sizeof h1, "X-Database-Id: %s", d1);
    snprintf(h2, sizeof h2, "X-Database-Id: %s", d2);
    long st = 0;
    /* a dataset created in d1 (header), one in d2 (body field), one unscoped */
    snprintf(body, sizeof body, DS_BODY, "in_one", "in_one", 1);
    json_t *j = req_h("POST", "/v1/datasets", body, h1, &st);
    assert_int_equal(st, 201);
    assert_string_equal(json_string_value(json_object_get(j, "database_id")), d1);
    json_decref(j);
    snprintf(body, sizeof body,
             "{\"label\":\"in_two\",\"table_name\":\"in_two\",\"database_id\":\"%s\",\"source\":"
             "{\"inline\":{\"format\":\"csv\",\"content\":\"v\\n2\\n\"}}}",
             d2);
    j = sci("POST", "/v1/datasets", body, &st);
    assert_int_equal(st, 201);
    json_decref(j);
    snprintf(body, sizeof body, DS_BODY, "in_none", "in_none", 3);
    j = sci("POST", "/v1/datasets", body, &st);
    assert_int_equal(st, 201);
    assert_null(json_object_get(j, "database_id"));
    json_decref(j);

    const char *q1 = "{\"sql\":\"SELECT v FROM datasets.main.in_one\"}";
    j = req_h("POST", "/v1/query", q1, h1, &st);
    assert_int_equal(st, 200);
    assert_int_equal(
        json_integer_value(json_array_get(json_array_get(json_object_get(j, "rows"), 0), 0)), 1);
    json_decref(j);
    j = req_h("POST", "/v1/query", q1, h2, &st); /* another database: not there */
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
    j = sci("POST", "/v1/query", q1, &st); /* unscoped: not there */
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
    /* body field scope: the same as the header */
    snprintf(body, sizeof body,
             "{\"sql\":\"SELECT v FROM datasets.main.in_two\",\"database_id\":\"%s\"}", d2);
    j = sci("POST", "/v1/query", body, &st);
    assert_int_equal(st, 200);
    json_decref(j);
    /* both given and equal: fine; different: 400 */
    j = req_h("POST", "/v1/query", body, h2, &st);
    assert_int_equal(st, 200);
    json_decref(j);
    j = req_h("POST", "/v1/query", body, h1, &st);
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
    /* unknown database: 404; a non-string database_id: 400 */
    j = req_h("POST", "/v1/query", q1, "X-Database-Id: db_nope", &st);
    sci_assert_error(j, 404, "NOT_FOUND");
    json_decref(j);
    j = sci("POST", "/v1/query", "{\"sql\":\"SELECT 1\",\"database_id\":7}", &st);
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
    /* the unscoped dataset: unscoped queries only */
    const char *q3 = "{\"sql\":\"SELECT v FROM datasets.main.in_none\"}";
    j = sci("POST", "/v1/query", q3, &st);
    assert_int_equal(st, 200);
    json_decref(j);
    j = req_h("POST", "/v1/query", q3, h1, &st);
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
    /* connection tables: every scope */
    j = req_h("POST", "/v1/query", "{\"sql\":\"SELECT count(*) FROM demo.public.orders\"}", h1,
              &st);
    assert_int_equal(st, 200);
    json_decref(j);
    /* an async query keeps its scope */
    j = req_h("POST", "/v1/query",
              "{\"sql\":\"SELECT v FROM datasets.main.in_one\",\"async\":true,"
              "\"async_after_ms\":5000}",
              h1, &st);
    assert_int_equal(st, 200);
    assert_int_equal(
        json_integer_value(json_array_get(json_array_get(json_object_get(j, "rows"), 0), 0)), 1);
    json_decref(j);
    /* a database that owns datasets cannot go; the list counts them */
    char path[128];
    snprintf(path, sizeof path, "/v1/databases/%s", d1);
    j = sci("GET", path, NULL, &st);
    assert_int_equal(json_integer_value(json_object_get(j, "dataset_count")), 1);
    json_decref(j);
    j = sci("DELETE", path, NULL, &st);
    sci_assert_error(j, 409, "CONFLICT");
    json_decref(j);
    free(d1);
    free(d2);
}

static json_t *cols_of(const char *body, long *st)
{
    json_t *j = sci("POST", "/v1/query", body, st);
    json_t *c = json_incref(json_object_get(j, "columns"));
    json_decref(j);
    return c;
}

static void test_dialect(void **state)
{
    (void)state;
    static const struct {
        const char *dialect;
        const char *c0, *c1, *c2;
    } cases[] = {
        {NULL, "Status_Col", "Quoted", "cnt_All"},
        {"hotsql", "Status_Col", "Quoted", "cnt_All"},
        {"duckdb", "Status_Col", "Quoted", "cnt_All"},
        {"postgres", "status_col", "Quoted", "cnt_all"},
        {"snowflake", "STATUS_COL", "Quoted", "CNT_ALL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[512], dl[64] = "";
        if (cases[i].dialect)
            snprintf(dl, sizeof dl, ",\"dialect\":\"%s\"", cases[i].dialect);
        snprintf(body, sizeof body,
                 "{\"sql\":\"SELECT status AS Status_Col, status AS \\\"Quoted\\\", count(*) AS "
                 "cnt_All FROM "
                 "demo.public.orders GROUP BY 1 ORDER BY 1 LIMIT 1\"%s}",
                 dl);
        long st = 0;
        json_t *c = cols_of(body, &st);
        assert_int_equal(st, 200);
        assert_string_equal(json_string_value(json_array_get(c, 0)), cases[i].c0);
        assert_string_equal(json_string_value(json_array_get(c, 1)), cases[i].c1);
        assert_string_equal(json_string_value(json_array_get(c, 2)), cases[i].c2);
        json_decref(c);
    }
    long st = 0;
    json_t *j = sci("POST", "/v1/query", "{\"sql\":\"SELECT 1\",\"dialect\":\"mysql\"}", &st);
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
    j = sci("POST", "/v1/query", "{\"sql\":\"SELECT 1\",\"dialect\":3}", &st);
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
}

static void test_default_schema(void **state)
{
    (void)state;
    long st = 0;
    /* without defaults an unqualified name is unknown */
    json_t *j = sci("POST", "/v1/query", "{\"sql\":\"SELECT count(*) FROM orders\"}", &st);
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
    static const char *const ok[] = {
        "{\"sql\":\"SELECT count(*) FROM orders\",\"default_schema\":\"public\"}",
        "{\"sql\":\"SELECT count(*) FROM orders\",\"default_catalog\":\"demo\","
        "\"default_schema\":\"public\"}",
        "{\"sql\":\"SELECT count(*) FROM public.orders\",\"default_catalog\":\"demo\"}",
        "{\"sql\":\"SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id\","
        "\"default_schema\":\"public\"}",
        "{\"sql\":\"SELECT count(*) FROM orders o, customers c WHERE c.id = o.customer_id\","
        "\"default_schema\":\"public\"}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        j = sci("POST", "/v1/query", ok[i], &st);
        assert_int_equal(st, 200);
        assert_int_equal(
            json_integer_value(json_array_get(json_array_get(json_object_get(j, "rows"), 0), 0)),
            500);
        json_decref(j);
    }
    /* the default schema decides which table a name is: datasets.main.dflt vs demo.public */
    j = sci("POST", "/v1/datasets",
            "{\"label\":\"dflt\",\"table_name\":\"orders\",\"source\":{\"inline\":{\"format\":"
            "\"csv\",\"content\":\"v\\n1\\n2\\n\"}}}",
            &st);
    assert_int_equal(st, 201);
    json_decref(j);
    j = sci("POST", "/v1/query",
            "{\"sql\":\"SELECT count(*) FROM orders\",\"default_catalog\":\"datasets\","
            "\"default_schema\":\"main\"}",
            &st);
    assert_int_equal(st, 200);
    assert_int_equal(
        json_integer_value(json_array_get(json_array_get(json_object_get(j, "rows"), 0), 0)), 2);
    json_decref(j);
    /* a column of the same name is not a table */
    j = sci("POST", "/v1/query",
            "{\"sql\":\"SELECT orders.status FROM demo.public.orders AS orders LIMIT 1\","
            "\"default_schema\":\"public\"}",
            &st);
    assert_int_equal(st, 200);
    json_decref(j);
    j = sci("POST", "/v1/query", "{\"sql\":\"SELECT 1\",\"default_schema\":[]}", &st);
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_databases_crud),
        cmocka_unit_test(test_query_scope_and_datasets),
        cmocka_unit_test(test_dialect),
        cmocka_unit_test(test_default_schema),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
