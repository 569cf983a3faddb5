/*
 * test_cache_hits: the cache through the real hotgate in front of the real hotdata-sim.
 * Hit after miss (metadata and query results), TTL expiry, Cache-Control (no-store,
 * no-cache, max-age, only-if-cached), 304 on If-None-Match, isolation between clients of
 * different workspaces/credentials, >= 64 KiB SQL differing only at the end keyed apart,
 * restart keeps entries, a byte flipped in the LMDB file is never served, and a tiny cache
 * (1 MiB map) never answers a client with an error. Upstream counts come from the sim's
 * /_sim/stats, so "hit" means the sim really was not asked.
 */
#include "cache_it.h"

static cit_env E;

static int setup(void **state)
{
    (void)state;
    return cit_start(&E, "cache-hits",
                     "ttl_metadata = 2s\nttl_query = 300s\nstale_while_revalidate = 0\n"
                     "stale_if_error = 0\nnegative_ttl = 0\n",
                     NULL);
}

static int teardown(void **state)
{
    (void)state;
    cit_stop(&E);
    return 0;
}

static void test_hit_after_miss_metadata(void **state)
{
    (void)state;
    long long before = cit_sim_route_count(&E, "GET /v1/connections");
    hresp r1, r2;
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", "/v1/connections", NULL, NULL, NULL, &r1), 0);
    assert_int_equal(r1.status, 200);
    assert_string_equal(cit_xcache(&r1), "MISS");
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", "/v1/connections", NULL, NULL, NULL, &r2), 0);
    assert_int_equal(r2.status, 200);
    assert_string_equal(cit_xcache(&r2), "HIT");
    assert_int_equal(r1.len, r2.len);
    assert_memory_equal(r1.body, r2.body, r1.len);
    char *age = hresp_header(&r2, "Age"), *etag = hresp_header(&r2, "ETag"),
         *ct = hresp_header(&r2, "Content-Type");
    assert_non_null(age);
    assert_non_null(etag);
    assert_non_null(ct);
    assert_non_null(strstr(ct, "application/json"));
    assert_int_equal(cit_sim_route_count(&E, "GET /v1/connections") - before, 1);

    /* If-None-Match -> 304 from hotgate, no body */
    char inm[300];
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    hresp r3;
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", "/v1/connections", NULL, inm, NULL, &r3), 0);
    assert_int_equal(r3.status, 304);
    assert_int_equal(r3.len, 0);
    hresp_free(&r3);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", "/v1/connections", NULL,
                             "If-None-Match: \"other\"", NULL, &r3),
                     0);
    assert_int_equal(r3.status, 200);
    hresp_free(&r3);
    free(age);
    free(etag);
    free(ct);
    hresp_free(&r1);
    hresp_free(&r2);
}

static void test_hit_after_miss_query(void **state)
{
    (void)state;
    const char *sql = "SELECT id, status FROM demo.public.orders ORDER BY id LIMIT 7";
    hresp r1, r2, r3;
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r1), 0);
    assert_int_equal(r1.status, 200);
    assert_string_equal(cit_xcache(&r1), "MISS");
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r2), 0);
    assert_int_equal(r2.status, 200);
    assert_string_equal(cit_xcache(&r2), "HIT");
    assert_int_equal(r1.len, r2.len);
    assert_memory_equal(r1.body, r2.body, r1.len);
    assert_int_equal(cit_sim_sql_count(&E, sql), 1);
    /* formatting differences share the entry (sqlkey canonical form) */
    assert_int_equal(
        cit_query(&E, CIT_KEY_A,
                  "SELECT  id,  status\n FROM demo.public.orders   ORDER BY id LIMIT 7  ", NULL,
                  &r3),
        0);
    assert_int_equal(r3.status, 200);
    assert_string_equal(cit_xcache(&r3), "HIT");
    hresp_free(&r1);
    hresp_free(&r2);
    hresp_free(&r3);
    /* a large result (served straight out of the LMDB map on a hit) is byte-identical */
    const char *big =
        "SELECT id, customer_id, status FROM demo.public.orders ORDER BY id LIMIT 4000";
    hresp b1, b2;
    assert_int_equal(cit_query(&E, CIT_KEY_A, big, NULL, &b1), 0);
    assert_int_equal(b1.status, 200);
    cit_sleep_ms(1200); /* past the in-memory linger: the hit comes from the store */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cit_query(&E, CIT_KEY_A, big, NULL, &b2), 0);
        assert_string_equal(cit_xcache(&b2), "HIT");
        assert_true(b1.len > 64 * 1024);
        assert_int_equal(b1.len, b2.len);
        assert_memory_equal(b1.body, b2.body, b1.len);
        hresp_free(&b2);
    }
    hresp_free(&b1);
    assert_true(cit_metric(&E, "hotgate_cache_zero_copy_total") >= 3);
    /* an async submission is never answered from the cache: it gets its own run */
    char *ab = NULL;
    json_t *ao = json_pack("{s:s,s:b}", "sql", sql, "async", 1);
    ab = json_dumps(ao, JSON_COMPACT);
    json_decref(ao);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "POST", "/v1/query", ab, NULL, NULL, &r3), 0);
    assert_int_equal(r3.status, 202);
    assert_string_equal(cit_xcache(&r3), "BYPASS");
    assert_non_null(strstr(r3.body, "query_run_id"));
    hresp_free(&r3);
    free(ab);
    /* a volatile query is never cached */
    const char *vol = "SELECT random() AS r";
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cit_query(&E, CIT_KEY_A, vol, NULL, &r1), 0);
        assert_string_equal(cit_xcache(&r1), "BYPASS");
        hresp_free(&r1);
    }
    assert_int_equal(cit_sim_sql_count(&E, vol), 2);
}

