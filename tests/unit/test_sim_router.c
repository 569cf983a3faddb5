/*
 * test_sim_router: hotdata-sim's route table as sim/main.c builds it (every area
 * registered): each endpoint of the API reference resolves to a route of the same shape,
 * path parameters come out percent-decoded, literal segments beat parameters, an unknown
 * path is a 404 and a known path with another method a 405. The API-shaped bodies of those
 * answers are asserted end to end in tests/integration/test_sim_router.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sys/queue.h>

#include "sim_areas.h"
#include "sim_int.h"
#include "sim_router.h"

/* Every endpoint of /work/shared/api/hotdata-api-reference.txt ("Endpoint: METHOD path"). */
static const char *const reference[][2] = {
    {"GET", "/v1/workspaces"},
    {"POST", "/v1/workspaces"},
    {"POST", "/v1/query"},
    {"GET", "/v1/connections"},
    {"POST", "/v1/connections"},
    {"GET", "/v1/connections/{connection_id}"},
    {"DELETE", "/v1/connections/{connection_id}"},
    {"DELETE", "/v1/connections/{connection_id}/cache"},
    {"GET", "/v1/connections/{connection_id}/health"},
    {"DELETE", "/v1/connections/{connection_id}/tables/{schema}/{table}/cache"},
    {"GET", "/v1/connections/{connection_id}/tables/{schema}/{table}/profile"},
    {"GET", "/v1/connection-types"},
    {"GET", "/v1/connection-types/{name}"},
    {"POST", "/v1/refresh"},
    {"GET", "/v1/information_schema"},
    {"GET", "/v1/secrets"},
    {"POST", "/v1/secrets"},
    {"GET", "/v1/secrets/{name}"},
    {"PUT", "/v1/secrets/{name}"},
    {"DELETE", "/v1/secrets/{name}"},
    {"GET", "/v1/results"},
    {"GET", "/v1/results/{id}"},
    {"GET", "/v1/query-runs"},
    {"GET", "/v1/query-runs/{id}"},
    {"GET", "/v1/files"},
    {"POST", "/v1/files"},
    {"GET", "/v1/datasets"},
    {"POST", "/v1/datasets"},
    {"GET", "/v1/datasets/{id}"},
    {"PUT", "/v1/datasets/{id}"},
    {"DELETE", "/v1/datasets/{id}"},
    {"GET", "/v1/datasets/{id}/versions"},
    {"GET", "/v1/queries"},
    {"POST", "/v1/queries"},
    {"GET", "/v1/queries/{id}"},
    {"PUT", "/v1/queries/{id}"},
    {"DELETE", "/v1/queries/{id}"},
    {"POST", "/v1/queries/{id}/execute"},
    {"GET", "/v1/queries/{id}/versions"},
    {"GET", "/v1/connections/{connection_id}/tables/{schema}/{table}/indexes"},
    {"POST", "/v1/connections/{connection_id}/tables/{schema}/{table}/indexes"},
    {"DELETE", "/v1/connections/{connection_id}/tables/{schema}/{table}/indexes/{index_name}"},
    {"GET", "/v1/embedding-providers"},
    {"POST", "/v1/embedding-providers"},
    {"GET", "/v1/embedding-providers/{id}"},
    {"PUT", "/v1/embedding-providers/{id}"},
    {"DELETE", "/v1/embedding-providers/{id}"},
    {"GET", "/v1/jobs"},
    {"GET", "/v1/jobs/{id}"},
};

static struct sim_router router;

static int setup(void **state)
{
    (void)state;
    sim_router_init(&router);
    sim_areas_register_all(&router);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sim_router_free(&router);
    return 0;
}

/* pattern with every {name} replaced: by "{}" (the shape two patterns share) when values
 * is false, else by a value "v<i>" (i = 1, 2, ...). */
static void fill_params(const char *pattern, bool values, char *out, size_t len)
{
    size_t n = 0;
    int i = 0;
    for (const char *p = pattern; *p && n + 8 < len; p++) {
        if (*p != '{') {
            out[n++] = *p;
            continue;
        }
        n += (size_t)(values ? snprintf(out + n, len - n, "v%d", ++i)
                             : snprintf(out + n, len - n, "{}"));
        while (*p && *p != '}')
            p++;
        if (!*p)
            break;
    }
    out[n] = '\0';
}

static void shape_of(const char *pattern, char *out, size_t len)
{
    fill_params(pattern, false, out, len);
}

static void concrete_of(const char *pattern, char *out, size_t len)
{
    fill_params(pattern, true, out, len);
}

static void req_init(struct sim_req *req)
{
    memset(req, 0, sizeof *req);
    TAILQ_INIT(&req->query);
}

static void req_clear(struct sim_req *req)
{
    for (size_t i = 0; i < req->nparams; i++)
        free(req->param_values[i]);
    req_init(req);
}

