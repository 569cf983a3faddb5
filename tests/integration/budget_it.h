/*
 * budget_it: shared pieces of the budget integration tests (test_budget_*.c): start a real
 * hotdata-sim with a rate limit and a real hotgate in front of it, drive many concurrent
 * queries through libcurl multi, read the sim's /_sim/stats and hotgate's /admin/budget.
 *
 * Header-only (static functions) so that each test stays one executable built from one
 * file; nothing here is a mock.
 */
#ifndef HG_BUDGET_IT_H
#define HG_BUDGET_IT_H

#include <curl/curl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "util.h"

#define BIT_KEY_BATCH "hgk_batch_0123456789abcdef"
#define BIT_KEY_WEB "hgk_web_0123456789abcdef0"
#define BIT_KEY_CAPPED "hgk_capped_0123456789abcd"

typedef struct bit_env {
    char *dir;
    hproc sim, hg;
    int admin_port;
    char base[64];  /* http://127.0.0.1:PORT of hotgate */
    char admin[64]; /* http://127.0.0.1:PORT of the admin listener */
    char simurl[64];
} bit_env;

static inline double bit_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void bit_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/*
 * Start the sim (--rate sim_rate --burst sim_burst; 0 = no limit) and hotgate with
 * [credential main] rate/burst and the extra config text appended (more [client] sections,
 * [queue] overrides ...). Three clients exist: etl (batch), web (interactive), capped
 * (batch, rate 1/s) on credential main.
 */
static inline int bit_start(bit_env *e, const char *tag, double sim_rate, double sim_burst,
                            double hg_rate, double hg_burst, const char *queue_conf)
{
    memset(e, 0, sizeof *e);
    e->dir = harness_tmpdir(tag);
    char rate[32], burst[32];
    snprintf(rate, sizeof rate, "%g", sim_rate);
    snprintf(burst, sizeof burst, "%g", sim_burst);
    const char *extra[] = {"--rate", rate, "--burst", burst, "--quiet", NULL};
    const char *noextra[] = {"--quiet", NULL};
    if (harness_start_sim(&e->sim, e->dir, sim_rate > 0 ? extra : noextra) != 0) {
        fprintf(stderr, "sim did not start\n");
        harness_dump_log(&e->sim, 30);
        return -1;
    }
    snprintf(e->simurl, sizeof e->simurl, "http://127.0.0.1:%d", e->sim.port);

    char tokpath[600], confpath[600];
    snprintf(tokpath, sizeof tokpath, "%s/token", e->dir);
    snprintf(confpath, sizeof confpath, "%s/hotgate.conf", e->dir);
    if (harness_write_file(tokpath, "tok_test\n", 0600) != 0)
        return -1;
    char kb[65], kw[65], kc[65];
    util_sha256_hex(BIT_KEY_BATCH, strlen(BIT_KEY_BATCH), kb);
    util_sha256_hex(BIT_KEY_WEB, strlen(BIT_KEY_WEB), kw);
    util_sha256_hex(BIT_KEY_CAPPED, strlen(BIT_KEY_CAPPED), kc);
    e->hg.port = harness_free_port();
    e->admin_port = harness_free_port();
    char *conf = NULL;
    int n = asprintf(&conf,
                     "[server]\nlisten = 127.0.0.1:%d\nthreads = 2\naccess_log = off\n"
                     "[admin]\nlisten = 127.0.0.1:%d\n"
                     "[upstream]\nurl = http://127.0.0.1:%d\nretries = 0\ntimeout = 30\n"
                     "[cache]\nenabled = no\n"
                     "[credential main]\ntoken_file = %s\nrate = %g\nburst = %g\n"
                     "[client etl]\nkey_sha256 = %s\ncredential = main\nclass = batch\n"
                     "workspaces = *\ndefault_workspace = ws_test\nmode = full\n"
                     "[client web]\nkey_sha256 = %s\ncredential = main\nclass = interactive\n"
                     "workspaces = *\ndefault_workspace = ws_test\nmode = full\n"
                     "[client capped]\nkey_sha256 = %s\ncredential = main\nclass = batch\n"
                     "workspaces = *\ndefault_workspace = ws_test\nmode = full\nrate = 1\n"
                     "burst = 1\n"
                     "%s\n",
                     e->hg.port, e->admin_port, e->sim.port, tokpath, hg_rate, hg_burst, kb, kw, kc,
                     queue_conf ? queue_conf : "");
    if (n < 0)
        abort();
    int rc = harness_write_file(confpath, conf, 0600);
    free(conf);
    if (rc != 0)
        return -1;
    if (harness_start_hotgate(&e->hg, confpath, NULL) != 0) {
        fprintf(stderr, "hotgate did not start\n");
        harness_dump_log(&e->hg, 40);
        return -1;
    }
    snprintf(e->base, sizeof e->base, "http://127.0.0.1:%d", e->hg.port);
    snprintf(e->admin, sizeof e->admin, "http://127.0.0.1:%d", e->admin_port);
    return 0;
}

