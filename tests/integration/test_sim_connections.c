/*
 * test_sim_connections: contract of connections, connection types, table profiles, cache
 * purges, health and /v1/information_schema on a running hotdata-sim. Statistics in
 * profiles are checked against SQL run over the same table, and the effects of purge and
 * delete are observed through other endpoints (synced counts, profile 404, SQL 400).
 */
#include "sim_api.h"

static char *create_conn(const char *name, const char *extra)
{
    char body[1024];
    snprintf(body, sizeof body,
             "{\"name\":\"%s\",\"source_type\":\"postgres\",\"config\":{\"host\":\"db.example\","
             "\"port\":5432,\"database\":\"app\",\"user\":\"u\"}%s}",
             name, extra ? extra : "");
    json_t *j = sim_api_expect("POST", "/v1/connections", body, 201);
    char *id = strdup(sim_api_str(j, "id"));
    json_decref(j);
    return id;
}

static json_t *query_rows(const char *sql)
{
    json_t *j = sim_api_query(sql);
    json_t *rows = json_incref(json_object_get(j, "rows"));
    json_decref(j);
    assert_true(json_is_array(rows));
    return rows;
}

static void test_connection_types(void **state)
{
    json_t *j = sim_api_expect("GET", "/v1/connection-types", NULL, 200);
    json_t *types = json_object_get(j, "connection_types");
    const char *want[] = {"postgres", "mysql", "snowflake", "bigquery", "duckdb", "iceberg"};
    for (size_t w = 0; w < 6; w++) {
        int found = 0;
        size_t i;
        json_t *t;
        json_array_foreach(types, i, t)
        {
            sim_api_str(t, "label");
            if (strcmp(sim_api_str(t, "name"), want[w]) == 0)
                found = 1;
        }
        assert_true(found);
        char path[128];
        snprintf(path, sizeof path, "/v1/connection-types/%s", want[w]);
        json_t *d = sim_api_expect("GET", path, NULL, 200);
        assert_string_equal(sim_api_str(d, "name"), want[w]);
        sim_api_str(d, "label");
        json_t *schema = json_object_get(d, "config_schema");
        assert_true(json_is_object(schema));
        assert_string_equal(sim_api_str(schema, "type"), "object");
        assert_true(json_is_object(json_object_get(schema, "properties")));
        assert_true(json_is_array(json_object_get(schema, "required")));
        assert_non_null(json_object_get(d, "auth"));
        json_decref(d);
    }
    json_decref(j);
    j = sim_api_expect("GET", "/v1/connection-types/postgres", NULL, 200);
    json_t *port =
        json_object_get(json_object_get(json_object_get(j, "config_schema"), "properties"), "port");
    assert_string_equal(sim_api_str(port, "type"), "integer");
    assert_true(json_is_object(json_object_get(j, "auth")));
    json_decref(j);
    sim_api_expect_error("GET", "/v1/connection-types/oracle9", NULL, 404, "NOT_FOUND");
}

static void test_demo_connection_is_visible(void **state)
{
    json_t *j = sim_api_expect("GET", "/v1/connections", NULL, 200);
    int found = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(j, "connections"), i, c)
    {
        sim_api_str(c, "id");
        sim_api_str(c, "source_type");
        if (strcmp(sim_api_str(c, "name"), "demo") == 0)
            found = 1;
    }
    assert_true(found);
    json_decref(j);
    j = sim_api_expect("GET", "/v1/connections/conn_demo", NULL, 200);
    assert_string_equal(sim_api_str(j, "name"), "demo");
    assert_true(sim_api_int(j, "table_count") >= 3);
    assert_true(sim_api_int(j, "synced_table_count") <= sim_api_int(j, "table_count"));
    json_decref(j);
    j = sim_api_expect("GET", "/v1/information_schema?connection_id=conn_demo&table=customers",
                       NULL, 200);
    assert_int_equal(sim_api_int(j, "count"), 1);
    json_t *t = json_array_get(json_object_get(j, "tables"), 0);
    assert_string_equal(sim_api_str(t, "connection"), "demo");
    assert_string_equal(sim_api_str(t, "schema"), "public");
    assert_string_equal(sim_api_str(t, "table"), "customers");
    json_decref(j);
}

