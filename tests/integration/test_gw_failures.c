/*
 * test_gw_failures: what hotgate does when the upstream misbehaves, and how it stops.
 * Upstream: gw_upstream.h (a thread in this process) - it can refuse, stall and fail on
 * purpose, which hotdata-sim is not for.
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

static const char *const AUTH_ALICE[] = {"Authorization: Bearer ck_alice", NULL};

static const char *error_code(const hresp *r)
{
    static char code[64];
    code[0] = '\0';
    json_t *j = json_loadb(r->body, r->len, 0, NULL);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    if (c)
        snprintf(code, sizeof code, "%s", c);
    json_decref(j);
    return code;
}

static void gw_up(struct gw *g, const char *upstream_url, const char *extra)
{
    assert_int_equal(gw_start(g, "gwfail", upstream_url, extra), 0);
}

static void gw_down(struct gw *g)
{
    gw_stop(g);
}

static void test_upstream_down_502(void **state)
{
    int dead = harness_free_port();
    char *url = harness_url("http://127.0.0.1:%d", dead);
    struct gw g;
    gw_up(&g, url, "[upstream]\nretries = 1\nretry_backoff_ms = 10\n");
    char *u = harness_url("http://127.0.0.1:%d/v1/echo", g.hg.port);
    hresp r;
    assert_int_equal(http_do("GET", u, AUTH_ALICE, NULL, 0, &r), 0);
    assert_int_equal(r.status, 502);
    assert_string_equal(error_code(&r), "UPSTREAM_UNAVAILABLE");
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 502);
    assert_non_null(json_string_value(json_object_get(j, "message")));
    json_decref(j);
    char *rid = hresp_header(&r, "X-Request-Id");
    assert_non_null(rid);
    free(rid);
    hresp_free(&r);
    free(u);
    free(url);
    gw_down(&g);
}

static void test_upstream_stalled_504(void **state)
{
    struct gwu *up = g_gwu;
    char *url = harness_url("http://127.0.0.1:%d", up->port);
    struct gw g;
    gw_up(&g, url, "[upstream]\ntimeout = 1\n");
    char *u = harness_url("http://127.0.0.1:%d/v1/stall", g.hg.port);
    hresp r;
    uint64_t t0 = util_mono_ms();
    assert_int_equal(http_do("GET", u, AUTH_ALICE, NULL, 0, &r), 0);
    uint64_t took = util_mono_ms() - t0;
    assert_int_equal(r.status, 504);
    assert_string_equal(error_code(&r), "UPSTREAM_TIMEOUT");
    assert_true(took < 8000);
    hresp_free(&r);
    free(u);
    free(url);
    gw_down(&g);
}

struct bg {
    char *url;
    const char *method;
    hresp r;
    int rc;
    pthread_t t;
};

static void *bg_run(void *arg)
{
    struct bg *b = arg;
    b->rc = http_do(b->method, b->url, AUTH_ALICE, NULL, 0, &b->r);
    return NULL;
}

static void test_connect_failure_retried(void **state)
{
    /* the upstream comes up while hotgate is retrying the connection */
    int port = harness_free_port();
    char *url = harness_url("http://127.0.0.1:%d", port);
    struct gw g;
    gw_up(&g, url, "[upstream]\nretries = 8\nretry_backoff_ms = 100\ntimeout = 20\n");
    struct bg b = {.url = harness_url("http://127.0.0.1:%d/v1/echo", g.hg.port), .method = "POST"};
    pthread_create(&b.t, NULL, bg_run, &b);
    gwu_sleep_ms(150);
    struct gwu *main_up = g_gwu;
    struct gwu *late = gwu_start(port);
    assert_non_null(late);
    pthread_join(b.t, NULL);
    assert_int_equal(b.rc, 0);
    assert_int_equal(b.r.status, 200);
    assert_non_null(strstr(b.r.body, "\"method\":\"POST\""));
    hresp_free(&b.r);
    free(b.url);
    gwu_stop(late);
    g_gwu = main_up;
    free(url);
    gw_down(&g);
}

