/*
 * test_entry: the cache entry encoding (src/entry.c): round trip of every field, the
 * checksum catching any flipped byte, truncated and foreign blobs refused, freshness maths.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "entry.h"

static const char *k_tags[] = {"ws:cred/ws_test", "list:connections", "conn:abc"};

static void make(entry_in *in, const char *body)
{
    static entry_header hs[2];
    static entry_gen gs[2];
    hs[0] = (entry_header){"Content-Type", 12, "application/json", 16};
    hs[1] = (entry_header){"X-Total-Row-Count", 17, "42", 2};
    gs[0] = (entry_gen){7, 3};
    gs[1] = (entry_gen){65535, 0x123456789abcdefULL};
    memset(in, 0, sizeof *in);
    in->status = 200;
    in->flags = ENTRY_F_NEGATIVE;
    in->stored_ms = 1700000000123ULL;
    in->fresh_ms = 300000;
    in->swr_ms = 10000;
    in->sie_ms = 60000;
    in->etag = "\"abc\"";
    in->etag_len = 5;
    in->headers = hs;
    in->n_headers = 2;
    in->tags = k_tags;
    in->n_tags = 3;
    in->gens = gs;
    in->n_gens = 2;
    in->body = body;
    in->body_len = strlen(body);
}

static void test_round_trip(void **state)
{
    (void)state;
    entry_in in;
    make(&in, "{\"connections\":[]}");
    unsigned char *b;
    size_t len;
    assert_int_equal(entry_encode(&in, &b, &len), ENTRY_OK);
    assert_int_equal(len, entry_encoded_size(&in));
    entry_view v;
    assert_int_equal(entry_decode(b, len, &v), ENTRY_OK);
    assert_int_equal(v.status, 200);
    assert_int_equal(v.flags, ENTRY_F_NEGATIVE);
    assert_true(v.stored_ms == 1700000000123ULL);
    assert_true(v.fresh_ms == 300000);
    assert_int_equal(v.swr_ms, 10000);
    assert_int_equal(v.sie_ms, 60000);
    assert_int_equal(v.etag_len, 5);
    assert_memory_equal(v.etag, "\"abc\"", 5);
    assert_int_equal(v.body_len, strlen("{\"connections\":[]}"));
    assert_memory_equal(v.body, "{\"connections\":[]}", v.body_len);
    size_t pos = 0;
    entry_header h;
    assert_true(entry_header_next(&v, &pos, &h));
    assert_int_equal(h.name_len, 12);
    assert_memory_equal(h.name, "Content-Type", 12);
    assert_memory_equal(h.value, "application/json", 16);
    assert_true(entry_header_next(&v, &pos, &h));
    assert_memory_equal(h.name, "X-Total-Row-Count", 17);
    assert_memory_equal(h.value, "42", 2);
    assert_false(entry_header_next(&v, &pos, &h));
    pos = 0;
    const char *t;
    size_t tl;
    for (int i = 0; i < 3; i++) {
        assert_true(entry_tag_next(&v, &pos, &t, &tl));
        assert_int_equal(tl, strlen(k_tags[i]));
        assert_memory_equal(t, k_tags[i], tl);
    }
    assert_false(entry_tag_next(&v, &pos, &t, &tl));
    assert_int_equal(v.n_gens, 2);
    entry_gen g = entry_gen_at(&v, 1);
    assert_int_equal(g.slot, 65535);
    assert_true(g.gen == 0x123456789abcdefULL);
    free(b);
}

static void test_empty_body_and_no_extras(void **state)
{
    (void)state;
    entry_in in;
    memset(&in, 0, sizeof in);
    in.status = 204;
    in.fresh_ms = ENTRY_FRESH_FOREVER;
    unsigned char *b;
    size_t len;
    assert_int_equal(entry_encode(&in, &b, &len), ENTRY_OK);
    assert_int_equal(len, ENTRY_HDR_SIZE);
    entry_view v;
    assert_int_equal(entry_decode(b, len, &v), ENTRY_OK);
    assert_int_equal(v.status, 204);
    assert_int_equal(v.body_len, 0);
    assert_true(entry_is_fresh(&v, UINT64_MAX / 2));
    assert_int_equal(entry_hard_expiry_s(0, ENTRY_FRESH_FOREVER, 0, 0), 0);
    free(b);
}

static void test_flipped_byte_detected(void **state)
{
    (void)state;
    entry_in in;
    char body[3000];
    for (size_t i = 0; i < sizeof body - 1; i++)
        body[i] = (char)('a' + i % 26);
    body[sizeof body - 1] = '\0';
    make(&in, body);
    unsigned char *b;
    size_t len;
    assert_int_equal(entry_encode(&in, &b, &len), ENTRY_OK);
    /* every single byte position, one bit each: never decodes as OK */
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            b[i] ^= (unsigned char)(1u << bit);
            entry_view v;
            int rc = entry_decode(b, len, &v);
            assert_int_not_equal(rc, ENTRY_OK);
            b[i] ^= (unsigned char)(1u << bit);
        }
    }
    entry_view v;
    assert_int_equal(entry_decode(b, len, &v), ENTRY_OK);
    free(b);
}

