/*
 * test_cache_invalidate: mutations passing through hotgate invalidate what they change,
 * synchronously: the very next read after the mutation's 2xx answer is never the old
 * entry. Covers a data refresh (the sim really changes the table, and the cached query
 * result changes with it; the refresh result objects pass through unchanged), saved-query
 * execute of a named version (each version its own answer, old ones survive an update), secrets,
 * connections, saved queries, isolation of workspaces (a mutation in one does not flush the other),
 * and the admin purge endpoint (by key, tag, workspace, everything; API-shaped errors; token
 * required) and the cache metrics.
 */
#include "cache_it.h"

#include <pthread.h>

static cit_env E;

static int setup(void **state)
{
    (void)state;
    return cit_start(&E, "cache-inval",
                     "ttl_query = 300s\nttl_metadata = 300s\nstale_while_revalidate = 0\n"
                     "stale_if_error = 0\n",
                     NULL);
}

static int teardown(void **state)
{
    (void)state;
    cit_stop(&E);
    return 0;
}

static char *get_body(const char *key, const char *path, char *xc, size_t xcl)
{
    hresp r;
    assert_int_equal(cit_req(&E, key, "GET", path, NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    snprintf(xc, xcl, "%s", cit_xcache(&r));
    char *b = strdup(r.body);
    hresp_free(&r);
    return b;
}

static void test_refresh_changes_query_results(void **state)
{
    (void)state;
    const char *sql = "SELECT count(*) AS n, max(id) AS m FROM demo.public.orders";
    hresp r1, r2, r3, r4;
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r1), 0);
    assert_string_equal(cit_xcache(&r1), "MISS");
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r2), 0);
    assert_string_equal(cit_xcache(&r2), "HIT");
    char xc[64];
    char *conns = get_body(CIT_KEY_A, "/v1/connections", xc, sizeof xc);
    free(get_body(CIT_KEY_A, "/v1/connections", xc, sizeof xc));
    assert_string_equal(xc, "HIT");
    /* a data refresh of the demo connection changes its tables in the sim */
    assert_int_equal(cit_req(&E, CIT_KEY_A, "POST", "/v1/refresh",
                             "{\"connection_id\":\"conn_demo\",\"data\":true}", NULL, NULL, &r3),
                     0);
    assert_true(r3.status >= 200 && r3.status < 300);
    hresp_free(&r3);
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r4), 0);
    assert_int_equal(r4.status, 200);
    assert_string_equal(cit_xcache(&r4), "MISS");
    fprintf(stderr, "  before refresh: %s\n  after refresh:  %s\n", r1.body, r4.body);
    json_t *a = json_loadb(r1.body, r1.len, 0, NULL), *b = json_loadb(r4.body, r4.len, 0, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_false(json_equal(json_object_get(a, "rows"), json_object_get(b, "rows")));
    json_decref(a);
    json_decref(b);
    assert_int_equal(cit_sim_sql_count(&E, sql), 2);
    /* the connection list is refreshed too */
    free(get_body(CIT_KEY_A, "/v1/connections", xc, sizeof xc));
    assert_string_equal(xc, "MISS");
    free(conns);
    hresp_free(&r1);
    hresp_free(&r2);
    hresp_free(&r4);
}