static void test_every_reference_endpoint_resolves(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof reference / sizeof reference[0]; i++) {
        const char *method = reference[i][0], *pattern = reference[i][1];
        char path[256], want[256], got[256];
        concrete_of(pattern, path, sizeof path);
        shape_of(pattern, want, sizeof want);
        struct sim_req req;
        req_init(&req);
        int status = -1;
        struct sim_route_ent *e = sim_router_resolve(&router, method, path, &req, &status);
        if (!e)
            fprintf(stderr, "%s %s: no route (%d)\n", method, pattern, status);
        assert_non_null(e);
        assert_int_equal(status, 0);
        assert_string_equal(e->method, method);
        shape_of(e->pattern, got, sizeof got);
        assert_string_equal(got, want);
        assert_non_null(e->fn);
        /* one parameter per {segment}, in order, with the value from the path */
        size_t nparam = 0;
        for (const char *p = pattern; (p = strchr(p, '{')); p++)
            nparam++;
        assert_int_equal(req.nparams, nparam);
        for (size_t k = 0; k < req.nparams; k++) {
            char v[32];
            snprintf(v, sizeof v, "v%zu", k + 1);
            assert_string_equal(req.param_values[k], v);
        }
        req_clear(&req);
    }
}

static void test_params_are_decoded_and_named(void **state)
{
    (void)state;
    struct sim_req req;
    req_init(&req);
    int status = -1;
    struct sim_route_ent *e = sim_router_resolve(
        &router, "DELETE", "/v1/connections/c%2F1/tables/my%20schema/t1/indexes/ix", &req, &status);
    assert_non_null(e);
    assert_int_equal(status, 0);
    assert_string_equal(e->key, "DELETE "
                                "/v1/connections/{connection_id}/tables/{schema}/{table}/indexes/"
                                "{index_name}");
    assert_int_equal(req.nparams, 4);
    assert_string_equal(req.param_names[0], "{connection_id}");
    assert_string_equal(req.param_values[0], "c/1");
    assert_string_equal(req.param_values[1], "my schema");
    assert_string_equal(req.param_values[2], "t1");
    assert_string_equal(req.param_values[3], "ix");
    req_clear(&req);
}

static void handler_param(struct sim_req *req)
{
    (void)req;
}

static void handler_literal(struct sim_req *req)
{
    (void)req;
}

static void test_literal_segment_beats_parameter(void **state)
{
    (void)state;
    /* a table of its own with both shapes, registered parameter first */
    struct sim_router r;
    sim_router_init(&r);
    sim_route(&r, "GET", "/v1/things/{id}", handler_param, SIM_ROUTE_DEFAULT);
    sim_route(&r, "GET", "/v1/things/special", handler_literal, SIM_ROUTE_NO_WORKSPACE);
    int status = -1;
    struct sim_route_ent *e = sim_router_resolve(&r, "GET", "/v1/things/special", NULL, &status);
    assert_non_null(e);
    assert_string_equal(e->pattern, "/v1/things/special");
    assert_int_equal(e->flags, SIM_ROUTE_NO_WORKSPACE);
    assert_true(e->fn == handler_literal);
    e = sim_router_resolve(&r, "GET", "/v1/things/other", NULL, &status);
    assert_non_null(e);
    assert_string_equal(e->pattern, "/v1/things/{id}");
    assert_true(e->fn == handler_param);
    /* an empty segment does not fill a parameter */
    assert_null(sim_router_resolve(&r, "GET", "/v1/things//", NULL, &status));
    sim_router_free(&r);
}

static void test_unknown_path_404_wrong_method_405(void **state)
{
    (void)state;
    int status = -1;
    assert_null(sim_router_resolve(&router, "GET", "/v1/nope", NULL, &status));
    assert_int_equal(status, 404);
    assert_null(sim_router_resolve(&router, "GET", "/v2/query", NULL, &status));
    assert_int_equal(status, 404);
    assert_null(sim_router_resolve(&router, "GET", "/", NULL, &status));
    assert_int_equal(status, 404);
    /* more segments than any route */
    assert_null(sim_router_resolve(&router, "GET", "/v1/jobs/a/b/c/d/e/f/g/h", NULL, &status));
    assert_int_equal(status, 404);

    assert_null(sim_router_resolve(&router, "GET", "/v1/query", NULL, &status));
    assert_int_equal(status, 405);
    assert_null(sim_router_resolve(&router, "PATCH", "/v1/secrets/x", NULL, &status));
    assert_int_equal(status, 405);
    assert_null(sim_router_resolve(&router, "HEAD", "/v1/workspaces", NULL, &status));
    assert_int_equal(status, 405);
}

static void test_every_registered_route_is_reachable(void **state)
{
    (void)state;
    /* no registered route is shadowed by another: its own concrete path resolves to it,
     * unless a literal segment of a twin wins for the value chosen */
    for (size_t i = 0; i < router.n; i++) {
        struct sim_route_ent *mine = &router.routes[i];
        char path[256];
        concrete_of(mine->pattern, path, sizeof path);
        int status = -1;
        struct sim_route_ent *e = sim_router_resolve(&router, mine->method, path, NULL, &status);
        assert_non_null(e);
        assert_string_equal(e->key, mine->key);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_reference_endpoint_resolves),
        cmocka_unit_test(test_params_are_decoded_and_named),
        cmocka_unit_test(test_literal_segment_beats_parameter),
        cmocka_unit_test(test_unknown_path_404_wrong_method_405),
        cmocka_unit_test(test_every_registered_route_is_reachable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
