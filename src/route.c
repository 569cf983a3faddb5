/*
 * route: the policy table for every endpoint of the Hotdata /v1 API (see route.h for the tag
 * scheme).
 *
 * Rules: stateless and thread-safe; the only data is the static, const endpoint table below.
 * route_match does no allocation and no regex: it splits the path into at most 8 segments and
 * compares them against the table. Body helpers that need a full JSON parse (refresh) use
 * jansson and run only after a successful mutation, never on the hot path.
 */
#include "route.h"
#include "util.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define MAX_SEGS 8
#define MAX_TMPL 12

/*
 * One endpoint. pattern: segments after "/v1/", "{c}" connection_id, "{s}" schema, "{t}" table,
 * "{i}" index_name, "{id}" id, "{n}" name. Tag templates use the same placeholders.
 */
struct route_def {
    const char *method;
    const char *pattern;
    enum route_id id;
    const char *name;
    const char *ttl_class;
    enum route_cache_class cls;
    unsigned ttl;
    enum route_terminal terminal;
    bool mutation;
    bool readonly_ok;
    const char *tags[MAX_TMPL];
    const char *inval[MAX_TMPL];
};

#define META ROUTE_CACHE_METADATA, 60, ROUTE_TERMINAL_ALWAYS, false, true
#define MUT() ROUTE_CACHE_NEVER, 0, ROUTE_TERMINAL_ALWAYS, true, false

