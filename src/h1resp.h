/*
 * h1resp: the wire format of an HTTP/1.x response head as the native upstream client
 * (upstream_h1.c) reads it: where a head ends, what it says (status, headers, body framing,
 * whether the connection may be reused); its chunked bodies are decoded by http1.h's
 * decoder (one for both directions). Pure functions over bytes:
 * no I/O, no state; unit-tested (test_h1resp.c) and fuzzed (fuzz_h1resp.c).
 *
 * Rules (RFC 9112):
 *   - status line "HTTP/1.0|1.1 SP 3DIGIT [SP reason]", status 100..599;
 *   - lines end in CRLF or a bare LF; the head ends at the first empty line and must do so
 *     within H1RESP_HEAD_MAX bytes;
 *   - folded (obs-fold) lines, and lines that are not "name: value" with a valid token name
 *     (or a name over 255 bytes), are dropped; values with control characters are dropped;
 *   - Content-Length is digits only and must agree when repeated;
 *   - Transfer-Encoding wins over Content-Length (and then the connection is not reused); a
 *     Transfer-Encoding whose last coding is not chunked means "read to the end";
 *   - no framing header: read to the end, no reuse; HEAD answers, 1xx, 204 and 304 carry no
 *     body; HTTP/1.1 is persistent unless "Connection: close", HTTP/1.0 only with
 *     "Connection: keep-alive".
 */
#ifndef HG_H1RESP_H
#define HG_H1RESP_H

#include <stddef.h>
#include <stdint.h>

#include <event2/keyvalq_struct.h>

#define H1RESP_HEAD_MAX (64u << 10)

enum h1resp_framing {
    H1F_NONE,    /* no body */
    H1F_LENGTH,  /* Content-Length bytes (length > 0) */
    H1F_CHUNKED, /* chunked transfer coding */
    H1F_CLOSE,   /* up to the end of the connection */
};

struct h1resp_head {
    int status;
    int minor; /* HTTP/1.minor */
    enum h1resp_framing framing;
    uint64_t length; /* H1F_LENGTH */
    int keep_alive;  /* the connection may carry another exchange after this one */
};

/* Length of the head at the start of b (through its empty line); 0 while incomplete; -1
 * when n >= H1RESP_HEAD_MAX and no head ends within it. */
long h1resp_head_len(const char *b, size_t n);

/* Parse the complete head b[0..len) (len from h1resp_head_len). head_request: the request
 * was HEAD. The headers are added to hdrs (evhttp_add_header), in order. Returns 0, or -1
 * when the head is malformed (hdrs may then hold some headers). */
int h1resp_parse(const char *b, size_t len, int head_request, struct h1resp_head *out,
                 struct evkeyvalq *hdrs);

#endif
