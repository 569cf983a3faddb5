/*
 * test_sim_wire: HTTP/1.1 framing through hotdata-sim's connection filter (sim/stream.c),
 * over raw sockets: pipelined requests, a request trickled byte by byte, a chunked upload
 * with Expect: 100-continue and a trailer followed by a pipelined request, an oversized
 * upload refused from its head, garbage that must not take the simulator down, and answers
 * that must arrive whole before the simulator closes: "Connection: close", HTTP/1.0 (with and
 * without keep-alive), a 6 MB body to a client that reads late.
 *
 * Rules: raw TCP (no libcurl) so the exact bytes on the wire are under the test's control.
 */
#include "sim_core_it.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#define AUTH "Authorization: Bearer tok_test\r\nX-Workspace-Id: ws_test\r\n"

static int setup(void **state)
{
    (void)state;
    /* a low upload limit so the over-limit cases need no gigabytes */
    static const char *const extra[] = {"--seed-rows", "100", "--max-upload-bytes", "1000000",
                                        NULL};
    return sci_start(extra);
}

static int teardown(void **state)
{
    (void)state;
    sci_stop();
    return 0;
}

static int wire_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)sci_proc.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void wire_send(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the peer may close on garbage */
        c += w;
        n -= (size_t)w;
    }
}

/* Read until the peer closes or nothing arrives for idle_ms. malloc'd, NUL-terminated. */
static char *wire_read(int fd, int idle_ms, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, idle_ms) <= 0)
            break;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
        ssize_t r = recv(fd, buf + n, cap - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static int count(const char *hay, size_t len, const char *needle)
{
    int c = 0;
    size_t nl = strlen(needle);
    for (const char *p = hay; (p = memmem(p, len - (size_t)(p - hay), needle, nl)) != NULL; p += nl)
        c++;
    return c;
}

static const char get_req[] = "GET /v1/jobs HTTP/1.1\r\nHost: sim\r\n" AUTH "\r\n";

static char *query_req(const char *sql, size_t *len)
{
    char body[256], *out = malloc(1024);
    assert_non_null(out);
    snprintf(body, sizeof body, "{\"sql\":\"%s\"}", sql);
    *len = (size_t)snprintf(out, 1024,
                            "POST /v1/query HTTP/1.1\r\nHost: sim\r\n" AUTH
                            "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                            strlen(body), body);
    return out;
}

static void test_pipelined_requests(void **state)
{
    (void)state;
    size_t ql;
    char *q = query_req("SELECT 40+2 AS answer", &ql);
    int fd = wire_connect();
    char all[4096];
    size_t n = (size_t)snprintf(all, sizeof all, "%s%s", get_req, get_req);
    memcpy(all + n, q, ql);
    wire_send(fd, all, n + ql);
    size_t len;
    char *r = wire_read(fd, 1500, &len);
    close(fd);
    assert_int_equal(count(r, len, "HTTP/1.1 200 OK"), 3);
    assert_non_null(strstr(r, "[[42]]"));
    free(r);
    free(q);
}

static void test_trickled_request(void **state)
{
    (void)state;
    size_t ql;
    char *q = query_req("SELECT 'slow' AS s", &ql);
    int fd = wire_connect();
    for (size_t i = 0; i < ql; i++) {
        wire_send(fd, q + i, 1);
        if (i % 16 == 0)
            sci_sleep_ms(1);
    }
    size_t len;
    char *r = wire_read(fd, 1500, &len);
    close(fd);
    assert_true(strncmp(r, "HTTP/1.1 200 OK", 15) == 0);
    assert_non_null(strstr(r, "\"slow\""));
    free(r);
    free(q);
}

static void test_chunked_upload_then_pipelined(void **state)
{
    (void)state;
    enum { N = 200000 };
    unsigned char *payload = malloc(N);
    assert_non_null(payload);
    for (size_t i = 0; i < N; i++)
        payload[i] = (unsigned char)(i * 7 + 3);
    int fd = wire_connect();
    const char *head =
        "POST /v1/files HTTP/1.1\r\nHost: sim\r\n" AUTH "Content-Type: application/octet-stream\r\n"
        "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n";
    wire_send(fd, head, strlen(head));
    /* the filter answers the Expect itself */
    char cont[64] = {0};
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 3000), 1);
    ssize_t cr = recv(fd, cont, sizeof cont - 1, 0);
    assert_true(cr > 0);
    assert_non_null(strstr(cont, "100 Continue"));
    for (size_t off = 0; off < N; off += 30000) {
        size_t n = N - off < 30000 ? N - off : 30000;
        char sz[32];
        int l = snprintf(sz, sizeof sz, "%zx;ext=1\r\n", n);
        wire_send(fd, sz, (size_t)l);
        wire_send(fd, payload + off, n);
        wire_send(fd, "\r\n", 2);
    }
    const char *tail = "0\r\nX-Trailer: t\r\n\r\n";
    char both[1024];
    size_t bl = (size_t)snprintf(both, sizeof both, "%s%s", tail, get_req);
    wire_send(fd, both, bl);
    size_t len;
    char *r = wire_read(fd, 2000, &len);
    close(fd);
    assert_int_equal(count(r, len, "HTTP/1.1 201"), 1);
    assert_int_equal(count(r, len, "HTTP/1.1 200 OK"), 1);
    assert_non_null(strstr(r, "\"size_bytes\":200000"));
    free(r);
    free(payload);
    json_t *s = sci_ctl("GET", "/_sim/stats", NULL);
    assert_int_equal(sci_json_int(s, "uploads", "bytes"), 200000);
    json_decref(s);
}

