/*
 * test_metrics: the Prometheus text of GET /metrics (metrics.c, and the cache's series from
 * cache_metrics). The scrape is well-formed exposition text: every sample belongs to a family
 * declared by one # TYPE line before it, names are valid metric names, label values are
 * quoted with no raw quote, backslash or newline, values are numbers; histogram buckets are
 * cumulative and end with +Inf = _count. Counters counted on many threads (more threads than
 * shards) add up exactly in the scrape; registered collectors are appended.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <event2/buffer.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "metrics.h"
#include "upstream.h"
#include "req.h"

/* the scrape as a NUL-terminated string */
static char *scrape(void)
{
    struct evbuffer *b = evbuffer_new();
    metrics_render(b);
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    evbuffer_free(b);
    return s;
}

static int name_ok(const char *s, size_t n)
{
    if (!n || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
            return 0;
    return 1;
}

/* The family a sample name belongs to, given the declared types (histogram suffixes). */
static int declared(char types[][128], char kinds[][16], int nt, const char *name, size_t n)
{
    for (int i = 0; i < nt; i++) {
        size_t l = strlen(types[i]);
        if (l == n && memcmp(types[i], name, n) == 0)
            return 1;
        if (strcmp(kinds[i], "histogram") == 0 && n > l && memcmp(types[i], name, l) == 0 &&
            (strncmp(name + l, "_bucket", n - l) == 0 || strncmp(name + l, "_sum", n - l) == 0 ||
             strncmp(name + l, "_count", n - l) == 0))
            return 1;
    }
    return 0;
}

/* Check one label set {a="x",b="y"} at p; returns the end, or NULL. */
static const char *labels_ok(const char *p)
{
    if (*p != '{')
        return p;
    p++;
    while (*p != '}') {
        const char *s = p;
        while (isalnum((unsigned char)*p) || *p == '_')
            p++;
        if (p == s || p[0] != '=' || p[1] != '"')
            return NULL;
        p += 2;
        while (*p != '"') {
            if (!*p || *p == '\n')
                return NULL;
            if (*p == '\\') { /* only \\, \" and \n are valid escapes */
                if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                    return NULL;
                p++;
            }
            p++;
        }
        p++;
        if (*p == ',')
            p++;
        else if (*p != '}')
            return NULL;
    }
    return p + 1;
}

/* Validate the whole exposition text; fails the test at the first bad line. */
static void assert_exposition(const char *text)
{
    static char types[512][128], kinds[512][16];
    int nt = 0;
    const char *line = text;
    while (*line) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl); /* every line ends with a newline */
        size_t len = (size_t)(nl - line);
        char l[1024];
        assert_true(len < sizeof l);
        memcpy(l, line, len);
        l[len] = '\0';
        if (strncmp(l, "# TYPE ", 7) == 0) {
            char name[128], kind[16];
            assert_int_equal(sscanf(l + 7, "%127s %15s", name, kind), 2);
            assert_true(name_ok(name, strlen(name)));
            assert_true(strcmp(kind, "counter") == 0 || strcmp(kind, "gauge") == 0 ||
                        strcmp(kind, "histogram") == 0);
            for (int i = 0; i < nt; i++)
                if (strcmp(types[i], name) == 0)
                    fail_msg("second # TYPE for %s", name);
            assert_true(nt < 512);
            snprintf(types[nt], sizeof types[nt], "%s", name);
            snprintf(kinds[nt++], sizeof kinds[0], "%s", kind);
        } else if (strncmp(l, "# HELP ", 7) == 0) {
            const char *sp = strchr(l + 7, ' ');
            assert_non_null(sp);
            assert_true(name_ok(l + 7, (size_t)(sp - (l + 7))));
        } else {
            assert_true(l[0] != '#' && l[0] != '\0');
            const char *p = l;
            while (isalnum((unsigned char)*p) || *p == '_' || *p == ':')
                p++;
            if (!name_ok(l, (size_t)(p - l)))
                fail_msg("bad metric name: %s", l);
            if (!declared(types, kinds, nt, l, (size_t)(p - l)))
                fail_msg("sample without a # TYPE before it: %s", l);
            p = labels_ok(p);
            if (!p)
                fail_msg("bad labels: %s", l);
            assert_int_equal(*p, ' ');
            char *end;
            strtod(p + 1, &end);
            if (end == p + 1 || *end != '\0')
                fail_msg("bad value: %s", l);
        }
        line = nl + 1;
    }
}

/* The value of the sample named exactly key (with its labels); -1 when absent. */
static double value_of(const char *text, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = text; (p = strstr(p, key)); p += kl)
        if ((p == text || p[-1] == '\n') && p[kl] == ' ')
            return strtod(p + kl + 1, NULL);
    return -1;
}

#define NTHREADS 12 /* more than the 8 shards: some threads share one */
#define PER_THREAD 5000

