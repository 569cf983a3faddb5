/*
 * test_sim_tabular: dataset helpers in sim/ds_parse.c: label -> table name, identifier
 * checks, value type inference and widening, and the streaming CSV reader (quotes, escaped
 * quotes, embedded newlines, CRLF, BOM, malformed input).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sim_res.h"

static void test_table_name_from_label(void **state)
{
    struct {
        const char *label, *want;
    } cases[] = {
        {"Sales Data", "sales_data"}, {"sales-2024 (Q1)", "sales_2024__q1_"},
        {"already_ok", "already_ok"}, {"MiXeD", "mixed"},
        {"caf\xc3\xa9", "caf__"},     {"", "dataset"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = sim_ds_table_name_from_label(cases[i].label);
        assert_string_equal(got, cases[i].want);
        free(got);
    }
    char *got = sim_ds_table_name_from_label(NULL);
    assert_string_equal(got, "dataset");
    free(got);
}

static void test_valid_ident(void **state)
{
    assert_true(sim_ds_valid_ident("sales_data"));
    assert_true(sim_ds_valid_ident("_x1"));
    assert_false(sim_ds_valid_ident("1abc"));
    assert_false(sim_ds_valid_ident("a-b"));
    assert_false(sim_ds_valid_ident(""));
    assert_false(sim_ds_valid_ident(NULL));
    assert_false(sim_ds_valid_ident("a\"b"));
}

static void test_value_types(void **state)
{
    assert_int_equal(sim_ds_value_type(""), SIM_DS_NULL);
    assert_int_equal(sim_ds_value_type(NULL), SIM_DS_NULL);
    assert_int_equal(sim_ds_value_type("42"), SIM_DS_INT);
    assert_int_equal(sim_ds_value_type("-7"), SIM_DS_INT);
    assert_int_equal(sim_ds_value_type("3.5"), SIM_DS_FLOAT);
    assert_int_equal(sim_ds_value_type("1e3"), SIM_DS_FLOAT);
    assert_int_equal(sim_ds_value_type("TRUE"), SIM_DS_BOOL);
    assert_int_equal(sim_ds_value_type("false"), SIM_DS_BOOL);
    assert_int_equal(sim_ds_value_type("abc"), SIM_DS_TEXT);
    assert_int_equal(sim_ds_value_type(" 42"), SIM_DS_TEXT);
    assert_int_equal(sim_ds_value_type("0x10"), SIM_DS_TEXT);
    assert_int_equal(sim_ds_value_type("nan"), SIM_DS_TEXT);
    assert_int_equal(sim_ds_value_type("inf"), SIM_DS_TEXT);
    assert_int_equal(sim_ds_value_type("99999999999999999999999"), SIM_DS_FLOAT);
    assert_int_equal(sim_ds_type_merge(SIM_DS_NULL, SIM_DS_INT), SIM_DS_INT);
    assert_int_equal(sim_ds_type_merge(SIM_DS_INT, SIM_DS_NULL), SIM_DS_INT);
    assert_int_equal(sim_ds_type_merge(SIM_DS_INT, SIM_DS_FLOAT), SIM_DS_FLOAT);
    assert_int_equal(sim_ds_type_merge(SIM_DS_INT, SIM_DS_BOOL), SIM_DS_TEXT);
    assert_int_equal(sim_ds_type_merge(SIM_DS_TEXT, SIM_DS_INT), SIM_DS_TEXT);
    assert_string_equal(sim_ds_type_name(SIM_DS_INT), "Int64");
    assert_string_equal(sim_ds_type_name(SIM_DS_FLOAT), "Float64");
    assert_string_equal(sim_ds_type_name(SIM_DS_BOOL), "Boolean");
    assert_string_equal(sim_ds_type_name(SIM_DS_TEXT), "Utf8");
}

static FILE *mem(const char *s)
{
    return fmemopen((void *)s, strlen(s), "r");
}

static void test_csv_basic_and_quotes(void **state)
{
    const char *text = "id,name,note\r\n"
                       "1,\"Smith, John\",\"said \"\"hi\"\"\"\r\n"
                       "2,plain,\"two\nlines\"\n"
                       "3,,\n";
    FILE *f = mem(text);
    sim_csv c;
    sim_csv_init(&c, f);
    assert_int_equal(sim_csv_next(&c), 1);
    assert_int_equal(c.nfields, 3);
    assert_string_equal(c.fields[0], "id");
    assert_string_equal(c.fields[2], "note");
    assert_int_equal(sim_csv_next(&c), 1);
    assert_int_equal(c.nfields, 3);
    assert_string_equal(c.fields[1], "Smith, John");
    assert_string_equal(c.fields[2], "said \"hi\"");
    assert_int_equal(sim_csv_next(&c), 1);
    assert_string_equal(c.fields[2], "two\nlines");
    assert_int_equal(sim_csv_next(&c), 1);
    assert_int_equal(c.nfields, 3);
    assert_string_equal(c.fields[0], "3");
    assert_string_equal(c.fields[1], "");
    assert_string_equal(c.fields[2], "");
    assert_int_equal(sim_csv_next(&c), 0);
    sim_csv_free(&c);
    fclose(f);
}

static void test_csv_bom_and_no_trailing_newline(void **state)
{
    FILE *f = mem("\xEF\xBB\xBF"
                  "a,b\n1,2");
    sim_csv c;
    sim_csv_init(&c, f);
    assert_int_equal(sim_csv_next(&c), 1);
    assert_string_equal(c.fields[0], "a");
    assert_int_equal(sim_csv_next(&c), 1);
    assert_string_equal(c.fields[1], "2");
    assert_int_equal(sim_csv_next(&c), 0);
    sim_csv_free(&c);
    fclose(f);
}

static void test_csv_unterminated_quote_is_error(void **state)
{
    FILE *f = mem("a,b\n1,\"never closed\n");
    sim_csv c;
    sim_csv_init(&c, f);
    assert_int_equal(sim_csv_next(&c), 1);
    assert_int_equal(sim_csv_next(&c), -1);
    assert_int_equal(c.error, SIM_CSV_ERR_QUOTE);
    sim_csv_free(&c);
    fclose(f);
}

static void test_csv_record_too_long(void **state)
{
    /* a file without line breaks does not become one unbounded allocation */
    size_t n = SIM_CSV_MAX_RECORD + 4096;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    big[n] = '\0';
    FILE *f = fmemopen(big, n, "r");
    sim_csv c;
    sim_csv_init(&c, f);
    assert_int_equal(sim_csv_next(&c), -1);
    assert_int_equal(c.error, SIM_CSV_ERR_LONG);
    sim_csv_free(&c);
    fclose(f);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_name_from_label),
        cmocka_unit_test(test_valid_ident),
        cmocka_unit_test(test_value_types),
        cmocka_unit_test(test_csv_basic_and_quotes),
        cmocka_unit_test(test_csv_bom_and_no_trailing_newline),
        cmocka_unit_test(test_csv_unterminated_quote_is_error),
        cmocka_unit_test(test_csv_record_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
