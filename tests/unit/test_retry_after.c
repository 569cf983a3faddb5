/*
 * test_retry_after: Retry-After parsing, both forms, with a pinned wall clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "retry_after.h"

/* Sun, 06 Nov 1994 08:49:37 GMT */
#define T1994 784111777LL
#define CAP 300000u

static uint32_t parse_ok(const char *v, uint64_t now_ms)
{
    uint32_t d = 12345;
    assert_int_equal(retry_after_parse(v, now_ms, CAP, &d), 1);
    return d;
}

static void parse_bad(const char *v)
{
    uint32_t d = 777;
    assert_int_equal(retry_after_parse(v, (uint64_t)T1994 * 1000, CAP, &d), 0);
    assert_int_equal(d, 777); /* untouched */
}

static void test_delta_seconds(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("1", 0), 1000);
    assert_int_equal(parse_ok("0", 0), 0);
    assert_int_equal(parse_ok("120", 0), 120000);
    assert_int_equal(parse_ok("  2  ", 0), 2000);
    assert_int_equal(parse_ok("\t5", 0), 5000);
}

static void test_delta_huge_capped(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("301", 0), CAP);
    assert_int_equal(parse_ok("86400", 0), CAP);
    assert_int_equal(parse_ok("99999999999999999999999999999", 0), CAP);
    uint32_t d = 0;
    assert_int_equal(retry_after_parse("10", 0, 5000, &d), 1);
    assert_int_equal(d, 5000);
}

static void test_negative_is_zero(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("-5", 0), 0);
}

static void test_garbage(void **state)
{
    (void)state;
    parse_bad(NULL);
    parse_bad("");
    parse_bad("   ");
    parse_bad("abc");
    parse_bad("1.5");
    parse_bad("1s");
    parse_bad("0x10");
    parse_bad("+3");
    parse_bad("-");
    parse_bad("5 6");
    parse_bad("Sun, 06 Nov 1994 08:49:37 UTC");  /* must be GMT */
    parse_bad("Sun, 6 Nov 1994 08:49:37 GMT");   /* two-digit day */
    parse_bad("Sun, 06 Nov 94 08:49:37 GMT");    /* four-digit year */
    parse_bad("Sun, 31 Feb 1994 08:49:37 GMT");  /* no such day */
    parse_bad("Sun, 06 Foo 1994 08:49:37 GMT");  /* month */
    parse_bad("Sun, 06 Nov 1994 24:49:37 GMT");  /* hour */
    parse_bad("Sun, 06 Nov 1994 08:49:37 GMTx"); /* trailing */
    parse_bad("Sunday, 06 Nov 1994 08:49:37 GMT");
    parse_bad("Sun Nov 6 08:49:37 1994");
    parse_bad("sun, 06 nov 1994 08:49:37 gmt"); /* case-sensitive grammar */
}

static void test_imf_fixdate(void **state)
{
    (void)state;
    int64_t t = 0;
    assert_int_equal(retry_after_parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", T1994, &t), 1);
    assert_int_equal(t, T1994);
    /* 10 s in the future from a pinned clock (mid-second: 500 ms left of the 10 s) */
    uint64_t now = (uint64_t)(T1994 - 10) * 1000 + 500;
    assert_int_equal(parse_ok("Sun, 06 Nov 1994 08:49:37 GMT", now), 9500);
    /* leap day, year 2000 */
    assert_int_equal(retry_after_parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT", T1994, &t), 1);
    assert_int_equal(t, 951782400LL);
}

static void test_rfc850(void **state)
{
    (void)state;
    int64_t t = 0;
    assert_int_equal(
        retry_after_parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", 1700000000LL, &t), 1);
    assert_int_equal(t, T1994); /* 2094 would be > 50 years ahead of 2023 */
    assert_int_equal(
        retry_after_parse_http_date("Thursday, 01-Jan-26 00:00:00 GMT", 1700000000LL, &t), 1);
    assert_int_equal(t, 1767225600LL);
    uint64_t now = (uint64_t)(T1994 - 3) * 1000;
    assert_int_equal(parse_ok("Sunday, 06-Nov-94 08:49:37 GMT", now), 3000);
}

static void test_asctime(void **state)
{
    (void)state;
    int64_t t = 0;
    assert_int_equal(retry_after_parse_http_date("Sun Nov  6 08:49:37 1994", T1994, &t), 1);
    assert_int_equal(t, T1994);
    assert_int_equal(retry_after_parse_http_date("Wed Nov 16 08:49:37 1994", T1994, &t), 1);
    assert_int_equal(t, T1994 + 10 * 86400);
    uint64_t now = (uint64_t)(T1994 - 2) * 1000;
    assert_int_equal(parse_ok("Sun Nov  6 08:49:37 1994", now), 2000);
}

static void test_past_and_huge_dates(void **state)
{
    (void)state;
    uint64_t now = (uint64_t)(T1994 + 3600) * 1000;
    assert_int_equal(parse_ok("Sun, 06 Nov 1994 08:49:37 GMT", now), 0);
    assert_int_equal(parse_ok("Sun, 06 Nov 1994 08:49:37 GMT", (uint64_t)T1994 * 1000), 0);
    assert_int_equal(parse_ok("Fri, 31 Dec 9999 23:59:59 GMT", now), CAP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delta_seconds),    cmocka_unit_test(test_delta_huge_capped),
        cmocka_unit_test(test_negative_is_zero), cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_imf_fixdate),      cmocka_unit_test(test_rfc850),
        cmocka_unit_test(test_asctime),          cmocka_unit_test(test_past_and_huge_dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
