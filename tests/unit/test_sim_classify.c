/*
 * test_sim_classify: the saved-query classifier (sim/sq_classify.c). Every case states the
 * full classification, so a classifier that looks at raw text (keywords inside literals,
 * comments, quoted identifiers) or miscounts tables fails here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "sim_res.h"

static sim_sq_class classify(const char *sql)
{
    sim_sq_class c;
    sim_sq_classify(sql, strlen(sql), &c);
    return c;
}

static void test_plain_scan(void **state)
{
    sim_sq_class c = classify("SELECT a, b FROM demo.public.orders");
    assert_string_equal(c.category, "scan");
    assert_int_equal(c.num_tables, 1);
    assert_false(c.has_join);
    assert_false(c.has_aggregation);
    assert_false(c.has_group_by);
    assert_false(c.has_limit);
    assert_false(c.has_order_by);
    assert_false(c.has_predicate);
}

static void test_filtered_scan_with_order_limit(void **state)
{
    sim_sq_class c = classify("select * from t where x > 3 order by x desc limit 10");
    assert_string_equal(c.category, "filtered_scan");
    assert_true(c.has_predicate);
    assert_true(c.has_order_by);
    assert_true(c.has_limit);
    assert_false(c.has_aggregation);
    assert_int_equal(c.num_tables, 1);
}

static void test_aggregation_group_by(void **state)
{
    sim_sq_class c = classify("SELECT region, COUNT(*), sum(amount) FROM sales GROUP BY region");
    assert_string_equal(c.category, "aggregation");
    assert_true(c.has_aggregation);
    assert_true(c.has_group_by);
    assert_false(c.has_predicate);
    assert_int_equal(c.num_tables, 1);

    c = classify("SELECT count(*) FROM sales WHERE amount > 0");
    assert_string_equal(c.category, "aggregation");
    assert_true(c.has_aggregation);
    assert_false(c.has_group_by);
    assert_true(c.has_predicate);
}

static void test_join_explicit_and_implicit(void **state)
{
    sim_sq_class c = classify("SELECT o.id FROM orders o JOIN customers c ON o.cid = c.id "
                              "LEFT OUTER JOIN regions r ON r.id = c.rid WHERE o.total > 5");
    assert_string_equal(c.category, "join");
    assert_true(c.has_join);
    assert_true(c.has_predicate);
    assert_int_equal(c.num_tables, 3);

    c = classify("SELECT * FROM a, b WHERE a.id = b.id");
    assert_true(c.has_join);
    assert_int_equal(c.num_tables, 2);

    /* the same table twice is one table */
    c = classify("SELECT * FROM t x JOIN t y ON x.p = y.id");
    assert_true(c.has_join);
    assert_int_equal(c.num_tables, 1);
}

static void test_keywords_in_literals_and_comments_do_not_count(void **state)
{
    sim_sq_class c = classify("SELECT 'a JOIN b WHERE x GROUP BY y ORDER BY z LIMIT 1 count(*)' "
                              "AS s FROM t -- join where group by\n"
                              "/* order by limit sum(x) /* nested */ where */");
    assert_string_equal(c.category, "scan");
    assert_false(c.has_join);
    assert_false(c.has_predicate);
    assert_false(c.has_group_by);
    assert_false(c.has_order_by);
    assert_false(c.has_limit);
    assert_false(c.has_aggregation);
    assert_int_equal(c.num_tables, 1);

    c = classify("SELECT \"where\", \"count\"(x) FROM \"join\"");
    assert_false(c.has_predicate);
    assert_false(c.has_aggregation);
    assert_false(c.has_join);
    assert_int_equal(c.num_tables, 1);

    c = classify("SELECT 'it''s a WHERE' FROM t");
    assert_false(c.has_predicate);
    c = classify("SELECT $$ where join $$ FROM t");
    assert_false(c.has_predicate);
    assert_false(c.has_join);
}

static void test_functions_with_from_are_not_tables(void **state)
{
    sim_sq_class c = classify("SELECT EXTRACT(YEAR FROM ts), substring(s FROM 2 FOR 3) FROM ev");
    assert_int_equal(c.num_tables, 1);
    assert_false(c.has_join);
}

static void test_cte_and_subquery(void **state)
{
    sim_sq_class c = classify("WITH recent AS (SELECT * FROM orders WHERE d > 1) "
                              "SELECT * FROM recent ORDER BY d");
    assert_int_equal(c.num_tables, 1);
    assert_true(c.has_predicate);
    assert_true(c.has_order_by);
    assert_false(c.has_join);

    c = classify("SELECT * FROM (SELECT id FROM a) s, b");
    assert_true(c.has_join);
    assert_int_equal(c.num_tables, 2);

    /* ORDER BY inside a window is not the query's ORDER BY */
    c = classify("SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t");
    assert_false(c.has_order_by);
}

static void test_no_table_and_garbage(void **state)
{
    sim_sq_class c = classify("SELECT 1");
    assert_string_equal(c.category, "other");
    assert_int_equal(c.num_tables, 0);

    const char *junk[] = {"",
                          "(((((",
                          ")))) from",
                          "'unterminated",
                          "\"x",
                          "/* open",
                          "select from from from",
                          "$$",
                          "FROM ,,,, JOIN",
                          NULL};
    for (int i = 0; junk[i]; i++) {
        c = classify(junk[i]);
        assert_non_null(c.category);
    }
    sim_sq_classify(NULL, 0, &c);
    assert_string_equal(c.category, "other");
}

static void test_fetch_first_is_limit(void **state)
{
    sim_sq_class c = classify("SELECT * FROM t FETCH FIRST 5 ROWS ONLY");
    assert_true(c.has_limit);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_scan),
        cmocka_unit_test(test_filtered_scan_with_order_limit),
        cmocka_unit_test(test_aggregation_group_by),
        cmocka_unit_test(test_join_explicit_and_implicit),
        cmocka_unit_test(test_keywords_in_literals_and_comments_do_not_count),
        cmocka_unit_test(test_functions_with_from_are_not_tables),
        cmocka_unit_test(test_cte_and_subquery),
        cmocka_unit_test(test_no_table_and_garbage),
        cmocka_unit_test(test_fetch_first_is_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
