/*
 * test_redis: the Redis client layer (redis.h) against a real redis-server (and a real
 * sentinel): round trips, the per-command deadline (late replies dropped), the circuit
 * breaker and reconnect with backoff, Redis restarting on the same port, AUTH + SELECT from a
 * 0600 password file, EVALSHA with NOSCRIPT reload, pub/sub with loss notification, the
 * primary found through Sentinel, and a Sentinel failover (the primary killed, the replica
 * promoted, writes land there).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "config.h"
#include "harness_redis.h"
#include "redis.h"

static char *g_dir;
static hproc g_redis;

/* what callbacks saw */
typedef struct seen {
    int calls;
    int null_replies;
    char last[256];
    long long integer;
} seen;

static void record(void *arg, const redisReply *r)
{
    seen *s = arg;
    s->calls++;
    if (!r) {
        s->null_replies++;
        s->last[0] = '\0';
        return;
    }
    if (r->type == REDIS_REPLY_INTEGER)
        s->integer = r->integer;
    snprintf(s->last, sizeof s->last, "%s", r->str ? r->str : "");
}

static void loop_for(struct event_base *b, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(b, &tv);
    event_base_dispatch(b);
}

/* Run the loop until *flag is non-zero (or timeout_ms). */
static int loop_until(struct event_base *b, const int *flag, int timeout_ms)
{
    for (int t = 0; t < timeout_ms && !*flag; t += 10)
        loop_for(b, 10);
    return *flag;
}

static int usable_flag(struct rds *r)
{
    return rds_usable(r);
}

static int wait_usable(struct event_base *b, struct rds *r, int timeout_ms)
{
    for (int t = 0; t < timeout_ms && !usable_flag(r); t += 10)
        loop_for(b, 10);
    return usable_flag(r);
}

static struct hg_config *make_cfg(const char *url)
{
    struct hg_config *c = calloc(1, sizeof *c);
    c->redis.enabled = 1;
    c->redis.url = strdup(url);
    c->redis.key_prefix = strdup("t:");
    c->redis.connect_timeout_ms = 1000;
    c->redis.op_timeout_ms = 100;
    c->redis.max_entry_size = 1 << 20;
    c->redis.local_share = 1;
    c->redis.stream_maxlen = 1000;
    return c;
}

static void free_cfg(struct hg_config *c)
{
    free(c->redis.url);
    free(c->redis.key_prefix);
    free(c->redis.sentinel);
    free(c->redis.sentinel_master);
    config_secret_free(&c->redis.password);
    free(c);
}

static void init_url(int port)
{
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    struct hg_config *c = make_cfg(url);
    assert_int_equal(rds_init(c), 0);
    free_cfg(c); /* rds keeps copies */
}

static const char *argv_of(const char **v, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        v[i] = va_arg(ap, const char *);
    va_end(ap);
    return v[0];
}

static void test_roundtrip_and_key(void **state)
{
    (void)state;
    init_url(g_redis.port);
    struct event_base *b = event_base_new();
    struct rds *r = rds_new(b, "test", NULL, NULL);
    assert_non_null(r);
    assert_true(wait_usable(b, r, 3000));
    char key[64];
    assert_true(rds_key(key, sizeof key, "a:", "b") > 0);
    assert_string_equal(key, "t:a:b");
    const char *v[4];
    seen s = {0};
    argv_of(v, 3, "SET", key, "hello");
    assert_int_equal(rds_cmdv(r, record, &s, 3, v, NULL), 0);
    argv_of(v, 2, "GET", key);
    assert_int_equal(rds_cmdv(r, record, &s, 2, v, NULL), 0);
    int two = 0;
    for (int t = 0; t < 2000 && s.calls < 2; t += 10)
        loop_for(b, 10);
    (void)two;
    assert_int_equal(s.calls, 2);
    assert_string_equal(s.last, "hello");
    char *direct = harness_redis(g_redis.port, "GET t:a:b");
    assert_string_equal(direct, "hello");
    free(direct);
    /* an error reply is a failure unless asked for */
    seen e = {0};
    argv_of(v, 2, "INCR", key);
    assert_int_equal(rds_cmdv(r, record, &e, 2, v, NULL), 0);
    for (int t = 0; t < 2000 && !e.calls; t += 10)
        loop_for(b, 10);
    assert_int_equal(e.null_replies, 1);
    seen e2 = {0};
    assert_int_equal(rds_cmdv_ex(r, RDS_F_ERRORS, record, &e2, 2, v, NULL), 0);
    for (int t = 0; t < 2000 && !e2.calls; t += 10)
        loop_for(b, 10);
    assert_int_equal(e2.null_replies, 0);
    assert_non_null(strstr(e2.last, "not an integer"));
    rds_free(r);
    event_base_free(b);
    rds_shutdown();
}

