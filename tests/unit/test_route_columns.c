/*
 * test_route_columns: one routing table decides (issue 11). For every row of the table
 * (route_table_row) and for unknown requests: auth's mode check (auth_mode_allows over
 * readonly_ok), the budget's replay safety (replay_ok) and the cache's class agree: what a
 * read-only client may send is exactly what may be replayed; a mutation is neither and is
 * never cached; whatever the cache may store is a read. OPTIONS is decided once: safe (no
 * mutation, invalidates nothing) but not a read: refused to read-only clients, never
 * replayed, never cached. And the route stage sets req->route for every request it passes,
 * whatever the stages after it do (the cache disabled included), refusing with 403 what the
 * row forbids a read-only client.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "http1.h"
#include "pipeline.h"
#include "route.h"
#include "route_stage.h"

/* A concrete path for a pattern: "/v1/" + the segments, parameters as "p1". */
static void path_of(const char *pattern, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "/v1/");
    for (const char *p = pattern; *p && n + 4 < cap;) {
        if (*p == '{') {
            n += (size_t)snprintf(out + n, cap - n, "p1");
            p = strchr(p, '}') + 1;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
}

static void check_agree(const char *method, const char *path)
{
    struct route_policy p;
    route_match(method, path, NULL, &p);
    int ro = auth_mode_allows(HG_MODE_READ_ONLY, &p);
    if (ro != p.replay_ok)
        fail_msg("%s %s: read-only %d but replay %d", method, path, ro, p.replay_ok);
    assert_true(auth_mode_allows(HG_MODE_FULL, &p));
    if (p.mutation && (ro || p.cache_class != ROUTE_CACHE_NEVER))
        fail_msg("%s %s: a mutation is read-only-ok or cacheable", method, path);
    if (p.cache_class != ROUTE_CACHE_NEVER && !ro)
        fail_msg("%s %s: cacheable but not a read", method, path);
    if ((strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) && !ro)
        fail_msg("%s %s: a GET/HEAD refused to read-only clients", method, path);
}

static void test_columns_agree_every_row(void **state)
{
    char path[256];
    assert_true(route_table_size() > 40);
    for (size_t i = 0; i < route_table_size(); i++) {
        const char *m, *pat;
        route_table_row(i, &m, &pat);
        path_of(pat, path, sizeof path);
        struct route_policy p;
        route_match(m, path, NULL, &p);
        if (p.id == ROUTE_UNKNOWN || p.id == ROUTE_NOT_API)
            fail_msg("row %zu (%s %s) does not match its own path %s", i, m, pat, path);
        check_agree(m, path);
        if (strcmp(m, "GET") == 0)
            check_agree("HEAD", path);
        /* any other method on the same path */
        static const char *const others[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
        for (size_t k = 0; k < sizeof others / sizeof *others; k++)
            check_agree(others[k], path);
    }
    static const char *const unknown[] = {"/v1/nope", "/v1/", "/v1/queries//execute",
                                          "/v1/queries/a/b/execute", "/v1/query/x"};
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", ""};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++)
        for (size_t k = 0; k < sizeof methods / sizeof *methods; k++)
            check_agree(methods[k], unknown[i]);
}

static void test_options_decided_once(void **state)
{
    static const char *const paths[] = {"/v1/query", "/v1/connections", "/v1/results/r1",
                                        "/v1/nope"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        struct route_policy p;
        route_match("OPTIONS", paths[i], NULL, &p);
        assert_int_equal(p.id, ROUTE_UNKNOWN);
        assert_false(p.mutation); /* safe: invalidates nothing */
        assert_false(p.inval_workspace);
        assert_false(p.readonly_ok); /* not a read: full clients only */
        assert_false(p.replay_ok);   /* never sent twice */
        assert_int_equal(p.cache_class, ROUTE_CACHE_NEVER);
        assert_false(auth_mode_allows(HG_MODE_READ_ONLY, &p));
        assert_true(auth_mode_allows(HG_MODE_FULL, &p));
    }
}

/* ---- the route stage in a pipeline ---- */

static int status_seen, probe_runs;
static enum route_id probe_id;

static void f_head(struct hg_req *req, int status, const struct evkeyvalq *h, int64_t cl,
                   const struct http1_field *f, int nf)
{
    status_seen = status;
}
static size_t f_data(struct hg_req *req, struct evbuffer *chunk)
{
    evbuffer_drain(chunk, evbuffer_get_length(chunk));
    return 0;
}
static void f_end(struct hg_req *req) {}
static void f_finish(struct hg_req *req)
{
    req->conn = NULL;
    pipeline_req_unref(req);
}
static const struct hg_req_io fake_io = {
    .head = f_head, .data = f_data, .end = f_end, .finish = f_finish};

/* Stands for the stages after the route (the cache, enabled or not): sees req->route. */
static enum hg_stage_result probe_run(struct hg_req *req)
{
    probe_runs++;
    assert_non_null(req->route);
    probe_id = req->route->id;
    pipeline_respond_buffer(req, 200, NULL, NULL);
    return HG_DONE;
}
static const struct hg_stage_ops probe = {.name = "probe", .run = probe_run};

static int conn_dummy;

static void run(enum hg_mode mode, const char *method, const char *path)
{
    static const struct hg_stage_ops *const table[] = {&route_stage_ops, &probe};
    pipeline_set_stages(table, 2);
    struct hg_client cl = {.name = "c", .mode = mode};
    struct hg_req *r = pipeline_req_new(NULL);
    r->conn = (struct hg_conn *)&conn_dummy;
    r->io = &fake_io;
    r->client = &cl;
    r->method_name = strdup(method);
    r->path = strdup(path);
    status_seen = 0;
    probe_runs = 0;
    probe_id = ROUTE__COUNT;
    pipeline_start(r);
}

static void test_route_stage_routes_every_request(void **state)
{
    run(HG_MODE_FULL, "GET", "/v1/connections");
    assert_int_equal(probe_runs, 1);
    assert_int_equal(probe_id, ROUTE_CONNECTIONS_LIST);
    run(HG_MODE_READ_ONLY, "POST", "/v1/query");
    assert_int_equal(probe_id, ROUTE_QUERY);
    assert_int_equal(status_seen, 200);
    run(HG_MODE_FULL, "OPTIONS", "/v1/query");
    assert_int_equal(probe_id, ROUTE_UNKNOWN);
    assert_int_equal(status_seen, 200);
    /* read-only clients: refused by the row's readonly_ok, before any later stage */
    run(HG_MODE_READ_ONLY, "OPTIONS", "/v1/query");
    assert_int_equal(probe_runs, 0);
    assert_int_equal(status_seen, 403);
    run(HG_MODE_READ_ONLY, "DELETE", "/v1/connections/c1");
    assert_int_equal(probe_runs, 0);
    assert_int_equal(status_seen, 403);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_columns_agree_every_row),
        cmocka_unit_test(test_options_decided_once),
        cmocka_unit_test(test_route_stage_routes_every_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
