/*
 * cache: the cache module's state (see cache.h for the job and the rules): the store, the
 * freshness rules a reload may change, the generations table and the counters; init,
 * reconfigure, shutdown. The module's other files (cache_int.h):
 *   cache_inval.c  invalidation generations and tags
 *   cache_serve.c  Cache-Control, serving an entry, ETag/304, Vary of a request
 *   cache_fill.c   fills, the response tap, the stale-while-revalidate refresh
 *   cache_stage.c  the stage's decisions and the response path hooks
 *   cache_admin.c  admin purge and metrics
 */
#include "cache_int.h"

#include "admin.h"
#include "config.h"
#include "coalesce.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "store_lmdb.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct cache_global cache_g;
_Atomic uint64_t cache_gens[GEN_SLOTS];
struct cache_counters cache_ctr;

void cache_reconfigure(const struct hg_config *cfg)
{
    cache_rules *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    r->ttl_query_ms = cfg->cache.ttl_query_ms;
    r->ttl_metadata_ms = cfg->cache.ttl_metadata_ms;
    r->ttl_immutable_ms = cfg->cache.ttl_immutable_ms;
    r->swr_ms = cfg->cache.stale_while_revalidate_ms;
    r->sie_ms = cfg->cache.stale_if_error_ms;
    r->poll_ms = cfg->cache.poll_window_ms;
    r->neg_ms = cfg->cache.negative_ttl_ms;
    r->n_class_ttl = cfg->cache.n_class_ttl < 32 ? cfg->cache.n_class_ttl : 32;
    for (size_t i = 0; i < r->n_class_ttl; i++) {
        memcpy(r->class_ttl[i].name, cfg->cache.class_ttl[i].name, sizeof r->class_ttl[i].name);
        r->class_ttl[i].ms = cfg->cache.class_ttl[i].ms;
    }
    r->retired = atomic_exchange(&cache_g.rules, r);
}

int cache_open(void)
{
    return !cache_g.enabled || cache_g.st != NULL;
}

int cache_init(const struct hg_config *cfg)
{
    memset(&cache_g, 0, sizeof cache_g);
    cache_g.enabled = cfg->cache.enabled;
    cache_g.max_entry = cfg->cache.max_entry_size ? cfg->cache.max_entry_size : (64ull << 20);
    cache_reconfigure(cfg);
    for (uint32_t i = 0; i < GEN_SLOTS; i++)
        atomic_store(&cache_gens[i], 0);
    admin_register("/admin/purge", cache_admin_purge, NULL);
    metrics_register(cache_metrics, NULL);
    if (!cache_g.enabled)
        return 0;
    store_opts o;
    memset(&o, 0, sizeof o);
    o.dir = cfg->cache.dir;
    o.map_size = cfg->cache.size;
    o.high_water = cfg->cache.high_water > 0 ? cfg->cache.high_water : 0.9;
    o.max_entry_size = cache_g.max_entry;
    const char *sync = getenv("HOTGATE_CACHE_NOSYNC");
    o.sync_mode = sync && *sync == '1' ? STORE_SYNC_NONE : STORE_SYNC_META_ASYNC;
    char err[512];
    if (store_lmdb_api.open(&cache_g.st, &o, err, sizeof err) != 0) {
        log_msg(LOG_ERR, "cache: %s", err);
        cache_g.st = NULL;
        return -1;
    }
    uint64_t *table = calloc(GEN_SLOTS, sizeof *table);
    if (!table)
        abort();
    cache_g.st->api->gens_load(cache_g.st, table, GEN_SLOTS);
    /* A store never opened by hotgate has no marker at all. Any marker but "clean" means the
     * previous run was killed (or lost power) while it was running: invalidations it made
     * in memory, and mutations in flight upstream, may not be reflected in the store. */
    int clean = table[GEN_CLEAN] == RUN_CLEAN;
    int fresh_store = 1;
    for (uint32_t i = 0; i < GEN_SLOTS && fresh_store; i++)
        fresh_store = table[i] == 0;
    for (uint32_t i = 0; i < GEN_SLOTS - 1; i++)
        atomic_store(&cache_gens[i], table[i]);
    free(table);
    if (!clean && !fresh_store) {
        /* the last run did not end cleanly: invalidations may be lost, trust nothing (and
         * free the space of what can no longer be served) */
        cache_gen_bump(GEN_ALL);
        cache_g.st->api->purge_all(cache_g.st);
        log_msg(LOG_WARNING, "cache: the previous run did not stop cleanly: cache emptied");
    }
    cache_gens_persist(RUN_RUNNING); /* committed and synced before the first request is served */
    return cache_fleet_init(cfg);
}

void cache_shutdown(void)
{
    cache_fleet_shutdown();
    if (cache_g.st) {
        store_flush(cache_g.st);
        cache_gens_persist(RUN_CLEAN);
        store_close(cache_g.st);
        cache_g.st = NULL;
    }
    coalesce_shutdown();
    for (cache_rules *r = atomic_exchange(&cache_g.rules, NULL), *next; r; r = next) {
        next = r->retired;
        free(r);
    }
    cache_g.enabled = 0;
}
