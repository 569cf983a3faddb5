/*
 * sqlkey: SQL canonicalisation, classification and table references for the query cache.
 *
 * Job: turn the SQL text of a POST /v1/query into (a) the cache key, (b) a verdict on whether
 * its result may be cached at all, with a reason when not, and (c) the list of tables it reads,
 * from which the route module derives the cache tags that data-changing calls invalidate.
 * Hotdata SQL is Postgres-compatible, so the lexer follows Postgres' rules (nested block
 * comments, '' and E'\'' escapes, $tag$ dollar quotes, "" in quoted identifiers, U&'..').
 *
 * Two hashes, on purpose different:
 *   - sql_hash (sqlkey_hash): lowercase hex SHA-256 of the EXACT SQL text sent upstream, byte
 *     for byte. This is the upstream's own definition (query runs carry it), so it is what the
 *     gateway uses to coalesce identical in-flight requests and what it logs.
 *   - cache key (sqlkey_cache_key): lowercase hex SHA-256 of the CANONICAL form
 *     (sqlkey_canonical), so that formatting differences share one cache entry.
 *
 * Canonical form: whitespace runs and comments between tokens become one separator; leading
 * and trailing ones vanish. Every token is copied byte for byte: literals, dollar quotes, quoted
 * identifiers, unquoted identifiers, keywords and ';' (a trailing ';' is kept: whether the
 * upstream accepts it is its call). The separator is a space, except a newline where the gap
 * follows a string literal and holds a newline (Postgres concatenates 'a'<newline>'b' but
 * rejects 'a' 'b'). A gap INSIDE a select-list item is kept byte for byte: engines name an
 * unaliased column after its expression's text (SQLite, behind hotdata-sim, calls the column of
 * `SELECT 1  +  1` "1  +  1", comments included), so there whitespace is part of the answer.
 * An unterminated block comment is kept verbatim (the query is invalid; it must not share a key
 * with a valid one).
 *
 * Certainty: the request may be in any dialect the API accepts (hotsql, duckdb, postgres,
 * snowflake), some of which borrow MySQL's and T-SQL's habits. From the first token that one of
 * them could read with a different extent -- a nested block comment, a CR in a line comment, a
 * backslash in a string or quoted identifier, a dollar quote, \v or \f, a backtick (`k--` is a
 * name there), '#' or '//' (line comments in Snowflake/MySQL), a '[' whose span holds more than
 * name characters ([x--]) -- the rest of the text is copied verbatim, so the key stays
 * injective, and the statement is SQLKEY_AMBIGUOUS: never judged cacheable (no guessing about
 * volatile functions after a token we cannot read), so the cache bypasses it.
 *
 * Case folding: NOT done. Postgres folds unquoted identifiers, so `SELECT a FROM T` and
 * `select a from t` mean the same query, but the output column names of unaliased expressions
 * echo the SQL text in several engines (SQLite, which backs hotdata-sim, names the column of
 * `SELECT COUNT(*)` "COUNT(*)"), so folding could serve a response whose column names differ
 * from what the upstream would have sent. A missed hit is cheap; a wrong body is not.
 *
 * Rules: every function is pure and thread-safe (no global state). Input is (pointer, length),
 * need not be NUL-terminated, may contain NUL bytes, may be truncated anywhere; all scans are
 * linear in the input, iterative (no recursion) and never read outside [sql, sql+len).
 * Functions that allocate say so; the caller owns the result.
 */
#ifndef HG_SQLKEY_H
#define HG_SQLKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- lexer ------------------------------------------------------------------------------ */

