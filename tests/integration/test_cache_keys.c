/*
 * test_cache_keys: the cache never answers one request with another's answer (issue 9).
 *
 * hotgate (cache on) in front of gw_upstream.h's echo upstream, which answers every request
 * with what it received (method, path, headers, body length and hash), so two requests the
 * upstream could tell apart get visibly different answers. For each way two requests can
 * differ -- the X-Database-Id header, the body's database_id, dialect, default_schema, an
 * unknown body field, dialect absent vs given, an unknown X- header, another client --
 * the second answer must be a MISS that the upstream served; formatting-only differences
 * (JSON member order and whitespace, SQL whitespace and comments between clauses) must HIT.
 * Also: backtick/bracket-quoted identifiers are never cached, repeated query parameters keep
 * their order, Accept-Encoding is normalised (the upstream is asked for identity; an encoded
 * answer is not stored), a GET's body is keyed, Vary is honoured (a secondary key; Vary: *
 * is never stored), and sql_hash is logged for hits too.
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

#define KEY_A "hgk_keys_a_0123456789abcdef"
#define KEY_B "hgk_keys_b_0123456789abcdef"

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
    G.dir = harness_tmpdir("cachekeys");
    char ta[600], tb[600], conf[600];
    snprintf(ta, sizeof ta, "%s/token_a", G.dir);
    snprintf(tb, sizeof tb, "%s/token_b", G.dir);
    snprintf(conf, sizeof conf, "%s/hotgate.conf", G.dir);
    if (harness_write_file(ta, "tok_test\n", 0600) || harness_write_file(tb, "tok_other\n", 0600))
        return -1;
    char ka[65], kb[65];
    util_sha256_hex(KEY_A, strlen(KEY_A), ka);
    util_sha256_hex(KEY_B, strlen(KEY_B), kb);
    G.hg.port = harness_free_port();
    int adm = harness_free_port();
    char *c = NULL;
    if (asprintf(&c,
                 "[server]\nlisten = 127.0.0.1:%d\nthreads = 2\naccess_log = %s/access.log\n"
                 "[admin]\nlisten = 127.0.0.1:%d\n"
                 "[upstream]\nurl = http://127.0.0.1:%d\nretries = 0\n"
                 "[cache]\nenabled = yes\ndir = %s/cache\nttl_query = 300s\nttl_metadata = 300s\n"
                 "[credential a]\ntoken_file = %s\n[credential b]\ntoken_file = %s\n"
                 "[client a]\nkey_sha256 = %s\ncredential = a\nworkspaces = ws_test\n"
                 "default_workspace = ws_test\nmode = full\n"
                 "[client b]\nkey_sha256 = %s\ncredential = b\nworkspaces = ws_other\n"
                 "default_workspace = ws_other\nmode = full\n",
                 G.hg.port, G.dir, adm, g_gwu->port, G.dir, ta, tb, ka, kb) < 0)
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

/* One request through hotgate; h: extra header lines (NULL-terminated, may be NULL). */
static hresp req(const char *key, const char *method, const char *path, const char *body,
                 const char *const *h)
{
    char auth[128], url[1024];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    snprintf(url, sizeof url, "%s%s", G.base, path);
    const char *hv[16];
    int n = 0;
    hv[n++] = auth;
    if (body)
        hv[n++] = "Content-Type: application/json";
    for (int i = 0; h && h[i] && n < 15; i++)
        hv[n++] = h[i];
    hv[n] = NULL;
    hresp r;
    assert_int_equal(http_do(method, url, hv, body, body ? strlen(body) : 0, &r), 0);
    return r;
}

static const char *xc(const hresp *r)
{
    static char buf[4][64];
    static int k;
    char *v = hresp_header(r, "X-Cache");
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s", v ? v : "");
    free(v);
    return buf[k];
}

static int upstream_requests(void)
{
    return atomic_load(&g_gwu->requests);
}

/*
 * Send a then b (same client): a is cached first (sent twice: MISS then HIT), then b must be
 * a MISS the upstream answered, and must not carry a's answer.
 */
