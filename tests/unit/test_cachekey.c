/*
 * test_cachekey: cache key derivation (src/cachekey.c): every input field matters,
 * workspace and credential isolation, query parameters sorted by name only (repeated names keep
 * their order), Accept normalisation, every end-to-end header keyed but the documented list,
 * Vary names and secondary keys, and the WHOLE SQL is keyed (64 KiB+ queries differing only in
 * the last byte get different keys -- the nginx $request_body pitfall).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/http.h>

#include "bodykey.h"
#include "cachekey.h"

static cachekey_in base(void)
{
    cachekey_in in;
    memset(&in, 0, sizeof in);
    in.cred_id = "cred-hash-1";
    in.workspace = "ws_test";
    in.method = "GET";
    in.path = "/v1/connections";
    return in;
}

static cachekey key_of(const cachekey_in *in)
{
    cachekey k;
    cachekey_derive(in, &k);
    return k;
}

#define KEQ(a, b) assert_memory_equal((a).k, (b).k, CACHEKEY_LEN)
#define KNE(a, b) assert_memory_not_equal((a).k, (b).k, CACHEKEY_LEN)

static void test_deterministic(void **state)
{
    (void)state;
    cachekey_in in = base();
    cachekey a = key_of(&in), b = key_of(&in);
    KEQ(a, b);
    char hex[65];
    cachekey_hex(&a, hex);
    assert_int_equal(strlen(hex), 64);
    cachekey c;
    assert_int_equal(cachekey_parse_hex(hex, &c), 0);
    KEQ(a, c);
    assert_int_not_equal(cachekey_parse_hex("zz", &c), 0);
}

static void test_isolation(void **state)
{
    (void)state;
    cachekey_in in = base();
    cachekey a = key_of(&in);
    in.workspace = "ws_other";
    cachekey b = key_of(&in);
    KNE(a, b);
    in = base();
    in.cred_id = "cred-hash-2";
    cachekey c = key_of(&in);
    KNE(a, c);
    in = base();
    in.workspace = NULL; /* absent differs from any workspace, also from "" */
    cachekey d = key_of(&in);
    in.workspace = "";
    cachekey e = key_of(&in);
    KNE(a, d);
    KNE(d, e);
    /* no splicing across field boundaries */
    in = base();
    in.cred_id = "ab";
    in.workspace = "c";
    cachekey f = key_of(&in);
    in.cred_id = "a";
    in.workspace = "bc";
    cachekey g = key_of(&in);
    KNE(f, g);
}

static void test_fields_matter(void **state)
{
    (void)state;
    cachekey_in in = base();
    cachekey a = key_of(&in);
    in.method = "HEAD";
    KNE(a, key_of(&in));
    in = base();
    in.path = "/v1/connections/x";
    KNE(a, key_of(&in));
    in = base();
    in.query = "limit=1";
    KNE(a, key_of(&in));
    in = base();
    in.accept = "application/vnd.apache.arrow.stream";
    KNE(a, key_of(&in));
    in = base();
    uint8_t body[32] = {1};
    in.body = body;
    KNE(a, key_of(&in));
    in = base();
    in.method = "POST"; /* the method itself: a POST never shares with a GET */
    KNE(a, key_of(&in));
}

static void test_query_sorted(void **state)
{
    (void)state;
    cachekey_in in = base();
    in.query = "b=2&a=1&c=3";
    cachekey a = key_of(&in);
    in.query = "a=1&c=3&b=2";
    cachekey b = key_of(&in);
    KEQ(a, b);
    in.query = "a=1&&c=3&b=2&"; /* empty params dropped */
    KEQ(a, key_of(&in));
    in.query = "a=1&c=3&b=3";
    KNE(a, key_of(&in));
    /* same name twice: their order is kept (the upstream may read the first or the last) */
    in.query = "limit=1&limit=3";
    cachekey c = key_of(&in);
    in.query = "limit=3&limit=1";
    KNE(c, key_of(&in));
    in.query = "a=0&limit=1&b=2&limit=3";
    cachekey d = key_of(&in);
    in.query = "limit=1&b=2&limit=3&a=0";
    KEQ(d, key_of(&in));
    char o2[64];
    cachekey_canon_query("x=2&y=0&x=1&x=3", o2, sizeof o2);
    assert_string_equal(o2, "x=2&x=1&x=3&y=0");
    char out[64];
    assert_int_equal(cachekey_canon_query("offset=10&limit=5&format=arrow", out, sizeof out),
                     strlen("format=arrow&limit=5&offset=10"));
    assert_string_equal(out, "format=arrow&limit=5&offset=10");
    /* name ordering compares names first: "a=2" before "ab=1" */
    cachekey_canon_query("ab=1&a=2", out, sizeof out);
    assert_string_equal(out, "a=2&ab=1");
    /* truncated output still reports the full length */
    assert_int_equal(cachekey_canon_query("b=1&a=1", out, 4), 7);
    assert_string_equal(out, "a=1");
}

