/*
 * test_sim_sqlrewrite: the simulator's three-part-name SQL rewriter (sim/sqlrewrite.c):
 * what is rewritten, what is left alone (literals, comments, two-part names, quoted
 * identifiers of other shapes) and which names are errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sim_sqlrewrite.h"

/* Known tables: demo.public.orders -> "demo.public.orders", datasets.main.sales -> ds_sales.
 * Records the last lookup so tests can check case folding. */
static char last_lookup[256];

static char *resolve(void *ud, const char *a, const char *b, const char *c)
{
    (void)ud;
    snprintf(last_lookup, sizeof last_lookup, "%s|%s|%s", a, b, c);
    if (!strcmp(a, "demo") && !strcmp(b, "public") && !strcmp(c, "orders"))
        return strdup("demo.public.orders");
    if (!strcmp(a, "demo") && !strcmp(b, "public") && !strcmp(c, "customers"))
        return strdup("demo.public.customers");
    if (!strcmp(a, "datasets") && !strcmp(b, "main") && !strcmp(c, "sales"))
        return strdup("ds_\"sales");
    return NULL;
}

static char *xstrcat(const char *a, const char *b)
{
    char *s = malloc(strlen(a) + strlen(b) + 1);
    strcpy(s, a);
    strcat(s, b);
    return s;
}

static bool is_catalog(void *ud, const char *a)
{
    (void)ud;
    return !strcmp(a, "demo") || !strcmp(a, "datasets");
}

static void expect(const char *in, const char *want)
{
    char *out = NULL, *err = NULL;
    int rc = sim_sql_rewrite(in, resolve, is_catalog, NULL, &out, &err);
    if (rc != 0)
        fail_msg("rewrite failed for <%s>: %s", in, err);
    assert_string_equal(out, want);
    free(out);
    free(err);
}

static void expect_error(const char *in, const char *needle)
{
    char *out = NULL, *err = NULL;
    int rc = sim_sql_rewrite(in, resolve, is_catalog, NULL, &out, &err);
    assert_int_equal(rc, -1);
    assert_null(out);
    assert_non_null(err);
    assert_non_null(strstr(err, needle));
    free(err);
}

static void test_rewrites_three_part_names(void **state)
{
    (void)state;
    expect("SELECT * FROM demo.public.orders", "SELECT * FROM \"demo.public.orders\"");
    expect("select count(*) from demo.public.orders o join demo.public.customers c on "
           "c.id=o.customer_id",
           "select count(*) from \"demo.public.orders\" o join \"demo.public.customers\" c on "
           "c.id=o.customer_id");
    /* quoted parts and whitespace around dots */
    expect("SELECT 1 FROM \"demo\".\"public\".\"orders\"", "SELECT 1 FROM \"demo.public.orders\"");
    expect("SELECT 1 FROM demo . public . orders", "SELECT 1 FROM \"demo.public.orders\"");
    /* a fourth part is a column of the table */
    expect("SELECT demo.public.orders.id FROM demo.public.orders",
           "SELECT \"demo.public.orders\".\"id\" FROM \"demo.public.orders\"");
    /* a quote inside the target name is doubled */
    expect("SELECT * FROM datasets.main.sales", "SELECT * FROM \"ds_\"\"sales\"");
    /* no whitespace between tokens */
    expect("SELECT(1)FROM demo.public.orders;", "SELECT(1)FROM \"demo.public.orders\";");
}

static void test_case_folding(void **state)
{
    (void)state;
    expect("SELECT * FROM DEMO.Public.ORDERS", "SELECT * FROM \"demo.public.orders\"");
    assert_string_equal(last_lookup, "demo|public|orders");
    /* quoted identifiers keep their case: "DEMO" is not demo */
    char *out = NULL, *err = NULL;
    assert_int_equal(sim_sql_rewrite("SELECT * FROM \"DEMO\".public.orders", resolve, is_catalog,
                                     NULL, &out, &err),
                     0);
    assert_string_equal(last_lookup, "DEMO|public|orders");
    assert_string_equal(out, "SELECT * FROM \"DEMO\".public.orders");
    free(out);
}

