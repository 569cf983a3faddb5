/*
 * cachekey: derivation of the 32-byte cache key of a request.
 *
 * The key is SHA-256 over length-prefixed fields, so no two different inputs can be
 * spliced into the same byte stream: a version label, the upstream credential identity
 * (a hash of the credential, never the token itself), the workspace, the method, the
 * normalised path, the query parameters sorted by name then value, the Accept header
 * normalised (absent, "*" + "/" + "*" and application/json are the same JSON answer), and
 * for queries the SHA-256 of the canonical SQL (sqlkey) -- of the WHOLE SQL, whatever its
 * size -- plus any other body fields that change the answer. Two clients with different
 * workspaces or credentials therefore never share a key.
 *
 * Rules: no state, no allocation visible to the caller; thread-safe.
 */
#ifndef HG_CACHEKEY_H
#define HG_CACHEKEY_H

#include <stddef.h>
#include <stdint.h>

#define CACHEKEY_LEN 32

typedef struct cachekey {
    uint8_t k[CACHEKEY_LEN];
} cachekey;

typedef struct cachekey_in {
    const char *cred_id;     /* identity of the upstream credential (a hash), required */
    const char *workspace;   /* X-Workspace-Id, may be NULL (e.g. GET /v1/workspaces) */
    const char *method;      /* "GET", "POST", ... */
    const char *path;        /* normalised path without the query string */
    const char *query;       /* raw query string without '?', may be NULL */
    const char *accept;      /* Accept header, may be NULL */
    const uint8_t *sql_hash; /* 32-byte SHA-256 of the canonical SQL, or NULL */
    const char *body_extra;  /* other answer-changing body fields (canonical text), or NULL */
    size_t body_extra_len;
} cachekey_in;

void cachekey_derive(const cachekey_in *in, cachekey *out);

/* SHA-256 of the canonical SQL text (all of it). */
void cachekey_sql_hash(const char *sql, size_t len, uint8_t out[32]);

/* Lowercase hex of the key into out[65]. */
void cachekey_hex(const cachekey *k, char out[65]);
/* Parse 64 hex chars; 0 on success. */
int cachekey_parse_hex(const char *hex, cachekey *k);

/*
 * Canonical query string: parameters split on '&', empty ones dropped, sorted by name
 * then value (bytewise), joined with '&'. Writes at most cap-1 bytes + NUL into out and
 * returns the full length (like snprintf). Percent-encoding is left as sent.
 */
size_t cachekey_canon_query(const char *query, char *out, size_t cap);

/* Canonical Accept value into out (lowercase, spaces removed; "" for the JSON default). */
size_t cachekey_canon_accept(const char *accept, char *out, size_t cap);

#endif
