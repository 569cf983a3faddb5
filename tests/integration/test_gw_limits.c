/*
 * test_gw_limits: limits that hold against a hostile client or a shedding upstream (issue
 * 10). hotgate runs in front of gw_upstream.h's test upstream.
 *   - 429 with Retry-After and a credential without `rate`: the cooldown holds, resends
 *     are bounded by [queue] shed_retries and counted in the access log's attempts;
 *   - ambiguous paths (`..;`, overlong UTF-8 dots) are refused with 400, header names with
 *     `_` never reach the upstream, a client that half-closes after its request gets its
 *     answer, the 414 status line reads "URI Too Long";
 *   - slow request bodies ([server] body_timeout / body_min_rate) get 408 and a close; a
 *     client that never reads a large answer is dropped after write_timeout;
 *   - at the fd limit the accept loop backs off (no log flood), and clients are served
 *     again once others close; [server] max_connections closes idle keep-alive ones first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "harness.h"
#include "util.h"

#include "gw_upstream.h"

static const char *const AUTH[] = {"Authorization: Bearer ck_alice", NULL};

/* read until EOF or timeout_s of silence; malloc'd, NUL-terminated */
static char *read_all(int fd, int timeout_s)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    struct timeval tv = {timeout_s, 0};
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
    return buf;
}

/* one raw request; half_close: shutdown(SHUT_WR) after sending it */
static char *raw(int port, const char *text, int half_close)
{
    int fd = harness_connect(port);
    assert_true(fd >= 0);
    gwu_write_all(fd, text, strlen(text));
    if (half_close)
        shutdown(fd, SHUT_WR);
    char *r = read_all(fd, 10);
    close(fd);
    return r;
}

static __attribute__((unused)) long count_in_file(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long n = 0;
    char line[8192];
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

/* the value of "key": in the last access-log line that contains needle, -1 if none */
static long access_field(const struct gw *g, const char *needle, const char *key)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/access.log", g->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    char line[8192], k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle)) {
            const char *p = strstr(line, k);
            if (p)
                v = strtol(p + strlen(k), NULL, 10);
        }
    fclose(f);
    return v;
}

/* stop hotgate but keep its directory (the access log); gw_stop removes it later */
static void gw_halt(struct gw *g)
{
    if (g->hg.pid > 0)
        harness_stop(&g->hg, 10000);
    g->hg.pid = 0;
}

static char *gw_url(const struct gw *g, const char *path)
{
    return harness_url("http://127.0.0.1:%d%s", g->hg.port, path);
}

/* ---- 1. Retry-After without a rate ---- */

static void test_retry_after_without_rate(void **state)
{
    (void)state;
    struct gw g;
    char *up = harness_url("http://127.0.0.1:%d", g_gwu->port);
    /* the credential has no rate (the shipped default); the queue deadline is far shorter
     * than the cooldown */
    assert_int_equal(gw_start(&g, "lim429", up, "[queue]\ndeadline = 2\nshed_retries = 2\n"), 0);
    int before = atomic_load(&g_gwu->requests);
    char *u = gw_url(&g, "/v1/status?s=429&ra=30&t=one");
    hresp r = {0};
    assert_int_equal(http_do("GET", u, AUTH, NULL, 0, &r), 0);
    int sent = atomic_load(&g_gwu->requests) - before;
    printf("# 429 Retry-After: 30, no rate: client status %ld, upstream requests %d\n", r.status,
           sent);
    /* one upstream call: the cooldown (30 s) outlasts the queue deadline, so the request is
     * answered at once instead of being resent */
    assert_int_equal(sent, 1);
    assert_true(r.status == 429 || r.status == 503);
    char *ra = hresp_header(&r, "Retry-After");
    assert_non_null(ra);
    free(ra);
    hresp_free(&r);
    /* while the cooldown holds, nothing goes upstream whatever the rate settings */
    before = atomic_load(&g_gwu->requests);
    for (int i = 0; i < 3; i++) { /* each waits out the 2 s deadline */
        hresp q = {0};
        char *u2 = gw_url(&g, "/v1/echo?during=cooldown");
        assert_int_equal(http_do("GET", u2, AUTH, NULL, 0, &q), 0);
        assert_int_equal(q.status, 503);
        free(u2);
        hresp_free(&q);
    }
    assert_int_equal(atomic_load(&g_gwu->requests) - before, 0);
    free(u);
    gw_stop(&g);

    /* a short Retry-After: resent, at most shed_retries times, each counted in attempts */
    assert_int_equal(gw_start(&g, "lim429b", up, "[queue]\ndeadline = 30\nshed_retries = 2\n"), 0);
    before = atomic_load(&g_gwu->requests);
    u = gw_url(&g, "/v1/status?s=429&ra=1&t=two");
    memset(&r, 0, sizeof r);
    assert_int_equal(http_do("GET", u, AUTH, NULL, 0, &r), 0);
    sent = atomic_load(&g_gwu->requests) - before;
    printf("# 429 Retry-After: 1, shed_retries 2: status %ld, upstream requests %d\n", r.status,
           sent);
    assert_int_equal(r.status, 429);
    assert_int_equal(sent, 3);
    hresp_free(&r);
    free(u);
    gw_halt(&g); /* flushes the access log */
    assert_int_equal(access_field(&g, "\"/v1/status\"", "attempts"), 3);
    gw_stop(&g);
    free(up);
}

/* ---- 6. small ones ---- */

