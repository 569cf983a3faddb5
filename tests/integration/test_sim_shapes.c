/*
 * test_sim_shapes: hotdata-sim answers with the shapes the official clients parse (their
 * generated models: RefreshResponse, JobResult, ColumnProfileInfo / ColumnProfileDetail,
 * ExecuteSavedQueryRequest), checked field by field: names, JSON types and values, the
 * values cross-checked against SQL over the same data.
 *
 *  - refresh: {} and a connection (SchemaRefreshResult), a table (TableRefreshResult), a
 *    connection's data (ConnectionRefreshResult), a bare schema_name and the other shapes
 *    the server refuses (400), unknown connection / table (404);
 *  - job results of every job type the sim runs (data_refresh_table,
 *    data_refresh_connection, create_index, dataset_refresh), null until the job succeeded;
 *  - table profiles: numeric / text / categorical / boolean / temporal details with min/max
 *    as strings, lengths as integers, avg_length and mean as numbers;
 *  - saved-query execute runs the version its body names (404 when there is none);
 *  - a list `limit` above the maximum (1000) is clamped on every list endpoint.
 */
#include "sim_api.h"

#include <limits.h>

static int setup(void **state)
{
    (void)state;
    sim_api_dir = harness_tmpdir("simshapes");
    const char *extra[] = {"--quiet", "--seed-rows", "3000", "--job-delay-ms", "60", NULL};
    if (harness_start_sim(&sim_api_proc, sim_api_dir, extra) != 0) {
        fprintf(stderr, "hotdata-sim did not start\n");
        return -1;
    }
    return 0;
}

/* The object has exactly these keys (NULL-terminated list). */
static void expect_keys(json_t *o, const char *const keys[])
{
    assert_true(json_is_object(o));
    size_t n = 0;
    for (; keys[n]; n++) {
        if (!json_object_get(o, keys[n]))
            fprintf(stderr, "missing field '%s'\n", keys[n]);
        assert_non_null(json_object_get(o, keys[n]));
    }
    if (json_object_size(o) != n) {
        char *d = json_dumps(o, 0);
        fprintf(stderr, "unexpected fields in %s\n", d);
        free(d);
    }
    assert_int_equal(json_object_size(o), n);
}

static long long q_int(const char *sql)
{
    json_t *j = sim_api_query(sql);
    json_t *v = json_array_get(json_array_get(json_object_get(j, "rows"), 0), 0);
    assert_true(json_is_integer(v));
    long long n = json_integer_value(v);
    json_decref(j);
    return n;
}

/* First cell of a query as text (numbers formatted as the API writes them). malloc'd. */
static char *q_cell_text(const char *sql)
{
    json_t *j = sim_api_query(sql);
    json_t *v = json_array_get(json_array_get(json_object_get(j, "rows"), 0), 0);
    char *s = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_ENCODE_ANY);
    json_decref(j);
    return s;
}

static double q_real(const char *sql)
{
    json_t *j = sim_api_query(sql);
    json_t *v = json_array_get(json_array_get(json_object_get(j, "rows"), 0), 0);
    assert_true(json_is_number(v));
    double d = json_number_value(v);
    json_decref(j);
    return d;
}

static void expect_400_msg(const char *body, const char *needle)
{
    json_t *j = sim_api_expect("POST", "/v1/refresh", body, 400);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "BAD_REQUEST");
    const char *m = sim_api_str(j, "message");
    if (!strstr(m, needle))
        fprintf(stderr, "message '%s' lacks '%s'\n", m, needle);
    assert_non_null(strstr(m, needle));
    assert_int_equal(sim_api_int(j, "status"), 400);
    json_decref(j);
}

static char *create_conn(const char *name, int skip_discovery)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"name\":\"%s\",\"source_type\":\"postgres\",\"config\":{\"host\":\"h\"}%s}", name,
             skip_discovery ? ",\"skip_discovery\":true" : "");
    json_t *j = sim_api_expect("POST", "/v1/connections", body, 201);
    char *id = strdup(sim_api_str(j, "id"));
    json_decref(j);
    return id;
}

