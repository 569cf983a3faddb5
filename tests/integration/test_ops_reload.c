/*
 * Operations, against the real hotdata-sim and hotgate: live reload on SIGHUP (keys added
 * and removed, the upstream token rotated, budget settings, a broken config refused,
 * settings that need a restart), what survives a reload (a keep-alive connection, a
 * request in flight), /readyz following the upstream, SIGUSR1 reopening the access log,
 * and the sd_notify messages around a reload (on a NOTIFY_SOCKET of the test's own).
 */
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "cache_it.h"

#define KEY_C "hgk_reload_c_0123456789abcdef"
#define ROT_TOKEN "tok_rotated"

/* The sim's request count for a token (its stats key tokens by a SHA-256 prefix). */
static long long sim_token_requests(const cit_env *e, const char *token)
{
    char url[128], hex[65];
    snprintf(url, sizeof url, "%s/_sim/stats", e->simurl);
    util_sha256_hex(token, strlen(token), hex);
    hex[12] = '\0';
    json_t *j = cit_get_json(url);
    if (!j)
        return -1;
    json_t *t = json_object_get(json_object_get(json_object_get(j, "tokens"), hex), "requests");
    long long n = json_is_integer(t) ? json_integer_value(t) : -1;
    json_decref(j);
    return n;
}

/*
 * Write e->conf: client a (CIT_KEY_A) unless drop_a, client c (KEY_C) when add_c; both on
 * credential a, whose token file holds whatever the test wrote there. threads: [server]
 * threads (NULL: 2); extra_cred goes into [credential a]; tail is appended (e.g. a broken
 * line).
 */
static void write_conf(cit_env *e, int drop_a, int add_c, const char *threads,
                       const char *extra_cred, const char *tail)
{
    char ka[65], kc[65];
    util_sha256_hex(CIT_KEY_A, strlen(CIT_KEY_A), ka);
    util_sha256_hex(KEY_C, strlen(KEY_C), kc);
    char *conf = NULL;
    int n = asprintf(
        &conf,
        "[server]\nlisten = 127.0.0.1:%d\nthreads = %s\naccess_log = %s/access.log\n"
        "[admin]\nlisten = 127.0.0.1:%d\ntoken_file = %s/token_admin\n"
        "[upstream]\nurl = http://127.0.0.1:%d\nretries = 0\ntimeout = 20\n"
        "[cache]\nenabled = yes\ndir = %s/cache\n"
        "[credential a]\ntoken_file = %s/token_a\n%s"
        "%s%s%s%s"
        "%s%s%s%s"
        "%s",
        e->hg.port, threads ? threads : "2", e->dir, e->admin_port, e->dir, e->sim.port, e->dir,
        e->dir, extra_cred ? extra_cred : "",
        drop_a ? "" : "[client a]\nkey_sha256 = ", drop_a ? "" : ka,
        drop_a ? "" : "\ncredential = a\nworkspaces = ws_test\ndefault_workspace = ws_test\n",
        drop_a ? "" : "mode = full\n", add_c ? "[client c]\nkey_sha256 = " : "", add_c ? kc : "",
        add_c ? "\ncredential = a\nworkspaces = ws_test\ndefault_workspace = ws_test\n" : "",
        add_c ? "mode = full\n" : "", tail ? tail : "");
    assert_true(n > 0);
    assert_int_equal(harness_write_file(e->conf, conf, 0600), 0);
    free(conf);
}

/* Sim, token files and config for hotgate, which is not started yet. */
static int prepare_env(cit_env *e, const char *tag)
{
    memset(e, 0, sizeof *e);
    e->dir = harness_tmpdir(tag);
    const char *sim_extra[] = {"--quiet", "--token", ROT_TOKEN "=ws_test", NULL};
    if (cit_start_sim(e, sim_extra) != 0)
        return -1;
    char p[700];
    snprintf(p, sizeof p, "%s/token_a", e->dir);
    if (harness_write_file(p, "tok_test\n", 0600))
        return -1;
    snprintf(p, sizeof p, "%s/token_admin", e->dir);
    if (harness_write_file(p, CIT_ADMIN_TOKEN "\n", 0600))
        return -1;
    snprintf(e->conf, sizeof e->conf, "%s/hotgate.conf", e->dir);
    e->hg.port = harness_free_port();
    e->admin_port = harness_free_port();
    snprintf(e->base, sizeof e->base, "http://127.0.0.1:%d", e->hg.port);
    snprintf(e->admin, sizeof e->admin, "http://127.0.0.1:%d", e->admin_port);
    write_conf(e, 0, 0, NULL, NULL, NULL);
    return 0;
}