static void assert_separate(const char *method, const char *path_a, const char *body_a,
                            const char *const *h_a, const char *path_b, const char *body_b,
                            const char *const *h_b)
{
    hresp a1 = req(KEY_A, method, path_a, body_a, h_a);
    assert_int_equal(a1.status, 200);
    hresp a2 = req(KEY_A, method, path_a, body_a, h_a);
    assert_string_equal(xc(&a2), "HIT"); /* the first answer is in the cache */
    int before = upstream_requests();
    hresp b = req(KEY_A, method, path_b, body_b, h_b);
    assert_int_equal(b.status, 200);
    assert_string_equal(xc(&b), "MISS");
    assert_int_equal(upstream_requests(), before + 1);
    assert_false(b.len == a1.len && memcmp(b.body, a1.body, a1.len) == 0);
    hresp_free(&a1);
    hresp_free(&a2);
    hresp_free(&b);
}

/* ---- the table of issue 9: every second answer a MISS ---- */

static void test_database_header(void **state)
{
    (void)state;
    const char *h1[] = {"X-Database-Id: db_1", NULL}, *h2[] = {"X-Database-Id: db_2", NULL};
    const char *body = "{\"sql\":\"SELECT 1 AS row_db_header\"}";
    assert_separate("POST", "/v1/query", body, h1, "/v1/query", body, h2);
}

static void test_body_database_id(void **state)
{
    (void)state;
    assert_separate("POST", "/v1/query",
                    "{\"sql\":\"SELECT 1 AS row_db\",\"database_id\":\"db_1\"}", NULL, "/v1/query",
                    "{\"sql\":\"SELECT 1 AS row_db\",\"database_id\":\"db_2\"}", NULL);
}

static void test_dialect(void **state)
{
    (void)state;
    assert_separate(
        "POST", "/v1/query", "{\"sql\":\"SELECT 1 AS row_dialect\",\"dialect\":\"postgres\"}", NULL,
        "/v1/query", "{\"sql\":\"SELECT 1 AS row_dialect\",\"dialect\":\"duckdb\"}", NULL);
}

static void test_default_schema(void **state)
{
    (void)state;
    assert_separate(
        "POST", "/v1/query", "{\"sql\":\"SELECT 1 AS row_schema\",\"default_schema\":\"a\"}", NULL,
        "/v1/query", "{\"sql\":\"SELECT 1 AS row_schema\",\"default_schema\":\"b\"}", NULL);
}

static void test_unknown_body_field(void **state)
{
    (void)state;
    assert_separate("POST", "/v1/query", "{\"sql\":\"SELECT 1 AS row_unknown\",\"zz_new\":1}", NULL,
                    "/v1/query", "{\"sql\":\"SELECT 1 AS row_unknown\",\"zz_new\":2}", NULL);
}

static void test_no_dialect_vs_snowflake(void **state)
{
    (void)state;
    assert_separate("POST", "/v1/query", "{\"sql\":\"SELECT 1 AS row_nodialect\"}", NULL,
                    "/v1/query",
                    "{\"sql\":\"SELECT 1 AS row_nodialect\",\"dialect\":\"snowflake\"}", NULL);
}

static void test_unknown_x_header(void **state)
{
    (void)state;
    const char *h1[] = {"X-Future-Thing: 1", NULL}, *h2[] = {"X-Future-Thing: 2", NULL};
    const char *body = "{\"sql\":\"SELECT 1 AS row_xheader\"}";
    assert_separate("POST", "/v1/query", body, h1, "/v1/query", body, h2);
    /* on a metadata GET too */
    assert_separate("GET", "/v1/connections?t=xh", NULL, h1, "/v1/connections?t=xh", NULL, h2);
}

