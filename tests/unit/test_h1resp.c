/*
 * test_h1resp: the response-head reader of the native upstream client (h1resp.h): head
 * ends, status lines, framing and persistence per RFC 9112, dropped lines, refused heads,
 * (chunk-size lines: http1_chunk_size, tests/unit/test_http1.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>

#include "h1resp.h"

static struct evkeyvalq H;
static struct h1resp_head R;

static int parse_req(const char *s, int head_request)
{
    evhttp_clear_headers(&H);
    long n = h1resp_head_len(s, strlen(s));
    if (n <= 0)
        return -2;
    return h1resp_parse(s, (size_t)n, head_request, &R, &H);
}

static int parse(const char *s)
{
    return parse_req(s, 0);
}

static int setup(void **state)
{
    TAILQ_INIT(&H);
    return 0;
}

static int teardown(void **state)
{
    evhttp_clear_headers(&H);
    return 0;
}

static void test_head_len(void **state)
{
    const char *a = "HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody";
    assert_int_equal(h1resp_head_len(a, strlen(a)), (long)(strlen(a) - 4));
    const char *b = "HTTP/1.1 200 OK\nA: b\n\nbody";
    assert_int_equal(h1resp_head_len(b, strlen(b)), (long)(strlen(b) - 4));
    const char *c = "HTTP/1.1 200 OK\r\nA: b\r\n";
    assert_int_equal(h1resp_head_len(c, strlen(c)), 0);
    assert_int_equal(h1resp_head_len(c, 0), 0);
    /* no end within the limit */
    size_t n = H1RESP_HEAD_MAX + 10;
    char *big = malloc(n);
    memset(big, 'x', n);
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
    assert_int_equal(h1resp_head_len(big, n), -1);
    assert_int_equal(h1resp_head_len(big, 1000), 0);
    free(big);
}

static void test_framing(void **state)
{
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-A: b\r\n\r\n"), 0);
    assert_int_equal(R.status, 200);
    assert_int_equal(R.framing, H1F_LENGTH);
    assert_int_equal(R.length, 12);
    assert_true(R.keep_alive);
    assert_string_equal(evhttp_find_header(&H, "x-a"), "b");

    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), 0);
    assert_int_equal(R.framing, H1F_NONE);

    assert_int_equal(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 0);
    assert_int_equal(R.framing, H1F_CHUNKED);
    assert_true(R.keep_alive);

    /* Transfer-Encoding wins over Content-Length, and the connection is not reused */
    assert_int_equal(
        parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
    assert_int_equal(R.framing, H1F_CHUNKED);
    assert_false(R.keep_alive);

    /* last coding not chunked: to the end */
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), 0);
    assert_int_equal(R.framing, H1F_CLOSE);
    assert_false(R.keep_alive);

    /* no framing at all */
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"), 0);
    assert_int_equal(R.framing, H1F_CLOSE);
    assert_false(R.keep_alive);

    /* no body: HEAD, 204, 304, 1xx */
    assert_int_equal(parse_req("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 1), 0);
    assert_int_equal(R.framing, H1F_NONE);
    assert_int_equal(parse("HTTP/1.1 204 No Content\r\n\r\n"), 0);
    assert_int_equal(R.framing, H1F_NONE);
    assert_true(R.keep_alive);
    assert_int_equal(parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"), 0);
    assert_int_equal(R.framing, H1F_NONE);
    assert_int_equal(parse("HTTP/1.1 100 Continue\r\n\r\n"), 0);
    assert_int_equal(R.status, 100);
    assert_int_equal(R.framing, H1F_NONE);
}

static void test_persistence(void **state)
{
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n"), 0);
    assert_false(R.keep_alive);
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nConnection: x, Close\r\nContent-Length: 1\r\n\r\n"),
                     0);
    assert_false(R.keep_alive);
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 1\r\n\r\n"),
                     0);
    assert_true(R.keep_alive); /* a token, not a prefix */
    assert_int_equal(parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"), 0);
    assert_int_equal(R.minor, 0);
    assert_false(R.keep_alive);
    assert_int_equal(
        parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n"), 0);
    assert_true(R.keep_alive);
}

static void test_dropped_lines(void **state)
{
    assert_int_equal(parse("HTTP/1.1 200 OK\r\n"
                           "Good: 1\r\n"
                           " folded continuation\r\n"
                           "no colon here\r\n"
                           "Bad Name: 2\r\n"
                           "Ctl: a\x01"
                           "b\r\n"
                           "Spaces:   padded   \r\n"
                           "Empty:\r\n"
                           "Content-Length: 3\r\n\r\n"),
                     0);
    assert_string_equal(evhttp_find_header(&H, "Good"), "1");
    assert_null(evhttp_find_header(&H, "Bad Name"));
    assert_null(evhttp_find_header(&H, "Ctl"));
    assert_string_equal(evhttp_find_header(&H, "Spaces"), "padded");
    assert_string_equal(evhttp_find_header(&H, "Empty"), "");
    int n = 0;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, &H, next)
    n++;
    assert_int_equal(n, 4); /* Good, Spaces, Empty, Content-Length */
    /* bare LF heads */
    assert_int_equal(parse("HTTP/1.1 201 Created\nX: y\nContent-Length: 2\n\n"), 0);
    assert_int_equal(R.status, 201);
    assert_string_equal(evhttp_find_header(&H, "X"), "y");
}

static void test_refused(void **state)
{
    const char *bad[] = {
        "SPDY/9 200 OK\r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1 600 High\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "HTTP/1.1 abc OK\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (parse(bad[i]) != -1)
            fail_msg("accepted: %s", bad[i]);
    }
    /* repeated equal lengths are fine */
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"), 0);
    assert_int_equal(R.length, 5);
    /* a status without a reason phrase */
    assert_int_equal(parse("HTTP/1.1 404\r\n\r\n"), 0);
    assert_int_equal(R.status, 404);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_len),    cmocka_unit_test(test_framing),
        cmocka_unit_test(test_persistence), cmocka_unit_test(test_dropped_lines),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