/* POST /v1/refresh directly at the sim as ws_test's token. */
static json_t *sim_refresh_direct(const char *body)
{
    char url[128];
    snprintf(url, sizeof url, "%s/v1/refresh", E.simurl);
    const char *h[] = {"Authorization: Bearer tok_test", "X-Workspace-Id: ws_test",
                       "Content-Type: application/json", NULL};
    hresp r;
    assert_int_equal(http_do("POST", url, h, body, strlen(body), &r), 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    hresp_free(&r);
    assert_non_null(j);
    return j;
}

/* The refresh result objects (issue 14) pass through hotgate unchanged, and the refresh still
 * invalidates what it changes. */
static void test_refresh_result_passes_through(void **state)
{
    (void)state;
    const char *sql = "SELECT count(*) AS n FROM demo.public.customers";
    hresp r;
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    hresp_free(&r);
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "HIT");
    hresp_free(&r);

    /* {}: a schema refresh of every connection; the same object as the sim's own answer */
    json_t *direct = sim_refresh_direct("{}");
    assert_int_equal(cit_req(&E, CIT_KEY_A, "POST", "/v1/refresh", "{}", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    char *ct = hresp_header(&r, "Content-Type");
    assert_non_null(ct);
    assert_non_null(strstr(ct, "application/json"));
    free(ct);
    json_t *via = json_loadb(r.body, r.len, 0, NULL);
    hresp_free(&r);
    assert_non_null(via);
    assert_true(json_is_integer(json_object_get(via, "connections_refreshed")));
    assert_true(json_equal(direct, via));
    json_decref(direct);
    json_decref(via);
    /* a refresh without a connection may touch anything: the cached answer is gone */
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "MISS");
    hresp_free(&r);
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "HIT");
    json_t *before = json_loadb(r.body, r.len, 0, NULL);
    hresp_free(&r);

    /* a table data refresh: TableRefreshResult through hotgate, and the table's cached
     * query answer is invalidated (the sim added a customer) */
    assert_int_equal(cit_req(&E, CIT_KEY_A, "POST", "/v1/refresh",
                             "{\"connection_id\":\"conn_demo\",\"schema_name\":\"public\","
                             "\"table_name\":\"customers\",\"data\":true}",
                             NULL, NULL, &r),
                     0);
    assert_int_equal(r.status, 200);
    json_t *tr = json_loadb(r.body, r.len, 0, NULL);
    hresp_free(&r);
    assert_string_equal(json_string_value(json_object_get(tr, "connection_id")), "conn_demo");
    assert_string_equal(json_string_value(json_object_get(tr, "schema_name")), "public");
    assert_string_equal(json_string_value(json_object_get(tr, "table_name")), "customers");
    assert_true(json_is_integer(json_object_get(tr, "duration_ms")));
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "MISS");
    json_t *after = json_loadb(r.body, r.len, 0, NULL);
    hresp_free(&r);
    json_t *n_before = json_array_get(json_array_get(json_object_get(before, "rows"), 0), 0);
    json_t *n_after = json_array_get(json_array_get(json_object_get(after, "rows"), 0), 0);
    assert_int_equal(json_integer_value(n_after), json_integer_value(n_before) + 1);
    assert_int_equal(json_integer_value(json_object_get(tr, "rows_synced")),
                     json_integer_value(n_after));
    json_decref(tr);
    json_decref(before);
    json_decref(after);
}

/* Execute a saved query through hotgate with body; returns the first cell (status 200) and
 * copies X-Cache into xc. */