static void test_accept(void **state)
{
    (void)state;
    cachekey_in in = base();
    cachekey a = key_of(&in);
    in.accept = "*/*";
    KEQ(a, key_of(&in));
    in.accept = "Application/JSON";
    KEQ(a, key_of(&in));
    in.accept = "application/vnd.apache.arrow.stream";
    cachekey b = key_of(&in);
    KNE(a, b);
    in.accept = "application/vnd.apache.arrow.stream ";
    KEQ(b, key_of(&in));
}

static void test_big_sql_differs_at_end(void **state)
{
    (void)state;
    size_t n = 70 * 1024;
    char *sql = malloc(n + 1);
    memcpy(sql, "SELECT 1 AS a", 13);
    for (size_t i = 13; i < n; i++)
        sql[i] = ' ';
    /* pad with a long IN list so canonicalisation keeps the bytes */
    size_t off = 13;
    const char *pre = " FROM t WHERE x IN (";
    memcpy(sql + off, pre, strlen(pre));
    off += strlen(pre);
    while (off + 8 < n) {
        memcpy(sql + off, "1234567,", 8);
        off += 8;
    }
    sql[off++] = '0';
    while (off < n - 1)
        sql[off++] = '0';
    sql[n - 1] = ')';
    sql[n] = '\0';
    char *sql2 = strdup(sql);
    sql2[n - 2] = '1'; /* differs only one byte before the end */

    /* the cache keys the whole body, with the canonical SQL's digest in place of "sql" */
    char *b1 = malloc(n + 32), *b2 = malloc(n + 32);
    int l1 = snprintf(b1, n + 32, "{\"sql\":\"%s\"}", sql);
    int l2 = snprintf(b2, n + 32, "{\"sql\":\"%s\"}", sql2);
    struct bodykey k1, k2, k3;
    bodykey_derive(b1, (size_t)l1, true, &k1, NULL, NULL);
    bodykey_derive(b2, (size_t)l2, true, &k2, NULL, NULL);
    assert_true(k1.query_ok && k1.sql_certain);
    assert_memory_not_equal(k1.digest, k2.digest, 32);
    cachekey_in in = base();
    in.method = "POST";
    in.path = "/v1/query";
    in.body = k1.digest;
    cachekey a = key_of(&in);
    in.body = k2.digest;
    cachekey b = key_of(&in);
    KNE(a, b);
    /* the same SQL again: same key */
    bodykey_derive(b1, (size_t)l1, true, &k3, NULL, NULL);
    in.body = k3.digest;
    KEQ(a, key_of(&in));
    free(b1);
    free(b2);
    free(sql);
    free(sql2);
}

static void test_headers(void **state)
{
    (void)state;
    struct evkeyvalq h;
    TAILQ_INIT(&h);
    cachekey_in in = base();
    in.headers = &h;
    cachekey none = key_of(&in);
    /* the documented list: none of them changes the key */
    const char *ignored[] = {"Host",          "Content-Length",     "Expect",
                             "Authorization", "X-Workspace-Id",     "X-Request-Id",
                             "User-Agent",    "traceparent",        "tracestate",
                             "Accept",        "Accept-Encoding",    "Cache-Control",
                             "Pragma",        "If-None-Match",      "X-Hotgate-Queue-Timeout",
                             "Connection",    "Proxy-Authorization"};
    for (size_t i = 0; i < sizeof ignored / sizeof *ignored; i++) {
        evhttp_add_header(&h, ignored[i], "some value");
        assert_true(cachekey_header_ignored(ignored[i]));
    }
    KEQ(none, key_of(&in));
    evhttp_clear_headers(&h);
    /* every other header joins the key, the database one and unknown ones included */
    assert_false(cachekey_header_ignored("X-Database-Id"));
    assert_false(cachekey_header_ignored("Content-Type"));
    evhttp_add_header(&h, "X-Database-Id", "db_1");
    cachekey db1 = key_of(&in);
    KNE(none, db1);
    evhttp_clear_headers(&h);
    evhttp_add_header(&h, "x-database-id", "db_1"); /* names are case-insensitive */
    KEQ(db1, key_of(&in));
    evhttp_clear_headers(&h);
    evhttp_add_header(&h, "X-Database-Id", "db_2");
    KNE(db1, key_of(&in));
    evhttp_clear_headers(&h);
    evhttp_add_header(&h, "X-Database-Id", "DB_1"); /* values as sent */
    KNE(db1, key_of(&in));
    evhttp_clear_headers(&h);
    /* sorted by name: order between different names does not matter */
    evhttp_add_header(&h, "X-A", "1");
    evhttp_add_header(&h, "X-B", "2");
    cachekey ab = key_of(&in);
    evhttp_clear_headers(&h);
    evhttp_add_header(&h, "X-B", "2");
    evhttp_add_header(&h, "X-A", "1");
    KEQ(ab, key_of(&in));
    evhttp_clear_headers(&h);
    /* repeated names keep their order */
    evhttp_add_header(&h, "X-R", "1");
    evhttp_add_header(&h, "X-R", "2");
    cachekey r12 = key_of(&in);
    evhttp_clear_headers(&h);
    evhttp_add_header(&h, "X-R", "2");
    evhttp_add_header(&h, "X-R", "1");
    KNE(r12, key_of(&in));
    evhttp_clear_headers(&h);
    /* no splicing: name/value boundaries are length-prefixed */
    evhttp_add_header(&h, "X-Ab", "c");
    cachekey s1 = key_of(&in);
    evhttp_clear_headers(&h);
    evhttp_add_header(&h, "X-A", "bc");
    KNE(s1, key_of(&in));
    evhttp_clear_headers(&h);
}

