/*
 * test_sqlkey: canonical form, cache key vs sql_hash, classification, table references and the
 * POST /v1/query body parser (src/sqlkey.c). Single-threaded cmocka tests; no I/O.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlkey.h"
#include "util.h"

/* ---- helpers ---- */

static char *canon(const char *sql)
{
    size_t n = strlen(sql);
    char *out = malloc(n + 1);
    assert_non_null(out);
    size_t m = sqlkey_canonical(sql, n, out);
    assert_int_equal(m, strlen(out));
    assert_true(m <= n);
    return out;
}

static void assert_canon(const char *sql, const char *want)
{
    char *c = canon(sql);
    assert_string_equal(c, want);
    free(c);
}

static bool same_key(const char *a, const char *b)
{
    char ka[65], kb[65];
    sqlkey_cache_key(a, strlen(a), ka);
    sqlkey_cache_key(b, strlen(b), kb);
    return strcmp(ka, kb) == 0;
}

static enum sqlkey_reason reason_of(const char *sql)
{
    enum sqlkey_reason r = SQLKEY_REASON__COUNT;
    bool ok = sqlkey_is_cacheable(sql, strlen(sql), &r);
    assert_int_equal(ok, r == SQLKEY_OK);
    return r;
}

#define ASSERT_REASON(sql, want)                                                                   \
    do {                                                                                           \
        enum sqlkey_reason r_ = reason_of(sql);                                                    \
        if (r_ != (want))                                                                          \
            fail_msg("%s: got %s want %s", sql, sqlkey_reason_str(r_), sqlkey_reason_str(want));   \
    } while (0)

/* ---- canonical form ---- */

static void test_canonical_whitespace_and_comments(void **state)
{
    (void)state;
    assert_canon("  SELECT   a,\n\tb   FROM  t  ", "SELECT a, b FROM t");
    /* ';' is a token: kept, trailing too (whether the upstream takes it is its call) */
    assert_canon("SELECT 1;", "SELECT 1;");
    assert_canon("SELECT 1 ;  \n", "SELECT 1 ;");
    assert_canon("SELECT 1;;", "SELECT 1;;");
    assert_canon("SELECT -- comment\n 1", "SELECT 1");
    assert_canon("SELECT 1 -- trailing comment", "SELECT 1");
    assert_canon("SELECT 1; -- bye", "SELECT 1;");
    assert_canon("SELECT/* c */1", "SELECT 1");
    /* inside a select-list item the gap is the column's name: kept byte for byte */
    assert_canon("SELECT a/**/b", "SELECT a/**/b");
    /* nested comments lex as in Postgres, but from one on the text is kept verbatim (a lexer
     * without nesting would end it early): still one key per spelling, never a shared one */
    assert_canon("SELECT  /* outer /* nested */ still comment */  1 ;",
                 "SELECT  /* outer /* nested */ still comment */  1 ;");
    assert_false(same_key("SELECT /* /* */ , 2 -- */\n 1", "SELECT 1"));
    assert_false(same_key("SELECT 1 /* /* */ ,  2 -- */", "SELECT 1 /* /* */ , 2 -- */"));
    /* a line comment with a CR: Postgres ends it at the CR, others at the newline */
    assert_canon("SELECT 1 -- x\r, 2\n", "SELECT 1 -- x\r, 2\n");
    assert_false(same_key("SELECT 1 -- x\r, 2\n", "SELECT 1"));
    /* \v: whitespace to Postgres only */
    assert_canon("SELECT  1\v ,  2", "SELECT 1\v ,  2");
    assert_canon("/* lead */ SELECT 1 /* tail */", "SELECT 1");
    assert_canon("SELECT 1+/*x*/2", "SELECT 1+/*x*/2");
    assert_canon("SELECT 1--2\n", "SELECT 1");
    assert_canon("", "");
    assert_canon("   \n ", "");
    assert_canon(";", ";");

    assert_true(same_key("SELECT a FROM t", "  SELECT\n a   FROM t  "));
    assert_true(same_key("SELECT a FROM t", "SELECT /* hi */ a -- x\n FROM t"));
    assert_false(same_key("select 1", "select 1;"));
    /* no case folding (documented): a different key, never a wrong one */
    assert_false(same_key("SELECT a FROM t", "select a from t"));
    /* token boundaries are kept */
    assert_false(same_key("SELECT a b", "SELECT ab"));
    assert_false(same_key("SELECT 1 - -1", "SELECT 1 --1"));
}

