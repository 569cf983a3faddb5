/*
 * test_util: the one string builder (util_buf) and the one util_xstrdup of src/util.c:
 * appending bytes and formatted text across growth, the NUL terminator, take/clear/free, a
 * NULL copied as "".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "util.h"

static void test_buf_grows_and_terminates(void **state)
{
    struct util_buf b = {0};
    char *empty = util_buf_take(&b);
    assert_string_equal(empty, "");
    free(empty);
    util_buf_put(&b, "ab", 2);
    assert_int_equal(b.len, 2);
    assert_string_equal(b.p, "ab");
    for (int i = 0; i < 1000; i++)
        util_buf_printf(&b, "%d,", i % 10);
    assert_int_equal(b.len, 2 + 2000);
    assert_int_equal(strlen(b.p), b.len);
    assert_true(b.cap > b.len);
    assert_memory_equal(b.p + b.len - 4, "8,9,", 4);
    util_buf_str(&b, "end");
    assert_string_equal(b.p + b.len - 3, "end");
    /* one printf larger than the room */
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    util_buf_printf(&b, "[%s]", big);
    assert_int_equal(b.len, 2 + 2000 + 3 + 5001);
    assert_int_equal(b.p[b.len - 1], ']');
    char *s = util_buf_take(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(strlen(s), 2 + 2000 + 3 + 5001);
    free(s);
}

static void test_buf_clear_keeps_storage(void **state)
{
    struct util_buf b = {0};
    util_buf_str(&b, "Authorization: Bearer secret");
    char *p = b.p;
    size_t cap = b.cap;
    util_buf_clear(&b);
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.p, p);
    assert_int_equal(b.cap, cap);
    assert_null(memmem(b.p, cap, "secret", 6)); /* wiped */
    util_buf_str(&b, "x");
    assert_string_equal(b.p, "x");
    util_buf_free(&b);
    assert_null(b.p);
    util_buf_free(&b); /* twice: no-op */
}

static void test_xstrdup(void **state)
{
    char *a = util_xstrdup("abc");
    assert_string_equal(a, "abc");
    free(a);
    char *n = util_xstrdup(NULL);
    assert_string_equal(n, "");
    free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_grows_and_terminates),
        cmocka_unit_test(test_buf_clear_keeps_storage),
        cmocka_unit_test(test_xstrdup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
