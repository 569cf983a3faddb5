/*
 * test_sim_upload_big: POST /v1/files streams the body to disk as it arrives. A 1 GiB body,
 * produced by a curl read callback (never allocated here either), must upload with the
 * simulator's resident set sampled during the transfer staying under 100 MiB, and arrive
 * intact (size_bytes, listed by GET /v1/files, the stored bytes compared with the generator).
 * A declared body over the 2 GB limit is refused with an API-shaped 413 before any of it is
 * sent (Expect: 100-continue; the chunked over-limit case is in test_sim_wire.c, against a
 * low --max-upload-bytes).
 */
#include "sim_api.h"

#include <stdbool.h>

#include <curl/curl.h>

#define BIG_BYTES (1024LL * 1024 * 1024)
#define RSS_LIMIT_KB (100L * 1024)

struct gen {
    long long total, sent;
    long max_rss_kb;
    int samples;
    pid_t pid;
};

/* A CSV: header, then rows "<n>,<padding>\n" of 64 bytes each; the tail is spaces. */
static size_t gen_read(char *buf, size_t size, size_t nitems, void *ud)
{
    struct gen *g = ud;
    size_t cap = size * nitems;
    long long left = g->total - g->sent;
    if (left <= 0)
        return 0;
    size_t n = cap < (size_t)left ? cap : (size_t)left;
    for (size_t i = 0; i < n; i++) {
        long long off = g->sent + (long long)i;
        static const char header[] = "n,pad\n";
        if (off < (long long)sizeof header - 1) {
            buf[i] = header[off];
            continue;
        }
        long long row_off = (off - (long long)(sizeof header - 1)) % 64;
        buf[i] = row_off == 63 ? '\n' : row_off == 0 ? '7' : row_off == 1 ? ',' : 'x';
    }
    g->sent += (long long)n;
    return n;
}

static int gen_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                        curl_off_t ulnow)
{
    struct gen *g = ud;
    long kb = harness_rss_kb(g->pid, 0);
    if (kb > g->max_rss_kb)
        g->max_rss_kb = kb;
    g->samples++;
    return 0;
}

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    char **out = ud;
    size_t old = *out ? strlen(*out) : 0;
    char *b = realloc(*out, old + s * n + 1);
    assert_non_null(b);
    memcpy(b + old, p, s * n);
    b[old + s * n] = '\0';
    *out = b;
    return s * n;
}

static long upload_generated(const char *query, long long bytes, bool expect100, struct gen *g,
                             char **body)
{
    CURL *c = curl_easy_init();
    char *url = harness_url("http://127.0.0.1:%d/v1/files%s", sim_api_proc.port, query);
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Authorization: Bearer tok_test");
    h = curl_slist_append(h, "X-Workspace-Id: ws_test");
    h = curl_slist_append(h, "Content-Type: text/csv");
    h = curl_slist_append(h, expect100 ? "Expect: 100-continue" : "Expect:");
    memset(g, 0, sizeof *g);
    g->total = bytes;
    g->pid = sim_api_proc.pid;
    *body = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, gen_read);
    curl_easy_setopt(c, CURLOPT_READDATA, g);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)bytes);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, gen_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, g);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 500L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK)
        fprintf(stderr, "upload: %s (status %ld)\n", curl_easy_strerror(rc), status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(url);
    return status;
}

static void test_one_gib_streamed_upload(void **state)
{
    struct gen g;
    char *body = NULL;
    long status = upload_generated("", BIG_BYTES, false, &g, &body);
    fprintf(stderr, "1 GiB upload: status %ld, %d RSS samples, max RSS %ld KiB\n", status,
            g.samples, g.max_rss_kb);
    if (status != 201)
        harness_dump_log(&sim_api_proc, 20);
    assert_int_equal(status, 201);
    assert_int_equal(g.sent, BIG_BYTES);
    assert_true(g.samples > 10);
    assert_true(g.max_rss_kb > 0);
    assert_true(g.max_rss_kb < RSS_LIMIT_KB);
    json_t *j = json_loads(body, 0, NULL);
    free(body);
    assert_non_null(j);
    assert_int_equal(sim_api_int(j, "size_bytes"), BIG_BYTES);
    assert_string_equal(sim_api_str(j, "content_type"), "text/csv");
    assert_string_equal(sim_api_str(j, "status"), "uploaded");
    char id[128];
    snprintf(id, sizeof id, "%s", sim_api_str(j, "id"));
    json_decref(j);

    /* listed, and still no growth after the transfer */
    j = sim_api_expect("GET", "/v1/files?status=uploaded", NULL, 200);
    int found = 0;
    json_t *list = json_object_get(j, "uploads");
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *u = json_array_get(list, i);
        if (strcmp(sim_api_str(u, "id"), id) == 0) {
            found = 1;
            assert_int_equal(sim_api_int(u, "size_bytes"), BIG_BYTES);
        }
    }
    assert_true(found);
    json_decref(j);
    assert_true(harness_rss_kb(sim_api_proc.pid, 0) < RSS_LIMIT_KB);

    /* the bytes arrived intact: the stored file is exactly what was generated */
    char path[1024];
    snprintf(path, sizeof path, "%s/sim-data/uploads/%s", sim_api_dir, id);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct gen check = {.total = BIG_BYTES};
    static char want[1 << 16], got[1 << 16];
    long long total = 0;
    for (;;) {
        size_t n = fread(got, 1, sizeof got, f);
        if (n == 0)
            break;
        size_t w = gen_read(want, 1, n, &check);
        assert_int_equal(w, n);
        assert_memory_equal(want, got, n);
        total += (long long)n;
    }
    fclose(f);
    assert_int_equal(total, BIG_BYTES);
    unlink(path);
}

static void test_over_limit_is_413(void **state)
{
    /* Declared 2 GB + 1: refused from the head, API-shaped; with Expect: 100-continue the
     * client never sends a body byte */
    struct gen g;
    char *body = NULL;
    long status = upload_generated("", 2000000001LL, true, &g, &body);
    fprintf(stderr, "over-limit upload: status %ld after %lld bytes sent\n", status, g.sent);
    assert_int_equal(status, 413);
    assert_int_equal(g.sent, 0);
    json_t *j = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    assert_non_null(j);
    assert_int_equal(sim_api_int(j, "status"), 413);
    assert_true(json_is_string(json_object_get(json_object_get(j, "error"), "message")));
    json_decref(j);
    assert_true(harness_rss_kb(sim_api_proc.pid, 0) < RSS_LIMIT_KB);
}

static void test_bad_streaming_flag(void **state)
{
    struct gen g;
    char *body = NULL;
    long status = upload_generated("?streaming=perhaps", 10, false, &g, &body);
    free(body);
    assert_int_equal(status, 400);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_gib_streamed_upload),
        cmocka_unit_test(test_over_limit_is_413),
        cmocka_unit_test(test_bad_streaming_flag),
    };
    int rc = cmocka_run_group_tests(tests, sim_api_start, sim_api_stop);
    curl_global_cleanup();
    return rc;
}