static void test_canonical_literals_differ(void **state)
{
    (void)state;
    /* inside literals nothing is touched */
    assert_canon("SELECT 'a  b'", "SELECT 'a  b'");
    assert_canon("SELECT '--not a comment'", "SELECT '--not a comment'");
    assert_canon("SELECT '/* not */'", "SELECT '/* not */'");
    assert_canon("SELECT \"a  --b\"", "SELECT \"a  --b\"");
    assert_canon("SELECT $$ a  -- b $$", "SELECT $$ a  -- b $$");
    /* from a dollar quote on, verbatim (a lexer without them would see other literals) */
    assert_canon("SELECT  $x$ a $$ b $x$ ;", "SELECT  $x$ a $$ b $x$ ;");
    assert_false(same_key("SELECT $$ ' $$  x  '", "SELECT $$ ' $$ x '"));
    assert_canon("SELECT  E'a\\'  -- b'", "SELECT  E'a\\'  -- b'");
    assert_canon("SELECT 'it''s  ok'  ", "SELECT 'it''s  ok'");
    assert_canon("SELECT \"a\"\"  b\"", "SELECT \"a\"\"  b\"");

    assert_false(same_key("SELECT 'a b'", "SELECT 'a  b'"));
    assert_false(same_key("SELECT 'a'", "SELECT 'A'"));
    assert_false(same_key("SELECT \"A\"", "SELECT \"a\""));
    assert_false(same_key("SELECT \"a b\"", "SELECT \"a  b\""));
    assert_false(same_key("SELECT $$a b$$", "SELECT $$a  b$$"));
    assert_false(same_key("SELECT $t$a$t$", "SELECT $u$a$u$"));
    assert_false(same_key("SELECT E'a\\n'", "SELECT E'a\\t'"));
    assert_false(same_key("SELECT E'a\\'b'", "SELECT E'a\\'c'"));
    assert_false(same_key("SELECT 'x -- y'", "SELECT 'x'"));
    assert_false(same_key("SELECT '/* y */'", "SELECT ''"));
    assert_false(same_key("SELECT 'a;'", "SELECT 'a'"));
    assert_false(same_key("SELECT 1 WHERE x = 'a' -- c", "SELECT 1 WHERE x = 'a -- c'"));
    /* E-string: the quote after a backslash does not end it (and the rest stays verbatim) */
    assert_canon("SELECT  E'\\'  ' ,  1", "SELECT  E'\\'  ' ,  1");
    /* a standard string has no backslash escapes; with standard_conforming_strings off it
     * would: both readings keep their own key, so the rest is verbatim */
    assert_canon("SELECT  '\\'  ,  1", "SELECT  '\\'  ,  1");
    assert_false(same_key("SELECT 'a\\' || ' ; x -- '", "SELECT 'a\\' || ' ; x --  '"));
    assert_false(same_key("SELECT 'a\\' -- x'", "SELECT 'a\\' -- y'"));
    ASSERT_REASON("SELECT 'a\\' || ' ; DELETE FROM c.s.t; -- '", SQLKEY_AMBIGUOUS);
    ASSERT_REASON("SELECT 1 /* /* */ ; DELETE FROM c.s.t -- */", SQLKEY_AMBIGUOUS);
    ASSERT_REASON("SELECT 1 -- x\r; DELETE FROM c.s.t\n", SQLKEY_AMBIGUOUS);
    ASSERT_REASON("SELECT E'a\\'b'", SQLKEY_AMBIGUOUS); /* any backslash: uncertain (issue 9) */
    ASSERT_REASON("SELECT $$a\\b$$", SQLKEY_AMBIGUOUS);
    assert_true(sqlkey_reason_may_write(SQLKEY_AMBIGUOUS));
    {
        struct sqlkey_refs r;
        const char *q = "SELECT * FROM a.b.c WHERE x = 'a\\'";
        assert_int_equal(sqlkey_table_refs(q, strlen(q), &r), 0);
        assert_true(r.unknown);
        sqlkey_refs_free(&r);
    }
    /* string continuation across a newline keeps its newline */
    assert_canon("SELECT 1 WHERE x = 'a'\n  'b'", "SELECT 1 WHERE x = 'a'\n'b'");
    assert_canon("SELECT 1 WHERE x = 'a' -- c\n 'b'", "SELECT 1 WHERE x = 'a'\n'b'");
    assert_canon("SELECT 'a'\n  'b'", "SELECT 'a'\n  'b'"); /* a select item: kept */
    assert_false(same_key("SELECT 'a'\n'b'", "SELECT 'a' 'b'"));
    /* $1 parameters and dollar signs inside words are not dollar quotes */
    assert_canon("SELECT $1,  a$b$c", "SELECT $1, a$b$c");
}

