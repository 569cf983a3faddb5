/*
 * test_gw_tls: hotgate -> TLS upstream. nghttpx (Debian's nghttp2-proxy) terminates TLS
 * with a certificate from a CA this test makes with the openssl CLI, and forwards to
 * hotdata-sim (or, if the simulator cannot start, to the in-process gw_upstream).
 *   - verification on, wrong CA: refused -> 502 UPSTREAM_UNAVAILABLE
 *   - right CA: answers pass through
 *   - HTTP/2: 50 concurrent client requests share ONE upstream connection
 *     (hotgate_upstream_connections_opened_total on the admin /metrics).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"
#include "util.h"

#include "gw_upstream.h"

static struct {
    char *dir;
    hproc sim, nghttpx;
    int backend_port, tls_port;
    int use_sim;
} T;

static const char *const AUTH_ALICE[] = {"Authorization: Bearer ck_alice", NULL};

static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

static int make_certs(const char *d)
{
    if (sh("cd %s && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ext.cnf", d))
        return -1;
    for (int i = 0; i < 2; i++) {
        const char *ca = i ? "wrongca" : "ca";
        if (sh("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout %s.key -out %s.pem "
               "-days 2 -subj /CN=hotgate-test-%s -addext basicConstraints=critical,CA:TRUE "
               "-addext keyUsage=critical,keyCertSign >/dev/null 2>&1",
               d, ca, ca, ca))
            return -1;
    }
    return sh("cd %s && openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr "
              "-subj /CN=localhost >/dev/null 2>&1 && openssl x509 -req -in srv.csr -CA ca.pem "
              "-CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf "
              ">/dev/null 2>&1",
              d);
}

static int start_nghttpx(void)
{
    T.tls_port = harness_free_port();
    char front[64], back[64], key[512], cert[512], log[512], errlog[600];
    snprintf(front, sizeof front, "--frontend=127.0.0.1,%d", T.tls_port);
    snprintf(back, sizeof back, "--backend=127.0.0.1,%d", T.backend_port);
    snprintf(key, sizeof key, "%s/srv.key", T.dir);
    snprintf(cert, sizeof cert, "%s/srv.pem", T.dir);
    snprintf(log, sizeof log, "%s/nghttpx.log", T.dir);
    snprintf(errlog, sizeof errlog, "--errorlog-file=%s", log);
    char *argv[] = {"/usr/sbin/nghttpx",
                    "--conf=/dev/null",
                    front,
                    back,
                    "--workers=1",
                    "--no-ocsp",
                    errlog,
                    "--log-level=WARN",
                    key,
                    cert,
                    NULL};
    if (harness_spawn(&T.nghttpx, argv, log) != 0)
        return -1;
    T.nghttpx.port = T.tls_port;
    return harness_wait_port(T.tls_port, 10000);
}

static int setup(void **state)
{
    T.dir = harness_tmpdir("gwtls");
    if (make_certs(T.dir) != 0)
        return -1;
    if (harness_start_sim(&T.sim, T.dir, NULL) == 0) {
        T.use_sim = 1;
        T.backend_port = T.sim.port;
    } else {
        fprintf(stderr, "hotdata-sim did not start; using the in-process upstream\n");
        harness_stop(&T.sim, 1000);
        if (!gwu_start(0))
            return -1;
        T.backend_port = g_gwu->port;
    }
    return start_nghttpx();
}

static int teardown(void **state)
{
    harness_stop(&T.nghttpx, 5000);
    if (T.use_sim)
        harness_stop(&T.sim, 5000);
    else
        gwu_stop(g_gwu);
    harness_rmdir(T.dir);
    free(T.dir);
    return 0;
}

static void gw_up(struct gw *g, const char *ca, const char *extra)
{
    char url[128], more[1024];
    snprintf(url, sizeof url, "https://127.0.0.1:%d", T.tls_port);
    snprintf(more, sizeof more, "[upstream]\nca_file = %s/%s.pem\n%s", T.dir, ca,
             extra ? extra : "");
    char sub[600];
    snprintf(sub, sizeof sub, "%s/%s", T.dir, ca);
    mkdir(sub, 0700);
    int port;
    g->conf = gw_write_conf(sub, url, more, &port, &g->admin_port);
    g->hg.port = port;
    assert_int_equal(harness_start_hotgate(&g->hg, g->conf, NULL), 0);
}

static void gw_down(struct gw *g)
{
    harness_stop(&g->hg, 10000);
    free(g->conf);
}

static const char *probe_path(void)
{
    return T.use_sim ? "/v1/connections" : "/v1/echo";
}

static void test_wrong_ca_refused(void **state)
{
    struct gw g = {0};
    gw_up(&g, "wrongca", "retries = 0\n");
    char *u = harness_url("http://127.0.0.1:%d%s", g.hg.port, probe_path());
    hresp r;
    assert_int_equal(http_do("GET", u, AUTH_ALICE, NULL, 0, &r), 0);
    assert_int_equal(r.status, 502);
    assert_non_null(strstr(r.body, "UPSTREAM_UNAVAILABLE"));
    hresp_free(&r);
    free(u);
    gw_down(&g);
}

static void test_right_ca_works(void **state)
{
    struct gw g = {0};
    gw_up(&g, "ca", NULL);
    char *u = harness_url("http://127.0.0.1:%d%s", g.hg.port, probe_path());
    hresp r;
    assert_int_equal(http_do("GET", u, AUTH_ALICE, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    free(u);
    gw_down(&g);
}

static size_t discard(char *b, size_t s, size_t n, void *u)
{
    return s * n;
}

static void test_h2_multiplexing(void **state)
{
    struct gw g = {0};
    /* one worker: one curl multi, so one pool */
    gw_up(&g, "ca", "[server]\nthreads = 1\n");
    enum { N = 50 };
    CURLM *m = curl_multi_init();
    CURL *e[N];
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer ck_alice");
    char *u = harness_url("http://127.0.0.1:%d%s", g.hg.port,
                          T.use_sim ? "/v1/connections" : "/v1/slow?ms=300");
    for (int i = 0; i < N; i++) {
        e[i] = curl_easy_init();
        curl_easy_setopt(e[i], CURLOPT_URL, u);
        curl_easy_setopt(e[i], CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e[i], CURLOPT_FORBID_REUSE, 1L);
        curl_multi_add_handle(m, e[i]);
    }
    uint64_t t0 = util_mono_ms();
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    uint64_t ms = util_mono_ms() - t0;
    int ok = 0;
    for (int i = 0; i < N; i++) {
        long st = 0;
        curl_easy_getinfo(e[i], CURLINFO_RESPONSE_CODE, &st);
        ok += st == 200;
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
    }
    curl_multi_cleanup(m);
    curl_slist_free_all(h);
    free(u);
    long conns = gw_metric(g.admin_port, "hotgate_upstream_connections_opened_total");
    fprintf(stderr, "h2: %d/%d ok in %llu ms over %ld upstream connection(s)\n", ok, N,
            (unsigned long long)ms, conns);
    assert_int_equal(ok, N);
    assert_int_equal(conns, 1);
    gw_down(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrong_ca_refused),
        cmocka_unit_test(test_right_ca_works),
        cmocka_unit_test(test_h2_multiplexing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
