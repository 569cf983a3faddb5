/*
 * test_sim_pg_types: every PostgreSQL type a query can return, as the API's JSON value and as
 * the Arrow type of GET /v1/results/{id}?format=arrow (read back with a small flatbuffer
 * reader here): int2/4/8 -> integers / Int64; float4/8 -> reals / Float64, NaN and
 * ±Infinity -> null (never a dropped cell); numeric -> numbers / Float64; bool -> true/false /
 * Bool; date -> "YYYY-MM-DD" / Date(DAY); timestamp -> RFC 3339 without offset /
 * Timestamp(us); timestamptz -> RFC 3339 "Z" / Timestamp(us, "UTC"); text, varchar, jsonb,
 * interval -> strings / Utf8; NULL -> null with a validity bit.
 */
#include "sim_core_it.h"

static const char *TYPES_SQL =
    "SELECT 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8, 1.5::float4 AS f4, 2.25::float8 AS f8,"
    " 'NaN'::float8 AS nan, 'Infinity'::float8 AS inf, '-Infinity'::float8 AS ninf,"
    " 12.345::numeric(10,2) AS num, 'NaN'::numeric AS nnum, 10::numeric AS nint, true AS t,"
    " false AS f, NULL::int AS nul, 'x'::text AS txt, 'yz'::varchar(5) AS vc,"
    " DATE '2025-01-02' AS d, TIMESTAMP '2025-01-02 03:04:05.678' AS ts,"
    " TIMESTAMPTZ '2025-01-02 03:04:05+00' AS tstz, '{\"a\":1}'::jsonb AS js,"
    " INTERVAL '1 day' AS iv";

/* expected JSON row, and the Arrow type of each column */
enum { T_INT = 2, T_FLOAT = 3, T_UTF8 = 5, T_BOOL = 6, T_DATE = 8, T_TS = 10 };
static const struct {
    const char *name;
    int arrow;
    const char *tz; /* Timestamp: "UTC" or NULL */
} COLS[] = {
    {"i2", T_INT, NULL},     {"i4", T_INT, NULL},     {"i8", T_INT, NULL},
    {"f4", T_FLOAT, NULL},   {"f8", T_FLOAT, NULL},   {"nan", T_FLOAT, NULL},
    {"inf", T_FLOAT, NULL},  {"ninf", T_FLOAT, NULL}, {"num", T_FLOAT, NULL},
    {"nnum", T_FLOAT, NULL}, {"nint", T_FLOAT, NULL}, {"t", T_BOOL, NULL},
    {"f", T_BOOL, NULL},     {"nul", T_INT, NULL},    {"txt", T_UTF8, NULL},
    {"vc", T_UTF8, NULL},    {"d", T_DATE, NULL},     {"ts", T_TS, NULL},
    {"tstz", T_TS, "UTC"},   {"js", T_UTF8, NULL},    {"iv", T_UTF8, NULL},
};
#define NCOLS (sizeof COLS / sizeof COLS[0])

static const char *ROW_JSON =
    "[1,2,3,1.5,2.25,null,null,null,12.35,null,10,true,false,null,\"x\",\"yz\",\"2025-01-02\","
    "\"2025-01-02T03:04:05.678\",\"2025-01-02T03:04:05Z\",\"{\\\"a\\\": 1}\",\"P1D\"]";

static json_t *post_query(const char *sql, long *st)
{
    json_t *b = json_pack("{s:s}", "sql", sql);
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    json_t *j = sci("POST", "/v1/query", body, st);
    free(body);
    return j;
}

static void test_json_values(void **state)
{
    (void)state;
    long st = 0;
    json_t *j = post_query(TYPES_SQL, &st);
    assert_int_equal(st, 200);
    json_t *cols = json_object_get(j, "columns");
    assert_int_equal(json_array_size(cols), NCOLS);
    for (size_t i = 0; i < NCOLS; i++)
        assert_string_equal(json_string_value(json_array_get(cols, i)), COLS[i].name);
    json_t *want = json_loads(ROW_JSON, 0, NULL);
    assert_non_null(want);
    json_t *row = json_array_get(json_object_get(j, "rows"), 0);
    assert_int_equal(json_array_size(row), NCOLS);
    for (size_t i = 0; i < NCOLS; i++) {
        json_t *g = json_array_get(row, i), *w = json_array_get(want, i);
        bool same = json_equal(g, w) || (json_is_number(g) && json_is_number(w) &&
                                         json_number_value(g) == json_number_value(w));
        if (!same) {
            char *gs = json_dumps(g, JSON_ENCODE_ANY), *ws = json_dumps(w, JSON_ENCODE_ANY);
            fprintf(stderr, "column %s: got %s want %s\n", COLS[i].name, gs, ws);
            free(gs);
            free(ws);
        }
        assert_true(same);
    }
    /* integers stay integers, reals stay reals */
    assert_true(json_is_integer(json_array_get(row, 0)));
    assert_true(json_is_real(json_array_get(row, 4)));
    assert_true(json_is_boolean(json_array_get(row, 11)));
    /* a null was seen: nullable */
    json_t *nullable = json_object_get(j, "nullable");
    assert_true(json_is_true(json_array_get(nullable, 5)));
    assert_true(json_is_true(json_array_get(nullable, 13)));
    json_decref(want);
    json_decref(j);
}

