/*
 * test_sim_indexes_embedding: contract of embedding providers (api_key -> managed secret
 * visible in /v1/secrets, secret_name references, conflicts, type checks) and of table
 * indexes (sorted/bm25/vector, column checks, duplicates, async create_index jobs whose
 * completion makes the index ready) on a running hotdata-sim.
 */
#include "sim_api.h"

static int secret_exists(const char *name)
{
    json_t *j = sim_api_expect("GET", "/v1/secrets", NULL, 200);
    int found = 0;
    json_t *list = json_object_get(j, "secrets");
    for (size_t i = 0; i < json_array_size(list); i++)
        if (strcmp(sim_api_str(json_array_get(list, i), "name"), name) == 0)
            found = 1;
    json_decref(j);
    return found;
}

static int secret_count(void)
{
    json_t *j = sim_api_expect("GET", "/v1/secrets", NULL, 200);
    int n = (int)json_array_size(json_object_get(j, "secrets"));
    json_decref(j);
    return n;
}

static void test_embedding_provider_lifecycle(void **state)
{
    int before = secret_count();
    json_t *j = sim_api_expect("POST", "/v1/embedding-providers",
                               "{\"name\":\"openai\",\"provider_type\":\"service\",\"api_key\":"
                               "\"sk-test\",\"config\":{\"model\":\"text-embedding-3-small\"}}",
                               201);
    char id[128];
    snprintf(id, sizeof id, "%s", sim_api_str(j, "id"));
    assert_string_equal(sim_api_str(j, "name"), "openai");
    assert_string_equal(sim_api_str(j, "provider_type"), "service");
    sim_api_str(j, "created_at");
    assert_string_equal(sim_api_str(json_object_get(j, "config"), "model"),
                        "text-embedding-3-small");
    char *created = json_dumps(j, 0);
    assert_null(strstr(created, "sk-test"));
    free(created);
    json_decref(j);
    assert_int_equal(secret_count(), before + 1); /* the api key became a secret */

    char path[256];
    snprintf(path, sizeof path, "/v1/embedding-providers/%s", id);
    j = sim_api_expect("GET", path, NULL, 200);
    assert_true(sim_api_bool(j, "has_secret"));
    sim_api_str(j, "source");
    sim_api_str(j, "updated_at");
    char *dump = json_dumps(j, 0);
    assert_null(strstr(dump, "sk-test"));
    free(dump);
    json_decref(j);

    j = sim_api_expect("GET", "/v1/embedding-providers", NULL, 200);
    assert_true(json_array_size(json_object_get(j, "embedding_providers")) >= 1);
    json_decref(j);

    j = sim_api_expect("PUT", path, "{\"name\":\"openai2\",\"config\":{\"model\":\"m2\"}}", 200);
    assert_string_equal(sim_api_str(j, "id"), id);
    assert_string_equal(sim_api_str(j, "name"), "openai2");
    sim_api_str(j, "updated_at");
    json_decref(j);
    j = sim_api_expect("GET", path, NULL, 200);
    assert_string_equal(sim_api_str(json_object_get(j, "config"), "model"), "m2");
    json_decref(j);

    /* secret_name: null clears the reference (and the managed secret goes away) */
    json_decref(sim_api_expect("PUT", path, "{\"secret_name\":null}", 200));
    j = sim_api_expect("GET", path, NULL, 200);
    assert_false(sim_api_bool(j, "has_secret"));
    json_decref(j);
    assert_int_equal(secret_count(), before);

    sim_api_expect_204("DELETE", path);
    sim_api_expect_error("GET", path, NULL, 404, "NOT_FOUND");
    sim_api_expect_error("PUT", path, "{\"name\":\"x\"}", 404, "NOT_FOUND");
    sim_api_expect_error("DELETE", path, NULL, 404, "NOT_FOUND");
}