static void test_other_client(void **state)
{
    (void)state;
    const char *body = "{\"sql\":\"SELECT 1 AS row_client\"}";
    hresp a1 = req(KEY_A, "POST", "/v1/query", body, NULL);
    hresp a2 = req(KEY_A, "POST", "/v1/query", body, NULL);
    assert_string_equal(xc(&a2), "HIT");
    hresp b = req(KEY_B, "POST", "/v1/query", body, NULL);
    assert_int_equal(b.status, 200);
    assert_string_equal(xc(&b), "MISS");
    assert_non_null(strstr(b.body, "ws_other"));
    hresp_free(&a1);
    hresp_free(&a2);
    hresp_free(&b);
}

static void test_saved_query_execute_body(void **state)
{
    (void)state;
    /* the same rule on every cacheable route: a saved query's execute keys its body too */
    assert_separate("POST", "/v1/queries/sq_keys/execute", "{\"limit\":1}", NULL,
                    "/v1/queries/sq_keys/execute", "{\"limit\":2}", NULL);
    const char *db[] = {"X-Database-Id: db_9", NULL};
    assert_separate("POST", "/v1/queries/sq_keys2/execute", "", NULL,
                    "/v1/queries/sq_keys2/execute", "", db);
}

/* ---- formatting only: HIT ---- */

static void test_formatting_hits(void **state)
{
    (void)state;
    const char *a = "{\"sql\":\"SELECT id FROM demo.public.orders WHERE id < 3\","
                    "\"dialect\":\"duckdb\",\"default_schema\":\"public\"}";
    const char *b = " {\n  \"default_schema\" : \"public\",\n  \"dialect\": \"duckdb\",\n"
                    "  \"sql\": \"SELECT id\\n  FROM demo.public.orders -- the orders\\n"
                    "  WHERE   id < 3\"\n} ";
    hresp r1 = req(KEY_A, "POST", "/v1/query", a, NULL);
    assert_string_equal(xc(&r1), "MISS");
    int before = upstream_requests();
    hresp r2 = req(KEY_A, "POST", "/v1/query", b, NULL);
    assert_string_equal(xc(&r2), "HIT");
    assert_int_equal(upstream_requests(), before);
    assert_int_equal(r1.len, r2.len);
    /* headers the documented list leaves out do not split the entry either */
    const char *h[] = {"User-Agent: other/1.0", "traceparent: 00-abc-def-01",
                       "X-Request-Id: my-own-id", "Accept: application/json", NULL};
    hresp r3 = req(KEY_A, "POST", "/v1/query", a, h);
    assert_string_equal(xc(&r3), "HIT");
    /* but whitespace inside a select-list item names the column: not formatting */
    hresp r4 = req(KEY_A, "POST", "/v1/query",
                   "{\"sql\":\"SELECT id  FROM demo.public.orders WHERE id < 3\","
                   "\"dialect\":\"duckdb\",\"default_schema\":\"public\"}",
                   NULL);
    assert_string_equal(xc(&r4), "HIT"); /* between the item and FROM: formatting */
    hresp r5 = req(KEY_A, "POST", "/v1/query", "{\"sql\":\"SELECT 1  +  1 AS two_ws\"}", NULL);
    hresp r6 = req(KEY_A, "POST", "/v1/query", "{\"sql\":\"SELECT 1 + 1 AS two_ws\"}", NULL);
    assert_string_equal(xc(&r6), "MISS");
    hresp_free(&r1);
    hresp_free(&r2);
    hresp_free(&r3);
    hresp_free(&r4);
    hresp_free(&r5);
    hresp_free(&r6);
}

/* ---- four more ways (issue 9) ---- */

static void test_backtick_bracket_never_cached(void **state)
{
    (void)state;
    const char *sqls[] = {
        "{\"sql\":\"SELECT id AS `k--` FROM t WHERE status='delivered'\"}",
        "{\"sql\":\"SELECT id AS `k--` FROM t WHERE status='shipped'\"}",
        "{\"sql\":\"SELECT id AS [x--] FROM t WHERE status='delivered'\"}",
        "{\"sql\":\"SELECT id AS [x--] FROM t WHERE status='shipped'\"}",
        "{\"sql\":\"SELECT `a  b`, random() FROM t\"}",
    };
    for (size_t i = 0; i < sizeof sqls / sizeof *sqls; i++) {
        for (int rep = 0; rep < 2; rep++) {
            int before = upstream_requests();
            hresp r = req(KEY_A, "POST", "/v1/query", sqls[i], NULL);
            assert_int_equal(r.status, 200);
            assert_string_equal(xc(&r), "BYPASS");
            assert_int_equal(upstream_requests(), before + 1);
            hresp_free(&r);
        }
    }
}