static void test_ttl_expiry(void **state)
{
    (void)state;
    hresp r;
    long long before = cit_sim_route_count(&E, "GET /v1/secrets");
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", "/v1/secrets", NULL, NULL, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "MISS");
    hresp_free(&r);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", "/v1/secrets", NULL, NULL, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "HIT");
    hresp_free(&r);
    cit_sleep_ms(2300); /* ttl_metadata = 2 s */
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", "/v1/secrets", NULL, NULL, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "MISS");
    hresp_free(&r);
    assert_int_equal(cit_sim_route_count(&E, "GET /v1/secrets") - before, 2);
}

static void test_cache_control(void **state)
{
    (void)state;
    const char *p = "/v1/embedding-providers";
    long long c0 = cit_sim_route_count(&E, "GET /v1/embedding-providers");
    hresp r;
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "MISS");
    hresp_free(&r);
    /* no-store: bypass (upstream asked, nothing served from cache) */
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, "Cache-Control: no-store", NULL, &r),
                     0);
    assert_string_equal(cit_xcache(&r), "BYPASS");
    hresp_free(&r);
    /* no-cache: upstream, and the entry is refreshed */
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, "Cache-Control: no-cache", NULL, &r),
                     0);
    assert_string_equal(cit_xcache(&r), "MISS");
    hresp_free(&r);
    assert_int_equal(cit_sim_route_count(&E, "GET /v1/embedding-providers") - c0, 3);
    cit_sleep_ms(100);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, NULL, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "HIT");
    char *age = hresp_header(&r, "Age");
    assert_non_null(age);
    assert_string_equal(age, "0"); /* refreshed by no-cache just now */
    free(age);
    hresp_free(&r);
    /* max-age: an entry older than N is not good enough */
    cit_sleep_ms(1100);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, "Cache-Control: max-age=60", NULL, &r),
                     0);
    assert_string_equal(cit_xcache(&r), "HIT");
    hresp_free(&r);
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", p, NULL, "Cache-Control: max-age=0", NULL, &r),
                     0);
    assert_string_equal(cit_xcache(&r), "MISS");
    hresp_free(&r);
    /* only-if-cached: a present entry is served, an absent one is an API-shaped 504 */
    assert_int_equal(
        cit_req(&E, CIT_KEY_A, "GET", p, NULL, "Cache-Control: only-if-cached", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(cit_xcache(&r), "HIT");
    hresp_free(&r);
    long long c1 = cit_sim_route_count(&E, "GET /v1/datasets");
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", "/v1/datasets?limit=3", NULL,
                             "Cache-Control: only-if-cached", NULL, &r),
                     0);
    assert_int_equal(r.status, 504);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "GATEWAY_TIMEOUT");
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 504);
    json_decref(j);
    hresp_free(&r);
    assert_int_equal(cit_sim_route_count(&E, "GET /v1/datasets"), c1);
}

