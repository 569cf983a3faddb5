/*
 * store_lmdb: the default cache backend, one LMDB environment under [cache] dir.
 *
 * Implements store_api (store.h); the table is store_lmdb_api. See store_lmdb.c for the
 * layout (entry, meta, expiry, LRU, tag and generation databases), the durability choice
 * and eviction.
 *
 * Threading: get/release from any thread through a per-thread read transaction (reset
 * and renewed, never begun per hit); one writer thread owns all write transactions except
 * gens_save/evict which take LMDB's writer lock in the calling thread.
 */
#ifndef HG_STORE_LMDB_H
#define HG_STORE_LMDB_H

#include "store.h"

/* Test hook: the LMDB data file path of an open store (for corruption tests). */
const char *store_lmdb_path(store *s);

#endif