/* clang-format off */
static const struct route_def defs[] = {
    {"GET", "workspaces", ROUTE_WORKSPACES_LIST, "workspaces.list", "workspaces", META,
     {"workspaces"}, {0}},
    {"POST", "workspaces", ROUTE_WORKSPACES_CREATE, "workspaces.create", "", MUT(),
     {0}, {"workspaces"}},
    {"POST", "query", ROUTE_QUERY, "query", "query", ROUTE_CACHE_QUERY, 300,
     ROUTE_TERMINAL_ALWAYS, false, true,
     {0}, {"query-runs", "results"}},
    {"GET", "connections", ROUTE_CONNECTIONS_LIST, "connections.list", "connections", META,
     {"list:connections"}, {0}},
    {"POST", "connections", ROUTE_CONNECTIONS_CREATE, "connections.create", "", MUT(),
     {0}, {"list:connections", "infoschema", "qunknown", "jobs"}},
    {"GET", "connections/{c}", ROUTE_CONNECTIONS_GET, "connections.get", "connections", META,
     {"conn:{c}"}, {0}},
    {"DELETE", "connections/{c}", ROUTE_CONNECTIONS_DELETE, "connections.delete", "", MUT(),
     {0}, {"list:connections", "conn:{c}", "infoschema", "qconn:{c}", "qunknown"}},
    {"DELETE", "connections/{c}/cache", ROUTE_CONNECTIONS_PURGE, "connections.purge_cache", "",
     MUT(), {0}, {"list:connections", "conn:{c}", "infoschema", "qconn:{c}", "qunknown"}},
    {"GET", "connections/{c}/health", ROUTE_CONNECTIONS_HEALTH, "connections.health", "",
     ROUTE_CACHE_NEVER, 0, ROUTE_TERMINAL_ALWAYS, false, true,
     {"conn:{c}"}, {0}},
    {"DELETE", "connections/{c}/tables/{s}/{t}/cache", ROUTE_TABLES_PURGE, "tables.purge_cache",
     "", MUT(), {0},
     {"table:{c}.{s}.{t}", "index:{c}.{s}.{t}", "conn:{c}", "list:connections", "infoschema",
      "qtable:{c}.{s}.{t}", "qunknown"}},
    {"GET", "connections/{c}/tables/{s}/{t}/profile", ROUTE_TABLES_PROFILE, "tables.profile",
     "table_profiles", META, {"table:{c}.{s}.{t}", "conn:{c}"}, {0}},
    {"GET", "connections/{c}/tables/{s}/{t}/indexes", ROUTE_INDEXES_LIST, "indexes.list",
     "indexes", META, {"index:{c}.{s}.{t}", "conn:{c}"}, {0}},
    {"POST", "connections/{c}/tables/{s}/{t}/indexes", ROUTE_INDEXES_CREATE, "indexes.create", "",
     MUT(), {0}, {"index:{c}.{s}.{t}", "table:{c}.{s}.{t}", "qtable:{c}.{s}.{t}", "jobs"}},
    {"DELETE", "connections/{c}/tables/{s}/{t}/indexes/{i}", ROUTE_INDEXES_DELETE,
     "indexes.delete", "", MUT(), {0},
     {"index:{c}.{s}.{t}", "table:{c}.{s}.{t}", "qtable:{c}.{s}.{t}"}},
    {"GET", "connection-types", ROUTE_CONNECTION_TYPES_LIST, "connection_types.list",
     "connection_types", META, {"conntypes"}, {0}},
    {"GET", "connection-types/{n}", ROUTE_CONNECTION_TYPES_GET, "connection_types.get",
     "connection_types", META, {"conntypes"}, {0}},
    {"POST", "refresh", ROUTE_REFRESH, "refresh", "", MUT(), {0}, {0}},
    {"GET", "information_schema", ROUTE_INFORMATION_SCHEMA, "information_schema",
     "information_schema", META, {"infoschema"}, {0}},
    {"GET", "secrets", ROUTE_SECRETS_LIST, "secrets.list", "secrets", META,
     {"list:secrets"}, {0}},
    {"POST", "secrets", ROUTE_SECRETS_CREATE, "secrets.create", "", MUT(),
     {0}, {"list:secrets"}},
    {"GET", "secrets/{n}", ROUTE_SECRETS_GET, "secrets.get", "secrets", META,
     {"secret:{n}"}, {0}},
    {"PUT", "secrets/{n}", ROUTE_SECRETS_UPDATE, "secrets.update", "", MUT(),
     {0}, {"list:secrets", "secret:{n}", "providers"}},
    {"DELETE", "secrets/{n}", ROUTE_SECRETS_DELETE, "secrets.delete", "", MUT(),
     {0}, {"list:secrets", "secret:{n}", "providers"}},
    {"GET", "results", ROUTE_RESULTS_LIST, "results.list", "results", META,
     {"results"}, {0}},
    {"GET", "results/{id}", ROUTE_RESULTS_GET, "results.get", "result", ROUTE_CACHE_IMMUTABLE, 0,
     ROUTE_TERMINAL_RESULT, false, true, {"result:{id}"}, {0}},
    {"GET", "query-runs", ROUTE_QUERY_RUNS_LIST, "query_runs.list", "query_runs", META,
     {"query-runs"}, {0}},
    {"GET", "query-runs/{id}", ROUTE_QUERY_RUNS_GET, "query_runs.get", "query_run",
     ROUTE_CACHE_IMMUTABLE, 0, ROUTE_TERMINAL_QUERY_RUN, false, true, {"queryrun:{id}"}, {0}},
    {"GET", "files", ROUTE_UPLOADS_LIST, "uploads.list", "uploads", META,
     {"list:files"}, {0}},
    {"POST", "files", ROUTE_UPLOADS_CREATE, "uploads.create", "", MUT(),
     {0}, {"list:files"}},
    {"GET", "datasets", ROUTE_DATASETS_LIST, "datasets.list", "datasets", META,
     {"list:datasets"}, {0}},
    {"POST", "datasets", ROUTE_DATASETS_CREATE, "datasets.create", "", MUT(),
     {0}, {"list:datasets", "list:files", "infoschema", "qconn:datasets", "qunknown", "jobs"}},
    {"GET", "datasets/{id}", ROUTE_DATASETS_GET, "datasets.get", "datasets", META,
     {"dataset:{id}"}, {0}},
    {"PUT", "datasets/{id}", ROUTE_DATASETS_UPDATE, "datasets.update", "", MUT(),
     {0}, {"list:datasets", "dataset:{id}", "infoschema", "qconn:datasets", "qunknown"}},
    {"DELETE", "datasets/{id}", ROUTE_DATASETS_DELETE, "datasets.delete", "", MUT(),
     {0}, {"list:datasets", "dataset:{id}", "infoschema", "qconn:datasets", "qunknown"}},
    {"GET", "datasets/{id}/versions", ROUTE_DATASETS_VERSIONS, "datasets.versions",
     "dataset_versions", ROUTE_CACHE_IMMUTABLE, 3600, ROUTE_TERMINAL_ALWAYS, false, true,
     {"dataset:{id}"}, {0}},
    {"GET", "queries", ROUTE_SAVED_QUERIES_LIST, "saved_queries.list", "saved_queries", META,
     {"list:queries"}, {0}},
    {"POST", "queries", ROUTE_SAVED_QUERIES_CREATE, "saved_queries.create", "", MUT(),
     {0}, {"list:queries"}},
    {"GET", "queries/{id}", ROUTE_SAVED_QUERIES_GET, "saved_queries.get", "saved_queries", META,
     {"savedquery:{id}"}, {0}},
    {"PUT", "queries/{id}", ROUTE_SAVED_QUERIES_UPDATE, "saved_queries.update", "", MUT(),
     {0}, {"list:queries", "savedquery:{id}"}},
    {"DELETE", "queries/{id}", ROUTE_SAVED_QUERIES_DELETE, "saved_queries.delete", "", MUT(),
     {0}, {"list:queries", "savedquery:{id}"}},
    {"POST", "queries/{id}/execute", ROUTE_SAVED_QUERIES_EXECUTE, "saved_queries.execute",
     "query", ROUTE_CACHE_QUERY, 300, ROUTE_TERMINAL_ALWAYS, false, true,
     {"savedquery:{id}", "queries", "qunknown"}, {"query-runs", "results"}},
    {"GET", "queries/{id}/versions", ROUTE_SAVED_QUERIES_VERSIONS, "saved_queries.versions",
     "saved_query_versions", ROUTE_CACHE_IMMUTABLE, 3600, ROUTE_TERMINAL_ALWAYS, false, true,
     {"savedquery:{id}"}, {0}},
    {"GET", "embedding-providers", ROUTE_PROVIDERS_LIST, "embedding_providers.list",
     "embedding_providers", META, {"providers", "list:providers"}, {0}},
    {"POST", "embedding-providers", ROUTE_PROVIDERS_CREATE, "embedding_providers.create", "",
     MUT(), {0}, {"providers", "list:providers", "list:secrets"}},
    {"GET", "embedding-providers/{id}", ROUTE_PROVIDERS_GET, "embedding_providers.get",
     "embedding_providers", META, {"providers", "provider:{id}"}, {0}},
    {"PUT", "embedding-providers/{id}", ROUTE_PROVIDERS_UPDATE, "embedding_providers.update", "",
     MUT(), {0}, {"providers", "list:providers", "provider:{id}", "list:secrets"}},
    {"DELETE", "embedding-providers/{id}", ROUTE_PROVIDERS_DELETE, "embedding_providers.delete",
     "", MUT(), {0}, {"providers", "list:providers", "provider:{id}", "list:secrets"}},
    {"GET", "jobs", ROUTE_JOBS_LIST, "jobs.list", "jobs", META, {"jobs"}, {0}},
    {"GET", "jobs/{id}", ROUTE_JOBS_GET, "jobs.get", "job", ROUTE_CACHE_IMMUTABLE, 0,
     ROUTE_TERMINAL_JOB, false, true, {"job:{id}"}, {0}},
};
/* clang-format on */

