/*
 * util: see util.h. Hashing and constant-time compare come from OpenSSL libcrypto; JSON
 * from jansson, so error bodies are always valid JSON whatever the message holds.
 */
#include "util.h"

#include <stdarg.h>
#include <stdio.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* SHA256() fetches the algorithm on every call (a third of its cost for a short key):
 * fetch it once. */
static EVP_MD *g_sha256;
static pthread_once_t g_sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void util_sha256(const void *buf, size_t len, unsigned char out[32])
{
    pthread_once(&g_sha256_once, sha256_fetch);
    if (!g_sha256 || !EVP_Digest(buf, len, out, NULL, g_sha256, NULL))
        SHA256((const unsigned char *)buf, len, out);
}

void util_hex(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

int util_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int util_unhex(const char *s, unsigned char *out, size_t n)
{
    if (strlen(s) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = util_hexval((unsigned char)s[2 * i]),
            lo = util_hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

void util_sha256_hex(const void *buf, size_t len, char out[65])
{
    unsigned char md[32];
    util_sha256(buf, len, md);
    util_hex(md, 32, out);
}

int util_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

void util_wipe(void *buf, size_t len)
{
    if (buf && len)
        explicit_bzero(buf, len); /* a memset the compiler may not drop (OPENSSL_cleanse's
                                   * guarantee, without its byte loop) */
}

/* The reason phrases of RFC 9110 section 15 (and RFC 6585 for 428, 429, 431): a data
 * table, indexed by status - 100 for 1xx..5xx. */
static const char *const phrases[5][32] = {
    {[0] = "Continue", [1] = "Switching Protocols"},
    {[0] = "OK",
     [1] = "Created",
     [2] = "Accepted",
     [3] = "Non-Authoritative Information",
     [4] = "No Content",
     [5] = "Reset Content",
     [6] = "Partial Content"},
    {[0] = "Multiple Choices",
     [1] = "Moved Permanently",
     [2] = "Found",
     [3] = "See Other",
     [4] = "Not Modified",
     [5] = "Use Proxy",
     [7] = "Temporary Redirect",
     [8] = "Permanent Redirect"},
    {[0] = "Bad Request",
     [1] = "Unauthorized",
     [2] = "Payment Required",
     [3] = "Forbidden",
     [4] = "Not Found",
     [5] = "Method Not Allowed",
     [6] = "Not Acceptable",
     [7] = "Proxy Authentication Required",
     [8] = "Request Timeout",
     [9] = "Conflict",
     [10] = "Gone",
     [11] = "Length Required",
     [12] = "Precondition Failed",
     [13] = "Content Too Large",
     [14] = "URI Too Long",
     [15] = "Unsupported Media Type",
     [16] = "Range Not Satisfiable",
     [17] = "Expectation Failed",
     [21] = "Misdirected Request",
     [22] = "Unprocessable Content",
     [26] = "Upgrade Required",
     [28] = "Precondition Required",
     [29] = "Too Many Requests",
     [31] = "Request Header Fields Too Large"},
    {[0] = "Internal Server Error",
     [1] = "Not Implemented",
     [2] = "Bad Gateway",
     [3] = "Service Unavailable",
     [4] = "Gateway Timeout",
     [5] = "HTTP Version Not Supported"},
};

const char *util_reason_phrase(int s)
{
    if (s < 100 || s > 599 || s % 100 >= 32)
        return "";
    const char *p = phrases[s / 100 - 1][s % 100];
    return p ? p : "";
}

const char *util_status_code_name(int status)
{
    switch (status) {
    case 400:
        return "BAD_REQUEST";
    case 401:
        return "UNAUTHORIZED";
    case 403:
        return "FORBIDDEN";
    case 404:
        return "NOT_FOUND";
    case 405:
        return "METHOD_NOT_ALLOWED";
    case 408:
        return "REQUEST_TIMEOUT";
    case 409:
        return "CONFLICT";
    case 411:
        return "LENGTH_REQUIRED";
    case 413:
        return "PAYLOAD_TOO_LARGE";
    case 414:
        return "URI_TOO_LONG";
    case 415:
        return "UNSUPPORTED_MEDIA_TYPE";
    case 417:
        return "EXPECTATION_FAILED";
    case 422:
        return "UNPROCESSABLE_ENTITY";
    case 429:
        return "OVERLOADED";
    case 431:
        return "REQUEST_HEADER_FIELDS_TOO_LARGE";
    case 500:
        return "INTERNAL_SERVER_ERROR";
    case 501:
        return "NOT_IMPLEMENTED";
    case 502:
        return "BAD_GATEWAY";
    case 503:
        return "SERVICE_UNAVAILABLE";
    case 504:
        return "GATEWAY_TIMEOUT";
    case 505:
        return "HTTP_VERSION_NOT_SUPPORTED";
    default:
        return status >= 500 ? "INTERNAL_SERVER_ERROR" : "BAD_REQUEST";
    }
}

char *util_api_error_json(int status, const char *code, const char *message)
{
    if (!code)
        code = util_status_code_name(status);
    if (!message)
        message = code;
    json_t *o = json_pack("{s:{s:s,s:s},s:s,s:i}", "error", "code", code, "message", message,
                          "message", message, "status", status);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) {
        /* message was not valid UTF-8: say so rather than echo it */
        o = json_pack("{s:{s:s,s:s},s:s,s:i}", "error", "code", code, "message", "invalid message",
                      "message", "invalid message", "status", status);
        s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
    }
    if (!s)
        abort();
    return s;
}

uint64_t util_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t util_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t util_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void util_rfc3339(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void util_random(void *buf, size_t len)
{
    if (RAND_bytes((unsigned char *)buf, (int)len) != 1)
        abort();
}

char *util_xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort();
    return d;
}

void util_buf_grow(struct util_buf *b, size_t n)
{
    size_t cap = b->cap ? b->cap : 256;
    while (cap <= b->len + n)
        cap *= 2;
    char *m = malloc(cap);
    if (!m)
        abort();
    if (b->p) {
        memcpy(m, b->p, b->len);
        util_wipe(b->p, b->cap);
        free(b->p);
    }
    b->p = m;
    b->cap = cap;
    b->p[b->len] = '\0';
}

void util_buf_str(struct util_buf *b, const char *s)
{
    util_buf_put(b, s, strlen(s));
}

void util_buf_printf(struct util_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    util_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *util_buf_take(struct util_buf *b)
{
    util_buf_reserve(b, 0);
    char *p = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void util_buf_clear(struct util_buf *b)
{
    if (b->p)
        util_wipe(b->p, b->len);
    b->len = 0;
}

void util_buf_free(struct util_buf *b)
{
    if (b->p) {
        util_wipe(b->p, b->cap);
        free(b->p);
    }
    b->p = NULL;
    b->len = b->cap = 0;
}
