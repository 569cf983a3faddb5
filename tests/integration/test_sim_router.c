/*
 * test_sim_router: the order of hotdata-sim's request pipeline on a running simulator, and
 * the API-shaped answers of each stage: route (404 unknown path, 405 known path with
 * another method; before auth, so even without a token), token (401), workspace (400
 * missing, 404 unknown), JSON body (400), then the handler.
 */
#include "sim_api.h"

/* status + API error shape {"error":{"code","message"},"message","status"} of one request */
static void expect_error_as(const char *token, const char *ws, const char *method, const char *path,
                            const char *body, long want, const char *code)
{
    long status = 0;
    json_t *j = sim_api_as(token, ws, method, path, body, &status);
    if (status != want)
        fprintf(stderr, "%s %s: want %ld, got %ld\n", method, path, want, status);
    assert_int_equal(status, want);
    assert_non_null(j);
    json_t *err = json_object_get(j, "error");
    assert_true(json_is_object(err));
    assert_string_equal(json_string_value(json_object_get(err, "code")), code);
    assert_true(json_is_string(json_object_get(err, "message")));
    assert_true(json_is_string(json_object_get(j, "message")));
    assert_int_equal(json_integer_value(json_object_get(j, "status")), want);
    json_decref(j);
}

static void test_unknown_path_is_404(void **state)
{
    (void)state;
    sim_api_expect_error("GET", "/v1/no-such-thing", NULL, 404, "NOT_FOUND");
    sim_api_expect_error("POST", "/v1/connections/c1/nope", "{}", 404, "NOT_FOUND");
    /* routing comes first: no token needed to learn a path does not exist */
    expect_error_as(NULL, NULL, "GET", "/v1/no-such-thing", NULL, 404, "NOT_FOUND");
}

static void test_wrong_method_is_405(void **state)
{
    (void)state;
    sim_api_expect_error("GET", "/v1/query", NULL, 405, "METHOD_NOT_ALLOWED");
    sim_api_expect_error("PATCH", "/v1/secrets/x", "{}", 405, "METHOD_NOT_ALLOWED");
    sim_api_expect_error("DELETE", "/v1/workspaces", NULL, 405, "METHOD_NOT_ALLOWED");
    expect_error_as(NULL, NULL, "GET", "/v1/query", NULL, 405, "METHOD_NOT_ALLOWED");
}

static void test_stage_order(void **state)
{
    (void)state;
    /* a routed request without (or with a wrong) token: 401 before the workspace check */
    expect_error_as(NULL, NULL, "GET", "/v1/connections", NULL, 401, "UNAUTHORIZED");
    expect_error_as("tok_wrong", "ws_test", "GET", "/v1/connections", NULL, 401, "UNAUTHORIZED");
    /* token fine, workspace missing or unknown */
    expect_error_as("tok_test", NULL, "GET", "/v1/connections", NULL, 400, "BAD_REQUEST");
    expect_error_as("tok_test", "ws_nope", "GET", "/v1/connections", NULL, 404, "NOT_FOUND");
    /* a route without a workspace needs none */
    long status = 0;
    json_t *j = sim_api_as("tok_test", NULL, "GET", "/v1/workspaces", NULL, &status);
    assert_int_equal(status, 200);
    json_decref(j);
    /* workspace fine, body not JSON: 400 before the handler runs */
    sim_api_expect_error("POST", "/v1/query", "{not json", 400, "BAD_REQUEST");
    /* all stages passed: the handler answers */
    j = sim_api_expect("POST", "/v1/query", "{\"sql\":\"SELECT 1 AS one\"}", 200);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_path_is_404),
        cmocka_unit_test(test_wrong_method_is_405),
        cmocka_unit_test(test_stage_order),
    };
    return cmocka_run_group_tests(tests, sim_api_start, sim_api_stop);
}