#define NDEFS (sizeof(defs) / sizeof(defs[0]))

const char *route_id_name(enum route_id id)
{
    if (id == ROUTE_NOT_API)
        return "not_api";
    for (size_t i = 0; i < NDEFS; i++)
        if (defs[i].id == id)
            return defs[i].name;
    return "unknown";
}

static const struct route_def *def_of(enum route_id id)
{
    for (size_t i = 0; i < NDEFS; i++)
        if (defs[i].id == id)
            return &defs[i];
    return NULL;
}

/* ---- tags ------------------------------------------------------------------------------- */

const char *route_tags_get(const struct route_tags *t, size_t i)
{
    return i < t->n ? t->buf + t->off[i] : NULL;
}

int route_tags_add(struct route_tags *t, const char *prefix, const char *value, size_t len)
{
    size_t pl = strlen(prefix);
    if (len == SIZE_MAX)
        len = strlen(value);
    if (t->n >= ROUTE_MAX_TAGS || (size_t)t->used + pl + len + 1 > sizeof(t->buf)) {
        t->overflow = true;
        return -1;
    }
    char *d = t->buf + t->used;
    memcpy(d, prefix, pl);
    for (size_t i = 0; i < len; i++) {
        char c = value[i];
        d[pl + i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    d[pl + len] = '\0';
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->buf + t->off[i], d) == 0)
            return 0;
    t->off[t->n++] = t->used;
    t->used = (uint16_t)(t->used + pl + len + 1);
    return 0;
}

