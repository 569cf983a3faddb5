/*
 * cachekey: derivation of the 32-byte cache key of a request.
 *
 * Rule: two requests share a key only when they agree on every input the upstream could answer
 * differently to. The key is SHA-256 over length-prefixed fields, so no two different inputs
 * can be spliced into the same byte stream:
 *   - a version label, the upstream credential identity (a hash of the credential, never the
 *     token), the workspace, the method, the normalised path;
 *   - the query string, parameters sorted by NAME only (stable: repeated names keep their
 *     order, `limit=1&limit=3` != `limit=3&limit=1`), percent-encoding as sent;
 *   - Accept, normalised (absent, * / * and application/json are the same JSON answer);
 *   - every end-to-end request header, names lower-cased, values as sent, sorted by name
 *     (stable), EXCEPT the documented list below of headers that cannot change the answer;
 *   - the body's key part (bodykey.h: the whole body, canonical JSON or exact bytes).
 *
 * Headers left out of the key (cachekey_header_ignored), each with its reason:
 *   host, content-length, expect, and the hop-by-hop set (connection, keep-alive, te, trailer,
 *     transfer-encoding, upgrade, proxy-*): framing, handled by hotgate, not forwarded as sent;
 *   authorization: replaced upstream by the credential, which is keyed (cred_id);
 *   x-workspace-id: keyed as the workspace (the checked value hotgate forwards);
 *   x-request-id: hotgate's own per-request id, not an input to the answer;
 *   user-agent, traceparent, tracestate: identify the caller and the trace, not the question;
 *   accept: keyed in its normalised form above;
 *   accept-encoding: normalised: a cacheable fill asks the upstream for identity only and an
 *     encoded answer is never stored (cache.c);
 *   cache-control, pragma, if-none-match: the cache's own controls (RFC 9111; hotgate answers
 *     If-None-Match itself and does not forward it on a fill);
 *   x-hotgate-queue-timeout: hotgate's own queueing control.
 * Every other header is keyed, X-Database-Id and headers no version of the API knows included.
 * An upstream answer's Vary adds the named headers on top (cachekey_vary: a secondary key).
 *
 * Rules: no allocation visible to the caller; thread-safe: the only state is a per-thread memo
 * of recent key pre-images (compared byte for byte) that spares a repeated request the SHA-256.
 */
#ifndef HG_CACHEKEY_H
#define HG_CACHEKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/queue.h>

#include <event2/keyvalq_struct.h>

#define CACHEKEY_LEN 32

typedef struct cachekey {
    uint8_t k[CACHEKEY_LEN];
} cachekey;

typedef struct cachekey_in {
    const char *cred_id;             /* identity of the upstream credential (a hash), required */
    const char *workspace;           /* X-Workspace-Id, may be NULL (e.g. GET /v1/workspaces) */
    const char *method;              /* "GET", "POST", ... */
    const char *path;                /* normalised path without the query string */
    const char *query;               /* raw query string without '?', may be NULL */
    const char *accept;              /* Accept header, may be NULL */
    const struct evkeyvalq *headers; /* the request headers (filtered here), may be NULL */
    const uint8_t *body;             /* 32-byte body key part (bodykey.h), NULL: no body */
} cachekey_in;

/* 1 when a request header is on the list above (name compared case-insensitively). */
int cachekey_header_ignored(const char *name);

void cachekey_derive(const cachekey_in *in, cachekey *out);

/*
 * Vary: the canonical list of the header names of a Vary value (lower-cased, sorted, without
 * duplicates, comma separated) into out[cap]. Returns its length, 0 when none; *any is set
 * when the value names "*" (the answer varies on anything: never stored) and also when the
 * list does not fit (or a name is not a token): such an answer is treated like "*".
 */
size_t cachekey_vary_names(const char *vary, char *out, size_t cap, bool *any);

/* The value of a request header for Vary, as it went (or would go) upstream: NULL = absent. */
typedef const char *(*cachekey_vary_value_fn)(void *arg, const char *lname, char *buf, size_t cap);

/* Secondary key: the primary key plus, for each name of the canonical list, its value. */
void cachekey_vary(const cachekey *primary, const char *names, cachekey_vary_value_fn value,
                   void *arg, cachekey *out);

/* Lowercase hex of the key into out[65]. */
void cachekey_hex(const cachekey *k, char out[65]);
/* Parse 64 hex chars; 0 on success. */
int cachekey_parse_hex(const char *hex, cachekey *k);

/*
 * Canonical query string: parameters split on '&', empty ones dropped, sorted by name only
 * (bytewise; stable, so repeated names keep their order), joined with '&'. Writes at most cap-1
 * bytes + NUL into out and returns the full length (like snprintf). Percent-encoding is left as
 * sent.
 */
size_t cachekey_canon_query(const char *query, char *out, size_t cap);

/* Canonical Accept value into out (lowercase, spaces removed; "" for the JSON default). */
size_t cachekey_canon_accept(const char *accept, char *out, size_t cap);

#endif