static void test_embedding_provider_errors(void **state)
{
    json_decref(
        sim_api_expect("POST", "/v1/secrets", "{\"name\":\"emb_key\",\"value\":\"k\"}", 201));
    json_t *j = sim_api_expect("POST", "/v1/embedding-providers",
                               "{\"name\":\"withref\",\"provider_type\":\"service\","
                               "\"secret_name\":\"emb_key\"}",
                               201);
    char path[256];
    snprintf(path, sizeof path, "/v1/embedding-providers/%s", sim_api_str(j, "id"));
    json_decref(j);
    j = sim_api_expect("GET", path, NULL, 200);
    assert_true(sim_api_bool(j, "has_secret"));
    sim_api_null(j, "config");
    json_decref(j);
    /* deleting a provider never deletes a user's secret */
    sim_api_expect_204("DELETE", path);
    assert_true(secret_exists("emb_key"));

    json_decref(sim_api_expect("POST", "/v1/embedding-providers",
                               "{\"name\":\"local1\",\"provider_type\":\"local\"}", 201));
    sim_api_expect_error("POST", "/v1/embedding-providers",
                         "{\"name\":\"local1\",\"provider_type\":\"local\"}", 409, "CONFLICT");
    sim_api_expect_error("POST", "/v1/embedding-providers",
                         "{\"name\":\"p\",\"provider_type\":\"cloud\"}", 400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/embedding-providers",
                         "{\"name\":\"p\",\"provider_type\":\"service\",\"api_key\":\"k\","
                         "\"secret_name\":\"emb_key\"}",
                         400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/embedding-providers",
                         "{\"name\":\"p\",\"provider_type\":\"service\",\"secret_name\":\"nope\"}",
                         400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/embedding-providers", "{\"provider_type\":\"local\"}", 400,
                         "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/embedding-providers", "{\"name\":\"p\"}", 400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/embedding-providers",
                         "{\"name\":\"p\",\"provider_type\":\"local\",\"api_key\":7}", 400,
                         "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/embedding-providers", "nope", 400, "BAD_REQUEST");
    sim_api_expect_error("GET", "/v1/embedding-providers/emb_nope", NULL, 404, "NOT_FOUND");
}

#define IDX "/v1/connections/conn_demo/tables/public/customers/indexes"

static json_t *find_index(const char *base, const char *name)
{
    json_t *j = sim_api_expect("GET", base, NULL, 200);
    json_t *list = json_object_get(j, "indexes");
    json_t *found = NULL;
    for (size_t i = 0; i < json_array_size(list); i++)
        if (strcmp(sim_api_str(json_array_get(list, i), "index_name"), name) == 0)
            found = json_incref(json_array_get(list, i));
    json_decref(j);
    return found;
}

static void test_index_sorted_and_bm25(void **state)
{
    /* the columns of the demo table, from information_schema */
    json_t *info = sim_api_expect("GET",
                                  "/v1/information_schema?connection_id=conn_demo&table=customers"
                                  "&include_columns=true",
                                  NULL, 200);
    json_t *cols = json_object_get(json_array_get(json_object_get(info, "tables"), 0), "columns");
    assert_true(json_array_size(cols) >= 2);
    const char *int_col = NULL, *text_col = NULL;
    for (size_t i = 0; i < json_array_size(cols); i++) {
        json_t *c = json_array_get(cols, i);
        const char *t = sim_api_str(c, "data_type");
        if (!int_col && strcmp(t, "Int64") == 0)
            int_col = sim_api_str(c, "name");
        if (!text_col && strcmp(t, "Utf8") == 0)
            text_col = sim_api_str(c, "name");
    }
    assert_non_null(int_col);
    assert_non_null(text_col);

    char body[512];
    snprintf(body, sizeof body, "{\"index_name\":\"by_id\",\"columns\":[\"%s\"]}", int_col);
    json_t *j = sim_api_expect("POST", IDX, body, 201);
    assert_string_equal(sim_api_str(j, "index_name"), "by_id");
    assert_string_equal(sim_api_str(j, "index_type"), "sorted"); /* the default */
    assert_string_equal(sim_api_str(j, "status"), "ready");
    sim_api_null(j, "metric");
    sim_api_str(j, "created_at");
    sim_api_str(j, "updated_at");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "columns"), 0)),
                        int_col);
    json_decref(j);
    sim_api_expect_error("POST", IDX, body, 409, "CONFLICT");

    snprintf(body, sizeof body,
             "{\"index_name\":\"fts\",\"index_type\":\"bm25\",\"columns\":[\"%s\"]}", text_col);
    j = sim_api_expect("POST", IDX, body, 201);
    assert_string_equal(sim_api_str(j, "index_type"), "bm25");
    json_decref(j);
    snprintf(body, sizeof body,
             "{\"index_name\":\"fts2\",\"index_type\":\"bm25\",\"columns\":[\"%s\"]}", int_col);
    sim_api_expect_error("POST", IDX, body, 400, "BAD_REQUEST");

    json_t *idx = find_index(IDX, "by_id");
    assert_non_null(idx);
    json_decref(idx);

    /* errors */
    sim_api_expect_error("POST", IDX, "{\"index_name\":\"x\",\"columns\":[\"no_such_col\"]}", 400,
                         "BAD_REQUEST");
    sim_api_expect_error("POST", IDX, "{\"index_name\":\"x\",\"columns\":[]}", 400, "BAD_REQUEST");
    sim_api_expect_error("POST", IDX, "{\"index_name\":\"x\"}", 400, "BAD_REQUEST");
    sim_api_expect_error("POST", IDX, "{\"columns\":[\"id\"]}", 400, "BAD_REQUEST");
    snprintf(body, sizeof body,
             "{\"index_name\":\"x\",\"index_type\":\"hash\",\"columns\":[\"%s\"]}", int_col);
    sim_api_expect_error("POST", IDX, body, 400, "BAD_REQUEST");
    snprintf(body, sizeof body, "{\"index_name\":\"x\",\"metric\":\"l2\",\"columns\":[\"%s\"]}",
             int_col);
    sim_api_expect_error("POST", IDX, body, 400, "BAD_REQUEST");
    snprintf(body, sizeof body, "{\"index_name\":\"x\",\"columns\":[\"%s\"],\"async\":\"y\"}",
             int_col);
    sim_api_expect_error("POST", IDX, body, 400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/connections/conn_demo/tables/public/nope/indexes",
                         "{\"index_name\":\"x\",\"columns\":[\"id\"]}", 404, "NOT_FOUND");
    sim_api_expect_error("GET", "/v1/connections/conn_nope/tables/public/customers/indexes", NULL,
                         404, "NOT_FOUND");

    sim_api_expect_204("DELETE", IDX "/by_id");
    idx = find_index(IDX, "by_id");
    assert_null(idx);
    sim_api_expect_error("DELETE", IDX "/by_id", NULL, 404, "NOT_FOUND");
    sim_api_expect_204("DELETE", IDX "/fts");
    json_decref(info);
}

