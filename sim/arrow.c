/*
 * arrow: encodes a stored result page as an Apache Arrow IPC stream
 * (Content-Type application/vnd.apache.arrow.stream), the body of
 * GET /v1/results/{id}?format=arrow.
 *
 * Stream layout (Arrow columnar format, metadata version V5, little endian):
 *   Schema message, one RecordBatch message with every row of the page, end-of-stream marker.
 * Each message is framed as 0xFFFFFFFF, int32 metadata length (8-byte padded), the
 * flatbuffer Message, then the body. Column types come from the stored result's "types":
 * int64 -> Int(64, signed), float64 -> FloatingPoint(DOUBLE), bool -> Bool, everything else
 * (utf8, all-null columns) -> Utf8. Every column carries a validity bitmap.
 *
 * The flatbuffers are written by a tiny forward builder (parents first, children after, so
 * every uoffset points forward; vtables sit right before their tables). No flatbuffers
 * library is needed for this fixed handful of tables.
 *
 * Rules: pure function of its input; allocates only temporaries.
 */
#include "sim_arrow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

/* ---- a minimal forward flatbuffer builder ---- */

struct fb {
    unsigned char *p;
    size_t len, cap;
};

static void fb_reserve(struct fb *b, size_t n)
{
    if (b->len + n <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 512;
    while (cap < b->len + n)
        cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p)
        abort();
    b->cap = cap;
}

static size_t fb_put(struct fb *b, const void *d, size_t n)
{
    if (n == 0)
        return b->len;
    fb_reserve(b, n);
    size_t at = b->len;
    if (d)
        memcpy(b->p + at, d, n);
    else
        memset(b->p + at, 0, n);
    b->len += n;
    return at;
}

static void fb_pad(struct fb *b, size_t align)
{
    while (b->len % align)
        fb_put(b, NULL, 1);
}

static void fb_le(struct fb *b, size_t at, uint64_t v, int size)
{
    for (int i = 0; i < size; i++)
        b->p[at + (size_t)i] = (unsigned char)(v >> (8 * i));
}

/* point the uoffset at position `at` to `target` (which lies after it) */
static void fb_patch(struct fb *b, size_t at, size_t target)
{
    fb_le(b, at, (uint64_t)(target - at), 4);
}

struct fb_field {
    int slot;
    int size;     /* 1, 2, 4 or 8; offsets are 4 */
    uint64_t val; /* scalar value (offsets are patched later) */
    size_t pos;   /* out: absolute position of the field */
};

/* Write a vtable and its table; sets fields[i].pos. Returns the table position. */
static size_t fb_table(struct fb *b, struct fb_field *f, int n)
{
    int nslots = 0;
    for (int i = 0; i < n; i++)
        if (f[i].slot + 1 > nslots)
            nslots = f[i].slot + 1;
    size_t off[16] = {0};
    size_t cur = 4;
    for (int sz = 8; sz >= 1; sz /= 2) {
        for (int i = 0; i < n; i++) {
            if (f[i].size != sz)
                continue;
            cur = (cur + (size_t)sz - 1) / (size_t)sz * (size_t)sz;
            off[i] = cur;
            cur += (size_t)sz;
        }
    }
    size_t tsize = (cur + 3) / 4 * 4;
    fb_pad(b, 2);
    size_t vt = fb_put(b, NULL, 4 + 2 * (size_t)nslots);
    fb_le(b, vt, 4 + 2 * (uint64_t)nslots, 2);
    fb_le(b, vt + 2, tsize, 2);
    for (int i = 0; i < n; i++)
        fb_le(b, vt + 4 + 2 * (size_t)f[i].slot, off[i], 2);
    fb_pad(b, 8);
    size_t t = fb_put(b, NULL, tsize);
    fb_le(b, t, (uint64_t)(uint32_t)(int32_t)(t - vt), 4);
    for (int i = 0; i < n; i++) {
        f[i].pos = t + off[i];
        fb_le(b, f[i].pos, f[i].val, f[i].size);
    }
    return t;
}