static void test_canonical_unterminated(void **state)
{
    (void)state;
    assert_canon("SELECT 'abc   ", "SELECT 'abc   ");
    assert_canon("SELECT \"abc  ", "SELECT \"abc  ");
    assert_canon("SELECT $$abc  ", "SELECT $$abc  ");
    assert_canon("SELECT $a$abc $b$ ", "SELECT $a$abc $b$ ");
    assert_canon("SELECT E'abc\\", "SELECT E'abc\\");
    assert_canon("SELECT 1 /* abc  ", "SELECT 1 /* abc  ");
    assert_canon("SELECT 1 /* a /* b */ ", "SELECT 1 /* a /* b */ ");
    /* an unterminated comment never shares a key with the valid query */
    assert_false(same_key("SELECT 1 /* x", "SELECT 1"));
    assert_false(same_key("SELECT 'a", "SELECT 'a'"));
    ASSERT_REASON("SELECT 'abc", SQLKEY_UNTERMINATED);
    ASSERT_REASON("SELECT 1 /* abc", SQLKEY_UNTERMINATED);
    ASSERT_REASON("SELECT $$abc", SQLKEY_UNTERMINATED);
    ASSERT_REASON("SELECT \"abc", SQLKEY_UNTERMINATED);
    /* every prefix of a tricky query lexes without reading past its end (ASan checks) */
    const char *q = "SELECT E'a\\'b', $t$x$t$, \"q\"\"i\", /* c /* d */ */ 1 -- e\n;";
    size_t n = strlen(q);
    for (size_t i = 0; i <= n; i++) {
        char *buf = malloc(i ? i : 1);
        memcpy(buf, q, i);
        char *out = malloc(i + 1);
        sqlkey_canonical(buf, i, out);
        enum sqlkey_reason r;
        sqlkey_is_cacheable(buf, i, &r);
        struct sqlkey_refs refs;
        sqlkey_table_refs(buf, i, &refs);
        sqlkey_refs_free(&refs);
        free(out);
        free(buf);
    }
}

static void test_canonical_large(void **state)
{
    (void)state;
    size_t n = 256 * 1024;
    char *a = malloc(n + 1), *b = malloc(n + 1);
    const char *head = "SELECT * FROM c.s.t WHERE x IN (";
    size_t hl = strlen(head);
    memcpy(a, head, hl);
    for (size_t i = hl; i < n - 2; i++)
        a[i] = (i % 7 == 0) ? ',' : (char)('0' + i % 10);
    a[n - 2] = ')';
    a[n - 1] = '1';
    a[n] = '\0';
    memcpy(b, a, n + 1);
    b[n - 1] = '2';
    char ka[65], kb[65];
    sqlkey_cache_key(a, n, ka);
    sqlkey_cache_key(b, n, kb);
    assert_string_not_equal(ka, kb);
    /* same with the difference inside a big literal */
    a[hl] = '\'';
    b[hl] = '\'';
    a[n - 3] = '\'';
    b[n - 3] = '\'';
    sqlkey_cache_key(a, n, ka);
    sqlkey_cache_key(b, n, kb);
    assert_string_not_equal(ka, kb);
    /* canonical of a big query equals hashing its canonical */
    char *out = malloc(n + 1);
    size_t m = sqlkey_canonical(a, n, out);
    char kc[65];
    util_sha256_hex(out, m, kc);
    assert_string_equal(ka, kc);
    /* deep nesting and a huge comment do not recurse */
    for (size_t i = 0; i < n; i++)
        a[i] = (i < n / 2) ? '(' : ')';
    enum sqlkey_reason r;
    sqlkey_is_cacheable(a, n, &r);
    struct sqlkey_refs refs;
    assert_int_equal(sqlkey_table_refs(a, n, &refs), 0);
    sqlkey_refs_free(&refs);
    for (size_t i = 0; i < n; i++)
        a[i] = "/*"[i % 2];
    sqlkey_canonical(a, n, out);
    sqlkey_is_cacheable(a, n, &r);
    assert_int_equal(r, SQLKEY_UNTERMINATED);
    free(out);
    free(a);
    free(b);
}

static void test_hash_vs_key(void **state)
{
    (void)state;
    const char *sql = "SELECT  1  ";
    char h[65], u[65], k[65], kc[65];
    sqlkey_hash(sql, strlen(sql), h);
    util_sha256_hex(sql, strlen(sql), u);
    assert_string_equal(h, u);
    /* known vector: sha256("SELECT 1") */
    sqlkey_hash("SELECT 1", 8, h);
    assert_string_equal(h, "e004ebd5b5532a4b85984a62f8ad48a81aa3460c1ca07701f386135d72cdecf5");
    sqlkey_cache_key(sql, strlen(sql), k);
    util_sha256_hex("SELECT 1", 8, kc);
    assert_string_equal(k, kc);
    sqlkey_hash(sql, strlen(sql), h);
    assert_string_not_equal(h, k);
    /* NUL bytes are data */
    assert_false(same_key("SELECT 'a'", "SELECT 'a'") == false);
    char z1[] = "SELECT 'a\0b'", z2[] = "SELECT 'a\0c'";
    char k1[65], k2[65];
    sqlkey_cache_key(z1, sizeof(z1) - 1, k1);
    sqlkey_cache_key(z2, sizeof(z2) - 1, k2);
    assert_string_not_equal(k1, k2);
}

/* ---- certainty across dialects (issue 9) ---- */

