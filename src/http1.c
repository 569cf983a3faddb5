/*
 * http1: see http1.h. Pure functions over strings, header lists and evbuffers: no
 * connection, no config, no metrics (the caller counts what it wants).
 */
#include "http1.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "hdr.h"
#include "util.h"

int http1_method_known(const char *m, enum evhttp_cmd_type *t)
{
    static const struct {
        const char *name;
        enum evhttp_cmd_type type;
    } methods[] = {{"GET", EVHTTP_REQ_GET},       {"POST", EVHTTP_REQ_POST},
                   {"HEAD", EVHTTP_REQ_HEAD},     {"PUT", EVHTTP_REQ_PUT},
                   {"DELETE", EVHTTP_REQ_DELETE}, {"OPTIONS", EVHTTP_REQ_OPTIONS},
                   {"PATCH", EVHTTP_REQ_PATCH}};
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if (strcmp(m, methods[i].name) == 0) {
            *t = methods[i].type;
            return 1;
        }
    return 0;
}

int http1_parse_request_line(char *line, const char **method, const char **target, int *minor,
                             const char **why)
{
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp2 || strchr(sp2 + 1, ' ')) {
        *why = "malformed request line";
        return 400;
    }
    *sp1 = *sp2 = '\0';
    const char *version = sp2 + 1;
    *method = line;
    *target = sp1 + 1;
    if (!hdr_name_ok(line, strlen(line))) {
        *why = "malformed method";
        return 400;
    }
    if (strcmp(version, "HTTP/1.1") == 0) {
        *minor = 1;
    } else if (strcmp(version, "HTTP/1.0") == 0) {
        *minor = 0;
    } else {
        *why = "only HTTP/1.0 and HTTP/1.1 are supported";
        return strncmp(version, "HTTP/", 5) == 0 ? 505 : 400;
    }
    return 0;
}

int http1_parse_header_line(char *line, const char **name, size_t *name_len, const char **value,
                            size_t *value_len, int *drop, const char **why)
{
    if (line[0] == ' ' || line[0] == '\t') {
        *why = "obsolete header line folding";
        return 400;
    }
    char *colon = strchr(line, ':');
    if (!colon || !hdr_name_ok(line, (size_t)(colon - line))) {
        *why = "malformed header";
        return 400;
    }
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        v[--n] = '\0';
    if (!hdr_value_ok(v)) {
        *why = "control character in header value";
        return 400;
    }
    *name = line;
    *name_len = (size_t)(colon - line);
    *value = v;
    *value_len = n;
    *drop = memchr(line, '_', *name_len) != NULL;
    return 0;
}

/* One walk over the head: the first Expect and X-Request-Id (as evhttp_find_header would
 * find them), Connection tokens, Transfer-Encoding and Content-Length. */
struct head_scan {
    const char *te, *cl;
    int n_te, close, ka;
};

static int head_scan(const struct evkeyvalq *h, struct head_scan *s, struct http1_head_info *out,
                     const char **why)
{
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, h, next)
    {
        size_t kn = strlen(kv->key); /* names compared only when the lengths match */
        if (kn == 6 && !out->expect && strcasecmp(kv->key, "Expect") == 0) {
            out->expect = kv->value;
        } else if (kn == 12 && !out->request_id && strcasecmp(kv->key, "X-Request-Id") == 0) {
            out->request_id = kv->value;
        } else if (kn == 10 && strcasecmp(kv->key, "Connection") == 0) {
            s->close |= strcasestr(kv->value, "close") != NULL;
            s->ka |= strcasestr(kv->value, "keep-alive") != NULL;
        } else if (kn == 17 && strcasecmp(kv->key, "Transfer-Encoding") == 0) {
            s->te = kv->value;
            s->n_te++;
        } else if (kn == 14 && strcasecmp(kv->key, "Content-Length") == 0) {
            if (s->cl && strcmp(s->cl, kv->value) != 0) {
                *why = "conflicting Content-Length headers";
                return 400;
            }
            s->cl = kv->value;
        }
    }
    return 0;
}

