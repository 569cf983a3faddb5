/*
 * fuzz_sqlkey: libFuzzer target for src/sqlkey.c (and route_match and the body helpers of
 * src/route.c, fed the same bytes).
 *
 * Checks, besides memory safety (ASan) on arbitrary, truncated input:
 *   - the canonical form is never longer than the input and hashes to sqlkey_cache_key;
 *   - it keeps the significant token sequence byte for byte (only gaps change), which is what
 *     makes the cache key injective on meaning;
 *   - it is idempotent;
 *   - the body key (src/bodykey.c) never crashes; canonical JSON is a fixed point and keys
 *     the same as the body it came from.
 * Build: CC=clang BUILD_DIR=build-fuzz ./scripts/build.sh -DHG_FUZZ=ON; run build-fuzz/fuzz_sqlkey.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"
#include "bodykey.h"
#include "sqlkey.h"
#include "util.h"

static bool significant(const struct sqlkey_tok *t)
{
    return !(t->kind == SQLKEY_TOK_SPACE || (t->kind == SQLKEY_TOK_COMMENT && !t->unterminated));
}

/* Next significant token at or after *off; false at the end. */
static bool next_sig(const char *s, size_t len, size_t *off, struct sqlkey_tok *t)
{
    while (*off < len) {
        sqlkey_lex(s, len, *off, t);
        if (t->len == 0 || *off + t->len > len)
            abort(); /* the lexer must always consume, and stay inside the input */
        *off += t->len;
        if (significant(t))
            return true;
    }
    return false;
}

/* Significant tokens of a and b are equal, except that a may have one extra trailing ';'. */
static void same_tokens(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t ia = 0, ib = 0;
    struct sqlkey_tok ta, tb;
    for (;;) {
        bool ha = next_sig(a, alen, &ia, &ta);
        bool hb = next_sig(b, blen, &ib, &tb);
        if (!ha && !hb)
            return;
        if (!ha || ta.kind != tb.kind || ta.len != tb.len ||
            memcmp(a + ta.off, b + tb.off, ta.len) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size heap copy so ASan sees any read past the end */
    char *sql = malloc(size ? size : 1);
    if (!sql)
        return 0;
    memcpy(sql, data, size);

    char *c1 = malloc(size + 1);
    size_t n1 = sqlkey_canonical(sql, size, c1);
    if (n1 > size || c1[n1] != '\0')
        abort();
    same_tokens(sql, size, c1, n1);

    char k[65], h[65];
    sqlkey_cache_key(sql, size, k);
    util_sha256_hex(c1, n1, h);
    if (strcmp(k, h) != 0)
        abort();

    char *c2 = malloc(n1 + 1);
    size_t n2 = sqlkey_canonical(c1, n1, c2);
    if (n2 != n1 || memcmp(c1, c2, n1) != 0)
        abort();

    enum sqlkey_reason r;
    bool ok = sqlkey_is_cacheable(sql, size, &r);
    if (ok != (r == SQLKEY_OK) || (unsigned)r >= SQLKEY_REASON__COUNT)
        abort();
    /* formatting never changes the verdict */
    enum sqlkey_reason r1;
    sqlkey_is_cacheable(c1, n1, &r1);
    if (r1 != r && r != SQLKEY_MULTI_STATEMENT && r1 != SQLKEY_MULTI_STATEMENT)
        abort();

    struct sqlkey_refs refs;
    sqlkey_table_refs(sql, size, &refs);
    for (size_t i = 0; i < refs.n; i++)
        if (!refs.v[i].full || !refs.v[i].conn || !refs.v[i].schema || !refs.v[i].table)
            abort();
    struct route_tags tags;
    bool all;
    route_query_tags(&refs, &tags);
    route_sql_write_tags(&refs, &tags, &all);
    sqlkey_refs_free(&refs);

    struct sqlkey_query_req req;
    if (sqlkey_parse_query_body(sql, size, &req, NULL, 0) == 0) {
        char kk[65];
        sqlkey_cache_key(req.sql, req.sql_len, kk);
        sqlkey_query_req_free(&req);
    }

    /* the body key: no crash; canonical JSON is a fixed point and keys like its source */
    struct bodykey bk1, bk2;
    char *dsql = NULL;
    size_t dl = 0;
    bodykey_derive(sql, size, true, &bk1, &dsql, &dl);
    if (bk1.query_ok != (dsql != NULL))
        abort();
    free(dsql);
    size_t cl = 0;
    char *cj = bodykey_canonical_json(sql, size, &cl);
    if (cj) {
        size_t cl2 = 0;
        char *cj2 = bodykey_canonical_json(cj, cl, &cl2);
        if (!cj2 || cl2 != cl || memcmp(cj, cj2, cl) != 0)
            abort();
        bodykey_derive(cj, cl, false, &bk1, NULL, NULL);
        bodykey_derive(sql, size, false, &bk2, NULL, NULL);
        if (bk1.kind != BODYKEY_JSON || memcmp(bk1.digest, bk2.digest, 32) != 0)
            abort();
        free(cj2);
        free(cj);
    }

    route_refresh_tags(sql, size, NULL, NULL, &tags, &all);
    const char *v;
    size_t vl;
    if (route_json_top_field(sql, size, "status", &v, &vl) && (v < sql || v + vl > sql + size))
        abort();
    route_body_cacheable(sql, size);

    /* the input as a request path (NUL-terminated copy), with each method */
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"};
    char *path = malloc(size + 1);
    memcpy(path, data, size);
    path[size] = '\0';
    struct route_policy *pol = malloc(sizeof(*pol));
    route_match(methods[size % 6], path, NULL, pol);
    if (!pol->name || !pol->ttl_class || pol->tags.n > ROUTE_MAX_TAGS ||
        pol->inval.n > ROUTE_MAX_TAGS || pol->pused > sizeof(pol->pbuf))
        abort();
    for (int i = 0; i < ROUTE_P__COUNT; i++) {
        const char *pv = route_param(pol, (enum route_param_id)i);
        if (pv && strlen(pv) >= sizeof(pol->pbuf))
            abort();
    }
    if (pol->mutation && pol->cache_class != ROUTE_CACHE_NEVER)
        abort();
    route_invalidation_tags(pol, sql, size, NULL, NULL, &tags, &all);
    route_body_is_terminal(pol, 200, sql, size);
    free(pol);
    free(path);

    free(c2);
    free(c1);
    free(sql);
    return 0;
}
