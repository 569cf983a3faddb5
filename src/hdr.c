/*
 * hdr: see hdr.h.
 */
#include "hdr.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>

#include "util.h"

/* names compared only when the lengths match: these run for every header of every request
 * and response (a third of hotgate's strcasecmp calls were hopeless ones) */
int hdr_name_in(const char *name, size_t n, const struct hdr_name *set, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (set[i].len == n && strcasecmp(name, set[i].name) == 0)
            return 1;
    return 0;
}

void hdr_remove_if(struct evkeyvalq *h, int (*drop)(const char *name))
{
    struct evkeyval *kv, *next;
    for (kv = TAILQ_FIRST(h); kv; kv = next) {
        next = TAILQ_NEXT(kv, next);
        if (drop(kv->key)) {
            TAILQ_REMOVE(h, kv, next);
            free(kv->key);
            free(kv->value);
            free(kv);
        }
    }
}

/* Connection, Keep-Alive, TE, Trailer, Trailers, Transfer-Encoding, Upgrade, Proxy-*:
 * dispatched on the length, so most names meet one strcasecmp or none */
int hdr_is_hop_by_hop(const char *name)
{
    size_t n = strlen(name);
    switch (n) {
    case 2:
        return strcasecmp(name, "TE") == 0;
    case 7:
        if (strcasecmp(name, "Trailer") == 0 || strcasecmp(name, "Upgrade") == 0)
            return 1;
        break;
    case 8:
        if (strcasecmp(name, "Trailers") == 0)
            return 1;
        break;
    case 10:
        if (strcasecmp(name, "Connection") == 0 || strcasecmp(name, "Keep-Alive") == 0)
            return 1;
        break;
    case 17:
        if (strcasecmp(name, "Transfer-Encoding") == 0)
            return 1;
        break;
    default:
        break;
    }
    return n >= 6 && (name[0] == 'P' || name[0] == 'p') && strncasecmp(name, "Proxy-", 6) == 0;
}

void hdr_strip_hop_by_hop(struct evkeyvalq *h)
{
    /* names listed in Connection (possibly several Connection headers) */
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, h, next)
    {
        if (strlen(kv->key) != 10 || strcasecmp(kv->key, "Connection") != 0)
            continue;
        char *copy = strdup(kv->value), *save = NULL;
        if (!copy)
            abort();
        for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
            /* never let Connection remove end-to-end headers hotgate relies on; hop-by-hop
             * names go below anyway, and removing them here could free `kv` itself
             * ("Connection: connection") while the loop still walks from it */
            if (strcasecmp(t, "X-Request-Id") == 0 || strcasecmp(t, "Authorization") == 0 ||
                hdr_is_hop_by_hop(t))
                continue;
            while (evhttp_remove_header(h, t) == 0)
                ;
        }
        free(copy);
    }
    hdr_remove_if(h, hdr_is_hop_by_hop);
}

int hdr_forward_to_upstream(const char *name)
{
    static const struct hdr_name own[] = {HDR_NAME("Host"),         HDR_NAME("Content-Length"),
                                          HDR_NAME("Expect"),       HDR_NAME("Authorization"),
                                          HDR_NAME("X-Request-Id"), HDR_NAME("X-Workspace-Id")};
    if (hdr_is_hop_by_hop(name))
        return 0;
    return !hdr_name_in(name, strlen(name), own, sizeof own / sizeof *own);
}

int hdr_forward_to_client(const char *name)
{
    if (hdr_is_hop_by_hop(name))
        return 0;
    return !(strlen(name) == 14 && strcasecmp(name, "Content-Length") == 0);
}

void hdr_request_id(const char *v, char out[65])
{
    if (v) {
        size_t n = strlen(v);
        int ok = n >= 1 && n <= 64;
        for (size_t i = 0; ok && i < n; i++) {
            unsigned char c = (unsigned char)v[i];
            ok = isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':';
        }
        if (ok) {
            memcpy(out, v, n + 1);
            return;
        }
    }
    /* unique, not secret: a per-thread random seed and a counter through splitmix64,
     * instead of the CSPRNG on every request */
    static __thread uint64_t seed[2], ctr;
    if (!seed[0] && !seed[1])
        util_random(seed, sizeof seed);
    uint64_t rnd[2];
    for (int i = 0; i < 2; i++) {
        uint64_t z = seed[i] + (++ctr) * 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        rnd[i] = z ^ (z >> 31);
    }
    util_hex((const unsigned char *)rnd, sizeof rnd, out);
}

/* bytes that end a header value scan: NUL (the end) and the control characters a value
 * must not hold (all below 0x20 but HTAB, and DEL) */
static const unsigned char value_stop[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

int hdr_value_ok(const char *v)
{
    /* a table lookup per byte, four bytes a turn: every header of every request and
     * response goes through here */
    const unsigned char *p = (const unsigned char *)v;
    for (;; p += 4) {
        if (value_stop[p[0]])
            return p[0] == 0;
        if (value_stop[p[1]])
            return p[1] == 0;
        if (value_stop[p[2]])
            return p[2] == 0;
        if (value_stop[p[3]])
            return p[3] == 0;
    }
}

void hdr_add(struct evkeyvalq *h, const char *name, size_t name_len, const char *value,
             size_t value_len)
{
    struct evkeyval *kv = malloc(sizeof *kv);
    char *k = malloc(name_len + 1), *v = malloc(value_len + 1);
    if (!kv || !k || !v)
        abort();
    memcpy(k, name, name_len);
    k[name_len] = '\0';
    memcpy(v, value, value_len);
    v[value_len] = '\0';
    kv->key = k;
    kv->value = v;
    TAILQ_INSERT_TAIL(h, kv, next);
}

static unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

const char *hdr_find(const struct evkeyvalq *h, const char *name)
{
    unsigned char c0 = ascii_lower((unsigned char)name[0]);
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, h, next)
    {
        if (ascii_lower((unsigned char)kv->key[0]) == c0 && strcasecmp(kv->key, name) == 0)
            return kv->value;
    }
    return NULL;
}

/* RFC 9110 tchar: ALPHA DIGIT ! # $ % & ' * + - . ^ _ ` | ~ */
static const unsigned char tchar_tab[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

int hdr_name_ok(const char *name, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!tchar_tab[(unsigned char)name[i]])
            return 0;
    }
    return 1;
}
