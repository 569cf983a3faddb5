/*
 * test_path: the request-target rules of path.h (what may reach the upstream).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "path.h"

static enum path_verdict check(const char *t, char **path, char **query)
{
    const char *why = NULL;
    enum path_verdict v = path_check(t, strlen(t), path, query, &why);
    if (v != PATH_OK)
        assert_non_null(why);
    return v;
}

static void expect(const char *t, enum path_verdict want)
{
    char *p = NULL, *q = NULL;
    enum path_verdict v = check(t, &p, &q);
    if (v != want)
        fail_msg("%s: got %d, want %d", t, v, want);
    free(p);
    free(q);
}

static void test_ok_passthrough(void **state)
{
    char *p, *q;
    assert_int_equal(check("/v1/connections", &p, &q), PATH_OK);
    assert_string_equal(p, "/v1/connections");
    assert_null(q);
    free(p);
    assert_int_equal(check("/v1/results/r1?offset=10&limit=5&format=arrow", &p, &q), PATH_OK);
    assert_string_equal(p, "/v1/results/r1");
    assert_string_equal(q, "offset=10&limit=5&format=arrow");
    free(p);
    free(q);
    /* escapes that are not structural stay encoded, byte for byte */
    assert_int_equal(check("/v1/connections/c1/tables/my%20schema/t%C3%A9/profile", &p, &q),
                     PATH_OK);
    assert_string_equal(p, "/v1/connections/c1/tables/my%20schema/t%C3%A9/profile");
    free(p);
    expect("/v1/", PATH_OK);
    expect("/v1/connections/", PATH_OK);
    expect("/v1/unknown/endpoint", PATH_OK);
    expect("/v1/x?a=/b?c", PATH_OK);
    expect("/v1/a.b/c..d/.e", PATH_OK); /* dots inside names are fine */
}

static void test_not_api_404(void **state)
{
    expect("/", PATH_NOT_FOUND);
    expect("/v1", PATH_NOT_FOUND);
    expect("/v2/connections", PATH_NOT_FOUND);
    expect("/metrics", PATH_NOT_FOUND);
    expect("/V1/connections", PATH_NOT_FOUND);
    expect("/v1x/a", PATH_NOT_FOUND);
}

static void test_traversal_400(void **state)
{
    expect("/v1/../admin", PATH_BAD);
    expect("/v1/./connections", PATH_BAD);
    expect("/v1/connections/..", PATH_BAD);
    expect("/v1/connections/.", PATH_BAD);
    expect("/../v1/connections", PATH_BAD);
    expect("/v1//connections", PATH_BAD);
    expect("//v1/connections", PATH_BAD);
    expect("/v1/a\\..\\b", PATH_BAD);
    expect("/v1\\connections", PATH_BAD);
}

static void test_encoded_structure_400(void **state)
{
    expect("/v1/%2e%2e/admin", PATH_BAD);
    expect("/v1/%2E%2E/admin", PATH_BAD);
    expect("/v1/%2e/x", PATH_BAD);
    expect("/v1%2fconnections", PATH_BAD);
    expect("/v1/a%2Fb", PATH_BAD);
    expect("/v1/a%5cb", PATH_BAD);
    expect("/v1/a%252e", PATH_BAD); /* double encoding */
    expect("/v1/a%00b", PATH_BAD);
    expect("/v1/a%0d%0aX-Evil:%201", PATH_BAD);
    expect("/v1/a%zz", PATH_BAD);
    expect("/v1/a%4", PATH_BAD);
    expect("/v1/a%", PATH_BAD);
    expect("/v1/x?q=%zz", PATH_BAD);
}

