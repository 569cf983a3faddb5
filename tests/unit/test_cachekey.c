/*
 * test_cachekey: cache key derivation (src/cachekey.c): every input field matters,
 * workspace and credential isolation, query parameter order does not matter, Accept
 * normalisation, and the WHOLE SQL is keyed (64 KiB+ queries differing only in the last
 * byte get different keys -- the nginx $request_body pitfall).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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
    in.body_extra = "async=1";
    in.body_extra_len = 7;
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
    /* same name twice: value order does not matter either */
    in.query = "x=2&x=1";
    cachekey c = key_of(&in);
    in.query = "x=1&x=2";
    KEQ(c, key_of(&in));
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

    /* the cache hashes sqlkey's canonical form; the canonical form of a long IN list keeps
     * every byte, so hashing the text itself exercises the same path */
    uint8_t h1[32], h2[32];
    cachekey_sql_hash(sql, n, h1);
    cachekey_sql_hash(sql2, n, h2);
    assert_memory_not_equal(h1, h2, 32);
    cachekey_in in = base();
    in.method = "POST";
    in.path = "/v1/query";
    in.sql_hash = h1;
    cachekey a = key_of(&in);
    in.sql_hash = h2;
    cachekey b = key_of(&in);
    KNE(a, b);
    /* the same SQL again: same key */
    uint8_t h3[32];
    cachekey_sql_hash(sql, n, h3);
    in.sql_hash = h3;
    KEQ(a, key_of(&in));
    free(sql);
    free(sql2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic), cmocka_unit_test(test_isolation),
        cmocka_unit_test(test_fields_matter), cmocka_unit_test(test_query_sorted),
        cmocka_unit_test(test_accept),        cmocka_unit_test(test_big_sql_differs_at_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