static void test_isolation(void **state)
{
    (void)state;
    /* same path, same SQL: two clients of different workspaces and credentials */
    const char *sql = "SELECT count(*) AS n FROM demo.public.customers";
    hresp a1, b1, a2, b2;
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &a1), 0);
    assert_string_equal(cit_xcache(&a1), "MISS");
    assert_int_equal(cit_query(&E, CIT_KEY_B, sql, NULL, &b1), 0);
    assert_string_equal(cit_xcache(&b1), "MISS");
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &a2), 0);
    assert_string_equal(cit_xcache(&a2), "HIT");
    assert_int_equal(cit_query(&E, CIT_KEY_B, sql, NULL, &b2), 0);
    assert_string_equal(cit_xcache(&b2), "HIT");
    assert_int_equal(cit_sim_sql_count(&E, sql), 2);
    hresp_free(&a1);
    hresp_free(&b1);
    hresp_free(&a2);
    hresp_free(&b2);
    /* workspaces list: per credential */
    assert_int_equal(cit_req(&E, CIT_KEY_A, "GET", "/v1/workspaces", NULL, NULL, NULL, &a1), 0);
    assert_int_equal(cit_req(&E, CIT_KEY_B, "GET", "/v1/workspaces", NULL, NULL, NULL, &b1), 0);
    assert_string_equal(cit_xcache(&b1), "MISS");
    assert_non_null(strstr(a1.body, "ws_test"));
    assert_null(strstr(a1.body, "ws_other"));
    assert_non_null(strstr(b1.body, "ws_other"));
    hresp_free(&a1);
    hresp_free(&b1);
}

/* nginx keys POST caches on $request_body, which is empty once the body outgrows the
 * in-memory buffer: two different large queries then share one answer. Not here. */
static void test_big_sql_keyed_whole(void **state)
{
    (void)state;
    size_t n = 70 * 1024;
    char *s1 = malloc(n + 64), *s2;
    size_t off = (size_t)sprintf(s1, "SELECT count(*) AS n FROM demo.public.orders WHERE id IN (");
    while (off < n) {
        off += (size_t)sprintf(s1 + off, "%d,", (int)(off % 9973) + 1);
    }
    strcpy(s1 + off, "1) AND 'x' = 'x'");
    s2 = strdup(s1);
    s2[strlen(s2) - 2] = 'y'; /* differs one byte before the end: 'x' = 'y' */
    assert_true(strlen(s1) >= 64 * 1024);
    hresp r1, r2, r3, r4;
    assert_int_equal(cit_query(&E, CIT_KEY_A, s1, NULL, &r1), 0);
    assert_int_equal(r1.status, 200);
    assert_string_equal(cit_xcache(&r1), "MISS");
    assert_int_equal(cit_query(&E, CIT_KEY_A, s2, NULL, &r2), 0);
    assert_int_equal(r2.status, 200);
    assert_string_equal(cit_xcache(&r2), "MISS");
    assert_int_equal(cit_query(&E, CIT_KEY_A, s1, NULL, &r3), 0);
    assert_string_equal(cit_xcache(&r3), "HIT");
    assert_int_equal(cit_query(&E, CIT_KEY_A, s2, NULL, &r4), 0);
    assert_string_equal(cit_xcache(&r4), "HIT");
    /* the answers differ (count vs 0) and each hit matches its own miss */
    assert_true(r1.len != r2.len || memcmp(r1.body, r2.body, r1.len) != 0);
    assert_int_equal(r1.len, r3.len);
    assert_memory_equal(r1.body, r3.body, r1.len);
    assert_int_equal(r2.len, r4.len);
    assert_memory_equal(r2.body, r4.body, r2.len);
    assert_int_equal(cit_sim_sql_count(&E, s1), 1);
    assert_int_equal(cit_sim_sql_count(&E, s2), 1);
    hresp_free(&r1);
    hresp_free(&r2);
    hresp_free(&r3);
    hresp_free(&r4);
    free(s1);
    free(s2);
}

static void test_restart_keeps_entries(void **state)
{
    (void)state;
    const char *sql = "SELECT 'survives-restart' AS s, count(*) AS n FROM demo.public.products";
    hresp r;
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "MISS");
    hresp_free(&r);
    cit_sleep_ms(200); /* the writer thread commits */
    int st = harness_stop(&E.hg, 15000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(cit_start_hg(&E), 0);
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(cit_xcache(&r), "HIT");
    assert_non_null(strstr(r.body, "survives-restart"));
    hresp_free(&r);
    assert_int_equal(cit_sim_sql_count(&E, sql), 1);
}

