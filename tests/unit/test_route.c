/*
 * test_route: the policy of every endpoint of the Hotdata API reference (src/route.c): ids,
 * cache classes, read-only permission, path parameters, cache tags, invalidation tags, refresh
 * bodies, query tags, terminal-status and never-cache body checks, unknown paths and methods.
 * Single-threaded cmocka tests; no I/O.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"
#include "sqlkey.h"

/* "a b c" -> compares the tag list as a space-separated string (order kept) */
static void tags_str(const struct route_tags *t, char *out, size_t cap)
{
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < t->n; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%s", i ? " " : "", route_tags_get(t, i));
}

static void assert_tags(const struct route_tags *t, const char *want)
{
    char got[4096];
    tags_str(t, got, sizeof(got));
    if (strcmp(got, want) != 0)
        fail_msg("tags: got \"%s\" want \"%s\"", got, want);
}

struct ep {
    const char *method, *path, *query;
    enum route_id id;
    const char *name;
    bool mutation, readonly_ok;
    enum route_cache_class cls;
    const char *ttl_class;
    unsigned ttl;
    const char *params; /* "c=.. s=.. t=.. i=.. id=.. n=.." in that order, absent ones omitted */
    const char *tags;
    const char *inval;
};

#define Q ROUTE_CACHE_QUERY
#define M ROUTE_CACHE_METADATA
#define I ROUTE_CACHE_IMMUTABLE
#define N ROUTE_CACHE_NEVER

