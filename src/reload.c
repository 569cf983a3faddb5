/*
 * reload: SIGHUP re-reads the whole configuration and swaps it in (see reload.h).
 */
#include "reload.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "budget_stage.h"
#include "cache.h"
#include "cfgsnap.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "server.h"

static atomic_uint_fast64_t s_ok, s_failed;

/* The keys of [server], [admin], [upstream], [cache] and [redis] that a reload applies;
 * every other key of those sections is compared by reload_static_diff() ("needs restart").
 * [credential], [client], [class] and [queue] apply whole. tests/docs/check_conf_docs.sh
 * fails when a key of config.c is in neither list. */
static const char *const live_keys[] = {
    "[server] log_level",       "[admin] token_file",     "[admin] token_env",
    "[admin] token_credential", "[cache] ttl_query",      "[cache] ttl_metadata",
    "[cache] ttl_immutable",    "[cache] ttl.",           "[cache] stale_while_revalidate",
    "[cache] stale_if_error",   "[cache] poll_window_ms", "[cache] negative_ttl",
};

int reload_key_is_live(const char *section, const char *key)
{
    static const char *const whole[] = {"credential", "client", "class", "queue"};
    for (size_t i = 0; i < sizeof whole / sizeof *whole; i++)
        if (strcmp(section, whole[i]) == 0)
            return 1;
    char buf[128];
    const char *dot = strchr(key, '.');
    snprintf(buf, sizeof buf, "[%s] %.*s", section, dot ? (int)(dot - key + 1) : (int)strlen(key),
             key);
    for (size_t i = 0; i < sizeof live_keys / sizeof *live_keys; i++)
        if (strcmp(buf, live_keys[i]) == 0)
            return 1;
    return 0;
}

static void reload_metrics(struct evbuffer *out, void *arg)
{
    (void)arg;
    evbuffer_add_printf(out,
                        "# HELP hotgate_config_reloads_total Configuration reloads (SIGHUP) by "
                        "result.\n"
                        "# TYPE hotgate_config_reloads_total counter\n"
                        "hotgate_config_reloads_total{result=\"ok\"} %llu\n"
                        "hotgate_config_reloads_total{result=\"failed\"} %llu\n"
                        "# HELP hotgate_config_generation The configuration in force (1 at "
                        "start, +1 per reload).\n"
                        "# TYPE hotgate_config_generation gauge\n"
                        "hotgate_config_generation %llu\n"
                        "# HELP hotgate_config_snapshots Configurations in memory: the current "
                        "one and older ones requests still run with.\n"
                        "# TYPE hotgate_config_snapshots gauge\n"
                        "hotgate_config_snapshots %u\n",
                        (unsigned long long)atomic_load(&s_ok),
                        (unsigned long long)atomic_load(&s_failed),
                        (unsigned long long)cfgsnap_generation(), cfgsnap_alive());
}

void reload_init(void)
{
    metrics_register(reload_metrics, NULL);
}

static int str_differs(const char *a, const char *b)
{
    if (!a || !b)
        return a != b;
    return strcmp(a, b) != 0;
}

static int list_differs(char **a, size_t na, char **b, size_t nb)
{
    if (na != nb)
        return 1;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return 1;
    return 0;
}

struct diff {
    char *out;
    size_t len, cap;
    int n;
};

static void note(struct diff *d, int differs, const char *name)
{
    if (!differs)
        return;
    d->n++;
    if (!d->out || !d->cap)
        return;
    int w = snprintf(d->out + d->len, d->cap - d->len, "%s%s", d->len ? ", " : "", name);
    if (w > 0)
        d->len = d->len + (size_t)w < d->cap ? d->len + (size_t)w : d->cap - 1;
}