static void test_repeated_params_order(void **state)
{
    (void)state;
    assert_separate("GET", "/v1/connections?limit=1&limit=3", NULL, NULL,
                    "/v1/connections?limit=3&limit=1", NULL, NULL);
    /* other names still sort: a different order of different names is the same request */
    hresp r = req(KEY_A, "GET", "/v1/connections?x=1&limit=1&limit=3", NULL, NULL);
    hresp r2 = req(KEY_A, "GET", "/v1/connections?limit=1&limit=3&x=1", NULL, NULL);
    assert_string_equal(xc(&r2), "HIT");
    hresp_free(&r);
    hresp_free(&r2);
}

static void test_accept_encoding(void **state)
{
    (void)state;
    const char *gz[] = {"Accept-Encoding: gzip", NULL};
    /* the upstream answers gzip to whoever asks for it; hotgate asks for identity */
    hresp r1 = req(KEY_A, "GET", "/v1/connections?vary=Accept-Encoding&ce=gzip", NULL, gz);
    assert_string_equal(xc(&r1), "MISS");
    char *ce = hresp_header(&r1, "Content-Encoding");
    assert_null(ce);
    assert_non_null(strstr(r1.body, "\"accept-encoding\":\"identity\""));
    hresp r2 = req(KEY_A, "GET", "/v1/connections?vary=Accept-Encoding&ce=gzip", NULL, NULL);
    assert_string_equal(xc(&r2), "HIT");
    ce = hresp_header(&r2, "Content-Encoding");
    assert_null(ce);
    char *vary = hresp_header(&r2, "Vary");
    assert_non_null(vary); /* kept on the stored answer */
    assert_string_equal(vary, "Accept-Encoding");
    free(vary);
    /* an upstream that encodes anyway: passed on, never stored */
    hresp f1 = req(KEY_A, "GET", "/v1/connections?ce=force", NULL, gz);
    ce = hresp_header(&f1, "Content-Encoding");
    assert_non_null(ce);
    free(ce);
    int before = upstream_requests();
    hresp f2 = req(KEY_A, "GET", "/v1/connections?ce=force", NULL, NULL);
    assert_string_equal(xc(&f2), "MISS");
    assert_int_equal(upstream_requests(), before + 1);
    /* a client that refuses identity is not answered from the cache */
    const char *noid[] = {"Accept-Encoding: gzip, identity;q=0", NULL};
    hresp n1 = req(KEY_A, "GET", "/v1/connections?vary=Accept-Encoding&ce=gzip", NULL, noid);
    assert_string_equal(xc(&n1), "BYPASS");
    hresp_free(&r1);
    hresp_free(&r2);
    hresp_free(&f1);
    hresp_free(&f2);
    hresp_free(&n1);
}

static void test_get_body_keyed(void **state)
{
    (void)state;
    assert_separate("GET", "/v1/connections?t=getbody", "{\"a\":1}", NULL,
                    "/v1/connections?t=getbody", "{\"a\":2}", NULL);
    /* canonical JSON: the same body formatted otherwise shares the entry */
    hresp r = req(KEY_A, "GET", "/v1/connections?t=getbody", "{ \"a\" : 1 }", NULL);
    assert_string_equal(xc(&r), "HIT");
    /* and a body is not no body */
    hresp n = req(KEY_A, "GET", "/v1/connections?t=getbody", NULL, NULL);
    assert_string_equal(xc(&n), "MISS");
    hresp_free(&r);
    hresp_free(&n);
}

/* ---- Vary ---- */

