/*
 * test_cache_stage: the cache stage's decisions (cache_stage.c and the files behind it)
 * against a real LMDB store in a temp dir, driven through the real pipeline (pipeline.c)
 * with a fake client connection and a fake terminal upstream stage that plays the answer
 * through the request's taps, as upstream_stage.c does.
 *
 * Decisions: a miss leads the fetch and stores the answer (found again after a restart of
 * the store: a fresh hit, X-Cache HIT, Age, ETag, X-Cache-Key); If-None-Match -> 304; a
 * stale entry inside stale-while-revalidate is served STALE; bypass reasons (no-store, a
 * streamed body, an unreadable or async query body, Accept-Encoding refusing identity, an
 * unknown route); no-cache fetches (and stores) again; only-if-cached -> 504; Vary keys the
 * answer by the named header; a mutation's 2xx invalidates the tagged entries; answers the
 * cache must not keep are not stored (not-ready results, upstream no-store, encoded bodies,
 * errors); waiters get the leader's answer (COALESCED).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "config.h"
#include "http1.h"
#include "pipeline.h"
#include "route.h"

/* ---- the fake client connection: what was answered ---- */

static struct {
    int heads, status;
    struct evkeyvalq headers;
    char fields[256]; /* the stages' head fields ("X-Cache=MISS;") */
    struct evbuffer *body;
} out;

static void f_head(struct hg_req *req, int status, const struct evkeyvalq *headers, int64_t cl,
                   const struct http1_field *f, int nf)
{
    out.heads++;
    out.status = status;
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, headers, next)
    evhttp_add_header(&out.headers, kv->key, kv->value);
    for (int i = 0; i < nf; i++)
        snprintf(out.fields + strlen(out.fields), sizeof out.fields - strlen(out.fields), "%s=%s;",
                 f[i].name, f[i].value);
}

static size_t f_data(struct hg_req *req, struct evbuffer *chunk)
{
    evbuffer_add_buffer(out.body, chunk);
    return 0;
}

static void f_end(struct hg_req *req) {}

static void f_finish(struct hg_req *req)
{
    req->conn = NULL;
    pipeline_req_unref(req); /* the connection's reference */
}

static void f_abort(struct hg_req *req)
{
    pipeline_client_gone(req);
}

static const struct hg_req_io fake_io = {
    .head = f_head, .data = f_data, .end = f_end, .finish = f_finish, .abort = f_abort};
static int dummy_conn;

static void out_reset(void)
{
    evhttp_clear_headers(&out.headers);
    TAILQ_INIT(&out.headers);
    out.heads = out.status = 0;
    out.fields[0] = '\0';
    if (out.body)
        evbuffer_free(out.body);
    out.body = evbuffer_new();
}

/* X-Cache of the answer: from the served entry's headers, or the stages' head field. */
static const char *xcache(void)
{
    static char buf[32];
    const char *v = evhttp_find_header(&out.headers, "X-Cache");
    if (v)
        return v;
    const char *f = strstr(out.fields, "X-Cache=");
    if (!f)
        return "";
    snprintf(buf, sizeof buf, "%.*s", (int)strcspn(f + 8, ";"), f + 8);
    return buf;
}

static char *body_str(void)
{
    static char buf[4096];
    size_t n = evbuffer_get_length(out.body);
    n = n < sizeof buf - 1 ? n : sizeof buf - 1;
    evbuffer_copyout(out.body, buf, n);
    buf[n] = '\0';
    return buf;
}

/* ---- the fake upstream: the terminal stage parks the request; up_answer plays it ---- */

static struct hg_req *upstream_req; /* a request that reached the upstream stage */
static int upstream_calls;
static char upstream_ae[64]; /* the Accept-Encoding it would have sent */

static enum hg_stage_result up_run(struct hg_req *req)
{
    upstream_calls++;
    upstream_req = req;
    const char *ae = evhttp_find_header(&req->headers, "Accept-Encoding");
    snprintf(upstream_ae, sizeof upstream_ae, "%s", ae ? ae : "");
    req->refs++; /* a terminal stage's own hold */
    return HG_ASYNC;
}

static const struct hg_stage_ops up_ops = {.name = "upstream", .run = up_run, .terminal = 1};

