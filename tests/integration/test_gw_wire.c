/*
 * test_gw_wire: the upstream client on the wire. hotgate talks to gw_upstream.h's canned
 * answers (/v1/raw/CASE) and to its echo, and must reframe valid HTTP/1.x answers
 * (chunked with extensions and trailers, 1xx heads, HTTP/1.0 and close-delimited bodies,
 * bare LF), refuse malformed ones with 502 UPSTREAM_UNAVAILABLE, survive pooled
 * connections the server closed, keep to max_connections_per_host, drop idle connections
 * after idle_timeout, and send the request head right (Host, path prefix, framing).
 * CMakeLists.txt runs this suite once per transport (HG_TEST_UPSTREAM_CLIENT).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <jansson.h>
#include <pthread.h>
#include <sys/stat.h>

#include "harness.h"
#include "util.h"

#include "gw_upstream.h"

static const char *const AUTH[] = {"Authorization: Bearer ck_alice", NULL};

static void gw_up(struct gw *g, const char *upstream_url, const char *extra)
{
    assert_int_equal(gw_start(g, "gwwire", upstream_url, extra), 0);
}

static void gw_down(struct gw *g)
{
    gw_stop(g);
}

static struct gw G;

/* the transport under test: the native client unless HG_TEST_UPSTREAM_CLIENT=curl */
static int native(void)
{
    const char *c = getenv("HG_TEST_UPSTREAM_CLIENT");
    return !c || strcmp(c, "curl") != 0;
}

static int setup(void **state)
{
    if (!gwu_start(0))
        return -1;
    char *url = harness_url("http://127.0.0.1:%d", g_gwu->port);
    gw_up(&G, url, "[upstream]\nretries = 1\nretry_backoff_ms = 10\n");
    free(url);
    return 0;
}

static int teardown(void **state)
{
    gw_down(&G);
    gwu_stop(g_gwu);
    return 0;
}

static int get(const char *method, const char *path, const char *body, hresp *r)
{
    char *u = harness_url("http://127.0.0.1:%d%s", G.hg.port, path);
    int rc = http_do(method, u, AUTH, body, body ? strlen(body) : 0, r);
    free(u);
    return rc;
}

static void expect_body(const char *path, const char *want_ct, const char *want_body)
{
    hresp r;
    assert_int_equal(get("GET", path, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, strlen(want_body));
    assert_memory_equal(r.body, want_body, r.len);
    if (want_ct) {
        char *ct = hresp_header(&r, "Content-Type");
        assert_non_null(ct);
        assert_string_equal(ct, want_ct);
        free(ct);
    }
    hresp_free(&r);
}

/* The suite runs on the transport it claims to: hotgate names it in its start line. */
static void test_transport_in_use(void **state)
{
    char want[64];
    snprintf(want, sizeof want, "(%s client)", native() ? "native" : "curl");
    char *log = NULL;
    for (int i = 0; i < 50; i++) {
        FILE *f = fopen(G.hg.log, "r");
        if (!f)
            break;
        static char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        if ((log = strstr(buf, want)))
            break;
        gwu_sleep_ms(20);
    }
    if (!log)
        fail_msg("hotgate's log does not say %s", want);
}

static void test_valid_framings(void **state)
{
    expect_body("/v1/raw/chunked", "application/json", "{\"a\":[1,2,3]}");
    expect_body("/v1/raw/continue", "application/json", "{\"ok\":true}");
    expect_body("/v1/raw/http10", "text/plain", "hello, 1.0");
    expect_body("/v1/raw/eof_body", "text/plain", "until the end");
    expect_body("/v1/raw/bare_lf", "text/plain", "ok");
    /* and the connection pool is still fine afterwards */
    expect_body("/v1/raw/chunked", "application/json", "{\"a\":[1,2,3]}");
}

static void expect_502(const char *path)
{
    hresp r;
    assert_int_equal(get("GET", path, NULL, &r), 0);
    if (r.status != 502)
        fprintf(stderr, "%s: status %ld body %.*s\n", path, r.status, (int)r.len, r.body);
    assert_int_equal(r.status, 502);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "UPSTREAM_UNAVAILABLE");
    json_decref(j);
    hresp_free(&r);
}

static void test_malformed_heads_502(void **state)
{
    expect_502("/v1/raw/garbage");
    expect_502("/v1/raw/big_head");
    if (native()) /* curl 7.88 takes one of two differing Content-Lengths (RFC 9112: error) */
        expect_502("/v1/raw/two_lengths");
    expect_502("/v1/raw/status_999");
    expect_502("/v1/raw/no_answer");
    /* the gateway still works */
    expect_body("/v1/raw/bare_lf", NULL, "ok");
}

/* A body that breaks after the head went out: the client must not see a complete answer. */
static void test_broken_bodies_not_complete(void **state)
{
    const char *paths[] = {"/v1/raw/truncated", "/v1/raw/bad_chunk"};
    for (size_t i = 0; i < 2; i++) {
        hresp r;
        int rc = get("GET", paths[i], NULL, &r);
        int complete_ok =
            rc == 0 && r.status == 200 && (i == 0 ? r.len == 100 : strcmp(r.body, "hello") == 0);
        hresp_free(&r); /* allocated when the transfer failed too */
        assert_false(complete_ok);
    }
    expect_body("/v1/raw/bare_lf", NULL, "ok");
}

/* The server answers without "Connection: close" and then closes: every next request
 * meets a connection the server closed. None of them may fail, POSTs included. */
