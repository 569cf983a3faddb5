/*
 * bodykey: the request body's part of a cache key.
 *
 * Job: turn the body of a cacheable request into 32 bytes such that two bodies get the same
 * bytes only when the upstream cannot answer them differently, and, for POST /v1/query, read
 * the fields the cache itself acts on (sql, async, async_after_ms, dialect) in the same pass.
 *
 * Rule: the WHOLE body is keyed. A JSON body is keyed in a canonical form: object members
 * sorted by name, no insignificant whitespace, every number, string and literal exactly as
 * given (1 and 1.0 stay apart: a strict client type-checks them differently); in a query body
 * the top-level "sql" string is replaced by the digest of its canonical SQL (sqlkey). Fields
 * left out of the key because they are known not to change the answer: NONE. (async and
 * async_after_ms change the answer's form, database_id, default_catalog, default_schema and
 * dialect its content, and a field the gateway does not know may do either.)
 * A body that is not strict JSON (RFC 8259: only space, tab, CR, LF as whitespace, UTF-8 strings,
 * no control bytes), that has a duplicate member name (the upstream might read either copy), a
 * member name with an escape (names are compared as sent), or nests deeper than 64 is keyed on
 * its exact bytes, in a domain of its own. An empty body keys like no body.
 *
 * The SQL of a query is canonicalised only when the dialect is one the lexer knows (absent or
 * null, "hotsql", "duckdb", "postgres", "snowflake") and the lexer is certain of the whole text
 * (sqlkey_canon_digest); otherwise the exact SQL is keyed and sql_certain is false, and the
 * cache does not cache the query.
 *
 * Rules: pure, thread-safe; allocation only for the scratch canonical text (freed before
 * returning) and for *sql_out when asked. Input need not be NUL-terminated.
 */
#ifndef HG_BODYKEY_H
#define HG_BODYKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum bodykey_kind {
    BODYKEY_NONE = 0, /* no body, or an empty one */
    BODYKEY_JSON,     /* canonical JSON */
    BODYKEY_RAW,      /* exact bytes (not strict JSON, duplicates, escaped names, too deep) */
};

struct bodykey {
    enum bodykey_kind kind;
    uint8_t digest[32]; /* the key part (all zero for NONE) */
    /* POST /v1/query bodies (query mode) */
    bool query_ok;           /* a JSON object with "sql" a string, "async" a boolean or null and
                                "async_after_ms" an integer or null: the cache may act on it */
    bool sql_certain;        /* the SQL was canonicalised (known dialect, certain lexing) */
    bool async;              /* "async": true */
    bool has_async_after_ms; /* "async_after_ms" an integer */
    int64_t async_after_ms;
    char sql_hash[65]; /* lowercase hex SHA-256 of the exact SQL text ("" when no sql) */
};

/*
 * Derive the key part of body[0..len). query: read it as a POST /v1/query body. sql_out (may be
 * NULL): receives a malloc'd, NUL-terminated copy of the decoded SQL (*sql_len its length; may
 * contain NUL bytes) when query_ok, else NULL.
 */
void bodykey_derive(const char *body, size_t len, bool query, struct bodykey *out, char **sql_out,
                    size_t *sql_len);

/*
 * The canonical JSON text of body (no sql replacement), for tests and tools: malloc'd,
 * NUL-terminated, *out_len its length; NULL when the body is not keyed as JSON.
 */
char *bodykey_canonical_json(const char *body, size_t len, size_t *out_len);

#endif