static long long gw_execute(const char *id, const char *body, char *xc, size_t xcl)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/queries/%s/execute", id);
    hresp r;
    assert_int_equal(cit_req(&E, CIT_KEY_A, "POST", path, body, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    snprintf(xc, xcl, "%s", cit_xcache(&r));
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    hresp_free(&r);
    json_t *v = json_array_get(json_array_get(json_object_get(j, "rows"), 0), 0);
    assert_true(json_is_integer(v));
    long long n = json_integer_value(v);
    json_decref(j);
    return n;
}

/* Saved-query execute names a version in its body (issue 14): through hotgate each version
 * answers its own SQL's rows, an old version's cached answer survives a new version, the
 * latest's does not, and a missing version is the sim's 404. */
static void test_saved_query_versions_through_gateway(void **state)
{
    (void)state;
    hresp r;
    assert_int_equal(cit_req(&E, CIT_KEY_A, "POST", "/v1/queries",
                             "{\"name\":\"inval_versions\",\"sql\":\"SELECT 1 AS v\"}", NULL, NULL,
                             &r),
                     0);
    assert_int_equal(r.status, 201);
    json_t *q = json_loadb(r.body, r.len, 0, NULL);
    hresp_free(&r);
    char id[64], path[128], xc[64];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(q, "id")));
    json_decref(q);
    snprintf(path, sizeof path, "/v1/queries/%s", id);
    assert_int_equal(
        cit_req(&E, CIT_KEY_A, "PUT", path, "{\"sql\":\"SELECT 2 AS v\"}", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);

    assert_int_equal(gw_execute(id, "{}", xc, sizeof xc), 2);
    assert_string_equal(xc, "MISS");
    assert_int_equal(gw_execute(id, "{\"version\":1}", xc, sizeof xc), 1);
    assert_string_equal(xc, "MISS");
    assert_int_equal(gw_execute(id, "{\"version\":1}", xc, sizeof xc), 1);
    assert_string_equal(xc, "HIT");
    assert_int_equal(gw_execute(id, "{}", xc, sizeof xc), 2);
    assert_string_equal(xc, "HIT");

    /* a third version: the latest's answer changes, version 1 still answers version 1 */
    assert_int_equal(
        cit_req(&E, CIT_KEY_A, "PUT", path, "{\"sql\":\"SELECT 3 AS v\"}", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    assert_int_equal(gw_execute(id, "{}", xc, sizeof xc), 3);
    assert_string_equal(xc, "MISS");
    assert_int_equal(gw_execute(id, "{\"version\":1}", xc, sizeof xc), 1);
    assert_int_equal(gw_execute(id, "{\"version\":2}", xc, sizeof xc), 2);

    char epath[160];
    snprintf(epath, sizeof epath, "/v1/queries/%s/execute", id);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "POST", epath, "{\"version\":9}", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 404);
    json_t *e = json_loadb(r.body, r.len, 0, NULL);
    hresp_free(&r);
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "error"), "code")),
                        "NOT_FOUND");
    json_decref(e);
}

static void test_secrets(void **state)
{
    (void)state;
    char xc[64];
    char *b = get_body(CIT_KEY_A, "/v1/secrets", xc, sizeof xc);
    assert_string_equal(xc, "MISS");
    assert_null(strstr(b, "inval_secret_1"));
    free(b);
    free(get_body(CIT_KEY_A, "/v1/secrets", xc, sizeof xc));
    assert_string_equal(xc, "HIT");
    /* the other workspace caches its own list */
    free(get_body(CIT_KEY_B, "/v1/secrets", xc, sizeof xc));
    assert_string_equal(xc, "MISS");
    hresp r;
    assert_int_equal(cit_req(&E, CIT_KEY_A, "POST", "/v1/secrets",
                             "{\"name\":\"inval_secret_1\",\"value\":\"v1\"}", NULL, NULL, &r),
                     0);
    assert_int_equal(r.status, 201);
    hresp_free(&r);
    b = get_body(CIT_KEY_A, "/v1/secrets", xc, sizeof xc);
    assert_string_equal(xc, "MISS");
    assert_non_null(strstr(b, "inval_secret_1"));
    free(b);
    /* ws_other untouched: still a hit */
    free(get_body(CIT_KEY_B, "/v1/secrets", xc, sizeof xc));
    assert_string_equal(xc, "HIT");
    /* get -> update -> get */
    b = get_body(CIT_KEY_A, "/v1/secrets/inval_secret_1", xc, sizeof xc);
    free(b);
    free(get_body(CIT_KEY_A, "/v1/secrets/inval_secret_1", xc, sizeof xc));
    assert_string_equal(xc, "HIT");
    assert_int_equal(cit_req(&E, CIT_KEY_A, "PUT", "/v1/secrets/inval_secret_1",
                             "{\"value\":\"v2\"}", NULL, NULL, &r),
                     0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    free(get_body(CIT_KEY_A, "/v1/secrets/inval_secret_1", xc, sizeof xc));
    assert_string_equal(xc, "MISS");
    /* delete -> the list forgets it at once */
    assert_int_equal(
        cit_req(&E, CIT_KEY_A, "DELETE", "/v1/secrets/inval_secret_1", NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 204);
    hresp_free(&r);
    b = get_body(CIT_KEY_A, "/v1/secrets", xc, sizeof xc);
    assert_string_equal(xc, "MISS");
    assert_null(strstr(b, "inval_secret_1"));
    free(b);
}

/* POST /v1/connections through hotgate (no discovery); its id into id[cap]. */
static void create_connection(const char *name, char *id, size_t cap)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"name\":\"%s\",\"source_type\":\"postgres\",\"config\":{},\"skip_discovery\":true}",
             name);
    hresp r;
    assert_int_equal(cit_req(&E, CIT_KEY_A, "POST", "/v1/connections", body, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 201);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    snprintf(id, cap, "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    hresp_free(&r);
}

/* Once hotgate has seen the connection list, a purge of one connection invalidates the query
 * results over that connection only (connmap: id -> name), not every query result. */
static void test_purge_is_per_connection(void **state)
{
    (void)state;
    const char *sql = "SELECT status, count(*) AS n FROM demo.public.orders GROUP BY status";
    hresp r;
    char other[128], path[256];
    create_connection("keep_other", other, sizeof other);
    char xc[64];
    free(get_body(CIT_KEY_A, "/v1/connections", xc, sizeof xc)); /* hotgate learns the ids */
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    hresp_free(&r);
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "HIT");
    hresp_free(&r);
    /* purging the other connection leaves the demo results cached */
    snprintf(path, sizeof path, "/v1/connections/%s/cache", other);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "DELETE", path, NULL, NULL, NULL, &r), 0);
    assert_true(r.status >= 200 && r.status < 300);
    hresp_free(&r);
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "HIT");
    hresp_free(&r);
    /* purging demo does not */
    assert_int_equal(
        cit_req(&E, CIT_KEY_A, "DELETE", "/v1/connections/conn_demo/cache", NULL, NULL, NULL, &r),
        0);
    assert_true(r.status >= 200 && r.status < 300);
    hresp_free(&r);
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "MISS");
    hresp_free(&r);
    assert_int_equal(cit_sim_sql_count(&E, sql), 2);
    snprintf(path, sizeof path, "/v1/connections/%s", other);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "DELETE", path, NULL, NULL, NULL, &r), 0);
    hresp_free(&r);
}