static void test_server_closed_pooled_connections(void **state)
{
    for (int i = 0; i < 40; i++) {
        hresp r;
        const char *m = i % 2 ? "POST" : "GET";
        assert_int_equal(get(m, "/v1/raw/close_after", i % 2 ? "{\"x\":1}" : NULL, &r), 0);
        if (r.status != 200)
            fprintf(stderr, "request %d (%s): %ld %.*s\n", i, m, r.status, (int)r.len, r.body);
        assert_int_equal(r.status, 200);
        hresp_free(&r);
    }
}

static void test_request_head(void **state)
{
    hresp r;
    assert_int_equal(get("POST", "/v1/echo?q=1", "{\"sql\":\"select 1\"}", &r), 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    assert_non_null(j);
    json_t *h = json_object_get(j, "headers");
    char host[64];
    snprintf(host, sizeof host, "127.0.0.1:%d", g_gwu->port);
    assert_string_equal(json_string_value(json_object_get(h, "host")), host);
    assert_string_equal(json_string_value(json_object_get(h, "authorization")), "Bearer tok_test");
    assert_string_equal(json_string_value(json_object_get(h, "content-length")), "18");
    assert_null(json_object_get(h, "transfer-encoding"));
    assert_null(json_object_get(h, "expect"));
    assert_int_equal(json_integer_value(json_object_get(j, "body_len")), 18);
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/v1/echo?q=1");
    json_decref(j);
    hresp_free(&r);
    /* a POST without a body: Content-Length: 0 (native) or no framing at all (curl); both
     * mean an empty body, never a chunked one */
    assert_int_equal(get("POST", "/v1/echo", NULL, &r), 0);
    j = json_loadb(r.body, r.len, 0, NULL);
    h = json_object_get(j, "headers");
    const char *cl = json_string_value(json_object_get(h, "content-length"));
    if (native() || cl)
        assert_string_equal(cl ? cl : "(none)", "0");
    assert_null(json_object_get(h, "transfer-encoding"));
    assert_int_equal(json_integer_value(json_object_get(j, "body_len")), 0);
    json_decref(j);
    hresp_free(&r);
}

static void test_url_prefix(void **state)
{
    char *url = harness_url("http://127.0.0.1:%d/api/base", g_gwu->port);
    struct gw g;
    gw_up(&g, url, NULL);
    char *u = harness_url("http://127.0.0.1:%d/v1/echo", g.hg.port);
    hresp r;
    assert_int_equal(http_do("GET", u, AUTH, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"path\":\"/api/base/v1/echo\""));
    hresp_free(&r);
    free(u);
    free(url);
    gw_down(&g);
}

struct bgreq {
    int port;
    hresp r;
    int rc;
    pthread_t t;
};

static void *bg_slow(void *arg)
{
    struct bgreq *b = arg;
    char *u = harness_url("http://127.0.0.1:%d/v1/slow?ms=150", b->port);
    b->rc = http_do("GET", u, AUTH, NULL, 0, &b->r);
    free(u);
    return NULL;
}

static void test_connection_cap(void **state)
{
    char *url = harness_url("http://127.0.0.1:%d", g_gwu->port);
    struct gw g;
    gw_up(&g, url, "[server]\nthreads = 1\n[upstream]\nmax_connections_per_host = 2\n");
    int before = atomic_load(&g_gwu->connections);
    struct bgreq b[12];
    for (int i = 0; i < 12; i++) {
        b[i].port = g.hg.port;
        pthread_create(&b[i].t, NULL, bg_slow, &b[i]);
    }
    for (int i = 0; i < 12; i++) {
        pthread_join(b[i].t, NULL);
        assert_int_equal(b[i].rc, 0);
        assert_int_equal(b[i].r.status, 200);
        hresp_free(&b[i].r);
    }
    int opened = atomic_load(&g_gwu->connections) - before;
    assert_true(opened >= 1);
    assert_true(opened <= 2);
    free(url);
    gw_down(&g);
}

static void test_idle_timeout(void **state)
{
    char *url = harness_url("http://127.0.0.1:%d", g_gwu->port);
    struct gw g;
    gw_up(&g, url, "[server]\nthreads = 1\n[upstream]\nidle_timeout = 1\n");
    char *u = harness_url("http://127.0.0.1:%d/v1/echo", g.hg.port);
    int before = atomic_load(&g_gwu->connections);
    for (int i = 0; i < 3; i++) {
        hresp r;
        assert_int_equal(http_do("GET", u, AUTH, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        hresp_free(&r);
    }
    assert_int_equal(atomic_load(&g_gwu->connections) - before, 1); /* reused */
    gwu_sleep_ms(2300);
    hresp r;
    assert_int_equal(http_do("GET", u, AUTH, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    assert_int_equal(atomic_load(&g_gwu->connections) - before, 2); /* idle one dropped */
    free(u);
    free(url);
    gw_down(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transport_in_use),
        cmocka_unit_test(test_valid_framings),
        cmocka_unit_test(test_malformed_heads_502),
        cmocka_unit_test(test_broken_bodies_not_complete),
        cmocka_unit_test(test_server_closed_pooled_connections),
        cmocka_unit_test(test_request_head),
        cmocka_unit_test(test_url_prefix),
        cmocka_unit_test(test_connection_cap),
        cmocka_unit_test(test_idle_timeout),
    };
    return cmocka_run_group_tests_name("upstream wire", tests, setup, teardown);
}
