/*
 * bodykey: see bodykey.h. A strict recursive-descent JSON reader (depth-capped) that writes the
 * canonical text as it goes: each object's members are written in input order, then the
 * object's region is rewritten sorted by member name (names compared as raw bytes, which is
 * exact since names with escapes are not canonicalised).
 */
#include "bodykey.h"

#include "sqlkey.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define BODYKEY_MAX_DEPTH 64
#define SQL_SLOT_LEN 67 /* "@c:" or "@x:" + 64 hex digits: not JSON, so it cannot collide */

struct member {
    size_t key_off, key_len;     /* name content (without quotes) in the input */
    size_t piece_off, piece_len; /* "name":value in the output */
};

struct jp {
    const unsigned char *s;
    size_t len, i;
    struct util_buf out; /* the canonical JSON being written (util.h) */
    int depth;
    bool query;
    /* top-level fields of a query body (offsets into the input; len 0 = absent) */
    bool has_sql, sql_is_string;
    size_t sql_off, sql_len; /* string content */
    size_t sql_slot;         /* where the placeholder sits in the output (before sorting) */
    size_t async_off, async_len;
    size_t after_off, after_len;
    size_t dialect_off, dialect_len;
    bool has_dialect;
    uint8_t sql_digest[32];
    bool sql_certain;
    char *sql; /* the decoded SQL (fill_sql_slot) */
    size_t sql_n;
};

static void out_put(struct jp *p, const void *d, size_t n)
{
    util_buf_put(&p->out, d, n);
}

static void skip_ws(struct jp *p)
{
    while (p->i < p->len) {
        unsigned char c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->i++;
    }
}

static bool u4(const unsigned char *s, size_t len, size_t i, unsigned *v)
{
    if (i + 4 > len)
        return false;
    unsigned x = 0;
    for (size_t k = 0; k < 4; k++) {
        int h = util_hexval(s[i + k]);
        if (h < 0)
            return false;
        x = x << 4 | (unsigned)h;
    }
    *v = x;
    return true;
}

/* Length of a valid UTF-8 sequence at s[i] (first byte >= 0x80), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t len, size_t i)
{
    unsigned char c = s[i];
    size_t n;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (i + n > len)
        return 0;
    for (size_t k = 1; k < n; k++) {
        if ((s[i + k] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i + k] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && cp < 0x10000) ||
        cp > 0x10ffff)
        return 0;
    return n;
}

/*
 * A string at s[i] == '"': validated (escapes, surrogate pairs, UTF-8, no control bytes) and,
 * when emit, copied to the output verbatim. off, clen: its content span in the input;
 * escaped: it holds a backslash.
 */