/* Every endpoint of api/hotdata-api-reference.txt. */
static const struct ep eps[] = {
    {"GET", "/v1/workspaces", NULL, ROUTE_WORKSPACES_LIST, "workspaces.list", false, true, M,
     "workspaces", 60, "", "workspaces", ""},
    {"POST", "/v1/workspaces", NULL, ROUTE_WORKSPACES_CREATE, "workspaces.create", true, false, N,
     "", 0, "", "", "workspaces"},
    {"POST", "/v1/query", NULL, ROUTE_QUERY, "query", false, true, Q, "query", 300, "", "",
     "query-runs results"},
    {"GET", "/v1/connections", NULL, ROUTE_CONNECTIONS_LIST, "connections.list", false, true, M,
     "connections", 60, "", "list:connections", ""},
    {"POST", "/v1/connections", NULL, ROUTE_CONNECTIONS_CREATE, "connections.create", true, false,
     N, "", 0, "", "", "list:connections infoschema qunknown jobs"},
    {"GET", "/v1/connections/Conn_1", NULL, ROUTE_CONNECTIONS_GET, "connections.get", false, true,
     M, "connections", 60, "c=Conn_1", "conn:conn_1", ""},
    {"DELETE", "/v1/connections/conn_1", NULL, ROUTE_CONNECTIONS_DELETE, "connections.delete", true,
     false, N, "", 0, "c=conn_1", "",
     "list:connections conn:conn_1 infoschema qconn:conn_1 qunknown queries"},
    {"DELETE", "/v1/connections/conn_1/cache", NULL, ROUTE_CONNECTIONS_PURGE,
     "connections.purge_cache", true, false, N, "", 0, "c=conn_1", "",
     "list:connections conn:conn_1 infoschema qconn:conn_1 qunknown queries"},
    {"GET", "/v1/connections/conn_1/health", NULL, ROUTE_CONNECTIONS_HEALTH, "connections.health",
     false, true, N, "", 0, "c=conn_1", "conn:conn_1", ""},
    {"DELETE", "/v1/connections/conn_1/tables/public/Orders/cache", NULL, ROUTE_TABLES_PURGE,
     "tables.purge_cache", true, false, N, "", 0, "c=conn_1 s=public t=Orders", "",
     "table:conn_1.public.orders index:conn_1.public.orders conn:conn_1 list:connections "
     "infoschema qtable:conn_1.public.orders qunknown queries"},
    {"GET", "/v1/connections/conn_1/tables/public/orders/profile", NULL, ROUTE_TABLES_PROFILE,
     "tables.profile", false, true, M, "table_profiles", 60, "c=conn_1 s=public t=orders",
     "table:conn_1.public.orders conn:conn_1", ""},
    {"GET", "/v1/connections/conn_1/tables/public/orders/indexes", NULL, ROUTE_INDEXES_LIST,
     "indexes.list", false, true, M, "indexes", 60, "c=conn_1 s=public t=orders",
     "index:conn_1.public.orders conn:conn_1", ""},
    {"POST", "/v1/connections/conn_1/tables/public/orders/indexes", NULL, ROUTE_INDEXES_CREATE,
     "indexes.create", true, false, N, "", 0, "c=conn_1 s=public t=orders", "",
     "index:conn_1.public.orders table:conn_1.public.orders qtable:conn_1.public.orders jobs "
     "queries"},
    {"DELETE", "/v1/connections/conn_1/tables/public/orders/indexes/idx_a", NULL,
     ROUTE_INDEXES_DELETE, "indexes.delete", true, false, N, "", 0,
     "c=conn_1 s=public t=orders i=idx_a", "",
     "index:conn_1.public.orders table:conn_1.public.orders qtable:conn_1.public.orders queries"},
    {"GET", "/v1/connection-types", NULL, ROUTE_CONNECTION_TYPES_LIST, "connection_types.list",
     false, true, M, "connection_types", 60, "", "conntypes", ""},
    {"GET", "/v1/connection-types/postgres", NULL, ROUTE_CONNECTION_TYPES_GET,
     "connection_types.get", false, true, M, "connection_types", 60, "n=postgres", "conntypes", ""},
    {"POST", "/v1/refresh", NULL, ROUTE_REFRESH, "refresh", true, false, N, "", 0, "", "", ""},
    {"GET", "/v1/information_schema", "connection_id=c1&include_columns=true",
     ROUTE_INFORMATION_SCHEMA, "information_schema", false, true, M, "information_schema", 60, "",
     "infoschema", ""},
    {"GET", "/v1/secrets", NULL, ROUTE_SECRETS_LIST, "secrets.list", false, true, M, "secrets", 60,
     "", "list:secrets", ""},
    {"POST", "/v1/secrets", NULL, ROUTE_SECRETS_CREATE, "secrets.create", true, false, N, "", 0, "",
     "", "list:secrets"},
    {"GET", "/v1/secrets/my_key", NULL, ROUTE_SECRETS_GET, "secrets.get", false, true, M, "secrets",
     60, "n=my_key", "secret:my_key", ""},
    {"PUT", "/v1/secrets/my_key", NULL, ROUTE_SECRETS_UPDATE, "secrets.update", true, false, N, "",
     0, "n=my_key", "", "list:secrets secret:my_key providers"},
    {"DELETE", "/v1/secrets/my_key", NULL, ROUTE_SECRETS_DELETE, "secrets.delete", true, false, N,
     "", 0, "n=my_key", "", "list:secrets secret:my_key providers"},
    {"GET", "/v1/results", "limit=10&offset=0", ROUTE_RESULTS_LIST, "results.list", false, true, M,
     "results", 60, "", "results", ""},
    {"GET", "/v1/results/res_1", "offset=0&limit=10", ROUTE_RESULTS_GET, "results.get", false, true,
     I, "result", 0, "id=res_1", "result:res_1", ""},
    {"GET", "/v1/query-runs", "status=running,failed", ROUTE_QUERY_RUNS_LIST, "query_runs.list",
     false, true, M, "query_runs", 60, "", "query-runs", ""},
    {"GET", "/v1/query-runs/qrun_1", NULL, ROUTE_QUERY_RUNS_GET, "query_runs.get", false, true, I,
     "query_run", 0, "id=qrun_1", "queryrun:qrun_1", ""},
    {"GET", "/v1/files", NULL, ROUTE_UPLOADS_LIST, "uploads.list", false, true, M, "uploads", 60,
     "", "list:files", ""},
    {"POST", "/v1/files", "streaming=true", ROUTE_UPLOADS_CREATE, "uploads.create", true, false, N,
     "", 0, "", "", "list:files"},
    {"GET", "/v1/datasets", NULL, ROUTE_DATASETS_LIST, "datasets.list", false, true, M, "datasets",
     60, "", "list:datasets", ""},
    {"POST", "/v1/datasets", NULL, ROUTE_DATASETS_CREATE, "datasets.create", true, false, N, "", 0,
     "", "", "list:datasets list:files infoschema qconn:datasets qunknown jobs"},
    {"GET", "/v1/datasets/ds_1", NULL, ROUTE_DATASETS_GET, "datasets.get", false, true, M,
     "datasets", 60, "id=ds_1", "dataset:ds_1", ""},
    {"PUT", "/v1/datasets/ds_1", NULL, ROUTE_DATASETS_UPDATE, "datasets.update", true, false, N, "",
     0, "id=ds_1", "", "list:datasets dataset:ds_1 infoschema qconn:datasets qunknown"},
    {"DELETE", "/v1/datasets/ds_1", NULL, ROUTE_DATASETS_DELETE, "datasets.delete", true, false, N,
     "", 0, "id=ds_1", "", "list:datasets dataset:ds_1 infoschema qconn:datasets qunknown"},
    {"GET", "/v1/datasets/ds_1/versions", NULL, ROUTE_DATASETS_VERSIONS, "datasets.versions", false,
     true, I, "dataset_versions", 3600, "id=ds_1", "dataset:ds_1", ""},
    {"GET", "/v1/queries", NULL, ROUTE_SAVED_QUERIES_LIST, "saved_queries.list", false, true, M,
     "saved_queries", 60, "", "list:queries", ""},
    {"POST", "/v1/queries", NULL, ROUTE_SAVED_QUERIES_CREATE, "saved_queries.create", true, false,
     N, "", 0, "", "", "list:queries"},
    {"GET", "/v1/queries/sq_1", NULL, ROUTE_SAVED_QUERIES_GET, "saved_queries.get", false, true, M,
     "saved_queries", 60, "id=sq_1", "savedquery:sq_1", ""},
    {"PUT", "/v1/queries/sq_1", NULL, ROUTE_SAVED_QUERIES_UPDATE, "saved_queries.update", true,
     false, N, "", 0, "id=sq_1", "", "list:queries savedquery:sq_1"},
    {"DELETE", "/v1/queries/sq_1", NULL, ROUTE_SAVED_QUERIES_DELETE, "saved_queries.delete", true,
     false, N, "", 0, "id=sq_1", "", "list:queries savedquery:sq_1"},
    {"POST", "/v1/queries/sq_1/execute", NULL, ROUTE_SAVED_QUERIES_EXECUTE, "saved_queries.execute",
     false, true, Q, "query", 300, "id=sq_1", "savedquery:sq_1 queries qunknown",
     "query-runs results"},
    {"GET", "/v1/queries/sq_1/versions", NULL, ROUTE_SAVED_QUERIES_VERSIONS,
     "saved_queries.versions", false, true, I, "saved_query_versions", 3600, "id=sq_1",
     "savedquery:sq_1", ""},
    {"GET", "/v1/embedding-providers", NULL, ROUTE_PROVIDERS_LIST, "embedding_providers.list",
     false, true, M, "embedding_providers", 60, "", "providers list:providers", ""},
    {"POST", "/v1/embedding-providers", NULL, ROUTE_PROVIDERS_CREATE, "embedding_providers.create",
     true, false, N, "", 0, "", "", "providers list:providers list:secrets"},
    {"GET", "/v1/embedding-providers/ep_1", NULL, ROUTE_PROVIDERS_GET, "embedding_providers.get",
     false, true, M, "embedding_providers", 60, "id=ep_1", "providers provider:ep_1", ""},
    {"PUT", "/v1/embedding-providers/ep_1", NULL, ROUTE_PROVIDERS_UPDATE,
     "embedding_providers.update", true, false, N, "", 0, "id=ep_1", "",
     "providers list:providers provider:ep_1 list:secrets"},
    {"DELETE", "/v1/embedding-providers/ep_1", NULL, ROUTE_PROVIDERS_DELETE,
     "embedding_providers.delete", true, false, N, "", 0, "id=ep_1", "",
     "providers list:providers provider:ep_1 list:secrets"},
    {"GET", "/v1/jobs", "job_type=noop&status=pending,running", ROUTE_JOBS_LIST, "jobs.list", false,
     true, M, "jobs", 60, "", "jobs", ""},
    {"GET", "/v1/jobs/job_1", NULL, ROUTE_JOBS_GET, "jobs.get", false, true, I, "job", 0,
     "id=job_1", "job:job_1", ""},
};

