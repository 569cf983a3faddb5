/*
 * sim_core_it: helpers for the hotdata-sim core tests (test_sim_query.c, test_sim_control.c):
 * start a simulator with extra flags, send JSON requests as a token/workspace, read the
 * control plane, and check the API error shape.
 *
 * Rules: header-only (static functions); every helper asserts through cmocka so a broken
 * simulator fails the test that used it. One simulator per test binary (sci_proc).
 */
#ifndef SIM_CORE_IT_H
#define SIM_CORE_IT_H

#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "harness.h"
#include "util.h"

static hproc sci_proc;
static char *sci_dir;

static inline int sci_start(const char *const extra[])
{
    sci_dir = harness_tmpdir("simcore");
    if (harness_start_sim(&sci_proc, sci_dir, extra) != 0) {
        fprintf(stderr, "hotdata-sim did not start\n");
        return -1;
    }
    return 0;
}

static inline void sci_stop(void)
{
    harness_stop(&sci_proc, 5000);
    harness_rmdir(sci_dir);
    free(sci_dir);
    sci_dir = NULL;
}

static inline void sci_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Raw request as token/workspace (NULL: header left out); extra: one more header or NULL. */
static inline int sci_raw(const char *token, const char *ws, const char *method, const char *path,
                          const char *body, const char *extra, hresp *out)
{
    char *url = harness_url("http://127.0.0.1:%d%s", sci_proc.port, path);
    char auth[256], wsh[256];
    const char *hdrs[6];
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
    if (extra)
        hdrs[n++] = extra;
    hdrs[n] = NULL;
    memset(out, 0, sizeof *out);
    int rc = http_do(method, url, hdrs, body, body ? strlen(body) : 0, out);
    free(url);
    return rc;
}

/* JSON request; returns the parsed body (NULL if empty/not JSON), *status the status. */
static inline json_t *sci_as(const char *token, const char *ws, const char *method,
                             const char *path, const char *body, long *status)
{
    hresp r;
    int rc = sci_raw(token, ws, method, path, body, NULL, &r);
    assert_int_equal(rc, 0);
    *status = r.status;
    json_t *j = NULL;
    if (r.len > 0) {
        char *ct = hresp_header(&r, "Content-Type");
        assert_non_null(ct);
        assert_non_null(strstr(ct, "application/json"));
        free(ct);
        j = json_loadb(r.body, r.len, JSON_DECODE_ANY, NULL);
    }
    hresp_free(&r);
    return j;
}

/* As tok_test in ws_test. */
static inline json_t *sci(const char *method, const char *path, const char *body, long *status)
{
    return sci_as("tok_test", "ws_test", method, path, body, status);
}

/* POST /v1/query {"sql": sql} as tok_test/ws_test, expecting 200. */
static inline json_t *sci_query_ok(const char *sql)
{
    json_t *b = json_pack("{s:s}", "sql", sql);
    char *s = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    long st = 0;
    json_t *j = sci("POST", "/v1/query", s, &st);
    free(s);
    if (st != 200)
        fprintf(stderr, "query failed (%ld): %s\n", st, sql);
    assert_int_equal(st, 200);
    assert_non_null(j);
    return j;
}

/* First cell of a one-row query as an integer. */
static inline long long sci_query_int(const char *sql)
{
    json_t *j = sci_query_ok(sql);
    json_t *v = json_array_get(json_array_get(json_object_get(j, "rows"), 0), 0);
    assert_true(json_is_integer(v));
    long long n = json_integer_value(v);
    json_decref(j);
    return n;
}

/* First cell of a one-row query as a malloc'd string. */
static inline char *sci_query_str(const char *sql)
{
    json_t *j = sci_query_ok(sql);
    json_t *v = json_array_get(json_array_get(json_object_get(j, "rows"), 0), 0);
    assert_true(json_is_string(v));
    char *s = strdup(json_string_value(v));
    json_decref(j);
    return s;
}

/* The API error shape with this status and code. */
static inline void sci_assert_error(json_t *j, long status, const char *code)
{
    assert_non_null(j);
    json_t *e = json_object_get(j, "error");
    assert_true(json_is_object(e));
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    const char *m = json_string_value(json_object_get(e, "message"));
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(j, "message")), m);
    assert_true(json_is_integer(json_object_get(j, "status")));
    assert_int_equal(json_integer_value(json_object_get(j, "status")), status);
}

/* Control plane: GET/POST under /_sim/. */
static inline json_t *sci_ctl(const char *method, const char *path, const char *body)
{
    long st = 0;
    json_t *j = sci_as(NULL, NULL, method, path, body, &st);
    assert_int_equal(st, 200);
    assert_non_null(j);
    return j;
}

static inline long long sci_json_int(json_t *o, const char *path1, const char *path2)
{
    json_t *v = json_object_get(o, path1);
    if (path2)
        v = json_object_get(v, path2);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

#endif