static const char *const SCHEMA_KEYS[] = {"connections_refreshed", "connections_failed",
                                          "tables_discovered",     "tables_added",
                                          "tables_modified",       NULL};
static const char *const TABLE_KEYS[] = {"connection_id", "schema_name", "table_name",
                                         "rows_synced",   "duration_ms", NULL};
static const char *const CONN_KEYS[] = {"connection_id",
                                        "tables_refreshed",
                                        "tables_failed",
                                        "total_rows",
                                        "duration_ms",
                                        "errors",
                                        NULL};

static void check_table_result(json_t *o, const char *conn, const char *schema, const char *table,
                               const char *count_sql)
{
    expect_keys(o, TABLE_KEYS);
    assert_string_equal(sim_api_str(o, "connection_id"), conn);
    assert_string_equal(sim_api_str(o, "schema_name"), schema);
    assert_string_equal(sim_api_str(o, "table_name"), table);
    assert_int_equal(sim_api_int(o, "rows_synced"), q_int(count_sql));
    assert_true(sim_api_int(o, "duration_ms") >= 0);
}

static long long demo_total_rows(void)
{
    return q_int("SELECT (SELECT count(*) FROM demo.public.orders) + (SELECT count(*) FROM "
                 "demo.public.customers) + (SELECT count(*) FROM demo.public.products)");
}

static void check_conn_result(json_t *o, const char *conn, long long tables, long long rows)
{
    expect_keys(o, CONN_KEYS);
    assert_string_equal(sim_api_str(o, "connection_id"), conn);
    assert_int_equal(sim_api_int(o, "tables_refreshed"), tables);
    assert_int_equal(sim_api_int(o, "tables_failed"), 0);
    assert_int_equal(sim_api_int(o, "total_rows"), rows);
    assert_true(sim_api_int(o, "duration_ms") >= 0);
    assert_true(json_is_array(json_object_get(o, "errors")));
    assert_int_equal(json_array_size(json_object_get(o, "errors")), 0);
}

/* ---- refresh ---- */

static void test_refresh_schema_results(void **state)
{
    (void)state;
    char *skip = create_conn("shp_skip", 1);
    char *full = create_conn("shp_full", 0);
    json_t *l = sim_api_expect("GET", "/v1/connections", NULL, 200);
    long long nconn = (long long)json_array_size(json_object_get(l, "connections"));
    json_decref(l);
    assert_true(nconn >= 3);

    /* {}: a schema refresh of every connection (runtimedb: refresh_all_schemas) */
    json_t *o = sim_api_expect("POST", "/v1/refresh", "{}", 200);
    expect_keys(o, SCHEMA_KEYS);
    assert_int_equal(sim_api_int(o, "connections_refreshed"), nconn);
    assert_int_equal(sim_api_int(o, "connections_failed"), 0);
    assert_int_equal(sim_api_int(o, "tables_added"), 2); /* the skip_discovery connection's */
    assert_int_equal(sim_api_int(o, "tables_modified"), 0);
    json_t *info = sim_api_expect("GET", "/v1/information_schema?limit=1000", NULL, 200);
    long long ntables = (long long)json_array_size(json_object_get(info, "tables"));
    json_decref(info);
    assert_int_equal(sim_api_int(o, "tables_discovered"), ntables);
    json_decref(o);

    /* one connection: counts for that connection only */
    char body[256];
    snprintf(body, sizeof body, "{\"connection_id\":\"%s\"}", full);
    o = sim_api_expect("POST", "/v1/refresh", body, 200);
    expect_keys(o, SCHEMA_KEYS);
    assert_int_equal(sim_api_int(o, "connections_refreshed"), 1);
    assert_int_equal(sim_api_int(o, "connections_failed"), 0);
    assert_int_equal(sim_api_int(o, "tables_discovered"), 2);
    assert_int_equal(sim_api_int(o, "tables_added"), 0);
    assert_int_equal(sim_api_int(o, "tables_modified"), 0);
    json_decref(o);
    /* the skip_discovery one was discovered by {} already: nothing new now */
    snprintf(body, sizeof body, "{\"connection_id\":\"%s\",\"data\":false}", skip);
    o = sim_api_expect("POST", "/v1/refresh", body, 200);
    expect_keys(o, SCHEMA_KEYS);
    assert_int_equal(sim_api_int(o, "tables_discovered"), 2);
    assert_int_equal(sim_api_int(o, "tables_added"), 0);
    json_decref(o);
    json_decref(sim_api_query("SELECT count(*) FROM shp_skip.public.accounts"));

    /* a bare schema_name and the other shapes the server refuses */
    expect_400_msg("{\"connection_id\":\"conn_demo\",\"schema_name\":\"public\"}",
                   "schema-level refresh not supported");
    expect_400_msg("{\"connection_id\":\"conn_demo\",\"schema_name\":\"public\",\"data\":true}",
                   "data refresh with schema_name requires table_name");
    expect_400_msg("{\"schema_name\":\"public\"}", "schema_name requires connection_id");
    expect_400_msg("{\"connection_id\":\"conn_demo\",\"table_name\":\"orders\",\"data\":true}",
                   "table_name requires schema_name");
    expect_400_msg("{\"connection_id\":\"conn_demo\",\"schema_name\":\"public\",\"table_name\":"
                   "\"orders\"}",
                   "schema refresh cannot target specific table");
    expect_400_msg("{\"data\":true}", "data refresh requires connection_id");
    expect_400_msg("{\"async\":true}", "async is only supported for data refresh");
    sim_api_expect_error("POST", "/v1/refresh", "{\"connection_id\":\"conn_nope\"}", 404,
                         "NOT_FOUND");
    sim_api_expect_error("POST", "/v1/refresh", "[]", 400, "BAD_REQUEST");
    free(skip);
    free(full);
}

