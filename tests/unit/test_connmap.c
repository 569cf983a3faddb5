/*
 * test_connmap: connection id -> name learned from the API's answers (connmap.h), per
 * workspace, and what route_invalidation_tags makes of it: a purge of one connection
 * invalidates that connection's query results only when its name is known, every query
 * result ("queries") otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "connmap.h"
#include "route.h"

static int setup(void **state)
{
    connmap_reset();
    return 0;
}

static void test_learn_list_and_object(void **state)
{
    const char *list = "{\"connections\":[{\"id\":\"conn_1\",\"name\":\"prod_pg\",\"source_type\":"
                       "\"postgres\"},{\"id\":\"conn_2\",\"name\":\"Warehouse\"},{\"id\":7,"
                       "\"name\":\"x\"},{\"name\":\"no_id\"},\"junk\"]}";
    connmap_learn_json("ws_a", list, strlen(list));
    char n[64];
    assert_true(connmap_resolve("ws_a", "conn_1", n, sizeof n));
    assert_string_equal(n, "prod_pg");
    assert_true(connmap_resolve("ws_a", "conn_2", n, sizeof n));
    assert_string_equal(n, "Warehouse");
    assert_int_equal(connmap_size(), 2);
    /* per workspace */
    assert_false(connmap_resolve("ws_b", "conn_1", n, sizeof n));
    /* a single object (GET /v1/connections/{id}) */
    const char *one = "{\"id\":\"conn_9\",\"name\":\"lake\",\"table_count\":3}";
    connmap_learn_json("ws_b", one, strlen(one));
    assert_true(connmap_resolve("ws_b", "conn_9", n, sizeof n));
    assert_string_equal(n, "lake");
    /* a name that does not fit the caller's buffer is not returned cut */
    assert_false(connmap_resolve("ws_a", "conn_1", n, 4));
    /* garbage is ignored */
    connmap_learn_json("ws_a", "not json", 8);
    connmap_learn_json("ws_a", "[1,2]", 5);
    connmap_learn_json("ws_a", "{\"id\":\"\",\"name\":\"e\"}", 20);
    assert_int_equal(connmap_size(), 3);
}

static void test_capacity_starts_again(void **state)
{
    char id[32];
    for (int i = 0; i < CONNMAP_CAPACITY; i++) {
        snprintf(id, sizeof id, "c%d", i);
        connmap_learn("w", id, "n");
    }
    assert_int_equal(connmap_size(), CONNMAP_CAPACITY);
    connmap_learn("w", "c0", "n2"); /* known: updated in place */
    assert_int_equal(connmap_size(), CONNMAP_CAPACITY);
    connmap_learn("w", "new", "n3"); /* full: emptied, then learned */
    assert_int_equal(connmap_size(), 1);
    char n[16];
    assert_false(connmap_resolve("w", "c1", n, sizeof n));
    assert_true(connmap_resolve("w", "new", n, sizeof n));
}

static int has(const struct route_tags *t, const char *tag)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(route_tags_get(t, i), tag) == 0)
            return 1;
    return 0;
}

static void test_precise_invalidation(void **state)
{
    struct route_policy p;
    route_match("DELETE", "/v1/connections/conn_1/cache", NULL, &p);
    assert_int_equal(p.id, ROUTE_CONNECTIONS_PURGE);
    struct route_tags t;
    bool all = false;
    /* not learned yet: every query result of the workspace */
    route_invalidation_tags(&p, NULL, 0, connmap_resolve, "ws_a", &t, &all);
    assert_true(has(&t, "queries"));
    assert_false(has(&t, "qconn:prod_pg"));
    /* learned: only that connection's */
    connmap_learn("ws_a", "conn_1", "Prod_PG");
    route_invalidation_tags(&p, NULL, 0, connmap_resolve, "ws_a", &t, &all);
    assert_false(has(&t, "queries"));
    assert_true(has(&t, "qconn:prod_pg"));
    assert_true(has(&t, "qunknown")); /* queries whose tables could not be named, still */
    assert_false(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_learn_list_and_object, setup),
        cmocka_unit_test_setup(test_capacity_starts_again, setup),
        cmocka_unit_test_setup(test_precise_invalidation, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
