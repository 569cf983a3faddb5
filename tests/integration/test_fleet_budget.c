/*
 * test_fleet_budget: the global rate budget (issue #12). One real redis-server, one real
 * hotdata-sim limited to 10/s (burst 5), three real hotgate instances each configured at
 * 10/s burst 2 on the same credential with [redis] on (local_share 0.34), so together they
 * may send 10/s, not 30/s.
 *   1. a batch through all three at once: no client 429, at most a burst of upstream 429s,
 *      and the upstream saw no more than rate x elapsed + burst (+ slack) requests;
 *   2. a Retry-After seen by one instance pauses the other two (their fleet_pauses metric,
 *      while only one instance saw the 429);
 *   3. Redis killed mid-run: zero failed client requests, every instance runs its local share;
 *      Redis back on the same port: the instances use the global budget again.
 * Assertions are on counts and on the instances' own metrics, never on wall-clock speed.
 */
#include "budget_it.h"
#include "harness_redis.h"

#define FB_N 3

typedef struct fb_env {
    char *dir;
    hproc redis, sim;
    hproc hg[FB_N];
    int admin_port[FB_N];
    char base[FB_N][64], admin[FB_N][64];
    char simurl[64];
} fb_env;

static fb_env F;

static int fb_start(const char *tag)
{
    memset(&F, 0, sizeof F);
    F.dir = harness_tmpdir(tag);
    if (harness_start_redis(&F.redis, F.dir, 0) != 0)
        return -1;
    const char *simargs[] = {"--rate", "10", "--burst", "5", "--quiet", NULL};
    if (harness_start_sim(&F.sim, F.dir, simargs) != 0)
        return -1;
    snprintf(F.simurl, sizeof F.simurl, "http://127.0.0.1:%d", F.sim.port);
    char tok[600], kb[65];
    snprintf(tok, sizeof tok, "%s/token", F.dir);
    if (harness_write_file(tok, "tok_test\n", 0600) != 0)
        return -1;
    util_sha256_hex(BIT_KEY_BATCH, strlen(BIT_KEY_BATCH), kb);
    for (int i = 0; i < FB_N; i++) {
        F.hg[i].port = harness_free_port();
        F.admin_port[i] = harness_free_port();
        char conf[700], *text = NULL;
        snprintf(conf, sizeof conf, "%s/hotgate%d.conf", F.dir, i);
        if (asprintf(&text,
                     "[server]\nlisten = 127.0.0.1:%d\nthreads = 2\naccess_log = off\n"
                     "[admin]\nlisten = 127.0.0.1:%d\n"
                     "[upstream]\nurl = http://127.0.0.1:%d\nretries = 0\ntimeout = 30\n"
                     "[cache]\nenabled = no\n"
                     "[redis]\nenabled = yes\nurl = redis://127.0.0.1:%d\nkey_prefix = fb:\n"
                     "local_share = 0.34\n"
                     "[queue]\nmax_total = 2000\nmax_per_client = 1000\ndeadline = 120\n"
                     "[credential main]\ntoken_file = %s\nrate = 10\nburst = 2\n"
                     "[client etl]\nkey_sha256 = %s\ncredential = main\nclass = batch\n"
                     "workspaces = *\ndefault_workspace = ws_test\nmode = full\n",
                     F.hg[i].port, F.admin_port[i], F.sim.port, F.redis.port, tok, kb) < 0)
            abort();
        int rc = harness_write_file(conf, text, 0600);
        free(text);
        if (rc != 0 || harness_start_hotgate(&F.hg[i], conf, NULL) != 0) {
            harness_dump_log(&F.hg[i], 40);
            return -1;
        }
        snprintf(F.base[i], sizeof F.base[i], "http://127.0.0.1:%d", F.hg[i].port);
        snprintf(F.admin[i], sizeof F.admin[i], "http://127.0.0.1:%d", F.admin_port[i]);
    }
    return 0;
}

static void fb_stop(void)
{
    for (int i = 0; i < FB_N; i++) {
        int st = harness_stop(&F.hg[i], 5000);
        if (st != -1 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            fprintf(stderr, "hotgate %d ended badly (status 0x%x):\n", i, st);
            harness_dump_log(&F.hg[i], 60);
        }
    }
    harness_stop(&F.sim, 3000);
    harness_stop(&F.redis, 3000);
    harness_rmdir(F.dir);
    free(F.dir);
    F.dir = NULL;
}

