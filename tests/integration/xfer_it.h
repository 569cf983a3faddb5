/*
 * xfer_it.h: one transfer of a test that runs many requests at once on a curl multi handle
 * (test_cache_coalesce, test_fleet_herd): the body and the X-Cache header collected by the
 * two curl callbacks, x_write and x_header. Header-only, for integration tests.
 */
#pragma once

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "cache_it.h"

typedef struct xfer {
    CURL *h;
    struct curl_slist *hl;
    char *body;
    size_t len, cap;
    char xcache[32];
    long status;
    double pretransfer, starttransfer, total;
} xfer;

CIT_FN size_t x_write(char *p, size_t s, size_t n, void *ud)
{
    xfer *x = ud;
    size_t k = s * n;
    if (x->len + k + 1 > x->cap) {
        x->cap = (x->len + k + 1) * 2;
        x->body = realloc(x->body, x->cap);
    }
    memcpy(x->body + x->len, p, k);
    x->len += k;
    x->body[x->len] = '\0';
    return k;
}

CIT_FN size_t x_header(char *p, size_t s, size_t n, void *ud)
{
    xfer *x = ud;
    size_t k = s * n;
    if (k > 9 && strncasecmp(p, "X-Cache:", 8) == 0) {
        const char *v = p + 8;
        while (*v == ' ')
            v++;
        size_t l = 0;
        while (v[l] && v[l] != '\r' && v[l] != '\n' && l < sizeof x->xcache - 1)
            l++;
        memcpy(x->xcache, v, l);
        x->xcache[l] = '\0';
    }
    return k;
}