static void test_oversized_upload_refused_early(void **state)
{
    (void)state;
    int fd = wire_connect();
    const char *head = "POST /v1/files HTTP/1.1\r\nHost: sim\r\n" AUTH
                       "Content-Length: 99999999999\r\nExpect: 100-continue\r\n\r\n";
    wire_send(fd, head, strlen(head));
    /* answered before any body byte was sent: 413 API-shaped, connection closed */
    size_t len;
    char *r = wire_read(fd, 2000, &len);
    close(fd);
    assert_true(strncmp(r, "HTTP/1.1 413", 12) == 0);
    assert_non_null(strstr(r, "\"code\":\"PAYLOAD_TOO_LARGE\""));
    assert_null(strstr(r, "100 Continue"));
    free(r);
}

/* Read until the peer closes (*eof = true) or timeout_ms passes. malloc'd, NUL-terminated. */
static char *wire_read_eof(int fd, int timeout_ms, size_t *len, bool *eof)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    *eof = false;
    uint64_t until = util_mono_ms() + (uint64_t)timeout_ms;
    while (util_mono_ms() < until) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
        ssize_t r = recv(fd, buf + n, cap - n, 0);
        if (r <= 0) {
            *eof = true;
            break;
        }
        n += (size_t)r;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* One response: status line prefix, the body is the rest and is whole: as long as a declared
 * Content-Length (HTTP/1.0 answers may end at the close instead), and valid JSON. */
static const char *wire_check_response(const char *r, size_t len, const char *status_line)
{
    assert_true(strncmp(r, status_line, strlen(status_line)) == 0);
    const char *end = strstr(r, "\r\n\r\n");
    assert_non_null(end);
    const char *body = end + 4;
    size_t blen = len - (size_t)(body - r);
    const char *cl = strcasestr(r, "\r\nContent-Length:");
    if (cl && cl < end)
        assert_int_equal((long long)blen, strtoll(cl + 17, NULL, 10));
    json_t *j = json_loadb(body, blen, 0, NULL);
    assert_non_null(j);
    json_decref(j);
    return body;
}