static void test_vary_separates(void **state)
{
    (void)state;
    /* Vary: X-Foo (an unknown header: already keyed) */
    const char *f1[] = {"X-Foo: 1", NULL}, *f2[] = {"X-Foo: 2", NULL};
    assert_separate("GET", "/v1/connections?vary=X-Foo", NULL, f1, "/v1/connections?vary=X-Foo",
                    NULL, f2);
    /* Vary: User-Agent (a header the primary key leaves out): a secondary key */
    const char *ua[] = {"User-Agent: agent-a", NULL}, *ub[] = {"User-Agent: agent-b", NULL};
    assert_separate("GET", "/v1/connections?vary=User-Agent", NULL, ua,
                    "/v1/connections?vary=User-Agent", NULL, ub);
    /* both variants are kept */
    hresp a = req(KEY_A, "GET", "/v1/connections?vary=User-Agent", NULL, ua);
    hresp b = req(KEY_A, "GET", "/v1/connections?vary=User-Agent", NULL, ub);
    assert_string_equal(xc(&a), "HIT");
    assert_string_equal(xc(&b), "HIT");
    assert_non_null(strstr(a.body, "agent-a"));
    assert_non_null(strstr(b.body, "agent-b"));
    /* without the header: a third variant */
    hresp c = req(KEY_A, "GET", "/v1/connections?vary=User-Agent", NULL, NULL);
    assert_string_equal(xc(&c), "MISS");
    hresp_free(&a);
    hresp_free(&b);
    hresp_free(&c);
}

static void test_vary_star_not_stored(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        int before = upstream_requests();
        hresp r = req(KEY_A, "GET", "/v1/connections?vary=*", NULL, NULL);
        assert_int_equal(r.status, 200);
        assert_string_equal(xc(&r), "MISS");
        assert_int_equal(upstream_requests(), before + 1);
        hresp_free(&r);
    }
}

/* ---- sql_hash in the access log, for hits too ---- */

static void test_sql_hash_logged_on_hit(void **state)
{
    (void)state;
    const char *sql = "SELECT 'h\\u00e9' AS logged";
    const char *exact = "SELECT 'h\xc3\xa9' AS logged";
    char body[128], want[65];
    snprintf(body, sizeof body, "{\"sql\":\"%s\"}", sql);
    util_sha256_hex(exact, strlen(exact), want);
    hresp r1 = req(KEY_A, "POST", "/v1/query", body, NULL);
    hresp r2 = req(KEY_A, "POST", "/v1/query", body, NULL);
    assert_string_equal(xc(&r2), "HIT");
    hresp_free(&r1);
    hresp_free(&r2);
    char path[700];
    snprintf(path, sizeof path, "%s/access.log", G.dir);
    int found = 0;
    for (int tries = 0; tries < 50 && found < 2; tries++) {
        found = 0;
        FILE *f = fopen(path, "r");
        char line[4096];
        while (f && fgets(line, sizeof line, f))
            if (strstr(line, want))
                found++;
        if (f)
            fclose(f);
        if (found < 2)
            gwu_sleep_ms(100);
    }
    assert_int_equal(found, 2); /* the miss and the hit */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_database_header),
        cmocka_unit_test(test_body_database_id),
        cmocka_unit_test(test_dialect),
        cmocka_unit_test(test_default_schema),
        cmocka_unit_test(test_unknown_body_field),
        cmocka_unit_test(test_no_dialect_vs_snowflake),
        cmocka_unit_test(test_unknown_x_header),
        cmocka_unit_test(test_other_client),
        cmocka_unit_test(test_saved_query_execute_body),
        cmocka_unit_test(test_formatting_hits),
        cmocka_unit_test(test_backtick_bracket_never_cached),
        cmocka_unit_test(test_repeated_params_order),
        cmocka_unit_test(test_accept_encoding),
        cmocka_unit_test(test_get_body_keyed),
        cmocka_unit_test(test_vary_separates),
        cmocka_unit_test(test_vary_star_not_stored),
        cmocka_unit_test(test_sql_hash_logged_on_hit),
    };
    return cmocka_run_group_tests_name("cache keys", tests, setup, teardown);
}
