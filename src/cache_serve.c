/*
 * cache_serve: the request side of HTTP caching: Cache-Control and Accept-Encoding of the
 * client, answering from an entry (headers, ETag, Age, X-Cache, If-None-Match -> 304, zero
 * copy from the store's map for large bodies), and the Vary secondary key of a request.
 */
#include "cache_int.h"

#include "cachekey.h"
#include "entry.h"
#include "hdr.h"
#include "store.h"
#include "util.h"

#include <stdio.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The next element of a comma-separated header value (RFC 9110 5.6.1) from *p: its start, and
 * its length without trailing white space in *n; NULL at the end. */
static const char *list_next(const char **p, size_t *n)
{
    const char *q = *p;
    while (*q == ' ' || *q == '\t' || *q == ',')
        q++;
    if (!*q)
        return NULL;
    const char *s = q;
    while (*q && *q != ',')
        q++;
    *p = q;
    *n = (size_t)(q - s);
    while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t'))
        (*n)--;
    return s;
}

void cache_parse_cc(const struct hg_req *req, cc *c)
{
    memset(c, 0, sizeof *c);
    c->max_age = -1;
    const char *v = evhttp_find_header(&req->headers, "Cache-Control");
    const char *pragma = evhttp_find_header(&req->headers, "Pragma");
    if (pragma && strcasestr(pragma, "no-cache"))
        c->no_cache = 1;
    if (!v)
        return;
    const char *p = v;
    const char *s;
    size_t n;
    while ((s = list_next(&p, &n))) {
        if (n == 8 && strncasecmp(s, "no-store", 8) == 0)
            c->no_store = 1;
        else if (n == 8 && strncasecmp(s, "no-cache", 8) == 0)
            c->no_cache = 1;
        else if (n == 14 && strncasecmp(s, "only-if-cached", 14) == 0)
            c->only_if_cached = 1;
        else if (n > 8 && strncasecmp(s, "max-age=", 8) == 0) {
            char num[24];
            size_t l = n - 8 < sizeof num - 1 ? n - 8 : sizeof num - 1;
            memcpy(num, s + 8, l);
            num[l] = '\0';
            if (num[0] == '"')
                memmove(num, num + 1, strlen(num));
            char *end;
            long a = strtol(num, &end, 10);
            if (end != num && a >= 0)
                c->max_age = a;
        }
    }
}

/*
 * Accept-Encoding that refuses identity ("identity;q=0", or "*;q=0" without identity listed):
 * a stored answer is identity, so such a request is not answered from the cache.
 */
int cache_ae_refuses_identity(const char *ae)
{
    if (!ae || !strstr(ae, "q=0"))
        return 0;
    int identity = -1, star = -1; /* -1 absent, 0 refused, 1 accepted */
    const char *p = ae;
    const char *s;
    size_t n;
    while ((s = list_next(&p, &n))) {
        size_t tl = 0;
        while (tl < n && s[tl] != ';' && s[tl] != ' ' && s[tl] != '\t')
            tl++;
        int acc = 1;
        const char *q = memchr(s, ';', n);
        if (q) {
            const char *qv = strstr(q, "q=");
            if (qv && qv < s + n) {
                double v = strtod(qv + 2, NULL);
                acc = v > 0.0;
            }
        }
        if (tl == 8 && strncasecmp(s, "identity", 8) == 0)
            identity = acc;
        else if (tl == 1 && s[0] == '*')
            star = acc;
    }
    return identity == 0 || (identity == -1 && star == 0);
}

static void entry_etag(const entry_view *v, char *out, size_t cap)
{
    if (v->etag_len && v->etag_len < cap) {
        memcpy(out, v->etag, v->etag_len);
        out[v->etag_len] = '\0';
        return;
    }
    snprintf(out, cap, "\"hg-%016llx\"", (unsigned long long)v->checksum);
}

