/*
 * test_sim_secrets: contract of /v1/secrets on a running hotdata-sim: create (201 shape),
 * list/get metadata without values, update, delete (204), and the documented errors: 409
 * duplicate name, 404 unknown name, 400 bad body, 401 without a token.
 */
#include "sim_api.h"

static void test_secret_lifecycle(void **state)
{
    json_t *j =
        sim_api_expect("POST", "/v1/secrets", "{\"name\":\"pg_pw\",\"value\":\"hunter2\"}", 201);
    assert_string_equal(sim_api_str(j, "name"), "pg_pw");
    assert_true(strncmp(sim_api_str(j, "id"), "secr_", 5) == 0);
    sim_api_str(j, "created_at");
    assert_null(json_object_get(j, "value"));
    json_decref(j);

    j = sim_api_expect("GET", "/v1/secrets/pg_pw", NULL, 200);
    assert_string_equal(sim_api_str(j, "name"), "pg_pw");
    sim_api_str(j, "created_at");
    sim_api_str(j, "updated_at");
    char *dump = json_dumps(j, 0);
    assert_null(strstr(dump, "hunter2"));
    free(dump);
    json_decref(j);

    j = sim_api_expect("GET", "/v1/secrets", NULL, 200);
    json_t *list = json_object_get(j, "secrets");
    assert_true(json_is_array(list));
    int seen = 0;
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s)
    {
        if (strcmp(sim_api_str(s, "name"), "pg_pw") == 0)
            seen = 1;
        sim_api_str(s, "created_at");
        sim_api_str(s, "updated_at");
        assert_null(json_object_get(s, "value"));
    }
    assert_true(seen);
    dump = json_dumps(j, 0);
    assert_null(strstr(dump, "hunter2"));
    free(dump);
    json_decref(j);

    j = sim_api_expect("PUT", "/v1/secrets/pg_pw", "{\"value\":\"new-value\"}", 200);
    assert_string_equal(sim_api_str(j, "name"), "pg_pw");
    sim_api_str(j, "updated_at");
    dump = json_dumps(j, 0);
    assert_null(strstr(dump, "new-value"));
    free(dump);
    json_decref(j);

    sim_api_expect_204("DELETE", "/v1/secrets/pg_pw");
    sim_api_expect_error("GET", "/v1/secrets/pg_pw", NULL, 404, "NOT_FOUND");
}

static void test_secret_errors(void **state)
{
    json_decref(sim_api_expect("POST", "/v1/secrets", "{\"name\":\"dup\",\"value\":\"a\"}", 201));
    sim_api_expect_error("POST", "/v1/secrets", "{\"name\":\"dup\",\"value\":\"b\"}", 409,
                         "CONFLICT");
    sim_api_expect_error("POST", "/v1/secrets", "{\"name\":\"x\"}", 400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/secrets", "{\"value\":\"x\"}", 400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/secrets", "{\"name\":5,\"value\":\"x\"}", 400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/secrets", "{\"name\":\"y\",\"value\":true}", 400,
                         "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/secrets", "[1,2]", 400, "BAD_REQUEST");
    sim_api_expect_error("POST", "/v1/secrets", "{not json", 400, "BAD_REQUEST");
    sim_api_expect_error("GET", "/v1/secrets/nope", NULL, 404, "NOT_FOUND");
    sim_api_expect_error("PUT", "/v1/secrets/nope", "{\"value\":\"v\"}", 404, "NOT_FOUND");
    sim_api_expect_error("PUT", "/v1/secrets/dup", "{}", 400, "BAD_REQUEST");
    sim_api_expect_error("PUT", "/v1/secrets/dup", "{\"value\":1}", 400, "BAD_REQUEST");
    sim_api_expect_error("DELETE", "/v1/secrets/nope", NULL, 404, "NOT_FOUND");

    long status = 0;
    json_t *j = sim_api_as(NULL, "ws_test", "GET", "/v1/secrets", NULL, &status);
    assert_int_equal(status, 401);
    json_decref(j);
    j = sim_api_as("tok_wrong", "ws_test", "GET", "/v1/secrets", NULL, &status);
    assert_int_equal(status, 401);
    json_decref(j);
}

static void test_secrets_are_per_workspace(void **state)
{
    json_decref(
        sim_api_expect("POST", "/v1/secrets", "{\"name\":\"only_here\",\"value\":\"v\"}", 201));
    long status = 0;
    json_t *j = sim_api_as("tok_other", "ws_other", "GET", "/v1/secrets/only_here", NULL, &status);
    assert_int_equal(status, 404);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_lifecycle),
        cmocka_unit_test(test_secret_errors),
        cmocka_unit_test(test_secrets_are_per_workspace),
    };
    return cmocka_run_group_tests(tests, sim_api_start, sim_api_stop);
}
