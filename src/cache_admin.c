/*
 * cache_admin: POST /admin/purge on the admin listener, and the cache's metrics.
 */
#include "cache_int.h"

#include "cachekey.h"
#include "coalesce.h"
#include "store.h"
#include "util.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

static void admin_reply(struct evhttp_request *r, int status, const char *json)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, json, strlen(json));
    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", "application/json");
    evhttp_send_reply(r, status, status == 200 ? "OK" : "Error", b);
    evbuffer_free(b);
}

static void admin_error(struct evhttp_request *r, int status, const char *msg)
{
    char *j = util_api_error_json(status, NULL, msg);
    admin_reply(r, status, j);
    free(j);
}

void cache_admin_purge(struct evhttp_request *r, void *arg)
{
    (void)arg;
    if (evhttp_request_get_command(r) != EVHTTP_REQ_POST) {
        admin_error(r, 405, "use POST");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(r);
    size_t n = evbuffer_get_length(in);
    const char *b = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    json_error_t je;
    json_t *o = n ? json_loadb(b, n, 0, &je) : NULL;
    if (!o || !json_is_object(o)) {
        json_decref(o);
        admin_error(r, 400,
                    "body must be a JSON object: {\"all\":true} | {\"workspace\":W} | "
                    "{\"workspace\":W,\"tag\":T} | {\"key\":HEX}");
        return;
    }
    const char *ws = json_string_value(json_object_get(o, "workspace"));
    const char *tag = json_string_value(json_object_get(o, "tag"));
    const char *key = json_string_value(json_object_get(o, "key"));
    json_t *all = json_object_get(o, "all");
    char what[700];
    if (json_is_true(all)) {
        cache_gen_bump(GEN_ALL);
        if (cache_g.st)
            cache_g.st->api->purge_all(cache_g.st);
        cache_fleet_publish(NULL, 0, 1);
        snprintf(what, sizeof what, "all");
    } else if (key) {
        cachekey k;
        if (cachekey_parse_hex(key, &k) != 0) {
            json_decref(o);
            admin_error(r, 400, "key must be 64 hex characters (the X-Cache-Key header)");
            return;
        }
        if (cache_g.st)
            store_del(cache_g.st, k.k);
        snprintf(what, sizeof what, "key");
    } else if (tag && ws) {
        char buf[600];
        cache_scope_tag(ws, tag, buf, sizeof buf);
        cache_invalidate_scoped(buf);
        const char *one = buf;
        cache_fleet_publish(&one, 1, 0);
        snprintf(what, sizeof what, "tag");
    } else if (ws) {
        char buf[600];
        cache_ws_tag(ws, buf, sizeof buf);
        cache_invalidate_scoped(buf);
        const char *one = buf;
        cache_fleet_publish(&one, 1, 0);
        snprintf(what, sizeof what, "workspace");
    } else {
        json_decref(o);
        admin_error(r, 400, "nothing to purge: give all, workspace (+ tag) or key");
        return;
    }
    json_decref(o);
    coalesce_forget_all();
    if (cache_g.st)
        store_flush(cache_g.st);
    INC(cache_ctr.purges);
    char out[800];
    snprintf(out, sizeof out, "{\"ok\":true,\"purged\":\"%s\"}", what);
    admin_reply(r, 200, out);
}

/* The request outcomes and the counters. */
static void metrics_counters(struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP hotgate_cache_requests_total Cacheable requests by cache "
                             "outcome.\n# TYPE hotgate_cache_requests_total counter\n");
    const struct {
        const char *n;
        atomic_uint_fast64_t *v;
    } o[] = {{"hit", &cache_ctr.hit},
             {"miss", &cache_ctr.miss},
             {"stale", &cache_ctr.stale},
             {"coalesced", &cache_ctr.coalesced},
             {"bypass", &cache_ctr.bypass}};
    for (size_t i = 0; i < sizeof o / sizeof o[0]; i++)
        evbuffer_add_printf(out, "hotgate_cache_requests_total{outcome=\"%s\"} %llu\n", o[i].n,
                            (unsigned long long)atomic_load(o[i].v));
    const struct {
        const char *n, *h;
        uint64_t v;
    } c[] = {
        {"hotgate_cache_stores_total", "Entries handed to the store.",
         atomic_load(&cache_ctr.stores)},
        {"hotgate_cache_store_skipped_total", "Cacheable answers not stored.",
         atomic_load(&cache_ctr.store_skipped)},
        {"hotgate_cache_invalidations_total", "Mutations that invalidated tags.",
         atomic_load(&cache_ctr.invalidations)},
        {"hotgate_cache_not_modified_total", "304 answers to If-None-Match.",
         atomic_load(&cache_ctr.not_modified)},
        {"hotgate_cache_only_if_cached_misses_total", "504 answers to only-if-cached.",
         atomic_load(&cache_ctr.only_if_cached)},
        {"hotgate_cache_corrupt_total", "Entries failing their checksum (deleted).",
         atomic_load(&cache_ctr.corrupt)},
        {"hotgate_cache_stale_if_error_total", "Stale answers given on upstream failure.",
         atomic_load(&cache_ctr.sie)},
        {"hotgate_cache_revalidations_total", "Background refreshes started.",
         atomic_load(&cache_ctr.revalidations)},
        {"hotgate_cache_revalidations_deferred_total",
         "Background refreshes skipped: the credential's budget had no room.",
         atomic_load(&cache_ctr.revalidations_deferred)},
        {"hotgate_cache_generation_misses_total", "Entries found but invalidated.",
         atomic_load(&cache_ctr.gen_mismatch)},
        {"hotgate_cache_admin_purges_total", "Admin purges.", atomic_load(&cache_ctr.purges)},
        {"hotgate_cache_zero_copy_total", "Large hit bodies written straight from the map.",
         atomic_load(&cache_ctr.zero_copy)},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", c[i].n, c[i].h,
                            c[i].n, c[i].n, (unsigned long long)c[i].v);
}