static void params_str(const struct route_policy *p, char *out, size_t cap)
{
    static const char *names[ROUTE_P__COUNT] = {"c", "s", "t", "i", "id", "n"};
    size_t k = 0;
    out[0] = '\0';
    for (int i = 0; i < ROUTE_P__COUNT; i++) {
        const char *v = route_param(p, (enum route_param_id)i);
        if (v)
            k += (size_t)snprintf(out + k, cap - k, "%s%s=%s", k ? " " : "", names[i], v);
    }
}

static void test_every_endpoint(void **state)
{
    (void)state;
    bool seen[ROUTE__COUNT] = {0};
    for (size_t i = 0; i < sizeof(eps) / sizeof(eps[0]); i++) {
        const struct ep *e = &eps[i];
        struct route_policy p;
        route_match(e->method, e->path, e->query, &p);
        print_message("%s %s\n", e->method, e->path);
        assert_int_equal(p.id, e->id);
        assert_string_equal(p.name, e->name);
        assert_string_equal(route_id_name(p.id), e->name);
        assert_int_equal(p.mutation, e->mutation);
        assert_int_equal(p.readonly_ok, e->readonly_ok);
        assert_int_equal(p.cache_class, e->cls);
        assert_string_equal(p.ttl_class, e->ttl_class);
        assert_int_equal(p.default_ttl_s, e->ttl);
        char buf[1024];
        params_str(&p, buf, sizeof(buf));
        assert_string_equal(buf, e->params);
        assert_tags(&p.tags, e->tags);
        assert_tags(&p.inval, e->inval);
        assert_false(p.head);
        seen[p.id] = true;

        /* the policy is self-contained: a copy reads the same */
        struct route_policy copy = p;
        memset(&p, 0xa5, sizeof(p));
        params_str(&copy, buf, sizeof(buf));
        assert_string_equal(buf, e->params);
        assert_tags(&copy.tags, e->tags);

        /* HEAD of a GET route: same endpoint, read-only, never stored */
        if (strcmp(e->method, "GET") == 0) {
            route_match("HEAD", e->path, e->query, &p);
            assert_int_equal(p.id, e->id);
            assert_true(p.head);
            assert_true(p.readonly_ok);
            assert_false(p.mutation);
            assert_int_equal(p.cache_class, ROUTE_CACHE_NEVER);
        }
    }
    for (int id = ROUTE_WORKSPACES_LIST; id < ROUTE__COUNT; id++)
        if (!seen[id])
            fail_msg("endpoint %s not covered", route_id_name((enum route_id)id));
}