static void tags_reset(struct route_tags *t)
{
    t->n = 0;
    t->used = 0;
    t->overflow = false;
}

/* Parameter values for template expansion. */
struct pvals {
    const char *c, *s, *t, *i, *id, *n;
};

/* Expand a template into out[cap]; false when a placeholder has no value or it does not fit. */
static bool expand(const char *tmpl, const struct pvals *v, char *out, size_t cap)
{
    size_t k = 0;
    for (const char *p = tmpl; *p;) {
        const char *val = NULL;
        size_t skip = 0;
        if (p[0] == '{') {
            if (strncmp(p, "{c}", 3) == 0)
                val = v->c, skip = 3;
            else if (strncmp(p, "{s}", 3) == 0)
                val = v->s, skip = 3;
            else if (strncmp(p, "{t}", 3) == 0)
                val = v->t, skip = 3;
            else if (strncmp(p, "{i}", 3) == 0)
                val = v->i, skip = 3;
            else if (strncmp(p, "{id}", 4) == 0)
                val = v->id, skip = 4;
            else if (strncmp(p, "{n}", 3) == 0)
                val = v->n, skip = 3;
        }
        if (skip) {
            if (!val)
                return false;
            size_t l = strlen(val);
            if (k + l >= cap)
                return false;
            memcpy(out + k, val, l);
            k += l;
            p += skip;
        } else {
            if (k + 1 >= cap)
                return false;
            out[k++] = *p++;
        }
    }
    out[k] = '\0';
    return true;
}

static void add_tmpl(struct route_tags *t, const char *tmpl, const struct pvals *v)
{
    char buf[ROUTE_BUF_SIZE];
    if (!expand(tmpl, v, buf, sizeof(buf))) {
        t->overflow = true;
        return;
    }
    route_tags_add(t, "", buf, SIZE_MAX);
}

static bool is_conn_q(const char *tmpl)
{
    return strncmp(tmpl, "qconn:{c}", 9) == 0 || strncmp(tmpl, "qtable:{c}", 10) == 0;
}

/* ---- matching --------------------------------------------------------------------------- */

struct seg {
    const char *p;
    size_t len;
};

/* Percent-decode a segment into the policy's pbuf; returns the offset + 1, or 0 on error. */
static uint16_t put_param(struct route_policy *p, struct seg sg)
{
    if (sg.len == 0 || (size_t)p->pused + sg.len + 1 > sizeof(p->pbuf))
        return 0;
    size_t start = p->pused, k = start;
    for (size_t i = 0; i < sg.len; i++) {
        char c = sg.p[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= sg.len)
                return 0;
            hi = util_hexval(sg.p[i + 1]);
            lo = util_hexval(sg.p[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return 0;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        p->pbuf[k++] = c;
    }
    p->pbuf[k++] = '\0';
    p->pused = (uint16_t)k;
    return (uint16_t)(start + 1);
}

const char *route_param(const struct route_policy *p, enum route_param_id id)
{
    if ((unsigned)id >= ROUTE_P__COUNT || p->param_off[id] == 0)
        return NULL;
    return p->pbuf + p->param_off[id] - 1;
}

static enum route_param_id param_of(const char *ph, size_t len)
{
    if (len == 3 && ph[1] == 'c')
        return ROUTE_P_CONNECTION_ID;
    if (len == 3 && ph[1] == 's')
        return ROUTE_P_SCHEMA;
    if (len == 3 && ph[1] == 't')
        return ROUTE_P_TABLE;
    if (len == 3 && ph[1] == 'i')
        return ROUTE_P_INDEX_NAME;
    if (len == 3 && ph[1] == 'n')
        return ROUTE_P_NAME;
    return ROUTE_P_ID;
}

/* Does a pattern match the segments? (no side effects) */
static bool pattern_match(const char *pat, const struct seg *segs, size_t nsegs)
{
    size_t i = 0;
    const char *p = pat;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (i >= nsegs)
            return false;
        if (p[0] != '{' && (segs[i].len != l || memcmp(segs[i].p, p, l) != 0))
            return false;
        i++;
        p += l;
        if (*p == '/')
            p++;
    }
    return i == nsegs;
}

static struct pvals pvals_of(const struct route_policy *p)
{
    return (struct pvals){route_param(p, ROUTE_P_CONNECTION_ID),
                          route_param(p, ROUTE_P_SCHEMA),
                          route_param(p, ROUTE_P_TABLE),
                          route_param(p, ROUTE_P_INDEX_NAME),
                          route_param(p, ROUTE_P_ID),
                          route_param(p, ROUTE_P_NAME)};
}

static bool qs_has(const char *q, const char *kv)
{
    if (!q)
        return false;
    size_t l = strlen(kv);
    for (const char *s = q; *s;) {
        const char *e = strchr(s, '&');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == l && memcmp(s, kv, l) == 0)
            return true;
        s += n;
        if (*s == '&')
            s++;
    }
    return false;
}

