/*
 * fleet_it: shared pieces of the fleet integration tests (test_fleet_*.c): one real
 * redis-server, one real hotdata-sim and three real hotgate instances with [redis] on, all on
 * free loopback ports. Each instance is a cit_env (cache_it.h) whose sim is the shared one, so
 * cit_req, cit_query, cit_metric and cit_sim_sql_count work on any of them.
 */
#ifndef HG_FLEET_IT_H
#define HG_FLEET_IT_H

#include <signal.h>
#include <sys/stat.h>

#include "cache_it.h"
#include "harness_redis.h"

#define FIT_N 3

typedef struct fit_env {
    char *dir;
    hproc redis, sim;
    cit_env g[FIT_N];
    char simurl[64];
    char extra[1024]; /* more config text after [redis] (e.g. "[upstream]..." is not allowed
                         twice: use redis_conf / upstream_conf of fit_start) */
} fit_env;

CIT_FN int fit_write_conf(fit_env *F, int i, const char *cache_conf, const char *redis_conf,
                          const char *upstream_conf)
{
    cit_env *e = &F->g[i];
    char ta[600], tb[600], tadm[600];
    snprintf(ta, sizeof ta, "%s/token_a", e->dir);
    snprintf(tb, sizeof tb, "%s/token_b", e->dir);
    snprintf(tadm, sizeof tadm, "%s/token_admin", e->dir);
    snprintf(e->conf, sizeof e->conf, "%s/hotgate.conf", e->dir);
    if (harness_write_file(ta, "tok_test\n", 0600) || harness_write_file(tb, "tok_other\n", 0600) ||
        harness_write_file(tadm, CIT_ADMIN_TOKEN "\n", 0600))
        return -1;
    char ka[65], kb[65];
    util_sha256_hex(CIT_KEY_A, strlen(CIT_KEY_A), ka);
    util_sha256_hex(CIT_KEY_B, strlen(CIT_KEY_B), kb);
    char *conf = NULL;
    int n = asprintf(&conf,
                     "[server]\nlisten = 127.0.0.1:%d\nthreads = 2\naccess_log = %s/access.log\n"
                     "[admin]\nlisten = 127.0.0.1:%d\ntoken_file = %s\n"
                     "[upstream]\nurl = http://127.0.0.1:%d\nretries = 0\n%s\n"
                     "[cache]\nenabled = yes\ndir = %s/cache\n%s\n"
                     "[redis]\nenabled = yes\nurl = redis://127.0.0.1:%d\nkey_prefix = hgt:\n%s\n"
                     "[credential a]\ntoken_file = %s\n"
                     "[credential b]\ntoken_file = %s\n"
                     "[client a]\nkey_sha256 = %s\ncredential = a\nworkspaces = ws_test\n"
                     "default_workspace = ws_test\nmode = full\n"
                     "[client b]\nkey_sha256 = %s\ncredential = b\nworkspaces = ws_other\n"
                     "default_workspace = ws_other\nmode = full\n",
                     e->hg.port, e->dir, e->admin_port, tadm, F->sim.port,
                     upstream_conf ? upstream_conf : "timeout = 5", e->dir,
                     cache_conf ? cache_conf : "", F->redis.port, redis_conf ? redis_conf : "", ta,
                     tb, ka, kb);
    if (n < 0)
        abort();
    int rc = harness_write_file(e->conf, conf, 0600);
    free(conf);
    return rc;
}