static void test_uncertain_tokens(void **state)
{
    (void)state;
    uint8_t d1[32], d2[32];
    /* backtick- and bracket-quoted names: `k--` is a name in MySQL-style dialects, a comment
     * here; such SQL keys on its exact bytes and is never judged cacheable */
    const char *a = "SELECT id AS `k--` FROM t WHERE status='delivered'";
    const char *b = "SELECT id AS `k--` FROM t WHERE status='shipped'";
    assert_false(sqlkey_canon_digest(a, strlen(a), d1));
    assert_false(sqlkey_canon_digest(b, strlen(b), d2));
    assert_memory_not_equal(d1, d2, 32);
    ASSERT_REASON(a, SQLKEY_AMBIGUOUS);
    ASSERT_REASON("SELECT `a  b` FROM t", SQLKEY_AMBIGUOUS);
    ASSERT_REASON("SELECT [x--] FROM t WHERE s='a'", SQLKEY_AMBIGUOUS);
    ASSERT_REASON("SELECT [a  b] FROM t", SQLKEY_AMBIGUOUS);
    ASSERT_REASON("SELECT `k--`, random() FROM t", SQLKEY_AMBIGUOUS); /* not VOLATILE: no
                                                                         guessing either way */
    ASSERT_REASON("SELECT 1 // snowflake comment\n FROM t", SQLKEY_AMBIGUOUS);
    ASSERT_REASON("SELECT 1 # mysql comment\n FROM t", SQLKEY_AMBIGUOUS);
    ASSERT_REASON("SELECT 1\f", SQLKEY_AMBIGUOUS);
    ASSERT_REASON("SELECT \\x", SQLKEY_AMBIGUOUS);
    /* exact bytes: whitespace no longer collapses once uncertain */
    assert_false(same_key("SELECT `a  b`", "SELECT `a b`"));
    assert_false(same_key("SELECT [a  b]", "SELECT [a b]"));
    assert_false(same_key("SELECT 1 // x\n, 2", "SELECT 1 // x , 2"));
    /* a bracket of name characters only is certain (subscripts, list literals) */
    const char *c = "SELECT arr[1], m[k.v], [1,2] FROM c.s.t";
    assert_true(sqlkey_canon_digest(c, strlen(c), d1));
    ASSERT_REASON(c, SQLKEY_OK);
    assert_true(same_key("SELECT arr[1] FROM c.s.t", "SELECT arr[1]\n  FROM c.s.t"));
    /* certain SQL: the digest is the canonical form's */
    const char *e = "SELECT a\n  FROM t";
    assert_true(sqlkey_canon_digest(e, strlen(e), d1));
    char hex[65], kc[65];
    util_hex(d1, 32, hex);
    util_sha256_hex("SELECT a FROM t", 15, kc);
    assert_string_equal(hex, kc);
}

static void test_select_list_gaps(void **state)
{
    (void)state;
    /* engines name unaliased columns after the expression's text: gaps inside an item stay */
    assert_false(same_key("SELECT 1  +  1", "SELECT 1 + 1"));
    assert_false(same_key("SELECT 1 /* c */ + 1", "SELECT 1 + 1"));
    assert_false(same_key("SELECT f(a,  b) FROM t", "SELECT f(a, b) FROM t"));
    assert_false(same_key("SELECT (SELECT a  FROM t)", "SELECT (SELECT a FROM t)"));
    assert_false(same_key("SELECT * FROM (SELECT 1  +  1) s", "SELECT * FROM (SELECT 1 + 1) s"));
    assert_false(same_key("SELECT a IS DISTINCT  FROM b", "SELECT a IS DISTINCT FROM b"));
    assert_false(same_key("SELECT x, CASE WHEN a THEN  1 END FROM t",
                          "SELECT x, CASE WHEN a THEN 1 END FROM t"));
    /* gaps between items, around SELECT/FROM and in the other clauses are formatting */
    assert_true(same_key("SELECT a, b FROM t WHERE x = 1",
                         "SELECT\n  a,\n  b\nFROM t -- the table\nWHERE   x   =   1"));
    assert_true(same_key("SELECT DISTINCT a FROM t", "SELECT  DISTINCT\ta FROM t"));
    assert_true(same_key("SELECT a FROM t ORDER BY a LIMIT 10",
                         "SELECT a\nFROM t\nORDER  BY a\n LIMIT 10"));
    assert_true(same_key("WITH x AS (SELECT a FROM t) SELECT a FROM x",
                         "WITH x AS (SELECT a\n  FROM t)\nSELECT a FROM x"));
    assert_canon("SELECT  a  +  b ,  c  FROM  t", "SELECT a  +  b , c FROM t");
}

/* ---- classification ---- */