static void test_refresh_data_results(void **state)
{
    (void)state;
    long long before = q_int("SELECT count(*) FROM demo.public.orders");
    json_t *o = sim_api_expect("POST", "/v1/refresh",
                               "{\"connection_id\":\"conn_demo\",\"schema_name\":\"public\","
                               "\"table_name\":\"orders\",\"data\":true}",
                               200);
    check_table_result(o, "conn_demo", "public", "orders",
                       "SELECT count(*) FROM demo.public.orders");
    assert_int_equal(sim_api_int(o, "rows_synced"), before + 10);
    json_decref(o);

    o = sim_api_expect("POST", "/v1/refresh", "{\"connection_id\":\"conn_demo\",\"data\":true}",
                       200);
    check_conn_result(o, "conn_demo", 3, demo_total_rows());
    json_decref(o);

    sim_api_expect_error("POST", "/v1/refresh",
                         "{\"connection_id\":\"conn_demo\",\"schema_name\":\"public\","
                         "\"table_name\":\"nope\",\"data\":true}",
                         404, "NOT_FOUND");
    sim_api_expect_error("POST", "/v1/refresh", "{\"connection_id\":\"conn_nope\",\"data\":true}",
                         404, "NOT_FOUND");
}

/* ---- job results ---- */

/* Poll a job until succeeded; while it is not, its result must be null. */
static json_t *job_done(const char *id)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    for (int i = 0; i < 500; i++) {
        json_t *j = sim_api_expect("GET", path, NULL, 200);
        const char *s = sim_api_str(j, "status");
        if (strcmp(s, "succeeded") == 0) {
            assert_true(json_is_string(json_object_get(j, "completed_at")));
            return j;
        }
        if (strcmp(s, "pending") != 0 && strcmp(s, "running") != 0)
            fail_msg("job %s ended %s", id, s);
        sim_api_null(j, "result");
        json_decref(j);
        sim_api_sleep_ms(20);
    }
    fail_msg("job %s did not finish", id);
    return NULL;
}

