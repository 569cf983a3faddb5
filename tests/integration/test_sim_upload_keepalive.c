/*
 * test_sim_upload_keepalive: several POST /v1/files on one keep-alive connection (as hotgate
 * sends them on its pooled upstream connections). Each upload is stored whole and on its own,
 * and the simulator exits cleanly afterwards: under the sanitizer build (HG_SANITIZE) a leak
 * makes the exit status non-zero. Regression: the held request head of every upload but the
 * last of a connection leaked (found by test_oracle under ASan).
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

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

static void test_uploads_on_one_connection(void **state)
{
    (void)state;
    char *dir = harness_tmpdir("upload-ka");
    hproc sim;
    static const char *const extra[] = {"--quiet", "--seed-rows", "10", NULL};
    assert_int_equal(harness_start_sim(&sim, dir, extra), 0);
    char *url = harness_url("http://127.0.0.1:%d/v1/files", sim.port);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Authorization: Bearer tok_test");
    h = curl_slist_append(h, "X-Workspace-Id: ws_test");
    h = curl_slist_append(h, "Content-Type: text/csv");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    char ids[4][128];
    for (int i = 0; i < 4; i++) {
        char data[64];
        snprintf(data, sizeof data, "v,w\n%d,%s\n", i, i % 2 ? "odd" : "even-longer");
        char *body = NULL;
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(data));
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        long status = 0, conns = -1;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &conns);
        assert_int_equal(status, 201);
        assert_int_equal(conns, i == 0 ? 1 : 0); /* the same connection */
        json_t *j = json_loads(body, 0, NULL);
        free(body);
        assert_non_null(j);
        assert_int_equal(json_integer_value(json_object_get(j, "size_bytes")), strlen(data));
        snprintf(ids[i], sizeof ids[i], "%s", json_string_value(json_object_get(j, "id")));
        for (int k = 0; k < i; k++)
            assert_string_not_equal(ids[k], ids[i]);
        json_decref(j);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(url);
    int st = harness_stop(&sim, 10000);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        harness_dump_log(&sim, 40);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    harness_rmdir(dir);
    free(dir);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uploads_on_one_connection),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
