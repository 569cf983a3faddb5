/*
 * test_sim_profile: sim/profile.c over a real (in-memory) SQLite table: the profile kind
 * chosen per column type and cardinality, the JSON types of every field (min/max strings,
 * lengths integers, mean/avg_length reals), categorical values with counts and null, the
 * 200-distinct boundary, and an empty table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sim_profile.h"
#include "sim_res.h"

static sqlite3 *db;

static void exec(const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
}

static long long one_int(const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static int setup(void **state)
{
    (void)state;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        return -1;
    exec("CREATE TABLE t(n INTEGER, f DOUBLE, s TEXT, c TEXT, b BOOLEAN, ts TIMESTAMP, d DATE,"
         " few INTEGER, e TEXT)");
    /* 300 rows: n 1..300 (> 200 distinct), f with nulls, s 300 distinct strings of growing
     * length, c three values, b 1/0, ts and d increasing, few exactly 200 distinct, e null */
    exec("WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 300)"
         " INSERT INTO t SELECT i, CASE WHEN i % 10 = 0 THEN NULL ELSE i * 1.5 END,"
         " substr(replace(hex(zeroblob(250)), '0', 'x'), 1, 1 + i % 250) || i, CASE i % 3 WHEN 0 "
         "THEN 'a' WHEN 1 THEN 'b'"
         " ELSE 'a' END, i % 4 = 0, printf('2025-01-01T00:%02d:%02dZ', i / 60, i % 60),"
         " date('2024-01-01', printf('+%d days', i)), 1 + (i % 200), NULL FROM k");
    exec("CREATE TABLE empty(x INTEGER, y TEXT, z TIMESTAMP)");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sqlite3_close(db);
    return 0;
}

static json_t *profile_of(const char *table, long long *rows)
{
    json_t *cols = sim_res_table_columns(db, table);
    assert_non_null(cols);
    char *err = NULL;
    json_t *out = sim_profile_columns(db, table, cols, rows, &err);
    if (!out)
        fail_msg("profile failed: %s", err ? err : "?");
    json_decref(cols);
    return out;
}

static json_t *col(json_t *out, const char *name)
{
    size_t i;
    json_t *c;
    json_array_foreach(out, i, c)
    {
        if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0) {
            assert_true(json_is_integer(json_object_get(c, "cardinality")));
            assert_true(json_is_integer(json_object_get(c, "null_count")));
            assert_true(json_is_real(json_object_get(c, "null_percentage")));
            assert_true(json_is_string(json_object_get(c, "data_type")));
            return c;
        }
    }
    fail_msg("no column %s", name);
    return NULL;
}

static json_t *detail(json_t *c, const char *type, size_t nkeys)
{
    json_t *d = json_object_get(c, "profile");
    assert_true(json_is_object(d));
    assert_string_equal(json_string_value(json_object_get(d, "type")), type);
    assert_int_equal(json_object_size(d), nkeys);
    return d;
}