static char *submit(const char *method, const char *path, const char *body, const char *type)
{
    json_t *a = sim_api_expect(method, path, body, 202);
    assert_string_equal(sim_api_str(a, "status"), "pending");
    assert_string_equal(sim_api_str(a, "job_type"), type);
    char *id = strdup(sim_api_str(a, "id"));
    char url[128];
    snprintf(url, sizeof url, "/v1/jobs/%s", id);
    assert_string_equal(sim_api_str(a, "status_url"), url);
    json_decref(a);
    /* right after submission the job is not done: result null */
    snprintf(url, sizeof url, "/v1/jobs/%s", id);
    json_t *j = sim_api_expect("GET", url, NULL, 200);
    if (strcmp(sim_api_str(j, "status"), "succeeded") != 0)
        sim_api_null(j, "result");
    json_decref(j);
    return id;
}

static void test_job_results(void **state)
{
    (void)state;
    /* data_refresh_table -> TableRefreshResult */
    char *id = submit("POST", "/v1/refresh",
                      "{\"connection_id\":\"conn_demo\",\"schema_name\":\"public\","
                      "\"table_name\":\"customers\",\"data\":true,\"async\":true}",
                      "data_refresh_table");
    json_t *j = job_done(id);
    assert_string_equal(sim_api_str(j, "job_type"), "data_refresh_table");
    check_table_result(json_object_get(j, "result"), "conn_demo", "public", "customers",
                       "SELECT count(*) FROM demo.public.customers");
    json_decref(j);
    free(id);

    /* data_refresh_connection -> ConnectionRefreshResult */
    id = submit("POST", "/v1/refresh",
                "{\"connection_id\":\"conn_demo\",\"data\":true,\"async\":true}",
                "data_refresh_connection");
    j = job_done(id);
    check_conn_result(json_object_get(j, "result"), "conn_demo", 3, demo_total_rows());
    json_decref(j);
    free(id);

    /* create_index -> IndexInfoResponse: the index exactly as the index list shows it */
    const char *ix = "/v1/connections/conn_demo/tables/public/orders/indexes";
    id = submit("POST", ix,
                "{\"index_name\":\"shp_status\",\"columns\":[\"status\"],\"async\":true}",
                "create_index");
    j = job_done(id);
    json_t *r = json_object_get(j, "result");
    assert_string_equal(sim_api_str(r, "index_name"), "shp_status");
    assert_string_equal(sim_api_str(r, "index_type"), "sorted");
    assert_string_equal(sim_api_str(r, "status"), "ready");
    sim_api_str(r, "created_at");
    sim_api_str(r, "updated_at");
    assert_true(json_is_array(json_object_get(r, "columns")));
    assert_int_equal(json_array_size(json_object_get(r, "columns")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r, "columns"), 0)),
                        "status");
    json_t *list = sim_api_expect("GET", ix, NULL, 200);
    json_t *found = NULL, *e;
    size_t i;
    json_array_foreach(json_object_get(list, "indexes"), i, e)
    {
        if (strcmp(sim_api_str(e, "index_name"), "shp_status") == 0)
            found = e;
    }
    assert_non_null(found);
    assert_true(json_equal(found, r));
    json_decref(list);
    json_decref(j);
    free(id);

    /* dataset_refresh -> RefreshDatasetResponse {id, version, status, created_at} */
    json_t *d = sim_api_expect(
        "POST", "/v1/datasets",
        "{\"label\":\"shp_ds\",\"source\":{\"inline\":{\"rows\":[{\"a\":1},{\"a\":2}]}}}", 201);
    char ds[64], body[160], vpath[160];
    snprintf(ds, sizeof ds, "%s", sim_api_str(d, "id"));
    json_decref(d);
    snprintf(body, sizeof body, "{\"dataset_id\":\"%s\",\"async\":true}", ds);
    id = submit("POST", "/v1/refresh", body, "dataset_refresh");
    j = job_done(id);
    r = json_object_get(j, "result");
    static const char *const DS_KEYS[] = {"id", "version", "status", "created_at", NULL};
    expect_keys(r, DS_KEYS);
    assert_string_equal(sim_api_str(r, "id"), ds);
    assert_int_equal(sim_api_int(r, "version"), 2);
    assert_string_equal(sim_api_str(r, "status"), "ready");
    snprintf(vpath, sizeof vpath, "/v1/datasets/%s/versions", ds);
    json_t *vers = sim_api_expect("GET", vpath, NULL, 200);
    json_t *v2 = NULL;
    json_array_foreach(json_object_get(vers, "versions"), i, e)
    {
        if (sim_api_int(e, "version") == 2)
            v2 = e;
    }
    assert_non_null(v2);
    assert_string_equal(sim_api_str(r, "created_at"), sim_api_str(v2, "created_at"));
    json_decref(vers);
    json_decref(j);
    free(id);

    /* the synchronous dataset refresh answers the same shape */
    snprintf(body, sizeof body, "{\"dataset_id\":\"%s\"}", ds);
    r = sim_api_expect("POST", "/v1/refresh", body, 200);
    expect_keys(r, DS_KEYS);
    assert_string_equal(sim_api_str(r, "id"), ds);
    assert_int_equal(sim_api_int(r, "version"), 3);
    assert_string_equal(sim_api_str(r, "status"), "ready");
    sim_api_str(r, "created_at");
    json_decref(r);
}