/* Safe methods (RFC 9110 9.2.1): they change nothing upstream, so they never invalidate. */
static bool is_safe_method(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0;
}

/* Reads: what read-only clients may send and what may be replayed after a shed. OPTIONS is
 * safe but reads nothing of the Hotdata API: forwarded for full clients only, never
 * replayed (and never cached: it has no route of its own). */
static bool is_read_method(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
}

static void set_unknown(struct route_policy *p, const char *method)
{
    p->id = ROUTE_UNKNOWN;
    p->name = "unknown";
    p->ttl_class = "";
    p->cache_class = ROUTE_CACHE_NEVER;
    p->mutation = !is_safe_method(method);
    p->readonly_ok = p->replay_ok = is_read_method(method);
    p->inval_workspace = p->mutation;
}

/* The segments of path[4..plen) ("/v1/" skipped): their count, or -1 (empty segment, too
 * many). */
static int split_segments(const char *path, size_t plen, struct seg *segs)
{
    size_t nsegs = 0;
    for (size_t i = 4; i <= plen;) {
        size_t j = i;
        while (j < plen && path[j] != '/')
            j++;
        if (nsegs == MAX_SEGS || j == i)
            return -1;
        segs[nsegs++] = (struct seg){path + i, j - i};
        i = j + 1;
    }
    return (int)nsegs;
}

/* The path parameters of d's pattern into p. false when one does not fit. */
static bool capture_params(struct route_policy *p, const struct route_def *d,
                           const struct seg *segs)
{
    size_t si = 0;
    for (const char *pp = d->pattern; *pp; si++) {
        const char *e = strchr(pp, '/');
        size_t l = e ? (size_t)(e - pp) : strlen(pp);
        if (pp[0] == '{') {
            uint16_t off = put_param(p, segs[si]);
            if (!off)
                return false;
            p->param_off[param_of(pp, l)] = off;
        }
        pp += l;
        if (*pp == '/')
            pp++;
    }
    return true;
}

/* The columns of the matched row (its tags and invalidations: route_complete). */
static void fill_from_def(struct route_policy *p, const struct route_def *d, bool head,
                          const char *query)
{
    p->id = d->id;
    p->name = d->name;
    p->ttl_class = d->ttl_class;
    p->cache_class = head ? ROUTE_CACHE_NEVER : d->cls;
    p->default_ttl_s = d->ttl;
    p->terminal = d->terminal;
    p->mutation = d->mutation;
    p->readonly_ok = d->readonly_ok;
    p->replay_ok = d->readonly_ok; /* the reads, and only they, may be sent again */
    p->head = head;
    if (d->id == ROUTE_RESULTS_GET)
        p->arrow = qs_has(query, "format=arrow");
    if (d->id == ROUTE_REFRESH) {
        p->needs_body = true;
        p->inval_workspace = true; /* without its body, a refresh may touch anything */
    }
    p->def_ = d;
}

void route_complete(struct route_policy *p)
{
    const struct route_def *d = p->def_;
    if (!d)
        return;
    p->def_ = NULL;
    struct pvals v = pvals_of(p);
    bool conn_q = false;
    for (size_t k = 0; k < MAX_TMPL && d->tags[k]; k++)
        add_tmpl(&p->tags, d->tags[k], &v);
    for (size_t k = 0; k < MAX_TMPL && d->inval[k]; k++) {
        add_tmpl(&p->inval, d->inval[k], &v);
        conn_q |= is_conn_q(d->inval[k]);
    }
    if (conn_q) /* SQL names connections by name, which we do not know here */
        route_tags_add(&p->inval, "", "queries", SIZE_MAX);
    if (p->tags.overflow)
        p->cache_class = ROUTE_CACHE_NEVER;
    if (p->inval.overflow)
        p->inval_workspace = true;
}

