/*
 * fuzz_path: libFuzzer target for path_check() (src/path.c), the request-target filter in
 * front of every request.
 *
 * Checks, besides memory safety on arbitrary, unterminated input:
 *   - PATH_OK: the path is the target up to '?', starts with "/v1/", holds no NUL, no
 *     empty or dot segment, no backslash or fragment, and stays so once percent-decoded
 *     (no encoded '/', '\\', '.', '%' or control character); the query is the rest;
 *   - any other verdict: both outputs NULL, and PATH_BAD has a reason;
 *   - idempotent: the accepted path (+ '?' query) is accepted again, unchanged.
 * Build: CC=clang BUILD_DIR=build-fuzz ./scripts/build.sh -DHG_FUZZ=ON (scripts/fuzz.sh).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "path.h"

static int hexv(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The decoded path must have no empty or dot segment and no separator smuggled in. */
static void check_decoded(const char *p, size_t n)
{
    char *d = malloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%') {
            if (i + 2 >= n)
                abort(); /* a truncated escape was accepted */
            int hi = hexv(p[i + 1]), lo = hexv(p[i + 2]);
            if (hi < 0 || lo < 0)
                abort();
            unsigned char c = (unsigned char)(hi << 4 | lo);
            if (c == '/' || c == '\\' || c == '.' || c == '%' || c < 0x20 || c == 0x7f)
                abort();
            d[k++] = (char)c;
            i += 2;
        } else {
            d[k++] = p[i];
        }
    }
    d[k] = '\0';
    /* segments of the decoded path */
    size_t start = 1;
    for (size_t i = 1; i <= k; i++) {
        if (i == k || d[i] == '/') {
            size_t sl = i - start;
            if ((sl == 0 && i < k) || (sl == 1 && d[start] == '.') ||
                (sl == 2 && d[start] == '.' && d[start + 1] == '.'))
                abort();
            start = i + 1;
        }
    }
    /* (an encoded '#' or '?' is data: the upstream decodes it inside the segment) */
    if (memchr(d, '\\', k))
        abort();
    free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, not NUL terminated: path_check takes a length */
    char *t = malloc(size ? size : 1);
    memcpy(t, data, size);
    char *path = (char *)1, *query = (char *)1;
    const char *reason = (const char *)1;
    enum path_verdict v = path_check(t, size, &path, &query, &reason);
    if (v != PATH_OK) {
        if (v != PATH_BAD && v != PATH_NOT_FOUND)
            abort();
        if (path || query)
            abort();
        if (v == PATH_BAD && (!reason || reason == (const char *)1))
            abort();
        free(t);
        return 0;
    }
    if (!path || reason)
        abort();
    size_t pl = strlen(path);
    const char *qm = memchr(t, '?', size);
    size_t want = qm ? (size_t)(qm - t) : size;
    if (pl != want || memcmp(path, t, pl) != 0 || pl < 4 || memcmp(path, "/v1/", 4) != 0)
        abort();
    if (qm) {
        if (!query || strlen(query) != size - want - 1 || memcmp(query, qm + 1, size - want - 1))
            abort();
    } else if (query) {
        abort();
    }
    check_decoded(path, pl);

    /* idempotent */
    size_t tl = pl + (query ? strlen(query) + 1 : 0);
    char *again = malloc(tl + 1);
    memcpy(again, path, pl);
    if (query) {
        again[pl] = '?';
        memcpy(again + pl + 1, query, strlen(query));
    }
    char *p2, *q2;
    if (path_check(again, tl, &p2, &q2, NULL) != PATH_OK || strcmp(p2, path) != 0 ||
        (!q2) != (!query) || (q2 && strcmp(q2, query) != 0))
        abort();
    free(p2);
    free(q2);
    free(again);
    free(path);
    free(query);
    free(t);
    return 0;
}