static void test_terminal_classes(void **state)
{
    (void)state;
    struct route_policy p;
    route_match("GET", "/v1/results/r1", NULL, &p);
    assert_int_equal(p.terminal, ROUTE_TERMINAL_RESULT);
    route_match("GET", "/v1/query-runs/q1", NULL, &p);
    assert_int_equal(p.terminal, ROUTE_TERMINAL_QUERY_RUN);
    route_match("GET", "/v1/jobs/j1", NULL, &p);
    assert_int_equal(p.terminal, ROUTE_TERMINAL_JOB);
    route_match("POST", "/v1/refresh", NULL, &p);
    assert_true(p.needs_body);
    assert_true(p.inval_workspace);
}

static void test_unknown_and_not_api(void **state)
{
    (void)state;
    struct route_policy p;
    route_match("GET", "/metrics", NULL, &p);
    assert_int_equal(p.id, ROUTE_NOT_API);
    route_match("GET", "/v10/workspaces", NULL, &p);
    assert_int_equal(p.id, ROUTE_NOT_API);
    route_match("GET", "/", NULL, &p);
    assert_int_equal(p.id, ROUTE_NOT_API);

    const char *unknown_get[] = {"/v1",
                                 "/v1/",
                                 "/v1/nope",
                                 "/v1/connections/",
                                 "/v1/connections//health",
                                 "/v1/connections/c/tables/s",
                                 "/v1/a/b/c/d/e/f/g/h/i/j",
                                 "/v1/results/r1/extra",
                                 "/v1/connections/c%zz"};
    for (size_t i = 0; i < sizeof(unknown_get) / sizeof(unknown_get[0]); i++) {
        route_match("GET", unknown_get[i], NULL, &p);
        assert_int_equal(p.id, ROUTE_UNKNOWN);
        assert_string_equal(p.name, "unknown");
        assert_int_equal(p.cache_class, ROUTE_CACHE_NEVER);
        assert_false(p.mutation);
        assert_true(p.readonly_ok);
        assert_false(p.inval_workspace);
    }
    /* methods not listed for a known path: forward, never cache, treat as a mutation */
    const char *mut[][2] = {
        {"PATCH", "/v1/datasets/d1"},     {"PUT", "/v1/connections/c1"}, {"DELETE", "/v1/query"},
        {"POST", "/v1/results/r1"},       {"POST", "/v1/nope"},          {"BREW", "/v1/workspaces"},
        {"DELETE", "/v1/connections/c1/"}};
    for (size_t i = 0; i < sizeof(mut) / sizeof(mut[0]); i++) {
        route_match(mut[i][0], mut[i][1], NULL, &p);
        assert_int_equal(p.id, ROUTE_UNKNOWN);
        assert_int_equal(p.cache_class, ROUTE_CACHE_NEVER);
        assert_true(p.mutation);
        assert_false(p.readonly_ok);
        assert_true(p.inval_workspace);
    }
    route_match("OPTIONS", "/v1/query", NULL, &p);
    assert_int_equal(p.id, ROUTE_UNKNOWN);
    assert_false(p.mutation);
    route_match("get", "/v1/workspaces", NULL, &p); /* methods are case-sensitive */
    assert_int_equal(p.id, ROUTE_UNKNOWN);
    assert_true(p.inval_workspace);
    route_match(NULL, NULL, NULL, &p);
    assert_int_equal(p.id, ROUTE_NOT_API);
}