size_t route_table_size(void)
{
    return NDEFS;
}

void route_table_row(size_t i, const char **method, const char **pattern)
{
    *method = i < NDEFS ? defs[i].method : NULL;
    *pattern = i < NDEFS ? defs[i].pattern : NULL;
}

void route_match(const char *method, const char *path, const char *query, struct route_policy *p)
{
    route_match_columns(method, path, query, p);
    route_complete(p);
}

void route_match_columns(const char *method, const char *path, const char *query,
                         struct route_policy *p)
{
    memset(p, 0, offsetof(struct route_policy, tags));
    tags_reset(&p->tags);
    tags_reset(&p->inval);
    p->pused = 0;
    p->id = ROUTE_NOT_API;
    p->name = "not_api";
    p->ttl_class = "";
    if (!method)
        method = "";
    if (!path)
        path = "";
    p->mutation = !is_safe_method(method);
    p->readonly_ok = p->replay_ok = is_read_method(method);

    size_t plen = strcspn(path, "?");
    if (plen < 3 || memcmp(path, "/v1", 3) != 0 || (plen > 3 && path[3] != '/'))
        return;
    if (!query && path[plen] == '?')
        query = path + plen + 1;
    struct seg segs[MAX_SEGS];
    int nsegs = plen <= 4 ? -1 : split_segments(path, plen, segs);
    if (nsegs < 0) {
        set_unknown(p, method);
        return;
    }
    bool head = strcmp(method, "HEAD") == 0;
    const char *m = head ? "GET" : method;
    const struct route_def *d = NULL;
    /* a first-byte filter on the method and the first segment before the full compares:
     * the table is walked on every request */
    char s0 = nsegs > 0 ? segs[0].p[0] : 0;
    for (size_t k = 0; k < NDEFS && !d; k++) {
        const struct route_def *r = &defs[k];
        if (r->method[0] != m[0] || (r->pattern[0] != '{' && r->pattern[0] != s0))
            continue;
        if (strcmp(r->method, m) == 0 && pattern_match(r->pattern, segs, (size_t)nsegs))
            d = r;
    }
    if (!d || !capture_params(p, d, segs)) {
        set_unknown(p, method);
        return;
    }
    fill_from_def(p, d, head, query);
}

/* ---- invalidation ----------------------------------------------------------------------- */

/* Add the q-templates with {c} replaced by the resolved connection name. */
static bool add_conn_name_tags(struct route_tags *out, const char *const *tmpls, size_t n,
                               const struct pvals *v, route_conn_name_fn resolve, void *ctx)
{
    char name[256];
    if (!resolve || !v->c || !resolve(ctx, v->c, name, sizeof(name)) || !name[0])
        return false;
    name[sizeof(name) - 1] = '\0';
    struct pvals nv = *v;
    nv.c = name;
    for (size_t k = 0; k < n && tmpls[k]; k++)
        if (is_conn_q(tmpls[k]))
            add_tmpl(out, tmpls[k], &nv);
    return true;
}

static void refresh_set(struct route_tags *out, const char *const *tmpls, size_t n,
                        const struct pvals *v, route_conn_name_fn resolve, void *ctx)
{
    bool conn_q = false;
    for (size_t k = 0; k < n && tmpls[k]; k++) {
        add_tmpl(out, tmpls[k], v);
        conn_q |= is_conn_q(tmpls[k]);
    }
    if (conn_q && !add_conn_name_tags(out, tmpls, n, v, resolve, ctx))
        route_tags_add(out, "", "queries", SIZE_MAX);
}

static const char *const refresh_table[] = {"qtable:{c}.{s}.{t}",
                                            "table:{c}.{s}.{t}",
                                            "index:{c}.{s}.{t}",
                                            "conn:{c}",
                                            "list:connections",
                                            "infoschema",
                                            "qunknown",
                                            "jobs",
                                            NULL};
static const char *const refresh_conn[] = {
    "qconn:{c}", "conn:{c}", "list:connections", "infoschema", "qunknown", "jobs", NULL};
static const char *const refresh_dataset[] = {
    "dataset:{id}", "list:datasets", "qconn:datasets", "infoschema", "qunknown", "jobs", NULL};

