/*
 * test_gw_stream: bodies flow through hotgate without being held whole. A 1 GiB upload
 * (Content-Length), a 256 MiB chunked upload and a 1 GiB download pass through while
 * hotgate's RSS, sampled every 20 ms with harness_rss_kb(), grows by less than 64 MiB.
 * Upstream: gw_upstream.h (counts the bytes it reads, streams the bytes it sends).
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

#define GIB (1024LL * 1024 * 1024)
#define LIMIT_KB (64 * 1024)

static struct {
    char *dir, *conf;
    hproc hg;
    int admin_port;
} G;

struct sampler {
    pid_t pid;
    atomic_int stop;
    long max_kb;
    pthread_t t;
};

static void *sample(void *arg)
{
    struct sampler *s = arg;
    while (!atomic_load(&s->stop)) {
        long kb = harness_rss_kb(s->pid, 0);
        if (kb > s->max_kb)
            s->max_kb = kb;
        gwu_sleep_ms(20);
    }
    return NULL;
}

struct src {
    long long left;
};

static size_t read_src(char *buf, size_t size, size_t n, void *ud)
{
    struct src *s = ud;
    size_t want = size * n;
    if ((long long)want > s->left)
        want = (size_t)s->left;
    memset(buf, 'u', want);
    s->left -= (long long)want;
    return want;
}

struct sink {
    long long got;
    char head[256];
};

static size_t write_sink(char *buf, size_t size, size_t n, void *ud)
{
    struct sink *s = ud;
    size_t len = size * n;
    if (s->got < (long long)sizeof s->head - 1) {
        size_t c =
            len < sizeof s->head - 1 - (size_t)s->got ? len : sizeof s->head - 1 - (size_t)s->got;
        memcpy(s->head + s->got, buf, c);
    }
    s->got += (long long)len;
    return len;
}

/* One transfer through hotgate; returns the HTTP status. */
static long transfer(const char *method, const char *path, long long upload, int chunked,
                     struct sink *out)
{
    CURL *c = curl_easy_init();
    char *url = harness_url("http://127.0.0.1:%d%s", G.hg.port, path);
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer ck_alice");
    h = curl_slist_append(h, "Expect:");
    h = curl_slist_append(h, "Content-Type: application/octet-stream");
    struct src s = {upload};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 65536L);
    if (upload >= 0) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, read_src);
        curl_easy_setopt(c, CURLOPT_READDATA, &s);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
                         chunked ? (curl_off_t)-1 : (curl_off_t)upload);
    }
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK)
        fprintf(stderr, "transfer %s: %s\n", path, curl_easy_strerror(rc));
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(url);
    return rc == CURLE_OK ? status : -1;
}

static void run_measured(const char *what, const char *method, const char *path, long long upload,
                         int chunked, long long expect_down, long long expect_up)
{
    long base = harness_rss_kb(G.hg.pid, 0);
    struct sampler s = {.pid = G.hg.pid, .max_kb = base};
    pthread_create(&s.t, NULL, sample, &s);
    struct sink out = {0};
    uint64_t t0 = util_mono_ms();
    long st = transfer(method, path, upload, chunked, &out);
    uint64_t ms = util_mono_ms() - t0;
    atomic_store(&s.stop, 1);
    pthread_join(s.t, NULL);
    long grew = s.max_kb - base;
    fprintf(stderr,
            "%s: status %ld, %lld bytes down, %llu ms, RSS %ld KiB -> max %ld KiB (+%ld KiB)\n",
            what, st, out.got, (unsigned long long)ms, base, s.max_kb, grew);
    assert_int_equal(st, 200);
    if (expect_down >= 0)
        assert_true(out.got == expect_down);
    if (expect_up >= 0) {
        char want[64];
        snprintf(want, sizeof want, "{\"bytes\":%lld}", expect_up);
        assert_string_equal(out.head, want);
    }
    assert_true(grew < LIMIT_KB);
}

static void test_upload_1gib(void **state)
{
    run_measured("upload 1 GiB", "POST", "/v1/upload?streaming=true", GIB, 0, -1, GIB);
}

static void test_upload_chunked(void **state)
{
    run_measured("upload 256 MiB chunked", "POST", "/v1/upload", GIB / 4, 1, -1, GIB / 4);
}

static void test_download_1gib(void **state)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/big?n=%lld", GIB);
    run_measured("download 1 GiB", "GET", path, -1, 0, GIB, -1);
}

static int setup(void **state)
{
    if (!gwu_start(0))
        return -1;
    G.dir = harness_tmpdir("gwstream");
    char *url = harness_url("http://127.0.0.1:%d", g_gwu->port);
    int port;
    G.conf = gw_write_conf(G.dir, url, "[upstream]\nhttp2 = no\n", &port, &G.admin_port);
    free(url);
    G.hg.port = port;
    return harness_start_hotgate(&G.hg, G.conf, NULL);
}

static int teardown(void **state)
{
    harness_stop(&G.hg, 10000);
    gwu_stop(g_gwu);
    harness_rmdir(G.dir);
    free(G.dir);
    free(G.conf);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upload_1gib),
        cmocka_unit_test(test_upload_chunked),
        cmocka_unit_test(test_download_1gib),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
