/*
 * test_cache_refresh: the stale-while-revalidate refresh sends the upstream the same request
 * as a foreground fill (issue 11: both are built by upstream_req_from_client from the headers
 * a fill sends).
 *
 * hotgate (cache on, ttl_metadata 1 s, stale_while_revalidate 60 s) in front of
 * gw_upstream.h's echo upstream, which answers with the headers it received. A foreground
 * MISS stores what the upstream saw for it; once the entry is stale, a request is answered
 * STALE and refreshed in the background; the refreshed entry then shows what the upstream saw
 * for the background request: the same header names and values (the credential's token,
 * X-Workspace-Id, the client's end-to-end headers, Accept-Encoding: identity, no
 * If-None-Match), X-Request-Id being the id of the request that triggered the refresh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <jansson.h>
#include <sys/stat.h>

#include "harness.h"
#include "util.h"

#include "gw_upstream.h"

#define KEY "hgk_refresh_0123456789abcdef"

static struct {
    char *dir, *conf;
    hproc hg;
    char base[64];
} G;

static int setup(void **state)
{
    (void)state;
    if (!gwu_start(0))
        return -1;
    G.dir = harness_tmpdir("cacherefresh");
    char tok[600], conf[600], kh[65];
    snprintf(tok, sizeof tok, "%s/token", G.dir);
    snprintf(conf, sizeof conf, "%s/hotgate.conf", G.dir);
    if (harness_write_file(tok, "tok_test\n", 0600))
        return -1;
    util_sha256_hex(KEY, strlen(KEY), kh);
    G.hg.port = harness_free_port();
    char *c = NULL;
    if (asprintf(&c,
                 "[server]\nlisten = 127.0.0.1:%d\nthreads = 2\naccess_log = off\n"
                 "[upstream]\nurl = http://127.0.0.1:%d\nretries = 0\n"
                 "[cache]\nenabled = yes\ndir = %s/cache\nttl_metadata = 1s\n"
                 "stale_while_revalidate = 60s\n"
                 "[credential main]\ntoken_file = %s\n"
                 "[client app]\nkey_sha256 = %s\ncredential = main\nworkspaces = ws_test\n"
                 "default_workspace = ws_test\nmode = full\n",
                 G.hg.port, g_gwu->port, G.dir, tok, kh) < 0)
        return -1;
    int rc = harness_write_file(conf, c, 0600);
    free(c);
    if (rc)
        return -1;
    G.conf = strdup(conf);
    snprintf(G.base, sizeof G.base, "http://127.0.0.1:%d", G.hg.port);
    return harness_start_hotgate(&G.hg, G.conf, NULL);
}

static int teardown(void **state)
{
    (void)state;
    harness_stop(&G.hg, 5000);
    gwu_stop(g_gwu);
    if (!getenv("HG_KEEP_TMP"))
        harness_rmdir(G.dir);
    free(G.dir);
    free(G.conf);
    return 0;
}

/* GET path with the client's headers and X-Request-Id rid; *xcache gets X-Cache. */
static json_t *get(const char *path, const char *rid, char *xcache, size_t cap)
{
    char url[256], ridh[96];
    snprintf(url, sizeof url, "%s%s", G.base, path);
    snprintf(ridh, sizeof ridh, "X-Request-Id: %s", rid);
    const char *h[] = {"Authorization: Bearer " KEY,
                       "X-Trace-Tag: end-to-end-1",
                       "Accept: application/json",
                       "Accept-Encoding: gzip, br",
                       "If-None-Match: \"not-this-one\"",
                       ridh,
                       NULL};
    hresp r;
    assert_int_equal(http_do("GET", url, h, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    char *x = hresp_header(&r, "X-Cache");
    snprintf(xcache, cap, "%s", x ? x : "");
    free(x);
    json_error_t e;
    json_t *o = json_loadb(r.body, r.len, 0, &e);
    hresp_free(&r);
    assert_non_null(o);
    return o;
}

static const char *hv(json_t *echo, const char *name)
{
    return json_string_value(json_object_get(json_object_get(echo, "headers"), name));
}

static void test_refresh_sends_the_foreground_request(void **state)
{
    (void)state;
    const char *path = "/v1/connections?limit=7";
    char xc[32];
    int before = atomic_load(&g_gwu->requests);
    json_t *fg = get(path, "fg-req-1", xc, sizeof xc);
    assert_string_equal(xc, "MISS");
    assert_string_equal(hv(fg, "x-request-id"), "fg-req-1");
    json_t *again = get(path, "fg-req-2", xc, sizeof xc);
    assert_string_equal(xc, "HIT");
    json_decref(again);

    gwu_sleep_ms(1300); /* past ttl_metadata: stale, inside stale_while_revalidate */
    json_t *stale = get(path, "bg-trigger-1", xc, sizeof xc);
    assert_string_equal(xc, "STALE");
    assert_string_equal(hv(stale, "x-request-id"), "fg-req-1"); /* the old answer */
    json_decref(stale);

    /* the refresh runs in the background: wait for the entry it stores */
    json_t *bg = NULL;
    for (int i = 0; i < 100 && !bg; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "poll-%d", i);
        json_t *o = get(path, rid, xc, sizeof xc);
        const char *seen = hv(o, "x-request-id");
        if (strcmp(xc, "HIT") == 0 && seen && strcmp(seen, "bg-trigger-1") == 0)
            bg = o;
        else {
            json_decref(o);
            gwu_sleep_ms(100);
        }
    }
    if (!bg)
        fail_msg("the background refresh stored no entry");
    assert_int_equal(atomic_load(&g_gwu->requests) - before, 2); /* foreground + refresh */

    /* what the upstream saw: the same request but for the request id */
    json_t *fh = json_object_get(fg, "headers"), *bh = json_object_get(bg, "headers");
    assert_int_equal(json_object_size(fh), json_object_size(bh));
    const char *k;
    json_t *v;
    json_object_foreach(fh, k, v)
    {
        if (strcmp(k, "x-request-id") == 0)
            continue;
        const char *b = json_string_value(json_object_get(bh, k));
        if (!b || strcmp(b, json_string_value(v)) != 0)
            fail_msg("header %s: foreground '%s', background '%s'", k, json_string_value(v),
                     b ? b : "(absent)");
    }
    assert_string_equal(hv(bg, "authorization"), "Bearer tok_test"); /* never the client key */
    assert_string_equal(hv(bg, "x-workspace-id"), "ws_test");
    assert_string_equal(hv(bg, "x-trace-tag"), "end-to-end-1");
    assert_string_equal(hv(bg, "accept"), "application/json");
    assert_string_equal(hv(bg, "accept-encoding"), "identity");
    assert_null(hv(bg, "if-none-match"));
    assert_string_equal(json_string_value(json_object_get(bg, "path")), path);
    json_decref(fg);
    json_decref(bg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refresh_sends_the_foreground_request),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