/* ---- table profiles ---- */

static json_t *prof_col(json_t *p, const char *name)
{
    json_t *c;
    size_t i;
    json_array_foreach(json_object_get(p, "columns"), i, c)
    {
        if (strcmp(sim_api_str(c, "name"), name) == 0) {
            static const char *const K[] = {"cardinality",     "data_type", "name", "null_count",
                                            "null_percentage", "profile",   NULL};
            expect_keys(c, K);
            sim_api_int(c, "cardinality");
            sim_api_int(c, "null_count");
            assert_true(json_is_real(json_object_get(c, "null_percentage")));
            return c;
        }
    }
    fail_msg("column %s missing from the profile", name);
    return NULL;
}

static json_t *detail(json_t *col, const char *type, const char *const keys[])
{
    json_t *d = json_object_get(col, "profile");
    expect_keys(d, keys);
    assert_string_equal(sim_api_str(d, "type"), type);
    return d;
}

static void test_profile_types(void **state)
{
    (void)state;
    json_t *p = sim_api_expect("GET", "/v1/connections/conn_demo/tables/public/customers/profile",
                               NULL, 200);
    long long rows = q_int("SELECT count(*) FROM demo.public.customers");
    assert_int_equal(sim_api_int(p, "row_count"), rows);

    /* integer column, > 200 distinct: numeric, min/max strings, mean a number */
    static const char *const NUM[] = {"type", "min", "max", "mean", NULL};
    json_t *c = prof_col(p, "id");
    assert_string_equal(sim_api_str(c, "data_type"), "Int64");
    json_t *d = detail(c, "numeric", NUM);
    char *mn = q_cell_text("SELECT min(id) FROM demo.public.customers");
    char *mx = q_cell_text("SELECT max(id) FROM demo.public.customers");
    assert_string_equal(sim_api_str(d, "min"), mn);
    assert_string_equal(sim_api_str(d, "max"), mx);
    free(mn);
    free(mx);
    assert_true(json_is_real(json_object_get(d, "mean")));
    double mean = q_real("SELECT avg(id) FROM demo.public.customers");
    assert_true(json_real_value(json_object_get(d, "mean")) > mean - 1e-9 &&
                json_real_value(json_object_get(d, "mean")) < mean + 1e-9);

    /* text column, > 200 distinct: lengths as integers, avg_length a number */
    static const char *const TXT[] = {"type", "min_length", "max_length", "avg_length", NULL};
    c = prof_col(p, "email");
    assert_string_equal(sim_api_str(c, "data_type"), "Utf8");
    assert_true(sim_api_int(c, "cardinality") > 200);
    d = detail(c, "text", TXT);
    assert_int_equal(sim_api_int(d, "min_length"),
                     q_int("SELECT min(length(email)) FROM demo.public.customers"));
    assert_int_equal(sim_api_int(d, "max_length"),
                     q_int("SELECT max(length(email)) FROM demo.public.customers"));
    assert_true(json_is_real(json_object_get(d, "avg_length")));
    double avg = q_real("SELECT avg(length(email)) FROM demo.public.customers");
    assert_true(json_real_value(json_object_get(d, "avg_length")) > avg - 1e-9 &&
                json_real_value(json_object_get(d, "avg_length")) < avg + 1e-9);

    /* text column, <= 200 distinct: categorical, values by count, counts add up */
    static const char *const CAT[] = {"type", "values", NULL};
    c = prof_col(p, "country");
    d = detail(c, "categorical", CAT);
    json_t *vals = json_object_get(d, "values");
    assert_int_equal((long long)json_array_size(vals), sim_api_int(c, "cardinality"));
    long long sum = 0, prev = LLONG_MAX;
    json_t *v;
    size_t i;
    json_array_foreach(vals, i, v)
    {
        static const char *const VK[] = {"value", "count", NULL};
        expect_keys(v, VK);
        const char *val = sim_api_str(v, "value");
        long long n = sim_api_int(v, "count");
        assert_true(n <= prev);
        prev = n;
        sum += n;
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM demo.public.customers WHERE country = '%s'",
                 val);
        assert_int_equal(n, q_int(sql));
    }
    assert_int_equal(sum, rows - sim_api_int(c, "null_count"));

    /* boolean column: true/false counts */
    static const char *const BOOL[] = {"type", "true_count", "false_count", NULL};
    c = prof_col(p, "is_active");
    assert_string_equal(sim_api_str(c, "data_type"), "Boolean");
    d = detail(c, "boolean", BOOL);
    assert_int_equal(sim_api_int(d, "true_count"),
                     q_int("SELECT count(*) FROM demo.public.customers WHERE is_active"));
    assert_int_equal(sim_api_int(d, "false_count"),
                     q_int("SELECT count(*) FROM demo.public.customers WHERE NOT is_active"));
    json_decref(p);

    /* timestamp columns: temporal, min/max ISO-8601 strings; numeric <= 200 distinct with
     * nulls: categorical with a null value */
    char *conn = create_conn("shp_prof", 0);
    char path[256];
    snprintf(path, sizeof path, "/v1/connections/%s/tables/public/events/profile", conn);
    p = sim_api_expect("GET", path, NULL, 200);
    static const char *const TMP[] = {"type", "min", "max", NULL};
    c = prof_col(p, "ts");
    assert_true(strncmp(sim_api_str(c, "data_type"), "Timestamp", 9) == 0);
    d = detail(c, "temporal", TMP);
    mn = q_cell_text("SELECT min(ts) FROM shp_prof.public.events");
    mx = q_cell_text("SELECT max(ts) FROM shp_prof.public.events");
    /* ISO-8601: the date part equals SQL's, then 'T' */
    assert_int_equal(strncmp(sim_api_str(d, "min"), mn, 10), 0);
    assert_int_equal(strncmp(sim_api_str(d, "max"), mx, 10), 0);
    assert_int_equal(sim_api_str(d, "min")[10], 'T');
    assert_true(strcmp(sim_api_str(d, "min"), sim_api_str(d, "max")) < 0);
    free(mn);
    free(mx);

    c = prof_col(p, "amount");
    assert_string_equal(sim_api_str(c, "data_type"), "Float64");
    long long nulls = sim_api_int(c, "null_count");
    assert_int_equal(nulls, q_int("SELECT count(*) - count(amount) FROM shp_prof.public.events"));
    assert_true(nulls > 0);
    d = detail(c, "categorical", CAT);
    vals = json_object_get(d, "values");
    int saw_null = 0;
    json_array_foreach(vals, i, v)
    {
        json_t *val = json_object_get(v, "value");
        assert_true(json_is_string(val) || json_is_null(val));
        if (json_is_null(val)) {
            saw_null = 1;
            assert_int_equal(sim_api_int(v, "count"), nulls);
        }
    }
    assert_true(saw_null);

    /* an integer column with exactly 200 distinct values is still categorical */
    c = prof_col(p, "id");
    assert_int_equal(sim_api_int(c, "cardinality"), 200);
    d = detail(c, "categorical", CAT);
    assert_int_equal(json_array_size(json_object_get(d, "values")), 200);
    json_decref(p);

    /* accounts.created_at: a second timestamp column */
    snprintf(path, sizeof path, "/v1/connections/%s/tables/public/accounts/profile", conn);
    p = sim_api_expect("GET", path, NULL, 200);
    d = detail(prof_col(p, "created_at"), "temporal", TMP);
    sim_api_str(d, "min");
    json_decref(p);
    free(conn);
}