static void test_deadline_and_circuit(void **state)
{
    (void)state;
    init_url(g_redis.port);
    struct event_base *b = event_base_new();
    struct rds *r = rds_new(b, "test", NULL, NULL);
    assert_true(wait_usable(b, r, 3000));
    /* Redis stalls (DEBUG SLEEP from another client): our PING misses op_timeout (100 ms)
     * and is answered NULL; its late reply is not delivered a second time */
    const char *v[2] = {"PING", NULL};
    seen s[RDS_TRIP] = {{0}};
    pid_t pid = fork();
    if (pid == 0) {
        char *x = harness_redis(g_redis.port, "DEBUG SLEEP 1.5");
        free(x);
        _exit(0);
    }
    usleep(200000);
    for (int i = 0; i < RDS_TRIP; i++) {
        assert_int_equal(rds_cmdv(r, record, &s[i], 1, v, NULL), 0);
        for (int t = 0; t < 1000 && !s[i].calls; t += 10)
            loop_for(b, 10);
        assert_int_equal(s[i].calls, 1);
        assert_int_equal(s[i].null_replies, 1);
    }
    /* RDS_TRIP timeouts in a row opened the circuit: refused at once, no callback */
    seen refused = {0};
    assert_false(rds_usable(r));
    assert_int_equal(rds_cmdv(r, record, &refused, 1, v, NULL), -1);
    /* once Redis answers again the client reconnects by itself (backoff) */
    assert_true(wait_usable(b, r, 8000));
    loop_for(b, 300);
    for (int i = 0; i < RDS_TRIP; i++)
        assert_int_equal(s[i].calls, 1); /* late replies were dropped */
    assert_int_equal(refused.calls, 0);
    seen ok = {0};
    assert_int_equal(rds_cmdv(r, record, &ok, 1, v, NULL), 0);
    assert_true(loop_until(b, &ok.calls, 2000));
    assert_string_equal(ok.last, "PONG");
    int st;
    waitpid(pid, &st, 0);
    rds_free(r);
    event_base_free(b);
    rds_shutdown();
}

static void test_restart_same_port(void **state)
{
    (void)state;
    init_url(g_redis.port);
    struct event_base *b = event_base_new();
    struct rds *r = rds_new(b, "test", NULL, NULL);
    assert_true(wait_usable(b, r, 3000));
    unsigned up, total;
    rds_counts(&up, &total);
    assert_int_equal(up, 1);
    int port = g_redis.port;
    kill(g_redis.pid, SIGKILL);
    harness_stop(&g_redis, 100);
    for (int t = 0; t < 2000 && rds_usable(r); t += 10)
        loop_for(b, 10);
    assert_false(rds_usable(r));
    const char *v[1] = {"PING"};
    seen s = {0};
    assert_int_equal(rds_cmdv(r, record, &s, 1, v, NULL), -1); /* down: refused, no wait */
    rds_counts(&up, &total);
    assert_int_equal(up, 0);
    assert_int_equal(harness_start_redis(&g_redis, g_dir, port), 0);
    assert_true(wait_usable(b, r, 8000));
    assert_int_equal(rds_cmdv(r, record, &s, 1, v, NULL), 0);
    assert_true(loop_until(b, &s.calls, 2000));
    assert_string_equal(s.last, "PONG");
    rds_free(r);
    event_base_free(b);
    rds_shutdown();
}

static void test_auth_select(void **state)
{
    (void)state;
    char *x = harness_redis(g_redis.port, "CONFIG SET requirepass s3cret-pw");
    assert_string_equal(x, "OK");
    free(x);
    char pw[512];
    snprintf(pw, sizeof pw, "%s/redis.pass", g_dir);
    FILE *f = fopen(pw, "w");
    fputs("s3cret-pw\n", f);
    fclose(f);
    chmod(pw, 0600);
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/3", g_redis.port);
    struct hg_config *c = make_cfg(url);
    char err[256];
    assert_int_equal(config_secret_load(HG_SECRET_FILE, pw, &c->redis.password, err, sizeof err),
                     0);
    assert_int_equal(rds_init(c), 0);
    free_cfg(c);
    struct event_base *b = event_base_new();
    struct rds *r = rds_new(b, "test", NULL, NULL);
    assert_true(wait_usable(b, r, 3000));
    const char *v[3] = {"SET", "t:db3", "yes"};
    seen s = {0};
    assert_int_equal(rds_cmdv(r, record, &s, 3, v, NULL), 0);
    assert_true(loop_until(b, &s.calls, 2000));
    assert_string_equal(s.last, "OK");
    rds_free(r);
    event_base_free(b);
    rds_shutdown();
    /* the key went to db 3 */
    struct timeval tv = {2, 0};
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", g_redis.port, tv);
    redisReply *rep = redisCommand(rc, "AUTH s3cret-pw");
    freeReplyObject(rep);
    rep = redisCommand(rc, "SELECT 3");
    freeReplyObject(rep);
    rep = redisCommand(rc, "GET t:db3");
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_string_equal(rep->str, "yes");
    freeReplyObject(rep);
    redisFree(rc);
    /* a wrong password never becomes usable */
    f = fopen(pw, "w");
    fputs("wrong\n", f);
    fclose(f);
    c = make_cfg(url);
    assert_int_equal(config_secret_load(HG_SECRET_FILE, pw, &c->redis.password, err, sizeof err),
                     0);
    assert_int_equal(rds_init(c), 0);
    free_cfg(c);
    b = event_base_new();
    r = rds_new(b, "test", NULL, NULL);
    assert_false(wait_usable(b, r, 600));
    rds_free(r);
    event_base_free(b);
    rds_shutdown();
    rc = redisConnectWithTimeout("127.0.0.1", g_redis.port, tv);
    rep = redisCommand(rc, "AUTH s3cret-pw");
    freeReplyObject(rep);
    rep = redisCommand(rc, "CONFIG SET requirepass %s", "");
    freeReplyObject(rep);
    redisFree(rc);
}