/* A request the simulator must answer and then close: the answer arrives whole first. */
static void wire_expect_close(const char *req, const char *status_line)
{
    int fd = wire_connect();
    wire_send(fd, req, strlen(req));
    size_t len;
    bool eof;
    char *r = wire_read_eof(fd, 5000, &len, &eof);
    close(fd);
    assert_true(eof);
    const char *body = wire_check_response(r, len, status_line);
    assert_non_null(strstr(body, "\"jobs\""));
    free(r);
}

static void test_connection_close_answered(void **state)
{
    (void)state;
    wire_expect_close("GET /v1/jobs HTTP/1.1\r\nHost: sim\r\n" AUTH "Connection: close\r\n\r\n",
                      "HTTP/1.1 200 OK");
    /* HTTP/1.0 without keep-alive closes after the answer (nginx proxies this way) */
    wire_expect_close("GET /v1/jobs HTTP/1.0\r\nHost: sim\r\n" AUTH "\r\n", "HTTP/1.0 200");
    /* many in a row: none may come back empty */
    for (int i = 0; i < 50; i++)
        wire_expect_close("GET /v1/jobs HTTP/1.1\r\nHost: sim\r\n" AUTH "Connection: close\r\n\r\n",
                          "HTTP/1.1 200 OK");
}

static void test_http10_keep_alive(void **state)
{
    (void)state;
    static const char req[] =
        "GET /v1/jobs HTTP/1.0\r\nHost: sim\r\n" AUTH "Connection: keep-alive\r\n\r\n";
    int fd = wire_connect();
    for (int i = 0; i < 2; i++) {
        wire_send(fd, req, strlen(req));
        size_t len;
        char *r = wire_read(fd, 500, &len);
        const char *body = wire_check_response(r, len, "HTTP/1.0 200");
        assert_non_null(strstr(body, "\"jobs\""));
        free(r);
    }
    close(fd);
}

static void test_big_answer_then_close(void **state)
{
    (void)state;
    /* ~6 MB of JSON, more than the socket buffers hold: most of it is written after the
     * client starts reading, with the close pending */
    size_t ql;
    char *q = query_req("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE"
                        " x<100000) SELECT x, lpad(x::text, 50, '0') AS pad FROM c",
                        &ql);
    char *close_q = malloc(ql + 32);
    assert_non_null(close_q);
    const char *hdr_end = strstr(q, "\r\n\r\n");
    size_t head = (size_t)(hdr_end - q) + 2;
    memcpy(close_q, q, head);
    size_t n = head + (size_t)sprintf(close_q + head, "Connection: close\r\n");
    memcpy(close_q + n, q + head, ql - head);
    n += ql - head;
    for (int late = 0; late < 2; late++) {
        int fd = wire_connect();
        wire_send(fd, close_q, n);
        if (late)
            sci_sleep_ms(300); /* the socket fills up: the rest waits for the reader */
        size_t len;
        bool eof;
        char *r = wire_read_eof(fd, 20000, &len, &eof);
        close(fd);
        assert_true(eof);
        const char *body = wire_check_response(r, len, "HTTP/1.1 200 OK");
        json_t *j = json_loads(body, 0, NULL);
        assert_non_null(j);
        assert_int_equal(json_integer_value(json_object_get(j, "row_count")), 100000);
        assert_int_equal(json_array_size(json_object_get(j, "rows")), 100000);
        json_decref(j);
        free(r);
    }
    free(close_q);
    free(q);
}