static void test_cacheable_kinds(void **state)
{
    (void)state;
    ASSERT_REASON("SELECT 1", SQLKEY_OK);
    ASSERT_REASON("select * from c.s.t;", SQLKEY_OK);
    ASSERT_REASON("  (SELECT 1) UNION (SELECT 2)", SQLKEY_OK);
    ASSERT_REASON("VALUES (1), (2)", SQLKEY_OK);
    ASSERT_REASON("SHOW TABLES", SQLKEY_OK);
    ASSERT_REASON("TABLE c.s.t", SQLKEY_OK);
    ASSERT_REASON("WITH x AS (SELECT 1) SELECT * FROM x", SQLKEY_OK);
    ASSERT_REASON("/* hi */ SELECT 1 -- x", SQLKEY_OK);
    ASSERT_REASON("EXPLAIN SELECT 1", SQLKEY_OK);
    ASSERT_REASON("EXPLAIN VERBOSE SELECT 1", SQLKEY_OK);
    ASSERT_REASON("EXPLAIN (COSTS OFF) SELECT 1", SQLKEY_OK);
    ASSERT_REASON("SELECT extract(year FROM d) FROM c.s.t", SQLKEY_OK);
    ASSERT_REASON("SELECT substring(x from 1 for 2) FROM c.s.t", SQLKEY_OK);
    ASSERT_REASON("SELECT 'insert into x' AS s", SQLKEY_OK);
    ASSERT_REASON("SELECT \"update\" FROM c.s.t", SQLKEY_OK);

    ASSERT_REASON("", SQLKEY_EMPTY);
    ASSERT_REASON(" ; ", SQLKEY_EMPTY);
    ASSERT_REASON("-- only a comment", SQLKEY_EMPTY);
    ASSERT_REASON("INSERT INTO c.s.t VALUES (1)", SQLKEY_NOT_READ_ONLY);
    ASSERT_REASON("UPDATE c.s.t SET a = 1", SQLKEY_NOT_READ_ONLY);
    ASSERT_REASON("DELETE FROM c.s.t", SQLKEY_NOT_READ_ONLY);
    ASSERT_REASON("CREATE TABLE x (a int)", SQLKEY_NOT_READ_ONLY);
    ASSERT_REASON("DROP TABLE x", SQLKEY_NOT_READ_ONLY);
    ASSERT_REASON("SET search_path = x", SQLKEY_NOT_READ_ONLY);
    ASSERT_REASON("EXPLAIN INSERT INTO t VALUES (1)", SQLKEY_NOT_READ_ONLY);
    ASSERT_REASON("EXPLAIN", SQLKEY_NOT_READ_ONLY);
}

static void test_multi_statement(void **state)
{
    (void)state;
    ASSERT_REASON("SELECT 1; SELECT 2", SQLKEY_MULTI_STATEMENT);
    ASSERT_REASON("SELECT 1;;", SQLKEY_MULTI_STATEMENT);
    ASSERT_REASON("SELECT 1; DROP TABLE x", SQLKEY_MULTI_STATEMENT);
    ASSERT_REASON("SELECT 1; -- trailing comment only", SQLKEY_OK);
    ASSERT_REASON("SELECT ';' AS a; ", SQLKEY_OK);
    ASSERT_REASON("SELECT $$;$$", SQLKEY_AMBIGUOUS); /* not every dialect has dollar quotes */
    assert_true(sqlkey_reason_may_write(SQLKEY_MULTI_STATEMENT));
}

static void test_data_modifying_cte_and_locks(void **state)
{
    (void)state;
    ASSERT_REASON("WITH d AS (DELETE FROM c.s.t RETURNING *) SELECT * FROM d",
                  SQLKEY_DATA_MODIFYING);
    ASSERT_REASON("WITH i AS (INSERT INTO c.s.t VALUES (1) RETURNING a) SELECT a FROM i",
                  SQLKEY_DATA_MODIFYING);
    ASSERT_REASON("WITH u AS (UPDATE c.s.t SET a=1 RETURNING a) SELECT 1", SQLKEY_DATA_MODIFYING);
    ASSERT_REASON("WITH m AS (SELECT 1) MERGE INTO c.s.t USING m ON true WHEN MATCHED THEN DELETE",
                  SQLKEY_DATA_MODIFYING);
    ASSERT_REASON("WITH x AS (SELECT 1) INSERT INTO c.s.t SELECT * FROM x", SQLKEY_DATA_MODIFYING);
    ASSERT_REASON("SELECT * INTO newt FROM c.s.t", SQLKEY_SELECT_INTO);
    ASSERT_REASON("SELECT * FROM c.s.t FOR UPDATE", SQLKEY_LOCKING_CLAUSE);
    ASSERT_REASON("SELECT * FROM c.s.t FOR NO KEY UPDATE", SQLKEY_LOCKING_CLAUSE);
    ASSERT_REASON("SELECT * FROM c.s.t FOR SHARE", SQLKEY_LOCKING_CLAUSE);
    ASSERT_REASON("SELECT * FROM c.s.t for key share nowait", SQLKEY_LOCKING_CLAUSE);
    ASSERT_REASON("EXPLAIN ANALYZE SELECT 1", SQLKEY_EXPLAIN_ANALYZE);
    ASSERT_REASON("explain analyse select 1", SQLKEY_EXPLAIN_ANALYZE);
    ASSERT_REASON("EXPLAIN (ANALYZE, BUFFERS) SELECT 1", SQLKEY_EXPLAIN_ANALYZE);
    ASSERT_REASON("EXPLAIN (FORMAT JSON, ANALYZE true) SELECT 1", SQLKEY_EXPLAIN_ANALYZE);
    ASSERT_REASON("EXPLAIN VERBOSE ANALYZE SELECT 1", SQLKEY_EXPLAIN_ANALYZE);
    assert_true(sqlkey_reason_may_write(SQLKEY_DATA_MODIFYING));
    assert_true(sqlkey_reason_may_write(SQLKEY_SELECT_INTO));
    assert_false(sqlkey_reason_may_write(SQLKEY_VOLATILE));
    assert_false(sqlkey_reason_may_write(SQLKEY_OK));
}