static const char *vals(void *arg, const char *lname, char *buf, size_t cap)
{
    const char *const *kv = arg;
    (void)buf;
    (void)cap;
    for (size_t i = 0; kv[i]; i += 2)
        if (strcmp(kv[i], lname) == 0)
            return kv[i + 1];
    return NULL;
}

static void test_vary(void **state)
{
    (void)state;
    char names[128];
    bool any = false;
    assert_int_equal(cachekey_vary_names(" User-Agent, accept-language ,X-Foo,user-agent", names,
                                         sizeof names, &any),
                     strlen("accept-language,user-agent,x-foo"));
    assert_string_equal(names, "accept-language,user-agent,x-foo");
    assert_false(any);
    cachekey_vary_names("Accept, *", names, sizeof names, &any);
    assert_true(any);
    cachekey_vary_names("bad name", names, sizeof names, &any);
    assert_true(any); /* not a token: treated like * (never stored) */
    assert_int_equal(cachekey_vary_names("", names, sizeof names, &any), 0);
    assert_false(any);

    cachekey p = key_of(&(cachekey_in){.cred_id = "c", .method = "GET", .path = "/v1/x"});
    const char *a[] = {"user-agent", "a", NULL};
    const char *b[] = {"user-agent", "b", NULL};
    const char *none[] = {NULL};
    const char *empty[] = {"user-agent", "", NULL};
    cachekey ka, kb, kn, ke, ka2;
    cachekey_vary(&p, "user-agent", vals, (void *)a, &ka);
    cachekey_vary(&p, "user-agent", vals, (void *)b, &kb);
    cachekey_vary(&p, "user-agent", vals, (void *)none, &kn);
    cachekey_vary(&p, "user-agent", vals, (void *)empty, &ke);
    cachekey_vary(&p, "user-agent", vals, (void *)a, &ka2);
    KNE(ka, kb);
    KNE(kn, ke); /* absent differs from empty */
    KEQ(ka, ka2);
    KNE(ka, p);
    cachekey other = key_of(&(cachekey_in){.cred_id = "c", .method = "GET", .path = "/v1/y"});
    cachekey ko;
    cachekey_vary(&other, "user-agent", vals, (void *)a, &ko);
    KNE(ka, ko);
}

/* the per-thread memo of recent pre-images never mixes two keys up */
static void test_memo_exact(void **state)
{
    (void)state;
    cachekey first[64];
    char paths[64][32];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 64; i++) {
            snprintf(paths[i], sizeof paths[i], "/v1/connections/c%d", i);
            cachekey_in in = base();
            in.path = paths[i];
            cachekey k = key_of(&in);
            if (round == 0)
                first[i] = k;
            else
                KEQ(first[i], k);
            for (int j = 0; j < i && round == 0; j++)
                KNE(first[j], k);
        }
    }
    /* a pre-image too large for the memo is keyed all the same */
    char *q = malloc(5000);
    memset(q, 'a', 4999);
    q[4999] = '\0';
    cachekey_in in = base();
    in.query = q;
    cachekey a = key_of(&in);
    q[4998] = 'b';
    KNE(a, key_of(&in));
    q[4998] = 'a';
    KEQ(a, key_of(&in));
    free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic), cmocka_unit_test(test_isolation),
        cmocka_unit_test(test_fields_matter), cmocka_unit_test(test_query_sorted),
        cmocka_unit_test(test_accept),        cmocka_unit_test(test_big_sql_differs_at_end),
        cmocka_unit_test(test_headers),       cmocka_unit_test(test_vary),
        cmocka_unit_test(test_memo_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