static void test_index_vector_with_provider(void **state)
{
    json_t *p = sim_api_expect("POST", "/v1/embedding-providers",
                               "{\"name\":\"vecprov\",\"provider_type\":\"local\"}", 201);
    char pid[128];
    snprintf(pid, sizeof pid, "%s", sim_api_str(p, "id"));
    json_decref(p);
    json_t *info = sim_api_expect("GET",
                                  "/v1/information_schema?connection_id=conn_demo&table=customers"
                                  "&include_columns=true",
                                  NULL, 200);
    json_t *cols = json_object_get(json_array_get(json_object_get(info, "tables"), 0), "columns");
    const char *text_col = NULL;
    for (size_t i = 0; i < json_array_size(cols); i++)
        if (!text_col && strcmp(sim_api_str(json_array_get(cols, i), "data_type"), "Utf8") == 0)
            text_col = sim_api_str(json_array_get(cols, i), "name");
    assert_non_null(text_col);
    char body[512];
    snprintf(body, sizeof body,
             "{\"index_name\":\"vec\",\"index_type\":\"vector\",\"columns\":[\"%s\"],"
             "\"embedding_provider_id\":\"%s\",\"metric\":\"cosine\",\"dimensions\":384}",
             text_col, pid);
    json_t *j = sim_api_expect("POST", IDX, body, 201);
    assert_string_equal(sim_api_str(j, "index_type"), "vector");
    assert_string_equal(sim_api_str(j, "metric"), "cosine");
    char want_out[128];
    snprintf(want_out, sizeof want_out, "%s_embedding", text_col);
    assert_string_equal(sim_api_str(j, "output_column"), want_out);
    json_decref(j);
    snprintf(body, sizeof body,
             "{\"index_name\":\"vec2\",\"index_type\":\"vector\",\"columns\":[\"%s\"],"
             "\"embedding_provider_id\":\"%s\",\"metric\":\"manhattan\"}",
             text_col, pid);
    sim_api_expect_error("POST", IDX, body, 400, "BAD_REQUEST");
    snprintf(body, sizeof body,
             "{\"index_name\":\"vec3\",\"index_type\":\"vector\",\"columns\":[\"%s\"],"
             "\"embedding_provider_id\":\"emb_nope\"}",
             text_col);
    sim_api_expect_error("POST", IDX, body, 400, "BAD_REQUEST");
    snprintf(body, sizeof body,
             "{\"index_name\":\"vec4\",\"index_type\":\"vector\",\"columns\":[\"%s\"]}", text_col);
    sim_api_expect_error("POST", IDX, body, 400, "BAD_REQUEST");
    sim_api_expect_204("DELETE", IDX "/vec");
    json_decref(info);
}

