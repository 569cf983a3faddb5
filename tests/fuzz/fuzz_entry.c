/*
 * fuzz_entry: libFuzzer target for the cache entry codec (src/entry.c): entry_decode of
 * untrusted bytes (a corrupt LMDB value must decode to an error, never to a view that
 * points outside the blob) and entry_encode/entry_decode round trips.
 *
 * Input: byte 0 picks the mode.
 *   even  the rest is a blob; bit 1 set: its checksum field is fixed up first, so the
 *         structure checks behind the checksum get exercised. Checks: a decoded view lies
 *         inside the blob, its blocks walk to exactly n_headers/n_tags items inside their
 *         lengths, the body ends at the blob's end; decode and decode_nocheck agree; a
 *         decoded blob re-encodes to the same bytes (but the reserved word).
 *   odd   the rest describes an entry (fields, headers, tags, gens, body); it is encoded,
 *         decoded and compared field by field. Also the freshness helpers never overflow
 *         into a wrong answer.
 * Build: CC=clang BUILD_DIR=build-fuzz ./scripts/build.sh -DHG_FUZZ=ON (scripts/fuzz.sh).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"

static void inside(const void *p, size_t n, const unsigned char *b, size_t len)
{
    const unsigned char *q = p;
    if (n && (q < b || q > b + len || n > (size_t)(b + len - q)))
        abort();
}

static void check_view(const unsigned char *b, size_t len, const entry_view *v)
{
    inside(v->etag, v->etag_len, b, len);
    inside(v->headers, v->headers_len, b, len);
    inside(v->tags, v->tags_len, b, len);
    inside(v->gens, 12 * v->n_gens, b, len);
    inside(v->body, v->body_len, b, len);
    if (v->body + v->body_len != b + len)
        abort();
    size_t pos = 0, n = 0;
    entry_header h;
    while (entry_header_next(v, &pos, &h)) {
        inside(h.name, h.name_len, v->headers, v->headers_len);
        inside(h.value, h.value_len, v->headers, v->headers_len);
        if (pos > v->headers_len || ++n > v->n_headers)
            abort();
    }
    if (n != v->n_headers)
        abort();
    pos = 0;
    n = 0;
    const char *t;
    size_t tl;
    while (entry_tag_next(v, &pos, &t, &tl)) {
        inside(t, tl, v->tags, v->tags_len);
        if (pos > v->tags_len || ++n > v->n_tags)
            abort();
    }
    if (n != v->n_tags)
        abort();
    for (size_t i = 0; i < v->n_gens; i++)
        (void)entry_gen_at(v, i);
}

/* Re-encode a decoded view; 0 when it cannot be expressed (a tag with a NUL). */
static int reencode(const entry_view *v, unsigned char **out, size_t *out_len)
{
    entry_header *hs = calloc(v->n_headers + 1, sizeof *hs);
    char **tags = calloc(v->n_tags + 1, sizeof *tags);
    entry_gen *gs = calloc(v->n_gens + 1, sizeof *gs);
    size_t pos = 0, i = 0;
    while (entry_header_next(v, &pos, &hs[i]))
        i++;
    int ok = 1;
    const char *t;
    size_t tl;
    pos = 0;
    i = 0;
    while (entry_tag_next(v, &pos, &t, &tl)) {
        if (memchr(t, '\0', tl))
            ok = 0;
        tags[i++] = strndup(t, tl);
    }
    for (i = 0; i < v->n_gens; i++)
        gs[i] = entry_gen_at(v, i);
    int rc = -1;
    if (ok && v->status <= 999) {
        entry_in in = {.status = v->status,
                       .flags = v->flags,
                       .stored_ms = v->stored_ms,
                       .fresh_ms = v->fresh_ms,
                       .swr_ms = v->swr_ms,
                       .sie_ms = v->sie_ms,
                       .etag = v->etag,
                       .etag_len = v->etag_len,
                       .headers = hs,
                       .n_headers = v->n_headers,
                       .tags = (const char *const *)tags,
                       .n_tags = v->n_tags,
                       .gens = gs,
                       .n_gens = v->n_gens,
                       .body = v->body,
                       .body_len = v->body_len};
        rc = entry_encode(&in, out, out_len);
        if (rc != ENTRY_OK)
            abort(); /* whatever decodes must be encodable */
    }
    for (i = 0; i < v->n_tags; i++)
        free(tags[i]);
    free(tags);
    free(hs);
    free(gs);
    return rc == ENTRY_OK;
}