int http1_head_framing(const struct evkeyvalq *h, int http_minor, struct http1_head_info *out,
                       const char **why)
{
    struct head_scan s = {0};
    memset(out, 0, sizeof *out);
    int st = head_scan(h, &s, out, why);
    if (st)
        return st;
    out->keepalive = http_minor == 1 ? !s.close : (s.ka && !s.close);
    if (s.te) {
        if (s.n_te != 1 || strcasecmp(s.te, "chunked") != 0 || http_minor == 0 || s.cl) {
            *why = "unsupported Transfer-Encoding";
            out->keepalive = 0;
            return strcasecmp(s.te, "chunked") != 0 ? 501 : 400;
        }
        out->framing = HTTP1_BODY_CHUNKED;
    } else if (s.cl) {
        size_t n = strlen(s.cl);
        if (!n || strspn(s.cl, "0123456789") != n || n > 18) {
            *why = "invalid Content-Length";
            out->keepalive = 0;
            return 400;
        }
        out->length = strtoull(s.cl, NULL, 10);
        out->framing = out->length ? HTTP1_BODY_LENGTH : HTTP1_BODY_NONE;
    }
    return 0;
}

/* ---- chunked ---- */

int http1_chunk_size(const char *line, size_t len, unsigned hex_max, uint64_t *size)
{
    uint64_t n = 0;
    size_t i = 0;
    for (; i < len && isxdigit((unsigned char)line[i]); i++) {
        if ((hex_max && i >= hex_max) || n > (1ull << 58))
            return -1; /* too many digits, or n * 16 would pass 2^62 */
        int c = (unsigned char)line[i];
        n = n * 16 + (uint64_t)(isdigit(c) ? c - '0' : (tolower(c) - 'a' + 10));
    }
    if (i == 0 || n > (1ull << 62))
        return -1;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i < len && line[i] != ';')
        return -1;
    *size = n;
    return 0;
}

#define LINE_CAP 8192u /* the largest line limit a caller may set */

/* The next line of in (through its LF): 1 with its length without the line end in *len
 * (the line stays in `in`, *eol = bytes to drain with it), 0 when incomplete and within
 * max, -1 when longer than max. */
static int find_line(struct evbuffer *in, size_t max, size_t *len, size_t *eol)
{
    if (max > LINE_CAP)
        max = LINE_CAP;
    struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
    if (p.pos < 0)
        return evbuffer_get_length(in) > max + 2 ? -1 : 0;
    size_t n = (size_t)p.pos;
    *eol = n + 1;
    if (n) {
        char last;
        struct evbuffer_ptr q;
        evbuffer_ptr_set(in, &q, n - 1, EVBUFFER_PTR_SET);
        evbuffer_copyout_from(in, &q, &last, 1);
        if (last == '\r')
            n--;
    }
    if (n > max)
        return -1;
    *len = n;
    return 1;
}

static int chunk_size_line(struct http1_chunked *ck, struct evbuffer *in,
                           const struct http1_chunk_limits *lim)
{
    size_t ll, eol;
    int r = find_line(in, lim->size_line_max, &ll, &eol);
    if (r <= 0)
        return r;
    char line[LINE_CAP + 2];
    evbuffer_copyout(in, line, ll);
    evbuffer_drain(in, eol);
    uint64_t n;
    if (memchr(line, '\0', ll) || http1_chunk_size(line, ll, lim->hex_max, &n) != 0)
        return -1;
    ck->left = n;
    ck->st = n ? HTTP1_CK_DATA : HTTP1_CK_TRAILER;
    return 1;
}

int http1_chunked_decode(struct http1_chunked *ck, struct evbuffer *in, struct evbuffer *dst,
                         size_t max_out, const struct http1_chunk_limits *lim)
{
    size_t moved = 0, ll, eol;
    while (ck->st != HTTP1_CK_DONE && evbuffer_get_length(in) > 0 && moved < max_out) {
        int r;
        switch (ck->st) {
        case HTTP1_CK_SIZE:
            r = chunk_size_line(ck, in, lim);
            if (r <= 0)
                return r < 0 ? HTTP1_CHUNK_BAD : 0;
            break;
        case HTTP1_CK_DATA: {
            size_t n = evbuffer_get_length(in);
            if (n > ck->left)
                n = (size_t)ck->left;
            if (n > max_out - moved)
                n = max_out - moved;
            evbuffer_remove_buffer(in, dst, n);
            ck->left -= n;
            moved += n;
            if (ck->left == 0)
                ck->st = HTTP1_CK_CRLF;
            break;
        }
        case HTTP1_CK_CRLF:
            r = find_line(in, lim->crlf_line_max, &ll, &eol);
            if (r == 0)
                return 0;
            if (r < 0 || ll != 0)
                return HTTP1_CHUNK_BAD;
            evbuffer_drain(in, eol);
            ck->st = HTTP1_CK_SIZE;
            break;
        case HTTP1_CK_TRAILER:
            r = find_line(in, lim->trailer_max, &ll, &eol);
            if (r <= 0)
                return r < 0 ? HTTP1_CHUNK_BAD_TRAILER : 0;
            evbuffer_drain(in, eol); /* trailers themselves are dropped */
            if (ll == 0)
                ck->st = HTTP1_CK_DONE;
            break;
        case HTTP1_CK_DONE:
            break;
        }
    }
    return 0;
}