/* A string field, or NULL when absent/null/empty; *bad when present with another type. */
static const char *jstr(json_t *o, const char *key, bool *bad)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        *bad = true;
        return NULL;
    }
    const char *s = json_string_value(v);
    return s[0] ? s : NULL;
}

void route_refresh_tags(const char *body, size_t len, route_conn_name_fn resolve, void *ctx,
                        struct route_tags *out, bool *all_ws)
{
    tags_reset(out);
    *all_ws = false;
    json_error_t err;
    json_t *root = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &err) : NULL;
    if (!root || !json_is_object(root)) {
        json_decref(root);
        *all_ws = true;
        return;
    }
    bool bad = false;
    struct pvals v = {0};
    v.c = jstr(root, "connection_id", &bad);
    v.s = jstr(root, "schema_name", &bad);
    v.t = jstr(root, "table_name", &bad);
    v.id = jstr(root, "dataset_id", &bad);
    if (bad || (!v.c && !v.id)) {
        *all_ws = true;
    } else {
        if (v.c && v.s && v.t)
            refresh_set(out, refresh_table, 8, &v, resolve, ctx);
        else if (v.c)
            refresh_set(out, refresh_conn, 6, &v, resolve, ctx);
        if (v.id)
            refresh_set(out, refresh_dataset, 6, &v, resolve, ctx);
        if (out->overflow)
            *all_ws = true;
    }
    json_decref(root);
}

void route_invalidation_tags(const struct route_policy *p, const char *body, size_t body_len,
                             route_conn_name_fn resolve, void *ctx, struct route_tags *out,
                             bool *all_ws)
{
    tags_reset(out);
    *all_ws = p->inval_workspace;
    if (p->id == ROUTE_REFRESH) {
        route_refresh_tags(body, body_len, resolve, ctx, out, all_ws);
        return;
    }
    const struct route_def *d = def_of(p->id);
    if (!d) {
        *out = p->inval;
        return;
    }
    struct pvals v = pvals_of(p);
    bool resolved = add_conn_name_tags(out, d->inval, MAX_TMPL, &v, resolve, ctx);
    for (size_t i = 0; i < p->inval.n; i++) {
        const char *t = route_tags_get(&p->inval, i);
        if (resolved && strcmp(t, "queries") == 0)
            continue;
        route_tags_add(out, "", t, SIZE_MAX);
    }
    if (out->overflow)
        *all_ws = true;
}

/* ---- query tags ------------------------------------------------------------------------- */

static void ref_tags(struct route_tags *out, const struct sqlkey_table *t, bool conn)
{
    char buf[ROUTE_BUF_SIZE];
    if (strcmp(t->conn, "datasets") == 0) {
        snprintf(buf, sizeof(buf), "%s.%s", t->schema, t->table);
        route_tags_add(out, "qdataset:", buf, SIZE_MAX);
        if (conn)
            route_tags_add(out, "qconn:", "datasets", SIZE_MAX);
    } else {
        route_tags_add(out, "qtable:", t->full, SIZE_MAX);
        if (conn)
            route_tags_add(out, "qconn:", t->conn, SIZE_MAX);
    }
}

void route_query_tags(const struct sqlkey_refs *refs, struct route_tags *out)
{
    tags_reset(out);
    route_tags_add(out, "", "queries", SIZE_MAX);
    if (!refs || refs->unknown)
        route_tags_add(out, "", "qunknown", SIZE_MAX);
    for (size_t i = 0; refs && i < refs->n; i++)
        ref_tags(out, &refs->v[i], true);
    if (out->overflow) {
        /* cannot carry all its tags: let every data change invalidate it */
        tags_reset(out);
        route_tags_add(out, "", "queries", SIZE_MAX);
        route_tags_add(out, "", "qunknown", SIZE_MAX);
    }
}

void route_sql_write_tags(const struct sqlkey_refs *refs, struct route_tags *out, bool *all_ws)
{
    tags_reset(out);
    *all_ws = !refs || refs->unknown || refs->n == 0;
    route_tags_add(out, "", "qunknown", SIZE_MAX);
    route_tags_add(out, "", "infoschema", SIZE_MAX);
    route_tags_add(out, "", "list:datasets", SIZE_MAX);
    route_tags_add(out, "", "query-runs", SIZE_MAX);
    route_tags_add(out, "", "results", SIZE_MAX);
    for (size_t i = 0; refs && i < refs->n; i++) {
        ref_tags(out, &refs->v[i], false);
        if (strcmp(refs->v[i].conn, "datasets") != 0)
            route_tags_add(out, "table:", refs->v[i].full, SIZE_MAX);
    }
    if (out->overflow)
        *all_ws = true;
}