static void test_kinds_and_types(void **state)
{
    (void)state;
    long long rows = 0;
    json_t *out = profile_of("t", &rows);
    assert_int_equal(rows, 300);

    json_t *c = col(out, "n");
    assert_string_equal(json_string_value(json_object_get(c, "data_type")), "Int64");
    assert_int_equal(json_integer_value(json_object_get(c, "cardinality")), 300);
    json_t *d = detail(c, "numeric", 4);
    assert_string_equal(json_string_value(json_object_get(d, "min")), "1");
    assert_string_equal(json_string_value(json_object_get(d, "max")), "300");
    assert_true(json_is_real(json_object_get(d, "mean")));
    assert_true(json_real_value(json_object_get(d, "mean")) == 150.5);

    c = col(out, "f"); /* 270 distinct reals, 30 nulls */
    assert_int_equal(json_integer_value(json_object_get(c, "null_count")), 30);
    assert_true(json_real_value(json_object_get(c, "null_percentage")) == 10.0);
    d = detail(c, "numeric", 4);
    assert_string_equal(json_string_value(json_object_get(d, "min")), "1.5");
    assert_string_equal(json_string_value(json_object_get(d, "max")), "448.5");

    c = col(out, "s");
    assert_string_equal(json_string_value(json_object_get(c, "data_type")), "Utf8");
    d = detail(c, "text", 4);
    assert_true(json_is_integer(json_object_get(d, "min_length")));
    assert_true(json_is_integer(json_object_get(d, "max_length")));
    assert_int_equal(json_integer_value(json_object_get(d, "min_length")),
                     one_int("SELECT min(length(s)) FROM t"));
    assert_int_equal(json_integer_value(json_object_get(d, "max_length")),
                     one_int("SELECT max(length(s)) FROM t"));
    assert_true(json_is_real(json_object_get(d, "avg_length")));
    assert_true(json_real_value(json_object_get(d, "avg_length")) >
                (double)json_integer_value(json_object_get(d, "min_length")));

    c = col(out, "c");
    d = detail(c, "categorical", 2);
    json_t *vals = json_object_get(d, "values");
    assert_int_equal(json_array_size(vals), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(vals, 0), "value")), "a");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(vals, 0), "count")), 200);
    assert_string_equal(json_string_value(json_object_get(json_array_get(vals, 1), "value")), "b");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(vals, 1), "count")), 100);

    c = col(out, "b");
    assert_string_equal(json_string_value(json_object_get(c, "data_type")), "Boolean");
    d = detail(c, "boolean", 3);
    assert_int_equal(json_integer_value(json_object_get(d, "true_count")), 75);
    assert_int_equal(json_integer_value(json_object_get(d, "false_count")), 225);

    c = col(out, "ts");
    assert_string_equal(json_string_value(json_object_get(c, "data_type")),
                        "Timestamp(Microsecond, None)");
    d = detail(c, "temporal", 3);
    assert_string_equal(json_string_value(json_object_get(d, "min")), "2025-01-01T00:00:01Z");
    assert_string_equal(json_string_value(json_object_get(d, "max")), "2025-01-01T00:05:00Z");

    c = col(out, "d");
    assert_string_equal(json_string_value(json_object_get(c, "data_type")), "Date32");
    d = detail(c, "temporal", 3);
    assert_string_equal(json_string_value(json_object_get(d, "min")), "2024-01-02");

    /* exactly 200 distinct: still categorical, every value a string with its count */
    c = col(out, "few");
    assert_int_equal(json_integer_value(json_object_get(c, "cardinality")), 200);
    d = detail(c, "categorical", 2);
    vals = json_object_get(d, "values");
    assert_int_equal(json_array_size(vals), 200);
    long long sum = 0;
    size_t i;
    json_t *v;
    json_array_foreach(vals, i, v)
    {
        assert_true(json_is_string(json_object_get(v, "value")));
        sum += json_integer_value(json_object_get(v, "count"));
    }
    assert_int_equal(sum, 300);

    /* all null: categorical with the null value */
    c = col(out, "e");
    assert_int_equal(json_integer_value(json_object_get(c, "cardinality")), 0);
    assert_int_equal(json_integer_value(json_object_get(c, "null_count")), 300);
    d = detail(c, "categorical", 2);
    vals = json_object_get(d, "values");
    assert_int_equal(json_array_size(vals), 1);
    assert_true(json_is_null(json_object_get(json_array_get(vals, 0), "value")));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(vals, 0), "count")), 300);
    json_decref(out);
}

static void test_empty_table(void **state)
{
    (void)state;
    long long rows = -1;
    json_t *out = profile_of("empty", &rows);
    assert_int_equal(rows, 0);
    json_t *c = col(out, "x");
    assert_true(json_real_value(json_object_get(c, "null_percentage")) == 0.0);
    json_t *d = detail(c, "categorical", 2);
    assert_int_equal(json_array_size(json_object_get(d, "values")), 0);
    detail(col(out, "y"), "categorical", 2);
    /* no value: no min/max to report */
    assert_true(json_is_null(json_object_get(col(out, "z"), "profile")));
    json_decref(out);
}

static void test_sql_error_reported(void **state)
{
    (void)state;
    json_t *cols = json_pack("[{s:s,s:s}]", "name", "x", "data_type", "Int64");
    char *err = NULL;
    long long rows = 0;
    assert_null(sim_profile_columns(db, "no_such_table", cols, &rows, &err));
    assert_non_null(err);
    assert_non_null(strstr(err, "no_such_table"));
    free(err);
    json_decref(cols);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds_and_types),
        cmocka_unit_test(test_empty_table),
        cmocka_unit_test(test_sql_error_reported),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
