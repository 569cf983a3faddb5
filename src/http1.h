/*
 * http1: the HTTP/1.1 wire format of hotgate's client side, as pure functions (no I/O, no
 * connection state, no allocation beyond what a function says). conn.c drives it for client
 * connections; upstream_h1.c uses its chunked decoder for upstream responses; the fuzzers
 * (tests/fuzz/fuzz_http1.c) and tests/unit/test_http1.c link it directly.
 *
 * Parsing rules (to leave no room for request smuggling): request line "METHOD SP
 * origin-form SP HTTP/1.x"; header names are tokens with no blank before the colon; no
 * obsolete line folding; Transfer-Encoding only as exactly "chunked" on HTTP/1.1 and never
 * together with Content-Length; Content-Length digits only and consistent when repeated.
 * Anything else is refused with the HTTP status the function returns.
 *
 * Pieces:
 *   - status lines take their phrase from THE reason-phrase table, util_reason_phrase (util.h,
 *     shared with hotdata-sim);
 *   - http1_parse_request_line / http1_parse_header_line / http1_head_framing: the request
 *     head, line by line, then its framing and persistence;
 *   - http1_chunked_*: THE chunked-body decoder, for requests and responses alike; each
 *     caller passes its own limits (struct http1_chunk_limits);
 *   - http1_write_response_head: a response head (status line, fields, Date, X-Request-Id,
 *     framing, Connection) into an outbuf.
 */
#ifndef HG_HTTP1_H
#define HG_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "outbuf.h"

/* 1 and *t set when m is one of the methods hotgate forwards (GET, POST, HEAD, PUT, DELETE,
 * OPTIONS, PATCH). */
int http1_method_known(const char *m, enum evhttp_cmd_type *t);

/* Split the request line (modified in place: NULs at the blanks) into method, target and
 * minor version. 0, or the status to refuse with (400, 505) and *why. */
int http1_parse_request_line(char *line, const char **method, const char **target, int *minor,
                             const char **why);

/* Split a header line (in place) into a name and a trimmed value. 0, or 400 and *why.
 * *drop is set when the name holds '_' (dropped, as nginx's underscores_in_headers off
 * does: "X-Workspace_Id" must not pass for X-Workspace-Id behind hotgate's back). */
int http1_parse_header_line(char *line, const char **name, size_t *name_len, const char **value,
                            size_t *value_len, int *drop, const char **why);

/* How a request body is framed. */
enum http1_framing { HTTP1_BODY_NONE = 0, HTTP1_BODY_LENGTH, HTTP1_BODY_CHUNKED };

/* What the complete request head says about its body and its connection. */
struct http1_head_info {
    enum http1_framing framing;
    uint64_t length;        /* HTTP1_BODY_LENGTH: Content-Length */
    int keepalive;          /* the connection may carry another request */
    const char *expect;     /* the first Expect value, or NULL */
    const char *request_id; /* the first X-Request-Id value, or NULL */
};

/* Read framing and persistence from the headers of a complete head (before hop-by-hop
 * removal). 0, or the status to refuse with (400, 501) and *why. */
int http1_head_framing(const struct evkeyvalq *h, int http_minor, struct http1_head_info *out,
                       const char **why);

/* ---- chunked transfer coding (RFC 9112 7.1) ---- */

/* Per-caller limits: a line longer than its limit makes the body malformed. */
struct http1_chunk_limits {
    size_t size_line_max; /* a chunk-size line (with its extensions) */
    size_t crlf_line_max; /* what may precede the CRLF after chunk data (0: nothing) */
    size_t trailer_max;   /* one trailer line */
    unsigned hex_max;     /* most hex digits of a chunk size (0: any, up to 2^62) */
};

enum http1_chunk_state {
    HTTP1_CK_SIZE = 0,
    HTTP1_CK_DATA,
    HTTP1_CK_CRLF,
    HTTP1_CK_TRAILER,
    HTTP1_CK_DONE
};

struct http1_chunked {
    enum http1_chunk_state st;
    uint64_t left; /* HTTP1_CK_DATA: bytes of the current chunk still to come */
};

#define HTTP1_CHUNK_BAD (-1) /* malformed size line or data CRLF */
#define HTTP1_CHUNK_BAD_TRAILER (-2)

static inline void http1_chunked_init(struct http1_chunked *ck)
{
    ck->st = HTTP1_CK_SIZE;
    ck->left = 0;
}

static inline int http1_chunked_done(const struct http1_chunked *ck)
{
    return ck->st == HTTP1_CK_DONE;
}

/* Decode what `in` holds: chunk data (at most max_out bytes) moves to dst, framing is
 * drained; trailers are dropped. Stops when in is exhausted, max_out bytes moved, or the
 * body ended (http1_chunked_done). 0, or HTTP1_CHUNK_BAD / HTTP1_CHUNK_BAD_TRAILER. Lines
 * end in LF with an optional CR before it. */
int http1_chunked_decode(struct http1_chunked *ck, struct evbuffer *in, struct evbuffer *dst,
                         size_t max_out, const struct http1_chunk_limits *lim);

/* A chunk-size line without its line end: "HEX[BWS][;ext]". 0 with *size set, or -1. At
 * most hex_max digits (0: any number, the value at most 2^62). */
int http1_chunk_size(const char *line, size_t len, unsigned hex_max, uint64_t *size);

/* ---- response head ---- */

/* A field a pipeline stage adds to every response head (e.g. X-Cache), unless the
 * response's own headers carry one of that name. */
struct http1_field {
    const char *name;
    size_t name_len;
    const char *value;
};

struct http1_resp {
    int http_minor;   /* the request's */
    int head_request; /* the request was HEAD */
    int status;
    int64_t content_length; /* -1: unknown */
    int keepalive;          /* in: the connection may be reused; out: and still may */
    int chunked;            /* out: the body goes chunked */
    int no_body;            /* out: the response has no body (HEAD, 1xx, 204, 304) */
};

/* Status line, the forwardable `headers` (hdr_forward_to_client; X-Request-Id replaced by
 * request_id), Date unless given, the extra fields, framing and Connection, into hb (not
 * flushed). Updates r's out fields. */
void http1_write_response_head(struct outbuf *hb, struct http1_resp *r,
                               const struct evkeyvalq *headers, const char *request_id,
                               const struct http1_field *extra, int nextra);

#endif
