/*
 * cfgsnap: configuration snapshots for live reload.
 *
 * Job. Hand out the configuration in force as counted references, so that a reload
 * (SIGHUP) can swap in a new one for new requests while requests already running finish
 * with the one they started with. A request takes a reference when its head is parsed and
 * drops it when it is freed; everything it reads (client profile, credential, upstream
 * token, TTLs) comes from that snapshot.
 *
 * Rules.
 *   - The current snapshot holds one reference of its own; cfgsnap_publish() moves it to
 *     the new one. A snapshot whose last reference goes is freed, and its tokens wiped
 *     (config_free), so a rotated-out token stays in memory only while a request that
 *     started with it is running.
 *   - The boot config (the first one) is special: settings that need a restart (listen
 *     addresses, threads, the cache directory and size, the upstream transport) are read
 *     from it for the life of the process. When it stops being used as a snapshot only its
 *     secrets are wiped; the rest is freed by cfgsnap_shutdown().
 *   - Generation numbers never repeat: compare them, not pointers (an address can be
 *     reused by the next snapshot).
 *
 * Threading: acquire/hold/release from any thread; publish from the main thread only.
 */
#ifndef HG_CFGSNAP_H
#define HG_CFGSNAP_H

#include <stdint.h>

struct hg_config;

/* Start with boot as generation 1 (takes ownership). */
void cfgsnap_init(struct hg_config *boot);
/* The boot config: for settings that need a restart. */
const struct hg_config *cfgsnap_boot(void);

/* A reference to the current snapshot; give it back with cfgsnap_release(). */
const struct hg_config *cfgsnap_acquire(void);
/* Another reference to a snapshot the caller already holds. hold/release ignore a config
 * that cfgsnap never handed out (generation 0). */
void cfgsnap_hold(const struct hg_config *cfg);
void cfgsnap_release(const struct hg_config *cfg);

/* The current generation (cheap: one atomic load). */
uint64_t cfgsnap_generation(void);

/* Make next (owned from now on) the current snapshot, generation + 1. */
void cfgsnap_publish(struct hg_config *next);

/* Snapshots alive (current + retired ones still referenced), for metrics and tests. */
unsigned cfgsnap_alive(void);

/* Drop the current snapshot and free the boot config (after every holder is gone). */
void cfgsnap_shutdown(void);

#endif
