/*
 * sim_api: helpers shared by the hotdata-sim contract tests (test_sim_*.c): one simulator
 * per test binary, JSON requests with the default identity (tok_test / ws_test), and checks
 * of the API error shape {"error":{"code","message"},"message","status"}.
 *
 * Rules: header-only (static functions), so each test binary stays one .c file; every
 * helper asserts through cmocka, so a broken simulator fails the test that used it.
 */
#ifndef SIM_API_H
#define SIM_API_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "harness.h"

static hproc sim_api_proc;
static char *sim_api_dir;

static inline int sim_api_start(void **state)
{
    (void)state;
    sim_api_dir = harness_tmpdir("simres");
    if (harness_start_sim(&sim_api_proc, sim_api_dir, NULL) != 0) {
        fprintf(stderr, "hotdata-sim did not start\n");
        return -1;
    }
    return 0;
}

static inline int sim_api_stop(void **state)
{
    (void)state;
    int st = harness_stop(&sim_api_proc, 5000);
    (void)st;
    harness_rmdir(sim_api_dir);
    free(sim_api_dir);
    return 0;
}

/* One request as token/workspace (ws NULL: no X-Workspace-Id, token NULL: no auth). Returns
 * the parsed JSON body (NULL when the body is empty or not JSON); *status gets the status. */
static inline json_t *sim_api_as(const char *token, const char *ws, const char *method,
                                 const char *path, const char *body, long *status)
{
    char *url = harness_url("http://127.0.0.1:%d%s", sim_api_proc.port, path);
    char auth[256], wsh[256];
    const char *hdrs[5];
    int n = 0;
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdrs[n++] = auth;
    }
    if (ws) {
        snprintf(wsh, sizeof wsh, "X-Workspace-Id: %s", ws);
        hdrs[n++] = wsh;
    }
    if (body)
        hdrs[n++] = "Content-Type: application/json";
    hdrs[n] = NULL;
    hresp r;
    int rc = http_do(method, url, hdrs, body, body ? strlen(body) : 0, &r);
    free(url);
    assert_int_equal(rc, 0);
    *status = r.status;
    json_t *j = r.len ? json_loadb(r.body, r.len, JSON_DECODE_ANY, NULL) : NULL;
    if (r.status >= 500)
        fprintf(stderr, "%s %s -> %ld %s\n", method, path, r.status, r.body);
    hresp_free(&r);
    return j;
}

static inline json_t *sim_api(const char *method, const char *path, const char *body, long *status)
{
    return sim_api_as("tok_test", "ws_test", method, path, body, status);
}

/* Request that must answer `want`; returns the JSON body (caller decrefs). */
static inline json_t *sim_api_expect(const char *method, const char *path, const char *body,
                                     long want)
{
    long status = 0;
    json_t *j = sim_api(method, path, body, &status);
    if (status != want) {
        char *dump = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
        fprintf(stderr, "%s %s: want %ld, got %ld: %s\n", method, path, want, status,
                dump ? dump : "(no JSON body)");
        free(dump);
    }
    assert_int_equal(status, want);
    return j;
}

/* Request that must fail with status and an API-shaped error body; code may be NULL. */
static inline void sim_api_expect_error(const char *method, const char *path, const char *body,
                                        long want, const char *code)
{
    json_t *j = sim_api_expect(method, path, body, want);
    assert_non_null(j);
    json_t *err = json_object_get(j, "error");
    assert_true(json_is_object(err));
    assert_true(json_is_string(json_object_get(err, "message")));
    if (code)
        assert_string_equal(json_string_value(json_object_get(err, "code")), code);
    assert_true(json_is_string(json_object_get(j, "message")));
    assert_int_equal(json_integer_value(json_object_get(j, "status")), want);
    json_decref(j);
}

/* Expect 204 with an empty body. */
static inline void sim_api_expect_204(const char *method, const char *path)
{
    char *url = harness_url("http://127.0.0.1:%d%s", sim_api_proc.port, path);
    const char *hdrs[] = {"Authorization: Bearer tok_test", "X-Workspace-Id: ws_test", NULL};
    hresp r;
    assert_int_equal(http_do(method, url, hdrs, NULL, 0, &r), 0);
    free(url);
    if (r.status != 204)
        fprintf(stderr, "%s %s: want 204, got %ld: %s\n", method, path, r.status, r.body);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.len, 0);
    hresp_free(&r);
}

/* Typed field accessors that fail the test on a wrong JSON type (strict clients would). */
static inline const char *sim_api_str(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        fprintf(stderr, "field '%s' is not a string\n", key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static inline long long sim_api_int(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fprintf(stderr, "field '%s' is not an integer\n", key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static inline int sim_api_bool(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_boolean(v))
        fprintf(stderr, "field '%s' is not a boolean\n", key);
    assert_true(json_is_boolean(v));
    return json_is_true(v);
}

/* Field present and JSON null. */
static inline void sim_api_null(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_non_null(v);
    assert_true(json_is_null(v));
}

/* Run SQL through POST /v1/query and return the response (status 200 required). */
static inline json_t *sim_api_query(const char *sql)
{
    json_t *b = json_pack("{s:s}", "sql", sql);
    char *body = json_dumps(b, 0);
    json_decref(b);
    json_t *j = sim_api_expect("POST", "/v1/query", body, 200);
    free(body);
    return j;
}

static inline void sim_api_sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

#endif
