/*
 * test_sim_datasets: contract of /v1/files and /v1/datasets on a running hotdata-sim: an
 * uploaded CSV / JSON file becomes a dataset with inferred column types that SQL can query
 * as datasets.main.<table>; inline sources; label -> table_name; versions, pinning
 * (pin / unpin / omit) observed through SQL results; rename; delete; every documented error.
 */
#include "sim_api.h"

static json_t *upload(const char *content_type, const char *data, long want)
{
    char *url = harness_url("http://127.0.0.1:%d/v1/files", sim_api_proc.port);
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
    const char *hdrs[] = {"Authorization: Bearer tok_test", "X-Workspace-Id: ws_test", ct, NULL};
    hresp r;
    assert_int_equal(http_do("POST", url, hdrs, data, strlen(data), &r), 0);
    free(url);
    if (r.status != want)
        fprintf(stderr, "upload: want %ld got %ld: %s\n", want, r.status, r.body);
    assert_int_equal(r.status, want);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    hresp_free(&r);
    assert_non_null(j);
    return j;
}

static json_t *rows_of(const char *sql)
{
    json_t *j = sim_api_query(sql);
    json_t *rows = json_incref(json_object_get(j, "rows"));
    json_decref(j);
    return rows;
}

static long long scalar_int(const char *sql)
{
    json_t *rows = rows_of(sql);
    json_t *v = json_array_get(json_array_get(rows, 0), 0);
    assert_true(json_is_integer(v));
    long long n = json_integer_value(v);
    json_decref(rows);
    return n;
}

static void expect_sql_fails(const char *sql)
{
    json_t *b = json_pack("{s:s}", "sql", sql);
    char *body = json_dumps(b, 0);
    json_decref(b);
    long status = 0;
    json_t *j = sim_api("POST", "/v1/query", body, &status);
    free(body);
    json_decref(j);
    assert_int_equal(status, 400);
}

static json_t *column(json_t *ds, const char *name)
{
    json_t *cols = json_object_get(ds, "columns");
    for (size_t i = 0; i < json_array_size(cols); i++)
        if (strcmp(sim_api_str(json_array_get(cols, i), "name"), name) == 0)
            return json_array_get(cols, i);
    fail_msg("column %s missing", name);
    return NULL;
}

static int list_has_upload(const char *query, const char *id)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/files%s", query);
    json_t *j = sim_api_expect("GET", path, NULL, 200);
    int found = 0;
    json_t *list = json_object_get(j, "uploads");
    for (size_t i = 0; i < json_array_size(list); i++)
        if (strcmp(sim_api_str(json_array_get(list, i), "id"), id) == 0)
            found = 1;
    json_decref(j);
    return found;
}

static const char sales_csv[] = "id,region,amount,active,note\r\n"
                                "1,\"Smith, John\",10.5,true,\"said \"\"hi\"\"\"\r\n"
                                "2,emea,20,false,\r\n"
                                "3,amer,30.25,TRUE,\"multi\nline\"\r\n"
                                "4,emea,,false,x\r\n";

