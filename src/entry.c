/*
 * entry: see entry.h. Layout of the fixed header (little endian):
 *    0 u32 magic        4 u16 version      6 u16 status
 *    8 u64 stored_ms   16 u64 fresh_ms    24 u32 swr_ms    28 u32 sie_ms
 *   32 u16 n_headers   34 u16 n_tags      36 u16 n_gens    38 u16 etag_len
 *   40 u32 headers_len 44 u32 tags_len    48 u32 flags     52 u32 reserved (0)
 *   56 u64 checksum (XXH64 of bytes [0,56) followed by [64,len), seed 0)
 * then etag, headers (u16 name_len, name, u32 value_len, value)*, tags (u16 len, tag)*,
 * gens (u32 slot, u64 gen)*, body (to the end of the blob).
 */
#include "entry.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- XXH64 (public domain algorithm by Yann Collet), compact form ---- */
#define P1 11400714785074694791ULL
#define P2 14029467366897019727ULL
#define P3 1609587929392839161ULL
#define P4 9650029242287828579ULL
#define P5 2870177450012600261ULL

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}
static inline uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint32_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint16_t rd16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline void wr64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}
static inline void wr32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
static inline void wr16(unsigned char *p, uint16_t v)
{
    memcpy(p, &v, 2);
}
static inline uint64_t xround(uint64_t acc, uint64_t in)
{
    acc += in * P2;
    acc = rotl64(acc, 31);
    return acc * P1;
}
static inline uint64_t xmerge(uint64_t acc, uint64_t v)
{
    acc ^= xround(0, v);
    return acc * P1 + P4;
}