/* credential main of instance i in /admin/budget: a member (global.* with "global.NAME") */
static json_t *fb_cred(int i)
{
    char url[128];
    snprintf(url, sizeof url, "%s/admin/budget", F.admin[i]);
    json_t *j = bit_get_json(url);
    if (!j)
        return NULL;
    json_t *c = json_incref(json_array_get(json_object_get(j, "credentials"), 0));
    json_decref(j);
    return c;
}

static long long fb_num(int i, const char *key)
{
    json_t *c = fb_cred(i);
    if (!c)
        return -1;
    json_t *v = strncmp(key, "global.", 7) == 0
                    ? json_object_get(json_object_get(c, "global"), key + 7)
                    : json_object_get(c, key);
    long long r = json_is_integer(v) ? json_integer_value(v) : json_is_true(v) ? 1 : -1;
    json_decref(c);
    return r;
}

/* 1 when instance i takes its tokens from Redis now */
static int fb_global_mode(int i)
{
    json_t *c = fb_cred(i);
    if (!c)
        return 0;
    const char *m = json_string_value(json_object_get(json_object_get(c, "global"), "mode"));
    int r = m && strcmp(m, "redis") == 0;
    json_decref(c);
    return r;
}

static int fb_wait_global(int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 50) {
        int ok = 1;
        for (int i = 0; i < FB_N && ok; i++)
            ok = fb_global_mode(i);
        if (ok)
            return 0;
        bit_sleep_ms(50);
    }
    return -1;
}

typedef struct fb_job {
    int i, n, conc, offset;
    bit_run run;
} fb_job;

static void *fb_job_main(void *arg)
{
    fb_job *j = arg;
    bit_run_queries(F.base[j->i], BIT_KEY_BATCH, j->n, j->conc, j->offset, NULL, &j->run);
    return NULL;
}

/* n queries through each instance at once (threads started; join with fb_join) */
static void fb_launch(fb_job *jobs, pthread_t *th, int n, int offset)
{
    for (int i = 0; i < FB_N; i++) {
        jobs[i] = (fb_job){i, n, 10, offset + i * 100000, {0}};
        assert_int_equal(pthread_create(&th[i], NULL, fb_job_main, &jobs[i]), 0);
    }
}

/* join; the run's span (first start to last end), and the client-side totals */
static double fb_join(fb_job *jobs, pthread_t *th, int *ok200, int *c429, int *nerr)
{
    double t0 = 1e18, t1 = 0;
    *ok200 = *c429 = *nerr = 0;
    for (int i = 0; i < FB_N; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].run.t_start < t0)
            t0 = jobs[i].run.t_start;
        if (jobs[i].run.t_end > t1)
            t1 = jobs[i].run.t_end;
        *ok200 += jobs[i].run.by_status[200];
        *c429 += jobs[i].run.n429;
        *nerr += jobs[i].run.nerr;
        free(jobs[i].run.r);
    }
    return t1 - t0;
}

static void test_shared_rate(void **state)
{
    (void)state;
    assert_int_equal(fb_start("fleet-budget"), 0);
    assert_int_equal(fb_wait_global(10000), 0);
    bit_sim_stats s0 = {0}, s1 = {0};
    bit_env se = {0};
    snprintf(se.simurl, sizeof se.simurl, "%s", F.simurl);
    assert_int_equal(bit_sim_stats_get(&se, &s0), 0);
    fb_job jobs[FB_N];
    pthread_t th[FB_N];
    fb_launch(jobs, th, 40, 100000);
    int ok, c429, nerr;
    double elapsed = fb_join(jobs, th, &ok, &c429, &nerr);
    assert_int_equal(bit_sim_stats_get(&se, &s1), 0);
    long long req = s1.requests - s0.requests, r429 = s1.r429 - s0.r429;
    long long asks = 0, local = 0;
    for (int i = 0; i < FB_N; i++) {
        asks += fb_num(i, "global.asks");
        local += fb_num(i, "global.local_share_grants");
    }
    double bound = 10 * elapsed + 2 + 3; /* rate x elapsed + burst + slack */
    printf("# 3 x 40 queries through 3 instances at 10/s each, shared budget 10/s, sim 10/s "
           "burst 5: elapsed %.2f s, upstream requests %lld (bound %.1f), upstream 429s %lld, "
           "client 200s %d 429s %d errors %d; global asks %lld, local-share grants %lld\n",
           elapsed, req, bound, r429, ok, c429, nerr, asks, local);
    assert_int_equal(nerr, 0);
    assert_int_equal(c429, 0);
    assert_int_equal(ok, 3 * 40);
    assert_true(r429 <= 5); /* at most a burst */
    assert_true((double)req <= bound);
    assert_true(asks > 0);
    fb_stop();
}