static void test_over_limit_upload_refused(void **state)
{
    (void)state;
    /* declared one byte over --max-upload-bytes: 413 from the head */
    int fd = wire_connect();
    const char *head =
        "POST /v1/files HTTP/1.1\r\nHost: sim\r\n" AUTH "Content-Length: 1000001\r\n\r\n";
    wire_send(fd, head, strlen(head));
    size_t len;
    char *r = wire_read(fd, 1000, &len);
    close(fd);
    assert_true(strncmp(r, "HTTP/1.1 413", 12) == 0);
    assert_non_null(strstr(r, "\"code\":\"PAYLOAD_TOO_LARGE\""));
    free(r);
    /* chunked, no size up front: refused as soon as the body grows over the limit */
    fd = wire_connect();
    head = "POST /v1/files HTTP/1.1\r\nHost: sim\r\n" AUTH "Transfer-Encoding: chunked\r\n\r\n";
    wire_send(fd, head, strlen(head));
    static char chunk[100000];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 15; i++) {
        wire_send(fd, "186a0\r\n", 7);
        wire_send(fd, chunk, sizeof chunk);
        wire_send(fd, "\r\n", 2);
    }
    wire_send(fd, "0\r\n\r\n", 5);
    r = wire_read(fd, 1000, &len);
    close(fd);
    assert_true(strncmp(r, "HTTP/1.1 413", 12) == 0);
    assert_non_null(strstr(r, "\"code\":\"PAYLOAD_TOO_LARGE\""));
    free(r);
    /* nothing stored, no partial file left, still serving */
    json_t *s = sci_ctl("GET", "/_sim/stats", NULL);
    assert_int_equal(sci_json_int(s, "uploads", "bytes"), 200000); /* the earlier upload only */
    json_decref(s);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls %s/sim-data/uploads | grep -c part > /dev/null", sci_dir);
    assert_int_not_equal(system(cmd), 0);
}

static void test_garbage_does_not_hurt(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\x01\xff garbage\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        "POST /v1/files HTTP/1.1\r\nContent-Length: -5\r\n\r\nabc",
        "POST /v1/files HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "POST /v1/query HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
        "\r\n\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int fd = wire_connect();
        wire_send(fd, bad[i], strlen(bad[i]));
        free(wire_read(fd, 200, NULL));
        close(fd);
    }
    /* a NUL inside a head */
    int fd = wire_connect();
    wire_send(fd, "GET /\0x HTTP/1.1\r\n\r\n", 20);
    free(wire_read(fd, 200, NULL));
    close(fd);
    /* an oversized head */
    char *big = malloc(80000);
    assert_non_null(big);
    memset(big, 'a', 80000);
    memcpy(big, "GET /", 5);
    fd = wire_connect();
    wire_send(fd, big, 80000);
    free(wire_read(fd, 300, NULL));
    close(fd);
    free(big);
    /* random bytes */
    srand(7);
    unsigned char junk[2048];
    for (int k = 0; k < 50; k++) {
        size_t n = 1 + (size_t)(rand() % (int)sizeof junk);
        for (size_t i = 0; i < n; i++)
            junk[i] = (unsigned char)rand();
        fd = wire_connect();
        wire_send(fd, junk, n);
        free(wire_read(fd, 20, NULL));
        close(fd);
    }
    /* still serving, and no partial upload left behind */
    fd = wire_connect();
    wire_send(fd, get_req, strlen(get_req));
    char *r = wire_read(fd, 1000, NULL);
    close(fd);
    assert_true(strncmp(r, "HTTP/1.1 200 OK", 15) == 0);
    free(r);
    char path[1024];
    snprintf(path, sizeof path, "ls %s/sim-data/uploads | grep -c part > /dev/null", sci_dir);
    assert_int_not_equal(system(path), 0); /* grep found no *.part file */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelined_requests),
        cmocka_unit_test(test_trickled_request),
        cmocka_unit_test(test_chunked_upload_then_pipelined),
        cmocka_unit_test(test_oversized_upload_refused_early),
        cmocka_unit_test(test_over_limit_upload_refused),
        cmocka_unit_test(test_garbage_does_not_hurt),
        cmocka_unit_test(test_connection_close_answered),
        cmocka_unit_test(test_http10_keep_alive),
        cmocka_unit_test(test_big_answer_then_close),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
