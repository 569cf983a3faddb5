/*
 * test_http1: the HTTP/1.1 codec of src/http1.c as pure functions: reason phrases, request
 * line, header lines, head framing, the chunked decoder with each caller's limits (client
 * requests: conn_chunk_limits; upstream responses: any digit count), chunk-size lines and
 * the response-head writer. The codec over a live connection: test_regress_fuzz.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "hdr.h"
#include "http1.h"
#include "util.h"

static void test_reason_phrases(void **state)
{
    assert_string_equal(util_reason_phrase(200), "OK");
    assert_string_equal(util_reason_phrase(100), "Continue");
    assert_string_equal(util_reason_phrase(304), "Not Modified");
    assert_string_equal(util_reason_phrase(413), "Content Too Large");
    assert_string_equal(util_reason_phrase(429), "Too Many Requests");
    assert_string_equal(util_reason_phrase(431), "Request Header Fields Too Large");
    assert_string_equal(util_reason_phrase(505), "HTTP Version Not Supported");
    /* none of its own: empty, never made up */
    assert_string_equal(util_reason_phrase(499), "");
    assert_string_equal(util_reason_phrase(520), "");
    assert_string_equal(util_reason_phrase(306), "");
    assert_string_equal(util_reason_phrase(0), "");
    assert_string_equal(util_reason_phrase(-1), "");
    assert_string_equal(util_reason_phrase(600), "");
}

static void test_request_line(void **state)
{
    char l1[] = "GET /v1/x?a=1 HTTP/1.1";
    const char *m, *t, *why = NULL;
    int minor = -1;
    assert_int_equal(http1_parse_request_line(l1, &m, &t, &minor, &why), 0);
    assert_string_equal(m, "GET");
    assert_string_equal(t, "/v1/x?a=1");
    assert_int_equal(minor, 1);
    char l2[] = "HEAD / HTTP/1.0";
    assert_int_equal(http1_parse_request_line(l2, &m, &t, &minor, &why), 0);
    assert_int_equal(minor, 0);
    char l3[] = "GET /v1/x HTTP/2.0";
    assert_int_equal(http1_parse_request_line(l3, &m, &t, &minor, &why), 505);
    char l4[] = "GET /v1/x FOO/1.1";
    assert_int_equal(http1_parse_request_line(l4, &m, &t, &minor, &why), 400);
    char l5[] = "GET  /v1/x HTTP/1.1";
    assert_int_equal(http1_parse_request_line(l5, &m, &t, &minor, &why), 400);
    char l6[] = "GET /v1/x";
    assert_int_equal(http1_parse_request_line(l6, &m, &t, &minor, &why), 400);
    char l7[] = "G(T /v1/x HTTP/1.1";
    assert_int_equal(http1_parse_request_line(l7, &m, &t, &minor, &why), 400);
    assert_string_equal(why, "malformed method");
    enum evhttp_cmd_type ty;
    assert_true(http1_method_known("OPTIONS", &ty));
    assert_int_equal(ty, EVHTTP_REQ_OPTIONS);
    assert_false(http1_method_known("TRACE", &ty));
    assert_false(http1_method_known("get", &ty));
}

static void test_header_line(void **state)
{
    const char *n, *v, *why;
    size_t nl, vl;
    int drop;
    char h1[] = "X-A: \t b c \t";
    assert_int_equal(http1_parse_header_line(h1, &n, &nl, &v, &vl, &drop, &why), 0);
    assert_int_equal(nl, 3);
    assert_memory_equal(n, "X-A", 3);
    assert_string_equal(v, "b c");
    assert_int_equal(vl, 3);
    assert_false(drop);
    char h2[] = " folded";
    assert_int_equal(http1_parse_header_line(h2, &n, &nl, &v, &vl, &drop, &why), 400);
    char h3[] = "X-A : b";
    assert_int_equal(http1_parse_header_line(h3, &n, &nl, &v, &vl, &drop, &why), 400);
    char h4[] = "no colon";
    assert_int_equal(http1_parse_header_line(h4, &n, &nl, &v, &vl, &drop, &why), 400);
    char h5[] = "X-A: b\x01";
    assert_int_equal(http1_parse_header_line(h5, &n, &nl, &v, &vl, &drop, &why), 400);
    char h6[] = "X-Workspace_Id: w";
    assert_int_equal(http1_parse_header_line(h6, &n, &nl, &v, &vl, &drop, &why), 0);
    assert_true(drop);
}