enum sqlkey_tok_kind {
    SQLKEY_TOK_SPACE,    /* whitespace run */
    SQLKEY_TOK_COMMENT,  /* -- line comment (without its newline) or complete block comment */
    SQLKEY_TOK_WORD,     /* unquoted identifier or keyword (letters, digits, _, $, bytes >= 0x80) */
    SQLKEY_TOK_QIDENT,   /* "quoted identifier" (also U&"..."), quotes included */
    SQLKEY_TOK_STRING,   /* '...', E'...', U&'...', B'...', X'...', N'...' (prefix included) */
    SQLKEY_TOK_DOLLAR,   /* $$...$$ or $tag$...$tag$ */
    SQLKEY_TOK_NUMBER,   /* 123, 1.5e3, .5, 0x1F */
    SQLKEY_TOK_PARAM,    /* $1 */
    SQLKEY_TOK_OPERATOR, /* run of + - * / < > = ~ ! @ # % ^ & | ` ? (also :: and :) */
    SQLKEY_TOK_PUNCT,    /* ( ) [ ] , ; . */
    SQLKEY_TOK_OTHER,    /* any other single byte */
};

struct sqlkey_tok {
    enum sqlkey_tok_kind kind;
    size_t off, len;   /* byte range in the input */
    bool unterminated; /* string/identifier/dollar quote/block comment runs to end of input */
};

/* Lex the token starting at sql[off] (off < len) into *tok. Always consumes >= 1 byte. */
void sqlkey_lex(const char *sql, size_t len, size_t off, struct sqlkey_tok *tok);

/* ---- canonical form and hashes ------------------------------------------------------------ */

/*
 * Write the canonical form of sql[0..len) into out, which must hold len + 1 bytes (the canonical
 * form is never longer than the input); NUL-terminates; returns the canonical length.
 */
size_t sqlkey_canonical(const char *sql, size_t len, char *out);

/* sql_hash: lowercase hex SHA-256 of the exact text (== util_sha256_hex). out: 65 bytes. */
void sqlkey_hash(const char *sql, size_t len, char out[65]);

/* Cache key: lowercase hex SHA-256 of sqlkey_canonical(sql). out: 65 bytes. No allocation. */
void sqlkey_cache_key(const char *sql, size_t len, char out[65]);

/*
 * The SQL's part of a cache key, 32 bytes: the SHA-256 of the canonical form when the lexer is
 * certain of the whole text for every dialect (returns true), else of the exact bytes in a
 * domain of their own (returns false: such SQL is also SQLKEY_AMBIGUOUS, never cached).
 */
bool sqlkey_canon_digest(const char *sql, size_t len, uint8_t out[32]);

/* ---- classification ----------------------------------------------------------------------- */

enum sqlkey_reason {
    SQLKEY_OK = 0,          /* cacheable */
    SQLKEY_EMPTY,           /* no statement at all (only whitespace/comments/';') */
    SQLKEY_UNTERMINATED,    /* unterminated literal, identifier, dollar quote or comment */
    SQLKEY_AMBIGUOUS,       /* holds a token the lexer is not certain of for every dialect
                               (see Certainty above): a backslash in a string, a nested block
                               comment, a CR in a line comment, a dollar quote, a backtick, '#',
                               '//', an uncertain '[' ... */
    SQLKEY_MULTI_STATEMENT, /* more than one statement (or ';;') */
    SQLKEY_NOT_READ_ONLY,   /* not SELECT/VALUES/SHOW/TABLE/WITH..SELECT/EXPLAIN */
    SQLKEY_DATA_MODIFYING,  /* INSERT/UPDATE/DELETE/MERGE anywhere, e.g. inside a CTE */
    SQLKEY_SELECT_INTO,     /* SELECT ... INTO creates a table */
    SQLKEY_LOCKING_CLAUSE,  /* FOR UPDATE / FOR NO KEY UPDATE / FOR SHARE / FOR KEY SHARE */
    SQLKEY_EXPLAIN_ANALYZE, /* EXPLAIN ANALYZE executes the statement; timings vary */
    SQLKEY_VOLATILE,        /* now(), random(), nextval(), 'now'::timestamp, ... */
    SQLKEY_REASON__COUNT
};

/* Stable snake_case name of a reason, for logs and metric labels ("ok", "volatile", ...). */
const char *sqlkey_reason_str(enum sqlkey_reason r);

/*
 * True when the reason says the statement may WRITE (not-read-only, data-modifying CTE,
 * SELECT INTO, multi-statement, unterminated/unknown): a gateway forwarding such SQL should
 * treat a successful response like a mutation of the tables it references
 * (route_sql_write_tags). False for OK, EMPTY, VOLATILE, LOCKING_CLAUSE, EXPLAIN_ANALYZE.
 */
