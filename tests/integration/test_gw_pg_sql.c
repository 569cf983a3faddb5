/*
 * test_gw_pg_sql: hotgate's SQL canonicaliser (src/sqlkey.c) end to end on PostgreSQL SQL,
 * through the real hotgate in front of the real hotdata-sim (whose engine is PostgreSQL, so
 * these queries really run). Where the key is certain -- `::` casts, '' escapes, plain
 * comments and whitespace between clauses -- a reformatted query is a HIT that the sim never
 * saw; where it is not -- dollar quotes, E'' strings with backslashes, nested comments --
 * every request goes upstream (BYPASS), and texts that differ inside a dollar quote never
 * share an answer. Every answer equals the sim's own answer to the same SQL.
 */
#include "cache_it.h"

static cit_env E;

/* The sim's own answer (rows) to sql, asked directly as tok_test/ws_test. */
static json_t *sim_rows(const char *sql)
{
    char url[128];
    snprintf(url, sizeof url, "%s/v1/query", E.simurl);
    const char *h[] = {"Authorization: Bearer tok_test", "X-Workspace-Id: ws_test",
                       "Content-Type: application/json", NULL};
    char *b = cit_query_body(sql);
    hresp r;
    assert_int_equal(http_do("POST", url, h, b, strlen(b), &r), 0);
    free(b);
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    hresp_free(&r);
    json_t *rows = json_incref(json_object_get(j, "rows"));
    json_decref(j);
    return rows;
}

/* sql through hotgate: 200, its X-Cache, the sim asked (MISS, BYPASS) or not (HIT), and
 * rows equal to the sim's own answer. */
static void via_gateway(const char *sql, const char *want_xcache)
{
    long long seen = cit_sim_sql_count(&E, sql);
    hresp r;
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    if (r.status != 200)
        fprintf(stderr, "%s -> %ld %s\n", sql, r.status, r.body);
    assert_int_equal(r.status, 200);
    const char *xc = cit_xcache(&r);
    if (strcmp(xc, want_xcache) != 0)
        fprintf(stderr, "%s: X-Cache %s, want %s\n", sql, xc, want_xcache);
    assert_string_equal(xc, want_xcache);
    assert_int_equal(cit_sim_sql_count(&E, sql), seen + (strcmp(want_xcache, "HIT") ? 1 : 0));
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    assert_non_null(j);
    json_t *want = sim_rows(sql);
    assert_true(json_equal(json_object_get(j, "rows"), want));
    json_decref(want);
    json_decref(j);
    hresp_free(&r);
}

static void test_casts_hit_when_reformatted(void **state)
{
    (void)state;
    const char *a = "SELECT id, amount::numeric(10,2) AS a, ordered_at::date AS d FROM"
                    " demo.public.orders WHERE status = 'paid' ORDER BY id LIMIT 5";
    const char *b = "SELECT id, amount::numeric(10,2) AS a, ordered_at::date AS d\n  FROM"
                    " demo.public.orders   -- paid ones\n WHERE status = 'paid' /* c */ ORDER BY"
                    " id LIMIT 5";
    via_gateway(a, "MISS");
    via_gateway(b, "HIT"); /* the sim never saw b from the gateway */
    /* '' escapes and date_trunc: certain too */
    const char *c = "SELECT date_trunc('month', ordered_at) AS m, count(*) FROM demo.public.orders"
                    " WHERE note IS DISTINCT FROM 'it''s' GROUP BY 1 ORDER BY 1 LIMIT 3";
    const char *d = "SELECT date_trunc('month', ordered_at) AS m, count(*)\tFROM"
                    " demo.public.orders WHERE note IS DISTINCT FROM 'it''s' GROUP BY 1 ORDER BY 1"
                    " LIMIT 3";
    via_gateway(c, "MISS");
    via_gateway(d, "HIT");
}

static void test_dollar_quotes_bypass(void **state)
{
    (void)state;
    /* a dollar quote: the key is not certain, so never cached; the text inside is data */
    const char *a = "SELECT $$it's -- not a comment$$ AS s, count(*) FROM demo.public.products";
    const char *b = "SELECT $$it's  --  not a comment$$ AS s, count(*) FROM demo.public.products";
    via_gateway(a, "BYPASS");
    via_gateway(a, "BYPASS"); /* asked again: never cached */
    via_gateway(b, "BYPASS");
    json_t *ra = sim_rows(a), *rb = sim_rows(b);
    assert_false(json_equal(ra, rb)); /* different bytes in the quote, different answers */
    json_decref(ra);
    json_decref(rb);
    /* tagged dollar quote holding what looks like a three-part name: left alone */
    via_gateway("SELECT $q$demo.public.orders$q$ AS name", "BYPASS");
}

static void test_escape_strings_and_nested_comments_bypass(void **state)
{
    (void)state;
    via_gateway("SELECT E'a\\'b' AS s, 1 AS one", "BYPASS");
    via_gateway("/* outer /* inner */ still a comment */ SELECT count(*) FROM demo.public.products",
                "BYPASS");
}

static int setup(void **state)
{
    (void)state;
    return cit_start(&E, "gw-pg-sql",
                     "ttl_metadata = 60s\nttl_query = 300s\nstale_while_revalidate = 0\n"
                     "stale_if_error = 0\nnegative_ttl = 0\n",
                     NULL);
}

static int teardown(void **state)
{
    (void)state;
    cit_stop(&E);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_casts_hit_when_reformatted),
        cmocka_unit_test(test_dollar_quotes_bypass),
        cmocka_unit_test(test_escape_strings_and_nested_comments_bypass),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