/* issue 10: "..;" and overlong UTF-8 dots are ambiguous */
static void test_ambiguous_dots_400(void **state)
{
    (void)state;
    static const char *bad[] = {"/v1/..;/x",       "/v1/a/..;b/x",       "/v1/.;/x",
                                "/v1/a/..;",       "/v1/%c0%ae%c0%ae/x", "/v1/%C0%AE/x",
                                "/v1/%e0%80%ae/x", "/v1/%f0%80%80%ae/x", "/v1/%c1%9c",
                                "/v1/%ff/x",       "/v1/%E0%9F%BF",      NULL};
    for (int i = 0; bad[i]; i++) {
        char *p = NULL, *q = NULL;
        const char *why = NULL;
        assert_int_equal(path_check(bad[i], strlen(bad[i]), &p, &q, &why), PATH_BAD);
        assert_non_null(why);
    }
    /* valid UTF-8 escapes, a ';' that is not after dots, "...;" (a name) pass */
    static const char *ok[] = {"/v1/caf%c3%a9", "/v1/%e0%a0%80", "/v1/%f0%90%80%80", "/v1/a;b/x",
                               "/v1/...;x/y",   "/v1/x..;",      "/v1/%e0",          NULL};
    for (int i = 0; ok[i]; i++) {
        char *p = NULL, *q = NULL;
        assert_int_equal(path_check(ok[i], strlen(ok[i]), &p, &q, NULL), PATH_OK);
        free(p);
        free(q);
    }
    assert_int_equal(path_overlong_utf8("%c0%ae", 6), 1);
    assert_int_equal(path_overlong_utf8("%e0%80%ae", 9), 1);
    assert_int_equal(path_overlong_utf8("%e0%a0%80", 9), 0);
    assert_int_equal(path_overlong_utf8("%41", 3), 0);
}

/* Every 2-, 3- and 4-byte escape sequence that a lenient UTF-8 decoder (one that accepts
 * overlong forms) reads as '.', '/', '\\' or '%' is refused, in a segment of its own and
 * inside a name. */
static void test_overlong_exhaustive(void **state)
{
    (void)state;
    const int targets[] = {'.', '/', '\\', '%'};
    long tried = 0;
    for (int len = 2; len <= 4; len++) {
        int lead_lo = len == 2 ? 0xc0 : len == 3 ? 0xe0 : 0xf0;
        int lead_hi = len == 2 ? 0xdf : len == 3 ? 0xef : 0xf7;
        long ncont = len == 2 ? 64 : len == 3 ? 64 * 64 : 64 * 64 * 64;
        for (int b0 = lead_lo; b0 <= lead_hi; b0++)
            for (long k = 0; k < ncont; k++) {
                int cont[3] = {(int)(k & 63), (int)((k >> 6) & 63), (int)((k >> 12) & 63)};
                unsigned cp = (unsigned)b0 & (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
                for (int i = 0; i < len - 1; i++)
                    cp = cp << 6 | (unsigned)cont[i];
                int hit = 0;
                for (size_t t = 0; t < sizeof targets / sizeof *targets; t++)
                    hit |= cp == (unsigned)targets[t];
                if (!hit)
                    continue;
                char tgt[64];
                int n = snprintf(tgt, sizeof tgt, "/v1/a%%%02x", b0);
                for (int i = 0; i < len - 1; i++)
                    n += snprintf(tgt + n, sizeof tgt - (size_t)n, "%%%02X", 0x80 | cont[i]);
                char *p = NULL, *q = NULL;
                assert_int_equal(path_check(tgt, strlen(tgt), &p, &q, NULL), PATH_BAD);
                tried++;
            }
    }
    /* 4 targets x one overlong form each of 2, 3 and 4 bytes */
    assert_int_equal(tried, 12);
}

static void test_forms_and_chars_400(void **state)
{
    expect("http://evil.example/v1/connections", PATH_BAD);
    expect("https://api.hotdata.dev/v1/connections", PATH_BAD);
    expect("evil.example:443", PATH_BAD);
    expect("*", PATH_BAD);
    expect("", PATH_BAD);
    expect("/v1/a b", PATH_BAD);
    expect("/v1/a\"b", PATH_BAD);
    expect("/v1/a<b>", PATH_BAD);
    expect("/v1/a#frag", PATH_BAD);
    expect("/v1/a?x=1#frag", PATH_BAD);
    expect("/v1/\xc3\xa9", PATH_BAD);
    expect("/v1/a\tb", PATH_BAD);
    expect("/v1/x?a b", PATH_BAD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_passthrough),      cmocka_unit_test(test_not_api_404),
        cmocka_unit_test(test_traversal_400),       cmocka_unit_test(test_encoded_structure_400),
        cmocka_unit_test(test_forms_and_chars_400), cmocka_unit_test(test_ambiguous_dots_400),
        cmocka_unit_test(test_overlong_exhaustive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