static void test_params_decoding_and_query(void **state)
{
    (void)state;
    struct route_policy p;
    route_match("GET", "/v1/connections/c%201/tables/My%20Schema/T%2Fx/profile", NULL, &p);
    assert_int_equal(p.id, ROUTE_TABLES_PROFILE);
    assert_string_equal(route_param(&p, ROUTE_P_CONNECTION_ID), "c 1");
    assert_string_equal(route_param(&p, ROUTE_P_SCHEMA), "My Schema");
    assert_string_equal(route_param(&p, ROUTE_P_TABLE), "T/x");
    assert_null(route_param(&p, ROUTE_P_ID));
    assert_tags(&p.tags, "table:c 1.my schema.t/x conn:c 1");
    /* %00 is refused */
    route_match("GET", "/v1/secrets/a%00b", NULL, &p);
    assert_int_equal(p.id, ROUTE_UNKNOWN);
    /* query string inside the path, and format=arrow */
    route_match("GET", "/v1/results/r1?format=arrow&offset=5", NULL, &p);
    assert_int_equal(p.id, ROUTE_RESULTS_GET);
    assert_string_equal(route_param(&p, ROUTE_P_ID), "r1");
    assert_true(p.arrow);
    route_match("GET", "/v1/results/r1", "offset=5&format=arrow", &p);
    assert_true(p.arrow);
    route_match("GET", "/v1/results/r1", "format=json", &p);
    assert_false(p.arrow);
    /* a huge parameter does not fit: unknown, never cached */
    char big[1200] = "/v1/secrets/";
    memset(big + 12, 'a', 1000);
    big[1012] = '\0';
    route_match("GET", big, NULL, &p);
    assert_int_equal(p.id, ROUTE_UNKNOWN);
    assert_int_equal(p.cache_class, ROUTE_CACHE_NEVER);
    route_match("DELETE", big, NULL, &p);
    assert_true(p.inval_workspace);
}

/* resolver for tests: conn_1 -> "Prod_PG" */
static bool resolve(void *ctx, const char *id, char *name, size_t cap)
{
    (*(int *)ctx)++;
    if (strcmp(id, "conn_1") != 0)
        return false;
    snprintf(name, cap, "Prod_PG");
    return true;
}

static void refresh(const char *body, bool with_resolver, const char *want, bool want_all)
{
    struct route_tags t;
    bool all = !want_all;
    int calls = 0;
    route_refresh_tags(body, body ? strlen(body) : 0, with_resolver ? resolve : NULL, &calls, &t,
                       &all);
    if (all != want_all)
        fail_msg("%s: all_ws=%d", body ? body : "(null)", all);
    if (!want_all)
        assert_tags(&t, want);
}

static void test_refresh_bodies(void **state)
{
    (void)state;
    refresh("{\"connection_id\":\"conn_1\",\"schema_name\":\"public\",\"table_name\":\"Orders\","
            "\"data\":true}",
            false,
            "qtable:conn_1.public.orders table:conn_1.public.orders index:conn_1.public.orders "
            "conn:conn_1 list:connections infoschema qunknown jobs queries",
            false);
    refresh("{\"connection_id\":\"conn_1\",\"schema_name\":\"public\",\"table_name\":\"orders\"}",
            true,
            "qtable:conn_1.public.orders table:conn_1.public.orders index:conn_1.public.orders "
            "conn:conn_1 list:connections infoschema qunknown jobs qtable:prod_pg.public.orders",
            false);
    refresh("{\"connection_id\":\"conn_2\",\"schema_name\":\"s\",\"table_name\":\"t\"}", true,
            "qtable:conn_2.s.t table:conn_2.s.t index:conn_2.s.t conn:conn_2 list:connections "
            "infoschema qunknown jobs queries",
            false);
    refresh("{\"connection_id\":\"conn_1\",\"data\":true,\"include_uncached\":true}", true,
            "qconn:conn_1 conn:conn_1 list:connections infoschema qunknown jobs qconn:prod_pg",
            false);
    refresh("{\"connection_id\":\"conn_1\",\"table_name\":\"t\"}", false,
            "qconn:conn_1 conn:conn_1 list:connections infoschema qunknown jobs queries", false);
    refresh("{\"connection_id\":\"conn_1\",\"schema_name\":null,\"table_name\":null,"
            "\"dataset_id\":null,\"async\":true}",
            false, "qconn:conn_1 conn:conn_1 list:connections infoschema qunknown jobs queries",
            false);
    refresh("{\"dataset_id\":\"ds_1\"}", false,
            "dataset:ds_1 list:datasets qconn:datasets infoschema qunknown jobs", false);
    /* no target, bad JSON, wrong types: the whole workspace */
    refresh("{}", false, "", true);
    refresh("{\"data\":true}", false, "", true);
    refresh("null", false, "", true);
    refresh("[1]", false, "", true);
    refresh("{\"connection_id\":", false, "", true);
    refresh("", false, "", true);
    refresh(NULL, false, "", true);
    refresh("{\"connection_id\":42}", false, "", true);
    refresh("{\"connection_id\":\"c\",\"table_name\":[1]}", false, "", true);
    refresh("{\"connection_id\":\"\"}", false, "", true);
    refresh("{\"connection_id\":\"a\",\"connection_id\":\"b\"}", false, "", true);

    /* through route_invalidation_tags */
    struct route_policy p;
    struct route_tags t;
    bool all = true;
    int calls = 0;
    route_match("POST", "/v1/refresh", NULL, &p);
    const char *b = "{\"dataset_id\":\"ds_9\"}";
    route_invalidation_tags(&p, b, strlen(b), NULL, NULL, &t, &all);
    assert_false(all);
    assert_tags(&t, "dataset:ds_9 list:datasets qconn:datasets infoschema qunknown jobs");
    route_invalidation_tags(&p, NULL, 0, NULL, NULL, &t, &all);
    assert_true(all);

    /* connection delete with and without a resolver */
    route_match("DELETE", "/v1/connections/conn_1", NULL, &p);
    route_invalidation_tags(&p, NULL, 0, resolve, &calls, &t, &all);
    assert_false(all);
    assert_int_equal(calls, 1);
    assert_tags(&t, "qconn:prod_pg list:connections conn:conn_1 infoschema qconn:conn_1 qunknown");
    route_invalidation_tags(&p, NULL, 0, NULL, NULL, &t, &all);
    assert_tags(&t, "list:connections conn:conn_1 infoschema qconn:conn_1 qunknown queries");
    route_match("DELETE", "/v1/connections/conn_1/tables/s/t/cache", NULL, &p);
    route_invalidation_tags(&p, NULL, 0, resolve, &calls, &t, &all);
    assert_tags(&t, "qtable:prod_pg.s.t table:conn_1.s.t index:conn_1.s.t conn:conn_1 "
                    "list:connections infoschema qtable:conn_1.s.t qunknown");
    /* a mutation without connection: its list as is */
    route_match("PUT", "/v1/queries/sq_1", NULL, &p);
    route_invalidation_tags(&p, NULL, 0, resolve, &calls, &t, &all);
    assert_false(all);
    assert_tags(&t, "list:queries savedquery:sq_1");
    route_match("PATCH", "/v1/queries/sq_1", NULL, &p);
    route_invalidation_tags(&p, NULL, 0, resolve, &calls, &t, &all);
    assert_true(all);
}

