/*
 * path: see path.h. One pass over the target, no decoding, no allocation until the verdict.
 */
#include "path.h"
#include "util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* RFC 3986 pchar minus '%' (handled apart): unreserved / sub-delims / ':' / '@' (ALPHA,
 * DIGIT and -._~!$&'()*+,;=:@), a table lookup per byte of every request target */
static const unsigned char pchar_tab[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static int is_pchar(unsigned char c)
{
    return pchar_tab[c];
}

/* Check an escape at s[0] == '%'; returns the decoded byte or -1. */
static int escape_at(const char *s, size_t left)
{
    if (left < 3)
        return -1;
    int hi = util_hexval((unsigned char)s[1]), lo = util_hexval((unsigned char)s[2]);
    if (hi < 0 || lo < 0)
        return -1;
    return hi << 4 | lo;
}

int path_overlong_utf8(const char *s, size_t left)
{
    int b0 = escape_at(s, left);
    if (b0 == 0xc0 || b0 == 0xc1 || b0 >= 0xf5)
        return 1; /* never valid in UTF-8: C0/C1 lead only overlong forms */
    if (b0 != 0xe0 && b0 != 0xf0)
        return 0;
    /* E0 80..9F and F0 80..8F are overlong; the next byte must be an escape too (a raw
     * byte >= 0x80 is refused as a character anyway) */
    int b1 = left >= 6 && s[3] == '%' ? escape_at(s + 3, left - 3) : -1;
    if (b1 < 0)
        return 0;
    return b0 == 0xe0 ? b1 >= 0x80 && b1 <= 0x9f : b1 >= 0x80 && b1 <= 0x8f;
}

/* A complete segment seg[0..seglen): NULL, or why it is refused. last: the path ends
 * with it (an empty last segment, "/v1/x/", is fine). */
static const char *segment_check(const char *seg, size_t seglen, int last)
{
    if (!last && seglen == 0)
        return "empty path segment ('//')";
    if ((seglen == 1 && seg[0] == '.') || (seglen == 2 && seg[0] == '.' && seg[1] == '.'))
        return "dot segment in path";
    /* "..;x" / ".;x": a dot segment to servers that strip path parameters (Tomcat,
     * Spring), a name to others: ambiguous */
    const char *semi = memchr(seg, ';', seglen);
    size_t stem = semi ? (size_t)(semi - seg) : seglen;
    if (semi && ((stem == 1 && seg[0] == '.') || (stem == 2 && seg[0] == '.' && seg[1] == '.')))
        return "dot segment with a path parameter (';') in path";
    return NULL;
}

/* The percent-escape at p (n bytes left) inside the path: NULL, or why it is refused. */
static const char *path_escape_check(const char *p, size_t n)
{
    int v = escape_at(p, n);
    if (v < 0)
        return "malformed percent-escape in path";
    if (v == '/' || v == '\\' || v == '.' || v == '%' || v < 0x20 || v == 0x7f)
        return "encoded '/', '\\', '.', '%' or control character in path";
    if (path_overlong_utf8(p, n))
        return "overlong or invalid UTF-8 escape in path (e.g. %c0%ae, a disguised '.')";
    return NULL;
}

/* The path target[0..plen) (starts with '/'): NULL, or why it is refused. */
static const char *path_part_check(const char *target, size_t plen)
{
    size_t seg_start = 1;
    for (size_t i = 1; i <= plen; i++) {
        if (i == plen || target[i] == '/') {
            const char *why = segment_check(target + seg_start, i - seg_start, i == plen);
            if (why)
                return why;
            seg_start = i + 1;
            continue;
        }
        unsigned char c = (unsigned char)target[i];
        if (c == '%') {
            const char *why = path_escape_check(target + i, plen - i);
            if (why)
                return why;
            i += 2;
        } else if (c == '\\') {
            return "backslash in path";
        } else if (c == '#') {
            return "fragment in request target";
        } else if (!is_pchar(c)) {
            return "invalid character in path";
        }
    }
    return NULL;
}

/* The query q[0..n) (after '?'): NULL, or why it is refused. */
static const char *query_part_check(const char *q, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)q[i];
        if (c == '%') {
            if (escape_at(q + i, n - i) < 0)
                return "malformed percent-escape in query";
            i += 2;
        } else if (c == '#') {
            return "fragment in request target";
        } else if (!is_pchar(c) && c != '/' && c != '?') {
            return "invalid character in query";
        }
    }
    return NULL;
}

enum path_verdict path_check(const char *target, size_t len, char **path, char **query,
                             const char **reason)
{
    const char *why = NULL;
    *path = NULL;
    *query = NULL;
    size_t plen = len;
    const char *q = len ? memchr(target, '?', len) : NULL;
    if (q)
        plen = (size_t)(q - target);
    if (len == 0 || target[0] != '/')
        why = "request target must be a path (absolute-form is not accepted)";
    else
        why = path_part_check(target, plen);
    if (!why && q)
        why = query_part_check(q + 1, len - plen - 1);
    if (why) {
        if (reason)
            *reason = why;
        return PATH_BAD;
    }
    if (plen < 4 || memcmp(target, "/v1/", 4) != 0) {
        if (reason)
            *reason = "not found: hotgate serves /v1/ only";
        return PATH_NOT_FOUND;
    }
    *path = strndup(target, plen);
    if (!*path)
        abort();
    if (q) {
        *query = strndup(q + 1, len - plen - 1);
        if (!*query)
            abort();
    }
    if (reason)
        *reason = NULL;
    return PATH_OK;
}