static void *count_thread(void *arg)
{
    (void)arg;
    struct hg_req req;
    memset(&req, 0, sizeof req);
    req.status = 204;
    req.bytes_out = 3;
    for (int i = 0; i < PER_THREAD; i++) {
        metrics_inc(M_UPSTREAM_RETRIES, 1);
        metrics_gauge_add(G_REQUESTS_INFLIGHT, 1);
        metrics_request_done(&req, 700); /* 0.7 ms */
        metrics_upstream_done(UPSTREAM_TIMEOUT, 0);
        metrics_upstream_done(UPSTREAM_OK, 429);
    }
    for (int i = 0; i < PER_THREAD - 1; i++)
        metrics_gauge_add(G_REQUESTS_INFLIGHT, -1);
    return NULL;
}

static const char *outcome_label(int o)
{
    return upstream_outcome_name((enum upstream_outcome)o);
}

static _Atomic int observed_timeouts;
static void observer(int o)
{
    if (o == UPSTREAM_TIMEOUT)
        observed_timeouts++;
}

static void test_counters_summed_across_shards(void **state)
{
    (void)state;
    metrics_upstream_labels(outcome_label, UPSTREAM_CANCELLED + 1);
    metrics_upstream_observer(observer);
    char *before = scrape();
    double r0 = value_of(before, "hotgate_upstream_retries_total");
    double c0 = value_of(before, "hotgate_request_duration_seconds_count");
    free(before);
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&t[i], NULL, count_thread, NULL);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    char *s = scrape();
    assert_exposition(s);
    double total = (double)NTHREADS * PER_THREAD;
    assert_true(value_of(s, "hotgate_upstream_retries_total") - r0 == total);
    assert_true(value_of(s, "hotgate_requests_inflight") == NTHREADS);
    assert_true(value_of(s, "hotgate_requests_total{code=\"204\"}") == total);
    assert_true(value_of(s, "hotgate_response_body_bytes_total") == 3 * total);
    assert_true(value_of(s, "hotgate_upstream_requests_total{outcome=\"timeout\"}") == total);
    assert_true(value_of(s, "hotgate_upstream_requests_total{outcome=\"ok\"}") == total);
    assert_true(value_of(s, "hotgate_upstream_responses_total{code=\"429\"}") == total);
    assert_int_equal(observed_timeouts, NTHREADS * PER_THREAD); /* every outcome observed */
    /* histogram: 0.7 ms falls in le=0.001, cumulative from there, +Inf = _count */
    double count = value_of(s, "hotgate_request_duration_seconds_count");
    assert_true(count - c0 == total);
    assert_true(value_of(s, "hotgate_request_duration_seconds_bucket{le=\"0.0005\"}") == 0);
    assert_true(value_of(s, "hotgate_request_duration_seconds_bucket{le=\"0.001\"}") == total);
    assert_true(value_of(s, "hotgate_request_duration_seconds_bucket{le=\"10\"}") == total);
    assert_true(value_of(s, "hotgate_request_duration_seconds_bucket{le=\"+Inf\"}") == count);
    double sum = value_of(s, "hotgate_request_duration_seconds_sum");
    assert_true(sum > 0.0007 * total * 0.999 && sum < 0.0007 * total * 1.001);
    free(s);
}

static void extra(struct evbuffer *out, void *arg)
{
    evbuffer_add_printf(out,
                        "# HELP hotgate_test_extra A test series.\n"
                        "# TYPE hotgate_test_extra gauge\n"
                        "hotgate_test_extra{who=\"%s\"} 7\n",
                        (const char *)arg);
}

static void test_collectors_appended(void **state)
{
    (void)state;
    assert_int_equal(metrics_register(extra, "a\\\"b"), 0); /* an escaped label value */
    assert_int_equal(metrics_register(cache_metrics, NULL), 0);
    char *s = scrape();
    assert_exposition(s);
    assert_true(value_of(s, "hotgate_test_extra{who=\"a\\\"b\"}") == 7);
    /* the cache's series (its outcome labels, counters and the flights) */
    assert_true(value_of(s, "hotgate_cache_requests_total{outcome=\"hit\"}") == 0);
    assert_true(value_of(s, "hotgate_cache_stores_total") == 0);
    assert_true(value_of(s, "hotgate_cache_flights") == 0);
    /* registered after the core's series */
    assert_true(strstr(s, "hotgate_test_extra") > strstr(s, "hotgate_upstream_requests_total"));
    free(s);
}

static void test_validator_catches_bad_text(void **state)
{
    (void)state;
    /* the checks above can fail: a raw quote in a label value is caught */
    assert_null(labels_ok("{a=\"x\"y\"} 1"));
    assert_null(labels_ok("{a=\"x\ny\"} 1"));
    assert_null(labels_ok("{a=\"x\\qy\"} 1"));
    assert_non_null(labels_ok("{a=\"x\\\"y\",b=\"\"} 1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validator_catches_bad_text),
        cmocka_unit_test(test_counters_summed_across_shards),
        cmocka_unit_test(test_collectors_appended),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