static void test_create_get_list_query(void **state)
{
    json_t *j = sim_api_expect("POST", "/v1/connections",
                               "{\"name\":\"analytics\",\"source_type\":\"postgres\",\"config\":"
                               "{\"host\":\"db\",\"port\":5432,\"database\":\"a\",\"user\":\"u\"}}",
                               201);
    char *id = strdup(sim_api_str(j, "id"));
    assert_string_equal(sim_api_str(j, "name"), "analytics");
    assert_string_equal(sim_api_str(j, "source_type"), "postgres");
    assert_string_equal(sim_api_str(j, "discovery_status"), "success");
    sim_api_null(j, "discovery_error");
    assert_int_equal(sim_api_int(j, "tables_discovered"), 2);
    json_decref(j);

    char path[256];
    snprintf(path, sizeof path, "/v1/connections/%s", id);
    j = sim_api_expect("GET", path, NULL, 200);
    assert_string_equal(sim_api_str(j, "id"), id);
    assert_int_equal(sim_api_int(j, "table_count"), 2);
    assert_int_equal(sim_api_int(j, "synced_table_count"), 2);
    json_decref(j);

    json_t *rows = query_rows("SELECT count(*) FROM analytics.public.accounts");
    assert_int_equal(json_integer_value(json_array_get(json_array_get(rows, 0), 0)), 25);
    json_decref(rows);
    rows = query_rows("SELECT count(*) FROM analytics.public.events");
    assert_int_equal(json_integer_value(json_array_get(json_array_get(rows, 0), 0)), 200);
    json_decref(rows);
    free(id);
}