/* The store's figures. */
static void metrics_store(struct evbuffer *out)
{
    if (!cache_g.st)
        return;
    store_stats st;
    cache_g.st->api->stats(cache_g.st, &st);
    evbuffer_add_printf(out,
                        "# HELP hotgate_cache_evictions_total Entries evicted (LRU) or expired.\n"
                        "# TYPE hotgate_cache_evictions_total counter\n"
                        "hotgate_cache_evictions_total{reason=\"lru\"} %llu\n"
                        "hotgate_cache_evictions_total{reason=\"expired\"} %llu\n"
                        "# HELP hotgate_cache_bytes_used Bytes of the cache map in use.\n"
                        "# TYPE hotgate_cache_bytes_used gauge\nhotgate_cache_bytes_used %llu\n"
                        "# HELP hotgate_cache_bytes_max Size of the cache map.\n"
                        "# TYPE hotgate_cache_bytes_max gauge\nhotgate_cache_bytes_max %llu\n"
                        "# HELP hotgate_cache_entries Entries in the store.\n"
                        "# TYPE hotgate_cache_entries gauge\nhotgate_cache_entries %llu\n"
                        "# HELP hotgate_cache_store_map_full_total MDB_MAP_FULL met and handled.\n"
                        "# TYPE hotgate_cache_store_map_full_total counter\n"
                        "hotgate_cache_store_map_full_total %llu\n"
                        "# HELP hotgate_cache_store_dropped_total Puts the store dropped.\n"
                        "# TYPE hotgate_cache_store_dropped_total counter\n"
                        "hotgate_cache_store_dropped_total %llu\n",
                        (unsigned long long)st.evictions, (unsigned long long)st.expired,
                        (unsigned long long)st.bytes_used, (unsigned long long)st.map_size,
                        (unsigned long long)st.entries, (unsigned long long)st.map_full,
                        (unsigned long long)st.put_skipped);
}

/* The coalesced fetches. */
static void metrics_flights(struct evbuffer *out)
{
    coalesce_stats cs;
    coalesce_sweep_expired();
    coalesce_get_stats(&cs);
    evbuffer_add_printf(out,
                        "# HELP hotgate_cache_flights_total Coalesced fetches started.\n"
                        "# TYPE hotgate_cache_flights_total counter\n"
                        "hotgate_cache_flights_total %llu\n"
                        "# HELP hotgate_cache_flights Upstream fetches in flight now.\n"
                        "# TYPE hotgate_cache_flights gauge\nhotgate_cache_flights %llu\n"
                        "# HELP hotgate_cache_lingering_results Finished fetches kept in memory "
                        "for requests arriving just after (poll window, store commit lag).\n"
                        "# TYPE hotgate_cache_lingering_results gauge\n"
                        "hotgate_cache_lingering_results %llu\n"
                        "# HELP hotgate_cache_lingering_bytes Bytes of those results.\n"
                        "# TYPE hotgate_cache_lingering_bytes gauge\n"
                        "hotgate_cache_lingering_bytes %llu\n",
                        (unsigned long long)cs.flights, (unsigned long long)cs.inflight,
                        (unsigned long long)cs.linger_results, (unsigned long long)cs.linger_bytes);
}

void cache_metrics(struct evbuffer *out, void *arg)
{
    (void)arg;
    metrics_counters(out);
    metrics_store(out);
    metrics_flights(out);
}