static bool parse_string(struct jp *p, bool emit, size_t *off, size_t *clen, bool *escaped)
{
    size_t start = p->i;
    p->i++;
    bool esc = false;
    while (p->i < p->len) {
        unsigned char c = p->s[p->i];
        if (c == '"') {
            if (off)
                *off = start + 1;
            if (clen)
                *clen = p->i - start - 1;
            if (escaped)
                *escaped = esc;
            p->i++;
            if (emit)
                out_put(p, p->s + start, p->i - start);
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            esc = true;
            if (p->i + 1 >= p->len)
                return false;
            unsigned char e = p->s[p->i + 1];
            if (e == 'u') {
                unsigned v;
                if (!u4(p->s, p->len, p->i + 2, &v))
                    return false;
                p->i += 6;
                if (v >= 0xdc00 && v <= 0xdfff)
                    return false; /* a lone low surrogate */
                if (v >= 0xd800 && v <= 0xdbff) {
                    unsigned lo;
                    if (p->i + 1 >= p->len || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u' ||
                        !u4(p->s, p->len, p->i + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
                        return false;
                    p->i += 6;
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == 0)
                return false;
            p->i += 2;
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_seq(p->s, p->len, p->i);
            if (!n)
                return false;
            p->i += n;
            continue;
        }
        p->i++;
    }
    return false;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool parse_number(struct jp *p)
{
    size_t start = p->i;
    if (p->i < p->len && p->s[p->i] == '-')
        p->i++;
    if (p->i >= p->len || !is_digit(p->s[p->i]))
        return false;
    if (p->s[p->i] == '0')
        p->i++;
    else
        while (p->i < p->len && is_digit(p->s[p->i]))
            p->i++;
    if (p->i < p->len && p->s[p->i] == '.') {
        p->i++;
        if (p->i >= p->len || !is_digit(p->s[p->i]))
            return false;
        while (p->i < p->len && is_digit(p->s[p->i]))
            p->i++;
    }
    if (p->i < p->len && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->len && (p->s[p->i] == '+' || p->s[p->i] == '-'))
            p->i++;
        if (p->i >= p->len || !is_digit(p->s[p->i]))
            return false;
        while (p->i < p->len && is_digit(p->s[p->i]))
            p->i++;
    }
    out_put(p, p->s + start, p->i - start);
    return true;
}

static bool parse_literal(struct jp *p)
{
    static const char *const lits[] = {"true", "false", "null"};
    for (size_t k = 0; k < 3; k++) {
        size_t n = strlen(lits[k]);
        if (p->i + n <= p->len && memcmp(p->s + p->i, lits[k], n) == 0) {
            out_put(p, lits[k], n);
            p->i += n;
            return true;
        }
    }
    return false;
}

static bool parse_value(struct jp *p);

static bool parse_array(struct jp *p)
{
    p->i++;
    out_put(p, "[", 1);
    skip_ws(p);
    if (p->i < p->len && p->s[p->i] == ']') {
        p->i++;
        out_put(p, "]", 1);
        return true;
    }
    for (;;) {
        if (!parse_value(p))
            return false;
        skip_ws(p);
        if (p->i >= p->len)
            return false;
        if (p->s[p->i] == ']') {
            p->i++;
            out_put(p, "]", 1);
            return true;
        }
        if (p->s[p->i] != ',')
            return false;
        p->i++;
        out_put(p, ",", 1);
        skip_ws(p);
    }
}

static bool key_is(const struct jp *p, const struct member *m, const char *name)
{
    size_t n = strlen(name);
    return m->key_len == n && memcmp(p->s + m->key_off, name, n) == 0;
}

/* Compare member names: raw bytes, then length. */
static int member_cmp_p(const struct jp *p, const struct member *x, const struct member *y)
{
    size_t m = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(p->s + x->key_off, p->s + y->key_off, m);
    if (c)
        return c;
    return x->key_len < y->key_len ? -1 : (x->key_len > y->key_len ? 1 : 0);
}

/* Insertion sort (objects are small; no global state, so thread-safe). */
static void sort_members(const struct jp *p, struct member *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        struct member m = v[i];
        size_t j = i;
        while (j > 0 && member_cmp_p(p, &v[j - 1], &m) > 0) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = m;
    }
}

/* Decode a validated JSON string's content into a malloc'd UTF-8 buffer (NUL-terminated). */
static char *decode_string(const unsigned char *s, size_t len, size_t *out_n)
{
    char *sql = malloc(len + 1);
    if (!sql)
        abort();
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if (s[i] != '\\') {
            sql[n++] = (char)s[i++];
            continue;
        }
        unsigned char e = s[i + 1];
        if (e != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            sql[n++] = to[strchr(from, e) - from];
            i += 2;
            continue;
        }
        unsigned v = 0, lo = 0;
        u4(s, len, i + 2, &v);
        i += 6;
        if (v >= 0xd800 && v <= 0xdbff) {
            u4(s, len, i + 2, &lo);
            i += 6;
            v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
        }
        if (v < 0x80) {
            sql[n++] = (char)v;
        } else if (v < 0x800) {
            sql[n++] = (char)(0xc0 | v >> 6);
            sql[n++] = (char)(0x80 | (v & 0x3f));
        } else if (v < 0x10000) {
            sql[n++] = (char)(0xe0 | v >> 12);
            sql[n++] = (char)(0x80 | ((v >> 6) & 0x3f));
            sql[n++] = (char)(0x80 | (v & 0x3f));
        } else {
            sql[n++] = (char)(0xf0 | v >> 18);
            sql[n++] = (char)(0x80 | ((v >> 12) & 0x3f));
            sql[n++] = (char)(0x80 | ((v >> 6) & 0x3f));
            sql[n++] = (char)(0x80 | (v & 0x3f));
        }
    }
    sql[n] = '\0';
    *out_n = n;
    return sql;
}

static const char *const known_dialects[] = {"hotsql", "duckdb", "postgres", "snowflake", NULL};

/* The top-level "sql" of a query: decoded (kept in p), its digest into the placeholder slot;
 * canonical only in a known dialect and when the lexer is certain. */
static void fill_sql_slot(struct jp *p)
{
    bool dialect_known = true;
    if (p->has_dialect) {
        const unsigned char *d = p->s + p->dialect_off;
        size_t dl = p->dialect_len;
        dialect_known = false;
        if (dl == 4 && memcmp(d, "null", 4) == 0) {
            dialect_known = true;
        } else if (dl >= 2 && d[0] == '"') {
            for (size_t k = 0; known_dialects[k]; k++)
                if (dl - 2 == strlen(known_dialects[k]) &&
                    memcmp(d + 1, known_dialects[k], dl - 2) == 0)
                    dialect_known = true;
        }
    }
    free(p->sql);
    p->sql = decode_string(p->s + p->sql_off, p->sql_len, &p->sql_n);
    bool certain = false;
    if (dialect_known) {
        certain = sqlkey_canon_digest(p->sql, p->sql_n, p->sql_digest);
    } else {
        /* a dialect the lexer does not know: the exact SQL, in a domain of its own */
        static const char tag[] = "hotgate-sql-exact-dialect"; /* with its NUL */
        size_t ml = p->sql_n + sizeof tag;
        char *m = malloc(ml);
        if (!m)
            abort();
        memcpy(m, tag, sizeof tag);
        memcpy(m + sizeof tag, p->sql, p->sql_n);
        util_sha256(m, ml, p->sql_digest);
        free(m);
    }
    p->sql_certain = certain;
    char hex[65];
    util_hex(p->sql_digest, 32, hex);
    memcpy(p->out.p + p->sql_slot, certain ? "@c:" : "@x:", 3);
    memcpy(p->out.p + p->sql_slot + 3, hex, 64);
}

/* A top-level field of a query body (not "sql" as a string) whose value spans
 * [vstart, p->i): remembered for bodykey_derive. */
static void note_query_field(struct jp *p, const struct member *m, size_t vstart)
{
    if (key_is(p, m, "sql")) {
        p->has_sql = true;
        p->sql_is_string = false;
    } else if (key_is(p, m, "async")) {
        p->async_off = vstart;
        p->async_len = p->i - vstart;
    } else if (key_is(p, m, "async_after_ms")) {
        p->after_off = vstart;
        p->after_len = p->i - vstart;
    } else if (key_is(p, m, "dialect")) {
        p->has_dialect = true;
        p->dialect_off = vstart;
        p->dialect_len = p->i - vstart;
    }
}

/* One member "name": value at p->i into m (its piece of the output). */
static bool parse_member(struct jp *p, struct member *m)
{
    m->piece_off = p->out.len;
    bool esc = false;
    if (!parse_string(p, true, &m->key_off, &m->key_len, &esc) || esc)
        return false; /* names with escapes are not compared reliably as raw bytes */
    skip_ws(p);
    if (p->i >= p->len || p->s[p->i] != ':')
        return false;
    p->i++;
    out_put(p, ":", 1);
    skip_ws(p);
    size_t vstart = p->i;
    bool top = p->depth == 1 && p->query;
    if (top && key_is(p, m, "sql") && p->i < p->len && p->s[p->i] == '"') {
        if (!parse_string(p, false, &p->sql_off, &p->sql_len, NULL))
            return false;
        p->has_sql = p->sql_is_string = true;
        p->sql_slot = p->out.len;
        out_put(p, "@c:0000000000000000000000000000000000000000000000000000000000000000",
                SQL_SLOT_LEN);
    } else {
        if (!parse_value(p))
            return false;
        if (top)
            note_query_field(p, m, vstart);
    }
    m->piece_len = p->out.len - m->piece_off;
    return true;
}

/* Rewrite the output from region on with the members v[0..nm) sorted by name, comma
 * separated; false on a duplicate name. */
static bool emit_sorted(struct jp *p, struct member *v, size_t nm, size_t region)
{
    sort_members(p, v, nm);
    for (size_t k = 1; k < nm; k++)
        if (member_cmp_p(p, &v[k - 1], &v[k]) == 0)
            return false; /* a duplicate name */
    size_t rlen = p->out.len - region;
    char *tmp = malloc(rlen ? rlen : 1);
    if (!tmp)
        abort();
    memcpy(tmp, p->out.p + region, rlen);
    p->out.len = region;
    p->out.p[region] = '\0';
    for (size_t k = 0; k < nm; k++) {
        if (k)
            out_put(p, ",", 1);
        out_put(p, tmp + (v[k].piece_off - region), v[k].piece_len);
    }
    free(tmp);
    out_put(p, "}", 1);
    return true;
}

/* Room for one more member in *v (stackv: the caller's initial array of *cap). */
static void members_grow(struct member **v, struct member *stackv, size_t nm, size_t *cap)
{
    if (nm < *cap)
        return;
    size_t old = *cap;
    *cap *= 2;
    struct member *nv = *v == stackv ? malloc(*cap * sizeof *nv) : realloc(*v, *cap * sizeof *nv);
    if (!nv)
        abort();
    if (*v == stackv)
        memcpy(nv, stackv, old * sizeof *nv);
    *v = nv;
}

static bool parse_object(struct jp *p)
{
    p->i++;
    out_put(p, "{", 1);
    size_t region = p->out.len;
    struct member stackv[16], *v = stackv;
    size_t nm = 0, cap = 16;
    bool ok = false;
    skip_ws(p);
    if (p->i < p->len && p->s[p->i] == '}') {
        p->i++;
        out_put(p, "}", 1);
        return true;
    }
    for (;;) {
        if (p->i >= p->len || p->s[p->i] != '"')
            goto out;
        members_grow(&v, stackv, nm, &cap);
        if (!parse_member(p, &v[nm]))
            goto out;
        nm++;
        skip_ws(p);
        if (p->i >= p->len)
            goto out;
        if (p->s[p->i] == '}') {
            p->i++;
            break;
        }
        if (p->s[p->i] != ',')
            goto out;
        p->i++;
        skip_ws(p);
    }
    if (p->depth == 1 && p->query && p->sql_is_string)
        fill_sql_slot(p);
    ok = emit_sorted(p, v, nm, region);
out:
    if (v != stackv)
        free(v);
    return ok;
}

static bool parse_value(struct jp *p)
{
    skip_ws(p);
    if (p->i >= p->len)
        return false;
    unsigned char c = p->s[p->i];
    bool ok;
    if (c == '{' || c == '[') {
        if (++p->depth > BODYKEY_MAX_DEPTH)
            return false;
        ok = c == '{' ? parse_object(p) : parse_array(p);
        p->depth--;
        return ok;
    }
    if (c == '"')
        return parse_string(p, true, NULL, NULL, NULL);
    if (c == '-' || is_digit(c))
        return parse_number(p);
    return parse_literal(p);
}

/* Parse the whole body; true when it is strict JSON with nothing after the value. */
static bool parse_body(struct jp *p)
{
    if (!parse_value(p))
        return false;
    skip_ws(p);
    return p->i == p->len;
}

static void digest_of(const char *tag, const void *d, size_t n, uint8_t out[32])
{
    size_t tl = strlen(tag) + 1;
    char stackb[2048];
    char *b = tl + n <= sizeof stackb ? stackb : malloc(tl + n);
    if (!b)
        abort();
    memcpy(b, tag, tl);
    if (n)
        memcpy(b + tl, d, n);
    util_sha256(b, tl + n, out);
    if (b != stackb)
        free(b);
}

static bool span_is(const unsigned char *s, size_t off, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    return len == n && memcmp(s + off, lit, n) == 0;
}

/* An integer literal (no fraction, no exponent) that fits int64. */
static bool span_int64(const unsigned char *s, size_t off, size_t len, int64_t *v)
{
    size_t i = off, end = off + len;
    bool neg = false;
    if (i < end && s[i] == '-') {
        neg = true;
        i++;
    }
    if (i >= end)
        return false;
    uint64_t x = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < end; i++) {
        if (!is_digit(s[i]))
            return false;
        unsigned d = s[i] - '0';
        if (x > (lim - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *v = neg ? (int64_t)(0 - x) : (int64_t)x;
    return true;
}

void bodykey_derive(const char *body, size_t len, bool query, struct bodykey *out, char **sql_out,
                    size_t *sql_len)
{
    memset(out, 0, sizeof *out);
    if (sql_out)
        *sql_out = NULL;
    if (sql_len)
        *sql_len = 0;
    if (!body || !len)
        return;
    struct jp p;
    memset(&p, 0, sizeof p);
    p.s = (const unsigned char *)body;
    p.len = len;
    p.query = query;
    if (!parse_body(&p)) {
        out->kind = BODYKEY_RAW;
        digest_of("hotgate-body-raw", body, len, out->digest);
        util_buf_free(&p.out);
        free(p.sql);
        return;
    }
    out->kind = BODYKEY_JSON;
    digest_of("hotgate-body-json", p.out.p, p.out.len, out->digest);
    util_buf_free(&p.out);
    size_t k = 0;
    while (k < len && (body[k] == ' ' || body[k] == '\t' || body[k] == '\n' || body[k] == '\r'))
        k++;
    if (!query || !p.sql || body[k] != '{') {
        free(p.sql);
        return;
    }
    bool ok = true;
    if (p.async_len) {
        if (span_is(p.s, p.async_off, p.async_len, "true"))
            out->async = true;
        else if (!span_is(p.s, p.async_off, p.async_len, "false") &&
                 !span_is(p.s, p.async_off, p.async_len, "null"))
            ok = false;
    }
    if (p.after_len && !span_is(p.s, p.after_off, p.after_len, "null")) {
        if (span_int64(p.s, p.after_off, p.after_len, &out->async_after_ms))
            out->has_async_after_ms = true;
        else
            ok = false;
    }
    out->query_ok = ok;
    out->sql_certain = p.sql_certain;
    util_sha256_hex(p.sql, p.sql_n, out->sql_hash); /* the exact SQL text as submitted */
    if (sql_out && ok) {
        *sql_out = p.sql;
        if (sql_len)
            *sql_len = p.sql_n;
    } else {
        free(p.sql);
    }
}

char *bodykey_canonical_json(const char *body, size_t len, size_t *out_len)
{
    struct jp p;
    memset(&p, 0, sizeof p);
    p.s = (const unsigned char *)body;
    p.len = len;
    bool ok = body && len && parse_body(&p);
    free(p.sql);
    if (!ok) {
        util_buf_free(&p.out);
        return NULL;
    }
    if (out_len)
        *out_len = p.out.len;
    return util_buf_take(&p.out);
}