static void test_corrupt_entry_not_served(void **state)
{
    (void)state;
    const char *sql = "SELECT 'CORRUPTION-MARKER-0123456789' AS m";
    hresp r;
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_string_equal(cit_xcache(&r), "MISS");
    hresp_free(&r);
    cit_sleep_ms(200);
    int st = harness_stop(&E.hg, 15000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0); /* a clean stop keeps the entries */
    /* flip one byte of the stored body inside the LMDB data file */
    char path[700];
    snprintf(path, sizeof path, "%s/cache/data.mdb", E.dir);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct stat sb;
    fstat(fd, &sb);
    char *buf = malloc((size_t)sb.st_size);
    assert_int_equal(pread(fd, buf, (size_t)sb.st_size, 0), sb.st_size);
    int flipped = 0;
    for (char *p = buf; (p = memmem(p, (size_t)(buf + sb.st_size - p),
                                    "CORRUPTION-MARKER-0123456789", 28)) != NULL;
         p += 28) {
        char c = 'X';
        assert_int_equal(pwrite(fd, &c, 1, p - buf + 20), 1);
        flipped++;
    }
    close(fd);
    free(buf);
    assert_true(flipped >= 1);
    assert_int_equal(cit_start_hg(&E), 0);
    assert_int_equal(cit_query(&E, CIT_KEY_A, sql, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(cit_xcache(&r), "MISS");
    assert_non_null(strstr(r.body, "CORRUPTION-MARKER-0123456789"));
    hresp_free(&r);
    assert_int_equal(cit_sim_sql_count(&E, sql), 2);
    assert_true(cit_metric(&E, "hotgate_cache_corrupt_total") >= 1);
}

/* A 1 MiB map, entries of ~20 KB: eviction keeps making room, no client sees an error. */
static void test_tiny_cache_never_fails(void **state)
{
    (void)state;
    cit_env t;
    assert_int_equal(cit_start(&t, "cache-tiny", "size = 1M\nhigh_water = 0.8\n", NULL), 0);
    int errors = 0, stored_hits = 0;
    for (int i = 0; i < 150; i++) {
        char sql[300];
        snprintf(sql, sizeof sql,
                 "SELECT id, customer_id, status, %d AS k FROM demo.public.orders ORDER BY id "
                 "LIMIT 300",
                 i);
        hresp r;
        if (cit_query(&t, CIT_KEY_A, sql, NULL, &r) != 0 || r.status != 200)
            errors++;
        hresp_free(&r);
        if (cit_query(&t, CIT_KEY_A, sql, NULL, &r) != 0 || r.status != 200)
            errors++;
        else if (strcmp(cit_xcache(&r), "HIT") == 0)
            stored_hits++;
        hresp_free(&r);
    }
    cit_sleep_ms(300); /* let the writer commit the last batch */
    double used = cit_metric(&t, "hotgate_cache_bytes_used");
    double max = cit_metric(&t, "hotgate_cache_bytes_max");
    double evicted = cit_metric(&t, "hotgate_cache_evictions_total");
    double mapfull = cit_metric(&t, "hotgate_cache_store_map_full_total");
    double dropped = cit_metric(&t, "hotgate_cache_store_dropped_total");
    fprintf(stderr,
            "  tiny cache: used %.0f of %.0f, evicted %.0f, MAP_FULL met %.0f, puts shed %.0f, "
            "hits %d, errors %d\n",
            used, max, evicted, mapfull, dropped, stored_hits, errors);
    cit_stop(&t); /* before the asserts: a failure must not leave the processes behind */
    /* the map was under pressure: entries were evicted (or, with a writer slowed down by a
     * busy disk, puts shed from its bounded queue) */
    assert_true(evicted > 0 || dropped > 0);
    assert_int_equal(errors, 0);
    assert_true(stored_hits > 50);
    assert_true(used > 0 && used <= 0.8 * max + 16 * 4096);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_after_miss_metadata),
        cmocka_unit_test(test_hit_after_miss_query),
        cmocka_unit_test(test_ttl_expiry),
        cmocka_unit_test(test_cache_control),
        cmocka_unit_test(test_isolation),
        cmocka_unit_test(test_big_sql_keyed_whole),
        cmocka_unit_test(test_restart_keeps_entries),
        cmocka_unit_test(test_corrupt_entry_not_served),
        cmocka_unit_test(test_tiny_cache_never_fails),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