static void test_script_noscript_reload(void **state)
{
    (void)state;
    init_url(g_redis.port);
    struct event_base *b = event_base_new();
    struct rds *r = rds_new(b, "test", NULL, NULL);
    assert_true(wait_usable(b, r, 3000));
    static struct rds_script sc;
    rds_script_init(&sc, "return redis.call('INCRBY', KEYS[1], ARGV[1])");
    assert_int_equal(strlen(sc.sha), 40);
    char *x = harness_redis(g_redis.port, "SCRIPT FLUSH");
    free(x);
    const char *v[2] = {"t:{s}n", "5"};
    for (int round = 0; round < 3; round++) {
        if (round == 2) {
            x = harness_redis(g_redis.port, "SCRIPT FLUSH"); /* e.g. a failover */
            free(x);
        }
        seen s = {0};
        assert_int_equal(rds_eval(r, &sc, record, &s, 1, 2, v, NULL), 0);
        assert_true(loop_until(b, &s.calls, 2000));
        assert_int_equal(s.null_replies, 0);
        assert_int_equal(s.integer, 5 * (round + 1));
    }
    x = harness_redis(g_redis.port, "SCRIPT EXISTS %s", sc.sha);
    assert_string_equal(x, "1");
    free(x);
    rds_free(r);
    event_base_free(b);
    rds_shutdown();
}

typedef struct subseen {
    int messages, losses;
    char last[64];
} subseen;

static void on_msg(void *arg, const char *ch, const char *payload, size_t len)
{
    subseen *s = arg;
    if (!ch) {
        s->losses++;
        return;
    }
    s->messages++;
    snprintf(s->last, sizeof s->last, "%.*s", (int)len, payload);
}

static struct rds *g_sub;
static subseen g_subseen;
static int g_readies;
static void sub_ready(void *arg)
{
    (void)arg;
    g_readies++;
    rds_subscribe(g_sub, "t:chan", on_msg, &g_subseen);
}

static void test_pubsub_and_loss(void **state)
{
    (void)state;
    init_url(g_redis.port);
    struct event_base *b = event_base_new();
    g_sub = rds_new(b, "sub", sub_ready, NULL);
    assert_true(wait_usable(b, g_sub, 3000));
    loop_for(b, 100);
    long long n = harness_redis_int(g_redis.port, "PUBLISH t:chan hello");
    assert_int_equal(n, 1);
    assert_true(loop_until(b, &g_subseen.messages, 2000));
    assert_string_equal(g_subseen.last, "hello");
    /* the server cuts the subscriber: the loss is reported, and on_ready subscribes again */
    char *x = harness_redis(g_redis.port, "CLIENT KILL TYPE pubsub");
    free(x);
    assert_true(loop_until(b, &g_subseen.losses, 2000));
    for (int t = 0; t < 5000 && g_readies < 2; t += 10)
        loop_for(b, 10);
    assert_int_equal(g_readies, 2);
    loop_for(b, 100);
    assert_int_equal(harness_redis_int(g_redis.port, "PUBLISH t:chan again"), 1);
    for (int t = 0; t < 2000 && g_subseen.messages < 2; t += 10)
        loop_for(b, 10);
    assert_string_equal(g_subseen.last, "again");
    rds_free(g_sub);
    event_base_free(b);
    rds_shutdown();
}