static void test_get_retried_on_503_post_not(void **state)
{
    struct gwu *up = g_gwu;
    char *url = harness_url("http://127.0.0.1:%d", up->port);
    struct gw g;
    /* a budgeted credential: retries the upstream module makes are charged to it */
    gw_up(&g, url,
          "[upstream]\nretries = 2\nretry_backoff_ms = 20\n"
          "[credential main]\nrate = 1000\nburst = 1000\n");
    const char *charged = "hotgate_budget_retries_charged_total{credential=\"main\"}";
    assert_int_equal(gw_metric(g.admin_port, charged), 0);
    char *u = harness_url("http://127.0.0.1:%d/v1/fail503", g.hg.port);
    hresp r;
    atomic_store(&up->fail_left, 1);
    atomic_store(&up->fail_seen, 0);
    assert_int_equal(http_do("GET", u, AUTH_ALICE, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(atomic_load(&up->fail_seen), 2);
    hresp_free(&r);
    assert_int_equal(gw_metric(g.admin_port, charged), 1);

    /* a GET that keeps failing: bounded attempts, the last 503 passes through */
    atomic_store(&up->fail_left, 100);
    atomic_store(&up->fail_seen, 0);
    assert_int_equal(http_do("GET", u, AUTH_ALICE, NULL, 0, &r), 0);
    assert_int_equal(r.status, 503);
    assert_int_equal(atomic_load(&up->fail_seen), 3);
    assert_string_equal(error_code(&r), "SERVICE_UNAVAILABLE");
    hresp_free(&r);
    assert_int_equal(gw_metric(g.admin_port, charged), 3);

    /* a POST is never replayed */
    atomic_store(&up->fail_left, 1);
    atomic_store(&up->fail_seen, 0);
    assert_int_equal(http_do("POST", u, AUTH_ALICE, "{}", 2, &r), 0);
    assert_int_equal(r.status, 503);
    assert_int_equal(atomic_load(&up->fail_seen), 1);
    hresp_free(&r);
    atomic_store(&up->fail_left, 0);
    free(u);
    free(url);
    gw_down(&g);
}

/* The "attempts" of the last access-log line for a path starting with prefix; -1: none. */
static long access_attempts(const char *dir, const char *prefix)
{
    long v = -1;
    for (int tries = 0; tries < 50 && v < 0; tries++) {
        char path[1024], line[8192], want[512];
        snprintf(path, sizeof path, "%s/access.log", dir);
        snprintf(want, sizeof want, "\"path\":\"%s", prefix);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f)) {
            const char *a = strstr(line, "\"attempts\":");
            if (strstr(line, want) && a)
                v = atol(a + 11);
        }
        if (f)
            fclose(f);
        if (v < 0)
            gwu_sleep_ms(100);
    }
    return v;
}

/* Issue #10.1: a credential without `rate` (the shipped default) still honours the
 * upstream's Retry-After: the cooldown holds every request, a shed request is resent at most
 * [queue] shed_retries times, and every attempt is in the access log. */
static void test_429_retry_after_without_rate(void **state)
{
    struct gwu *up = g_gwu;
    char *url = harness_url("http://127.0.0.1:%d", up->port);
    struct gw g;
    gw_up(&g, url, "[queue]\nshed_retries = 2\n");
    hresp r;

    /* Retry-After: 1, always shed: 1 attempt + 2 retries, then the client gets the 429 */
    char *u = harness_url("http://127.0.0.1:%d/v1/status?s=429&ra=1", g.hg.port);
    int before = atomic_load(&up->requests);
    assert_int_equal(http_do("GET", u, AUTH_ALICE, NULL, 0, &r), 0);
    assert_int_equal(r.status, 429);
    char *ra = hresp_header(&r, "Retry-After");
    assert_non_null(ra);
    assert_string_equal(ra, "1");
    free(ra);
    hresp_free(&r);
    assert_int_equal(atomic_load(&up->requests) - before, 3);
    assert_int_equal(access_attempts(g.dir, "/v1/status"), 3);
    free(u);

    /* Retry-After: 30 (as long as the queue deadline): one upstream call, then nothing goes
     * upstream on this credential while the cooldown lasts, whatever the client */
    u = harness_url("http://127.0.0.1:%d/v1/status?s=429&ra=30", g.hg.port);
    before = atomic_load(&up->requests);
    assert_int_equal(http_do("GET", u, AUTH_ALICE, NULL, 0, &r), 0);
    assert_true(r.status == 429 || r.status == 503);
    hresp_free(&r);
    assert_int_equal(atomic_load(&up->requests) - before, 1);
    free(u);
    u = harness_url("http://127.0.0.1:%d/v1/echo", g.hg.port);
    const char *hdrs[] = {"Authorization: Bearer ck_alice", "X-Hotgate-Queue-Timeout: 1", NULL};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(http_do("GET", u, hdrs, NULL, 0, &r), 0);
        assert_int_equal(r.status, 503);
        assert_string_equal(error_code(&r), "QUEUE_TIMEOUT");
        assert_non_null(strstr(r.body, "\"status\":503"));
        hresp_free(&r);
    }
    assert_int_equal(atomic_load(&up->requests) - before, 1);
    char *au = harness_url("http://127.0.0.1:%d/admin/budget", g.admin_port);
    assert_int_equal(http_do("GET", au, NULL, NULL, 0, &r), 0);
    assert_true(strstr(r.body, "\"cooldown_active\": true") ||
                strstr(r.body, "\"cooldown_active\":true"));
    hresp_free(&r);
    free(au);
    free(u);
    free(url);
    gw_down(&g);
}

