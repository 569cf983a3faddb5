/*
 * cache_it: shared pieces of the cache integration tests (test_cache_*.c): start the real
 * hotdata-sim and a real hotgate with the cache on, talk HTTP to both, read the sim's
 * /_sim/stats (requests per route and per sql_hash) and set its faults (/_sim/faults).
 *
 * Two clients: "a" (key CIT_KEY_A, credential tok_test, workspace ws_test) and "b"
 * (CIT_KEY_B, credential tok_other, workspace ws_other).
 *
 * Header-only (static functions) so each test stays one executable built from one file;
 * nothing here is a mock.
 */
#ifndef HG_CACHE_IT_H
#define HG_CACHE_IT_H

#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "util.h"

#define CIT_KEY_A "hgk_cache_a_0123456789abcdef"
#define CIT_KEY_B "hgk_cache_b_0123456789abcdef"
#define CIT_ADMIN_TOKEN "adm_cache_0123456789"
#define CIT_FN static __attribute__((unused))

typedef struct cit_env {
    char *dir;
    hproc sim, hg;
    int admin_port;
    char base[64];   /* http://127.0.0.1:PORT of hotgate */
    char admin[64];  /* http://127.0.0.1:PORT of the admin listener */
    char simurl[64]; /* http://127.0.0.1:PORT of the sim */
    char conf[600];
    char cache_conf[2048];
} cit_env;

CIT_FN double cit_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

CIT_FN void cit_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

CIT_FN int cit_start_sim(cit_env *e, const char *const extra[])
{
    const char *quiet[] = {"--quiet", NULL};
    if (harness_start_sim(&e->sim, e->dir, extra ? extra : quiet) != 0) {
        fprintf(stderr, "sim did not start\n");
        harness_dump_log(&e->sim, 30);
        return -1;
    }
    snprintf(e->simurl, sizeof e->simurl, "http://127.0.0.1:%d", e->sim.port);
    return 0;
}

/* (Re)start hotgate with the config written by cit_start (same ports, same cache dir). */
CIT_FN int cit_start_hg(cit_env *e)
{
    if (harness_start_hotgate(&e->hg, e->conf, NULL) != 0) {
        fprintf(stderr, "hotgate did not start\n");
        harness_dump_log(&e->hg, 40);
        return -1;
    }
    return 0;
}

/*
 * Start sim + hotgate. cache_conf: the body of the [cache] section (keys after
 * "enabled = yes" and "dir = ..."), e.g. "ttl_metadata = 1s\n". sim_extra: more sim
 * arguments (NULL-terminated) or NULL.
 */
CIT_FN int cit_start(cit_env *e, const char *tag, const char *cache_conf,
                     const char *const sim_extra[])
{
    memset(e, 0, sizeof *e);
    e->dir = harness_tmpdir(tag);
    if (cit_start_sim(e, sim_extra) != 0)
        return -1;
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
    e->hg.port = harness_free_port();
    e->admin_port = harness_free_port();
    snprintf(e->cache_conf, sizeof e->cache_conf, "%s", cache_conf ? cache_conf : "");
    char *conf = NULL;
    int n = asprintf(&conf,
                     "[server]\nlisten = 127.0.0.1:%d\nthreads = 2\naccess_log = %s/access.log\n"
                     "[admin]\nlisten = 127.0.0.1:%d\ntoken_file = %s\n"
                     "[upstream]\nurl = http://127.0.0.1:%d\nretries = 0\ntimeout = 5\n"
                     "[cache]\nenabled = yes\ndir = %s/cache\n%s\n"
                     "[credential a]\ntoken_file = %s\n"
                     "[credential b]\ntoken_file = %s\n"
                     "[client a]\nkey_sha256 = %s\ncredential = a\nworkspaces = ws_test\n"
                     "default_workspace = ws_test\nmode = full\n"
                     "[client b]\nkey_sha256 = %s\ncredential = b\nworkspaces = ws_other\n"
                     "default_workspace = ws_other\nmode = full\n",
                     e->hg.port, e->dir, e->admin_port, tadm, e->sim.port, e->dir, e->cache_conf,
                     ta, tb, ka, kb);
    if (n < 0)
        abort();
    int rc = harness_write_file(e->conf, conf, 0600);
    free(conf);
    if (rc != 0)
        return -1;
    snprintf(e->base, sizeof e->base, "http://127.0.0.1:%d", e->hg.port);
    snprintf(e->admin, sizeof e->admin, "http://127.0.0.1:%d", e->admin_port);
    return cit_start_hg(e);
}

CIT_FN void cit_stop(cit_env *e)
{
    harness_stop(&e->hg, 5000);
    harness_stop(&e->sim, 3000);
    if (!getenv("HG_KEEP_TMP"))
        harness_rmdir(e->dir);
    free(e->dir);
    e->dir = NULL;
}