static void test_connections_and_saved_queries(void **state)
{
    (void)state;
    char xc[64];
    free(get_body(CIT_KEY_A, "/v1/connections", xc, sizeof xc));
    free(get_body(CIT_KEY_A, "/v1/connections", xc, sizeof xc));
    assert_string_equal(xc, "HIT");
    hresp r;
    char id[128];
    create_connection("inval_conn", id, sizeof id);
    char *b = get_body(CIT_KEY_A, "/v1/connections", xc, sizeof xc);
    assert_string_equal(xc, "MISS");
    assert_non_null(strstr(b, "inval_conn"));
    free(b);
    char path[256];
    snprintf(path, sizeof path, "/v1/connections/%s", id);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "DELETE", path, NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 204);
    hresp_free(&r);
    b = get_body(CIT_KEY_A, "/v1/connections", xc, sizeof xc);
    assert_string_equal(xc, "MISS");
    assert_null(strstr(b, "inval_conn"));
    free(b);

    free(get_body(CIT_KEY_A, "/v1/queries", xc, sizeof xc));
    free(get_body(CIT_KEY_A, "/v1/queries", xc, sizeof xc));
    assert_string_equal(xc, "HIT");
    assert_int_equal(cit_req(&E, CIT_KEY_A, "POST", "/v1/queries",
                             "{\"name\":\"inval_sq\",\"sql\":\"SELECT 1 AS one\"}", NULL, NULL, &r),
                     0);
    assert_int_equal(r.status, 201);
    hresp_free(&r);
    b = get_body(CIT_KEY_A, "/v1/queries", xc, sizeof xc);
    assert_string_equal(xc, "MISS");
    assert_non_null(strstr(b, "inval_sq"));
    free(b);
}

/* datasets: a new dataset shows in the list and is queryable with fresh results; the
 * table purge of a connection invalidates the query results that read it; embedding
 * providers; all through hotgate. */