static int notify_socket(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%.100s", path);
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void expect_notify(int fd, const char *what)
{
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    if (!strstr(buf, what))
        fail_msg("sd_notify: got '%s', want '%s'", buf, what);
}

static void test_sigterm_drains(void **state)
{
    struct gwu *up = g_gwu;
    char *url = harness_url("http://127.0.0.1:%d", up->port);
    struct gw g;
    /* like gw_up(), with NOTIFY_SOCKET set: READY=1 after start, STOPPING=1 on SIGTERM */
    memset(&g, 0, sizeof g);
    g.dir = harness_tmpdir("gwfail");
    int port;
    g.conf = gw_write_conf(g.dir, url, NULL, &port, &g.admin_port);
    g.hg.port = port;
    char npath[100], nenv[200];
    snprintf(npath, sizeof npath, "%.80s/notify.sock", g.dir);
    snprintf(nenv, sizeof nenv, "NOTIFY_SOCKET=%s", npath);
    int nfd = notify_socket(npath);
    assert_true(nfd >= 0);
    const char *env[] = {nenv, NULL};
    assert_int_equal(harness_start_hotgate(&g.hg, g.conf, env), 0);
    expect_notify(nfd, "READY=1");
    struct bg b = {.url = harness_url("http://127.0.0.1:%d/v1/slow?ms=1500", g.hg.port),
                   .method = "GET"};
    pthread_create(&b.t, NULL, bg_run, &b);
    gwu_sleep_ms(300);
    int st = harness_stop(&g.hg, 10000);
    expect_notify(nfd, "STOPPING=1");
    close(nfd);
    pthread_join(b.t, NULL);
    assert_int_equal(b.rc, 0);
    assert_int_equal(b.r.status, 200); /* the in-flight request finished */
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    /* and nothing listens any more */
    hresp r;
    char *u = harness_url("http://127.0.0.1:%d/v1/echo", g.hg.port);
    assert_int_not_equal(http_do("GET", u, AUTH_ALICE, NULL, 0, &r), 0);
    hresp_free(&r);
    free(u);
    hresp_free(&b.r);
    free(b.url);
    free(url);
    gw_down(&g);
}

/* ---- the same failure paths against hotdata-sim's fault injection ---- */

static struct {
    char *dir;
    hproc sim;
} SIMF;

static void sim_faults(const char *json)
{
    char *u = harness_url("http://127.0.0.1:%d/_sim/faults", SIMF.sim.port);
    const char *h[] = {"Content-Type: application/json", NULL};
    hresp r;
    assert_int_equal(http_do("POST", u, h, json, strlen(json), &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    free(u);
}

static long sim_fault_stat(const char *name)
{
    char *u = harness_url("http://127.0.0.1:%d/_sim/stats", SIMF.sim.port);
    hresp r;
    assert_int_equal(http_do("GET", u, NULL, NULL, 0, &r), 0);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    long v = (long)json_integer_value(json_object_get(json_object_get(j, "faults"), name));
    json_decref(j);
    hresp_free(&r);
    free(u);
    return v;
}

static void sim_reset(void)
{
    sim_faults("{}");
    char *u = harness_url("http://127.0.0.1:%d/_sim/reset", SIMF.sim.port);
    hresp r;
    assert_int_equal(http_do("POST", u, NULL, NULL, 0, &r), 0);
    hresp_free(&r);
    free(u);
}

static void test_sim_stall_504(void **state)
{
    sim_reset();
    sim_faults("{\"stall_ms\": 4000}");
    char *url = harness_url("http://127.0.0.1:%d", SIMF.sim.port);
    struct gw g;
    gw_up(&g, url, "[upstream]\ntimeout = 1\n");
    char *u = harness_url("http://127.0.0.1:%d/v1/connections", g.hg.port);
    hresp r;
    assert_int_equal(http_do("GET", u, AUTH_ALICE, NULL, 0, &r), 0);
    assert_int_equal(r.status, 504);
    assert_string_equal(error_code(&r), "UPSTREAM_TIMEOUT");
    hresp_free(&r);
    sim_reset();
    free(u);
    free(url);
    gw_down(&g);
}

static void test_sim_503_get_retried_post_not(void **state)
{
    sim_reset();
    sim_faults("{\"error_rate\": 1.0, \"error_status\": 503}");
    char *url = harness_url("http://127.0.0.1:%d", SIMF.sim.port);
    struct gw g;
    gw_up(&g, url, "[upstream]\nretries = 2\nretry_backoff_ms = 10\n");
    char *u = harness_url("http://127.0.0.1:%d/v1/connections", g.hg.port);
    hresp r;
    assert_int_equal(http_do("GET", u, AUTH_ALICE, NULL, 0, &r), 0);
    assert_int_equal(r.status, 503);               /* the last answer, passed through */
    assert_int_equal(sim_fault_stat("errors"), 3); /* 1 + 2 retries */
    hresp_free(&r);
    free(u);
    u = harness_url("http://127.0.0.1:%d/v1/query", g.hg.port);
    const char *h[] = {"Authorization: Bearer ck_alice", "Content-Type: application/json", NULL};
    const char *q = "{\"sql\":\"SELECT 1\"}";
    assert_int_equal(http_do("POST", u, h, q, strlen(q), &r), 0);
    assert_int_equal(r.status, 503);
    assert_int_equal(sim_fault_stat("errors"), 4); /* one more: not replayed */
    hresp_free(&r);
    sim_reset();
    free(u);
    free(url);
    gw_down(&g);
}

static void test_sim_drops(void **state)
{
    char *url = harness_url("http://127.0.0.1:%d", SIMF.sim.port);
    struct gw g;
    gw_up(&g, url, "[upstream]\nretries = 2\nretry_backoff_ms = 10\n");
    char *u = harness_url("http://127.0.0.1:%d/v1/query", g.hg.port);
    const char *h[] = {"Authorization: Bearer ck_alice", "Content-Type: application/json", NULL};
    const char *q = "{\"sql\":\"SELECT 1\"}";
    hresp r;
    /* closed after the request arrived, before any answer: the request may have been
     * acted on, so it is not replayed -> 502 */
    sim_reset();
    sim_faults("{\"drop\": \"before\"}");
    assert_int_equal(http_do("POST", u, h, q, strlen(q), &r), 0);
    assert_int_equal(r.status, 502);
    assert_string_equal(error_code(&r), "UPSTREAM_UNAVAILABLE");
    assert_int_equal(sim_fault_stat("drops_before"), 1);
    hresp_free(&r);
    free(u);
    /* cut in the middle of the body: the client must not get a complete-looking answer */
    sim_reset();
    sim_faults("{\"drop\": \"mid\"}");
    u = harness_url("http://127.0.0.1:%d/v1/connections", g.hg.port);
    int rc = http_do("GET", u, AUTH_ALICE, NULL, 0, &r);
    assert_int_not_equal(rc, 0); /* CURLE_PARTIAL_FILE or a receive error */
    hresp_free(&r);
    sim_reset();
    free(u);
    free(url);
    gw_down(&g);
}

static int setup_sim(void **state)
{
    SIMF.dir = harness_tmpdir("gwfailsim");
    return harness_start_sim(&SIMF.sim, SIMF.dir, NULL);
}

static int teardown_sim(void **state)
{
    harness_stop(&SIMF.sim, 5000);
    harness_rmdir(SIMF.dir);
    free(SIMF.dir);
    return 0;
}

static int setup(void **state)
{
    return gwu_start(0) ? 0 : -1;
}

static int teardown(void **state)
{
    gwu_stop(g_gwu);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upstream_down_502),
        cmocka_unit_test(test_upstream_stalled_504),
        cmocka_unit_test(test_connect_failure_retried),
        cmocka_unit_test(test_get_retried_on_503_post_not),
        cmocka_unit_test(test_429_retry_after_without_rate),
        cmocka_unit_test(test_sigterm_drains),
    };
    const struct CMUnitTest sim_tests[] = {
        cmocka_unit_test(test_sim_stall_504),
        cmocka_unit_test(test_sim_503_get_retried_post_not),
        cmocka_unit_test(test_sim_drops),
    };
    int fails = cmocka_run_group_tests_name("failures (test upstream)", tests, setup, teardown);
    fails += cmocka_run_group_tests_name("failures (hotdata-sim faults)", sim_tests, setup_sim,
                                         teardown_sim);
    return fails;
}