static void test_volatile(void **state)
{
    (void)state;
    const char *vol[] = {
        "SELECT now()",
        "SELECT NOW ( )",
        "SELECT pg_catalog.now()",
        "SELECT current_timestamp",
        "SELECT CURRENT_DATE",
        "SELECT current_time(3)",
        "SELECT localtimestamp",
        "SELECT localtime",
        "SELECT clock_timestamp()",
        "SELECT statement_timestamp()",
        "SELECT transaction_timestamp()",
        "SELECT timeofday()",
        "SELECT * FROM c.s.t ORDER BY random()",
        "SELECT setseed(0.5)",
        "SELECT uuid()",
        "SELECT gen_random_uuid()",
        "SELECT uuid_generate_v4()",
        "SELECT public.uuid_generate_v1()",
        "SELECT nextval('s')",
        "SELECT currval('s')",
        "SELECT setval('s', 1)",
        "SELECT lastval()",
        "SELECT pg_sleep(1)",
        "SELECT txid_current()",
        "SELECT \"now\"()",
        "SELECT 'now'::timestamp",
        "SELECT timestamp 'now'",
        "SELECT CAST('today' AS date)",
        "SELECT * FROM c.s.t WHERE d > date 'yesterday'",
        "SELECT * FROM c.s.t TABLESAMPLE BERNOULLI (10)",
        "SELECT a FROM c.s.t WHERE b = (SELECT max(b) FROM c.s.u WHERE ts < now())",
        "SELECT current_user",
        "SELECT * FROM c.s.t WHERE ts > timestamp with time zone 'now'",
        "SELECT \"random\"()",
    };
    for (size_t i = 0; i < sizeof(vol) / sizeof(vol[0]); i++)
        ASSERT_REASON(vol[i], SQLKEY_VOLATILE);
    /* inside literals, quoted identifiers used as columns, comments: not volatile */
    ASSERT_REASON("SELECT 'now()'", SQLKEY_OK);
    ASSERT_REASON("SELECT 'random()' AS s, 'now()' AS t", SQLKEY_OK);
    ASSERT_REASON("SELECT 'random()' AS s, $$now()$$ AS t", SQLKEY_AMBIGUOUS);
    ASSERT_REASON("SELECT 1 -- now()", SQLKEY_OK);
    ASSERT_REASON("SELECT /* random() */ 1", SQLKEY_OK);
    ASSERT_REASON("SELECT \"now\" FROM c.s.t", SQLKEY_OK);
    ASSERT_REASON("SELECT * FROM c.s.t WHERE status = 'now'", SQLKEY_OK);
    ASSERT_REASON("SELECT E'now()'", SQLKEY_OK);
    ASSERT_REASON("SELECT nowhere, randomness FROM c.s.t", SQLKEY_OK);
    ASSERT_REASON("SELECT random_col FROM c.s.t", SQLKEY_OK);
}

/* ---- table references ---- */

static struct sqlkey_refs refs_of(const char *sql)
{
    struct sqlkey_refs r;
    assert_int_equal(sqlkey_table_refs(sql, strlen(sql), &r), 0);
    return r;
}

static void assert_refs(const char *sql, bool unknown, const char *const *want, size_t n)
{
    struct sqlkey_refs r = refs_of(sql);
    if (r.unknown != unknown)
        fail_msg("%s: unknown=%d want %d", sql, r.unknown, unknown);
    if (r.n != n) {
        for (size_t i = 0; i < r.n; i++)
            print_message("  got %s\n", r.v[i].full);
        fail_msg("%s: %zu refs, want %zu", sql, r.n, n);
    }
    for (size_t i = 0; i < n; i++)
        assert_string_equal(r.v[i].full, want[i]);
    sqlkey_refs_free(&r);
}

#define REFS(sql, unk, ...)                                                                        \
    do {                                                                                           \
        const char *w_[] = {__VA_ARGS__};                                                          \
        assert_refs(sql, unk, w_, sizeof(w_) / sizeof(w_[0]) - 1);                                 \
    } while (0)

