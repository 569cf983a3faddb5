/*
 * h1resp: see h1resp.h.
 */
#include "h1resp.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>

#include "hdr.h"

long h1resp_head_len(const char *b, size_t n)
{
    size_t scan = n < H1RESP_HEAD_MAX ? n : H1RESP_HEAD_MAX;
    for (const char *p = memchr(b, '\n', scan); p;
         p = memchr(p + 1, '\n', scan - (size_t)(p + 1 - b))) {
        size_t i = (size_t)(p - b);
        if (i + 1 < scan && b[i + 1] == '\n')
            return (long)(i + 2);
        if (i + 2 < scan && b[i + 1] == '\r' && b[i + 2] == '\n')
            return (long)(i + 3);
        if (i + 1 >= scan)
            break;
    }
    return n >= H1RESP_HEAD_MAX ? -1 : 0;
}

/* Whether the comma list contains the token tok (case-insensitive). */
static int has_token(const char *list, const char *tok)
{
    size_t tl = strlen(tok);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p + strcspn(p, ",");
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == tl && strncasecmp(p, tok, tl) == 0)
            return 1;
        p = e;
    }
    return 0;
}

/* Whether the last transfer coding of a Transfer-Encoding value is chunked. */
static int last_coding_chunked(const char *v)
{
    const char *last = strrchr(v, ',');
    last = last ? last + 1 : v;
    while (*last == ' ' || *last == '\t')
        last++;
    size_t n = strcspn(last, " \t;");
    return n == 7 && strncasecmp(last, "chunked", 7) == 0;
}

static int status_line(const char *line, size_t ll, int *minor, int *status)
{
    if (ll < 12 || memcmp(line, "HTTP/1.", 7) != 0 || (line[7] != '0' && line[7] != '1') ||
        line[8] != ' ' || line[9] < '1' || line[9] > '5' || !isdigit((unsigned char)line[10]) ||
        !isdigit((unsigned char)line[11]) || (ll > 12 && line[12] != ' '))
        return -1;
    *minor = line[7] - '0';
    *status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    return 0;
}

/* What the header fields say about framing and persistence. */
struct fields {
    int chunked, has_te, has_cl, close_tok, keep_tok;
    uint64_t cl;
};

/* One "name: value" line (ll bytes, no line end): checked, noted in f, added to hdrs. -1 when
 * it makes the head malformed (a bad or inconsistent Content-Length). */
static int field_line(const char *line, size_t ll, struct fields *f, struct evkeyvalq *hdrs)
{
    const char *colon = line[0] == ' ' || line[0] == '\t' ? NULL : memchr(line, ':', ll);
    size_t nl = colon ? (size_t)(colon - line) : 0;
    char name[256], vbuf[1024];
    if (!colon || nl >= sizeof name || !hdr_name_ok(line, nl))
        return 0; /* obs-fold or not a header: dropped */
    memcpy(name, line, nl);
    name[nl] = '\0';
    const char *v = colon + 1, *ve = line + ll;
    while (v < ve && (*v == ' ' || *v == '\t'))
        v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
    size_t vl = (size_t)(ve - v);
    char *value = vl < sizeof vbuf ? vbuf : malloc(vl + 1);
    if (!value)
        abort();
    memcpy(value, v, vl);
    value[vl] = '\0';
    int bad = 0;
    if (strcasecmp(name, "Content-Length") == 0) {
        char *e;
        errno = 0;
        unsigned long long n = strtoull(value, &e, 10);
        if (!vl || *e || errno || !isdigit((unsigned char)value[0]) || (f->has_cl && n != f->cl))
            bad = 1;
        f->has_cl = 1;
        f->cl = n;
    } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
        f->has_te = 1;
        f->chunked = last_coding_chunked(value);
    } else if (strcasecmp(name, "Connection") == 0) {
        f->close_tok |= has_token(value, "close");
        f->keep_tok |= has_token(value, "keep-alive");
    }
    if (!bad && hdr_value_ok(value) && strlen(value) == vl)
        evhttp_add_header(hdrs, name, value);
    if (value != vbuf)
        free(value);
    return bad ? -1 : 0;
}

/* Framing and persistence from the status and the fields. */
static void framing(struct h1resp_head *out, const struct fields *f, int head_request)
{
    int status = out->status;
    out->keep_alive = out->minor == 1 ? !f->close_tok : f->keep_tok && !f->close_tok;
    if (status < 200 || head_request || status == 204 || status == 304) {
        out->framing = H1F_NONE;
    } else if (f->has_te) {
        out->framing = f->chunked ? H1F_CHUNKED : H1F_CLOSE;
        if (f->has_cl || !f->chunked)
            out->keep_alive = 0; /* Transfer-Encoding wins; don't reuse (RFC 9112 6.3) */
    } else if (f->has_cl) {
        out->length = f->cl;
        out->framing = f->cl ? H1F_LENGTH : H1F_NONE;
    } else {
        out->framing = H1F_CLOSE;
        out->keep_alive = 0;
    }
}

int h1resp_parse(const char *b, size_t len, int head_request, struct h1resp_head *out,
                 struct evkeyvalq *hdrs)
{
    memset(out, 0, sizeof *out);
    const char *end = b + len;
    const char *le = memchr(b, '\n', len);
    if (!le)
        return -1;
    size_t ll = (size_t)(le - b);
    if (ll && b[ll - 1] == '\r')
        ll--;
    int minor, status;
    if (status_line(b, ll, &minor, &status) != 0)
        return -1;
    struct fields f = {0};
    for (const char *line = le + 1; line < end;) {
        le = memchr(line, '\n', (size_t)(end - line));
        if (!le)
            return -1;
        ll = (size_t)(le - line);
        const char *next = le + 1;
        if (ll && line[ll - 1] == '\r')
            ll--;
        if (ll == 0)
            break;
        if (field_line(line, ll, &f, hdrs) != 0)
            return -1;
        line = next;
    }
    out->status = status;
    out->minor = minor;
    if (status == 101)
        return -1; /* hotgate never asks for an upgrade */
    framing(out, &f, head_request);
    return 0;
}