static int start_env(cit_env *e, const char *tag)
{
    return prepare_env(e, tag) == 0 ? cit_start_hg(e) : -1;
}

/* Wait (up to 30 s: the box is shared) until metric reaches at least want. */
static int wait_metric(const cit_env *e, const char *name, double want)
{
    for (int i = 0; i < 600; i++) {
        if (cit_metric(e, name) >= want)
            return 0;
        cit_sleep_ms(50);
    }
    fprintf(stderr, "metric %s stayed at %g (wanted %g)\n", name, cit_metric(e, name), want);
    return -1;
}

static long file_count(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long n = 0;
    char line[4096];
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static int get_status(const cit_env *e, const char *key, const char *path)
{
    hresp r;
    if (cit_req(e, key, "GET", path, NULL, NULL, NULL, &r) != 0)
        return -1;
    int s = (int)r.status;
    hresp_free(&r);
    return s;
}

/* ---- a keep-alive connection kept across the reload ---- */

static size_t sink(char *p, size_t s, size_t n, void *u)
{
    (void)p;
    (void)u;
    return s * n;
}

static long ka_get(CURL *c, const cit_env *e, const char *key, long *new_conns)
{
    char url[256], auth[128];
    snprintf(url, sizeof url, "%s/v1/connections", e->base);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, new_conns);
    curl_slist_free_all(h);
    return status;
}

/* ---- a slow query in flight across the reload ---- */

struct slow {
    const cit_env *e;
    long status;
    char body[256];
};

static void *slow_query(void *arg)
{
    struct slow *s = arg;
    hresp r;
    s->status = -1;
    if (cit_query(s->e, CIT_KEY_A, "SELECT 41 + 1 AS answer", "Cache-Control: no-store", &r) == 0) {
        s->status = r.status;
        snprintf(s->body, sizeof s->body, "%s", r.body ? r.body : "");
        hresp_free(&r);
    }
    return NULL;
}