/* The head's headers live until the next call (hi points into them). */
static struct evkeyvalq fh = TAILQ_HEAD_INITIALIZER(fh);

static int framing(const char *const *kv, int minor, struct http1_head_info *hi)
{
    evhttp_clear_headers(&fh);
    for (int i = 0; kv[i]; i += 2)
        evhttp_add_header(&fh, kv[i], kv[i + 1]);
    const char *why = NULL;
    return http1_head_framing(&fh, minor, hi, &why);
}

static void test_head_framing(void **state)
{
    struct http1_head_info hi;
    const char *none[] = {NULL};
    assert_int_equal(framing(none, 1, &hi), 0);
    assert_int_equal(hi.framing, HTTP1_BODY_NONE);
    assert_true(hi.keepalive);
    assert_int_equal(framing(none, 0, &hi), 0);
    assert_false(hi.keepalive);
    const char *ka10[] = {"Connection", "keep-alive", NULL};
    assert_int_equal(framing(ka10, 0, &hi), 0);
    assert_true(hi.keepalive);
    const char *close11[] = {"Connection", "close", NULL};
    assert_int_equal(framing(close11, 1, &hi), 0);
    assert_false(hi.keepalive);
    const char *cl[] = {"Content-Length", "12", "Content-Length", "12", NULL};
    assert_int_equal(framing(cl, 1, &hi), 0);
    assert_int_equal(hi.framing, HTTP1_BODY_LENGTH);
    assert_int_equal(hi.length, 12);
    const char *cl0[] = {"Content-Length", "0", NULL};
    assert_int_equal(framing(cl0, 1, &hi), 0);
    assert_int_equal(hi.framing, HTTP1_BODY_NONE);
    const char *te[] = {"Transfer-Encoding", "chunked", "Expect", "100-continue",
                        "X-Request-Id",      "abc",     NULL};
    assert_int_equal(framing(te, 1, &hi), 0);
    assert_int_equal(hi.framing, HTTP1_BODY_CHUNKED);
    assert_string_equal(hi.expect, "100-continue");
    assert_string_equal(hi.request_id, "abc");
    /* smuggling shapes */
    const char *te_cl[] = {"Transfer-Encoding", "chunked", "Content-Length", "3", NULL};
    assert_int_equal(framing(te_cl, 1, &hi), 400);
    const char *te10[] = {"Transfer-Encoding", "chunked", NULL};
    assert_int_equal(framing(te10, 0, &hi), 400);
    const char *te_gzip[] = {"Transfer-Encoding", "gzip", NULL};
    assert_int_equal(framing(te_gzip, 1, &hi), 501);
    const char *te2[] = {"Transfer-Encoding", "chunked", "Transfer-Encoding", "chunked", NULL};
    assert_int_equal(framing(te2, 1, &hi), 400);
    const char *cl_bad[] = {"Content-Length", "+3", NULL};
    assert_int_equal(framing(cl_bad, 1, &hi), 400);
    const char *cl_two[] = {"Content-Length", "3", "Content-Length", "4", NULL};
    assert_int_equal(framing(cl_two, 1, &hi), 400);
    const char *cl_long[] = {"Content-Length", "1234567890123456789", NULL};
    assert_int_equal(framing(cl_long, 1, &hi), 400);
    evhttp_clear_headers(&fh);
}

