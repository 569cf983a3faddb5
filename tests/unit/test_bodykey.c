/*
 * test_bodykey: the body's part of the cache key (src/bodykey.c): canonical JSON (member order
 * and whitespace do not matter; numbers, strings, literals as given do), every field keyed,
 * "sql" replaced by its canonical SQL's digest only in a known dialect and when the lexer is
 * certain, exact bytes for what is not strict JSON, duplicates or escaped names, and the query
 * fields the cache acts on (async, async_after_ms, sql_hash of the exact SQL).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bodykey.h"
#include "util.h"

static struct bodykey bk(const char *body, bool query)
{
    struct bodykey k;
    bodykey_derive(body, strlen(body), query, &k, NULL, NULL);
    return k;
}

static bool same(const char *a, const char *b, bool query)
{
    struct bodykey x = bk(a, query), y = bk(b, query);
    return x.kind == y.kind && memcmp(x.digest, y.digest, 32) == 0;
}

static void canon_is(const char *body, const char *want)
{
    size_t n = 0;
    char *c = bodykey_canonical_json(body, strlen(body), &n);
    assert_non_null(c);
    assert_string_equal(c, want);
    assert_int_equal(n, strlen(want));
    free(c);
}

static void test_canonical_json(void **state)
{
    (void)state;
    canon_is(" { \"b\" : 1 ,\n\t\"a\" : [ true , null , \"x y\" ] } ",
             "{\"a\":[true,null,\"x y\"],\"b\":1}");
    canon_is("{\"z\":{\"y\":1,\"x\":2},\"a\":{}}", "{\"a\":{},\"z\":{\"x\":2,\"y\":1}}");
    canon_is("[3,1,2]", "[3,1,2]");         /* arrays keep their order */
    canon_is("1.50e+3", "1.50e+3");         /* numbers as given */
    canon_is("\"\\u0041\"", "\"\\u0041\""); /* strings as given */
    /* formatting and member order share a key */
    assert_true(same("{\"sql\":\"SELECT 1\",\"dialect\":\"duckdb\"}",
                     "{ \"dialect\" : \"duckdb\",\n \"sql\" : \"SELECT 1\" }", true));
    assert_true(same("{\"a\":1,\"b\":2}", "{\"b\":2, \"a\":1}", false));
    /* what is given differently does not */
    assert_false(same("{\"a\":1}", "{\"a\":1.0}", false));
    assert_false(same("{\"a\":\"A\"}", "{\"a\":\"\\u0041\"}", false));
    assert_false(same("{\"a\":[1,2]}", "{\"a\":[2,1]}", false));
    assert_false(same("{\"a\":null}", "{}", false));
    assert_false(same("{\"a\":true}", "{\"a\":\"true\"}", false));
}

static void test_not_canonical(void **state)
{
    (void)state;
    /* not strict JSON, duplicates, escaped names, too deep: the exact bytes */
    const char *raw[] = {
        "{\"a\":1,}",          "{'a':1}",    "{\"a\":1}x",       "{\"a\":1,\"a\":2}",
        "{\"\\u0061\":1}",     "{\"a\":01}", "{\"a\":\"\x01\"}", "{\"a\":\"\xff\"}",
        "{\"a\":\"\\ud800\"}", "\f{}",       "plain text",       "{\"a\":1e}"};
    for (size_t i = 0; i < sizeof raw / sizeof *raw; i++) {
        struct bodykey k = bk(raw[i], false);
        assert_int_equal(k.kind, BODYKEY_RAW);
        assert_null(bodykey_canonical_json(raw[i], strlen(raw[i]), NULL));
    }
    /* exact bytes: one space more is another key, and never a JSON body's key */
    assert_false(same("{'a':1}", "{'a': 1}", false));
    char deep[300];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    deep[200] = '\0';
    assert_int_equal(bk(deep, false).kind, BODYKEY_RAW);
    struct bodykey none;
    bodykey_derive("", 0, true, &none, NULL, NULL);
    assert_int_equal(none.kind, BODYKEY_NONE);
    assert_false(none.query_ok);
}

