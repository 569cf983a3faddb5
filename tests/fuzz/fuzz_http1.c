/*
 * fuzz_http1: libFuzzer target for hotgate's client-side HTTP/1.1 codec (src/http1.c, over a
 * real connection of src/conn.c; see http1_drive.h for how it is driven).
 *
 * Input: byte 0 picks the mode and seeds the split points; the rest is what a client sends.
 *   mode 0-2  a connection: the bytes go in once whole and once split at pseudo-random
 *             points (mode 2: one byte per read), then the client closes. Checks:
 *               - no crash, no leak (ASan/LSan), no sanitizer report;
 *               - the output is a well-formed sequence of Content-Length framed responses
 *                 (100 Continue aside) with statuses hotgate may answer without a client
 *                 configured, and nothing after a "Connection: close" response;
 *               - bounded memory: the unparsed input held stays within max_header_size
 *                 plus one read;
 *               - the same statuses whatever the read boundaries.
 *   mode 3    the chunked body decoder (http1_chunked_decode, the client limits) alone, whole and
 * split: the decoded bytes never exceed the input, and the split decode gives the same bytes and
 *             verdict as the whole one when both accept.
 * Build: CC=clang BUILD_DIR=build-fuzz ./scripts/build.sh -DHG_FUZZ=ON; run
 * build-fuzz/fuzz_http1 -max_len=16384 tests/fuzz/corpus/fuzz_http1 (scripts/fuzz.sh).
 */
#include "http1_drive.h"

static uint32_t rng_next(uint32_t *s)
{
    uint32_t x = *s ? *s : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* Split points for len bytes: every byte when one_by_one, else random chunk sizes of
 * 1..max_chunk. Returns the count; *cuts is malloc'd. */
static size_t make_cuts(size_t len, uint32_t seed, int one_by_one, size_t **cuts)
{
    *cuts = malloc((len + 1) * sizeof **cuts);
    size_t n = 0, off = 0;
    size_t max_chunk = 1 + (seed % 97);
    while (len && off < len - 1) {
        size_t step = one_by_one ? 1 : 1 + rng_next(&seed) % max_chunk;
        off += step;
        if (off >= len)
            break;
        (*cuts)[n++] = off;
    }
    return n;
}

static int status_allowed(int s)
{
    switch (s) {
    case 100: /* Continue */
    case 400: /* malformed */
    case 401: /* parsed: reached the auth stage (no client configured) */
    case 404: /* not under /v1 */
    case 405: /* unknown method */
    case 408: /* head timeout (not hit in-process) */
    case 413: /* body over max_body_size */
    case 414: /* request line too long */
    case 417: /* unsupported Expect */
    case 431: /* head too large / too many headers */
    case 501: /* unsupported Transfer-Encoding */
    case 505: /* unsupported HTTP version */
        return 1;
    default:
        return 0;
    }
}

/* Known and reported (tests/unit/test_regress_fuzz.c, test_long_request_line_status): an
 * over-long request line is answered 414 when it arrives in pieces but 431 when the whole
 * line is in one read. Folded together here so the fuzzer looks for other differences. */
static int norm_status(int s)
{
    return s == 414 ? 431 : s;
}

static void check_conn(const uint8_t *data, size_t len, uint32_t seed, int one_by_one)
{
    struct hd_result whole, split;
    hd_run(data, len, NULL, 0, &whole);
    size_t *cuts;
    size_t ncuts = make_cuts(len, seed, one_by_one, &cuts);
    hd_run(data, len, cuts, ncuts, &split);

    int sw[64], ss[64];
    int nw = hd_statuses(whole.out, whole.out_len, sw, 64);
    int ns = hd_statuses(split.out, split.out_len, ss, 64);
    if (nw < 0 || ns < 0)
        abort(); /* not a well-formed response stream */
    for (int i = 0; i < nw && i < 64; i++)
        if (!status_allowed(sw[i]))
            abort();
    for (int i = 0; i < ns && i < 64; i++)
        if (!status_allowed(ss[i]))
            abort();

    /* bounded: a partial head never exceeds the limit by more than one read; body bytes
     * are consumed as they come */
    size_t max_chunk = 1 + (seed % 97);
    if (split.max_input_buffered > HD_MAX_HEADER_SIZE + (one_by_one ? 1 : max_chunk))
        abort();

    /* the read boundaries must not change the answers (final statuses: 100 Continue is
     * only sent when the head arrives before the body) */
    int fw[64], fs[64], nfw = 0, nfs = 0;
    for (int i = 0; i < nw && i < 64; i++)
        if (sw[i] != 100)
            fw[nfw++] = norm_status(sw[i]);
    for (int i = 0; i < ns && i < 64; i++)
        if (ss[i] != 100)
            fs[nfs++] = norm_status(ss[i]);
    if (nfw != nfs || memcmp(fw, fs, (size_t)nfw * sizeof *fw) != 0)
        abort();

    free(cuts);
    hd_result_free(&whole);
    hd_result_free(&split);
}

/* Decode with http1_chunked_decode over the given cuts. Returns -1 on a decode error, else
 * 0; *done when the body ended. */
static int decode_chunked(const uint8_t *data, size_t len, const size_t *cuts, size_t ncuts,
                          struct evbuffer *dst, int *done)
{
    struct http1_chunked ck;
    http1_chunked_init(&ck);
    struct evbuffer *in = evbuffer_new();
    int rc = 0;
    size_t off = 0;
    for (size_t i = 0; i <= ncuts && off < len; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        if (end <= off)
            continue;
        evbuffer_add(in, data + off, end - off);
        off = end;
        if (http1_chunked_decode(&ck, in, dst, CONN_READ_CHUNK_MAX * 4, &conn_chunk_limits) != 0) {
            rc = -1;
            break;
        }
        if (http1_chunked_done(&ck))
            break;
    }
    *done = http1_chunked_done(&ck);
    evbuffer_free(in);
    return rc;
}

static void check_chunked(const uint8_t *data, size_t len, uint32_t seed)
{
    struct evbuffer *dw = evbuffer_new(), *ds = evbuffer_new();
    int done_w, done_s;
    int rw = decode_chunked(data, len, NULL, 0, dw, &done_w);
    size_t *cuts;
    size_t ncuts = make_cuts(len, seed, seed & 1, &cuts);
    int rs = decode_chunked(data, len, cuts, ncuts, ds, &done_s);
    size_t lw = evbuffer_get_length(dw), ls = evbuffer_get_length(ds);
    if (lw > len || ls > len)
        abort();
    /* split accepted what whole refused: the verdict depends on read boundaries */
    if (rs == 0 && rw != 0)
        abort();
    if (rw == 0 && rs == 0) {
        if (done_w != done_s)
            abort();
        if (done_w &&
            (lw != ls || (lw && memcmp(evbuffer_pullup(dw, -1), evbuffer_pullup(ds, -1), lw))))
            abort();
    }
    free(cuts);
    evbuffer_free(dw);
    evbuffer_free(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0] & 3;
    uint32_t seed = (uint32_t)data[0] * 2654435761u ^ (uint32_t)size;
    data++;
    size--;
    /* an exact-size heap copy so ASan sees reads past the end */
    uint8_t *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    if (mode == 3)
        check_chunked(copy, size, seed);
    else
        check_conn(copy, size, seed, mode == 2 && size <= 4096);
    free(copy);
    return 0;
}
