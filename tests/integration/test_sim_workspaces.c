/*
 * test_sim_workspaces: contract of /v1/workspaces on a running hotdata-sim: the list needs
 * only the bearer token and shows exactly the workspaces it may use; a created workspace is
 * pending, then provisioned, and usable at once by its creator (and only by it); errors 400
 * (invalid JSON), 401, 404 (organization), 422 (name).
 */
#include "sim_api.h"

static int list_has(const char *token, const char *ws_id, json_t **item_out)
{
    long status = 0;
    json_t *j = sim_api_as(token, NULL, "GET", "/v1/workspaces", NULL, &status);
    assert_int_equal(status, 200);
    assert_true(sim_api_bool(j, "ok"));
    json_t *list = json_object_get(j, "workspaces");
    assert_true(json_is_array(list));
    int found = 0;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *w = json_array_get(list, i);
        sim_api_str(w, "public_id");
        sim_api_str(w, "name");
        sim_api_bool(w, "active");
        sim_api_bool(w, "favorite");
        sim_api_str(w, "provision_status");
        char ns[160];
        snprintf(ns, sizeof ns, "workspace-%s", sim_api_str(w, "public_id"));
        assert_string_equal(sim_api_str(w, "namespace"), ns);
        if (strcmp(sim_api_str(w, "public_id"), ws_id) == 0) {
            found = 1;
            if (item_out)
                *item_out = json_incref(w);
        }
    }
    json_decref(j);
    return found;
}

static void test_list_by_token(void **state)
{
    assert_true(list_has("tok_test", "ws_test", NULL));
    assert_false(list_has("tok_test", "ws_other", NULL));
    assert_true(list_has("tok_other", "ws_other", NULL));
    assert_false(list_has("tok_other", "ws_test", NULL));
    json_t *w = NULL;
    assert_true(list_has("tok_test", "ws_test", &w));
    assert_string_equal(sim_api_str(w, "provision_status"), "provisioned");
    assert_true(sim_api_bool(w, "active"));
    json_decref(w);

    long status = 0;
    json_t *j = sim_api_as(NULL, NULL, "GET", "/v1/workspaces", NULL, &status);
    assert_int_equal(status, 401);
    json_decref(j);
    j = sim_api_as("tok_bogus", NULL, "GET", "/v1/workspaces", NULL, &status);
    assert_int_equal(status, 401);
    json_decref(j);
    j = sim_api_as("tok_test", NULL, "GET", "/v1/workspaces?organization_public_id=org_nope", NULL,
                   &status);
    assert_int_equal(status, 404);
    assert_string_equal(sim_api_str(json_object_get(j, "error"), "code"), "NOT_FOUND");
    json_decref(j);
    j = sim_api_as("tok_test", NULL, "GET", "/v1/workspaces?organization_public_id=org_default",
                   NULL, &status);
    assert_int_equal(status, 200);
    json_decref(j);
}

static void test_create_provision_use(void **state)
{
    long status = 0;
    json_t *j = sim_api_as("tok_test", NULL, "POST", "/v1/workspaces",
                           "{\"name\":\"production-analytics\"}", &status);
    assert_int_equal(status, 201);
    assert_true(sim_api_bool(j, "ok"));
    json_t *w = json_object_get(j, "workspace");
    char id[128];
    snprintf(id, sizeof id, "%s", sim_api_str(w, "public_id"));
    assert_true(strncmp(id, "ws_", 3) == 0);
    assert_string_equal(sim_api_str(w, "name"), "production-analytics");
    assert_string_equal(sim_api_str(w, "provision_status"), "pending");
    char ns[160];
    snprintf(ns, sizeof ns, "workspace-%s", id);
    assert_string_equal(sim_api_str(w, "namespace"), ns);
    json_decref(j);

    /* pending -> provisioned */
    const char *st = NULL;
    json_t *item = NULL;
    for (int i = 0; i < 100; i++) {
        json_decref(item);
        item = NULL;
        assert_true(list_has("tok_test", id, &item));
        st = sim_api_str(item, "provision_status");
        if (strcmp(st, "provisioned") == 0)
            break;
        sim_api_sleep_ms(50);
    }
    assert_string_equal(st, "provisioned");
    json_decref(item);
    assert_false(list_has("tok_other", id, NULL));

    /* usable by its creator: it is seeded like the others */
    j = sim_api_as("tok_test", id, "GET", "/v1/connections", NULL, &status);
    assert_int_equal(status, 200);
    assert_true(json_array_size(json_object_get(j, "connections")) >= 1);
    json_decref(j);
    j = sim_api_as("tok_test", id, "POST", "/v1/secrets", "{\"name\":\"s\",\"value\":\"v\"}",
                   &status);
    assert_int_equal(status, 201);
    json_decref(j);
    /* not by another token */
    j = sim_api_as("tok_other", id, "GET", "/v1/connections", NULL, &status);
    assert_true(status == 403 || status == 404);
    json_decref(j);
}

static void test_create_errors(void **state)
{
    struct {
        const char *body;
        long status;
    } cases[] = {
        {"{}", 422},
        {"{\"name\":\"\"}", 422},
        {"{\"name\":5}", 422},
        {"{\"name\":null}", 422},
        {"{\"name\":", 400},
        {"[1,2]", 400},
        {"{\"name\":\"x\",\"organization_public_id\":\"org_nope\"}", 404},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long status = 0;
        json_t *j = sim_api_as("tok_test", NULL, "POST", "/v1/workspaces", cases[i].body, &status);
        if (status != cases[i].status)
            fprintf(stderr, "case %zu (%s): got %ld\n", i, cases[i].body, status);
        assert_int_equal(status, cases[i].status);
        json_t *err = json_object_get(j, "error");
        assert_true(json_is_object(err));
        assert_int_equal(sim_api_int(j, "status"), cases[i].status);
        json_decref(j);
    }
    long status = 0;
    json_t *j = sim_api_as(NULL, NULL, "POST", "/v1/workspaces", "{\"name\":\"x\"}", &status);
    assert_int_equal(status, 401);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_by_token),
        cmocka_unit_test(test_create_provision_use),
        cmocka_unit_test(test_create_errors),
    };
    return cmocka_run_group_tests(tests, sim_api_start, sim_api_stop);
}