static void test_query_fields(void **state)
{
    (void)state;
    /* every field is keyed: the inputs of today's API and unknown ones */
    const char *base = "{\"sql\":\"SELECT 1\"}";
    const char *differ[] = {
        "{\"sql\":\"SELECT 1\",\"database_id\":\"db_1\"}",
        "{\"sql\":\"SELECT 1\",\"dialect\":\"snowflake\"}",
        "{\"sql\":\"SELECT 1\",\"default_schema\":\"a\"}",
        "{\"sql\":\"SELECT 1\",\"default_catalog\":\"c\"}",
        "{\"sql\":\"SELECT 1\",\"something_new\":1}",
        "{\"sql\":\"SELECT 1\",\"async\":false}",
        "{\"sql\":\"SELECT 1;\"}",
    };
    for (size_t i = 0; i < sizeof differ / sizeof *differ; i++)
        assert_false(same(base, differ[i], true));
    assert_false(same("{\"sql\":\"SELECT 1\",\"database_id\":\"db_1\"}",
                      "{\"sql\":\"SELECT 1\",\"database_id\":\"db_2\"}", true));
    assert_false(same("{\"sql\":\"SELECT 1\",\"dialect\":\"postgres\"}",
                      "{\"sql\":\"SELECT 1\",\"dialect\":\"duckdb\"}", true));
    /* the SQL by its canonical form: formatting shares, a literal does not */
    assert_true(
        same("{\"sql\":\"SELECT a FROM t\"}", "{\"sql\":\"SELECT a\\n  FROM t -- c\"}", true));
    assert_false(same("{\"sql\":\"SELECT a FROM t WHERE s='x'\"}",
                      "{\"sql\":\"SELECT a FROM t WHERE s='y'\"}", true));
    /* read as a query body */
    struct bodykey k = bk("{\"async\":true,\"async_after_ms\":250,\"sql\":\"SELECT 1\"}", true);
    assert_true(k.query_ok && k.sql_certain && k.async && k.has_async_after_ms);
    assert_int_equal(k.async_after_ms, 250);
    k = bk("{\"sql\":\"SELECT 1\",\"async\":1}", true);
    assert_false(k.query_ok);
    k = bk("{\"sql\":\"SELECT 1\",\"async_after_ms\":1.5}", true);
    assert_false(k.query_ok);
    k = bk("{\"sql\":\"SELECT 1\",\"async_after_ms\":99999999999999999999}", true);
    assert_false(k.query_ok);
    k = bk("{\"sql\":1}", true);
    assert_false(k.query_ok);
    k = bk("[\"sql\"]", true);
    assert_false(k.query_ok);
    /* uncertain SQL, or a dialect the lexer does not know: exact SQL, not certain */
    k = bk("{\"sql\":\"SELECT `k--` FROM t\"}", true);
    assert_true(k.query_ok);
    assert_false(k.sql_certain);
    k = bk("{\"sql\":\"SELECT 1\",\"dialect\":\"mysql\"}", true);
    assert_false(k.sql_certain);
    assert_false(same("{\"sql\":\"SELECT  1\",\"dialect\":\"mysql\"}",
                      "{\"sql\":\"SELECT 1\",\"dialect\":\"mysql\"}", true));
    k = bk("{\"sql\":\"SELECT 1\",\"dialect\":null}", true);
    assert_true(k.sql_certain);
}

static void test_sql_hash_exact(void **state)
{
    (void)state;
    /* sql_hash: SHA-256 of the exact SQL as submitted (JSON escapes decoded) */
    char want[65];
    struct bodykey k = bk("{\"sql\":\"SELECT  'A\\u00e9\\ud83d\\ude00\\n'\"}", true);
    const char *sql = "SELECT  'A\xc3\xa9\xf0\x9f\x98\x80\n'";
    util_sha256_hex(sql, strlen(sql), want);
    assert_string_equal(k.sql_hash, want);
    char *dec = NULL;
    size_t dl = 0;
    const char *b = "{\"sql\":\"SELECT '\\u0000'\"}";
    bodykey_derive(b, strlen(b), true, &k, &dec, &dl);
    assert_non_null(dec);
    assert_int_equal(dl, 10);
    assert_memory_equal(dec, "SELECT '\0'", 10);
    free(dec);
    /* not a query body: no hash */
    k = bk("{\"a\":1}", true);
    assert_string_equal(k.sql_hash, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_json),
        cmocka_unit_test(test_not_canonical),
        cmocka_unit_test(test_query_fields),
        cmocka_unit_test(test_sql_hash_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