static inline void bit_stop(bit_env *e)
{
    /* a crash or a sanitizer report in either process must not go unnoticed */
    int st = harness_stop(&e->hg, 5000);
    if (st != -1 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "hotgate ended badly (status 0x%x):\n", st);
        harness_dump_log(&e->hg, 60);
    }
    st = harness_stop(&e->sim, 5000);
    if (st != -1 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "hotdata-sim ended badly (status 0x%x):\n", st);
        harness_dump_log(&e->sim, 60);
    }
    harness_rmdir(e->dir);
    free(e->dir);
    e->dir = NULL;
}

/* GET url, parsed JSON body or NULL. */
static inline json_t *bit_get_json(const char *url)
{
    hresp r;
    if (http_do("GET", url, NULL, NULL, 0, &r) != 0)
        return NULL;
    json_t *j = r.status == 200 ? json_loadb(r.body, r.len, 0, NULL) : NULL;
    hresp_free(&r);
    return j;
}

/* Sum of integer members named key anywhere in j (the sim's stats layout may nest). */
static inline long long bit_json_sum(const json_t *j, const char *key)
{
    long long s = 0;
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            if (strcmp(k, key) == 0 && json_is_integer(v))
                s += json_integer_value(v);
            else
                s += bit_json_sum(v, key);
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) s += bit_json_sum(v, key);
    }
    return s;
}

typedef struct bit_sim_stats {
    long long requests, r429;
} bit_sim_stats;

static inline int bit_sim_stats_get(const bit_env *e, bit_sim_stats *st)
{
    char url[128];
    snprintf(url, sizeof url, "%s/_sim/stats", e->simurl);
    json_t *j = bit_get_json(url);
    if (!j)
        return -1;
    /* per-token counts (taken after auth, before the rate limit): /v1 traffic only */
    st->requests = bit_json_sum(json_object_get(j, "tokens"), "requests");
    st->r429 = json_integer_value(json_object_get(j, "responses_429"));
    json_decref(j);
    return 0;
}

/* effective_rate of credential main from /admin/budget, -1 on error */
static inline double bit_effective_rate(const bit_env *e, long long *shed)
{
    char url[128];
    snprintf(url, sizeof url, "%s/admin/budget", e->admin);
    json_t *j = bit_get_json(url);
    if (!j)
        return -1;
    json_t *c = json_array_get(json_object_get(j, "credentials"), 0);
    double r = json_number_value(json_object_get(c, "effective_rate"));
    if (shed)
        *shed = json_integer_value(json_object_get(c, "upstream_shed"));
    json_decref(j);
    return r;
}

/* ---- many concurrent queries over curl multi ---- */

typedef struct bit_req {
    CURL *e;
    struct curl_slist *hdrs;
    char body[160];
    long status;
    double t0, t1;
    char retry_after[32];
    char code[32];
    char resp[512];
    size_t resp_len;
} bit_req;

/* Client-side timeout of each transfer in bit_run_queries (ms); 0: 120 s. */
static long bit_timeout_ms;

typedef struct bit_run {
    int n, conc;
    bit_req *r;
    double t_start, t_end;
    int by_status[600];
    int n429, nerr;
} bit_run;

static inline size_t bit_write(char *p, size_t sz, size_t nm, void *ud)
{
    bit_req *q = ud;
    size_t n = sz * nm;
    size_t room = sizeof q->resp - 1 - q->resp_len;
    size_t k = n < room ? n : room;
    memcpy(q->resp + q->resp_len, p, k);
    q->resp_len += k;
    q->resp[q->resp_len] = 0;
    return n;
}