/* Decode body with lim, fed in pieces of `step` bytes (0: whole). Returns the verdict;
 * *out the decoded bytes (malloc'd, NUL-terminated), *done. */
static int decode(const char *body, size_t len, size_t step, const struct http1_chunk_limits *lim,
                  char **out, int *done)
{
    struct http1_chunked ck;
    http1_chunked_init(&ck);
    struct evbuffer *in = evbuffer_new(), *dst = evbuffer_new();
    int rc = 0;
    step = step ? step : len;
    for (size_t off = 0; off < len && rc == 0; off += step) {
        evbuffer_add(in, body + off, off + step > len ? len - off : step);
        rc = http1_chunked_decode(&ck, in, dst, SIZE_MAX, lim);
    }
    size_t n = evbuffer_get_length(dst);
    *out = calloc(1, n + 1);
    evbuffer_remove(dst, *out, n);
    *done = http1_chunked_done(&ck);
    evbuffer_free(in);
    evbuffer_free(dst);
    return rc;
}

static const struct http1_chunk_limits upstream_limits = {4096, 4096, 4096, 0};

static void test_chunked_decoder(void **state)
{
    static const char ok[] =
        "5;ext=1\r\nhello\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: t\r\n\r\n";
    for (size_t step = 0; step < 8; step++) {
        char *out;
        int done;
        assert_int_equal(decode(ok, sizeof ok - 1, step, &conn_chunk_limits, &out, &done), 0);
        assert_true(done);
        assert_string_equal(out, "helloabcdefghijklmnopqrstuvwxyz");
        free(out);
        assert_int_equal(decode(ok, sizeof ok - 1, step, &upstream_limits, &out, &done), 0);
        assert_true(done);
        free(out);
    }
    char *out;
    int done;
    /* the data must be followed by CRLF */
    static const char nocrlf[] = "5\r\nhelloX\r\n0\r\n\r\n";
    assert_int_equal(decode(nocrlf, sizeof nocrlf - 1, 0, &conn_chunk_limits, &out, &done),
                     HTTP1_CHUNK_BAD);
    free(out);
    /* garbage after the size */
    static const char garbage[] = "5 xyz\r\nhello\r\n0\r\n\r\n";
    assert_int_equal(decode(garbage, sizeof garbage - 1, 0, &upstream_limits, &out, &done),
                     HTTP1_CHUNK_BAD);
    free(out);
    /* NUL in a size line */
    static const char nul[] = "5;a\0b\r\nhello\r\n0\r\n\r\n";
    assert_int_equal(decode(nul, sizeof nul - 1, 0, &conn_chunk_limits, &out, &done),
                     HTTP1_CHUNK_BAD);
    free(out);
}

static void test_chunked_limits_per_caller(void **state)
{
    char *out;
    int done;
    /* 16 hex digits: the client side allows 15, the upstream side any up to 2^62 */
    static const char digits[] = "0000000000000005\r\nhello\r\n0\r\n\r\n";
    assert_int_equal(decode(digits, sizeof digits - 1, 0, &conn_chunk_limits, &out, &done),
                     HTTP1_CHUNK_BAD);
    free(out);
    assert_int_equal(decode(digits, sizeof digits - 1, 0, &upstream_limits, &out, &done), 0);
    assert_string_equal(out, "hello");
    free(out);
    /* a 2000-byte extension: over the client's 1024, within the upstream's 4096 */
    char big[2100];
    int k = snprintf(big, sizeof big, "5;");
    memset(big + k, 'x', 2000);
    k += 2000;
    k += snprintf(big + k, sizeof big - (size_t)k, "\r\nhello\r\n0\r\n\r\n");
    assert_int_equal(decode(big, (size_t)k, 0, &conn_chunk_limits, &out, &done), HTTP1_CHUNK_BAD);
    free(out);
    assert_int_equal(decode(big, (size_t)k, 0, &upstream_limits, &out, &done), 0);
    assert_true(done);
    free(out);
    /* split in pieces: still refused by the client limits (no complete line to judge) */
    assert_int_equal(decode(big, (size_t)k, 100, &conn_chunk_limits, &out, &done), HTTP1_CHUNK_BAD);
    free(out);
    /* a trailer line over the limit */
    char tr[6000];
    k = snprintf(tr, sizeof tr, "0\r\nT: ");
    memset(tr + k, 'y', 5000);
    k += 5000;
    k += snprintf(tr + k, sizeof tr - (size_t)k, "\r\n\r\n");
    assert_int_equal(decode(tr, (size_t)k, 0, &upstream_limits, &out, &done),
                     HTTP1_CHUNK_BAD_TRAILER);
    free(out);
    assert_int_equal(decode(tr, (size_t)k, 0, &conn_chunk_limits, &out, &done), 0);
    assert_true(done);
    free(out);
}