static void test_leaves_other_text_alone(void **state)
{
    (void)state;
    /* string literals (with '' escapes), comments, bracket/backtick identifiers */
    expect("SELECT 'demo.public.orders', 'it''s demo.public.orders'",
           "SELECT 'demo.public.orders', 'it''s demo.public.orders'");
    expect("SELECT 1 -- demo.public.orders\n", "SELECT 1 -- demo.public.orders\n");
    expect("SELECT 1 /* demo.public.orders */", "SELECT 1 /* demo.public.orders */");
    expect("SELECT `demo.public.orders`, [demo.public.orders]",
           "SELECT `demo.public.orders`, [demo.public.orders]");
    expect("SELECT \"demo.public.orders\" FROM t", "SELECT \"demo.public.orders\" FROM t");
    /* two-part names, t.*, numbers with dots */
    expect("SELECT o.id, o.* FROM t o WHERE x > 1.5e3",
           "SELECT o.id, o.* FROM t o WHERE x > 1.5e3");
    /* an unknown catalog is not ours: left as is (SQLite reports it) */
    expect("SELECT * FROM other.public.orders", "SELECT * FROM other.public.orders");
    /* five parts: not a table name */
    expect("SELECT a.b.c.d.e", "SELECT a.b.c.d.e");
    expect("", "");
    /* unterminated quote or comment: copied, SQLite reports the syntax error */
    expect("SELECT 'abc", "SELECT 'abc");
    expect("SELECT \"abc", "SELECT \"abc");
    expect("SELECT 1 /* open", "SELECT 1 /* open");
}

static void test_unknown_table_of_known_catalog(void **state)
{
    (void)state;
    expect_error("SELECT * FROM demo.public.nope", "demo.public.nope");
    expect_error("SELECT * FROM datasets.main.other", "not found");
}

static void test_fuzzish_inputs_do_not_crash(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "\"",
        "'",
        "..",
        "a.",
        ".a",
        "a..b.c",
        "\"\"\"",
        "a.\"b",
        "--",
        "/*",
        "[",
        "`",
        "demo.",
        "demo.public.",
        "demo.public.\"",
        "\xff\xfe.\x80.\x81",
        "a.b.c.d.e.f.g.h",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        char *out = NULL, *err = NULL;
        int rc = sim_sql_rewrite(inputs[i], resolve, is_catalog, NULL, &out, &err);
        assert_true(rc == 0 || rc == -1);
        assert_true((rc == 0 && out) || (rc == -1 && err));
        free(out);
        free(err);
    }
}

/* unqualified names in table position (default_catalog / default_schema, sim_sql_rewrite_ex) */
static char *resolve_short(void *ud, const char *schema, const char *table)
{
    (void)ud;
    if ((!schema || !strcmp(schema, "public")) &&
        (!strcmp(table, "orders") || !strcmp(table, "customers")))
        return xstrcat("demo.public.", table);
    return NULL;
}

static void expect_short(const char *in, const char *want)
{
    char *out = NULL, *err = NULL;
    int rc = sim_sql_rewrite_ex(in, resolve, is_catalog, resolve_short, NULL, &out, &err);
    if (rc != 0)
        fail_msg("rewrite failed for <%s>: %s", in, err);
    assert_string_equal(out, want);
    free(out);
    free(err);
}

static void test_unqualified_names_in_table_position(void **state)
{
    (void)state;
    expect_short("SELECT count(*) FROM orders", "SELECT count(*) FROM \"demo.public.orders\"");
    expect_short("SELECT 1 FROM public.orders o JOIN customers c ON c.id = o.customer_id",
                 "SELECT 1 FROM \"demo.public.orders\" o JOIN \"demo.public.customers\" c ON "
                 "c.id = o.customer_id");
    expect_short(
        "select 1 from orders, /* c */ customers where 1=1",
        "select 1 from \"demo.public.orders\", /* c */ \"demo.public.customers\" where 1=1");
    /* not table position: columns, aliases, a comma after WHERE, strings, quoted names */
    expect_short("SELECT orders, customers FROM t", "SELECT orders, customers FROM t");
    expect_short("SELECT 1 FROM t orders", "SELECT 1 FROM t orders");
    expect_short("SELECT 1 FROM t WHERE f(a, orders)", "SELECT 1 FROM t WHERE f(a, orders)");
    expect_short("SELECT 'FROM orders'", "SELECT 'FROM orders'");
    expect_short("SELECT 1 FROM \"orders\"", "SELECT 1 FROM \"demo.public.orders\"");
    expect_short("SELECT 1 FROM nope", "SELECT 1 FROM nope");
    /* without the callback nothing changes (sim_sql_rewrite) */
    expect("SELECT count(*) FROM orders", "SELECT count(*) FROM orders");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rewrites_three_part_names),
        cmocka_unit_test(test_case_folding),
        cmocka_unit_test(test_leaves_other_text_alone),
        cmocka_unit_test(test_unknown_table_of_known_catalog),
        cmocka_unit_test(test_fuzzish_inputs_do_not_crash),
        cmocka_unit_test(test_unqualified_names_in_table_position),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
