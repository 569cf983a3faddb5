/*
 * cachekey: see cachekey.h. SHA-256 via OpenSSL's incremental EVP API so arbitrarily large
 * inputs are hashed without concatenating them first.
 */
#include "cachekey.h"

#include "entry.h"
#include "hdr.h"
#include "util.h"

#include <assert.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/*
 * The key's bytes (its pre-image) are staged in a buffer. A pre-image that fits is first looked
 * up in a small per-thread memo of recent pre-images (compared byte for byte, so exact): a
 * repeated request costs a 64-bit hash and a memcmp instead of SHA-256. Larger pre-images go to
 * the digest in a few updates (the update calls cost more than hashing a short key).
 */
#define KH_BUF 1024
#define KMEMO_SLOTS 8

struct kh {
    EVP_MD_CTX *c; /* NULL until the buffer overflows (or a memo miss) */
    size_t n;
    unsigned char buf[KH_BUF];
};

typedef struct kmemo {
    uint64_t h;
    size_t n;
    int valid;
    uint8_t out[CACHEKEY_LEN];
    unsigned char pre[KH_BUF];
} kmemo;

static __thread kmemo tl_kmemo[KMEMO_SLOTS];

static EVP_MD_CTX *tl_ctx(void);

static void kh_start(struct kh *k)
{
    if (!k->c) {
        k->c = tl_ctx();
        EVP_DigestInit_ex(k->c, g_md, NULL);
    }
}

static void kh_update(struct kh *k, const void *p, size_t len)
{
    if (k->n + len > sizeof k->buf) {
        kh_start(k);
        EVP_DigestUpdate(k->c, k->buf, k->n);
        k->n = 0;
        if (len > sizeof k->buf) {
            EVP_DigestUpdate(k->c, p, len);
            return;
        }
    }
    memcpy(k->buf + k->n, p, len);
    k->n += len;
}

static void kh_final(struct kh *k, uint8_t out[CACHEKEY_LEN])
{
    kmemo *m = NULL;
    uint64_t h = 0;
    if (!k->c) {
        /* the whole pre-image is in the buffer */
        h = entry_hash64(k->buf, k->n, 0x6b6579);
        m = &tl_kmemo[h % KMEMO_SLOTS];
        if (m->valid && m->h == h && m->n == k->n && memcmp(m->pre, k->buf, k->n) == 0) {
            memcpy(out, m->out, CACHEKEY_LEN);
            return;
        }
    }
    kh_start(k);
    if (k->n)
        EVP_DigestUpdate(k->c, k->buf, k->n);
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(k->c, out, &mdlen);
    assert(mdlen == CACHEKEY_LEN);
    if (m) {
        m->valid = 1;
        m->h = h;
        m->n = k->n;
        memcpy(m->pre, k->buf, k->n);
        memcpy(m->out, out, CACHEKEY_LEN);
    }
}

static void put_field(struct kh *c, const void *p, size_t len)
{
    uint64_t l = len;
    unsigned char lb[8];
    for (int i = 0; i < 8; i++)
        lb[i] = (unsigned char)(l >> (8 * i));
    kh_update(c, lb, 8);
    if (len)
        kh_update(c, p, len);
}

static void put_str(struct kh *c, const char *s)
{
    if (!s) {
        /* absent differs from empty */
        kh_update(c, "\xff\xff\xff\xff\xff\xff\xff\xff", 8);
        return;
    }
    put_field(c, s, strlen(s));
}

typedef struct qparam {
    const char *p;
    size_t len;
    size_t idx; /* position in the query string: ties keep it (repeated names stay in order) */
} qparam;

static int qparam_cmp(const void *a, const void *b)
{
    const qparam *x = a, *y = b;
    /* the name part only (up to '='), then the original position */
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
    return x->idx < y->idx ? -1 : (x->idx > y->idx ? 1 : 0);
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
            v[cnt].idx = cnt;
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

/* ---- headers ---- */

int cachekey_header_ignored(const char *name)
{
    static const struct hdr_name ignored[] = {
        HDR_NAME("host"),          HDR_NAME("content-length"),  HDR_NAME("expect"),
        HDR_NAME("authorization"), HDR_NAME("x-workspace-id"),  HDR_NAME("x-request-id"),
        HDR_NAME("user-agent"),    HDR_NAME("traceparent"),     HDR_NAME("tracestate"),
        HDR_NAME("accept"),        HDR_NAME("accept-encoding"), HDR_NAME("cache-control"),
        HDR_NAME("pragma"),        HDR_NAME("if-none-match"),   HDR_NAME("x-hotgate-queue-timeout"),
    };
    size_t n = strlen(name);
    if (hdr_is_hop_by_hop(name))
        return 1;
    return hdr_name_in(name, n, ignored, sizeof ignored / sizeof *ignored);
}

/* lower-case ASCII compare of two header names */
static int lname_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int x = tolower((unsigned char)*a), y = tolower((unsigned char)*b);
        if (x != y || !x)
            return x - y;
    }
}

static void put_lname(struct kh *c, const char *name)
{
    char buf[128];
    size_t n = strlen(name);
    uint64_t l = n;
    unsigned char lb[8];
    for (int i = 0; i < 8; i++)
        lb[i] = (unsigned char)(l >> (8 * i));
    kh_update(c, lb, 8);
    for (size_t off = 0; off < n; off += sizeof buf) {
        size_t k = n - off < sizeof buf ? n - off : sizeof buf;
        for (size_t i = 0; i < k; i++)
            buf[i] = (char)tolower((unsigned char)name[off + i]);
        kh_update(c, buf, k);
    }
}

