/*
 * test_hdr: hop-by-hop removal, forwarding rules and request ids (hdr.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <event2/http.h>

#include "hdr.h"

static void test_hop_by_hop_names(void **state)
{
    const char *hop[] = {"Connection",
                         "keep-alive",
                         "TE",
                         "Trailer",
                         "Transfer-Encoding",
                         "Upgrade",
                         "Proxy-Authorization",
                         "Proxy-Authenticate",
                         "proxy-connection"};
    for (size_t i = 0; i < sizeof hop / sizeof *hop; i++)
        assert_true(hdr_is_hop_by_hop(hop[i]));
    assert_false(hdr_is_hop_by_hop("Content-Type"));
    assert_false(hdr_is_hop_by_hop("X-Workspace-Id"));
    assert_false(hdr_is_hop_by_hop("Authorization"));
    assert_true(hdr_is_hop_by_hop("trailers"));
    assert_true(hdr_is_hop_by_hop("Proxy-"));
    assert_false(hdr_is_hop_by_hop("Proxy"));
    assert_false(hdr_is_hop_by_hop("Connectionx"));
    assert_false(hdr_is_hop_by_hop("TEE"));
    assert_false(hdr_is_hop_by_hop("Keep-Alivf"));
    assert_false(hdr_is_hop_by_hop(""));
}

static void test_strip_with_connection_list(void **state)
{
    struct evkeyvalq h;
    TAILQ_INIT(&h);
    evhttp_add_header(&h, "Connection", "keep-alive, X-Secret-Hop");
    evhttp_add_header(&h, "Connection", "x-other");
    evhttp_add_header(&h, "Keep-Alive", "timeout=5");
    evhttp_add_header(&h, "X-Secret-Hop", "1");
    evhttp_add_header(&h, "X-Other", "2");
    evhttp_add_header(&h, "Transfer-Encoding", "chunked");
    evhttp_add_header(&h, "Upgrade", "h2c");
    evhttp_add_header(&h, "Proxy-Authorization", "Basic x");
    evhttp_add_header(&h, "TE", "trailers");
    evhttp_add_header(&h, "Trailer", "X-T");
    evhttp_add_header(&h, "Content-Type", "application/json");
    evhttp_add_header(&h, "X-Request-Id", "abc");
    hdr_strip_hop_by_hop(&h);
    int n = 0;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, &h, next)
    n++;
    assert_int_equal(n, 2);
    assert_string_equal(evhttp_find_header(&h, "Content-Type"), "application/json");
    assert_string_equal(evhttp_find_header(&h, "X-Request-Id"), "abc");
    evhttp_clear_headers(&h);

    /* Connection cannot remove what hotgate relies on */
    TAILQ_INIT(&h);
    evhttp_add_header(&h, "Connection", "X-Request-Id, Authorization");
    evhttp_add_header(&h, "X-Request-Id", "abc");
    evhttp_add_header(&h, "Authorization", "Bearer k");
    hdr_strip_hop_by_hop(&h);
    assert_non_null(evhttp_find_header(&h, "X-Request-Id"));
    assert_non_null(evhttp_find_header(&h, "Authorization"));
    evhttp_clear_headers(&h);

    /* Connection naming itself (found by fuzz_http1: it freed the header being walked) */
    TAILQ_INIT(&h);
    evhttp_add_header(&h, "Connection", "close, Connection, x-a");
    evhttp_add_header(&h, "X-A", "1");
    evhttp_add_header(&h, "connection", "CONNECTION");
    evhttp_add_header(&h, "X-B", "2");
    hdr_strip_hop_by_hop(&h);
    n = 0;
    TAILQ_FOREACH(kv, &h, next)
    n++;
    assert_int_equal(n, 1);
    assert_string_equal(evhttp_find_header(&h, "X-B"), "2");
    evhttp_clear_headers(&h);
}