static void test_chunked_max_out(void **state)
{
    static const char body[] = "a\r\n0123456789\r\n0\r\n\r\n";
    struct http1_chunked ck;
    http1_chunked_init(&ck);
    struct evbuffer *in = evbuffer_new(), *dst = evbuffer_new();
    evbuffer_add(in, body, sizeof body - 1);
    assert_int_equal(http1_chunked_decode(&ck, in, dst, 4, &conn_chunk_limits), 0);
    assert_int_equal(evbuffer_get_length(dst), 4);
    assert_false(http1_chunked_done(&ck));
    assert_int_equal(http1_chunked_decode(&ck, in, dst, 100, &conn_chunk_limits), 0);
    assert_int_equal(evbuffer_get_length(dst), 10);
    assert_true(http1_chunked_done(&ck));
    evbuffer_free(in);
    evbuffer_free(dst);
}

static void test_chunk_size_upstream_rules(void **state)
{
    uint64_t n;
    assert_int_equal(http1_chunk_size("1a", 2, 0, &n), 0);
    assert_int_equal(n, 26);
    assert_int_equal(http1_chunk_size("FF;name=val", 11, 0, &n), 0);
    assert_int_equal(n, 255);
    assert_int_equal(http1_chunk_size("0", 1, 0, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(http1_chunk_size("10 ;x", 5, 0, &n), 0);
    assert_int_equal(n, 16);
    assert_int_equal(http1_chunk_size("", 0, 0, &n), -1);
    assert_int_equal(http1_chunk_size("zz", 2, 0, &n), -1);
    assert_int_equal(http1_chunk_size("-1", 2, 0, &n), -1);
    assert_int_equal(http1_chunk_size("0x10", 4, 0, &n), -1);
    assert_int_equal(http1_chunk_size("10 junk", 7, 0, &n), -1);
    assert_int_equal(http1_chunk_size("4000000000000000", 16, 0, &n), 0); /* 2^62 */
    assert_int_equal(http1_chunk_size("4000000000000001", 16, 0, &n), -1);
    assert_int_equal(http1_chunk_size("ffffffffffffffffff", 18, 0, &n), -1);
    /* only len bytes are read */
    assert_int_equal(http1_chunk_size("5zz", 1, 0, &n), 0);
    assert_int_equal(n, 5);
}

static void test_chunk_size_client_digits(void **state)
{
    uint64_t n;
    assert_int_equal(http1_chunk_size("fffffffffffffff", 15, 15, &n), 0);
    assert_int_equal(http1_chunk_size("0000000000000001", 16, 15, &n), -1);
    assert_int_equal(http1_chunk_size("5\t;x", 4, 15, &n), 0);
    assert_int_equal(n, 5);
}

static char *head(struct http1_resp *r, const struct evkeyvalq *h, const struct http1_field *f,
                  int nf)
{
    struct evbuffer *b = evbuffer_new();
    struct outbuf ob;
    outbuf_init(&ob, b);
    http1_write_response_head(&ob, r, h, "rid-1", f, nf);
    outbuf_flush(&ob);
    size_t n = evbuffer_get_length(b);
    char *s = calloc(1, n + 1);
    evbuffer_remove(b, s, n);
    evbuffer_free(b);
    return s;
}

static void test_response_head(void **state)
{
    struct evkeyvalq h;
    TAILQ_INIT(&h);
    evhttp_add_header(&h, "Content-Type", "application/json");
    evhttp_add_header(&h, "X-Request-Id", "from-upstream");
    evhttp_add_header(&h, "Connection", "keep-alive");
    struct http1_field xc = {"X-Cache", 7, "MISS"};
    struct http1_resp r = {.http_minor = 1, .status = 200, .content_length = 5, .keepalive = 1};
    char *s = head(&r, &h, &xc, 1);
    assert_true(strncmp(s, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(s, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(s, "\r\nX-Request-Id: rid-1\r\n"));
    assert_null(strstr(s, "from-upstream"));
    assert_null(strstr(s, "Connection"));
    assert_non_null(strstr(s, "\r\nDate: "));
    assert_non_null(strstr(s, "\r\nX-Cache: MISS\r\n"));
    assert_non_null(strstr(s, "\r\nContent-Length: 5\r\n\r\n"));
    assert_false(r.chunked);
    assert_true(r.keepalive);
    free(s);
    /* the response's own X-Cache wins over the stage's */
    evhttp_add_header(&h, "X-Cache", "HIT");
    s = head(&r, &h, &xc, 1);
    assert_non_null(strstr(s, "X-Cache: HIT"));
    assert_null(strstr(s, "MISS"));
    free(s);
    /* unknown length: chunked on 1.1, close on 1.0; HEAD has no body */
    r = (struct http1_resp){.http_minor = 1, .status = 200, .content_length = -1, .keepalive = 1};
    s = head(&r, NULL, NULL, 0);
    assert_non_null(strstr(s, "Transfer-Encoding: chunked\r\n\r\n"));
    assert_true(r.chunked);
    free(s);
    r = (struct http1_resp){.http_minor = 0, .status = 200, .content_length = -1, .keepalive = 1};
    s = head(&r, NULL, NULL, 0);
    assert_true(strncmp(s, "HTTP/1.0 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(s, "Connection: close\r\n\r\n"));
    assert_false(r.keepalive);
    free(s);
    r = (struct http1_resp){.http_minor = 0, .status = 204, .content_length = 0, .keepalive = 1};
    s = head(&r, NULL, NULL, 0);
    assert_null(strstr(s, "Content-Length"));
    assert_non_null(strstr(s, "Connection: keep-alive\r\n\r\n"));
    assert_true(r.no_body);
    free(s);
    r = (struct http1_resp){
        .http_minor = 1, .head_request = 1, .status = 200, .content_length = -1, .keepalive = 1};
    s = head(&r, NULL, NULL, 0);
    assert_null(strstr(s, "chunked"));
    assert_true(r.no_body);
    free(s);
    r = (struct http1_resp){.http_minor = 1, .status = 599, .content_length = 0, .keepalive = 0};
    s = head(&r, NULL, NULL, 0);
    assert_true(strncmp(s, "HTTP/1.1 599 \r\n", 15) == 0);
    assert_non_null(strstr(s, "Connection: close\r\n\r\n"));
    free(s);
    evhttp_clear_headers(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reason_phrases),
        cmocka_unit_test(test_request_line),
        cmocka_unit_test(test_header_line),
        cmocka_unit_test(test_head_framing),
        cmocka_unit_test(test_chunked_decoder),
        cmocka_unit_test(test_chunked_limits_per_caller),
        cmocka_unit_test(test_chunked_max_out),
        cmocka_unit_test(test_chunk_size_upstream_rules),
        cmocka_unit_test(test_chunk_size_client_digits),
        cmocka_unit_test(test_response_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
