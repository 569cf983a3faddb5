/*
 * util: small helpers shared by the daemon (hotgate) and the simulator (hotdata-sim).
 *
 * Rules: no state, no allocation except where a function says it returns a malloc'd
 * string (the caller frees it). Everything here is thread-safe.
 */
#ifndef HG_UTIL_H
#define HG_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Lowercase hex SHA-256 of buf[0..len): out must hold 65 bytes (64 hex + NUL). */
void util_sha256_hex(const void *buf, size_t len, char out[65]);

/* Raw SHA-256 of buf[0..len) into out[32]. */
void util_sha256(const void *buf, size_t len, unsigned char out[32]);

/* Constant-time comparison of two equal-length buffers: 1 when equal, 0 otherwise. */
int util_ct_equal(const void *a, const void *b, size_t len);

/* Overwrite a buffer so that a secret does not linger in memory (not optimised away). */
void util_wipe(void *buf, size_t len);

/*
 * The API-shaped error body used by everything hotgate and hotdata-sim answer themselves:
 *   {"error":{"code":CODE,"message":MSG},"message":MSG,"status":STATUS}
 * Returns a malloc'd NUL-terminated JSON string (never NULL: aborts on OOM).
 */
char *util_api_error_json(int status, const char *code, const char *message);

/* THE reason-phrase table (RFC 9110 section 15, RFC 6585 for 428, 429, 431), for hotgate's
 * status lines (http1.c, the admin listener) and hotdata-sim's: the phrase of a status, or ""
 * for a status with none of its own (an upstream's 499: "HTTP/1.1 499 " is valid, a made-up
 * phrase would not be). */
const char *util_reason_phrase(int status);

/* The error code for an HTTP status when nothing more specific applies (BAD_REQUEST, ...). */
const char *util_status_code_name(int status);

/* Monotonic clock in milliseconds / microseconds; wall clock in milliseconds. */
uint64_t util_mono_ms(void);
uint64_t util_mono_us(void);
uint64_t util_wall_ms(void);

/* RFC 3339 UTC timestamp "2026-01-01T00:00:00Z" for wall-clock seconds t into out[32]. */
void util_rfc3339(int64_t t, char out[32]);

/* Hex-encode len bytes into out (2*len+1 bytes). */
void util_hex(const unsigned char *in, size_t len, char *out);
/* The value of one hex digit (either case), or -1. */
int util_hexval(int c);
/* Decode exactly 2*n hex digits (the whole of s) into out[n]: 0, or -1. */
int util_unhex(const char *s, unsigned char *out, size_t n);

/* Fill buf with len cryptographically random bytes (falls back to aborting on failure). */
void util_random(void *buf, size_t len);

/* strdup that never returns NULL: aborts on OOM; NULL is copied as "". */
char *util_xstrdup(const char *s);

/*
 * util_buf: THE growable byte/string builder of hotgate and hotdata-sim (outbuf.h is the
 * other text tool: a fixed stack stage in front of an evbuffer, for hot paths). Zeroed to
 * start ({0}); p is NUL-terminated whenever it is non-NULL. Growing never leaves a copy
 * behind: the old storage is wiped before it is freed, so a buffer may hold a secret (an
 * upstream request head with its token). Aborts on OOM.
 */
struct util_buf {
    char *p;
    size_t len, cap;
};
/* Room for n more bytes (and the NUL) without growing again. */
void util_buf_grow(struct util_buf *b, size_t n);
static inline void util_buf_reserve(struct util_buf *b, size_t n)
{
    if (!b->p || b->len + n >= b->cap)
        util_buf_grow(b, n);
}
static inline void util_buf_put(struct util_buf *b, const void *d, size_t n)
{
    util_buf_reserve(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = '\0';
}
void util_buf_str(struct util_buf *b, const char *s);
void util_buf_printf(struct util_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The text (malloc'd, "" when nothing was added); the buffer is empty again. */
char *util_buf_take(struct util_buf *b);
/* Wipe the content, keep the storage (len = 0). */
void util_buf_clear(struct util_buf *b);
/* Wipe and free. */
void util_buf_free(struct util_buf *b);

#endif