static void test_upload_csv_to_dataset_to_sql(void **state)
{
    json_t *u = upload("text/csv", sales_csv, 201);
    char uid[128];
    snprintf(uid, sizeof uid, "%s", sim_api_str(u, "id"));
    assert_int_equal(sim_api_int(u, "size_bytes"), (long long)strlen(sales_csv));
    assert_string_equal(sim_api_str(u, "content_type"), "text/csv");
    assert_string_equal(sim_api_str(u, "status"), "uploaded");
    sim_api_str(u, "created_at");
    json_decref(u);
    assert_true(list_has_upload("", uid));
    assert_true(list_has_upload("?status=uploaded", uid));
    assert_false(list_has_upload("?status=consumed", uid));

    char body[512];
    snprintf(body, sizeof body,
             "{\"label\":\"Sales Data 2024\",\"source\":{\"upload_id\":\"%s\",\"format\":\"csv\"}}",
             uid);
    json_t *d = sim_api_expect("POST", "/v1/datasets", body, 201);
    assert_string_equal(sim_api_str(d, "label"), "Sales Data 2024");
    assert_string_equal(sim_api_str(d, "table_name"), "sales_data_2024");
    assert_string_equal(sim_api_str(d, "schema_name"), "main");
    sim_api_str(d, "status");
    sim_api_str(d, "created_at");
    char path[256];
    snprintf(path, sizeof path, "/v1/datasets/%s", sim_api_str(d, "id"));
    json_decref(d);
    assert_true(list_has_upload("?status=consumed", uid));

    d = sim_api_expect("GET", path, NULL, 200);
    assert_int_equal(sim_api_int(d, "latest_version"), 1);
    sim_api_null(d, "pinned_version");
    assert_string_equal(sim_api_str(d, "source_type"), "upload");
    sim_api_str(d, "updated_at");
    assert_int_equal(json_array_size(json_object_get(d, "columns")), 5);
    assert_string_equal(sim_api_str(column(d, "id"), "data_type"), "Int64");
    assert_string_equal(sim_api_str(column(d, "region"), "data_type"), "Utf8");
    assert_string_equal(sim_api_str(column(d, "amount"), "data_type"), "Float64");
    assert_string_equal(sim_api_str(column(d, "active"), "data_type"), "Boolean");
    assert_true(sim_api_bool(column(d, "amount"), "nullable"));
    assert_false(sim_api_bool(column(d, "id"), "nullable"));
    json_decref(d);

    assert_int_equal(scalar_int("SELECT count(*) FROM datasets.main.sales_data_2024"), 4);
    assert_int_equal(scalar_int("SELECT count(*) FROM datasets.main.sales_data_2024 WHERE "
                                "region = 'Smith, John' AND note = 'said \"hi\"'"),
                     1);
    assert_int_equal(scalar_int("SELECT count(*) FROM datasets.main.sales_data_2024 WHERE "
                                "amount IS NULL"),
                     1);
    json_t *rows = rows_of("SELECT sum(amount) FROM datasets.main.sales_data_2024");
    assert_true(json_number_value(json_array_get(json_array_get(rows, 0), 0)) > 60.74 &&
                json_number_value(json_array_get(json_array_get(rows, 0), 0)) < 60.76);
    json_decref(rows);
}

static void test_json_upload_and_inline_sources(void **state)
{
    json_t *u =
        upload("application/json",
               "[{\"k\":\"a\",\"v\":1},{\"k\":\"b\",\"v\":2.5,\"extra\":true},{\"k\":null}]", 201);
    char body[1024];
    snprintf(body, sizeof body, "{\"label\":\"json one\",\"source\":{\"upload_id\":\"%s\"}}",
             sim_api_str(u, "id"));
    json_decref(u);
    json_t *d = sim_api_expect("POST", "/v1/datasets", body, 201);
    assert_string_equal(sim_api_str(d, "table_name"), "json_one");
    json_decref(d);
    assert_int_equal(scalar_int("SELECT count(*) FROM datasets.main.json_one"), 3);
    assert_int_equal(scalar_int("SELECT count(*) FROM datasets.main.json_one WHERE extra"), 1);
    assert_int_equal(scalar_int("SELECT count(*) FROM datasets.main.json_one WHERE v > 2"), 1);

    d = sim_api_expect("POST", "/v1/datasets",
                       "{\"label\":\"inline cols\",\"table_name\":\"inl\",\"source\":{\"inline\":"
                       "{\"columns\":[\"a\",{\"name\":\"b\",\"data_type\":\"Int64\"}],\"rows\":"
                       "[[\"x\",1],[\"y\",\"2\"],[null,3]]}}}",
                       201);
    assert_string_equal(sim_api_str(d, "table_name"), "inl");
    char path[256];
    snprintf(path, sizeof path, "/v1/datasets/%s", sim_api_str(d, "id"));
    json_decref(d);
    d = sim_api_expect("GET", path, NULL, 200);
    assert_string_equal(sim_api_str(d, "source_type"), "inline");
    assert_string_equal(sim_api_str(column(d, "b"), "data_type"), "Int64");
    json_decref(d);
    assert_int_equal(scalar_int("SELECT sum(b) FROM datasets.main.inl"), 6);

    json_decref(sim_api_expect("POST", "/v1/datasets",
                               "{\"label\":\"inline objs\",\"source\":{\"inline\":{\"rows\":"
                               "[{\"n\":1},{\"n\":2},{\"n\":3}]}}}",
                               201));
    assert_int_equal(scalar_int("SELECT sum(n) FROM datasets.main.inline_objs"), 6);
    json_decref(sim_api_expect("POST", "/v1/datasets",
                               "{\"label\":\"inline csv\",\"source\":{\"inline\":{\"format\":"
                               "\"csv\",\"content\":\"p,q\\n1,2\\n3,4\\n\"}}}",
                               201));
    assert_int_equal(scalar_int("SELECT sum(p) + sum(q) FROM datasets.main.inline_csv"), 10);
}