/* If-None-Match (RFC 9110 13.1.2, weak comparison) against etag. */
static int etag_matches(const char *inm, const char *etag)
{
    if (!inm)
        return 0;
    const char *e = etag;
    if (strncmp(e, "W/", 2) == 0)
        e += 2;
    size_t el = strlen(e);
    const char *p = inm;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        const char *s = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if ((size_t)(p - s) == el && memcmp(s, e, el) == 0)
            return 1;
    }
    return 0;
}

static void add_header_n(struct evkeyvalq *h, const char *name, size_t nl, const char *value,
                         size_t vl)
{
    char nb[128], vb[1024];
    char *vp = vl < sizeof vb ? vb : malloc(vl + 1);
    if (!vp)
        abort();
    if (nl >= sizeof nb) {
        if (vp != vb)
            free(vp);
        return;
    }
    memcpy(nb, name, nl);
    nb[nl] = '\0';
    memcpy(vp, value, vl);
    vp[vl] = '\0';
    evhttp_add_header(h, nb, vp);
    if (vp != vb)
        free(vp);
}

/* Bodies at least this large are handed to the socket straight out of the LMDB map. */
#define ZERO_COPY_MIN (16u << 10)

static void zc_unpin(const void *data, size_t len, void *handle)
{
    (void)data;
    (void)len;
    if (cache_g.st && cache_g.st->api->unpin)
        cache_g.st->api->unpin(cache_g.st, handle);
}

/* Answer from an entry. from_store: v points into the store's read view (still open), so a
 * large body may be referenced instead of copied. */
void cache_serve_entry_ex(struct hg_req *req, const entry_view *v, const char *xcache,
                          uint64_t now_ms, const cachekey *key, int from_store)
{
    HG_CHECK(!req->responded); /* one answer per request */
    struct evkeyvalq h;
    TAILQ_INIT(&h);
    size_t pos = 0;
    entry_header eh;
    while (entry_header_next(v, &pos, &eh))
        add_header_n(&h, eh.name, eh.name_len, eh.value, eh.value_len);
    char etag[160], age[24];
    entry_etag(v, etag, sizeof etag);
    evhttp_add_header(&h, "ETag", etag);
    snprintf(age, sizeof age, "%llu", (unsigned long long)(entry_age_ms(v, now_ms) / 1000));
    evhttp_add_header(&h, "Age", age);
    evhttp_add_header(&h, "X-Cache", xcache);
    if (key) {
        char hex[65];
        cachekey_hex(key, hex);
        evhttp_add_header(&h, "X-Cache-Key", hex);
    }
    const char *inm = evhttp_find_header(&req->headers, "If-None-Match");
    if (v->status == 200 && etag_matches(inm, etag)) {
        INC(cache_ctr.not_modified);
        pipeline_respond_buffer(req, 304, &h, NULL);
    } else {
        struct evbuffer *b = evbuffer_new();
        if (!b)
            abort();
        void *pin = NULL;
        if (from_store && v->body_len >= ZERO_COPY_MIN && cache_g.st && cache_g.st->api->pin &&
            (pin = cache_g.st->api->pin(cache_g.st)) != NULL) {
            /* zero copy: the socket writes straight from the map; the read view stays
             * open until the bytes are gone (zc_unpin) */
            if (evbuffer_add_reference(b, v->body, v->body_len, zc_unpin, pin) != 0) {
                cache_g.st->api->unpin(cache_g.st, pin);
                evbuffer_add(b, v->body, v->body_len);
            } else {
                INC(cache_ctr.zero_copy);
            }
        } else if (v->body_len) {
            evbuffer_add(b, v->body, v->body_len); /* the one copy, out of the mmap */
        }
        pipeline_respond_buffer(req, v->status, &h, b);
        evbuffer_free(b);
    }
    evhttp_clear_headers(&h);
}

void cache_serve_entry(struct hg_req *req, const entry_view *v, const char *xcache, uint64_t now_ms,
                       const cachekey *key)
{
    cache_serve_entry_ex(req, v, xcache, now_ms, key, 0);
}