static void test_reload(void **state)
{
    (void)state;
    cit_env e;
    assert_int_equal(start_env(&e, "reload"), 0);

    /* before: key a works, on token tok_test */
    assert_int_equal(get_status(&e, CIT_KEY_A, "/v1/connections"), 200);
    assert_int_equal(get_status(&e, KEY_C, "/v1/connections"), 401);
    /* one finished miss: no fetch in flight (the gauge used to count its lingering result) */
    assert_int_equal(cit_metric(&e, "hotgate_cache_flights"), 0);
    long long before_test = sim_token_requests(&e, "tok_test");
    assert_true(before_test >= 1);
    assert_int_equal(sim_token_requests(&e, ROT_TOKEN), 0);
    assert_int_equal(cit_metric(&e, "hotgate_config_generation"), 1);

    /* a keep-alive connection, opened now */
    CURL *ka = curl_easy_init();
    long nc = -1;
    assert_int_equal(ka_get(ka, &e, CIT_KEY_A, &nc), 200);
    assert_int_equal(nc, 1);

    /* a slow query in flight (the sim holds every answer 1.5 s) */
    assert_int_equal(cit_sim_faults(&e, "{\"latency_ms\":1500}"), 0);
    struct slow s = {.e = &e};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, slow_query, &s), 0);
    assert_int_equal(wait_metric(&e, "hotgate_upstream_inflight", 1), 0);

    /* the new config: a removed, c added, the token rotated, a rate set; SIGHUP */
    char p[700];
    snprintf(p, sizeof p, "%s/token_a", e.dir);
    assert_int_equal(harness_write_file(p, ROT_TOKEN "\n", 0600), 0);
    write_conf(&e, 1, 1, NULL, "rate = 7\nburst = 3\n", NULL);
    assert_int_equal(kill(e.hg.pid, SIGHUP), 0);
    assert_int_equal(wait_metric(&e, "hotgate_config_generation", 2), 0);
    assert_int_equal(cit_metric(&e, "hotgate_config_reloads_total{result=\"ok\"}"), 1);
    assert_int_equal(cit_sim_faults(&e, "{\"latency_ms\":0}"), 0);

    /* the request that started before the reload finishes, with its own (old) config */
    pthread_join(th, NULL);
    assert_int_equal(s.status, 200);
    assert_non_null(strstr(s.body, "42"));

    /* removed key: 401; new key: 200, and upstream sees the rotated token only */
    assert_int_equal(get_status(&e, CIT_KEY_A, "/v1/connections"), 401);
    long long test_after_reload = sim_token_requests(&e, "tok_test");
    hresp r;
    assert_int_equal(cit_query(&e, KEY_C, "SELECT 7 AS seven", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    assert_true(sim_token_requests(&e, ROT_TOKEN) >= 1);
    assert_int_equal(sim_token_requests(&e, "tok_test"), test_after_reload);

    /* the keep-alive connection from before the reload carries on (same connection) */
    assert_int_equal(ka_get(ka, &e, KEY_C, &nc), 200);
    assert_int_equal(nc, 0);
    assert_int_equal(ka_get(ka, &e, CIT_KEY_A, &nc), 401);
    assert_int_equal(nc, 0);
    curl_easy_cleanup(ka);

    /* the budget took the new rate; the old snapshot is gone once its request ended */
    assert_int_equal(cit_metric(&e, "hotgate_budget_rate{credential=\"a\"}"), 7);
    for (int i = 0; i < 200 && cit_metric(&e, "hotgate_config_snapshots") != 1; i++)
        cit_sleep_ms(50);
    assert_int_equal(cit_metric(&e, "hotgate_config_snapshots"), 1);

    /* a broken config is refused with file:line, and service goes on */
    write_conf(&e, 1, 1, NULL, NULL, "[client d]\nkey_sha256 = nothex\ncredential = a\n");
    assert_int_equal(kill(e.hg.pid, SIGHUP), 0);
    assert_int_equal(wait_metric(&e, "hotgate_config_reloads_total{result=\"failed\"}", 1), 0);
    assert_int_equal(cit_metric(&e, "hotgate_config_generation"), 2);
    char pat[700];
    snprintf(pat, sizeof pat, "reload refused: %s:", e.conf);
    assert_true(file_count(e.hg.log, pat) >= 1);
    assert_true(file_count(e.hg.log, "key_sha256") >= 1);
    assert_int_equal(get_status(&e, KEY_C, "/v1/connections"), 200);

    /* a setting that needs a restart is reported and left alone; the rest applies */
    write_conf(&e, 0, 1, "1", NULL, NULL);
    assert_int_equal(kill(e.hg.pid, SIGHUP), 0);
    assert_int_equal(wait_metric(&e, "hotgate_config_generation", 3), 0);
    assert_true(file_count(e.hg.log, "needs restart") >= 1);
    assert_true(file_count(e.hg.log, "[server] threads") >= 1);
    assert_int_equal(get_status(&e, CIT_KEY_A, "/v1/connections"), 200);

    /* no token in the log, ever */
    assert_int_equal(file_count(e.hg.log, ROT_TOKEN), 0);
    assert_int_equal(file_count(e.hg.log, "tok_test"), 0);
    cit_stop(&e);
}

/* ---- /readyz ---- */

static long readyz(const cit_env *e, char *body, size_t len)
{
    char url[128];
    snprintf(url, sizeof url, "%s/readyz", e->admin);
    hresp r;
    if (http_do("GET", url, NULL, NULL, 0, &r) != 0)
        return -1;
    long s = r.status;
    snprintf(body, len, "%s", r.body ? r.body : "");
    hresp_free(&r);
    return s;
}

static int wait_readyz(const cit_env *e, long want, char *body, size_t len)
{
    for (int i = 0; i < 600; i++) {
        if (readyz(e, body, len) == want)
            return 0;
        cit_sleep_ms(50);
    }
    fprintf(stderr, "readyz stayed %s (wanted %ld)\n", body, want);
    return -1;
}

static void test_readyz(void **state)
{
    (void)state;
    cit_env e;
    assert_int_equal(start_env(&e, "readyz"), 0);
    char body[256];
    /* no token needed (the admin listener has one) */
    assert_int_equal(wait_readyz(&e, 200, body, sizeof body), 0);
    assert_non_null(strstr(body, "\"ready\""));

    /* the upstream goes away: 503 with a reason (the idle probe finds out) */
    int port = e.sim.port;
    harness_stop(&e.sim, 3000);
    assert_int_equal(wait_readyz(&e, 503, body, sizeof body), 0);
    assert_non_null(strstr(body, "\"not_ready\""));
    assert_non_null(strstr(body, "upstream"));

    /* it comes back on the same address: 200 again */
    char listen[32], data[600], log[600];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(data, sizeof data, "%s/sim-data", e.dir);
    snprintf(log, sizeof log, "%s/sim2.log", e.dir);
    char *argv[] = {(char *)HG_BIN_SIM,
                    "--listen",
                    listen,
                    "--token",
                    "tok_test=ws_test",
                    "--workspace",
                    "ws_test",
                    "--data-dir",
                    data,
                    "--quiet",
                    NULL};
    assert_int_equal(harness_spawn(&e.sim, argv, log), 0);
    e.sim.port = port;
    assert_int_equal(harness_wait_port(port, 30000), 0);
    assert_int_equal(wait_readyz(&e, 200, body, sizeof body), 0);
    cit_stop(&e);
}

/* ---- SIGUSR1 reopens the access log ---- */

static void test_sigusr1_reopens_log(void **state)
{
    (void)state;
    cit_env e;
    assert_int_equal(start_env(&e, "usr1"), 0);
    char logp[700], moved[700];
    snprintf(logp, sizeof logp, "%s/access.log", e.dir);
    snprintf(moved, sizeof moved, "%s/access.log.1", e.dir);
    assert_int_equal(get_status(&e, CIT_KEY_A, "/v1/connections"), 200);
    for (int i = 0; i < 200 && file_count(logp, "/v1/connections") < 1; i++)
        cit_sleep_ms(50); /* the access log is flushed every 100 ms */
    assert_int_equal(file_count(logp, "/v1/connections"), 1);
    assert_int_equal(rename(logp, moved), 0);
    assert_int_equal(kill(e.hg.pid, SIGUSR1), 0);
    /* the reopen happens on the main thread: retry until the new file has the line */
    long n = 0;
    for (int i = 0; i < 200 && n < 1; i++) {
        assert_int_equal(get_status(&e, CIT_KEY_A, "/v1/workspaces"), 200);
        cit_sleep_ms(150);
        n = file_count(logp, "/v1/workspaces");
    }
    assert_true(n >= 1);
    assert_int_equal(file_count(logp, "/v1/connections"), 0);
    assert_int_equal(file_count(moved, "/v1/connections"), 1);
    assert_int_equal(cit_metric(&e, "hotgate_config_generation"), 1); /* no reload */
    cit_stop(&e);
}

/* ---- sd_notify around a reload ---- */

/* The next datagram on fd (up to 30 s), NUL-terminated into buf; 0 on success. */
static int notify_recv(int fd, char *buf, size_t len)
{
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = recv(fd, buf, len - 1, 0);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

static void test_sd_notify_reload(void **state)
{
    (void)state;
    cit_env e;
    assert_int_equal(prepare_env(&e, "notify"), 0);
    char path[700], env[800], msg[512];
    snprintf(path, sizeof path, "%s/notify.sock", e.dir);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    snprintf(env, sizeof env, "NOTIFY_SOCKET=%s", path);
    const char *extra_env[] = {env, NULL};
    assert_int_equal(harness_start_hotgate(&e.hg, e.conf, extra_env), 0);
    assert_int_equal(notify_recv(fd, msg, sizeof msg), 0);
    assert_string_equal(msg, "READY=1");

    assert_int_equal(kill(e.hg.pid, SIGHUP), 0);
    assert_int_equal(notify_recv(fd, msg, sizeof msg), 0);
    assert_true(strncmp(msg, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long now_us = (unsigned long long)ts.tv_sec * 1000000ull + ts.tv_nsec / 1000;
    unsigned long long usec = strtoull(msg + 27, NULL, 10);
    assert_true(usec > 0 && usec <= now_us); /* CLOCK_MONOTONIC, as systemd wants */
    assert_int_equal(notify_recv(fd, msg, sizeof msg), 0);
    assert_string_equal(msg, "READY=1");
    assert_int_equal(cit_metric(&e, "hotgate_config_generation"), 2);

    /* a refused reload still ends with READY=1 */
    write_conf(&e, 0, 0, NULL, NULL, "[nosuchsection]\nkey = 1\n");
    assert_int_equal(kill(e.hg.pid, SIGHUP), 0);
    assert_int_equal(notify_recv(fd, msg, sizeof msg), 0);
    assert_true(strncmp(msg, "RELOADING=1", 11) == 0);
    assert_int_equal(notify_recv(fd, msg, sizeof msg), 0);
    assert_string_equal(msg, "READY=1");
    assert_int_equal(cit_metric(&e, "hotgate_config_generation"), 2);
    assert_int_equal(cit_metric(&e, "hotgate_config_reloads_total{result=\"failed\"}"), 1);

    harness_stop(&e.hg, 5000);
    assert_int_equal(notify_recv(fd, msg, sizeof msg), 0);
    assert_string_equal(msg, "STOPPING=1");
    close(fd);
    cit_stop(&e);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_readyz),
        cmocka_unit_test(test_sigusr1_reopens_log),
        cmocka_unit_test(test_sd_notify_reload),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