static const struct hg_stage_ops cache_ops = {
    .name = "cache",
    .run = cache_stage,
    .client_gone = cache_client_gone,
    .upstream_failed = cache_upstream_failed,
    .hold_response = cache_hold_response,
    .hold_gate = cache_hold_gate,
    .head_field = cache_xcache,
    .head_field_name = "X-Cache",
};

/* The upstream answers the parked request: the taps see it, then the client gets it. */
static void up_answer(int status, const char *const *hdrs, const char *body)
{
    struct hg_req *req = upstream_req;
    assert_non_null(req);
    upstream_req = NULL;
    struct evkeyvalq h;
    TAILQ_INIT(&h);
    for (int i = 0; hdrs && hdrs[i]; i += 2)
        evhttp_add_header(&h, hdrs[i], hdrs[i + 1]);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, strlen(body));
    req->fwd.tap_head_called = 1;
    for (int i = 0; i < req->ntaps; i++)
        req->taps[i].on_head(req, req->taps[i].arg, status, &h);
    for (int i = 0; i < req->ntaps; i++)
        req->taps[i].on_data(req, req->taps[i].arg, b);
    for (int i = 0; i < req->ntaps; i++)
        req->taps[i].on_done(req, req->taps[i].arg, 1, NULL);
    pipeline_respond_buffer(req, status, &h, b);
    evbuffer_free(b);
    evhttp_clear_headers(&h);
    pipeline_req_unref(req);
}

/* ---- requests ---- */

static struct route_policy policies[64];
static int npolicies;

/* A request (header lines "Name: value", NULL-terminated) run through the pipeline. body NULL:
 * none; stream: a body too large to hold (HG_BODY_STREAM). Returns the request's cache
 * outcome (the access log's field). */
static const char *run(const char *method, const char *target, const char *body, int stream,
                       const char *const *hdrs)
{
    static char outcome[32];
    out_reset();
    struct hg_req *r = pipeline_req_new(NULL);
    r->conn = (struct hg_conn *)&dummy_conn;
    r->io = &fake_io;
    r->method_name = strdup(method);
    r->method = strcmp(method, "GET") == 0    ? EVHTTP_REQ_GET
                : strcmp(method, "POST") == 0 ? EVHTTP_REQ_POST
                : strcmp(method, "HEAD") == 0 ? EVHTTP_REQ_HEAD
                                              : EVHTTP_REQ_DELETE;
    const char *q = strchr(target, '?');
    r->path = q ? strndup(target, (size_t)(q - target)) : strdup(target);
    r->query = q ? strdup(q + 1) : NULL;
    snprintf(r->request_id, sizeof r->request_id, "rid-test");
    r->workspace = "ws_test";
    for (int i = 0; hdrs && hdrs[i]; i++) {
        const char *c = strchr(hdrs[i], ':');
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(c - hdrs[i]), hdrs[i]);
        evhttp_add_header(&r->headers, name, c + 2);
    }
    if (body) {
        r->body = evbuffer_new();
        evbuffer_add(r->body, body, strlen(body));
        r->body_kind = stream ? HG_BODY_STREAM : HG_BODY_MEMORY;
        r->body_length = (int64_t)strlen(body);
    }
    /* the route stage's job */
    assert_true(npolicies < 64);
    route_match(r->method_name, r->path, r->query, &policies[npolicies]);
    r->route = &policies[npolicies++];
    pipeline_req_hold(r); /* ours, to read the outcome after the run */
    pipeline_start(r);    /* an answer from the cache finishes it (f_finish) */
    snprintf(outcome, sizeof outcome, "%s", r->cache_outcome ? r->cache_outcome : "");
    pipeline_req_unref(r);
    return outcome;
}

/* The upstream answers the request that went upstream last. */
static void answer(int status, const char *const *hdrs, const char *body)
{
    up_answer(status, hdrs, body);
}

/* ---- the store and the config ---- */

static char dir[64];
static struct hg_config *cfg;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, 0600);
}