bool sqlkey_reason_may_write(enum sqlkey_reason r);

/*
 * Cacheable = exactly one statement (optionally followed by one ';') that is
 *   SELECT, VALUES, TABLE, SHOW, WITH ... SELECT (no INSERT/UPDATE/DELETE/MERGE anywhere),
 *   a parenthesised one of those, or plain EXPLAIN [VERBOSE|(options)] of one of those
 *   (EXPLAIN without ANALYZE only plans; its output depends on the referenced tables, which
 *   are tagged like the statement's. Any ANALYZE/ANALYSE among the options disqualifies);
 * without SELECT ... INTO, without FOR UPDATE/SHARE locking clauses, and without volatile
 * functions (list in sqlkey.c: now, current_timestamp, random, nextval, gen_random_uuid,
 * pg_sleep, txid_current, ...), matched on unquoted words with or without a schema
 * (pg_catalog.now()), on quoted identifiers only when exactly such a name followed by '('
 * ("now"()), and on the special date/time input literals 'now', 'today', 'tomorrow',
 * 'yesterday' when cast (::, CAST(.. AS), or prefixed by a date/time type name).
 * Words are matched case-insensitively. When in doubt the answer is "not cacheable".
 */
bool sqlkey_is_cacheable(const char *sql, size_t len, enum sqlkey_reason *reason);

/* ---- table references --------------------------------------------------------------------- */

/* One referenced table: parts lower-cased unless quoted, quotes removed ("" -> "). */
struct sqlkey_table {
    char *conn; /* connection name, or "datasets" for datasets.<schema>.<table> */
    char *schema;
    char *table;
    char *full; /* "conn.schema.table" */
};

struct sqlkey_refs {
    struct sqlkey_table *v; /* deduplicated (on the three parts), in order of first appearance */
    size_t n, cap;
    /*
     * unknown: the query reads something the three-part names do not cover: a one- or two-part
     * table name in a FROM/JOIN/TABLE position that is not a CTE name (e.g. `FROM orders`,
     * `FROM public.orders`, `FROM information_schema.tables`). The cache must then tag the
     * result so that ANY data change in the workspace invalidates it (tag "qunknown").
     * Table functions (FROM generate_series(...)) are not tables and do not set it.
     */
    bool unknown;
};

/*
 * Collect the tables sql references: every three-part dotted name anywhere (a longer dotted
 * name contributes its first three parts; a three-part name in a select list such as
 * schema.table.column is over-reported, which only over-invalidates), plus the unknown flag.
 * Returns 0, or -1 on allocation failure (refs then holds what was found so far and
 * unknown = true). Free with sqlkey_refs_free. Conservative: over-reporting is safe,
 * under-reporting is not.
 */
int sqlkey_table_refs(const char *sql, size_t len, struct sqlkey_refs *refs);
void sqlkey_refs_free(struct sqlkey_refs *refs);

/* ---- POST /v1/query body ------------------------------------------------------------------ */

struct sqlkey_query_req {
    char *sql; /* malloc'd copy of "sql" (may contain NUL bytes: use sql_len) */
    size_t sql_len;
    bool async;              /* "async" (absent or null: false) */
    bool has_async_after_ms; /* "async_after_ms" present and not null */
    int64_t async_after_ms;
};

/*
 * Parse a POST /v1/query JSON body with jansson. Returns 0 on success; -1 when the body is not
 * a JSON object (or has a duplicate key: the upstream might read the other copy), "sql" is
 * missing or not a string, "async" is neither boolean nor null, or
 * "async_after_ms" is neither integer nor null; then err (if non-NULL) gets a short message
 * and *req is zeroed. Unknown fields are ignored. Free with sqlkey_query_req_free.
 */
int sqlkey_parse_query_body(const char *body, size_t len, struct sqlkey_query_req *req, char *err,
                            size_t errlen);
void sqlkey_query_req_free(struct sqlkey_query_req *req);

#endif