static void test_table_refs(void **state)
{
    (void)state;
    REFS("SELECT 1", false, NULL);
    REFS("SELECT * FROM pg.public.orders", false, "pg.public.orders", NULL);
    REFS("SELECT * FROM PG.Public.Orders o", false, "pg.public.orders", NULL);
    REFS("SELECT * FROM \"MyConn\".\"Sch\".\"T\"\"x\"", false, "MyConn.Sch.T\"x", NULL);
    REFS("SELECT * FROM a.b.c JOIN d.e.f ON a.x = f.y LEFT JOIN g.h.i USING (k)", false, "a.b.c",
         "d.e.f", "g.h.i", NULL);
    REFS("SELECT * FROM a.b.c, d.e.f x, datasets.main.sales", false, "a.b.c", "d.e.f",
         "datasets.main.sales", NULL);
    REFS("select * from a . b . c", false, "a.b.c", NULL);
    REFS("SELECT * FROM a.b.c WHERE id IN (SELECT id FROM d.e.f)", false, "a.b.c", "d.e.f", NULL);
    REFS("SELECT * FROM (SELECT * FROM a.b.c) sub", false, "a.b.c", NULL);
    REFS("SELECT (SELECT count(*) FROM a.b.c) AS n", false, "a.b.c", NULL);
    REFS("SELECT * FROM a.b.c x JOIN a.b.c y ON x.id = y.id", false, "a.b.c", NULL);
    REFS("WITH x AS (SELECT * FROM a.b.c), y(n) AS (SELECT 1) SELECT * FROM x JOIN y ON true",
         false, "a.b.c", NULL);
    REFS("WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT n+1 FROM r) SELECT * FROM r", false, NULL);
    REFS("SELECT * FROM generate_series(1, 3) g", false, NULL);
    REFS("SELECT * FROM a.b.c, LATERAL (SELECT 1) l", false, "a.b.c", NULL);
    REFS("SELECT * FROM ((a.b.c JOIN d.e.f ON true))", false, "a.b.c", "d.e.f", NULL);
    REFS("TABLE a.b.c", false, "a.b.c", NULL);
    REFS("SELECT extract(year FROM ts) FROM a.b.c", false, "a.b.c", NULL);
    REFS("SELECT * FROM a.b.c WHERE x IS DISTINCT FROM y", false, "a.b.c", NULL);
    REFS("SELECT * FROM a.b.c ORDER BY x, y", false, "a.b.c", NULL);
    REFS("SELECT * FROM a.b.c GROUP BY x, y", false, "a.b.c", NULL);
    REFS("SELECT 'FROM x.y.z', \"a.b.c\" FROM a.b.c", false, "a.b.c", NULL);
    REFS("WITH x AS MATERIALIZED (SELECT * FROM a.b.c) SELECT * FROM x", false, "a.b.c", NULL);
    REFS("WITH x AS NOT MATERIALIZED (SELECT 1), y AS (SELECT * FROM x) SELECT * FROM y JOIN "
         "d.e.f ON true",
         false, "d.e.f", NULL);
    REFS("SELECT * FROM ONLY a.b.c", false, "a.b.c", NULL);
    REFS("SELECT * FROM a.b.c t1 JOIN LATERAL generate_series(1, t1.n) g ON true", false, "a.b.c",
         NULL);
    REFS("EXPLAIN SELECT * FROM a.b.c", false, "a.b.c", NULL);
    REFS("SELECT * FROM unnest(ARRAY[1,2]) WITH ORDINALITY AS u(x, n)", false, NULL);
    REFS("SELECT * FROM a.b.c AS x(p, q), d.e.f", false, "a.b.c", "d.e.f", NULL);
    REFS("SELECT * FROM a.b.c UNION ALL TABLE d.e.f", false, "a.b.c", "d.e.f", NULL);
    REFS("SELECT * FROM a.b.c CROSS JOIN (VALUES (1),(2)) v(n)", false, "a.b.c", NULL);
    REFS("SELECT count(*) OVER (PARTITION BY a, b ORDER BY c, d) FROM a.b.c", false, "a.b.c", NULL);
    /* writes: the written table counts too */
    REFS("INSERT INTO orders SELECT * FROM a.b.c", true, "a.b.c", NULL);
    REFS("UPDATE a.b.c SET x = 1 FROM d.e.f", false, "a.b.c", "d.e.f", NULL);
    REFS("DELETE FROM a.b.c", false, "a.b.c", NULL);
    /* longer dotted names contribute their first three parts */
    REFS("SELECT a.b.c.d FROM a.b.c", false, "a.b.c", NULL);

    /* unknown references */
    REFS("SELECT * FROM orders", true, NULL);
    REFS("SELECT * FROM public.orders", true, NULL);
    REFS("SELECT * FROM information_schema.tables", true, NULL);
    REFS("SELECT * FROM a.b.c JOIN orders o ON true", true, "a.b.c", NULL);
    REFS("SELECT * FROM a.b.c, orders", true, "a.b.c", NULL);
    REFS("SELECT * FROM (orders JOIN a.b.c ON true)", true, "a.b.c", NULL);
    REFS("WITH x AS (SELECT 1) SELECT * FROM x, y", true, NULL);
    REFS("TABLE orders", true, NULL);
    REFS("SELECT * FROM \"Orders\"", true, NULL);
}

