/*
 * test_upstream_pick: which upstream transport ([upstream] client, url) a worker gets
 * (upstream.c, upstream_impl.h): auto = native for http:// to an IP literal or localhost,
 * curl for https:// and for host names; curl / native force one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "upstream_impl.h"

static const char *pick(const char *url, enum hg_upstream_client client)
{
    struct hg_config c;
    memset(&c, 0, sizeof c);
    c.upstream.url = (char *)url;
    c.upstream.client = client;
    return upstream_pick(&c)->name;
}

static void test_auto(void **state)
{
    assert_string_equal(pick("http://127.0.0.1:8080", HG_UPSTREAM_CLIENT_AUTO), "native");
    assert_string_equal(pick("http://10.1.2.3", HG_UPSTREAM_CLIENT_AUTO), "native");
    assert_string_equal(pick("http://localhost:9000/prefix", HG_UPSTREAM_CLIENT_AUTO), "native");
    assert_string_equal(pick("http://[::1]:8080", HG_UPSTREAM_CLIENT_AUTO), "native");
    assert_string_equal(pick("https://127.0.0.1:8443", HG_UPSTREAM_CLIENT_AUTO), "curl");
    assert_string_equal(pick("https://api.hotdata.dev", HG_UPSTREAM_CLIENT_AUTO), "curl");
    /* names go through curl's resolver */
    assert_string_equal(pick("http://sim.internal:8080", HG_UPSTREAM_CLIENT_AUTO), "curl");
    assert_string_equal(pick("http://localhost.example:80", HG_UPSTREAM_CLIENT_AUTO), "curl");
    assert_string_equal(pick("http://1.2.3.4.example", HG_UPSTREAM_CLIENT_AUTO), "curl");
}

static void test_forced(void **state)
{
    assert_string_equal(pick("http://127.0.0.1:8080", HG_UPSTREAM_CLIENT_CURL), "curl");
    assert_string_equal(pick("http://sim.internal:8080", HG_UPSTREAM_CLIENT_NATIVE), "native");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auto),
        cmocka_unit_test(test_forced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