static int group_setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/hg-test-cache-stage-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char tok[128], conf[128], text[2048];
    snprintf(tok, sizeof tok, "%s/token", dir);
    snprintf(conf, sizeof conf, "%s/hotgate.conf", dir);
    write_file(tok, "tok_test\n");
    snprintf(text, sizeof text,
             "[upstream]\nurl = http://127.0.0.1:1\n"
             "[cache]\nenabled = yes\ndir = %s/cache\nttl_metadata = 60s\nttl_query = 60s\n"
             "ttl_immutable = 0\nstale_while_revalidate = 60s\nstale_if_error = 60s\n"
             "poll_window_ms = 0\nnegative_ttl = 0\nttl.workspaces = 1s\n"
             "[credential main]\ntoken_file = %s\n"
             "[client app]\nkey_sha256 = %064d\ncredential = main\nworkspaces = ws_test\n",
             dir, tok, 0);
    write_file(conf, text);
    char err[512];
    cfg = config_load(conf, 1, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    if (cache_init(cfg) != 0)
        return -1;
    static const struct hg_stage_ops *const table[] = {&cache_ops, &up_ops};
    pipeline_set_stages(table, 2);
    return 0;
}

static int group_teardown(void **state)
{
    cache_shutdown();
    config_free(cfg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return -1;
    out_reset();
    evbuffer_free(out.body);
    return 0;
}

/* Close and reopen the store: what follows is read from LMDB, not from memory. */
static void restart_cache(void)
{
    cache_shutdown();
    assert_int_equal(cache_init(cfg), 0);
}

#define AUTH "Authorization: Bearer hgk_test"

/* ---- tests ---- */

static void test_miss_fill_then_hit(void **state)
{
    const char *h[] = {AUTH, "Accept-Encoding: gzip", NULL};
    assert_string_equal(run("GET", "/v1/connections?t=hit", NULL, 0, h), "miss");
    assert_string_equal(upstream_ae, "identity"); /* a fill asks for identity */
    answer(200, (const char *[]){"Content-Type", "application/json", "ETag", "\"e1\"", NULL},
           "{\"connections\":[1]}");
    assert_int_equal(out.status, 200);
    assert_string_equal(xcache(), "MISS");
    restart_cache();
    int calls = upstream_calls;
    assert_string_equal(run("GET", "/v1/connections?t=hit", NULL, 0, h), "hit");
    assert_int_equal(upstream_calls, calls); /* answered without the upstream */
    assert_int_equal(out.status, 200);
    assert_string_equal(xcache(), "HIT");
    assert_string_equal(body_str(), "{\"connections\":[1]}");
    assert_string_equal(evhttp_find_header(&out.headers, "ETag"), "\"e1\"");
    assert_string_equal(evhttp_find_header(&out.headers, "Content-Type"), "application/json");
    assert_non_null(evhttp_find_header(&out.headers, "Age"));
    assert_int_equal(strlen(evhttp_find_header(&out.headers, "X-Cache-Key")), 64);
    /* If-None-Match of the entry's ETag: 304 */
    const char *inm[] = {AUTH, "Accept-Encoding: gzip", "If-None-Match: W/\"e1\"", NULL};
    assert_string_equal(run("GET", "/v1/connections?t=hit", NULL, 0, inm), "hit");
    assert_int_equal(out.status, 304);
    /* another query string is another key */
    assert_string_equal(run("GET", "/v1/connections?t=hit2", NULL, 0, h), "miss");
    answer(200, NULL, "{}");
}

static void test_stale_served(void **state)
{
    /* GET /v1/workspaces: ttl.workspaces = 1s here, stale_while_revalidate 60 s */
    const char *h[] = {AUTH, NULL};
    assert_string_equal(run("GET", "/v1/workspaces", NULL, 0, h), "miss");
    answer(200, NULL, "{\"v\":1}");
    restart_cache();
    assert_string_equal(run("GET", "/v1/workspaces", NULL, 0, h), "hit");
    sleep(2);
    /* stale: served at once (the refresh needs an upstream, which this test has not) */
    int calls = upstream_calls;
    assert_string_equal(run("GET", "/v1/workspaces", NULL, 0, h), "stale");
    assert_string_equal(xcache(), "STALE");
    assert_string_equal(body_str(), "{\"v\":1}");
    assert_int_equal(upstream_calls, calls);
    /* a client that accepts no age is not served a stale entry: fetched */
    const char *maxage[] = {AUTH, "Cache-Control: max-age=0", NULL};
    assert_string_equal(run("GET", "/v1/workspaces", NULL, 0, maxage), "miss");
    answer(200, NULL, "{\"v\":2}");
    restart_cache();
    assert_string_equal(run("GET", "/v1/workspaces", NULL, 0, h), "hit");
    assert_string_equal(body_str(), "{\"v\":2}");
}

static void test_bypass_reasons(void **state)
{
    const char *nostore[] = {AUTH, "Cache-Control: no-store", NULL};
    assert_string_equal(run("GET", "/v1/connections?t=bp", NULL, 0, nostore), "bypass");
    answer(200, NULL, "{}");
    assert_string_equal(xcache(), "BYPASS");
    /* refuses identity: a stored (identity) answer would not suit it */
    const char *noid[] = {AUTH, "Accept-Encoding: gzip, identity;q=0", NULL};
    assert_string_equal(run("GET", "/v1/connections?t=bp", NULL, 0, noid), "bypass");
    answer(200, NULL, "{}");
    const char *h[] = {AUTH, "Content-Type: application/json", NULL};
    /* a body too large to hold cannot be keyed */
    assert_string_equal(run("POST", "/v1/query", "{\"sql\":\"SELECT 1\"}", 1, h), "bypass");
    answer(200, NULL, "{}");
    /* a query body the cache cannot read, SQL the lexer is unsure of, an async submission */
    assert_string_equal(run("POST", "/v1/query", "{\"sql\":", 0, h), "bypass");
    answer(400, NULL, "{}");
    assert_string_equal(run("POST", "/v1/query", "{\"sql\":\"SELECT `a` FROM t\"}", 0, h),
                        "bypass");
    answer(200, NULL, "{}");
    assert_string_equal(run("POST", "/v1/query", "{\"sql\":\"SELECT 1\",\"async\":true}", 0, h),
                        "bypass");
    answer(202, NULL, "{}");
    /* SQL the cache does not keep */
    assert_string_equal(run("POST", "/v1/query", "{\"sql\":\"SELECT now()\"}", 0, h), "bypass");
    answer(200, NULL, "{}");
    assert_string_equal(xcache(), "BYPASS");
    /* nothing of these was stored: each goes upstream again */
    int calls = upstream_calls;
    assert_string_equal(run("GET", "/v1/connections?t=bp", NULL, 0, (const char *[]){AUTH, NULL}),
                        "miss");
    answer(200, NULL, "{}");
    assert_int_equal(upstream_calls, calls + 1);
}

static void test_no_cache_and_only_if_cached(void **state)
{
    const char *h[] = {AUTH, NULL};
    const char *oic[] = {AUTH, "Cache-Control: only-if-cached", NULL};
    assert_string_equal(run("GET", "/v1/connections?t=oic", NULL, 0, oic), "miss");
    assert_int_equal(out.status, 504);
    assert_null(upstream_req);
    assert_string_equal(run("GET", "/v1/connections?t=oic", NULL, 0, h), "miss");
    answer(200, NULL, "{\"v\":1}");
    restart_cache();
    /* no-cache: fetched again (and the entry replaced) */
    const char *nc[] = {AUTH, "Cache-Control: no-cache", NULL};
    assert_string_equal(run("GET", "/v1/connections?t=oic", NULL, 0, nc), "miss");
    answer(200, NULL, "{\"v\":2}");
    restart_cache();
    assert_string_equal(run("GET", "/v1/connections?t=oic", NULL, 0, oic), "hit");
    assert_string_equal(body_str(), "{\"v\":2}");
}

static void test_vary(void **state)
{
    const char *a[] = {AUTH, "X-Flavour: a", NULL};
    const char *b[] = {AUTH, "X-Flavour: b", NULL};
    assert_string_equal(run("GET", "/v1/connections?t=vary", NULL, 0, a), "miss");
    answer(200, (const char *[]){"Vary", "X-Flavour", NULL}, "{\"f\":\"a\"}");
    restart_cache();
    assert_string_equal(run("GET", "/v1/connections?t=vary", NULL, 0, a), "hit");
    assert_string_equal(body_str(), "{\"f\":\"a\"}");
    assert_string_equal(run("GET", "/v1/connections?t=vary", NULL, 0, b), "miss");
    answer(200, (const char *[]){"Vary", "X-Flavour", NULL}, "{\"f\":\"b\"}");
    restart_cache();
    assert_string_equal(run("GET", "/v1/connections?t=vary", NULL, 0, b), "hit");
    assert_string_equal(body_str(), "{\"f\":\"b\"}");
    /* Vary: * is never stored */
    assert_string_equal(run("GET", "/v1/connections?t=varystar", NULL, 0, a), "miss");
    answer(200, (const char *[]){"Vary", "*", NULL}, "{}");
    restart_cache();
    assert_string_equal(run("GET", "/v1/connections?t=varystar", NULL, 0, a), "miss");
    answer(200, NULL, "{}");
}

static void test_mutation_invalidates(void **state)
{
    const char *h[] = {AUTH, NULL};
    assert_string_equal(run("GET", "/v1/connections", NULL, 0, h), "miss");
    answer(200, NULL, "{\"connections\":[]}");
    restart_cache();
    assert_string_equal(run("GET", "/v1/connections", NULL, 0, h), "hit");
    /* a failed mutation invalidates nothing */
    const char *j[] = {AUTH, "Content-Type: application/json", NULL};
    assert_string_equal(run("POST", "/v1/connections", "{\"name\":\"x\"}", 0, j), "bypass");
    answer(400, NULL, "{}");
    assert_string_equal(run("GET", "/v1/connections", NULL, 0, h), "hit");
    /* a 2xx does, before its answer reaches the client */
    assert_string_equal(run("POST", "/v1/connections", "{\"name\":\"x\"}", 0, j), "bypass");
    answer(201, NULL, "{\"id\":\"c1\"}");
    assert_string_equal(run("GET", "/v1/connections", NULL, 0, h), "miss");
    answer(200, NULL, "{\"connections\":[1]}");
}

static void test_not_stored(void **state)
{
    const char *h[] = {AUTH, NULL};
    struct {
        const char *target;
        int status;
        const char *const *hdrs;
        const char *body;
    } cases[] = {
        {"/v1/results/r1", 200, NULL, "{\"status\":\"pending\"}"}, /* a result not ready */
        {"/v1/connections?t=ns1", 200, (const char *[]){"Cache-Control", "no-store", NULL}, "{}"},
        {"/v1/connections?t=ns2", 200, (const char *[]){"Cache-Control", "private", NULL}, "{}"},
        {"/v1/connections?t=ns3", 200, (const char *[]){"Content-Encoding", "gzip", NULL}, "x"},
        {"/v1/connections?t=ns4", 503, NULL, "{}"},
        {"/v1/connections?t=ns5", 404, NULL, "{}"}, /* negative_ttl = 0 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_string_equal(run("GET", cases[i].target, NULL, 0, h), "miss");
        answer(cases[i].status, cases[i].hdrs, cases[i].body);
        assert_int_equal(out.status, cases[i].status);
    }
    restart_cache();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (strcmp(run("GET", cases[i].target, NULL, 0, h), "miss") != 0)
            fail_msg("%s was stored", cases[i].target);
        answer(200, NULL, "{\"status\":\"ready\"}");
    }
    /* the ready result was */
    restart_cache();
    assert_string_equal(run("GET", "/v1/results/r1", NULL, 0, h), "hit");
}

static void test_waiters_coalesced(void **state)
{
    const char *h[] = {AUTH, NULL};
    assert_string_equal(run("GET", "/v1/connections?t=co", NULL, 0, h), "miss");
    struct hg_req *leader = upstream_req;
    upstream_req = NULL;
    /* a second identical request while the first is in flight waits for it */
    int calls = upstream_calls;
    assert_string_equal(run("GET", "/v1/connections?t=co", NULL, 0, h), "coalesced");
    assert_int_equal(upstream_calls, calls);
    assert_int_equal(out.heads, 0); /* not answered yet */
    upstream_req = leader;
    out_reset();
    answer(200, NULL, "{\"co\":1}");
    /* both got it: the waiter's delivery ran inline (no event base in a unit test) */
    assert_int_equal(out.heads, 2);
    assert_non_null(strstr(body_str(), "{\"co\":1}{\"co\":1}"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_miss_fill_then_hit),
        cmocka_unit_test(test_stale_served),
        cmocka_unit_test(test_bypass_reasons),
        cmocka_unit_test(test_no_cache_and_only_if_cached),
        cmocka_unit_test(test_vary),
        cmocka_unit_test(test_mutation_invalidates),
        cmocka_unit_test(test_not_stored),
        cmocka_unit_test(test_waiters_coalesced),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