static void fix_checksum(unsigned char *b, size_t len)
{
    if (len < ENTRY_HDR_SIZE)
        return;
    uint64_t h = entry_hash64(b, 56, 0);
    h = entry_hash64(b + ENTRY_HDR_SIZE, len - ENTRY_HDR_SIZE, h);
    memcpy(b + 56, &h, 8);
}

static void blob_mode(const uint8_t *data, size_t size, int fix)
{
    unsigned char *b = malloc(size ? size : 1);
    memcpy(b, data, size);
    if (fix && size >= 8) {
        uint32_t magic = ENTRY_MAGIC;
        uint16_t ver = ENTRY_VERSION;
        memcpy(b, &magic, 4);
        memcpy(b + 4, &ver, 2);
    }
    if (fix)
        fix_checksum(b, size);
    entry_view v, w;
    int rc = entry_decode(b, size, &v);
    int rn = entry_decode_nocheck(b, size, &w);
    if (rc == ENTRY_OK) {
        if (rn != ENTRY_OK || memcmp(&v, &w, sizeof v) != 0)
            abort();
        check_view(b, size, &v);
        unsigned char *e;
        size_t el;
        if (reencode(&v, &e, &el)) {
            /* the same bytes, but the reserved word (decode does not look at it) and so
             * the checksum */
            if (el != size || memcmp(e, b, 52) != 0 || memcmp(e + 64, b + 64, size - 64) != 0)
                abort();
            free(e);
        }
    } else if (rc != ENTRY_ECHECKSUM) {
        if (rn != rc)
            abort();
    }
    if (rn == ENTRY_OK)
        check_view(b, size, &w);
    free(b);
}

/* A little reader over the fuzz input. */
struct rd {
    const uint8_t *p;
    size_t n;
};
static uint64_t take(struct rd *r, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        v = v << 8 | (r->n ? *r->p : 0);
        if (r->n) {
            r->p++;
            r->n--;
        }
    }
    return v;
}
static const char *take_str(struct rd *r, size_t *len)
{
    size_t l = (size_t)take(r, 1);
    if (l > r->n)
        l = r->n;
    const char *s = (const char *)r->p;
    r->p += l;
    r->n -= l;
    *len = l;
    return s;
}

