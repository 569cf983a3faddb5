/*
 * reload: SIGHUP re-reads the whole configuration and swaps it in for new requests.
 *
 * Job. Load and validate the file again (tokens included). If that fails, the running
 * configuration stays in force and every error line ("FILE:LINE: [section] key: ...") is
 * logged. Otherwise the new config is applied in this order: the budget (new credentials,
 * rates, caps, classes, queue limits; it may refuse, see budget_reconfigure), the cache's
 * freshness rules, the log level, then the snapshot is published (cfgsnap.h) and the
 * workers are told (server_config_changed): the next request authenticates against the new
 * clients and keys and sends the new token upstream; requests already running finish with
 * the snapshot they started with; open connections, the cache, coalesced flights and
 * queued requests are untouched.
 *
 * Settings that only take effect at start (listen addresses, unix socket, threads, header
 * and body limits and timeouts of [server], the access log path, the admin listen
 * addresses, all of [upstream], cache enabled/dir/size/high_water/max_entry_size, [redis])
 * are compared with the boot config: each one that differs is logged as "needs restart"
 * and left as it is; the rest of the reload goes ahead.
 *
 * Metrics: hotgate_config_reloads_total{result="ok"|"failed"}, hotgate_config_generation,
 * hotgate_config_snapshots (alive: the current one + retired ones still in use).
 *
 * Threading: reload_run() on the main thread (the signal loop).
 */
#ifndef HG_RELOAD_H
#define HG_RELOAD_H

#include <stddef.h>

struct hg_config;

/* Register the metrics (before server_start). */
void reload_init(void);

/* Reload from path. 0: applied (perhaps with "needs restart" warnings); -1: refused. */
int reload_run(const char *path);

/* 1 when a reload applies [section] key (section without its NAME), 0 when it needs a
 * restart (see reload.c's list). */
int reload_key_is_live(const char *section, const char *key);

/* Settings of next that differ from boot and need a restart: their names, comma
 * separated, into out (empty when none). Returns how many. For reload_run and tests. */
int reload_static_diff(const struct hg_config *boot, const struct hg_config *next, char *out,
                       size_t outlen);

#endif