/* The example: an overflow to infinity keeps its cell. */
static void test_infinity_keeps_the_row_whole(void **state)
{
    (void)state;
    long st = 0;
    json_t *j = post_query("SELECT 1e308*10 AS inf, 2 AS two", &st);
    assert_int_equal(st, 200);
    json_t *row = json_array_get(json_object_get(j, "rows"), 0);
    assert_int_equal(json_array_size(json_object_get(j, "columns")), 2);
    assert_int_equal(json_array_size(row), 2);
    assert_true(json_is_null(json_array_get(row, 0)));
    assert_int_equal(json_integer_value(json_array_get(row, 1)), 2);
    json_decref(j);
    /* float8 arithmetic that overflows is PostgreSQL's error, a 400 */
    j = post_query("SELECT 1e308::float8 * 10 AS inf, 2 AS two", &st);
    sci_assert_error(j, 400, "BAD_REQUEST");
    json_decref(j);
}

/* ---- a minimal Arrow IPC / flatbuffer reader ---- */

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static int64_t rd64(const uint8_t *p)
{
    return (int64_t)((uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32);
}
/* The field at slot of table t, or NULL when absent. */
static const uint8_t *fb_field(const uint8_t *t, int slot)
{
    const uint8_t *vt = t - (int32_t)rd32(t);
    uint16_t vsize = rd16(vt);
    if (4 + 2 * slot >= vsize)
        return NULL;
    uint16_t off = rd16(vt + 4 + 2 * slot);
    return off ? t + off : NULL;
}
static const uint8_t *fb_deref(const uint8_t *p)
{
    return p + rd32(p);
}
static const char *fb_str(const uint8_t *field)
{
    return field ? (const char *)fb_deref(field) + 4 : NULL;
}

struct arrow_msg {
    const uint8_t *header; /* Schema or RecordBatch table */
    int type;
    const uint8_t *body;
    int64_t body_len;
};

/* The message at *pos; advances *pos. false at the end of stream. */
static bool arrow_next(const uint8_t *buf, size_t len, size_t *pos, struct arrow_msg *m)
{
    if (*pos + 8 > len || rd32(buf + *pos) != 0xFFFFFFFFu)
        return false;
    uint32_t ml = rd32(buf + *pos + 4);
    if (ml == 0)
        return false;
    const uint8_t *meta = buf + *pos + 8;
    const uint8_t *msg = fb_deref(meta);
    m->type = fb_field(msg, 1) ? *fb_field(msg, 1) : 0;
    m->header = fb_deref(fb_field(msg, 2));
    m->body_len = fb_field(msg, 3) ? rd64(fb_field(msg, 3)) : 0;
    m->body = meta + ml;
    *pos += 8 + ml + (size_t)m->body_len;
    return true;
}

static void test_arrow_types(void **state)
{
    (void)state;
    long st = 0;
    json_t *j = post_query(TYPES_SQL, &st);
    assert_int_equal(st, 200);
    char path[256];
    snprintf(path, sizeof path, "/v1/results/%s?format=arrow",
             json_string_value(json_object_get(j, "result_id")));
    json_decref(j);
    hresp r = {0};
    for (int i = 0; i < 100; i++) { /* the result becomes ready after its pending phases */
        hresp_free(&r);
        assert_int_equal(sci_raw("tok_test", "ws_test", "GET", path, NULL, NULL, &r), 0);
        char *ct = hresp_header(&r, "Content-Type");
        bool arrow = ct && strstr(ct, "arrow");
        free(ct);
        if (r.status == 200 && arrow)
            break;
        sci_sleep_ms(50);
    }
    assert_int_equal(r.status, 200);
    const uint8_t *buf = (const uint8_t *)r.body;
    size_t pos = 0;
    struct arrow_msg schema, batch;
    assert_true(arrow_next(buf, r.len, &pos, &schema));
    assert_int_equal(schema.type, 1);
    const uint8_t *fields = fb_deref(fb_field(schema.header, 1));
    assert_int_equal(rd32(fields), NCOLS);
    for (size_t i = 0; i < NCOLS; i++) {
        const uint8_t *f = fb_deref(fields + 4 + 4 * i);
        assert_string_equal(fb_str(fb_field(f, 0)), COLS[i].name);
        int tt = *fb_field(f, 2);
        if (tt != COLS[i].arrow)
            fprintf(stderr, "column %s: arrow type %d, want %d\n", COLS[i].name, tt, COLS[i].arrow);
        assert_int_equal(tt, COLS[i].arrow);
        const uint8_t *type = fb_deref(fb_field(f, 3));
        if (tt == T_INT)
            assert_int_equal(rd32(fb_field(type, 0)), 64);
        if (tt == T_FLOAT)
            assert_int_equal(rd16(fb_field(type, 0)), 2); /* DOUBLE */
        if (tt == T_DATE)
            assert_int_equal(fb_field(type, 0) ? rd16(fb_field(type, 0)) : 1, 0); /* DAY */
        if (tt == T_TS) {
            assert_int_equal(rd16(fb_field(type, 0)), 2); /* MICROSECOND */
            const char *tz = fb_str(fb_field(type, 1));
            if (COLS[i].tz)
                assert_string_equal(tz, COLS[i].tz);
            else
                assert_null(tz);
        }
    }
    assert_true(arrow_next(buf, r.len, &pos, &batch));
    assert_int_equal(batch.type, 3);
    assert_int_equal(rd64(fb_field(batch.header, 0)), 1);
    const uint8_t *nodes = fb_deref(fb_field(batch.header, 1));
    const uint8_t *bufs = fb_deref(fb_field(batch.header, 2));
    assert_int_equal(rd32(nodes), NCOLS);
    /* buffers per column: validity + values (+ data for Utf8) */
    size_t b = 0;
    for (size_t i = 0; i < NCOLS; i++) {
        /* a vector of structs: the 16-byte Buffer{offset, length} follow the length */
        const uint8_t *bv = bufs + 4;
        int64_t voff = rd64(bv + 16 * (b + 1)); /* values buffer */
        const uint8_t *valid = batch.body + rd64(bv + 16 * b);
        bool is_valid = valid[0] & 1;
        const char *n = COLS[i].name;
        if (!strcmp(n, "nan") || !strcmp(n, "inf") || !strcmp(n, "ninf") || !strcmp(n, "nnum") ||
            !strcmp(n, "nul"))
            assert_false(is_valid);
        else
            assert_true(is_valid);
        if (!strcmp(n, "i8"))
            assert_int_equal(rd64(batch.body + voff), 3);
        if (!strcmp(n, "d"))
            assert_int_equal(rd32(batch.body + voff), 20090); /* days since 1970-01-01 */
        if (!strcmp(n, "ts"))
            assert_int_equal(rd64(batch.body + voff), 1735787045678000LL);
        if (!strcmp(n, "tstz"))
            assert_int_equal(rd64(batch.body + voff), 1735787045000000LL);
        if (!strcmp(n, "f8")) {
            double d;
            memcpy(&d, batch.body + voff, 8);
            assert_true(d == 2.25);
        }
        if (!strcmp(n, "t"))
            assert_int_equal(batch.body[voff] & 1, 1);
        b += COLS[i].arrow == T_UTF8 ? 3 : 2;
    }
    hresp_free(&r);
}

/* The demo's columns: booleans and timestamps are typed in Arrow too. */
static void test_arrow_demo_columns(void **state)
{
    (void)state;
    long st = 0;
    json_t *j = post_query(
        "SELECT is_active, created_at FROM demo.public.customers ORDER BY id LIMIT 2", &st);
    assert_int_equal(st, 200);
    assert_true(json_is_boolean(json_array_get(json_array_get(json_object_get(j, "rows"), 0), 0)));
    /* table columns declared NOT NULL are not nullable */
    assert_true(json_is_false(json_array_get(json_object_get(j, "nullable"), 0)));
    json_decref(j);
}

static int setup(void **state)
{
    (void)state;
    static const char *const extra[] = {"--seed-rows", "100", "--result-delay-ms", "0", NULL};
    return sci_start(extra);
}

static int teardown(void **state)
{
    (void)state;
    sci_stop();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_values),
        cmocka_unit_test(test_infinity_keeps_the_row_whole),
        cmocka_unit_test(test_arrow_types),
        cmocka_unit_test(test_arrow_demo_columns),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