static void test_create_errors(void **state)
{
    json_decref(sim_api_expect(
        "POST", "/v1/datasets",
        "{\"label\":\"taken\",\"source\":{\"inline\":{\"rows\":[{\"a\":1}]}}}", 201));
    sim_api_expect_error("POST", "/v1/datasets",
                         "{\"label\":\"taken\",\"table_name\":\"other\",\"source\":{\"inline\":{"
                         "\"rows\":[{\"a\":1}]}}}",
                         409, "CONFLICT");
    sim_api_expect_error("POST", "/v1/datasets",
                         "{\"label\":\"another\",\"table_name\":\"taken\",\"source\":{\"inline\":{"
                         "\"rows\":[{\"a\":1}]}}}",
                         409, "CONFLICT");
    sim_api_expect_error("POST", "/v1/datasets", "{\"source\":{\"inline\":{\"rows\":[]}}}", 400,
                         "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/datasets", "{\"label\":\"nosrc\"}", 400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/datasets", "{\"label\":\"s1\",\"source\":{}}", 400,
                         "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/datasets", "{\"label\":\"s2\",\"source\":\"file.csv\"}", 400,
                         "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/datasets",
                         "{\"label\":\"s3\",\"source\":{\"upload_id\":\"upl_nope\"}}", 400,
                         "BAD_REQUEST");
    json_t *u = upload("text/csv", "a,b\n1,2\n", 201);
    char body[512];
    snprintf(body, sizeof body,
             "{\"label\":\"s4\",\"source\":{\"upload_id\":\"%s\",\"format\":\"xml\"}}",
             sim_api_str(u, "id"));
    sim_api_expect_error("POST", "/v1/datasets", body, 400, "BAD_REQUEST");
    snprintf(body, sizeof body,
             "{\"label\":\"s5\",\"source\":{\"upload_id\":\"%s\",\"format\":\"json\"}}",
             sim_api_str(u, "id"));
    sim_api_expect_error("POST", "/v1/datasets", body, 400, "BAD_REQUEST"); /* not JSON */
    json_decref(u);
    u = upload("text/csv", "a,b\n1,\"never closed\n", 201);
    snprintf(body, sizeof body, "{\"label\":\"s6\",\"source\":{\"upload_id\":\"%s\"}}",
             sim_api_str(u, "id"));
    sim_api_expect_error("POST", "/v1/datasets", body, 400, "BAD_REQUEST");
    json_decref(u);
    u = upload("text/csv", "a,b\n1,2,3\n", 201);
    snprintf(body, sizeof body, "{\"label\":\"s7\",\"source\":{\"upload_id\":\"%s\"}}",
             sim_api_str(u, "id"));
    sim_api_expect_error("POST", "/v1/datasets", body, 400, "BAD_REQUEST");
    json_decref(u);
    u = upload("text/csv", "a,A\n1,2\n", 201);
    snprintf(body, sizeof body, "{\"label\":\"s8\",\"source\":{\"upload_id\":\"%s\"}}",
             sim_api_str(u, "id"));
    sim_api_expect_error("POST", "/v1/datasets", body, 400, "BAD_REQUEST");
    json_decref(u);
    sim_api_expect_error("POST", "/v1/datasets",
                         "{\"label\":\"s9\",\"table_name\":\"1abc\",\"source\":{\"inline\":{"
                         "\"rows\":[{\"a\":1}]}}}",
                         400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/datasets",
                         "{\"label\":7,\"source\":{\"inline\":{\"rows\":[{\"a\":1}]}}}", 400,
                         "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/datasets",
                         "{\"label\":\"s10\",\"source\":{\"inline\":{\"columns\":[\"a\"],\"rows\":"
                         "[[1,2]]}}}",
                         400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/datasets",
                         "{\"label\":\"s11\",\"source\":{\"inline\":{\"columns\":[{\"name\":\"a\","
                         "\"data_type\":\"Int64\"}],\"rows\":[[\"abc\"]]}}}",
                         400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/datasets", "{\"label\":", 400, "BAD_REQUEST");
    /* nothing half-made stays behind */
    expect_sql_fails("SELECT * FROM datasets.main.s7");
    /* uploads: empty body */
    json_t *e = upload("text/csv", "", 400);
    json_decref(e);
}

static void test_update_versions_pinning(void **state)
{
    json_t *d =
        sim_api_expect("POST", "/v1/datasets",
                       "{\"label\":\"pins\",\"source\":{\"inline\":{\"rows\":[{\"v\":1}]}}}", 201);
    char path[256], vpath[256];
    snprintf(path, sizeof path, "/v1/datasets/%s", sim_api_str(d, "id"));
    snprintf(vpath, sizeof vpath, "/v1/datasets/%s/versions", sim_api_str(d, "id"));
    json_decref(d);
    assert_int_equal(scalar_int("SELECT sum(v) FROM datasets.main.pins"), 1);

    /* new data -> version 2, served by default */
    d = sim_api_expect("PUT", path, "{\"source\":{\"inline\":{\"rows\":[{\"v\":10},{\"v\":20}]}}}",
                       200);
    assert_int_equal(sim_api_int(d, "latest_version"), 2);
    sim_api_null(d, "pinned_version");
    json_decref(d);
    assert_int_equal(scalar_int("SELECT sum(v) FROM datasets.main.pins"), 30);

    /* pin to 1: SQL sees version 1 */
    d = sim_api_expect("PUT", path, "{\"pinned_version\":1}", 200);
    assert_int_equal(sim_api_int(d, "pinned_version"), 1);
    assert_int_equal(sim_api_int(d, "latest_version"), 2);
    sim_api_str(d, "updated_at");
    assert_string_equal(sim_api_str(d, "table_name"), "pins");
    assert_string_equal(sim_api_str(d, "label"), "pins");
    json_decref(d);
    assert_int_equal(scalar_int("SELECT sum(v) FROM datasets.main.pins"), 1);

    /* omitted: unchanged */
    d = sim_api_expect("PUT", path, "{\"label\":\"pins renamed\"}", 200);
    assert_int_equal(sim_api_int(d, "pinned_version"), 1);
    assert_string_equal(sim_api_str(d, "label"), "pins renamed");
    json_decref(d);
    d = sim_api_expect("GET", path, NULL, 200);
    assert_int_equal(sim_api_int(d, "pinned_version"), 1);
    json_decref(d);

    /* null: unpinned, back to the latest */
    d = sim_api_expect("PUT", path, "{\"pinned_version\":null}", 200);
    sim_api_null(d, "pinned_version");
    json_decref(d);
    assert_int_equal(scalar_int("SELECT sum(v) FROM datasets.main.pins"), 30);

    sim_api_expect_error("PUT", path, "{\"pinned_version\":3}", 400, "BAD_REQUEST");
    sim_api_expect_error("PUT", path, "{\"pinned_version\":0}", 400, "BAD_REQUEST");
    sim_api_expect_error("PUT", path, "{\"pinned_version\":\"1\"}", 400, "BAD_REQUEST");

    json_t *v = sim_api_expect("GET", vpath, NULL, 200);
    assert_int_equal(sim_api_int(v, "count"), 2);
    assert_false(sim_api_bool(v, "has_more"));
    sim_api_int(v, "limit");
    assert_int_equal(sim_api_int(v, "offset"), 0);
    sim_api_str(v, "dataset_id");
    json_t *first = json_array_get(json_object_get(v, "versions"), 0);
    assert_int_equal(sim_api_int(first, "version"), 2);
    sim_api_str(first, "id");
    sim_api_str(first, "created_at");
    assert_string_equal(sim_api_str(first, "source_type"), "inline");
    json_decref(v);
    v = sim_api_expect("GET", "/v1/datasets/ds_nope/versions", NULL, 404);
    json_decref(v);

    /* rename the table: the old name stops resolving, the new one serves the data */
    d = sim_api_expect("PUT", path, "{\"table_name\":\"pins_v2\"}", 200);
    assert_string_equal(sim_api_str(d, "table_name"), "pins_v2");
    json_decref(d);
    assert_int_equal(scalar_int("SELECT sum(v) FROM datasets.main.pins_v2"), 30);
    expect_sql_fails("SELECT * FROM datasets.main.pins");

    json_decref(sim_api_expect(
        "POST", "/v1/datasets",
        "{\"label\":\"blocker\",\"source\":{\"inline\":{\"rows\":[{\"a\":1}]}}}", 201));
    sim_api_expect_error("PUT", path, "{\"table_name\":\"blocker\"}", 409, "CONFLICT");
    sim_api_expect_error("PUT", path, "{\"label\":\"blocker\"}", 409, "CONFLICT");
    sim_api_expect_error("PUT", path, "{\"table_name\":\"bad name\"}", 400, "BAD_REQUEST");
    sim_api_expect_error("PUT", "/v1/datasets/ds_nope", "{\"label\":\"x\"}", 404, "NOT_FOUND");
    sim_api_expect_error("GET", "/v1/datasets/ds_nope", NULL, 404, "NOT_FOUND");

    /* POST /v1/refresh with dataset_id reloads the source as a new version */
    char rbody[512];
    snprintf(rbody, sizeof rbody, "{\"dataset_id\":\"%s\"}", path + strlen("/v1/datasets/"));
    long status = 0;
    json_t *r = sim_api("POST", "/v1/refresh", rbody, &status);
    json_decref(r);
    assert_int_equal(status, 200);
    d = sim_api_expect("GET", path, NULL, 200);
    assert_int_equal(sim_api_int(d, "latest_version"), 3);
    json_decref(d);
}

static void test_list_and_delete(void **state)
{
    json_t *j = sim_api_expect("GET", "/v1/datasets?limit=1", NULL, 200);
    assert_int_equal(sim_api_int(j, "count"), 1);
    assert_true(sim_api_bool(j, "has_more"));
    assert_int_equal(sim_api_int(j, "limit"), 1);
    assert_int_equal(sim_api_int(j, "offset"), 0);
    json_t *item = json_array_get(json_object_get(j, "datasets"), 0);
    sim_api_str(item, "id");
    sim_api_str(item, "label");
    sim_api_str(item, "schema_name");
    sim_api_str(item, "table_name");
    sim_api_int(item, "latest_version");
    assert_non_null(json_object_get(item, "pinned_version"));
    sim_api_str(item, "created_at");
    sim_api_str(item, "updated_at");
    json_decref(j);
    j = sim_api_expect("GET", "/v1/datasets?limit=1000", NULL, 200);
    long long total = sim_api_int(j, "count");
    assert_false(sim_api_bool(j, "has_more"));
    json_decref(j);
    char path[128];
    snprintf(path, sizeof path, "/v1/datasets?offset=%lld", total - 1);
    j = sim_api_expect("GET", path, NULL, 200);
    assert_int_equal(sim_api_int(j, "count"), 1);
    assert_false(sim_api_bool(j, "has_more"));
    json_decref(j);
    sim_api_expect_error("GET", "/v1/datasets?limit=abc", NULL, 400, "BAD_REQUEST");

    json_t *d = sim_api_expect(
        "POST", "/v1/datasets",
        "{\"label\":\"doomed\",\"source\":{\"inline\":{\"rows\":[{\"a\":1}]}}}", 201);
    snprintf(path, sizeof path, "/v1/datasets/%s", sim_api_str(d, "id"));
    json_decref(d);
    assert_int_equal(scalar_int("SELECT count(*) FROM datasets.main.doomed"), 1);
    sim_api_expect_204("DELETE", path);
    sim_api_expect_error("GET", path, NULL, 404, "NOT_FOUND");
    sim_api_expect_error("DELETE", path, NULL, 404, "NOT_FOUND");
    expect_sql_fails("SELECT count(*) FROM datasets.main.doomed");
    /* label and table name are free again */
    json_decref(sim_api_expect(
        "POST", "/v1/datasets",
        "{\"label\":\"doomed\",\"source\":{\"inline\":{\"rows\":[{\"a\":2}]}}}", 201));
}

static void test_declared_columns_and_query_sources(void **state)
{
    /* the service's tagged forms: type + declared column types */
    json_t *u = upload("text/csv", "id,score\n1,2\n3,4\n", 201);
    char body[1024];
    snprintf(body, sizeof body,
             "{\"label\":\"typed\",\"source\":{\"type\":\"upload\",\"upload_id\":\"%s\","
             "\"format\":\"csv\",\"columns\":{\"score\":\"Float64\"}}}",
             sim_api_str(u, "id"));
    json_t *d = sim_api_expect("POST", "/v1/datasets", body, 201);
    char path[256];
    snprintf(path, sizeof path, "/v1/datasets/%s", sim_api_str(d, "id"));
    json_decref(d);
    d = sim_api_expect("GET", path, NULL, 200);
    assert_string_equal(sim_api_str(column(d, "score"), "data_type"), "Float64");
    assert_string_equal(sim_api_str(column(d, "id"), "data_type"), "Int64"); /* inferred */
    json_decref(d);
    snprintf(body, sizeof body,
             "{\"label\":\"typed2\",\"source\":{\"type\":\"upload\",\"upload_id\":\"%s\","
             "\"columns\":{\"nope\":\"Int64\"}}}",
             sim_api_str(u, "id"));
    sim_api_expect_error("POST", "/v1/datasets", body, 400, "BAD_REQUEST");
    json_decref(u);
    u = upload("text/csv", "id\n1\nabc\n", 201);
    snprintf(body, sizeof body,
             "{\"label\":\"typed3\",\"source\":{\"type\":\"upload\",\"upload_id\":\"%s\","
             "\"columns\":{\"id\":\"Int64\"}}}",
             sim_api_str(u, "id"));
    sim_api_expect_error("POST", "/v1/datasets", body, 400, "BAD_REQUEST");
    json_decref(u);
    json_decref(sim_api_expect("POST", "/v1/datasets",
                               "{\"label\":\"tagged inline\",\"source\":{\"type\":\"inline\","
                               "\"inline\":{\"format\":\"json\",\"content\":\"[{\\\"x\\\":1}]\","
                               "\"columns\":{\"x\":\"Utf8\"}}}}",
                               201));
    assert_int_equal(scalar_int("SELECT count(*) FROM datasets.main.tagged_inline WHERE x = '1'"),
                     1);

    /* sql_query: the result is materialised, and a saved query is created for it */
    d = sim_api_expect("POST", "/v1/datasets",
                       "{\"label\":\"by country\",\"source\":{\"type\":\"sql_query\",\"sql\":"
                       "\"SELECT country, count(*) AS n FROM demo.public.customers GROUP BY "
                       "country\"}}",
                       201);
    snprintf(path, sizeof path, "/v1/datasets/%s", sim_api_str(d, "id"));
    json_decref(d);
    assert_int_equal(scalar_int("SELECT sum(n) FROM datasets.main.by_country"),
                     scalar_int("SELECT count(*) FROM demo.public.customers"));
    d = sim_api_expect("GET", path, NULL, 200);
    assert_string_equal(sim_api_str(d, "source_type"), "sql_query");
    assert_string_equal(sim_api_str(column(d, "n"), "data_type"), "Int64");
    json_decref(d);
    json_t *qs = sim_api_expect("GET", "/v1/queries?limit=1000", NULL, 200);
    json_t *list = json_object_get(qs, "queries");
    char sqid[128] = "";
    for (size_t i = 0; i < json_array_size(list); i++)
        if (strcmp(sim_api_str(json_array_get(list, i), "name"), "by country") == 0)
            snprintf(sqid, sizeof sqid, "%s", sim_api_str(json_array_get(list, i), "id"));
    json_decref(qs);
    assert_true(sqid[0] != '\0');

    /* saved_query: the same SQL by reference */
    snprintf(body, sizeof body,
             "{\"label\":\"by country again\",\"source\":{\"type\":\"saved_query\","
             "\"saved_query_id\":\"%s\",\"version\":1}}",
             sqid);
    json_decref(sim_api_expect("POST", "/v1/datasets", body, 201));
    assert_int_equal(scalar_int("SELECT sum(n) FROM datasets.main.by_country_again"),
                     scalar_int("SELECT sum(n) FROM datasets.main.by_country"));
    sim_api_expect_error("POST", "/v1/datasets",
                         "{\"label\":\"q1\",\"source\":{\"type\":\"saved_query\","
                         "\"saved_query_id\":\"svq_nope\"}}",
                         400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/datasets",
                         "{\"label\":\"q2\",\"source\":{\"type\":\"sql_query\",\"sql\":"
                         "\"SELECT * FROM demo.public.nope\"}}",
                         400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/datasets",
                         "{\"label\":\"q3\",\"source\":{\"type\":\"sql_query\",\"sql\":"
                         "\"DELETE FROM demo.public.customers\"}}",
                         400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/datasets",
                         "{\"label\":\"q4\",\"source\":{\"type\":\"url\",\"url\":"
                         "\"https://example.com/x.csv\"}}",
                         400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/datasets",
                         "{\"label\":\"q5\",\"source\":{\"type\":\"carrier_pigeon\"}}", 400,
                         "BAD_REQUEST");
    /* the DELETE above was refused, not run */
    assert_true(scalar_int("SELECT count(*) FROM demo.public.customers") > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upload_csv_to_dataset_to_sql),
        cmocka_unit_test(test_json_upload_and_inline_sources),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_update_versions_pinning),
        cmocka_unit_test(test_list_and_delete),
        cmocka_unit_test(test_declared_columns_and_query_sources),
    };
    return cmocka_run_group_tests(tests, sim_api_start, sim_api_stop);
}