static void test_truncated(void **state)
{
    (void)state;
    entry_in in;
    make(&in, "0123456789abcdef0123456789abcdef");
    unsigned char *b;
    size_t len;
    assert_int_equal(entry_encode(&in, &b, &len), ENTRY_OK);
    for (size_t l = 0; l < len; l++) {
        entry_view v;
        assert_int_not_equal(entry_decode(b, l, &v), ENTRY_OK);
        /* structure checks alone also refuse cuts inside the fixed part */
        if (l < ENTRY_HDR_SIZE)
            assert_int_equal(entry_decode_nocheck(b, l, &v), ENTRY_ETRUNC);
    }
    entry_view v;
    assert_int_equal(entry_decode(NULL, 0, &v), ENTRY_ETRUNC);
    unsigned char junk[128];
    memset(junk, 0x5a, sizeof junk);
    assert_int_equal(entry_decode(junk, sizeof junk, &v), ENTRY_EMAGIC);
    free(b);
}

static void test_freshness(void **state)
{
    (void)state;
    entry_in in;
    make(&in, "x");
    unsigned char *b;
    size_t len;
    assert_int_equal(entry_encode(&in, &b, &len), ENTRY_OK);
    entry_view v;
    assert_int_equal(entry_decode(b, len, &v), ENTRY_OK);
    uint64_t t0 = in.stored_ms;
    assert_true(entry_is_fresh(&v, t0));
    assert_true(entry_is_fresh(&v, t0 + 299999));
    assert_false(entry_is_fresh(&v, t0 + 300000));
    assert_true(entry_in_swr(&v, t0 + 300000));
    assert_false(entry_in_swr(&v, t0 + 310000));
    assert_true(entry_in_sie(&v, t0 + 359999));
    assert_false(entry_in_sie(&v, t0 + 360000));
    assert_false(entry_in_sie(&v, t0 + 1000)); /* fresh is not stale */
    assert_int_equal(entry_age_ms(&v, t0 + 5000), 5000);
    assert_int_equal(entry_age_ms(&v, t0 - 5000), 0); /* clock went back */
    assert_int_equal(entry_hard_expiry_s(t0, 300000, 10000, 60000), (t0 + 360000) / 1000 + 1);
    free(b);
}

static void test_header_keep(void **state)
{
    (void)state;
    assert_true(entry_header_keep("content-type"));
    assert_true(entry_header_keep("X-Total-Row-Count"));
    assert_false(entry_header_keep("Set-Cookie"));
    assert_false(entry_header_keep("Authorization"));
    assert_false(entry_header_keep("Connection"));
    assert_false(entry_header_keep("Content-Length"));
}

static void test_hash64(void **state)
{
    (void)state;
    /* XXH64 reference values */
    assert_true(entry_hash64("", 0, 0) == 0xEF46DB3751D8E999ULL);
    assert_true(entry_hash64("a", 1, 0) == 0xD24EC4F1A98C6E5BULL);
    assert_true(entry_hash64("abc", 3, 0) == 0x44BC2CF5AD770999ULL);
    const char *s = "Nobody inspects the spammish repetition";
    assert_true(entry_hash64(s, strlen(s), 0) == 0xFBCEA83C8A378BF1ULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty_body_and_no_extras),
        cmocka_unit_test(test_flipped_byte_detected),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_freshness),
        cmocka_unit_test(test_header_keep),
        cmocka_unit_test(test_hash64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