/* ---- response head ---- */

/* The Date field's value, formatted once a second per thread. */
static void put_date(struct outbuf *hb)
{
    static __thread char date[64];
    static __thread size_t date_len;
    static __thread time_t date_at;
    time_t now = time(NULL);
    if (now != date_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        date_len = strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        date_at = now;
    }
    outbuf_put(hb, "Date: ", 6);
    outbuf_put(hb, date, date_len);
    outbuf_put(hb, "\r\n", 2);
}

static void put_field(struct outbuf *hb, const char *name, size_t nl, const char *value)
{
    outbuf_put(hb, name, nl);
    outbuf_put(hb, ": ", 2);
    outbuf_str(hb, value);
    outbuf_put(hb, "\r\n", 2);
}

/* The forwardable fields of headers; bit i of the result: extra[i]'s name was among them
 * (bit 31: a Date was). */
static unsigned put_fields(struct outbuf *hb, const struct evkeyvalq *headers,
                           const struct http1_field *extra, int nextra)
{
    unsigned seen = 0;
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, headers, next)
    {
        size_t kn = strlen(kv->key); /* names compared only when the lengths match */
        for (int i = 0; i < nextra; i++)
            if (kn == extra[i].name_len && strcasecmp(kv->key, extra[i].name) == 0)
                seen |= 1u << i;
        if (!hdr_forward_to_client(kv->key) ||
            (kn == 12 && strcasecmp(kv->key, "X-Request-Id") == 0))
            continue;
        if (kn == 4 && strcasecmp(kv->key, "Date") == 0)
            seen |= 1u << 31;
        put_field(hb, kv->key, kn, kv->value);
    }
    return seen;
}

/* Content-Length, chunked or neither; then Connection and the blank line. */
static void put_framing(struct outbuf *hb, struct http1_resp *r)
{
    int st = r->status;
    r->no_body = r->head_request || st == 204 || st == 304 || st < 200;
    r->chunked = 0;
    if (st == 204 || st == 304) {
        /* no framing headers */
    } else if (r->content_length >= 0) {
        outbuf_put(hb, "Content-Length: ", 16);
        outbuf_u64(hb, (uint64_t)r->content_length);
        outbuf_put(hb, "\r\n", 2);
    } else if (r->no_body) {
        /* HEAD without a known length: say nothing */
    } else if (r->http_minor == 1) {
        outbuf_str(hb, "Transfer-Encoding: chunked\r\n");
        r->chunked = 1;
    } else {
        r->keepalive = 0; /* HTTP/1.0: the end of the body is the end of the connection */
    }
    if (!r->keepalive)
        outbuf_str(hb, "Connection: close\r\n\r\n");
    else if (r->http_minor == 0)
        outbuf_str(hb, "Connection: keep-alive\r\n\r\n");
    else
        outbuf_put(hb, "\r\n", 2);
}

void http1_write_response_head(struct outbuf *hb, struct http1_resp *r,
                               const struct evkeyvalq *headers, const char *request_id,
                               const struct http1_field *extra, int nextra)
{
    outbuf_put(hb, r->http_minor ? "HTTP/1.1 " : "HTTP/1.0 ", 9);
    outbuf_u64(hb, (uint64_t)(r->status < 0 ? 0 : r->status));
    outbuf_put(hb, " ", 1);
    outbuf_str(hb, util_reason_phrase(r->status));
    outbuf_put(hb, "\r\n", 2);
    unsigned seen = headers ? put_fields(hb, headers, extra, nextra) : 0;
    if (!(seen & (1u << 31)))
        put_date(hb);
    outbuf_put(hb, "X-Request-Id: ", 14);
    outbuf_str(hb, request_id);
    outbuf_put(hb, "\r\n", 2);
    for (int i = 0; i < nextra; i++)
        if (extra[i].value && !(seen & (1u << i)))
            put_field(hb, extra[i].name, extra[i].name_len, extra[i].value);
    put_framing(hb, r);
}
