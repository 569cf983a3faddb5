/*
 * test_sim_core: pure pieces of the simulator core: the fault configuration (JSON in/out,
 * validation, replace semantics) and the Arrow IPC stream framing of results.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/buffer.h>

#include "sim_arrow.h"
#include "sim_faults.h"
#include "sim_json.h"

static void test_faults_roundtrip(void **state)
{
    (void)state;
    struct sim_faults f;
    memset(&f, 0, sizeof f);
    sim_faults_clear(&f);
    char err[256] = "";
    json_t *in = json_loads("{\"latency_ms\":120,\"jitter_ms\":30,\"error_rate\":0.25,"
                            "\"error_status\":503,\"drop\":\"mid\",\"drop_rate\":0.5,"
                            "\"stall_ms\":0,\"retry_after\":{\"count\":3,\"seconds\":2},"
                            "\"async_delay_ms\":900,"
                            "\"routes\":{\"POST /v1/query\":{\"latency_ms\":700,"
                            "\"drop\":\"before\"}}}",
                            0, NULL);
    assert_non_null(in);
    assert_int_equal(sim_faults_from_json(&f, in, err, sizeof err), 0);
    json_decref(in);
    assert_int_equal(f.global.latency_ms, 120);
    assert_int_equal(f.global.jitter_ms, 30);
    assert_int_equal(f.global.error_status, 503);
    assert_int_equal(f.global.drop, SIM_DROP_MID);
    assert_int_equal(f.retry_after_count, 3);
    assert_int_equal(f.retry_after_s, 2);
    assert_int_equal(f.async_delay_ms, 900);
    assert_int_equal(f.nroutes, 1);
    assert_string_equal(f.routes[0].route, "POST /v1/query");
    assert_int_equal(f.routes[0].set.latency_ms, 700);
    assert_int_equal(f.routes[0].set.drop, SIM_DROP_BEFORE);
    assert_int_equal(f.routes[0].set.error_rate < 0, 1); /* not set: inherits */

    json_t *out = sim_faults_to_json(&f);
    assert_int_equal(json_integer_value(json_object_get(out, "latency_ms")), 120);
    assert_string_equal(json_string_value(json_object_get(out, "drop")), "mid");
    json_t *r = json_object_get(json_object_get(out, "routes"), "POST /v1/query");
    assert_int_equal(json_integer_value(json_object_get(r, "latency_ms")), 700);
    assert_null(json_object_get(r, "error_rate"));
    json_decref(out);

    /* replace semantics: an empty object turns everything off */
    in = json_object();
    assert_int_equal(sim_faults_from_json(&f, in, err, sizeof err), 0);
    json_decref(in);
    assert_int_equal(f.global.latency_ms, 0);
    assert_int_equal(f.global.drop, SIM_DROP_NONE);
    assert_int_equal(f.retry_after_count, 0);
    assert_int_equal(f.async_delay_ms, -1);
    assert_int_equal(f.nroutes, 0);
    sim_faults_clear(&f);
}