static void test_retry_after_pauses_fleet(void **state)
{
    (void)state;
    assert_int_equal(fb_start("fleet-budget-ra"), 0);
    assert_int_equal(fb_wait_global(10000), 0);
    fb_job jobs[FB_N];
    pthread_t th[FB_N];
    fb_launch(jobs, th, 30, 200000);
    bit_sleep_ms(1500);
    char url[128];
    snprintf(url, sizeof url, "%s/_sim/faults", F.simurl);
    const char *fault = "{\"retry_after\":{\"count\":1,\"seconds\":2}}";
    const char *h[] = {"Content-Type: application/json", NULL};
    hresp r;
    assert_int_equal(http_do("POST", url, h, fault, strlen(fault), &r), 0);
    assert_true(r.status >= 200 && r.status < 300);
    hresp_free(&r);
    int ok, c429, nerr;
    fb_join(jobs, th, &ok, &c429, &nerr);
    int saw = -1, paused_others = 0;
    long long sheds = 0;
    for (int i = 0; i < FB_N; i++) {
        long long s = fb_num(i, "upstream_shed"), p = fb_num(i, "global.fleet_pauses");
        printf("# instance %d: upstream_shed %lld, fleet_pauses %lld\n", i, s, p);
        sheds += s;
        if (s > 0)
            saw = i;
        else if (p > 0)
            paused_others++;
    }
    printf("# one 429 Retry-After: 2 on one instance: client 200s %d 429s %d errors %d\n", ok, c429,
           nerr);
    assert_int_equal(nerr, 0);
    assert_int_equal(c429, 0);
    assert_int_equal(ok, 3 * 30);
    assert_int_equal(sheds, 1);
    assert_true(saw >= 0);
    /* the two that never saw a 429 were paused by the fleet's pause key */
    assert_int_equal(paused_others, FB_N - 1);
    fb_stop();
}

static void test_redis_down_local_share(void **state)
{
    (void)state;
    assert_int_equal(fb_start("fleet-budget-down"), 0);
    assert_int_equal(fb_wait_global(10000), 0);
    int rport = F.redis.port;
    fb_job jobs[FB_N];
    pthread_t th[FB_N];
    fb_launch(jobs, th, 40, 300000);
    bit_sleep_ms(2500);
    kill(F.redis.pid, SIGKILL);
    harness_stop(&F.redis, 1000);
    /* every instance falls back to its share */
    int all_local = 0;
    for (int t = 0; t < 5000 && !all_local; t += 50) {
        all_local = 1;
        for (int i = 0; i < FB_N; i++)
            all_local &= fb_num(i, "global.local_share_grants") > 0;
        bit_sleep_ms(50);
    }
    bit_sleep_ms(2000);
    long long local_before[FB_N];
    for (int i = 0; i < FB_N; i++)
        local_before[i] = fb_num(i, "global.local_share_grants");
    assert_int_equal(harness_start_redis(&F.redis, F.dir, rport), 0);
    int back = fb_wait_global(15000) == 0;
    long long asks_back[FB_N];
    for (int i = 0; i < FB_N; i++)
        asks_back[i] = fb_num(i, "global.asks");
    int ok, c429, nerr;
    fb_join(jobs, th, &ok, &c429, &nerr);
    /* after Redis came back the tokens came from it again: asks grew, local grants stopped */
    long long grown = 0, local_after = 0, local_at_return = 0;
    for (int i = 0; i < FB_N; i++) {
        grown += fb_num(i, "global.asks") - asks_back[i];
        local_after += fb_num(i, "global.local_share_grants");
        local_at_return += local_before[i];
    }
    printf("# Redis killed mid-run and restarted: client 200s %d 429s %d errors %d; all "
           "instances on their local share: %s; global again: %s; asks after the return %lld; "
           "local-share grants at the restart %lld, at the end %lld\n",
           ok, c429, nerr, all_local ? "yes" : "no", back ? "yes" : "no", grown, local_at_return,
           local_after);
    assert_int_equal(nerr, 0);
    assert_int_equal(c429, 0);
    assert_int_equal(ok, 3 * 40);
    assert_true(all_local);
    assert_true(back);
    assert_true(grown > 0);
    fb_stop();
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_rate),
        cmocka_unit_test(test_retry_after_pauses_fleet),
        cmocka_unit_test(test_redis_down_local_share),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