/* ---- saved-query versions ---- */

static json_t *execute_raw(const char *id, const char *body, long *status)
{
    char *url = harness_url("http://127.0.0.1:%d/v1/queries/%s/execute", sim_api_proc.port, id);
    const char *h[] = {"Authorization: Bearer tok_test", "X-Workspace-Id: ws_test",
                       "Content-Type: application/json", NULL};
    hresp r;
    assert_int_equal(http_do("POST", url, h, body, body ? strlen(body) : 0, &r), 0);
    free(url);
    *status = r.status;
    json_t *j = r.len ? json_loadb(r.body, r.len, 0, NULL) : NULL;
    hresp_free(&r);
    return j;
}

static long long first_int(json_t *resp)
{
    json_t *v = json_array_get(json_array_get(json_object_get(resp, "rows"), 0), 0);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static void test_saved_query_execute_version(void **state)
{
    (void)state;
    json_t *q = sim_api_expect(
        "POST", "/v1/queries",
        "{\"name\":\"shp_sq\",\"sql\":\"SELECT count(*) AS n FROM demo.public.orders WHERE "
        "quantity = 1\"}",
        201);
    char id[64], path[128];
    snprintf(id, sizeof id, "%s", sim_api_str(q, "id"));
    json_decref(q);
    snprintf(path, sizeof path, "/v1/queries/%s", id);
    json_decref(sim_api_expect("PUT", path,
                               "{\"sql\":\"SELECT count(*) AS n FROM demo.public.orders WHERE "
                               "quantity >= 1\"}",
                               200));
    long long v1 = q_int("SELECT count(*) FROM demo.public.orders WHERE quantity = 1");
    long long v2 = q_int("SELECT count(*) FROM demo.public.orders WHERE quantity >= 1");
    assert_true(v1 != v2);

    long st = 0;
    /* empty body with Content-Type: application/json (the official clients): latest */
    json_t *r = execute_raw(id, NULL, &st);
    assert_int_equal(st, 200);
    assert_int_equal(first_int(r), v2);
    json_decref(r);
    r = execute_raw(id, "{}", &st);
    assert_int_equal(st, 200);
    assert_int_equal(first_int(r), v2);
    json_decref(r);
    /* the older version's SQL runs */
    r = execute_raw(id, "{\"version\":1}", &st);
    assert_int_equal(st, 200);
    assert_int_equal(first_int(r), v1);
    char run[64];
    snprintf(run, sizeof run, "%s", sim_api_str(r, "query_run_id"));
    json_decref(r);
    snprintf(path, sizeof path, "/v1/query-runs/%s", run);
    json_t *qr = sim_api_expect("GET", path, NULL, 200);
    assert_string_equal(sim_api_str(qr, "saved_query_id"), id);
    assert_int_equal(sim_api_int(qr, "saved_query_version"), 1);
    json_decref(qr);
    r = execute_raw(id, "{\"version\":2}", &st);
    assert_int_equal(st, 200);
    assert_int_equal(first_int(r), v2);
    json_decref(r);

    /* versions that do not exist: 404 API-shaped; a non-integer version: 400 */
    const char *missing[] = {"{\"version\":3}", "{\"version\":0}", "{\"version\":-1}",
                             "{\"version\":99999999999}"};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        r = execute_raw(id, missing[i], &st);
        assert_int_equal(st, 404);
        assert_string_equal(json_string_value(json_object_get(json_object_get(r, "error"), "code")),
                            "NOT_FOUND");
        assert_int_equal(sim_api_int(r, "status"), 404);
        sim_api_str(r, "message");
        json_decref(r);
    }
    r = execute_raw(id, "{\"version\":\"1\"}", &st);
    assert_int_equal(st, 400);
    json_decref(r);
    r = execute_raw("svq_nope", "{\"version\":1}", &st);
    assert_int_equal(st, 404);
    json_decref(r);
}