static size_t fb_string(struct fb *b, const char *s)
{
    fb_pad(b, 4);
    size_t n = strlen(s);
    size_t at = fb_put(b, NULL, 4);
    fb_le(b, at, n, 4);
    fb_put(b, s, n);
    fb_put(b, NULL, 1);
    return at;
}

/* Vector of n uoffsets (elements patched by the caller at pos + 4 + 4*i). */
static size_t fb_vec_offsets(struct fb *b, size_t n)
{
    fb_pad(b, 4);
    size_t at = fb_put(b, NULL, 4 + 4 * n);
    fb_le(b, at, n, 4);
    return at;
}

/* Vector of n 16-byte structs {int64, int64}, elements 8-aligned. */
static size_t fb_vec_structs16(struct fb *b, const int64_t *pairs, size_t n)
{
    fb_pad(b, 4);
    if (b->len % 8 == 0)
        fb_put(b, NULL, 4);
    size_t at = fb_put(b, NULL, 4);
    fb_le(b, at, n, 4);
    for (size_t i = 0; i < 2 * n; i++) {
        size_t e = fb_put(b, NULL, 8);
        fb_le(b, e, (uint64_t)pairs[i], 8);
    }
    return at;
}

/* ---- Arrow ---- */

enum { AT_INT64, AT_FLOAT64, AT_BOOL, AT_UTF8 };

enum {
    ARROW_TYPE_INT = 2,
    ARROW_TYPE_FLOAT = 3,
    ARROW_TYPE_UTF8 = 5,
    ARROW_TYPE_BOOL = 6,
    ARROW_HEADER_SCHEMA = 1,
    ARROW_HEADER_RECORDBATCH = 3,
    ARROW_V5 = 4,
};

static void arrow_frame(struct evbuffer *out, struct fb *meta, const void *body, size_t body_len)
{
    fb_pad(meta, 8);
    uint32_t cont = 0xFFFFFFFFu;
    unsigned char hdr[8];
    memcpy(hdr, &cont, 4);
    uint32_t ml = (uint32_t)meta->len;
    for (int i = 0; i < 4; i++)
        hdr[4 + i] = (unsigned char)(ml >> (8 * i));
    evbuffer_add(out, hdr, 8);
    evbuffer_add(out, meta->p, meta->len);
    if (body_len)
        evbuffer_add(out, body, body_len);
}

/* Message{version, header_type, header, bodyLength}; returns the header offset field pos. */
static size_t arrow_message(struct fb *b, int header_type, int64_t body_len)
{
    size_t root = fb_put(b, NULL, 4);
    struct fb_field f[] = {
        {0, 2, ARROW_V5, 0},
        {1, 1, (uint64_t)header_type, 0},
        {2, 4, 0, 0},
        {3, 8, (uint64_t)body_len, 0},
    };
    size_t t = fb_table(b, f, 4);
    fb_patch(b, root, t);
    return f[2].pos;
}

static void arrow_schema(struct evbuffer *out, json_t *cols, json_t *nullable, const int *types)
{
    struct fb b = {0};
    size_t hdr = arrow_message(&b, ARROW_HEADER_SCHEMA, 0);
    struct fb_field sf[] = {{1, 4, 0, 0}};
    size_t schema = fb_table(&b, sf, 1);
    fb_patch(&b, hdr, schema);
    size_t ncol = json_array_size(cols);
    size_t vec = fb_vec_offsets(&b, ncol);
    fb_patch(&b, sf[0].pos, vec);
    for (size_t i = 0; i < ncol; i++) {
        int tt = types[i] == AT_INT64     ? ARROW_TYPE_INT
                 : types[i] == AT_FLOAT64 ? ARROW_TYPE_FLOAT
                 : types[i] == AT_BOOL    ? ARROW_TYPE_BOOL
                                          : ARROW_TYPE_UTF8;
        bool nb = !json_is_false(json_array_get(nullable, i));
        struct fb_field ff[] = {
            {0, 4, 0, 0},            /* name */
            {1, 1, nb ? 1u : 0u, 0}, /* nullable */
            {2, 1, (uint64_t)tt, 0}, /* type_type */
            {3, 4, 0, 0},            /* type */
            {5, 4, 0, 0},            /* children */
        };
        size_t field = fb_table(&b, ff, 5);
        fb_patch(&b, vec + 4 + 4 * i, field);
        const char *name = json_string_value(json_array_get(cols, i));
        fb_patch(&b, ff[0].pos, fb_string(&b, name ? name : ""));
        size_t type;
        if (tt == ARROW_TYPE_INT) {
            struct fb_field it[] = {{0, 4, 64, 0}, {1, 1, 1, 0}};
            type = fb_table(&b, it, 2);
        } else if (tt == ARROW_TYPE_FLOAT) {
            struct fb_field ft[] = {{0, 2, 2 /* DOUBLE */, 0}};
            type = fb_table(&b, ft, 1);
        } else {
            type = fb_table(&b, NULL, 0);
        }
        fb_patch(&b, ff[3].pos, type);
        fb_patch(&b, ff[4].pos, fb_vec_offsets(&b, 0));
    }
    arrow_frame(out, &b, NULL, 0);
    free(b.p);
}