/* The keyed headers: count, then (name, value) pairs sorted by lower-cased name, stable. */
static void put_headers(struct kh *c, const struct evkeyvalq *h)
{
    const struct evkeyval *stackv[32], **v = stackv;
    size_t n = 0, cap = 32;
    const struct evkeyval *kv;
    if (h) {
        TAILQ_FOREACH(kv, h, next)
        {
            if (cachekey_header_ignored(kv->key))
                continue;
            if (n == cap) {
                cap *= 2;
                const struct evkeyval **nv = malloc(cap * sizeof *nv);
                if (!nv)
                    abort();
                memcpy(nv, v, n * sizeof *nv);
                if (v != stackv)
                    free(v);
                v = nv;
            }
            /* insertion sort, stable: equal names keep their order */
            size_t j = n++;
            while (j > 0 && lname_cmp(v[j - 1]->key, kv->key) > 0) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = kv;
        }
    }
    uint64_t cnt = n;
    put_field(c, &cnt, sizeof cnt);
    for (size_t i = 0; i < n; i++) {
        put_lname(c, v[i]->key);
        put_str(c, v[i]->value);
    }
    if (v != stackv)
        free(v);
}

/* ---- Vary ---- */

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

size_t cachekey_vary_names(const char *vary, char *out, size_t cap, bool *any)
{
    /* split, lower-case, validate; then sort and deduplicate */
    struct {
        char name[64];
    } v[32];
    size_t n = 0;
    *any = false;
    if (cap)
        out[0] = '\0';
    if (!vary)
        return 0;
    const char *p = vary;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *s = p;
        while (*p && *p != ',')
            p++;
        size_t l = (size_t)(p - s);
        while (l && (s[l - 1] == ' ' || s[l - 1] == '\t'))
            l--;
        if (l == 1 && s[0] == '*') {
            *any = true;
            return 0;
        }
        if (l == 0)
            continue;
        if (l >= sizeof v[0].name || n == sizeof v / sizeof v[0]) {
            *any = true; /* too many or too long to track: never stored */
            return 0;
        }
        for (size_t i = 0; i < l; i++) {
            if (!is_tchar((unsigned char)s[i])) {
                *any = true;
                return 0;
            }
            v[n].name[i] = (char)tolower((unsigned char)s[i]);
        }
        v[n].name[l] = '\0';
        size_t j = n++;
        while (j > 0 && strcmp(v[j - 1].name, v[j].name) > 0) {
            char t[64];
            memcpy(t, v[j - 1].name, sizeof t);
            memcpy(v[j - 1].name, v[j].name, sizeof t);
            memcpy(v[j].name, t, sizeof t);
            j--;
        }
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && strcmp(v[i].name, v[i - 1].name) == 0)
            continue;
        size_t l = strlen(v[i].name);
        if (total + l + 2 > cap) {
            *any = true;
            if (cap)
                out[0] = '\0';
            return 0;
        }
        if (total)
            out[total++] = ',';
        memcpy(out + total, v[i].name, l);
        total += l;
        out[total] = '\0';
    }
    return total;
}

void cachekey_vary(const cachekey *primary, const char *names, cachekey_vary_value_fn value,
                   void *arg, cachekey *out)
{
    struct kh kb, *c = &kb;
    kb.c = NULL;
    kb.n = 0;
    pthread_once(&g_once, fetch_md_once);
    put_str(c, "hotgate-vary-v1");
    put_field(c, primary->k, CACHEKEY_LEN);
    put_str(c, names);
    const char *p = names;
    while (p && *p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char name[64], buf[1024];
        if (l < sizeof name) {
            memcpy(name, p, l);
            name[l] = '\0';
            put_str(c, value(arg, name, buf, sizeof buf));
        }
        p = e ? e + 1 : NULL;
    }
    kh_final(c, out->k);
}

void cachekey_derive(const cachekey_in *in, cachekey *out)
{
    assert(in && in->cred_id && in->method && in->path);
    struct kh kb, *c = &kb;
    kb.c = NULL;
    kb.n = 0;
    pthread_once(&g_once, fetch_md_once);
    put_str(c, "hotgate-cachekey-v2");
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
    put_headers(c, in->headers);
    if (in->body)
        put_field(c, in->body, 32);
    else
        put_str(c, NULL);
    kh_final(c, out->k);
}

/* one digest context per thread (freed at thread exit), and the SHA-256 implementation fetched
 * once: the provider lookup of a fresh context costs more than hashing a short key */
static EVP_MD_CTX *tl_ctx(void)
{
    pthread_once(&g_once, fetch_md_once);
    EVP_MD_CTX *c = pthread_getspecific(g_ctx_key);
    if (!c) {
        if (!(c = EVP_MD_CTX_new()))
            abort();
        pthread_setspecific(g_ctx_key, c);
    }
    return c;
}

void cachekey_hex(const cachekey *k, char out[65])
{
    util_hex(k->k, CACHEKEY_LEN, out);
}

int cachekey_parse_hex(const char *hex, cachekey *k)
{
    return hex ? util_unhex(hex, k->k, CACHEKEY_LEN) : -1;
}