/* ---- list limits ---- */

/* GET path (with ?limit=...): 200, the list under key has at most max items; returns the
 * body. */
static json_t *list_at_most(const char *path, const char *key, size_t max)
{
    json_t *j = sim_api_expect("GET", path, NULL, 200);
    json_t *a = json_object_get(j, key);
    assert_true(json_is_array(a));
    assert_true(json_array_size(a) <= max);
    json_t *lim = json_object_get(j, "limit");
    if (lim)
        assert_int_equal(json_integer_value(lim), 1000);
    return j;
}

static void test_list_limit_clamped(void **state)
{
    (void)state;
    /* more than the maximum of runs and results exist */
    for (int i = 0; i < 1005; i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"sql\":\"SELECT %d AS i\"}", i);
        json_decref(sim_api_expect("POST", "/v1/query", body, 200));
    }
    json_t *j = list_at_most("/v1/results?limit=1000000", "results", 1000);
    assert_int_equal(json_array_size(json_object_get(j, "results")), 1000);
    assert_int_equal(sim_api_int(j, "count"), 1000);
    assert_true(sim_api_bool(j, "has_more"));
    json_decref(j);
    j = list_at_most("/v1/query-runs?limit=1000000", "query_runs", 1000);
    assert_int_equal(json_array_size(json_object_get(j, "query_runs")), 1000);
    assert_true(sim_api_bool(j, "has_more"));
    json_decref(j);
    /* a limit too large for any integer type is clamped too */
    j = list_at_most("/v1/results?limit=99999999999999999999999999", "results", 1000);
    assert_int_equal(json_array_size(json_object_get(j, "results")), 1000);
    json_decref(j);

    /* every other list endpoint */
    json_t *d = sim_api_expect(
        "POST", "/v1/datasets",
        "{\"label\":\"shp_lim\",\"source\":{\"inline\":{\"rows\":[{\"a\":1}]}}}", 201);
    char p[256];
    json_t *q =
        sim_api_expect("POST", "/v1/queries", "{\"name\":\"shp_lim\",\"sql\":\"SELECT 1\"}", 201);
    json_decref(list_at_most("/v1/jobs?limit=1000000", "jobs", 1000));
    json_decref(list_at_most("/v1/datasets?limit=1000000", "datasets", 1000));
    snprintf(p, sizeof p, "/v1/datasets/%s/versions?limit=1000000", sim_api_str(d, "id"));
    json_decref(list_at_most(p, "versions", 1000));
    json_decref(list_at_most("/v1/queries?limit=1000000", "queries", 1000));
    snprintf(p, sizeof p, "/v1/queries/%s/versions?limit=1000000", sim_api_str(q, "id"));
    json_decref(list_at_most(p, "versions", 1000));
    json_decref(list_at_most("/v1/information_schema?limit=1000000", "tables", 1000));
    json_decref(d);
    json_decref(q);

    /* still refused: not an integer, or below 1 */
    sim_api_expect_error("GET", "/v1/results?limit=abc", NULL, 400, "BAD_REQUEST");
    sim_api_expect_error("GET", "/v1/jobs?limit=0", NULL, 400, "BAD_REQUEST");
    sim_api_expect_error("GET", "/v1/queries?limit=-5", NULL, 400, "BAD_REQUEST");
    sim_api_expect_error("GET", "/v1/datasets?limit=1.5", NULL, 400, "BAD_REQUEST");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refresh_schema_results),
        cmocka_unit_test(test_refresh_data_results),
        cmocka_unit_test(test_job_results),
        cmocka_unit_test(test_profile_types),
        cmocka_unit_test(test_saved_query_execute_version),
        cmocka_unit_test(test_list_limit_clamped),
    };
    return cmocka_run_group_tests(tests, setup, sim_api_stop);
}