struct arrow_body {
    unsigned char *p;
    size_t len, cap;
};

static size_t body_add(struct arrow_body *a, const void *d, size_t n)
{
    size_t padded = (n + 7) / 8 * 8;
    if (padded == 0)
        return a->len; /* an empty buffer (no rows): nothing to copy, p may still be NULL */
    if (a->len + padded > a->cap) {
        size_t cap = a->cap ? a->cap : 4096;
        while (cap < a->len + padded)
            cap *= 2;
        a->p = realloc(a->p, cap);
        if (!a->p)
            abort();
        a->cap = cap;
    }
    size_t at = a->len;
    if (d && n)
        memcpy(a->p + at, d, n);
    else if (n)
        memset(a->p + at, 0, n);
    memset(a->p + at + n, 0, padded - n);
    a->len += padded;
    return at;
}

int sim_arrow_encode(json_t *data, size_t offset, size_t limit, struct evbuffer *out)
{
    json_t *cols = json_object_get(data, "columns");
    json_t *nullable = json_object_get(data, "nullable");
    json_t *tnames = json_object_get(data, "types");
    json_t *rows = json_object_get(data, "rows");
    if (!json_is_array(cols) || !json_is_array(rows))
        return -1;
    size_t ncol = json_array_size(cols);
    int *types = calloc(ncol + 1, sizeof *types);
    if (!types)
        abort();
    for (size_t i = 0; i < ncol; i++) {
        const char *t = json_string_value(json_array_get(tnames, i));
        types[i] = !t                      ? AT_UTF8
                   : !strcmp(t, "int64")   ? AT_INT64
                   : !strcmp(t, "float64") ? AT_FLOAT64
                   : !strcmp(t, "bool")    ? AT_BOOL
                                           : AT_UTF8;
    }
    arrow_schema(out, cols, nullable, types);

    size_t n = limit;
    int64_t *nodes = calloc(2 * ncol + 2, sizeof *nodes);
    size_t nbuf = 0;
    int64_t *bufs = calloc(2 * (3 * ncol) + 2, sizeof *bufs);
    if (!nodes || !bufs)
        abort();
    struct arrow_body body = {0};
    size_t bitmap_len = (n + 7) / 8;
    unsigned char *valid = calloc(bitmap_len + 1, 1);
    unsigned char *bits = calloc(bitmap_len + 1, 1);
    if (!valid || !bits)
        abort();
    for (size_t c = 0; c < ncol; c++) {
        memset(valid, 0, bitmap_len + 1);
        memset(bits, 0, bitmap_len + 1);
        int64_t nulls = 0;
        for (size_t r = 0; r < n; r++) {
            json_t *v = json_array_get(json_array_get(rows, offset + r), c);
            if (v && !json_is_null(v))
                valid[r / 8] |= (unsigned char)(1u << (r % 8));
            else
                nulls++;
        }
        nodes[2 * c] = (int64_t)n;
        nodes[2 * c + 1] = nulls;
        size_t at = body_add(&body, valid, bitmap_len);
        bufs[2 * nbuf] = (int64_t)at;
        bufs[2 * nbuf + 1] = (int64_t)bitmap_len;
        nbuf++;
        if (types[c] == AT_INT64 || types[c] == AT_FLOAT64) {
            size_t vat = body_add(&body, NULL, 8 * n);
            for (size_t r = 0; r < n; r++) {
                json_t *v = json_array_get(json_array_get(rows, offset + r), c);
                unsigned char *dst = body.p + vat + 8 * r;
                if (types[c] == AT_INT64) {
                    int64_t x = json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
                    memcpy(dst, &x, 8);
                } else {
                    double x = json_is_number(v) ? json_number_value(v) : 0.0;
                    memcpy(dst, &x, 8);
                }
            }
            bufs[2 * nbuf] = (int64_t)vat;
            bufs[2 * nbuf + 1] = (int64_t)(8 * n);
            nbuf++;
        } else if (types[c] == AT_BOOL) {
            for (size_t r = 0; r < n; r++) {
                json_t *v = json_array_get(json_array_get(rows, offset + r), c);
                if (json_is_true(v) || (json_is_integer(v) && json_integer_value(v) != 0))
                    bits[r / 8] |= (unsigned char)(1u << (r % 8));
            }
            size_t vat = body_add(&body, bits, bitmap_len);
            bufs[2 * nbuf] = (int64_t)vat;
            bufs[2 * nbuf + 1] = (int64_t)bitmap_len;
            nbuf++;
        } else {
            size_t oat = body_add(&body, NULL, 4 * (n + 1));
            struct arrow_body chars = {0};
            size_t clen = 0;
            for (size_t r = 0; r < n; r++) {
                json_t *v = json_array_get(json_array_get(rows, offset + r), c);
                int32_t o = (int32_t)clen;
                memcpy(body.p + oat + 4 * r, &o, 4);
                if (!v || json_is_null(v))
                    continue;
                char *tmp = NULL;
                const char *s = json_string_value(v);
                if (!s) {
                    tmp = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                    s = tmp ? tmp : "";
                }
                size_t sl = strlen(s);
                if (chars.len + sl > chars.cap) {
                    size_t cap = chars.cap ? chars.cap : 1024;
                    while (cap < chars.len + sl)
                        cap *= 2;
                    chars.p = realloc(chars.p, cap);
                    if (!chars.p)
                        abort();
                    chars.cap = cap;
                }
                memcpy(chars.p + chars.len, s, sl);
                chars.len += sl;
                clen += sl;
                free(tmp);
            }
            int32_t o = (int32_t)clen;
            memcpy(body.p + oat + 4 * n, &o, 4);
            bufs[2 * nbuf] = (int64_t)oat;
            bufs[2 * nbuf + 1] = (int64_t)(4 * (n + 1));
            nbuf++;
            size_t dat = body_add(&body, chars.p, chars.len);
            bufs[2 * nbuf] = (int64_t)dat;
            bufs[2 * nbuf + 1] = (int64_t)chars.len;
            nbuf++;
            free(chars.p);
        }
    }
    struct fb b = {0};
    size_t hdr = arrow_message(&b, ARROW_HEADER_RECORDBATCH, (int64_t)body.len);
    struct fb_field rf[] = {{0, 8, (uint64_t)n, 0}, {1, 4, 0, 0}, {2, 4, 0, 0}};
    size_t rb = fb_table(&b, rf, 3);
    fb_patch(&b, hdr, rb);
    fb_patch(&b, rf[1].pos, fb_vec_structs16(&b, nodes, ncol));
    fb_patch(&b, rf[2].pos, fb_vec_structs16(&b, bufs, nbuf));
    arrow_frame(out, &b, body.p, body.len);
    free(b.p);
    static const unsigned char eos[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    evbuffer_add(out, eos, sizeof eos);
    free(body.p);
    free(valid);
    free(bits);
    free(nodes);
    free(bufs);
    free(types);
    return 0;
}
