/*
 * cachekey: see cachekey.h. SHA-256 via OpenSSL's incremental EVP API so arbitrarily large
 * inputs are hashed without concatenating them first.
 */
#include "cachekey.h"

#include "util.h"

#include <assert.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static EVP_MD *g_md;
static pthread_key_t g_ctx_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void ctx_free(void *p)
{
    EVP_MD_CTX_free(p);
}

static void fetch_md_once(void)
{
    g_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!g_md || pthread_key_create(&g_ctx_key, ctx_free) != 0)
        abort();
}

static void put_field(EVP_MD_CTX *c, const void *p, size_t len)
{
    uint64_t l = len;
    unsigned char lb[8];
    for (int i = 0; i < 8; i++)
        lb[i] = (unsigned char)(l >> (8 * i));
    EVP_DigestUpdate(c, lb, 8);
    if (len)
        EVP_DigestUpdate(c, p, len);
}

static void put_str(EVP_MD_CTX *c, const char *s)
{
    if (!s) {
        /* absent differs from empty */
        EVP_DigestUpdate(c, "\xff\xff\xff\xff\xff\xff\xff\xff", 8);
        return;
    }
    put_field(c, s, strlen(s));
}

typedef struct qparam {
    const char *p;
    size_t len;
} qparam;

static int qparam_cmp(const void *a, const void *b)
{
    const qparam *x = a, *y = b;
    /* compare the name part first (up to '='), then the whole parameter */
    size_t xn = 0, yn = 0;
    while (xn < x->len && x->p[xn] != '=')
        xn++;
    while (yn < y->len && y->p[yn] != '=')
        yn++;
    size_t m = xn < yn ? xn : yn;
    int c = memcmp(x->p, y->p, m);
    if (c)
        return c;
    if (xn != yn)
        return xn < yn ? -1 : 1;
    m = x->len < y->len ? x->len : y->len;
    c = memcmp(x->p, y->p, m);
    if (c)
        return c;
    return x->len < y->len ? -1 : (x->len > y->len ? 1 : 0);
}

size_t cachekey_canon_query(const char *query, char *out, size_t cap)
{
    if (cap)
        out[0] = '\0';
    if (!query || !*query)
        return 0;
    size_t n = 1;
    for (const char *s = query; *s; s++)
        if (*s == '&')
            n++;
    qparam stackv[32];
    qparam *v = n <= 32 ? stackv : malloc(n * sizeof *v);
    if (!v)
        abort();
    size_t cnt = 0;
    const char *s = query;
    for (;;) {
        const char *e = strchr(s, '&');
        size_t l = e ? (size_t)(e - s) : strlen(s);
        if (l) {
            v[cnt].p = s;
            v[cnt].len = l;
            cnt++;
        }
        if (!e)
            break;
        s = e + 1;
    }
    qsort(v, cnt, sizeof *v, qparam_cmp);
    size_t total = 0;
    for (size_t i = 0; i < cnt; i++) {
        if (i) {
            if (total + 1 < cap)
                out[total] = '&';
            total++;
        }
        for (size_t j = 0; j < v[i].len; j++) {
            if (total + 1 < cap)
                out[total] = v[i].p[j];
            total++;
        }
    }
    if (cap)
        out[total < cap ? total : cap - 1] = '\0';
    if (v != stackv)
        free(v);
    return total;
}

size_t cachekey_canon_accept(const char *accept, char *out, size_t cap)
{
    size_t n = 0;
    if (cap)
        out[0] = '\0';
    if (!accept)
        return 0;
    for (const char *s = accept; *s; s++) {
        if (*s == ' ' || *s == '\t')
            continue;
        if (n + 1 < cap)
            out[n] = (char)tolower((unsigned char)*s);
        n++;
    }
    if (cap)
        out[n < cap ? n : cap - 1] = '\0';
    if (n < cap && (strcmp(out, "*/*") == 0 || strcmp(out, "application/json") == 0)) {
        out[0] = '\0';
        return 0;
    }
    return n;
}

void cachekey_sql_hash(const char *sql, size_t len, uint8_t out[32])
{
    util_sha256(sql, len, out);
}

void cachekey_derive(const cachekey_in *in, cachekey *out)
{
    assert(in && in->cred_id && in->method && in->path);
    /* one digest context per thread (freed at thread exit), and the SHA-256
     * implementation fetched once: the provider lookup of a fresh context costs more than
     * hashing a short key */
    pthread_once(&g_once, fetch_md_once);
    EVP_MD_CTX *c = pthread_getspecific(g_ctx_key);
    if (!c) {
        if (!(c = EVP_MD_CTX_new()))
            abort();
        pthread_setspecific(g_ctx_key, c);
    }
    const EVP_MD *md = g_md;
    EVP_DigestInit_ex(c, md, NULL);
    put_str(c, "hotgate-cachekey-v1");
    put_str(c, in->cred_id);
    put_str(c, in->workspace);
    put_str(c, in->method);
    put_str(c, in->path);
    char qbuf[1024];
    size_t ql = cachekey_canon_query(in->query, qbuf, sizeof qbuf);
    if (ql < sizeof qbuf) {
        put_field(c, qbuf, ql);
    } else {
        char *big = malloc(ql + 1);
        if (!big)
            abort();
        cachekey_canon_query(in->query, big, ql + 1);
        put_field(c, big, ql);
        free(big);
    }
    char abuf[256];
    size_t al = cachekey_canon_accept(in->accept, abuf, sizeof abuf);
    if (al < sizeof abuf) {
        put_field(c, abuf, al);
    } else {
        char *big = malloc(al + 1);
        if (!big)
            abort();
        cachekey_canon_accept(in->accept, big, al + 1);
        put_field(c, big, al);
        free(big);
    }
    if (in->sql_hash)
        put_field(c, in->sql_hash, 32);
    else
        put_str(c, NULL);
    if (in->body_extra)
        put_field(c, in->body_extra, in->body_extra_len);
    else
        put_str(c, NULL);
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(c, out->k, &mdlen);
    assert(mdlen == CACHEKEY_LEN);
}

void cachekey_hex(const cachekey *k, char out[65])
{
    util_hex(k->k, CACHEKEY_LEN, out);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cachekey_parse_hex(const char *hex, cachekey *k)
{
    if (!hex || strlen(hex) != 2 * CACHEKEY_LEN)
        return -1;
    for (int i = 0; i < CACHEKEY_LEN; i++) {
        int a = hexval(hex[2 * i]), b = hexval(hex[2 * i + 1]);
        if (a < 0 || b < 0)
            return -1;
        k->k[i] = (uint8_t)(a << 4 | b);
    }
    return 0;
}