static void test_create_errors(void **state)
{
    free(create_conn("dupe", NULL));
    const char *cfg = "\"config\":{}";
    char body[512];
    snprintf(body, sizeof body, "{\"name\":\"dupe\",\"source_type\":\"mysql\",%s}", cfg);
    sim_api_expect_error("POST", "/v1/connections", body, 409, "CONFLICT");
    snprintf(body, sizeof body, "{\"name\":\"DUPE\",\"source_type\":\"mysql\",%s}", cfg);
    sim_api_expect_error("POST", "/v1/connections", body, 409, "CONFLICT");
    sim_api_expect_error("POST", "/v1/connections", "{\"name\":\"a1\",\"source_type\":\"mysql\"}",
                         400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/connections",
                         "{\"name\":\"a2\",\"source_type\":\"mysql\",\"config\":\"host=x\"}", 400,
                         "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/connections", "{\"source_type\":\"mysql\",\"config\":{}}",
                         400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/connections", "{\"name\":\"a3\",\"config\":{}}", 400,
                         "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/connections",
                         "{\"name\":\"a4\",\"source_type\":\"oracle9\",\"config\":{}}", 400,
                         "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/connections",
                         "{\"name\":\"a5\",\"source_type\":\"postgres\",\"config\":{\"port\":"
                         "\"5432\"}}",
                         400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/connections",
                         "{\"name\":\"a6\",\"source_type\":\"postgres\",\"config\":{},"
                         "\"secret_id\":\"secr_x\",\"secret_name\":\"y\"}",
                         400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/connections",
                         "{\"name\":\"a7\",\"source_type\":\"postgres\",\"config\":{},"
                         "\"secret_name\":\"missing\"}",
                         400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/connections",
                         "{\"name\":\"a8\",\"source_type\":\"postgres\",\"config\":{},"
                         "\"skip_discovery\":\"yes\"}",
                         400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/connections",
                         "{\"name\":\"datasets\",\"source_type\":\"postgres\",\"config\":{}}", 400,
                         "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/connections", "{\"name\":", 400, "BAD_REQUEST");
    sim_api_expect_error("GET", "/v1/connections/conn_nope", NULL, 404, "NOT_FOUND");
    sim_api_expect_error("DELETE", "/v1/connections/conn_nope", NULL, 404, "NOT_FOUND");
}

static void test_secret_reference_and_skip_discovery(void **state)
{
    json_t *s = sim_api_expect("POST", "/v1/secrets", "{\"name\":\"wh_pw\",\"value\":\"pw\"}", 201);
    char sid[128];
    snprintf(sid, sizeof sid, "%s", sim_api_str(s, "id"));
    json_decref(s);
    char body[512];
    snprintf(body, sizeof body,
             "{\"name\":\"wh\",\"source_type\":\"snowflake\",\"config\":{\"account\":\"x\"},"
             "\"secret_id\":\"%s\",\"skip_discovery\":true}",
             sid);
    json_t *j = sim_api_expect("POST", "/v1/connections", body, 201);
    assert_int_equal(sim_api_int(j, "tables_discovered"), 0);
    assert_string_equal(sim_api_str(j, "discovery_status"), "skipped");
    char path[256];
    snprintf(path, sizeof path, "/v1/connections/%s", sim_api_str(j, "id"));
    json_decref(j);
    j = sim_api_expect("GET", path, NULL, 200);
    assert_int_equal(sim_api_int(j, "table_count"), 0);
    assert_int_equal(sim_api_int(j, "synced_table_count"), 0);
    json_decref(j);
    json_decref(sim_api_expect("POST", "/v1/connections",
                               "{\"name\":\"wh2\",\"source_type\":\"duckdb\",\"config\":{\"path\":"
                               "\"/tmp/x.db\"},\"secret_name\":\"wh_pw\"}",
                               201));
}

static void test_health(void **state)
{
    char *id = create_conn("healthy_one", NULL);
    char path[256];
    snprintf(path, sizeof path, "/v1/connections/%s/health", id);
    json_t *j = sim_api_expect("GET", path, NULL, 200);
    assert_string_equal(sim_api_str(j, "connection_id"), id);
    assert_true(sim_api_bool(j, "healthy"));
    sim_api_null(j, "error");
    assert_true(sim_api_int(j, "latency_ms") >= 0);
    json_decref(j);
    free(id);
    json_t *c = sim_api_expect("POST", "/v1/connections",
                               "{\"name\":\"gone\",\"source_type\":\"postgres\",\"config\":"
                               "{\"host\":\"db.invalid\"},\"skip_discovery\":true}",
                               201);
    snprintf(path, sizeof path, "/v1/connections/%s/health", sim_api_str(c, "id"));
    json_decref(c);
    j = sim_api_expect("GET", path, NULL, 200);
    assert_false(sim_api_bool(j, "healthy"));
    sim_api_str(j, "error");
    json_decref(j);
    sim_api_expect_error("GET", "/v1/connections/conn_nope/health", NULL, 404, "NOT_FOUND");
}

static json_t *profile_column(json_t *profile, const char *name)
{
    json_t *cols = json_object_get(profile, "columns");
    for (size_t i = 0; i < json_array_size(cols); i++) {
        json_t *c = json_array_get(cols, i);
        if (strcmp(sim_api_str(c, "name"), name) == 0)
            return c;
    }
    fail_msg("column %s missing from profile", name);
    return NULL;
}

static void test_profile_real_statistics(void **state)
{
    char *id = create_conn("prof", NULL);
    char path[256];
    snprintf(path, sizeof path, "/v1/connections/%s/tables/public/accounts/profile", id);
    json_t *j = sim_api_expect("GET", path, NULL, 200);
    assert_int_equal(sim_api_int(j, "row_count"), 25);
    assert_string_equal(sim_api_str(j, "connection"), "prof");
    assert_string_equal(sim_api_str(j, "schema"), "public");
    assert_string_equal(sim_api_str(j, "table"), "accounts");
    sim_api_str(j, "synced_at");
    json_t *c = profile_column(j, "id");
    assert_int_equal(sim_api_int(c, "cardinality"), 25);
    assert_int_equal(sim_api_int(c, "null_count"), 0);
    assert_string_equal(sim_api_str(c, "data_type"), "Int64");
    c = profile_column(j, "plan");
    assert_int_equal(sim_api_int(c, "null_count"), 5);
    assert_true(json_is_number(json_object_get(c, "null_percentage")));
    assert_true(json_number_value(json_object_get(c, "null_percentage")) > 19.99 &&
                json_number_value(json_object_get(c, "null_percentage")) < 20.01);
    assert_string_equal(sim_api_str(c, "data_type"), "Utf8");
    json_t *rows = query_rows("SELECT count(DISTINCT region), count(DISTINCT plan) FROM "
                              "prof.public.accounts");
    assert_int_equal(sim_api_int(profile_column(j, "region"), "cardinality"),
                     json_integer_value(json_array_get(json_array_get(rows, 0), 0)));
    assert_int_equal(sim_api_int(profile_column(j, "plan"), "cardinality"),
                     json_integer_value(json_array_get(json_array_get(rows, 0), 1)));
    json_decref(rows);
    json_decref(j);

    /* the seeded demo table: the profile agrees with SQL over the same data */
    j = sim_api_expect("GET", "/v1/connections/conn_demo/tables/public/customers/profile", NULL,
                       200);
    rows = query_rows("SELECT count(*) FROM demo.public.customers");
    assert_int_equal(sim_api_int(j, "row_count"),
                     json_integer_value(json_array_get(json_array_get(rows, 0), 0)));
    json_decref(rows);
    json_t *first = json_array_get(json_object_get(j, "columns"), 0);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(DISTINCT \"%s\"), count(*) - count(\"%s\") FROM demo.public.customers",
             sim_api_str(first, "name"), sim_api_str(first, "name"));
    rows = query_rows(sql);
    assert_int_equal(sim_api_int(first, "cardinality"),
                     json_integer_value(json_array_get(json_array_get(rows, 0), 0)));
    assert_int_equal(sim_api_int(first, "null_count"),
                     json_integer_value(json_array_get(json_array_get(rows, 0), 1)));
    json_decref(rows);
    json_decref(j);

    snprintf(path, sizeof path, "/v1/connections/%s/tables/public/nope/profile", id);
    sim_api_expect_error("GET", path, NULL, 404, "NOT_FOUND");
    sim_api_expect_error("GET", "/v1/connections/conn_nope/tables/public/accounts/profile", NULL,
                         404, "NOT_FOUND");
    free(id);
}

static json_t *info_table(const char *conn_id, const char *table)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/information_schema?connection_id=%s&table=%s", conn_id, table);
    json_t *j = sim_api_expect("GET", path, NULL, 200);
    assert_int_equal(sim_api_int(j, "count"), 1);
    json_t *t = json_incref(json_array_get(json_object_get(j, "tables"), 0));
    json_decref(j);
    return t;
}