static void test_refs_truncated_and_big(void **state)
{
    (void)state;
    REFS("SELECT * FROM a.b.", true, NULL);
    REFS("SELECT * FROM a.b.\"c", false, "a.b.c", NULL);
    REFS("SELECT * FROM", true, NULL);
    /* many distinct refs */
    size_t n = 3000;
    char *q = malloc(n * 24 + 64);
    size_t k = (size_t)sprintf(q, "SELECT * FROM c.s.t0");
    for (size_t i = 1; i < n; i++)
        k += (size_t)sprintf(q + k, ", c.s.t%zu", i);
    struct sqlkey_refs r;
    assert_int_equal(sqlkey_table_refs(q, k, &r), 0);
    assert_true(r.n > 0);
    assert_true(r.unknown); /* past the cap: reported as unknown */
    sqlkey_refs_free(&r);
    free(q);
}

/* ---- query body ---- */

static void test_query_body(void **state)
{
    (void)state;
    struct sqlkey_query_req q;
    char err[128];
    const char *b = "{\"sql\":\"SELECT 1\",\"async\":true,\"async_after_ms\":1500,\"x\":[1]}";
    assert_int_equal(sqlkey_parse_query_body(b, strlen(b), &q, err, sizeof(err)), 0);
    assert_string_equal(q.sql, "SELECT 1");
    assert_int_equal(q.sql_len, 8);
    assert_true(q.async);
    assert_true(q.has_async_after_ms);
    assert_int_equal(q.async_after_ms, 1500);
    sqlkey_query_req_free(&q);

    b = "{\"sql\":\"SELECT '\\u00e9'\",\"async\":null,\"async_after_ms\":null}";
    assert_int_equal(sqlkey_parse_query_body(b, strlen(b), &q, NULL, 0), 0);
    assert_string_equal(q.sql, "SELECT '\xc3\xa9'");
    assert_false(q.async);
    assert_false(q.has_async_after_ms);
    sqlkey_query_req_free(&q);

    const char *bad[] = {
        "",
        "null",
        "[]",
        "\"sql\"",
        "{}",
        "{\"sql\":1}",
        "{\"sql\":null}",
        "{\"sql\":[\"SELECT 1\"]}",
        "{\"sql\":\"SELECT 1\",\"async\":1}",
        "{\"sql\":\"SELECT 1\",\"async\":\"true\"}",
        "{\"sql\":\"SELECT 1\",\"async_after_ms\":1.5}",
        "{\"sql\":\"SELECT 1\",\"async_after_ms\":\"1000\"}",
        "{\"sql\":\"SELECT 1\"",
        "{\"sql\":\"SELECT 1\"} trailing",
        /* duplicate keys: the upstream might read the other one, so the key could lie */
        "{\"sql\":\"SELECT 1\",\"sql\":\"SELECT 2\"}",
        "{\"sql\":\"SELECT 1\",\"async\":false,\"async\":true}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(sqlkey_parse_query_body(bad[i], strlen(bad[i]), &q, err, sizeof(err)), -1);
        assert_null(q.sql);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(sqlkey_parse_query_body(NULL, 0, &q, err, sizeof(err)), -1);
    /* embedded NUL in sql is preserved with its length */
    b = "{\"sql\":\"a\\u0000b\"}";
    assert_int_equal(sqlkey_parse_query_body(b, strlen(b), &q, NULL, 0), 0);
    assert_int_equal(q.sql_len, 3);
    assert_memory_equal(q.sql, "a\0b", 3);
    sqlkey_query_req_free(&q);
}

static void test_reason_strings(void **state)
{
    (void)state;
    for (int i = 0; i < SQLKEY_REASON__COUNT; i++) {
        const char *s = sqlkey_reason_str((enum sqlkey_reason)i);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown");
    }
    assert_string_equal(sqlkey_reason_str(SQLKEY_VOLATILE), "volatile");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_whitespace_and_comments),
        cmocka_unit_test(test_canonical_literals_differ),
        cmocka_unit_test(test_canonical_unterminated),
        cmocka_unit_test(test_canonical_large),
        cmocka_unit_test(test_uncertain_tokens),
        cmocka_unit_test(test_select_list_gaps),
        cmocka_unit_test(test_hash_vs_key),
        cmocka_unit_test(test_cacheable_kinds),
        cmocka_unit_test(test_multi_statement),
        cmocka_unit_test(test_data_modifying_cte_and_locks),
        cmocka_unit_test(test_volatile),
        cmocka_unit_test(test_table_refs),
        cmocka_unit_test(test_refs_truncated_and_big),
        cmocka_unit_test(test_query_body),
        cmocka_unit_test(test_reason_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
