/*
 * cache_body: the request body as the cache reads it: its key part (bodykey.h) through a
 * per-thread memo of recent bodies, the SQL of a POST /v1/query when a decision needs it, and
 * the sql_hash of the access log.
 *
 * The memo: the exact body bytes -> their key part and, for POST /v1/query, what the cache
 * acts on (sql_hash, async flags, certainty). Clients repeat identical bodies (dashboards,
 * retries), and a hit then needs neither a JSON parse nor the SQL canonicalisation. Compared
 * byte for byte. Per thread: no lock.
 */
#include "cache_int.h"

#include "bodykey.h"
#include "sqlkey.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <string.h>

#define BMEMO_SLOTS 16
#define BMEMO_MAX_BODY 2048

typedef struct bmemo {
    uint64_t h;
    size_t len;
    bool valid, query;
    struct bodykey bk;
    unsigned char body[BMEMO_MAX_BODY];
} bmemo;

static __thread bmemo tl_bmemo[BMEMO_SLOTS];

void cache_body_key(const void *body, size_t len, bool query, struct bodykey *bk)
{
    if (len > BMEMO_MAX_BODY) {
        bodykey_derive(body, len, query, bk, NULL, NULL);
        return;
    }
    uint64_t h = entry_hash64(body, len, query ? 0x51 : 0x52);
    bmemo *m = &tl_bmemo[h % BMEMO_SLOTS];
    if (m->valid && m->h == h && m->len == len && m->query == query &&
        memcmp(m->body, body, len) == 0) {
        *bk = m->bk;
        return;
    }
    bodykey_derive(body, len, query, bk, NULL, NULL);
    m->valid = true;
    m->h = h;
    m->len = len;
    m->query = query;
    m->bk = *bk;
    memcpy(m->body, body, len);
}

/* The decoded SQL of a query body, off the hit path: 0, or -1 when it has none. */
int cache_query_sql(struct hg_req *req, struct sqlkey_query_req *q)
{
    if (q->sql)
        return 0;
    if (req->body_kind != HG_BODY_MEMORY || !req->body)
        return -1;
    size_t n = evbuffer_get_length(req->body);
    const char *b = (const char *)evbuffer_pullup(req->body, (ev_ssize_t)n);
    struct bodykey bk;
    bodykey_derive(b, n, true, &bk, &q->sql, &q->sql_len);
    return q->sql ? 0 : -1;
}

/* sql_hash for the access log: the SHA-256 of the exact SQL of a POST /v1/query (memoised). */
void cache_ensure_sql_hash(struct hg_req *req)
{
    if (req->sql_hash[0] || req->method != EVHTTP_REQ_POST || req->body_kind != HG_BODY_MEMORY ||
        !req->body || strcmp(req->path, "/v1/query") != 0)
        return;
    size_t n = evbuffer_get_length(req->body);
    struct bodykey bk;
    cache_body_key(evbuffer_pullup(req->body, (ev_ssize_t)n), n, true, &bk);
    memcpy(req->sql_hash, bk.sql_hash, sizeof req->sql_hash);
}