static void test_datasets_purges_providers(void **state)
{
    (void)state;
    char xc[64];
    hresp r;
    free(get_body(CIT_KEY_A, "/v1/datasets", xc, sizeof xc));
    free(get_body(CIT_KEY_A, "/v1/datasets", xc, sizeof xc));
    assert_string_equal(xc, "HIT");
    assert_int_equal(cit_req(&E, CIT_KEY_A, "POST", "/v1/datasets",
                             "{\"label\":\"inval ds\",\"table_name\":\"inval_ds\",\"source\":"
                             "{\"inline\":{\"rows\":[{\"a\":1},{\"a\":2}]}}}",
                             NULL, NULL, &r),
                     0);
    assert_int_equal(r.status, 201);
    hresp_free(&r);
    char *b = get_body(CIT_KEY_A, "/v1/datasets", xc, sizeof xc);
    assert_string_equal(xc, "MISS");
    assert_non_null(strstr(b, "inval_ds"));
    free(b);

    const char *sql = "SELECT count(*) AS n FROM demo.public.orders WHERE id < 500";
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    hresp_free(&r);
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "HIT");
    hresp_free(&r);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "DELETE",
                             "/v1/connections/conn_demo/tables/public/orders/cache", NULL, NULL,
                             NULL, &r),
                     0);
    assert_int_equal(r.status, 204);
    hresp_free(&r);
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "MISS");
    hresp_free(&r);

    free(get_body(CIT_KEY_A, "/v1/embedding-providers", xc, sizeof xc));
    free(get_body(CIT_KEY_A, "/v1/embedding-providers", xc, sizeof xc));
    assert_string_equal(xc, "HIT");
    assert_int_equal(cit_req(&E, CIT_KEY_A, "POST", "/v1/embedding-providers",
                             "{\"name\":\"inval_prov\",\"provider_type\":\"local\"}", NULL, NULL,
                             &r),
                     0);
    assert_int_equal(r.status, 201);
    hresp_free(&r);
    b = get_body(CIT_KEY_A, "/v1/embedding-providers", xc, sizeof xc);
    assert_string_equal(xc, "MISS");
    assert_non_null(strstr(b, "inval_prov"));
    free(b);
}

struct slow_get {
    hresp r;
};

static void *slow_get_thread(void *p)
{
    struct slow_get *g = p;
    cit_req(&E, CIT_KEY_A, "GET", "/v1/secrets", NULL, NULL, NULL, &g->r);
    return NULL;
}

/* A fill that started before an invalidation is never stored as fresh, and a read after
 * the mutation's answer does not join it. */
static void test_inflight_fill_vs_invalidation(void **state)
{
    (void)state;
    hresp r;
    double skipped0 = cit_metric(&E, "hotgate_cache_store_skipped_total");
    assert_int_equal(cit_sim_faults(&E, "{\"routes\":{\"GET /v1/secrets\":{\"latency_ms\":600}}}"),
                     0);
    /* make sure no entry exists: purge the workspace */
    assert_int_equal(cit_admin_post(&E, "/admin/purge", "{\"workspace\":\"ws_test\"}", &r), 0);
    hresp_free(&r);
    struct slow_get g;
    memset(&g, 0, sizeof g);
    pthread_t t;
    pthread_create(&t, NULL, slow_get_thread, &g);
    cit_sleep_ms(150); /* the slow fill is in flight */
    assert_int_equal(cit_req(&E, CIT_KEY_A, "POST", "/v1/secrets",
                             "{\"name\":\"inflight_secret\",\"value\":\"v\"}", NULL, NULL, &r),
                     0);
    assert_int_equal(r.status, 201);
    hresp_free(&r);
    /* read after the mutation's answer: a new fetch, with the new secret */
    hresp r2;
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", "/v1/secrets", NULL, NULL, NULL, &r2), 0);
    assert_int_equal(r2.status, 200);
    assert_string_equal(cit_xcache(&r2), "MISS");
    assert_non_null(strstr(r2.body, "inflight_secret"));
    pthread_join(t, NULL);
    assert_int_equal(g.r.status, 200);
    hresp_free(&g.r);
    hresp_free(&r2);
    assert_int_equal(cit_sim_faults(&E, "{}"), 0);
    cit_sleep_ms(1100); /* past the linger of the last fill */
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", "/v1/secrets", NULL, NULL, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "HIT");
    assert_non_null(strstr(r.body, "inflight_secret"));
    hresp_free(&r);
    /* the fill that started before the mutation was not stored */
    assert_true(cit_metric(&E, "hotgate_cache_store_skipped_total") >= skipped0 + 1);
}