static void test_forwarding_rules(void **state)
{
    assert_false(hdr_forward_to_upstream("Authorization"));
    assert_false(hdr_forward_to_upstream("host"));
    assert_false(hdr_forward_to_upstream("Content-Length"));
    assert_false(hdr_forward_to_upstream("X-Workspace-Id"));
    assert_false(hdr_forward_to_upstream("x-request-id"));
    assert_false(hdr_forward_to_upstream("Expect"));
    assert_false(hdr_forward_to_upstream("Connection"));
    assert_true(hdr_forward_to_upstream("Content-Type"));
    assert_true(hdr_forward_to_upstream("Accept"));
    assert_true(hdr_forward_to_upstream("If-None-Match"));
    assert_true(hdr_forward_to_client("Content-Type"));
    assert_true(hdr_forward_to_client("Retry-After"));
    assert_true(hdr_forward_to_client("X-Total-Row-Count"));
    assert_false(hdr_forward_to_client("Content-Length")); /* framing is hotgate's */
    assert_false(hdr_forward_to_client("Transfer-Encoding"));
    assert_false(hdr_forward_to_client("Keep-Alive"));
}

static void test_request_id(void **state)
{
    char out[65];
    hdr_request_id("abc-123_x.y:z", out);
    assert_string_equal(out, "abc-123_x.y:z");
    hdr_request_id(NULL, out);
    assert_int_equal(strlen(out), 32);
    char other[65];
    hdr_request_id(NULL, other);
    assert_string_not_equal(out, other);
    hdr_request_id("bad id with spaces", out);
    assert_int_equal(strlen(out), 32);
    hdr_request_id("", out);
    assert_int_equal(strlen(out), 32);
    char longid[100];
    memset(longid, 'a', 65);
    longid[65] = '\0';
    hdr_request_id(longid, out);
    assert_int_equal(strlen(out), 32);
    hdr_request_id("x\"y", out);
    assert_int_equal(strlen(out), 32);
}

static void test_value_and_name_checks(void **state)
{
    assert_true(hdr_value_ok("text/plain; charset=utf-8"));
    assert_true(hdr_value_ok("a\tb"));
    assert_false(hdr_value_ok("a\r\nX-Injected: 1"));
    assert_false(hdr_value_ok("a\nb"));
    assert_true(hdr_name_ok("X-Workspace-Id", 14));
    assert_false(hdr_name_ok("X Bad", 5));
    assert_false(hdr_name_ok("", 0));
    assert_false(hdr_name_ok("X:y", 3));
    /* every byte, at every position of the four-byte stride */
    for (int c = 1; c < 256; c++) {
        int ok = !((c < 0x20 && c != '\t') || c == 0x7f);
        for (int at = 0; at < 6; at++) {
            char v[8] = "abcdefg";
            v[at] = (char)c;
            assert_int_equal(hdr_value_ok(v), ok);
            v[at + 1] = '\0';
            assert_int_equal(hdr_value_ok(v), ok);
        }
    }
    assert_true(hdr_value_ok(""));
    /* every byte against the RFC 9110 tchar definition */
    for (int c = 0; c < 256; c++) {
        char ch = (char)c;
        int tchar = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
        assert_int_equal(hdr_name_ok(&ch, 1), tchar);
    }
}

static void test_find(void **state)
{
    struct evkeyvalq h;
    TAILQ_INIT(&h);
    assert_null(hdr_find(&h, "Content-Length"));
    evhttp_add_header(&h, "X-A", "1");
    evhttp_add_header(&h, "content-length", "12");
    evhttp_add_header(&h, "Content-Length", "13");
    evhttp_add_header(&h, "C", "c");
    assert_string_equal(hdr_find(&h, "Content-Length"), "12");
    assert_string_equal(hdr_find(&h, "CONTENT-LENGTH"), "12");
    assert_string_equal(hdr_find(&h, "x-a"), "1");
    assert_string_equal(hdr_find(&h, "c"), "c");
    assert_null(hdr_find(&h, "Content-Lengt"));
    assert_null(hdr_find(&h, "X-A2"));
    evhttp_clear_headers(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hop_by_hop_names),
        cmocka_unit_test(test_strip_with_connection_list),
        cmocka_unit_test(test_forwarding_rules),
        cmocka_unit_test(test_request_id),
        cmocka_unit_test(test_value_and_name_checks),
        cmocka_unit_test(test_find),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