static void test_sentinel_finds_primary(void **state)
{
    (void)state;
    hproc sen = {0};
    assert_int_equal(harness_start_sentinel(&sen, g_dir, g_redis.port, "hgmaster"), 0);
    char list[64];
    snprintf(list, sizeof list, "127.0.0.1:1,127.0.0.1:%d", sen.port); /* first one is dead */
    struct hg_config *c = make_cfg("redis://127.0.0.1:1");
    c->redis.sentinel = strdup(list);
    c->redis.sentinel_master = strdup("hgmaster");
    assert_int_equal(rds_init(c), 0);
    free_cfg(c);
    struct event_base *b = event_base_new();
    struct rds *r = rds_new(b, "test", NULL, NULL);
    assert_true(wait_usable(b, r, 8000));
    const char *v[1] = {"PING"};
    seen s = {0};
    assert_int_equal(rds_cmdv(r, record, &s, 1, v, NULL), 0);
    assert_true(loop_until(b, &s.calls, 2000));
    assert_string_equal(s.last, "PONG");
    rds_free(r);
    event_base_free(b);
    rds_shutdown();
    harness_stop(&sen, 2000);
}

/* The primary dies; Sentinel promotes the replica; the client finds it and writes there. */
static void test_sentinel_failover(void **state)
{
    (void)state;
    hproc m = {0}, rep = {0}, sen = {0};
    assert_int_equal(harness_start_redis(&m, g_dir, 0), 0);
    assert_int_equal(harness_start_redis_replica(&rep, g_dir, m.port), 0);
    assert_int_equal(harness_start_sentinel(&sen, g_dir, m.port, "hgfail"), 0);
    char rport[16];
    snprintf(rport, sizeof rport, "%d", rep.port);
    int known = 0;
    for (int t = 0; t < 300 && !known; t++) {
        char *x = harness_redis(sen.port, "SENTINEL replicas hgfail");
        known = x && strstr(x, rport);
        free(x);
        if (!known)
            usleep(100000);
    }
    assert_true(known);
    char list[64];
    snprintf(list, sizeof list, "127.0.0.1:%d", sen.port);
    struct hg_config *c = make_cfg("redis://127.0.0.1:1");
    c->redis.sentinel = strdup(list);
    c->redis.sentinel_master = strdup("hgfail");
    assert_int_equal(rds_init(c), 0);
    free_cfg(c);
    struct event_base *b = event_base_new();
    struct rds *r = rds_new(b, "test", NULL, NULL);
    assert_true(wait_usable(b, r, 8000));
    const char *v[3] = {"SET", "t:before", "1"};
    seen s = {0};
    assert_int_equal(rds_cmdv(r, record, &s, 3, v, NULL), 0);
    assert_true(loop_until(b, &s.calls, 2000));
    assert_string_equal(s.last, "OK");
    kill(m.pid, SIGKILL);
    harness_stop(&m, 100);
    /* keep writing until a write lands on the promoted replica */
    int landed = 0;
    for (int t = 0; t < 600 && !landed; t++) {
        seen w = {0};
        const char *wv[3] = {"SET", "t:after", "2"};
        if (rds_cmdv(r, record, &w, 3, wv, NULL) == 0) {
            loop_until(b, &w.calls, 1000);
            landed = !strcmp(w.last, "OK");
        } else {
            loop_for(b, 50);
        }
    }
    assert_true(landed);
    char *x = harness_redis(rep.port, "GET t:after");
    assert_string_equal(x, "2");
    free(x);
    x = harness_redis(rep.port, "ROLE");
    assert_true(x && !strncmp(x, "master", 6));
    free(x);
    rds_free(r);
    event_base_free(b);
    rds_shutdown();
    harness_stop(&sen, 2000);
    harness_stop(&rep, 2000);
}

static void test_disabled_refuses(void **state)
{
    (void)state;
    struct hg_config *c = make_cfg("redis://127.0.0.1:1");
    c->redis.enabled = 0;
    assert_int_equal(rds_init(c), 0);
    free_cfg(c);
    struct event_base *b = event_base_new();
    assert_null(rds_new(b, "x", NULL, NULL));
    assert_null(rds_worker(b));
    assert_false(rds_enabled());
    event_base_free(b);
}

static int setup(void **state)
{
    (void)state;
    g_dir = harness_tmpdir("redis");
    return harness_start_redis(&g_redis, g_dir, 0);
}

static int teardown(void **state)
{
    (void)state;
    harness_stop(&g_redis, 2000);
    harness_rmdir(g_dir);
    free(g_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_key),      cmocka_unit_test(test_deadline_and_circuit),
        cmocka_unit_test(test_restart_same_port),      cmocka_unit_test(test_auth_select),
        cmocka_unit_test(test_script_noscript_reload), cmocka_unit_test(test_pubsub_and_loss),
        cmocka_unit_test(test_sentinel_finds_primary), cmocka_unit_test(test_sentinel_failover),
        cmocka_unit_test(test_disabled_refuses),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