static void test_admin_purge_and_metrics(void **state)
{
    (void)state;
    char xc[64];
    free(get_body(CIT_KEY_A, "/v1/connection-types", xc, sizeof xc));
    free(get_body(CIT_KEY_A, "/v1/connection-types", xc, sizeof xc));
    assert_string_equal(xc, "HIT");
    hresp r;
    /* by workspace */
    assert_int_equal(cit_admin_post(&E, "/admin/purge", "{\"workspace\":\"ws_test\"}", &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    free(get_body(CIT_KEY_A, "/v1/connection-types", xc, sizeof xc));
    assert_string_equal(xc, "MISS");
    /* by key (the X-Cache-Key header) */
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", "/v1/connection-types", NULL, NULL, NULL, &r),
                     0);
    assert_string_equal(cit_xcache(&r), "HIT");
    char *key = hresp_header(&r, "X-Cache-Key");
    assert_non_null(key);
    hresp_free(&r);
    char body[200];
    snprintf(body, sizeof body, "{\"key\":\"%s\"}", key);
    free(key);
    cit_sleep_ms(1100); /* past the in-memory linger of the last fill */
    assert_int_equal(cit_admin_post(&E, "/admin/purge", body, &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    free(get_body(CIT_KEY_A, "/v1/connection-types", xc, sizeof xc));
    assert_string_equal(xc, "MISS");
    /* by tag */
    free(get_body(CIT_KEY_A, "/v1/connection-types", xc, sizeof xc));
    assert_string_equal(xc, "HIT");
    assert_int_equal(
        cit_admin_post(&E, "/admin/purge", "{\"workspace\":\"ws_test\",\"tag\":\"conntypes\"}", &r),
        0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    free(get_body(CIT_KEY_A, "/v1/connection-types", xc, sizeof xc));
    assert_string_equal(xc, "MISS");
    /* everything */
    free(get_body(CIT_KEY_B, "/v1/connection-types", xc, sizeof xc));
    free(get_body(CIT_KEY_B, "/v1/connection-types", xc, sizeof xc));
    assert_string_equal(xc, "HIT");
    assert_int_equal(cit_admin_post(&E, "/admin/purge", "{\"all\":true}", &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    free(get_body(CIT_KEY_B, "/v1/connection-types", xc, sizeof xc));
    assert_string_equal(xc, "MISS");
    /* errors are API-shaped */
    assert_int_equal(cit_admin_post(&E, "/admin/purge", "not json", &r), 0);
    assert_int_equal(r.status, 400);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    assert_non_null(json_object_get(json_object_get(j, "error"), "code"));
    json_decref(j);
    hresp_free(&r);
    /* the admin token is required */
    char url[200];
    snprintf(url, sizeof url, "%s/admin/purge", E.admin);
    assert_int_equal(http_do("POST", url, NULL, "{\"all\":true}", 12, &r), 0);
    assert_int_equal(r.status, 401);
    hresp_free(&r);
    /* metrics */
    assert_int_equal(cit_admin_get(&E, "/metrics", &r), 0);
    assert_non_null(strstr(r.body, "hotgate_cache_requests_total{outcome=\"hit\"}"));
    assert_non_null(strstr(r.body, "hotgate_cache_invalidations_total"));
    assert_non_null(strstr(r.body, "hotgate_cache_bytes_used"));
    assert_non_null(strstr(r.body, "hotgate_cache_evictions_total"));
    hresp_free(&r);
    assert_true(cit_metric(&E, "hotgate_cache_invalidations_total") >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refresh_changes_query_results),
        cmocka_unit_test(test_refresh_result_passes_through),
        cmocka_unit_test(test_saved_query_versions_through_gateway),
        cmocka_unit_test(test_purge_is_per_connection),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_connections_and_saved_queries),
        cmocka_unit_test(test_datasets_purges_providers),
        cmocka_unit_test(test_inflight_fill_vs_invalidation),
        cmocka_unit_test(test_admin_purge_and_metrics),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