static void struct_mode(const uint8_t *data, size_t size)
{
    struct rd r = {data, size};
    entry_in in;
    memset(&in, 0, sizeof in);
    in.status = (int)(take(&r, 2) % 1000);
    in.flags = (uint32_t)take(&r, 1);
    in.stored_ms = take(&r, 8);
    in.fresh_ms = take(&r, 8);
    in.swr_ms = (uint32_t)take(&r, 4);
    in.sie_ms = (uint32_t)take(&r, 4);
    in.etag = take_str(&r, &in.etag_len);
    entry_header hs[8];
    in.n_headers = take(&r, 1) % 8;
    for (size_t i = 0; i < in.n_headers; i++) {
        hs[i].name = take_str(&r, &hs[i].name_len);
        hs[i].value = take_str(&r, &hs[i].value_len);
    }
    in.headers = hs;
    char *tags[8];
    in.n_tags = take(&r, 1) % 8;
    for (size_t i = 0; i < in.n_tags; i++) {
        size_t l;
        const char *s = take_str(&r, &l);
        tags[i] = strndup(s, l); /* tags are C strings */
    }
    in.tags = (const char *const *)tags;
    entry_gen gs[ENTRY_MAX_GENS];
    in.n_gens = take(&r, 1) % (ENTRY_MAX_GENS + 1);
    for (size_t i = 0; i < in.n_gens; i++) {
        gs[i].slot = (uint32_t)take(&r, 4);
        gs[i].gen = take(&r, 8);
    }
    in.gens = gs;
    in.body = r.p;
    in.body_len = r.n;

    unsigned char *b;
    size_t bl;
    if (entry_encode(&in, &b, &bl) != ENTRY_OK)
        abort();
    if (bl != entry_encoded_size(&in))
        abort();
    entry_view v;
    if (entry_decode(b, bl, &v) != ENTRY_OK)
        abort();
    check_view(b, bl, &v);
    if (v.status != in.status || v.flags != in.flags || v.stored_ms != in.stored_ms ||
        v.fresh_ms != in.fresh_ms || v.swr_ms != in.swr_ms || v.sie_ms != in.sie_ms ||
        v.etag_len != in.etag_len || memcmp(v.etag, in.etag, in.etag_len) != 0 ||
        v.n_headers != in.n_headers || v.n_tags != in.n_tags || v.n_gens != in.n_gens ||
        v.body_len != in.body_len || (in.body_len && memcmp(v.body, in.body, in.body_len)))
        abort();
    size_t pos = 0;
    entry_header h;
    for (size_t i = 0; i < in.n_headers; i++) {
        if (!entry_header_next(&v, &pos, &h) || h.name_len != hs[i].name_len ||
            h.value_len != hs[i].value_len || memcmp(h.name, hs[i].name, h.name_len) ||
            (h.value_len && memcmp(h.value, hs[i].value, h.value_len)))
            abort();
    }
    pos = 0;
    for (size_t i = 0; i < in.n_tags; i++) {
        const char *t;
        size_t tl;
        if (!entry_tag_next(&v, &pos, &t, &tl) || tl != strlen(tags[i]) ||
            memcmp(t, tags[i], tl) != 0)
            abort();
    }
    for (size_t i = 0; i < in.n_gens; i++) {
        entry_gen g = entry_gen_at(&v, i);
        if (g.slot != gs[i].slot || g.gen != gs[i].gen)
            abort();
    }
    /* any flipped byte is caught by the checksum */
    if (bl > 0) {
        size_t at = (size_t)(in.stored_ms % bl);
        if (at < 56 || at >= 64) {
            b[at] ^= 0x5a;
            entry_view x;
            if (entry_decode(b, bl, &x) == ENTRY_OK)
                abort();
        }
    }
    free(b);

    /* freshness: an entry stays usable until its hard expiry (no wrap-around) */
    uint64_t now = in.stored_ms + (take(&r, 4) << 10);
    /* within what the cache can produce: a wall clock and a configured duration (config
     * caps durations at 1e15 ms); beyond that stored_ms + fresh_ms may wrap in
     * entry_hard_expiry_s, which no caller can reach today */
    if (now >= in.stored_ms && in.stored_ms < 100000000000000ull &&
        in.fresh_ms <= 1000000000000000ull) {
        uint32_t hard = entry_hard_expiry_s(in.stored_ms, in.fresh_ms, in.swr_ms, in.sie_ms);
        int usable = entry_is_fresh(&v, now) || entry_in_swr(&v, now) || entry_in_sie(&v, now);
        if (usable && hard != 0xfffffffeu && (uint64_t)hard * 1000 <= now)
            abort(); /* usable but already hard-expired: the store would drop it */
    }
    for (size_t i = 0; i < in.n_tags; i++)
        free(tags[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    if (mode & 1)
        struct_mode(data + 1, size - 1);
    else
        blob_mode(data + 1, size - 1, mode & 2);
    return 0;
}