int reload_static_diff(const struct hg_config *a, const struct hg_config *b, char *out,
                       size_t outlen)
{
    struct diff d = {out, 0, outlen, 0};
    if (out && outlen)
        out[0] = '\0';
    note(&d,
         list_differs(a->server.listen, a->server.n_listen, b->server.listen, b->server.n_listen),
         "[server] listen");
    note(&d, str_differs(a->server.unix_socket, b->server.unix_socket), "[server] unix_socket");
    note(&d, a->server.threads != b->server.threads, "[server] threads");
    note(&d, a->server.max_header_size != b->server.max_header_size, "[server] max_header_size");
    note(&d, a->server.max_body_size != b->server.max_body_size, "[server] max_body_size");
    note(&d, a->server.read_timeout_ms != b->server.read_timeout_ms, "[server] read_timeout");
    note(&d, a->server.write_timeout_ms != b->server.write_timeout_ms, "[server] write_timeout");
    note(&d, a->server.body_timeout_ms != b->server.body_timeout_ms, "[server] body_timeout");
    note(&d, a->server.body_min_rate != b->server.body_min_rate, "[server] body_min_rate");
    note(&d, a->server.max_connections != b->server.max_connections, "[server] max_connections");
    note(&d, a->server.keepalive_timeout_ms != b->server.keepalive_timeout_ms,
         "[server] keepalive_timeout");
    note(&d, a->server.drain_timeout_ms != b->server.drain_timeout_ms, "[server] drain_timeout");
    note(&d, str_differs(a->server.access_log, b->server.access_log), "[server] access_log");
    note(&d, list_differs(a->admin.listen, a->admin.n_listen, b->admin.listen, b->admin.n_listen),
         "[admin] listen");
    note(&d, str_differs(a->upstream.url, b->upstream.url), "[upstream] url");
    note(&d, str_differs(a->upstream.ca_file, b->upstream.ca_file), "[upstream] ca_file");
    note(&d, a->upstream.tls_verify != b->upstream.tls_verify, "[upstream] tls_verify");
    note(&d, a->upstream.http2 != b->upstream.http2, "[upstream] http2");
    note(&d, a->upstream.connect_timeout_ms != b->upstream.connect_timeout_ms,
         "[upstream] connect_timeout");
    note(&d, a->upstream.timeout_ms != b->upstream.timeout_ms, "[upstream] timeout");
    note(&d, a->upstream.idle_timeout_ms != b->upstream.idle_timeout_ms, "[upstream] idle_timeout");
    note(&d, a->upstream.max_connections_per_host != b->upstream.max_connections_per_host,
         "[upstream] max_connections_per_host");
    note(&d, a->upstream.retries != b->upstream.retries, "[upstream] retries");
    note(&d, a->upstream.retry_backoff_ms != b->upstream.retry_backoff_ms,
         "[upstream] retry_backoff_ms");
    note(&d, a->upstream.client != b->upstream.client, "[upstream] client");
    note(&d, a->cache.enabled != b->cache.enabled, "[cache] enabled");
    note(&d, str_differs(a->cache.dir, b->cache.dir), "[cache] dir");
    note(&d, a->cache.size != b->cache.size, "[cache] size");
    note(&d, a->cache.high_water != b->cache.high_water, "[cache] high_water");
    note(&d, a->cache.max_entry_size != b->cache.max_entry_size, "[cache] max_entry_size");
    note(&d, a->redis.enabled != b->redis.enabled, "[redis] enabled");
    note(&d, str_differs(a->redis.url, b->redis.url), "[redis] url");
    note(&d, str_differs(a->redis.password_file, b->redis.password_file), "[redis] password_file");
    note(&d, str_differs(a->redis.key_prefix, b->redis.key_prefix), "[redis] key_prefix");
    note(&d, a->redis.connect_timeout_ms != b->redis.connect_timeout_ms, "[redis] connect_timeout");
    note(&d, a->redis.op_timeout_ms != b->redis.op_timeout_ms, "[redis] op_timeout");
    note(&d, a->redis.max_entry_size != b->redis.max_entry_size, "[redis] max_entry_size");
    note(&d, str_differs(a->redis.sentinel, b->redis.sentinel), "[redis] sentinel");
    note(&d, str_differs(a->redis.sentinel_master, b->redis.sentinel_master),
         "[redis] sentinel_master");
    note(&d, a->redis.local_share != b->redis.local_share, "[redis] local_share");
    note(&d, a->redis.stream_maxlen != b->redis.stream_maxlen, "[redis] stream_maxlen");
    return d.n;
}

int reload_run(const char *path)
{
    char err[8192];
    struct hg_config *next = config_load(path, 1, err, sizeof err);
    if (!next) {
        /* one log line per error, each naming file:line and key */
        for (char *line = err, *nl; *line; line = nl + 1) {
            nl = strchr(line, '\n');
            if (!nl) {
                log_msg(LOG_ERR, "reload refused: %s", line);
                break;
            }
            *nl = '\0';
            log_msg(LOG_ERR, "reload refused: %s", line);
        }
        log_msg(LOG_ERR, "reload refused: the running configuration (generation %llu) stays",
                (unsigned long long)cfgsnap_generation());
        atomic_fetch_add(&s_failed, 1);
        return -1;
    }
    if (budget_stage_reconfigure(next) != 0) {
        log_msg(LOG_ERR, "reload refused: more credentials added than the budget has room for "
                         "(restart to add them); the running configuration stays");
        config_free(next);
        atomic_fetch_add(&s_failed, 1);
        return -1;
    }
    char diff[1024];
    if (reload_static_diff(cfgsnap_boot(), next, diff, sizeof diff) > 0)
        log_msg(LOG_WARNING, "reload: needs restart (left as they are until then): %s", diff);
    cache_reconfigure(next);
    log_set_level(next->server.log_level);
    size_t nclients = next->n_clients, ncreds = next->n_credentials;
    cfgsnap_publish(next);
    server_config_changed();
    atomic_fetch_add(&s_ok, 1);
    log_msg(LOG_INFO, "reloaded %s: generation %llu, %zu client(s), %zu credential(s)", path,
            (unsigned long long)cfgsnap_generation(), nclients, ncreds);
    return 0;
}