static void test_query_tags(void **state)
{
    (void)state;
    struct sqlkey_refs r;
    struct route_tags t;
    bool all;
    const char *sql = "SELECT * FROM Prod_PG.public.orders o JOIN datasets.main.Sales s ON true "
                      "JOIN \"X\".y.z ON true";
    assert_int_equal(sqlkey_table_refs(sql, strlen(sql), &r), 0);
    route_query_tags(&r, &t);
    assert_tags(&t, "queries qtable:prod_pg.public.orders qconn:prod_pg qdataset:main.sales "
                    "qconn:datasets qtable:x.y.z qconn:x");
    route_sql_write_tags(&r, &t, &all);
    assert_false(all);
    assert_tags(&t, "qunknown infoschema list:datasets query-runs results "
                    "qtable:prod_pg.public.orders table:prod_pg.public.orders qdataset:main.sales "
                    "qtable:x.y.z table:x.y.z");
    sqlkey_refs_free(&r);

    sql = "SELECT * FROM orders";
    assert_int_equal(sqlkey_table_refs(sql, strlen(sql), &r), 0);
    route_query_tags(&r, &t);
    assert_tags(&t, "queries qunknown");
    route_sql_write_tags(&r, &t, &all);
    assert_true(all);
    sqlkey_refs_free(&r);

    sql = "SELECT 1";
    assert_int_equal(sqlkey_table_refs(sql, strlen(sql), &r), 0);
    route_query_tags(&r, &t);
    assert_tags(&t, "queries");
    sqlkey_refs_free(&r);

    route_query_tags(NULL, &t);
    assert_tags(&t, "queries qunknown");

    /* too many references to carry: falls back to queries + qunknown */
    char q[8192];
    size_t k = (size_t)snprintf(q, sizeof(q), "SELECT * FROM c.s.t0");
    for (int i = 1; i < 40; i++)
        k += (size_t)snprintf(q + k, sizeof(q) - k, ", c%d.s.t%d", i, i);
    assert_int_equal(sqlkey_table_refs(q, k, &r), 0);
    assert_int_equal(r.n, 40);
    route_query_tags(&r, &t);
    assert_tags(&t, "queries qunknown");
    route_sql_write_tags(&r, &t, &all);
    assert_true(all);
    sqlkey_refs_free(&r);

    /* matching: refresh of a table hits exactly the query results that read it */
    sql = "select count(*) from prod_pg.public.ORDERS";
    assert_int_equal(sqlkey_table_refs(sql, strlen(sql), &r), 0);
    route_query_tags(&r, &t);
    struct route_tags inv;
    int calls = 0;
    const char *b = "{\"connection_id\":\"conn_1\",\"schema_name\":\"Public\","
                    "\"table_name\":\"Orders\"}";
    route_refresh_tags(b, strlen(b), resolve, &calls, &inv, &all);
    bool hit = false;
    for (size_t i = 0; i < t.n; i++)
        for (size_t j = 0; j < inv.n; j++)
            hit |= strcmp(route_tags_get(&t, i), route_tags_get(&inv, j)) == 0;
    assert_true(hit);
    sqlkey_refs_free(&r);
}