static inline size_t bit_header(char *p, size_t sz, size_t nm, void *ud)
{
    bit_req *q = ud;
    size_t n = sz * nm;
    if (n > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        size_t k = n - 12;
        if (k >= sizeof q->retry_after)
            k = sizeof q->retry_after - 1;
        memcpy(q->retry_after, p + 12, k);
        q->retry_after[k] = 0;
        /* trim */
        char *s = q->retry_after;
        while (*s == ' ')
            memmove(s, s + 1, strlen(s));
        size_t l = strlen(s);
        while (l && (s[l - 1] == '\r' || s[l - 1] == '\n' || s[l - 1] == ' '))
            s[--l] = 0;
    }
    return n;
}

/*
 * POST base/v1/query n times, conc at once, body {"sql":"SELECT <offset+i>"} with key;
 * extra_header may be NULL. Fills run (caller frees run->r).
 */
static inline void bit_run_queries(const char *base, const char *key, int n, int conc, int offset,
                                   const char *extra_header, bit_run *run)
{
    memset(run, 0, sizeof *run);
    run->n = n;
    run->conc = conc;
    run->r = calloc((size_t)n, sizeof *run->r);
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)conc);
    char url[128], auth[128];
    snprintf(url, sizeof url, "%s/v1/query", base);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    int next = 0, running = 0, done = 0;
    run->t_start = bit_now();
    while (done < n) {
        while (running < conc && next < n) {
            bit_req *q = &run->r[next];
            q->e = curl_easy_init();
            snprintf(q->body, sizeof q->body, "{\"sql\":\"SELECT %d\"}", offset + next);
            q->hdrs = curl_slist_append(NULL, auth);
            q->hdrs = curl_slist_append(q->hdrs, "Content-Type: application/json");
            if (extra_header)
                q->hdrs = curl_slist_append(q->hdrs, extra_header);
            curl_easy_setopt(q->e, CURLOPT_URL, url);
            curl_easy_setopt(q->e, CURLOPT_HTTPHEADER, q->hdrs);
            curl_easy_setopt(q->e, CURLOPT_POSTFIELDS, q->body);
            curl_easy_setopt(q->e, CURLOPT_WRITEFUNCTION, bit_write);
            curl_easy_setopt(q->e, CURLOPT_WRITEDATA, q);
            curl_easy_setopt(q->e, CURLOPT_HEADERFUNCTION, bit_header);
            curl_easy_setopt(q->e, CURLOPT_HEADERDATA, q);
            curl_easy_setopt(q->e, CURLOPT_PRIVATE, q);
            curl_easy_setopt(q->e, CURLOPT_TIMEOUT_MS, bit_timeout_ms ? bit_timeout_ms : 120000L);
            curl_easy_setopt(q->e, CURLOPT_NOSIGNAL, 1L);
            q->t0 = bit_now();
            curl_multi_add_handle(m, q->e);
            next++;
            running++;
        }
        int still = 0;
        curl_multi_perform(m, &still);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            bit_req *q = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
            q->t1 = bit_now();
            if (msg->data.result == CURLE_OK) {
                curl_easy_getinfo(q->e, CURLINFO_RESPONSE_CODE, &q->status);
                if (q->status > 0 && q->status < 600)
                    run->by_status[q->status]++;
                if (q->status == 429)
                    run->n429++;
            } else {
                run->nerr++;
            }
            curl_multi_remove_handle(m, q->e);
            curl_easy_cleanup(q->e);
            curl_slist_free_all(q->hdrs);
            q->e = NULL;
            q->hdrs = NULL;
            running--;
            done++;
        }
        if (done < n)
            curl_multi_poll(m, NULL, 0, 50, NULL);
    }
    run->t_end = bit_now();
    curl_multi_cleanup(m);
}

/* One query through hotgate; returns the status, latency in *secs. */
static inline long bit_query(const char *base, const char *key, const char *sql, const char *extra,
                             double *secs, char *retry_after, size_t ralen)
{
    char url[128], auth[128], body[256];
    snprintf(url, sizeof url, "%s/v1/query", base);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    snprintf(body, sizeof body, "{\"sql\":\"%s\"}", sql);
    const char *h[] = {auth, "Content-Type: application/json", extra, NULL};
    hresp r;
    double t0 = bit_now();
    if (http_do("POST", url, h, body, strlen(body), &r) != 0)
        return -1;
    if (secs)
        *secs = bit_now() - t0;
    if (retry_after) {
        char *ra = hresp_header(&r, "Retry-After");
        snprintf(retry_after, ralen, "%s", ra ? ra : "");
        free(ra);
    }
    long st = r.status;
    hresp_free(&r);
    return st;
}

#endif