/* One request through hotgate as client key (CIT_KEY_A/B); extra: one more header or NULL. */
CIT_FN int cit_req(const cit_env *e, const char *key, const char *method, const char *path,
                   const char *body, const char *extra, const char *extra2, hresp *out)
{
    char auth[128], url[2048];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    snprintf(url, sizeof url, "%s%s", e->base, path);
    const char *h[6];
    int n = 0;
    h[n++] = auth;
    if (body)
        h[n++] = "Content-Type: application/json";
    if (extra)
        h[n++] = extra;
    if (extra2)
        h[n++] = extra2;
    h[n] = NULL;
    return http_do(method, url, h, body, body ? strlen(body) : 0, out);
}

/* X-Cache of a response (static buffer; "" when absent). */
CIT_FN const char *cit_xcache(const hresp *r)
{
    static char buf[64];
    char *v = hresp_header(r, "X-Cache");
    snprintf(buf, sizeof buf, "%s", v ? v : "");
    free(v);
    return buf;
}

/* A POST /v1/query body for sql (JSON-escaped by jansson); malloc'd. */
CIT_FN char *cit_query_body(const char *sql)
{
    json_t *o = json_pack("{s:s}", "sql", sql);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

CIT_FN int cit_query(const cit_env *e, const char *key, const char *sql, const char *extra,
                     hresp *out)
{
    char *b = cit_query_body(sql);
    int rc = cit_req(e, key, "POST", "/v1/query", b, extra, NULL, out);
    free(b);
    return rc;
}

CIT_FN json_t *cit_get_json(const char *url)
{
    hresp r;
    if (http_do("GET", url, NULL, NULL, 0, &r) != 0)
        return NULL;
    json_t *j = r.status == 200 ? json_loadb(r.body, r.len, 0, NULL) : NULL;
    hresp_free(&r);
    return j;
}

/* Sum of integer members named key anywhere under j. */
CIT_FN long long cit_json_sum(const json_t *j, const char *key)
{
    long long s = 0;
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            if (strcmp(k, key) == 0 && json_is_integer(v))
                s += json_integer_value(v);
            else if (strcmp(k, key) == 0 && json_is_object(v))
                s += cit_json_sum(v, "count") + cit_json_sum(v, "requests");
            else
                s += cit_json_sum(v, key);
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) s += cit_json_sum(v, key);
    }
    return s;
}

/* How many times the sim executed the exact SQL text (by sql_hash). */
CIT_FN long long cit_sim_sql_count(const cit_env *e, const char *sql)
{
    char url[128], hash[65];
    snprintf(url, sizeof url, "%s/_sim/stats", e->simurl);
    util_sha256_hex(sql, strlen(sql), hash);
    json_t *j = cit_get_json(url);
    if (!j)
        return -1;
    long long n = cit_json_sum(j, hash);
    json_decref(j);
    return n;
}

/* Requests the sim counted for a route name as its stats spell it (e.g. "GET
 * /v1/connections"); falls back to a path match inside route keys. */
CIT_FN long long cit_sim_route_count(const cit_env *e, const char *route)
{
    char url[128];
    snprintf(url, sizeof url, "%s/_sim/stats", e->simurl);
    json_t *j = cit_get_json(url);
    if (!j)
        return -1;
    long long n = cit_json_sum(j, route);
    json_decref(j);
    return n;
}

/* POST /_sim/faults with a JSON body; 0 when the sim accepted it. */
CIT_FN int cit_sim_faults(const cit_env *e, const char *json)
{
    char url[128];
    snprintf(url, sizeof url, "%s/_sim/faults", e->simurl);
    const char *h[] = {"Content-Type: application/json", NULL};
    hresp r;
    int rc = http_do("POST", url, h, json, strlen(json), &r);
    int ok = rc == 0 && r.status >= 200 && r.status < 300;
    if (!ok)
        fprintf(stderr, "faults %s -> rc %d status %ld %s\n", json, rc, r.status,
                r.body ? r.body : "");
    hresp_free(&r);
    return ok ? 0 : -1;
}

/* POST to the admin listener with the admin token. */
CIT_FN int cit_admin_post(const cit_env *e, const char *path, const char *json, hresp *out)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", e->admin, path);
    const char *h[] = {"Authorization: Bearer " CIT_ADMIN_TOKEN, "Content-Type: application/json",
                       NULL};
    return http_do("POST", url, h, json, json ? strlen(json) : 0, out);
}

CIT_FN int cit_admin_get(const cit_env *e, const char *path, hresp *out)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", e->admin, path);
    const char *h[] = {"Authorization: Bearer " CIT_ADMIN_TOKEN, NULL};
    return http_do("GET", url, h, NULL, 0, out);
}

/* Value of a metric line "name value" (first match) from /metrics, -1 if absent. */
CIT_FN double cit_metric(const cit_env *e, const char *name)
{
    hresp r;
    if (cit_admin_get(e, "/metrics", &r) != 0)
        return -1;
    double v = -1;
    size_t nl = strlen(name);
    for (char *p = r.body; p && *p;) {
        char *eol = strchr(p, '\n');
        if (strncmp(p, name, nl) == 0 && (p[nl] == ' ' || p[nl] == '{')) {
            char *sp = strchr(p, ' ');
            if (sp)
                v = strtod(sp + 1, NULL);
            break;
        }
        p = eol ? eol + 1 : NULL;
    }
    hresp_free(&r);
    return v;
}

#endif