static void test_tags_add(void **state)
{
    (void)state;
    struct route_tags t;
    memset(&t, 0, sizeof(t));
    assert_int_equal(route_tags_add(&t, "conn:", "ABC", SIZE_MAX), 0);
    assert_int_equal(route_tags_add(&t, "conn:", "abc", SIZE_MAX), 0); /* duplicate */
    assert_int_equal(route_tags_add(&t, "x:", "abcdef", 3), 0);
    assert_tags(&t, "conn:abc x:abc");
    char big[ROUTE_BUF_SIZE + 10];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(route_tags_add(&t, "", big, SIZE_MAX), -1);
    assert_true(t.overflow);
    memset(&t, 0, sizeof(t));
    char v[8];
    for (int i = 0; i < ROUTE_MAX_TAGS; i++) {
        snprintf(v, sizeof(v), "%d", i);
        assert_int_equal(route_tags_add(&t, "t", v, SIZE_MAX), 0);
    }
    assert_int_equal(route_tags_add(&t, "t", "x", SIZE_MAX), -1);
    assert_true(t.overflow);
    assert_null(route_tags_get(&t, ROUTE_MAX_TAGS));
}

static bool term(const char *method, const char *path, const char *qs, int status, const char *body)
{
    struct route_policy p;
    route_match(method, path, qs, &p);
    return route_body_is_terminal(&p, status, body, body ? strlen(body) : 0);
}

/* The route stage's route_match_columns + the cache's route_complete make exactly what
 * route_match makes, for every row of the table and the unknown/not-API cases; before
 * route_complete the columns the earlier stages read are already final and no tag exists. */
static void test_columns_then_complete(void **state)
{
    (void)state;
    static const char *const extra[][2] = {{"GET", "/v1/connections/c1/tables/s/t/profile"},
                                           {"DELETE", "/v1/nope/x"},
                                           {"PATCH", "/v1/connections/c%2F1"},
                                           {"GET", "/healthz"},
                                           {"OPTIONS", "/v1/query"},
                                           {"HEAD", "/v1/connections"}};
    size_t n = route_table_size();
    for (size_t i = 0; i < n + sizeof extra / sizeof *extra; i++) {
        const char *method, *pattern;
        char path[512];
        if (i < n) {
            route_table_row(i, &method, &pattern);
            /* every {param} as "x1" */
            size_t o = (size_t)snprintf(path, sizeof path, "/v1/");
            for (const char *c = pattern; *c && o < sizeof path - 4;) {
                if (*c == '{') {
                    o += (size_t)snprintf(path + o, sizeof path - o, "x1");
                    c = strchr(c, '}') + 1;
                } else
                    path[o++] = *c++;
            }
            path[o] = 0;
        } else {
            method = extra[i - n][0];
            snprintf(path, sizeof path, "%s", extra[i - n][1]);
        }
        struct route_policy *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
        route_match(method, path, "limit=5", a);
        route_match_columns(method, path, "limit=5", b);
        assert_int_equal(b->tags.n, 0);
        assert_int_equal(b->inval.n, 0);
        assert_int_equal(a->id, b->id);
        assert_int_equal(a->readonly_ok, b->readonly_ok);
        assert_int_equal(a->replay_ok, b->replay_ok);
        assert_int_equal(a->mutation, b->mutation);
        route_complete(b);
        route_complete(b); /* idempotent */
        assert_int_equal(a->cache_class, b->cache_class);
        assert_int_equal(a->inval_workspace, b->inval_workspace);
        assert_int_equal(a->tags.n, b->tags.n);
        assert_int_equal(a->inval.n, b->inval.n);
        for (size_t k = 0; k < a->tags.n; k++)
            assert_string_equal(route_tags_get(&a->tags, k), route_tags_get(&b->tags, k));
        for (size_t k = 0; k < a->inval.n; k++)
            assert_string_equal(route_tags_get(&a->inval, k), route_tags_get(&b->inval, k));
        if (i < n && a->tags.n + a->inval.n == 0 && a->cache_class != ROUTE_CACHE_NEVER)
            fail_msg("%s %s: a cacheable row without tags", method, path);
        free(a);
        free(b);
    }
}