/* Start redis, the sim and FIT_N hotgates. */
CIT_FN int fit_start(fit_env *F, const char *tag, const char *cache_conf, const char *redis_conf,
                     const char *upstream_conf)
{
    memset(F, 0, sizeof *F);
    F->dir = harness_tmpdir(tag);
    if (harness_start_redis(&F->redis, F->dir, 0) != 0)
        return -1;
    const char *quiet[] = {"--quiet", NULL};
    if (harness_start_sim(&F->sim, F->dir, quiet) != 0)
        return -1;
    snprintf(F->simurl, sizeof F->simurl, "http://127.0.0.1:%d", F->sim.port);
    for (int i = 0; i < FIT_N; i++) {
        cit_env *e = &F->g[i];
        char d[700];
        snprintf(d, sizeof d, "%s/g%d", F->dir, i);
        mkdir(d, 0700);
        e->dir = strdup(d);
        e->sim = F->sim;
        snprintf(e->simurl, sizeof e->simurl, "%s", F->simurl);
        e->hg.port = harness_free_port();
        e->admin_port = harness_free_port();
        snprintf(e->base, sizeof e->base, "http://127.0.0.1:%d", e->hg.port);
        snprintf(e->admin, sizeof e->admin, "http://127.0.0.1:%d", e->admin_port);
        if (fit_write_conf(F, i, cache_conf, redis_conf, upstream_conf) != 0)
            return -1;
        if (cit_start_hg(e) != 0)
            return -1;
    }
    return 0;
}

CIT_FN void fit_stop(fit_env *F)
{
    for (int i = 0; i < FIT_N; i++) {
        harness_stop(&F->g[i].hg, 5000);
        free(F->g[i].dir);
    }
    harness_stop(&F->sim, 3000);
    harness_stop(&F->redis, 3000);
    if (!getenv("HG_KEEP_TMP"))
        harness_rmdir(F->dir);
    free(F->dir);
    F->dir = NULL;
}

/* Wait (up to timeout_ms) until every instance's tailer is attached to the invalidation
 * stream and its Redis connections are up. 0 when they are. */
CIT_FN int fit_wait_attached(fit_env *F, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 50) {
        int ok = 1;
        for (int i = 0; i < FIT_N && ok; i++)
            ok = F->g[i].hg.pid > 0 && cit_metric(&F->g[i], "hotgate_fleet_stream_attached") == 1 &&
                 cit_metric(&F->g[i], "hotgate_redis_connections_up") >= 4; /* 2 workers + 2 */
        if (ok)
            return 0;
        cit_sleep_ms(50);
    }
    return -1;
}

/* Wait until instance i's metric reaches at least v. 0 when it did. */
CIT_FN int fit_wait_metric(fit_env *F, int i, const char *name, double v, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 20) {
        if (cit_metric(&F->g[i], name) >= v)
            return 0;
        cit_sleep_ms(20);
    }
    return -1;
}

/* Value of a labelled metric line ("name{labels} value") of instance i, -1 if absent. */
CIT_FN double fit_metric_l(fit_env *F, int i, const char *name_labels)
{
    hresp r;
    if (cit_admin_get(&F->g[i], "/metrics", &r) != 0)
        return -1;
    double v = -1;
    char *p = strstr(r.body ? r.body : "", name_labels);
    if (p && (p == r.body || p[-1] == '\n')) {
        char *sp = p + strlen(name_labels);
        if (*sp == ' ')
            v = strtod(sp + 1, NULL);
    }
    hresp_free(&r);
    return v;
}

/* L2 entries in Redis now (keys hgt:{...}e). */
CIT_FN long long fit_l2_entries(fit_env *F)
{
    char *k = harness_redis(F->redis.port, "EVAL %s 0", "return #redis.call('KEYS', 'hgt:{*}e')");
    long long have = k ? strtoll(k, NULL, 10) : 0;
    free(k);
    return have;
}

/* Wait until Redis holds at least n L2 entries. 0 when it does. */
CIT_FN int fit_wait_l2_entries(fit_env *F, long long n, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 20) {
        if (fit_l2_entries(F) >= n)
            return 0;
        cit_sleep_ms(20);
    }
    return -1;
}

/* The access log lines of instance i that contain needle. */
CIT_FN int fit_access_count(fit_env *F, int i, const char *needle)
{
    char path[800];
    snprintf(path, sizeof path, "%s/access.log", F->g[i].dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[8192];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

#endif