uint64_t entry_hash64(const void *buf, size_t len, uint64_t seed)
{
    const unsigned char *p = buf, *end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
        const unsigned char *limit = end - 32;
        do {
            v1 = xround(v1, rd64(p));
            v2 = xround(v2, rd64(p + 8));
            v3 = xround(v3, rd64(p + 16));
            v4 = xround(v4, rd64(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = xmerge(h, v1);
        h = xmerge(h, v2);
        h = xmerge(h, v3);
        h = xmerge(h, v4);
    } else {
        h = seed + P5;
    }
    h += (uint64_t)len;
    while (p + 8 <= end) {
        h ^= xround(0, rd64(p));
        h = rotl64(h, 27) * P1 + P4;
        p += 8;
    }
    if (p + 4 <= end) {
        h ^= (uint64_t)rd32(p) * P1;
        h = rotl64(h, 23) * P2 + P3;
        p += 4;
    }
    while (p < end) {
        h ^= (*p) * P5;
        h = rotl64(h, 11) * P1;
        p++;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

/* ---- encoding ---- */
static size_t headers_size(const entry_in *in)
{
    size_t n = 0;
    for (size_t i = 0; i < in->n_headers; i++)
        n += 2 + in->headers[i].name_len + 4 + in->headers[i].value_len;
    return n;
}

static size_t tags_size(const entry_in *in)
{
    size_t n = 0;
    for (size_t i = 0; i < in->n_tags; i++)
        n += 2 + strlen(in->tags[i]);
    return n;
}

size_t entry_encoded_size(const entry_in *in)
{
    return ENTRY_HDR_SIZE + in->etag_len + headers_size(in) + tags_size(in) + 12 * in->n_gens +
           in->body_len;
}

static uint64_t blob_checksum(const unsigned char *b, size_t len)
{
    assert(len >= ENTRY_HDR_SIZE);
    uint64_t h = entry_hash64(b, 56, 0);
    return entry_hash64(b + ENTRY_HDR_SIZE, len - ENTRY_HDR_SIZE, h);
}

int entry_encode_into(const entry_in *in, unsigned char *buf, size_t len)
{
    size_t hl = headers_size(in), tl = tags_size(in);
    if (in->n_headers > 0xffff || in->n_tags > 0xffff || in->n_gens > ENTRY_MAX_GENS ||
        in->etag_len > 0xffff || hl > 0xffffffffu || tl > 0xffffffffu || in->status < 0 ||
        in->status > 999)
        return ENTRY_ETOOBIG;
    for (size_t i = 0; i < in->n_headers; i++)
        if (in->headers[i].name_len > 0xffff || in->headers[i].value_len > 0xffffffffu)
            return ENTRY_ETOOBIG;
    for (size_t i = 0; i < in->n_tags; i++)
        if (strlen(in->tags[i]) > 0xffff)
            return ENTRY_ETOOBIG;
    if (len != entry_encoded_size(in))
        return ENTRY_ETOOBIG;
    unsigned char *b = buf;
    memset(b, 0, ENTRY_HDR_SIZE);
    wr32(b, ENTRY_MAGIC);
    wr16(b + 4, ENTRY_VERSION);
    wr16(b + 6, (uint16_t)in->status);
    wr64(b + 8, in->stored_ms);
    wr64(b + 16, in->fresh_ms);
    wr32(b + 24, in->swr_ms);
    wr32(b + 28, in->sie_ms);
    wr16(b + 32, (uint16_t)in->n_headers);
    wr16(b + 34, (uint16_t)in->n_tags);
    wr16(b + 36, (uint16_t)in->n_gens);
    wr16(b + 38, (uint16_t)in->etag_len);
    wr32(b + 40, (uint32_t)hl);
    wr32(b + 44, (uint32_t)tl);
    wr32(b + 48, in->flags);
    unsigned char *p = b + ENTRY_HDR_SIZE;
    if (in->etag_len) {
        memcpy(p, in->etag, in->etag_len);
        p += in->etag_len;
    }
    for (size_t i = 0; i < in->n_headers; i++) {
        const entry_header *h = &in->headers[i];
        wr16(p, (uint16_t)h->name_len);
        memcpy(p + 2, h->name, h->name_len);
        p += 2 + h->name_len;
        wr32(p, (uint32_t)h->value_len);
        if (h->value_len)
            memcpy(p + 4, h->value, h->value_len);
        p += 4 + h->value_len;
    }
    for (size_t i = 0; i < in->n_tags; i++) {
        size_t l = strlen(in->tags[i]);
        wr16(p, (uint16_t)l);
        memcpy(p + 2, in->tags[i], l);
        p += 2 + l;
    }
    for (size_t i = 0; i < in->n_gens; i++) {
        wr32(p, in->gens[i].slot);
        wr64(p + 4, in->gens[i].gen);
        p += 12;
    }
    if (in->body_len) {
        memcpy(p, in->body, in->body_len);
        p += in->body_len;
    }
    assert((size_t)(p - b) == len);
    wr64(b + 56, blob_checksum(b, len));
    return ENTRY_OK;
}

int entry_encode(const entry_in *in, unsigned char **out, size_t *out_len)
{
    size_t len = entry_encoded_size(in);
    unsigned char *b = malloc(len);
    if (!b)
        abort();
    int rc = entry_encode_into(in, b, len);
    if (rc != ENTRY_OK) {
        free(b);
        return rc;
    }
    *out = b;
    *out_len = len;
    return ENTRY_OK;
}

/* ---- decoding ---- */
static int decode(const void *blob, size_t len, entry_view *out, int verify)
{
    const unsigned char *b = blob;
    if (!b || len < ENTRY_HDR_SIZE)
        return ENTRY_ETRUNC;
    if (rd32(b) != ENTRY_MAGIC || rd16(b + 4) != ENTRY_VERSION)
        return ENTRY_EMAGIC;
    entry_view v;
    memset(&v, 0, sizeof v);
    v.status = rd16(b + 6);
    v.stored_ms = rd64(b + 8);
    v.fresh_ms = rd64(b + 16);
    v.swr_ms = rd32(b + 24);
    v.sie_ms = rd32(b + 28);
    v.n_headers = rd16(b + 32);
    v.n_tags = rd16(b + 34);
    v.n_gens = rd16(b + 36);
    v.etag_len = rd16(b + 38);
    v.headers_len = rd32(b + 40);
    v.tags_len = rd32(b + 44);
    v.flags = rd32(b + 48);
    v.checksum = rd64(b + 56);
    if (v.n_gens > ENTRY_MAX_GENS)
        return ENTRY_EMAGIC;
    /* sizes in 64 bits: no overflow possible from 16/32-bit fields */
    uint64_t fixed =
        (uint64_t)ENTRY_HDR_SIZE + v.etag_len + v.headers_len + v.tags_len + 12ull * v.n_gens;
    if (fixed > len)
        return ENTRY_ETRUNC;
    if (verify && blob_checksum(b, len) != v.checksum)
        return ENTRY_ECHECKSUM;
    const unsigned char *p = b + ENTRY_HDR_SIZE;
    v.etag = (const char *)p;
    p += v.etag_len;
    v.headers = p;
    p += v.headers_len;
    v.tags = p;
    p += v.tags_len;
    v.gens = p;
    p += 12 * v.n_gens;
    v.body = p;
    v.body_len = len - (size_t)(p - b);
    /* walk the blocks once so iteration never leaves them */
    size_t pos = 0, cnt = 0;
    while (pos < v.headers_len) {
        if (v.headers_len - pos < 2)
            return ENTRY_ETRUNC;
        size_t nl = rd16(v.headers + pos);
        if (v.headers_len - pos - 2 < nl + 4)
            return ENTRY_ETRUNC;
        size_t vl = rd32(v.headers + pos + 2 + nl);
        if (v.headers_len - pos - 2 - nl - 4 < vl)
            return ENTRY_ETRUNC;
        pos += 2 + nl + 4 + vl;
        cnt++;
    }
    if (cnt != v.n_headers)
        return ENTRY_ETRUNC;
    pos = 0;
    cnt = 0;
    while (pos < v.tags_len) {
        if (v.tags_len - pos < 2)
            return ENTRY_ETRUNC;
        size_t tl = rd16(v.tags + pos);
        if (v.tags_len - pos - 2 < tl)
            return ENTRY_ETRUNC;
        pos += 2 + tl;
        cnt++;
    }
    if (cnt != v.n_tags)
        return ENTRY_ETRUNC;
    *out = v;
    return ENTRY_OK;
}

int entry_decode(const void *blob, size_t len, entry_view *v)
{
    return decode(blob, len, v, 1);
}

int entry_decode_nocheck(const void *blob, size_t len, entry_view *v)
{
    return decode(blob, len, v, 0);
}

int entry_header_next(const entry_view *v, size_t *pos, entry_header *h)
{
    if (*pos >= v->headers_len)
        return 0;
    const unsigned char *p = v->headers + *pos;
    h->name_len = rd16(p);
    h->name = (const char *)p + 2;
    h->value_len = rd32(p + 2 + h->name_len);
    h->value = (const char *)p + 2 + h->name_len + 4;
    *pos += 2 + h->name_len + 4 + h->value_len;
    return 1;
}

int entry_tag_next(const entry_view *v, size_t *pos, const char **tag, size_t *tag_len)
{
    if (*pos >= v->tags_len)
        return 0;
    const unsigned char *p = v->tags + *pos;
    *tag_len = rd16(p);
    *tag = (const char *)p + 2;
    *pos += 2 + *tag_len;
    return 1;
}

entry_gen entry_gen_at(const entry_view *v, size_t i)
{
    assert(i < v->n_gens);
    entry_gen g;
    g.slot = rd32(v->gens + 12 * i);
    g.gen = rd64(v->gens + 12 * i + 4);
    return g;
}

/* ---- freshness ---- */
uint64_t entry_age_ms(const entry_view *v, uint64_t now_ms)
{
    return now_ms > v->stored_ms ? now_ms - v->stored_ms : 0;
}

int entry_is_fresh(const entry_view *v, uint64_t now_ms)
{
    if (v->fresh_ms == ENTRY_FRESH_FOREVER)
        return 1;
    return entry_age_ms(v, now_ms) < v->fresh_ms;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

int entry_in_swr(const entry_view *v, uint64_t now_ms)
{
    if (entry_is_fresh(v, now_ms))
        return 0;
    return entry_age_ms(v, now_ms) < sat_add(v->fresh_ms, v->swr_ms);
}

int entry_in_sie(const entry_view *v, uint64_t now_ms)
{
    if (entry_is_fresh(v, now_ms))
        return 0;
    return entry_age_ms(v, now_ms) < sat_add(v->fresh_ms, v->sie_ms);
}

uint32_t entry_hard_expiry_s(uint64_t stored_ms, uint64_t fresh_ms, uint32_t swr_ms,
                             uint32_t sie_ms)
{
    if (fresh_ms == ENTRY_FRESH_FOREVER)
        return 0;
    uint64_t stale = swr_ms > sie_ms ? swr_ms : sie_ms;
    uint64_t end = sat_add(sat_add(stored_ms, fresh_ms), stale) / 1000 + 1;
    return end > 0xfffffffeu ? 0xfffffffeu : (uint32_t)end;
}

int entry_header_keep(const char *name)
{
    static const char *const keep[] = {
        "Content-Type",
        "Content-Encoding",
        "Content-Language",
        "Content-Disposition",
        "X-Total-Row-Count",
        "Last-Modified",
        "Link",
        "Location",
        "Retry-After",
        "Vary", /* kept on the stored answer: caches behind hotgate must see it too */
    };
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (strcasecmp(name, keep[i]) == 0)
            return 1;
    return 0;
}