static void test_terminal_bodies(void **state)
{
    (void)state;
    const char *R = "/v1/results/r1", *QR = "/v1/query-runs/q1", *J = "/v1/jobs/j1";
    assert_true(term("GET", R, NULL, 200,
                     "{\"result_id\":\"r1\",\"status\":\"ready\",\"rows\":[[\"status\"]]}"));
    assert_true(term("GET", R, NULL, 200, " { \"columns\" : [\"a\"], \"status\" : \"ready\" } "));
    assert_false(term("GET", R, NULL, 202, "{\"status\":\"processing\"}"));
    assert_false(term("GET", R, NULL, 200, "{\"status\":\"pending\"}"));
    assert_false(term("GET", R, NULL, 200, "{\"rows\":[{\"status\":\"ready\"}]}"));
    assert_false(term("GET", R, NULL, 200, "{\"x\":\"\\\"status\\\":\\\"ready\\\"\"}"));
    assert_false(term("GET", R, NULL, 409, "{\"status\":\"failed\"}"));
    assert_false(term("GET", R, NULL, 404, "{\"error\":{}}"));
    assert_true(term("GET", R, "format=arrow", 200, "ARROW1\xff\x00"));
    assert_false(term("GET", R, "format=arrow", 202, "{\"status\":\"pending\"}"));

    assert_true(term("GET", QR, NULL, 200, "{\"id\":\"q1\",\"status\":\"succeeded\"}"));
    assert_true(term("GET", QR, NULL, 200, "{\"status\":\"failed\",\"error_message\":\"x\"}"));
    assert_true(term("GET", QR, NULL, 200, "{\"status\":\"cancelled\"}"));
    assert_false(term("GET", QR, NULL, 200, "{\"status\":\"running\"}"));
    assert_false(term("GET", QR, NULL, 200, "{\"status\":\"queued\"}"));
    assert_false(term("GET", QR, NULL, 200, "not json"));
    assert_false(term("GET", QR, NULL, 200, NULL));

    assert_true(term("GET", J, NULL, 200, "{\"status\":\"succeeded\"}"));
    assert_true(term("GET", J, NULL, 200, "{\"status\":\"partially_succeeded\"}"));
    assert_true(term("GET", J, NULL, 200, "{\"status\":\"failed\"}"));
    assert_false(term("GET", J, NULL, 200, "{\"status\":\"pending\"}"));
    assert_false(term("GET", J, NULL, 200, "{\"status\":\"running\"}"));
    assert_false(term("GET", J, NULL, 500, "{\"status\":\"succeeded\"}"));

    assert_true(term("GET", "/v1/datasets/d1/versions", NULL, 200, "{}"));
    assert_false(term("GET", "/v1/datasets/d1", NULL, 200, "{\"status\":\"ready\"}"));
    assert_false(term("HEAD", R, NULL, 200, "{\"status\":\"ready\"}"));
}

static void test_never_cache_bodies(void **state)
{
    (void)state;
    assert_true(route_body_cacheable("{\"rows\":[],\"warning\":null}", 27));
    const char *ok[] = {"{\"rows\":[[1]],\"warning\":null,\"truncated\":false}",
                        "{\"rows\":[[\"warning\"]]}",
                        "{\"a\":{\"truncated\":true}}",
                        "",
                        "garbage",
                        "{\"query_run_id\":\"q\"}"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_true(route_body_cacheable(ok[i], strlen(ok[i])));
    const char *bad[] = {"{\"rows\":[],\"warning\":\"result truncated\"}",
                         "{\"warning\":{\"code\":1}}", "{\"rows\":[], \"truncated\" : true}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(route_body_cacheable(bad[i], strlen(bad[i])));
    assert_true(route_body_cacheable(NULL, 0));

    const char *v;
    size_t vl;
    const char *b = "{\"a\":[1,{\"b\":\"}\"}],\"k\\\"\":1,\"s\":\"x\\\"y\",\"n\":-1.5e3}";
    assert_true(route_json_top_field(b, strlen(b), "s", &v, &vl));
    assert_int_equal(vl, 6);
    assert_memory_equal(v, "\"x\\\"y\"", 6);
    assert_true(route_json_top_field(b, strlen(b), "n", &v, &vl));
    assert_memory_equal(v, "-1.5e3", vl);
    assert_false(route_json_top_field(b, strlen(b), "b", &v, &vl));
    /* truncated bodies: never past the end */
    for (size_t i = 0; i < strlen(b); i++)
        route_json_top_field(b, i, "n", &v, &vl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_endpoint),
        cmocka_unit_test(test_terminal_classes),
        cmocka_unit_test(test_unknown_and_not_api),
        cmocka_unit_test(test_params_decoding_and_query),
        cmocka_unit_test(test_refresh_bodies),
        cmocka_unit_test(test_query_tags),
        cmocka_unit_test(test_tags_add),
        cmocka_unit_test(test_columns_then_complete),
        cmocka_unit_test(test_terminal_bodies),
        cmocka_unit_test(test_never_cache_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