static void test_purge_caches(void **state)
{
    char *id = create_conn("purgeme", NULL);
    char path[256];
    snprintf(path, sizeof path, "/v1/connections/%s/tables/public/events/cache", id);
    sim_api_expect_204("DELETE", path);
    json_t *t = info_table(id, "events");
    assert_false(sim_api_bool(t, "synced"));
    sim_api_null(t, "last_sync");
    json_decref(t);
    t = info_table(id, "accounts");
    assert_true(sim_api_bool(t, "synced"));
    sim_api_str(t, "last_sync");
    json_decref(t);
    snprintf(path, sizeof path, "/v1/connections/%s", id);
    json_t *j = sim_api_expect("GET", path, NULL, 200);
    assert_int_equal(sim_api_int(j, "synced_table_count"), 1);
    assert_int_equal(sim_api_int(j, "table_count"), 2);
    json_decref(j);
    snprintf(path, sizeof path, "/v1/connections/%s/tables/public/events/profile", id);
    sim_api_expect_error("GET", path, NULL, 404, "NOT_FOUND");

    snprintf(path, sizeof path, "/v1/connections/%s/cache", id);
    sim_api_expect_204("DELETE", path);
    snprintf(path, sizeof path, "/v1/connections/%s", id);
    j = sim_api_expect("GET", path, NULL, 200);
    assert_int_equal(sim_api_int(j, "synced_table_count"), 0);
    json_decref(j);

    snprintf(path, sizeof path, "/v1/connections/%s/tables/public/nope/cache", id);
    sim_api_expect_error("DELETE", path, NULL, 404, "NOT_FOUND");
    sim_api_expect_error("DELETE", "/v1/connections/conn_nope/cache", NULL, 404, "NOT_FOUND");
    sim_api_expect_error("DELETE", "/v1/connections/conn_nope/tables/public/events/cache", NULL,
                         404, "NOT_FOUND");
    free(id);
}