static void test_index_async_job(void **state)
{
    json_t *info = sim_api_expect("GET",
                                  "/v1/information_schema?connection_id=conn_demo&table=customers"
                                  "&include_columns=true",
                                  NULL, 200);
    json_t *cols = json_object_get(json_array_get(json_object_get(info, "tables"), 0), "columns");
    char body[512];
    snprintf(body, sizeof body, "{\"index_name\":\"later\",\"columns\":[\"%s\"],\"async\":true}",
             sim_api_str(json_array_get(cols, 0), "name"));
    json_decref(info);
    json_t *j = sim_api_expect("POST", IDX, body, 202);
    const char *job = json_string_value(json_object_get(j, "job_id"));
    if (!job)
        job = sim_api_str(j, "id");
    char path[256];
    snprintf(path, sizeof path, "/v1/jobs/%s", job);
    json_decref(j);
    json_t *idx = find_index(IDX, "later");
    assert_non_null(idx);
    assert_string_equal(sim_api_str(idx, "status"), "pending");
    json_decref(idx);
    const char *status = NULL;
    json_t *jj = NULL;
    for (int i = 0; i < 200; i++) {
        json_decref(jj);
        jj = sim_api_expect("GET", path, NULL, 200);
        status = sim_api_str(jj, "status");
        if (strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0)
            break;
        sim_api_sleep_ms(50);
    }
    assert_string_equal(status, "succeeded");
    assert_string_equal(sim_api_str(jj, "job_type"), "create_index");
    json_decref(jj);
    idx = find_index(IDX, "later");
    assert_non_null(idx);
    assert_string_equal(sim_api_str(idx, "status"), "ready");
    json_decref(idx);
    sim_api_expect_204("DELETE", IDX "/later");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedding_provider_lifecycle),
        cmocka_unit_test(test_embedding_provider_errors),
        cmocka_unit_test(test_index_sorted_and_bm25),
        cmocka_unit_test(test_index_vector_with_provider),
        cmocka_unit_test(test_index_async_job),
    };
    return cmocka_run_group_tests(tests, sim_api_start, sim_api_stop);
}