/* ---- body checks ------------------------------------------------------------------------ */

static size_t skip_ws(const char *b, size_t len, size_t i)
{
    while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))
        i++;
    return i;
}

/* b[i] == '"': index after the closing quote, or len. */
static size_t skip_str(const char *b, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (b[i] == '\\')
            i++;
        else if (b[i] == '"')
            return i + 1;
    }
    return len;
}

/* Skip one JSON value starting at b[i] (iterative for nested containers). */
static size_t skip_value(const char *b, size_t len, size_t i)
{
    if (i >= len)
        return len;
    if (b[i] == '"')
        return skip_str(b, len, i);
    if (b[i] == '{' || b[i] == '[') {
        size_t depth = 0;
        while (i < len) {
            char c = b[i];
            if (c == '"') {
                i = skip_str(b, len, i);
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if (c == '}' || c == ']') {
                if (--depth == 0)
                    return i + 1;
            }
            i++;
        }
        return len;
    }
    while (i < len && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' &&
           b[i] != '\n' && b[i] != '\r')
        i++;
    return i;
}

bool route_json_top_field(const char *b, size_t len, const char *key, const char **val,
                          size_t *vlen)
{
    size_t kl = strlen(key);
    if (!b)
        return false;
    size_t i = skip_ws(b, len, 0);
    if (i >= len || b[i] != '{')
        return false;
    i++;
    for (;;) {
        i = skip_ws(b, len, i);
        if (i >= len || b[i] != '"')
            return false;
        size_t ks = i + 1, ke = skip_str(b, len, i);
        if (ke >= len)
            return false;
        i = skip_ws(b, len, ke);
        if (i >= len || b[i] != ':')
            return false;
        i = skip_ws(b, len, i + 1);
        size_t vs = i, ve = skip_value(b, len, i);
        if (ve <= vs)
            return false;
        if (ke - 1 - ks == kl && memcmp(b + ks, key, kl) == 0) {
            *val = b + vs;
            *vlen = ve - vs;
            return true;
        }
        i = skip_ws(b, len, ve);
        if (i >= len || b[i] != ',')
            return false;
        i++;
    }
}

static bool field_is(const char *b, size_t len, const char *key, const char *raw)
{
    const char *v;
    size_t vl;
    return route_json_top_field(b, len, key, &v, &vl) && vl == strlen(raw) &&
           memcmp(v, raw, vl) == 0;
}

bool route_body_is_terminal(const struct route_policy *p, int http_status, const char *body,
                            size_t len)
{
    if (p->cache_class != ROUTE_CACHE_IMMUTABLE || http_status < 200 || http_status > 299)
        return false;
    switch (p->terminal) {
    case ROUTE_TERMINAL_ALWAYS:
        return http_status == 200;
    case ROUTE_TERMINAL_RESULT: {
        if (http_status != 200)
            return false;
        size_t i = skip_ws(body, len, 0);
        if (p->arrow || !body || i >= len || body[i] != '{')
            return true; /* a 200 Arrow body is a ready result */
        return field_is(body, len, "status", "\"ready\"");
    }
    case ROUTE_TERMINAL_QUERY_RUN:
        return body && (field_is(body, len, "status", "\"succeeded\"") ||
                        field_is(body, len, "status", "\"failed\"") ||
                        field_is(body, len, "status", "\"cancelled\""));
    case ROUTE_TERMINAL_JOB:
        return body && (field_is(body, len, "status", "\"succeeded\"") ||
                        field_is(body, len, "status", "\"partially_succeeded\"") ||
                        field_is(body, len, "status", "\"failed\""));
    }
    return false;
}

bool route_body_cacheable(const char *body, size_t len)
{
    const char *v;
    size_t vl;
    if (!body)
        return true;
    if (route_json_top_field(body, len, "warning", &v, &vl) && !(vl == 4 && !memcmp(v, "null", 4)))
        return false;
    if (field_is(body, len, "truncated", "true"))
        return false;
    return true;
}