static void test_faults_validation_keeps_old_config(void **state)
{
    (void)state;
    struct sim_faults f;
    memset(&f, 0, sizeof f);
    sim_faults_clear(&f);
    char err[256];
    json_t *ok = json_loads("{\"latency_ms\":5}", 0, NULL);
    assert_int_equal(sim_faults_from_json(&f, ok, err, sizeof err), 0);
    json_decref(ok);
    static const char *const bad[] = {
        "{\"latency_ms\":-1}",
        "{\"latency_ms\":1.5}",
        "{\"error_rate\":1.5}",
        "{\"error_rate\":\"x\"}",
        "{\"error_status\":200}",
        "{\"drop\":\"sideways\"}",
        "{\"drop\":1}",
        "{\"retry_after\":5}",
        "{\"retry_after\":{\"seconds\":0}}",
        "{\"routes\":[]}",
        "{\"routes\":{\"GET /v1/x\":{\"stall_ms\":\"1\"}}}",
        "[1]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *j = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        assert_non_null(j);
        err[0] = '\0';
        assert_int_equal(sim_faults_from_json(&f, j, err, sizeof err), -1);
        assert_true(err[0] != '\0');
        json_decref(j);
        assert_int_equal(f.global.latency_ms, 5);
    }
    sim_faults_clear(&f);
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void test_arrow_framing(void **state)
{
    (void)state;
    json_t *data = json_loads(
        "{\"columns\":[\"id\",\"price\",\"name\",\"ok\"],\"nullable\":[false,true,true,false],"
        "\"types\":[\"int64\",\"float64\",\"utf8\",\"bool\"],"
        "\"rows\":[[1,1.5,\"a\",true],[2,null,null,false],[3,2.5,\"ccc\",true]]}",
        0, NULL);
    assert_non_null(data);
    struct evbuffer *b = evbuffer_new();
    assert_int_equal(sim_arrow_encode(data, 1, 2, b), 0);
    size_t len = evbuffer_get_length(b);
    const unsigned char *p = evbuffer_pullup(b, -1);
    /* message 1: schema, no body; names present */
    assert_int_equal(le32(p), 0xFFFFFFFFu);
    uint32_t m1 = le32(p + 4);
    assert_int_equal(m1 % 8, 0);
    assert_non_null(memmem(p + 8, m1, "price", 5));
    /* message 2: record batch; metadata then body, everything 8-aligned */
    size_t off = 8 + m1;
    assert_true(off + 8 <= len);
    assert_int_equal(le32(p + off), 0xFFFFFFFFu);
    uint32_t m2 = le32(p + off + 4);
    assert_int_equal(m2 % 8, 0);
    size_t body = off + 8 + m2;
    /* the stream ends with the end-of-stream marker right after the body */
    assert_int_equal(le32(p + len - 8), 0xFFFFFFFFu);
    assert_int_equal(le32(p + len - 4), 0);
    size_t body_len = len - 8 - body;
    assert_int_equal(body_len % 8, 0);
    /* rows 1..2 only: the int64 values 2 and 3 are in the body, 1 is not */
    int64_t two = 2, three = 3, one = 1;
    assert_non_null(memmem(p + body, body_len, &two, 8));
    assert_non_null(memmem(p + body, body_len, &three, 8));
    assert_null(memmem(p + body, body_len, &one, 8));
    assert_non_null(memmem(p + body, body_len, "ccc", 3));
    evbuffer_free(b);

    /* empty page: still schema + batch + EOS */
    b = evbuffer_new();
    assert_int_equal(sim_arrow_encode(data, 3, 0, b), 0);
    assert_true(evbuffer_get_length(b) > 24);
    evbuffer_free(b);
    /* garbage in: an error, not a crash */
    json_t *bad = json_object();
    b = evbuffer_new();
    assert_int_equal(sim_arrow_encode(bad, 0, 0, b), -1);
    evbuffer_free(b);
    json_decref(bad);
    json_decref(data);
}

/* Reals in the shortest text that reads back to the same double, still reals; the rest of
 * the JSON as jansson writes it (compact, insertion order, escapes). */
static void test_json_shortest_reals(void **state)
{
    (void)state;
    char buf[32];
    double x = 6357564.639999999;
    x = (double)(long long)(x * 100 + 0.5) / 100; /* round(x, 2) */
    sim_json_real_str(x, buf);
    assert_string_equal(buf, "6357564.64");
    static const struct {
        double v;
        const char *s;
    } cases[] = {
        {2.0, "2.0"},
        {0.1, "0.1"},
        {-1.5, "-1.5"},
        {1e20, "1e20"},
        {1e-7, "1e-7"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1.0 / 3, "0.3333333333333333"},
        {123456789012.5, "123456789012.5"},
        {-0.0, "-0.0"},
        {5e-324, "4.94065645841247e-324"}, /* denormal: 15 digits, round-trips */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sim_json_real_str(cases[i].v, buf);
        assert_string_equal(buf, cases[i].s);
        assert_true(strtod(buf, NULL) == cases[i].v);
    }
    json_t *j = json_pack("{s:[f,f,i,b,n],s:s,s:{s:f}}", "row", x, 2.0, (json_int_t)7, 1, "s",
                          "a\"b\\c\n\x01/\xc3\xa9", "o", "k", 0.25);
    size_t len;
    char *out = sim_json_dumps(j, &len);
    assert_string_equal(out, "{\"row\":[6357564.64,2.0,7,true,null],"
                             "\"s\":\"a\\\"b\\\\c\\n\\u0001/\xc3\xa9\",\"o\":{\"k\":0.25}}");
    assert_int_equal(len, strlen(out));
    json_t *back = json_loads(out, 0, NULL);
    assert_true(json_equal(back, j));
    assert_true(json_is_real(json_array_get(json_object_get(back, "row"), 1)));
    json_decref(back);
    free(out);
    json_decref(j);
    out = sim_json_dumps(NULL, NULL);
    assert_string_equal(out, "null");
    free(out);
}

/* Every escape: the named ones, \u00XX (lower-case hex) for other control bytes and NUL,
 * everything else (UTF-8, '/', DEL) as is. */
static void test_json_string_escapes(void **state)
{
    (void)state;
    static const char in[] = "q\"b\\\b\f\n\r\t\x01\x1f\x7f/\xc3\xa9";
    json_t *j = json_stringn(in, sizeof in - 1);
    json_t *nul = json_stringn("a\0b", 3);
    assert_non_null(j);
    assert_non_null(nul);
    char *out = sim_json_dumps(j, NULL);
    assert_string_equal(out, "\"q\\\"b\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\x7f/\xc3\xa9\"");
    free(out);
    out = sim_json_dumps(nul, NULL);
    assert_string_equal(out, "\"a\\u0000b\"");
    free(out);
    json_decref(j);
    json_decref(nul);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults_roundtrip),
        cmocka_unit_test(test_faults_validation_keeps_old_config),
        cmocka_unit_test(test_arrow_framing),
        cmocka_unit_test(test_json_shortest_reals),
        cmocka_unit_test(test_json_string_escapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