static void test_ambiguous_paths(void **state)
{
    (void)state;
    struct gw g;
    char *up = harness_url("http://127.0.0.1:%d", g_gwu->port);
    assert_int_equal(gw_start(&g, "limpath", up, NULL), 0);
    static const char *bad[] = {"/v1/..;/x",
                                "/v1/echo/..;/x",
                                "/v1/echo/..;a/x",
                                "/v1/%c0%ae%c0%ae/x",
                                "/v1/%e0%80%ae%e0%80%ae/x",
                                "/v1/%f0%80%80%ae/x",
                                "/v1/%C0%AE/x",
                                "/v1/echo/%c0%ae",
                                "/v1/%c1%9c/x",
                                NULL};
    for (int i = 0; bad[i]; i++) {
        char req[512];
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n"
                 "Connection: close\r\n\r\n",
                 bad[i]);
        int before = atomic_load(&g_gwu->requests);
        char *r = raw(g.hg.port, req, 0);
        if (strncmp(r, "HTTP/1.1 400 ", 13) != 0)
            fprintf(stderr, "%s -> %.80s\n", bad[i], r);
        assert_true(strncmp(r, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
        assert_non_null(strstr(r, "\"code\":"));
        assert_int_equal(atomic_load(&g_gwu->requests), before);
        free(r);
    }
    /* a plain `;` elsewhere and a plain encoded dot are not ambiguous */
    char *r = raw(g.hg.port,
                  "GET /v1/echo/a;b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n"
                  "Connection: close\r\n\r\n",
                  0);
    assert_true(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
    free(r);
    gw_stop(&g);
    free(up);
}

static void test_underscore_headers_dropped(void **state)
{
    (void)state;
    struct gw g;
    char *up = harness_url("http://127.0.0.1:%d", g_gwu->port);
    assert_int_equal(gw_start(&g, "limhdr", up, NULL), 0);
    char *r = raw(g.hg.port,
                  "GET /v1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n"
                  "X-Workspace_Id: ws_other\r\nX_Custom: 1\r\nX-Fine: yes\r\n"
                  "Connection: close\r\n\r\n",
                  0);
    assert_true(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
    /* the echo lists the headers the upstream got (lower-cased) */
    assert_non_null(strstr(r, "\"x-fine\":\"yes\""));
    assert_null(strstr(r, "x-workspace_id"));
    assert_null(strstr(r, "x_custom"));
    assert_non_null(strstr(r, "\"x-workspace-id\":\"ws_test\""));
    free(r);
    gw_stop(&g);
    free(up);
}

static void test_half_close_answered(void **state)
{
    (void)state;
    struct gw g;
    char *up = harness_url("http://127.0.0.1:%d", g_gwu->port);
    assert_int_equal(gw_start(&g, "limhalf", up, NULL), 0);
    /* the upstream takes its time: the EOF is read long before the answer exists */
    char *r = raw(g.hg.port,
                  "GET /v1/slow?ms=300&t=half HTTP/1.1\r\nHost: x\r\n"
                  "Authorization: Bearer ck_alice\r\n\r\n",
                  1);
    assert_true(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
    assert_non_null(strstr(r, "\"path\":\"/v1/slow"));
    free(r);
    /* a POST with its body, then the half-close */
    r = raw(g.hg.port,
            "POST /v1/echo?t=halfpost HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n"
            "Content-Length: 5\r\n\r\nhello",
            1);
    assert_true(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
    assert_non_null(strstr(r, "\"body_len\":5"));
    free(r);
    /* and many of them, fast and slow upstream answers alike */
    int ok = 0;
    for (int i = 0; i < 60; i++) {
        char req[256];
        snprintf(req, sizeof req,
                 "GET /v1/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n\r\n",
                 i % 3 == 0 ? "slow?ms=20" : "echo");
        r = raw(g.hg.port, req, 1);
        ok += strncmp(r, "HTTP/1.1 200 ", 13) == 0;
        free(r);
    }
    printf("# half-closed clients answered: %d of 60\n", ok);
    assert_int_equal(ok, 60);
    gw_halt(&g);
    assert_int_equal(access_field(&g, "\"/v1/slow\"", "status"), 200);
    assert_int_equal(access_field(&g, "\"/v1/echo\"", "status"), 200);
    gw_stop(&g);
    free(up);
}

static void test_reason_phrases(void **state)
{
    (void)state;
    struct gw g;
    char *up = harness_url("http://127.0.0.1:%d", g_gwu->port);
    assert_int_equal(gw_start(&g, "limreason", up, NULL), 0);
    size_t n = 70000; /* over max_header_size (64 KiB) */
    char *req = malloc(n + 200);
    strcpy(req, "GET /v1/echo?q=");
    memset(req + strlen(req), 'a', n);
    strcpy(req + 15 + n, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    char *r = raw(g.hg.port, req, 0);
    if (strncmp(r, "HTTP/1.1 414 URI Too Long\r\n", 27) != 0)
        fprintf(stderr, "414 -> %.60s\n", r);
    assert_true(strncmp(r, "HTTP/1.1 414 URI Too Long\r\n", 27) == 0);
    free(r);
    free(req);
    /* an upstream status hotgate has no phrase of its own for keeps an RFC 9110 one */
    r = raw(g.hg.port,
            "GET /v1/status?s=415 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ck_alice\r\n"
            "Connection: close\r\n\r\n",
            0);
    assert_true(strncmp(r, "HTTP/1.1 415 Unsupported Media Type\r\n", 37) == 0);
    free(r);
    gw_stop(&g);
    free(up);
}

static int setup(void **state)
{
    (void)state;
    return gwu_start(0) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    gwu_stop(g_gwu);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_after_without_rate),
        cmocka_unit_test(test_ambiguous_paths),
        cmocka_unit_test(test_underscore_headers_dropped),
        cmocka_unit_test(test_half_close_answered),
        cmocka_unit_test(test_reason_phrases),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
