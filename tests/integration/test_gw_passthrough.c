/*
 * test_gw_passthrough: hotgate forwards the /v1 API unchanged and applies its own rules.
 *
 * Part 1 (gateway rules) runs hotgate in front of gw_upstream.h's echo upstream, which
 * reports what it received: headers forwarded / removed / injected, request ids, auth
 * 401/403, read-only mode, default workspace injection, unknown /v1 paths, non-/v1 404,
 * path traversal and request smuggling refused, non-JSON bodies and statuses unchanged,
 * no secret in any log.
 *
 * Part 2 (API parity) runs hotgate in front of hotdata-sim and sends every endpoint of the
 * API reference both straight to the simulator (with the upstream token) and through
 * hotgate (with a client key), comparing status and body: exactly for reads, by shape
 * (same keys, same JSON types) for creations whose ids and timestamps differ per call.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <jansson.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "harness.h"
#include "util.h"

#include "gw_upstream.h"

static struct {
    char *dir, *conf;
    hproc hg;
    int admin_port;
} G;

/* ---------------------------------------------------------------------------------- */
/* part 1: gateway rules                                                               */

static json_t *echo_headers(const hresp *r, json_t **root)
{
    *root = json_loadb(r->body, r->len, 0, NULL);
    assert_non_null(*root);
    return json_object_get(*root, "headers");
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void assert_api_error(const hresp *r, int status, const char *code)
{
    assert_int_equal(r->status, status);
    json_t *j = json_loadb(r->body, r->len, 0, NULL);
    assert_non_null(j);
    json_t *e = json_object_get(j, "error");
    assert_non_null(e);
    if (code)
        assert_string_equal(jstr(e, "code"), code);
    assert_non_null(jstr(e, "message"));
    assert_string_equal(jstr(j, "message"), jstr(e, "message"));
    assert_int_equal(json_integer_value(json_object_get(j, "status")), status);
    json_decref(j);
    char *ct = hresp_header(r, "Content-Type");
    assert_non_null(ct);
    assert_string_equal(ct, "application/json");
    free(ct);
}

static int gw_req(const char *method, const char *path, const char *const hdrs[], const char *body,
                  hresp *r)
{
    char *u = harness_url("http://127.0.0.1:%d%s", G.hg.port, path);
    int rc = http_do(method, u, hdrs, body, body ? strlen(body) : 0, r);
    free(u);
    return rc;
}

static void test_headers_forwarded(void **state)
{
    const char *h[] = {"Authorization: Bearer ck_alice",
                       "X-Request-Id: my-id-1",
                       "Connection: X-Hop",
                       "X-Hop: must-not-pass",
                       "Keep-Alive: timeout=5",
                       "Proxy-Authorization: Basic eDp5",
                       "X-Custom: keep me",
                       "Accept: application/json",
                       NULL};
    hresp r;
    assert_int_equal(gw_req("GET", "/v1/echo/a?x=1&y=%20z", h, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    char *rid = hresp_header(&r, "X-Request-Id");
    assert_string_equal(rid, "my-id-1");
    free(rid);
    char *xu = hresp_header(&r, "X-Upstream");
    assert_string_equal(xu, "gwu"); /* upstream headers pass back */
    free(xu);
    json_t *root, *eh = echo_headers(&r, &root);
    assert_string_equal(jstr(root, "path"), "/v1/echo/a?x=1&y=%20z");
    assert_string_equal(jstr(eh, "authorization"), "Bearer tok_test"); /* token injected */
    assert_string_equal(jstr(eh, "x-request-id"), "my-id-1");
    assert_string_equal(jstr(eh, "x-workspace-id"), "ws_test"); /* default injected */
    assert_string_equal(jstr(eh, "x-custom"), "keep me");
    assert_string_equal(jstr(eh, "accept"), "application/json");
    assert_null(json_object_get(eh, "x-hop"));
    assert_null(json_object_get(eh, "keep-alive"));
    assert_null(json_object_get(eh, "proxy-authorization"));
    json_decref(root);
    hresp_free(&r);
}

static void test_request_id_generated(void **state)
{
    const char *h[] = {"Authorization: Bearer ck_alice", "X-Request-Id: has space", NULL};
    hresp r;
    assert_int_equal(gw_req("GET", "/v1/echo", h, NULL, &r), 0);
    char *rid = hresp_header(&r, "X-Request-Id");
    assert_non_null(rid);
    assert_int_equal(strlen(rid), 32);
    json_t *root, *eh = echo_headers(&r, &root);
    assert_string_equal(jstr(eh, "x-request-id"), rid);
    json_decref(root);
    free(rid);
    hresp_free(&r);
}

static void test_auth_and_modes(void **state)
{
    hresp r;
    assert_int_equal(gw_req("GET", "/v1/echo", NULL, NULL, &r), 0);
    assert_api_error(&r, 401, NULL);
    hresp_free(&r);
    const char *wrong[] = {"Authorization: Bearer ck_mallory", NULL};
    assert_int_equal(gw_req("GET", "/v1/echo", wrong, NULL, &r), 0);
    assert_api_error(&r, 401, NULL);
    hresp_free(&r);
    /* the upstream token is not a client key */
    const char *tok[] = {"Authorization: Bearer tok_test", NULL};
    assert_int_equal(gw_req("GET", "/v1/echo", tok, NULL, &r), 0);
    assert_api_error(&r, 401, NULL);
    hresp_free(&r);

    const char *alice_bad_ws[] = {"Authorization: Bearer ck_alice", "X-Workspace-Id: ws_nope",
                                  NULL};
    assert_int_equal(gw_req("GET", "/v1/echo", alice_bad_ws, NULL, &r), 0);
    assert_api_error(&r, 403, NULL);
    hresp_free(&r);
    const char *alice_other[] = {"Authorization: Bearer ck_alice", "X-Workspace-Id: ws_other",
                                 NULL};
    assert_int_equal(gw_req("GET", "/v1/echo", alice_other, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *root, *eh = echo_headers(&r, &root);
    assert_string_equal(jstr(eh, "x-workspace-id"), "ws_other");
    json_decref(root);
    hresp_free(&r);

    /* bob: read-only, ws_test only, no default */
    const char *bob[] = {"Authorization: Bearer ck_bob", NULL};
    assert_int_equal(gw_req("GET", "/v1/echo", bob, NULL, &r), 0);
    assert_api_error(&r, 403, NULL); /* must name a workspace */
    hresp_free(&r);
    const char *bobws[] = {"Authorization: Bearer ck_bob", "X-Workspace-Id: ws_test",
                           "Content-Type: application/json", NULL};
    assert_int_equal(gw_req("GET", "/v1/echo", bobws, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    assert_int_equal(gw_req("HEAD", "/v1/echo", bobws, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    assert_int_equal(gw_req("POST", "/v1/echo/query", bobws, "{}", &r), 0);
    assert_api_error(&r, 403, NULL);
    hresp_free(&r);
    /* the reads that are POSTs */
    assert_int_equal(gw_req("POST", "/v1/query", bobws, "{\"sql\":\"select 1\"}", &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    assert_int_equal(gw_req("POST", "/v1/queries/svq_1/execute", bobws, "", &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    const char *const methods[] = {"PUT", "DELETE", "PATCH"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(gw_req(methods[i], "/v1/secrets/x", bobws, "{}", &r), 0);
        assert_api_error(&r, 403, NULL);
        hresp_free(&r);
    }
}

static void test_workspaces_no_injection(void **state)
{
    const char *h[] = {"Authorization: Bearer ck_alice", NULL};
    hresp r;
    assert_int_equal(gw_req("GET", "/v1/workspaces", h, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *root, *eh = echo_headers(&r, &root);
    assert_null(json_object_get(eh, "x-workspace-id"));
    assert_string_equal(jstr(eh, "authorization"), "Bearer tok_test");
    json_decref(root);
    hresp_free(&r);
}

static void test_paths(void **state)
{
    const char *h[] = {"Authorization: Bearer ck_alice", NULL};
    hresp r;
    assert_int_equal(gw_req("GET", "/", h, NULL, &r), 0);
    assert_api_error(&r, 404, "NOT_FOUND");
    hresp_free(&r);
    assert_int_equal(gw_req("GET", "/metrics", h, NULL, &r), 0);
    assert_api_error(&r, 404, "NOT_FOUND");
    hresp_free(&r);
    /* an endpoint the reference does not list still goes upstream */
    assert_int_equal(gw_req("GET", "/v1/some/future/endpoint?x=1", h, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"path\":\"/v1/some/future/endpoint?x=1\""));
    hresp_free(&r);
    /* traversal and ambiguous encodings (curl squashes dot segments unless told not to,
     * so these go over a raw socket below as well) */
    const char *bad[] = {"/v1/%2e%2e/admin", "/v1%2fconnections", "/v1/a%2Fb", "/v1/a%5cb",
                         "/v1/a%252e"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(gw_req("GET", bad[i], h, NULL, &r), 0);
        assert_api_error(&r, 400, "BAD_REQUEST");
        hresp_free(&r);
    }
}

/* Raw HTTP over a socket; returns the response text (malloc'd). */
static char *raw(const char *text)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)G.hg.port);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    /* no half-close here (a half-closed client still gets its answer: test_gw_limits) */
    gwu_write_all(fd, text, strlen(text));
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (;;) {
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len + 1 >= cap)
            break;
    }
    buf[len] = '\0';
    close(fd);
    return buf;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static void test_raw_requests(void **state)
{
    char *r;
    r = raw("GET /v1/../admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 400", 12) == 0);
    free(r);
    r = raw("GET /v1/./echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 400", 12) == 0);
    free(r);
    r = raw("GET //v1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 400", 12) == 0);
    free(r);
    r = raw("GET /v1\\..\\admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 400", 12) == 0);
    free(r);
    /* absolute-form: never an open proxy */
    r = raw("GET http://evil.example/v1/echo HTTP/1.1\r\nHost: evil.example\r\n"
            "Authorization: Bearer ck_alice\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 400", 12) == 0);
    assert_null(strstr(r, "gwu"));
    free(r);
    r = raw("CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 4", 10) == 0);
    free(r);
    /* smuggling shapes */
    r = raw("POST /v1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n"
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 400", 12) == 0);
    free(r);
    r = raw("POST /v1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n"
            "Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde");
    assert_true(strncmp(r, "HTTP/1.1 400", 12) == 0);
    free(r);
    r = raw("POST /v1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n"
            "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 501", 12) == 0 || strncmp(r, "HTTP/1.1 400", 12) == 0);
    free(r);
    r = raw("GET /v1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n"
            "X-Folded: a\r\n b\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 400", 12) == 0);
    free(r);
    r = raw("GET /v1/echo HTTP/1.1\r\nHost: x\r\nAuthorization : Bearer ck_alice\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 400", 12) == 0);
    free(r);
    r = raw("GET /v1/echo HTTP/2.0\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 505", 12) == 0);
    assert_non_null(strstr(r, "\"HTTP_VERSION_NOT_SUPPORTED\"")); /* its own error code */
    free(r);
    /* pipelining and a chunked body: answered in order */
    r = raw("GET /v1/echo/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n\r\n"
            "POST /v1/echo/2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n"
            "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n"
            "GET /v1/echo/3 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n"
            "Connection: close\r\n\r\n");
    assert_int_equal(count(r, "HTTP/1.1 200"), 3);
    const char *p1 = strstr(r, "/v1/echo/1"), *p2 = strstr(r, "/v1/echo/2"),
               *p3 = strstr(r, "/v1/echo/3");
    assert_true(p1 && p2 && p3 && p1 < p2 && p2 < p3);
    assert_non_null(strstr(r, "\"body_len\":5"));
    free(r);
    /* HTTP/1.0 */
    r = raw("GET /v1/echo HTTP/1.0\r\nAuthorization: Bearer ck_alice\r\n\r\n"); /* closes */
    assert_true(strncmp(r, "HTTP/1.0 200", 12) == 0);
    free(r);
}

static void test_bodies_and_statuses_unchanged(void **state)
{
    const char *h[] = {"Authorization: Bearer ck_alice",
                       "Accept: application/vnd.apache.arrow.stream", NULL};
    hresp r;
    assert_int_equal(gw_req("GET", "/v1/big?n=100000&ct=arrow", h, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 100000);
    for (size_t i = 0; i < r.len; i++)
        if (r.body[i] != 'x')
            fail_msg("byte %zu changed", i);
    char *ct = hresp_header(&r, "Content-Type");
    assert_string_equal(ct, "application/vnd.apache.arrow.stream");
    free(ct);
    char *cl = hresp_header(&r, "Content-Length");
    assert_string_equal(cl, "100000");
    free(cl);
    hresp_free(&r);
    /* (429 is the budget stage's business: it may retry a shed GET) */
    const int statuses[] = {201, 202, 400, 404, 409, 418, 422, 500};
    for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++) {
        char path[64], want[64];
        snprintf(path, sizeof path, "/v1/status?s=%d", statuses[i]);
        snprintf(want, sizeof want, "{\"status\":%d}", statuses[i]);
        assert_int_equal(gw_req("GET", path, h, NULL, &r), 0);
        assert_int_equal(r.status, statuses[i]);
        assert_string_equal(r.body, want);
        hresp_free(&r);
    }
    /* HEAD: the length a GET would have, no body */
    assert_int_equal(gw_req("HEAD", "/v1/big?n=1234", h, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    hresp_free(&r);
}

static void test_metrics_and_health(void **state)
{
    char *u = harness_url("http://127.0.0.1:%d/metrics", G.admin_port);
    hresp r;
    assert_int_equal(http_do("GET", u, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "hotgate_requests_total{code=\"200\"}"));
    assert_non_null(strstr(r.body, "hotgate_request_duration_seconds_bucket"));
    assert_non_null(strstr(r.body, "hotgate_auth_unauthorized_total"));
    assert_null(strstr(r.body, "tok_test"));
    hresp_free(&r);
    free(u);
    u = harness_url("http://127.0.0.1:%d/healthz", G.admin_port);
    assert_int_equal(http_do("GET", u, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    free(u);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = calloc(1, (size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n)
        n = 0;
    fclose(f);
    return b;
}

static void test_no_secret_in_logs(void **state)
{
    gwu_sleep_ms(300); /* the access log is flushed every 100 ms */
    char p[600];
    snprintf(p, sizeof p, "%s/access.log", G.dir);
    char *alog = slurp(p), *elog = slurp(G.hg.log);
    assert_true(strlen(alog) > 100);
    assert_non_null(strstr(alog, "\"client\":\"alice\""));
    assert_non_null(strstr(alog, "\"request_id\":\"my-id-1\""));
    assert_non_null(strstr(alog, "\"sql_hash\":\""));
    const char *secrets[] = {"tok_test", "ck_alice", "ck_bob", "ck_mallory", "select 1"};
    for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++) {
        if (strstr(alog, secrets[i]) || strstr(elog, secrets[i]))
            fail_msg("'%s' found in a log", secrets[i]);
    }
    /* every access-log line is JSON */
    char *save = NULL;
    for (char *line = strtok_r(alog, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j)
            fail_msg("not JSON: %s", line);
        assert_non_null(json_object_get(j, "latency_us"));
        json_decref(j);
    }
    free(alog);
    free(elog);
}

static void test_unix_socket(void **state)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/hg.sock", G.dir);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char *req = "GET /v1/echo/unix HTTP/1.1\r\nHost: x\r\n"
                      "Authorization: Bearer ck_alice\r\nConnection: close\r\n\r\n";
    gwu_write_all(fd, req, strlen(req));
    char buf[8192];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 && (n = recv(fd, buf + len, sizeof buf - 1 - len, 0)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    close(fd);
    if (strncmp(buf, "HTTP/1.1 200", 12) != 0)
        fail_msg("unix socket answer (%zu bytes): %s", len, buf);
    assert_non_null(strstr(buf, "\"path\":\"/v1/echo/unix\""));
}

static int setup_rules(void **state)
{
    if (!gwu_start(0))
        return -1;
    G.dir = harness_tmpdir("gwpass");
    char *url = harness_url("http://127.0.0.1:%d", g_gwu->port);
    int port;
    char extra[700];
    snprintf(extra, sizeof extra, "[server]\nunix_socket = %s/hg.sock\n", G.dir);
    G.conf = gw_write_conf(G.dir, url, extra, &port, &G.admin_port);
    free(url);
    G.hg.port = port;
    return harness_start_hotgate(&G.hg, G.conf, NULL);
}

static int teardown_rules(void **state)
{
    harness_stop(&G.hg, 10000);
    gwu_stop(g_gwu);
    harness_rmdir(G.dir);
    free(G.dir);
    free(G.conf);
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* part 2: API parity with hotdata-sim                                                 */

static struct {
    char *dir, *conf;
    hproc sim, hg;
    int admin_port;
    json_t *vars[2]; /* per side: 0 = direct, 1 = through hotgate */
} P;

enum cmp { EXACT, SHAPE, STATUS };

/* ${name} -> side's variable, ${d:name} -> the direct side's, ${S} -> "d"/"g" */
static char *expand(const char *t, int side)
{
    if (!t)
        return NULL;
    char out[8192];
    size_t o = 0;
    for (const char *p = t; *p && o < sizeof out - 256;) {
        if (p[0] == '$' && p[1] == '{') {
            const char *e = strchr(p, '}');
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(e - p - 2), p + 2);
            int s = side;
            const char *n = name;
            if (strncmp(name, "d:", 2) == 0) {
                s = 0;
                n = name + 2;
            }
            const char *v = strcmp(n, "S") == 0 ? (side ? "g" : "d") : jstr(P.vars[s], n);
            if (!v)
                fail_msg("no variable %s (side %d) for %s", n, s, t);
            o += (size_t)snprintf(out + o, sizeof out - o, "%s", v);
            p = e + 1;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    return strdup(out);
}

/* same keys with the same JSON types (objects: recursively one level) */
static int same_shape(json_t *a, json_t *b, int depth)
{
    if (json_typeof(a) != json_typeof(b)) {
        /* null vs value is a legitimate per-call difference (e.g. completed_at) */
        return json_is_null(a) || json_is_null(b) || (json_is_number(a) && json_is_number(b));
    }
    if (json_is_object(a) && depth < 2) {
        const char *k;
        json_t *v;
        json_object_foreach(a, k, v)
        {
            json_t *w = json_object_get(b, k);
            if (!w || !same_shape(v, w, depth + 1))
                return 0;
        }
        return json_object_size(a) == json_object_size(b);
    }
    return 1;
}

static void step(const char *method, const char *path_t, const char *body_t, enum cmp cmp,
                 const char *capture_field, const char *capture_var)
{
    hresp r[2];
    for (int side = 0; side < 2; side++) {
        char *path = expand(path_t, side), *body = expand(body_t, side);
        const char *hd[] = {"Authorization: Bearer tok_test", "X-Workspace-Id: ws_test",
                            "Content-Type: application/json", NULL};
        const char *hg[] = {"Authorization: Bearer ck_alice", "Content-Type: application/json",
                            NULL};
        int direct = side == 0;
        const char *const *h = direct ? hd : hg;
        if (strncmp(path, "/v1/workspaces", 14) == 0 && direct)
            hd[1] = "Content-Type: application/json", hd[2] = NULL;
        char *u = harness_url("http://127.0.0.1:%d%s", direct ? P.sim.port : P.hg.port, path);
        assert_int_equal(http_do(method, u, h, body, body ? strlen(body) : 0, &r[side]), 0);
        free(u);
        if (capture_field && r[side].len) {
            json_t *j = json_loadb(r[side].body, r[side].len, 0, NULL);
            json_t *v = json_object_get(j, capture_field);
            if (json_is_string(v))
                json_object_set(P.vars[side], capture_var, v);
            json_decref(j);
        }
        free(path);
        free(body);
    }
    if (r[0].status != r[1].status)
        fail_msg("%s %s: status %ld direct, %ld through hotgate\n%s\n%s", method, path_t,
                 r[0].status, r[1].status, r[0].body, r[1].body);
    char *ct0 = hresp_header(&r[0], "Content-Type"), *ct1 = hresp_header(&r[1], "Content-Type");
    if ((ct0 == NULL) != (ct1 == NULL) || (ct0 && strcmp(ct0, ct1) != 0))
        fail_msg("%s %s: Content-Type %s vs %s", method, path_t, ct0, ct1);
    free(ct0);
    free(ct1);
    if (cmp != STATUS) {
        json_t *a = r[0].len ? json_loadb(r[0].body, r[0].len, JSON_DECODE_ANY, NULL) : NULL;
        json_t *b = r[1].len ? json_loadb(r[1].body, r[1].len, JSON_DECODE_ANY, NULL) : NULL;
        if (!a || !b) {
            if (r[0].len != r[1].len || memcmp(r[0].body, r[1].body, r[0].len) != 0)
                fail_msg("%s %s: bodies differ", method, path_t);
        } else if (cmp == EXACT ? !json_equal(a, b) : !same_shape(a, b, 0)) {
            fail_msg("%s %s (%s): bodies differ\ndirect: %s\nhotgate: %s", method, path_t,
                     cmp == EXACT ? "exact" : "shape", r[0].body, r[1].body);
        }
        json_decref(a);
        json_decref(b);
    }
    hresp_free(&r[0]);
    hresp_free(&r[1]);
}

/* Poll the simulator until the result at path_t is no longer pending/processing (its status
 * is a function of time), so that the direct and the gateway reads see the same document. */
static void wait_result_settled(const char *path_t)
{
    char *path = expand(path_t, 0);
    char *u = harness_url("http://127.0.0.1:%d%s", P.sim.port, path);
    const char *hd[] = {"Authorization: Bearer tok_test", "X-Workspace-Id: ws_test", NULL};
    for (int i = 0; i < 200; i++) {
        hresp r = {0};
        int settled = 1;
        if (http_do("GET", u, hd, NULL, 0, &r) == 0 && r.status == 200) {
            json_t *j = json_loadb(r.body, r.len, 0, NULL);
            const char *st = json_string_value(json_object_get(j, "status"));
            settled = !st || (strcmp(st, "pending") != 0 && strcmp(st, "processing") != 0);
            json_decref(j);
        }
        hresp_free(&r);
        if (settled)
            break;
        usleep(50000);
    }
    free(u);
    free(path);
}

static void test_api_parity(void **state)
{
    /* workspaces and metadata */
    step("GET", "/v1/workspaces", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/connection-types", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/connection-types/postgres", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/connection-types/nope", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/connections", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/connections/conn_demo", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/connections/conn_nope", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/connections/conn_demo/health", NULL, SHAPE, NULL, NULL);
    step("GET", "/v1/connections/conn_demo/tables/public/customers/profile", NULL, EXACT, NULL,
         NULL);
    step("GET", "/v1/information_schema", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/information_schema?connection_id=conn_demo&include_columns=true", NULL, EXACT,
         NULL, NULL);
    /* connections */
    step("POST", "/v1/connections",
         "{\"name\":\"pt_${S}\",\"source_type\":\"postgres\",\"config\":{\"host\":\"db\","
         "\"port\":5432,\"database\":\"app\",\"user\":\"u\"},\"skip_discovery\":true}",
         SHAPE, "id", "conn");
    step("GET", "/v1/connections/${d:conn}", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/connections", NULL, EXACT, NULL, NULL);
    step("DELETE", "/v1/connections/${conn}/cache", NULL, EXACT, NULL, NULL);
    step("DELETE", "/v1/connections/${conn}", NULL, EXACT, NULL, NULL);
    /* secrets */
    step("POST", "/v1/secrets", "{\"name\":\"pt_${S}\",\"value\":\"v\"}", SHAPE, "name", "sec");
    step("GET", "/v1/secrets", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/secrets/${d:sec}", NULL, EXACT, NULL, NULL);
    step("PUT", "/v1/secrets/${sec}", "{\"value\":\"w\"}", SHAPE, NULL, NULL);
    step("DELETE", "/v1/secrets/${sec}", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/secrets/nope", NULL, EXACT, NULL, NULL);
    /* queries, runs, results */
    step("POST", "/v1/query", "{\"sql\":\"SELECT count(*) AS n FROM demo.public.customers\"}",
         SHAPE, "query_run_id", "run");
    step("POST", "/v1/query", "{\"sql\":\"SELEC nonsense\"}", SHAPE, NULL, NULL);
    step("GET", "/v1/query-runs/${d:run}", NULL, EXACT, "result_id", "res");
    step("GET", "/v1/query-runs?limit=5", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/results?limit=5", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/results/nope", NULL, EXACT, NULL, NULL);
    /* saved queries */
    step("POST", "/v1/queries", "{\"name\":\"pt_${S}\",\"sql\":\"SELECT 1 AS one\"}", SHAPE, "id",
         "sq");
    step("GET", "/v1/queries/${d:sq}", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/queries?limit=50", NULL, EXACT, NULL, NULL);
    step("PUT", "/v1/queries/${sq}", "{\"sql\":\"SELECT 2 AS two\"}", SHAPE, NULL, NULL);
    step("GET", "/v1/queries/${d:sq}/versions", NULL, EXACT, NULL, NULL);
    step("POST", "/v1/queries/${sq}/execute", "", SHAPE, NULL, NULL);
    step("DELETE", "/v1/queries/${sq}", NULL, EXACT, NULL, NULL);
    /* uploads and datasets */
    step("POST", "/v1/files", "id,name\n1,a\n2,b\n", SHAPE, "id", "up");
    step("GET", "/v1/files", NULL, EXACT, NULL, NULL);
    step("POST", "/v1/datasets",
         "{\"label\":\"pt ${S}\",\"source\":{\"upload_id\":\"${up}\",\"format\":\"csv\"}}", SHAPE,
         "id", "ds");
    step("GET", "/v1/datasets/${d:ds}", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/datasets", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/datasets/${d:ds}/versions", NULL, EXACT, NULL, NULL);
    step("PUT", "/v1/datasets/${ds}", "{\"label\":\"pt2 ${S}\"}", SHAPE, NULL, NULL);
    step("DELETE", "/v1/datasets/${ds}", NULL, EXACT, NULL, NULL);
    wait_result_settled("/v1/results/${d:res}"); /* its status moves with the sim's clock */
    step("GET", "/v1/results/${d:res}", NULL, EXACT, NULL, NULL);
    /* workspaces (token only: no X-Workspace-Id through hotgate either) */
    step("POST", "/v1/workspaces", "{\"name\":\"pt-${S}\"}", SHAPE, NULL, NULL);
    /* indexes */
    step("POST", "/v1/connections/conn_demo/tables/public/customers/indexes",
         "{\"index_name\":\"pt_${S}\",\"columns\":[\"id\"]}", SHAPE, "index_name", "idx");
    step("GET", "/v1/connections/conn_demo/tables/public/customers/indexes", NULL, EXACT, NULL,
         NULL);
    step("DELETE", "/v1/connections/conn_demo/tables/public/customers/indexes/${idx}", NULL, EXACT,
         NULL, NULL);
    step("DELETE", "/v1/connections/conn_demo/tables/public/customers/cache", NULL, EXACT, NULL,
         NULL);
    /* embedding providers */
    step("POST", "/v1/embedding-providers",
         "{\"name\":\"pt_${S}\",\"provider_type\":\"local\",\"config\":{\"model\":\"m\"}}", SHAPE,
         "id", "ep");
    step("GET", "/v1/embedding-providers/${d:ep}", NULL, EXACT, NULL, NULL);
    step("PUT", "/v1/embedding-providers/${ep}", "{\"name\":\"pt2_${S}\"}", SHAPE, NULL, NULL);
    step("DELETE", "/v1/embedding-providers/${ep}", NULL, EXACT, NULL, NULL);
    /* jobs, refresh */
    step("GET", "/v1/embedding-providers", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/jobs", NULL, EXACT, NULL, NULL);
    step("GET", "/v1/jobs/job_nope", NULL, EXACT, NULL, NULL);
    step("POST", "/v1/refresh", "{\"connection_id\":\"conn_nope\"}", EXACT, NULL, NULL);
    /* unknown endpoints and errors come back as the simulator makes them */
    step("GET", "/v1/no-such-endpoint", NULL, EXACT, NULL, NULL);
    step("POST", "/v1/secrets", "{not json", EXACT, NULL, NULL);
}

static int setup_parity(void **state)
{
    P.dir = harness_tmpdir("gwparity");
    if (harness_start_sim(&P.sim, P.dir, NULL) != 0) {
        fprintf(stderr, "hotdata-sim did not start: parity tests cannot run\n");
        return -1;
    }
    char *url = harness_url("http://127.0.0.1:%d", P.sim.port);
    int port;
    P.conf = gw_write_conf(P.dir, url, NULL, &port, &P.admin_port);
    free(url);
    P.hg.port = port;
    P.vars[0] = json_object();
    P.vars[1] = json_object();
    return harness_start_hotgate(&P.hg, P.conf, NULL);
}

static int teardown_parity(void **state)
{
    harness_stop(&P.hg, 10000);
    harness_stop(&P.sim, 5000);
    json_decref(P.vars[0]);
    json_decref(P.vars[1]);
    harness_rmdir(P.dir);
    free(P.dir);
    free(P.conf);
    return 0;
}

int main(void)
{
    const struct CMUnitTest rules[] = {
        cmocka_unit_test(test_headers_forwarded),
        cmocka_unit_test(test_request_id_generated),
        cmocka_unit_test(test_auth_and_modes),
        cmocka_unit_test(test_workspaces_no_injection),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_raw_requests),
        cmocka_unit_test(test_bodies_and_statuses_unchanged),
        cmocka_unit_test(test_metrics_and_health),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_no_secret_in_logs),
    };
    const struct CMUnitTest parity[] = {
        cmocka_unit_test(test_api_parity),
    };
    int fails = cmocka_run_group_tests_name("gateway rules", rules, setup_rules, teardown_rules);
    fails += cmocka_run_group_tests_name("API parity with hotdata-sim", parity, setup_parity,
                                         teardown_parity);
    return fails;
}
