/*
 * entry: the on-disk encoding of one cached response.
 *
 * An entry is one contiguous blob: a fixed 64-byte header, then the ETag, the selected
 * response headers, the invalidation tags, the generations the entry was stored under,
 * and the body last (so a hit hands the body on as one pointer + length). Everything but
 * the checksum field is covered by a 64-bit XXH64-style checksum that entry_decode
 * verifies: a corrupt or truncated blob decodes to an error and must be treated as a
 * miss (and deleted), never served.
 *
 * Rules: no allocation in entry_decode; the decoded entry_view points into the blob and
 * is valid only as long as the blob is (for LMDB: until the read txn is reset).
 * entry_encode returns a malloc'd blob the caller owns. Only headers that describe the
 * body are kept (entry_header_keep): never Set-Cookie, Authorization or hop-by-hop ones.
 * Thread-safe: no state.
 */
#ifndef HG_ENTRY_H
#define HG_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#define ENTRY_MAGIC 0x31454748u /* "HGE1" little endian */
#define ENTRY_VERSION 1
#define ENTRY_HDR_SIZE 64
#define ENTRY_FRESH_FOREVER UINT64_MAX /* immutable: fresh until evicted */
#define ENTRY_MAX_GENS 40

/* flags */
#define ENTRY_F_NEGATIVE 0x1u /* a cached 404 (negative cache) */
#define ENTRY_F_POLL 0x2u     /* a micro-cached non-terminal poll answer */
#define ENTRY_F_VARY                                                                               \
    0x4u /* a Vary marker, never served: its body lists the header names                           \
            whose values (cachekey_vary) key the real entry */

typedef struct entry_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} entry_header;

/* The generation of one invalidation slot at the time the entry's fill started. */
typedef struct entry_gen {
    uint32_t slot;
    uint64_t gen;
} entry_gen;

/* What to encode. Strings need not be NUL-terminated where a length is given. */
typedef struct entry_in {
    int status;
    uint32_t flags;
    uint64_t stored_ms; /* wall clock */
    uint64_t fresh_ms;  /* freshness lifetime, ENTRY_FRESH_FOREVER for immutable */
    uint32_t swr_ms;    /* stale-while-revalidate window after expiry */
    uint32_t sie_ms;    /* stale-if-error window after expiry */
    const char *etag;   /* may be NULL: then derived from the checksum by the cache */
    size_t etag_len;
    const entry_header *headers;
    size_t n_headers;
    const char *const *tags;
    size_t n_tags;
    const entry_gen *gens;
    size_t n_gens;
    const void *body;
    size_t body_len;
} entry_in;

/* A decoded entry: pointers into the blob. */
typedef struct entry_view {
    int status;
    uint32_t flags;
    uint64_t stored_ms;
    uint64_t fresh_ms;
    uint32_t swr_ms;
    uint32_t sie_ms;
    uint64_t checksum;
    const char *etag;
    size_t etag_len;
    size_t n_headers;
    const unsigned char *headers; /* encoded block, walk with entry_header_next */
    size_t headers_len;
    size_t n_tags;
    const unsigned char *tags; /* encoded block, walk with entry_tag_next */
    size_t tags_len;
    size_t n_gens;
    const unsigned char *gens; /* n_gens x 12 bytes, read with entry_gen_at */
    const unsigned char *body;
    size_t body_len;
} entry_view;

typedef enum entry_err {
    ENTRY_OK = 0,
    ENTRY_ETRUNC = -1,    /* shorter than its header says */
    ENTRY_EMAGIC = -2,    /* not an entry, or another version */
    ENTRY_ECHECKSUM = -3, /* bytes changed since encoding */
    ENTRY_ETOOBIG = -4,   /* a field does not fit the format */
} entry_err;

/* Encoded size of in. */
size_t entry_encoded_size(const entry_in *in);

/* Encode into a malloc'd blob (*out, *out_len). ENTRY_OK or ENTRY_ETOOBIG; aborts on OOM. */
int entry_encode(const entry_in *in, unsigned char **out, size_t *out_len);

/* Encode into buf of exactly entry_encoded_size(in) bytes (e.g. an MDB_RESERVE'd value). */
int entry_encode_into(const entry_in *in, unsigned char *buf, size_t len);

/* Verify and decode blob[0..len). ENTRY_OK or an entry_err; v untouched on error. */
int entry_decode(const void *blob, size_t len, entry_view *v);

/* Decode without verifying the checksum (for the store's own bookkeeping: tags of an
 * entry being evicted). Structure is still bounds-checked. */
int entry_decode_nocheck(const void *blob, size_t len, entry_view *v);

/* Iterate headers/tags: *pos starts at 0; returns 1 and fills the item, 0 at the end. */
int entry_header_next(const entry_view *v, size_t *pos, entry_header *h);
int entry_tag_next(const entry_view *v, size_t *pos, const char **tag, size_t *tag_len);
entry_gen entry_gen_at(const entry_view *v, size_t i);

/* Age and freshness relative to now_ms (wall clock). */
uint64_t entry_age_ms(const entry_view *v, uint64_t now_ms);
int entry_is_fresh(const entry_view *v, uint64_t now_ms);
/* 1 when now is within the stale-while-revalidate / stale-if-error window after expiry. */
int entry_in_swr(const entry_view *v, uint64_t now_ms);
int entry_in_sie(const entry_view *v, uint64_t now_ms);
/* Wall-clock seconds after which nothing can use the entry any more (0: never expires). */
uint32_t entry_hard_expiry_s(uint64_t stored_ms, uint64_t fresh_ms, uint32_t swr_ms,
                             uint32_t sie_ms);

/* 1 when a response header is worth keeping with the body (case-insensitive name). */
int entry_header_keep(const char *name);

/* Fast 64-bit checksum (XXH64 algorithm) of buf[0..len). */
uint64_t entry_hash64(const void *buf, size_t len, uint64_t seed);

#endif