static void test_information_schema(void **state)
{
    char *id = create_conn("infos", NULL);
    char path[512];
    snprintf(path, sizeof path, "/v1/information_schema?connection_id=%s", id);
    json_t *j = sim_api_expect("GET", path, NULL, 200);
    assert_int_equal(sim_api_int(j, "count"), 2);
    assert_false(sim_api_bool(j, "has_more"));
    sim_api_null(j, "next_cursor");
    assert_true(sim_api_int(j, "limit") > 0);
    json_t *t = json_array_get(json_object_get(j, "tables"), 0);
    sim_api_null(t, "columns");
    assert_string_equal(sim_api_str(t, "connection"), "infos");
    assert_string_equal(sim_api_str(t, "table"), "accounts"); /* ordered by name */
    sim_api_bool(t, "synced");
    json_decref(j);

    /* % wildcards; _ is literal */
    snprintf(path, sizeof path, "/v1/information_schema?connection_id=%s&table=ev%%25", id);
    j = sim_api_expect("GET", path, NULL, 200);
    assert_int_equal(sim_api_int(j, "count"), 1);
    json_decref(j);
    snprintf(path, sizeof path, "/v1/information_schema?connection_id=%s&table=_vents", id);
    j = sim_api_expect("GET", path, NULL, 200);
    assert_int_equal(sim_api_int(j, "count"), 0);
    json_decref(j);
    snprintf(path, sizeof path, "/v1/information_schema?connection_id=%s&schema=pub%%25", id);
    j = sim_api_expect("GET", path, NULL, 200);
    assert_int_equal(sim_api_int(j, "count"), 2);
    json_decref(j);

    snprintf(path, sizeof path,
             "/v1/information_schema?connection_id=%s&table=accounts&include_columns=true", id);
    j = sim_api_expect("GET", path, NULL, 200);
    json_t *cols = json_object_get(json_array_get(json_object_get(j, "tables"), 0), "columns");
    assert_int_equal(json_array_size(cols), 5);
    assert_string_equal(sim_api_str(json_array_get(cols, 0), "name"), "id");
    assert_string_equal(sim_api_str(json_array_get(cols, 0), "data_type"), "Int64");
    sim_api_bool(json_array_get(cols, 0), "nullable");
    json_decref(j);

    /* pagination: limit=1 walks both tables through next_cursor */
    snprintf(path, sizeof path, "/v1/information_schema?connection_id=%s&limit=1", id);
    j = sim_api_expect("GET", path, NULL, 200);
    assert_int_equal(sim_api_int(j, "count"), 1);
    assert_int_equal(sim_api_int(j, "limit"), 1);
    assert_true(sim_api_bool(j, "has_more"));
    snprintf(path, sizeof path, "/v1/information_schema?connection_id=%s&limit=1&cursor=%s", id,
             sim_api_str(j, "next_cursor"));
    json_decref(j);
    j = sim_api_expect("GET", path, NULL, 200);
    assert_int_equal(sim_api_int(j, "count"), 1);
    assert_false(sim_api_bool(j, "has_more"));
    sim_api_null(j, "next_cursor");
    assert_string_equal(sim_api_str(json_array_get(json_object_get(j, "tables"), 0), "table"),
                        "events");
    json_decref(j);

    /* all connections: demo's tables are there too */
    j = sim_api_expect("GET", "/v1/information_schema?limit=1000", NULL, 200);
    assert_true(sim_api_int(j, "count") >= 5);
    json_decref(j);

    sim_api_expect_error("GET", "/v1/information_schema?connection_id=conn_nope", NULL, 404,
                         "NOT_FOUND");
    sim_api_expect_error("GET", "/v1/information_schema?cursor=zz", NULL, 400, "BAD_REQUEST");
    sim_api_expect_error("GET", "/v1/information_schema?include_columns=maybe", NULL, 400,
                         "BAD_REQUEST");
    sim_api_expect_error("GET", "/v1/information_schema?limit=0", NULL, 400, "BAD_REQUEST");
    free(id);
}

static void test_delete_connection(void **state)
{
    char *id = create_conn("doomed", NULL);
    json_t *rows = query_rows("SELECT count(*) FROM doomed.public.accounts");
    json_decref(rows);
    char path[256];
    snprintf(path, sizeof path, "/v1/connections/%s", id);
    sim_api_expect_204("DELETE", path);
    sim_api_expect_error("GET", path, NULL, 404, "NOT_FOUND");
    sim_api_expect_error("DELETE", path, NULL, 404, "NOT_FOUND");
    long status = 0;
    json_t *j = sim_api("POST", "/v1/query",
                        "{\"sql\":\"SELECT count(*) FROM doomed.public.accounts\"}", &status);
    assert_int_equal(status, 400);
    json_decref(j);
    snprintf(path, sizeof path, "/v1/information_schema?connection_id=%s", id);
    sim_api_expect_error("GET", path, NULL, 404, "NOT_FOUND");
    /* the name is free again */
    free(create_conn("doomed", NULL));
    free(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connection_types),
        cmocka_unit_test(test_demo_connection_is_visible),
        cmocka_unit_test(test_create_get_list_query),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_secret_reference_and_skip_discovery),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_profile_real_statistics),
        cmocka_unit_test(test_purge_caches),
        cmocka_unit_test(test_information_schema),
        cmocka_unit_test(test_delete_connection),
    };
    return cmocka_run_group_tests(tests, sim_api_start, sim_api_stop);
}