vary_src cache_vary_src_of_req(const struct hg_req *req)
{
    vary_src s = {&req->headers, req->workspace, cache_cred_identity(req->cred), req->request_id};
    return s;
}

const char *cache_vary_value(void *arg, const char *lname, char *buf, size_t cap)
{
    const vary_src *s = arg;
    if (strcmp(lname, "authorization") == 0)
        return s->cred;
    if (strcmp(lname, "x-workspace-id") == 0)
        return s->ws;
    if (strcmp(lname, "x-request-id") == 0)
        return s->rid;
    if (strcmp(lname, "accept-encoding") == 0)
        return "identity";
    if (strcmp(lname, "if-none-match") == 0 || strcmp(lname, "host") == 0 ||
        strcmp(lname, "expect") == 0 || hdr_is_hop_by_hop(lname))
        return NULL;
    size_t n = 0, total = 0;
    int found = 0;
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, s->h, next)
    {
        if (strcasecmp(kv->key, lname) != 0)
            continue;
        size_t l = strlen(kv->value);
        total += l + (found ? 2 : 0);
        if (n + l + 3 < cap) {
            if (found) {
                buf[n++] = ',';
                buf[n++] = ' ';
            }
            memcpy(buf + n, kv->value, l);
            n += l;
        }
        found = 1;
    }
    if (!found)
        return NULL;
    buf[n] = '\0';
    if (total != n) {
        /* too long to hold: its hash (joined again, in full) stands for it */
        char *all = malloc(total + 1);
        if (!all)
            abort();
        size_t k = 0;
        int first = 1;
        TAILQ_FOREACH(kv, s->h, next)
        {
            if (strcasecmp(kv->key, lname) != 0)
                continue;
            if (!first) {
                all[k++] = ',';
                all[k++] = ' ';
            }
            size_t l = strlen(kv->value);
            memcpy(all + k, kv->value, l);
            k += l;
            first = 0;
        }
        char hex[65];
        util_sha256_hex(all, k, hex);
        free(all);
        snprintf(buf, cap, "\x01sha256:%s", hex);
    }
    return buf;
}

/* The canonical Vary names of an encoded answer into names[cap]; 0 when it has no Vary. */
int cache_entry_vary(const void *blob, size_t len, char *names, size_t cap)
{
    entry_view v;
    names[0] = '\0';
    if (entry_decode_nocheck(blob, len, &v) != ENTRY_OK)
        return 0;
    char raw[1024];
    size_t n = 0, pos = 0;
    entry_header eh;
    while (entry_header_next(&v, &pos, &eh)) {
        if (eh.name_len != 4 || strncasecmp(eh.name, "Vary", 4) != 0)
            continue;
        if (n + eh.value_len + 2 > sizeof raw)
            return 1; /* (cannot happen: fill_head refused longer ones) no names: no match */
        if (n)
            raw[n++] = ',';
        memcpy(raw + n, eh.value, eh.value_len);
        n += eh.value_len;
    }
    raw[n] = '\0';
    bool any = false;
    return cachekey_vary_names(raw, names, cap, &any) > 0 || any;
}

/* May req take a coalesced result? Unless the answer varies on a header whose value req does
 * not share with the leader's request. *vk: req's secondary key when the answer has one. */
int cache_result_fits(const coalesce_result *r, const struct hg_req *req, const cachekey *key,
                      cachekey *vk)
{
    if (!r->has_vkey)
        return 1;
    char names[512];
    if (!cache_entry_vary(r->blob, r->len, names, sizeof names) || !names[0])
        return 0;
    vary_src src = cache_vary_src_of_req(req);
    cachekey_vary(key, names, cache_vary_value, &src, vk);
    return memcmp(vk->k, r->vkey.k, CACHEKEY_LEN) == 0;
}

void cache_only_if_cached_miss(struct hg_req *req)
{
    INC(cache_ctr.only_if_cached);
    req->cache_outcome = "miss";
    pipeline_respond_error(req, 504, "GATEWAY_TIMEOUT",
                           "not in cache (Cache-Control: only-if-cached)", NULL);
}
