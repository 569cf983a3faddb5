/*
 * server: the HTTP side of hotdata-sim. evhttp listener, router (method + {param} pattern),
 * the per-request pipeline (route -> stats -> auth -> rate limit -> injected faults ->
 * latency -> workspace -> JSON body -> handler), reply helpers and the stats counters.
 *
 * Rules: one thread, one event loop; nothing here blocks (latency and stalls are evtimers).
 * Ownership: struct sim_req (allocated here) is freed by the reply that answers it. When a
 * client goes away while its request is held (latency, async wait), the connection close
 * callback clears req->ev so the eventual reply only frees memory. Connections are tracked
 * in a small pointer hash (evcon -> struct sim_conn) for that purpose and for the drop
 * faults, which free the connection from a timer, never from inside an evhttp callback.
 */
#include "sim_int.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http_struct.h>

#define SIM_CONN_BUCKETS 1024

struct sim_conn {
    struct evhttp_connection *evcon;
    struct sim_req *pending; /* request held by the framework or a handler */
    struct event *kill_ev;   /* drop fault: free the connection on this timer */
    struct sim_ctx *ctx;
    struct sim_conn *next;
};

struct sim_req_x {
    struct sim_req r;
    struct sim_route_ent *route;
    struct sim_conn *conn;
    bool abandoned; /* stall: nobody will reply; the close callback frees it */
    bool drop_mid;
    int latency_ms;
};

void sim_log(const char *fmt, ...)
{
    char ts[40];
    sim_now_rfc3339(ts, true);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s hotdata-sim: ", ts);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

char *sim_strdup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

static uint64_t sim_rng_next(struct sim_ctx *ctx)
{
    /* xorshift64*: only for fault dice and jitter, not for ids */
    uint64_t x = ctx->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    ctx->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

double sim_rand01(struct sim_ctx *ctx)
{
    return (double)(sim_rng_next(ctx) >> 11) / (double)(1ULL << 53);
}

/* ------------------------------------------------------------------------------------ */
/* ids, time, timers                                                                     */

void sim_id_new(const char *prefix, char out[64])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rnd[20];
    util_random(rnd, sizeof rnd);
    size_t n = (size_t)snprintf(out, 64, "%s_", prefix);
    if (n > 40)
        n = 40;
    for (size_t i = 0; i < sizeof rnd; i++)
        out[n + i] = alphabet[rnd[i] % 36];
    out[n + sizeof rnd] = '\0';
}

void sim_now_rfc3339(char out[40], bool ms)
{
    uint64_t now = util_wall_ms();
    char base[32];
    util_rfc3339((int64_t)(now / 1000), base);
    if (!ms) {
        snprintf(out, 40, "%s", base);
        return;
    }
    /* "YYYY-MM-DDTHH:MM:SSZ" -> "YYYY-MM-DDTHH:MM:SS.mmmZ" */
    size_t len = strlen(base);
    if (len > 0 && base[len - 1] == 'Z')
        base[len - 1] = '\0';
    snprintf(out, 40, "%s.%03uZ", base, (unsigned)(now % 1000));
}

/* Pending timers are linked in ctx->timers so shutdown can free the ones that never fired. */
struct sim_timer {
    void (*fn)(void *);
    void (*drop)(void *);
    void *arg;
    struct sim_ctx *ctx;
    struct sim_timer *prev, *next;
};

static void sim_timer_unlink(struct sim_timer *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        t->ctx->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
}

static void sim_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sim_timer *t = arg;
    void (*fn)(void *) = t->fn;
    void *a = t->arg;
    sim_timer_unlink(t);
    free(t);
    fn(a);
}

void sim_timer_after(struct sim_ctx *ctx, int ms, void (*fn)(void *arg), void *arg)
{
    sim_timer_after_drop(ctx, ms, fn, arg, NULL);
}

void sim_timer_after_drop(struct sim_ctx *ctx, int ms, void (*fn)(void *arg), void *arg,
                          void (*drop)(void *arg))
{
    struct sim_timer *t = calloc(1, sizeof *t);
    if (!t)
        abort();
    t->fn = fn;
    t->drop = drop;
    t->arg = arg;
    t->ctx = ctx;
    t->next = ctx->timers;
    if (t->next)
        t->next->prev = t;
    ctx->timers = t;
    struct timeval tv = {.tv_sec = ms > 0 ? ms / 1000 : 0,
                         .tv_usec = ms > 0 ? (ms % 1000) * 1000 : 0};
    if (event_base_once(ctx->base, -1, EV_TIMEOUT, sim_timer_cb, t, &tv) != 0) {
        sim_timer_unlink(t);
        free(t);
        fn(arg);
    }
}

struct event_base *sim_base(struct sim_ctx *ctx)
{
    return ctx->base;
}

const struct sim_config *sim_cfg(struct sim_ctx *ctx)
{
    return &ctx->cfg;
}

/* ------------------------------------------------------------------------------------ */
/* router                                                                                */

void sim_router_init(struct sim_router *r)
{
    memset(r, 0, sizeof *r);
}

void sim_router_free(struct sim_router *r)
{
    for (size_t i = 0; i < r->n; i++) {
        struct sim_route_ent *e = &r->routes[i];
        for (size_t j = 0; j < e->nseg; j++)
            free(e->segs[j]);
        free(e->segs);
        free(e->pattern);
        free(e->key);
    }
    free(r->routes);
    free(r->schemas);
    free(r->seeds);
    free(r->resets);
    memset(r, 0, sizeof *r);
}

/* Split "/a/b/c" into segments (no empty ones except a trailing slash, which is dropped). */
static size_t sim_split_path(const char *path, char **segs, size_t max)
{
    size_t n = 0;
    const char *p = path;
    while (*p == '/')
        p++;
    while (*p && n < max) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        segs[n] = strndup(p, len);
        if (!segs[n])
            abort();
        n++;
        if (!e)
            break;
        p = e + 1;
    }
    return n;
}

void sim_route(struct sim_router *r, const char *method, const char *pattern, sim_handler_fn fn,
               unsigned flags)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->routes = realloc(r->routes, r->cap * sizeof *r->routes);
        if (!r->routes)
            abort();
    }
    struct sim_route_ent *e = &r->routes[r->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->method, sizeof e->method, "%s", method);
    e->pattern = sim_strdup(pattern);
    size_t klen = strlen(method) + strlen(pattern) + 2;
    e->key = malloc(klen);
    if (!e->key)
        abort();
    snprintf(e->key, klen, "%s %s", method, pattern);
    char *segs[32];
    e->nseg = sim_split_path(pattern, segs, 32);
    e->segs = calloc(e->nseg ? e->nseg : 1, sizeof *e->segs);
    if (!e->segs)
        abort();
    for (size_t i = 0; i < e->nseg; i++) {
        e->segs[i] = segs[i];
        if (segs[i][0] != '{')
            e->nliteral++;
    }
    e->fn = fn;
    e->flags = flags;
}

void sim_router_add_schema(struct sim_router *r, const char *sql)
{
    r->schemas = realloc(r->schemas, (r->nschemas + 1) * sizeof *r->schemas);
    if (!r->schemas)
        abort();
    r->schemas[r->nschemas++] = sql;
}

void sim_router_add_seed(struct sim_router *r, void (*fn)(struct sim_ctx *, struct sim_ws *))
{
    r->seeds = realloc(r->seeds, (r->nseeds + 1) * sizeof *r->seeds);
    if (!r->seeds)
        abort();
    r->seeds[r->nseeds++] = fn;
}

void sim_router_on_reset(struct sim_router *r, void (*fn)(struct sim_ctx *))
{
    r->resets = realloc(r->resets, (r->nresets + 1) * sizeof *r->resets);
    if (!r->resets)
        abort();
    r->resets[r->nresets++] = fn;
}

/* Best route for method + segments; *path_known set when some method matches the path. */
static struct sim_route_ent *sim_router_match(struct sim_router *r, const char *method, char **segs,
                                              size_t nseg, bool *path_known)
{
    struct sim_route_ent *best = NULL;
    *path_known = false;
    for (size_t i = 0; i < r->n; i++) {
        struct sim_route_ent *e = &r->routes[i];
        if (e->nseg != nseg)
            continue;
        size_t j = 0;
        for (; j < nseg; j++) {
            if (e->segs[j][0] == '{') {
                if (segs[j][0] == '\0')
                    break;
                continue;
            }
            if (strcmp(e->segs[j], segs[j]) != 0)
                break;
        }
        if (j != nseg)
            continue;
        *path_known = true;
        if (strcmp(e->method, method) != 0)
            continue;
        if (!best || e->nliteral > best->nliteral)
            best = e;
    }
    return best;
}

/* ------------------------------------------------------------------------------------ */
/* connection tracking                                                                   */

static size_t sim_conn_hash(const void *p)
{
    uintptr_t v = (uintptr_t)p;
    v ^= v >> 17;
    v *= 0x9E3779B97F4A7C15ULL;
    return (size_t)(v >> 20) % SIM_CONN_BUCKETS;
}

static void sim_conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct sim_conn *c = arg;
    struct sim_ctx *ctx = c->ctx;
    size_t h = sim_conn_hash(evcon);
    for (struct sim_conn **pp = &ctx->conn_buckets[h]; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    ctx->nconns--;
    if (c->pending) {
        struct sim_req *req = c->pending;
        struct sim_req_x *x = req->priv;
        req->ev = NULL;
        x->conn = NULL;
        if (x->abandoned) {
            /* freed below through the normal path with ev == NULL */
            sim_reply_empty(req, 0);
        }
    }
    if (c->kill_ev)
        event_free(c->kill_ev);
    free(c);
}

static struct sim_conn *sim_conn_get(struct sim_ctx *ctx, struct evhttp_connection *evcon)
{
    size_t h = sim_conn_hash(evcon);
    for (struct sim_conn *c = ctx->conn_buckets[h]; c; c = c->next)
        if (c->evcon == evcon)
            return c;
    struct sim_conn *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->evcon = evcon;
    c->ctx = ctx;
    c->next = ctx->conn_buckets[h];
    ctx->conn_buckets[h] = c;
    ctx->nconns++;
    ctx->stats.connections_accepted++;
    evhttp_connection_set_closecb(evcon, sim_conn_closed, c);
    return c;
}

static void sim_conn_kill_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sim_conn *c = arg;
    /* closecb (sim_conn_closed) frees c and its kill_ev */
    evhttp_connection_free(c->evcon);
}

static void sim_conn_kill_after(struct sim_conn *c, int ms)
{
    if (c->kill_ev)
        return;
    c->kill_ev = evtimer_new(c->ctx->base, sim_conn_kill_cb, c);
    if (!c->kill_ev)
        abort();
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(c->kill_ev, &tv);
}

/* ------------------------------------------------------------------------------------ */
/* request accessors                                                                     */

const char *sim_req_param(struct sim_req *req, const char *name)
{
    /* param_names point at the route's "{name}" segments */
    size_t len = strlen(name);
    for (size_t i = 0; i < req->nparams; i++) {
        const char *p = req->param_names[i];
        if (p[0] == '{' && strncmp(p + 1, name, len) == 0 && p[len + 1] == '}' && !p[len + 2])
            return req->param_values[i];
    }
    return NULL;
}

const char *sim_req_query(struct sim_req *req, const char *name)
{
    return evhttp_find_header(&req->query, name);
}

const char *sim_req_header(struct sim_req *req, const char *name)
{
    if (!req->ev)
        return NULL;
    return evhttp_find_header(evhttp_request_get_input_headers(req->ev), name);
}

int sim_req_query_int(struct sim_req *req, const char *name, long def, long min, long max,
                      long *out)
{
    const char *v = sim_req_query(req, name);
    if (!v || !*v) {
        *out = def;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || end == v) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid query parameter '%s': expected an integer", name);
        return -1;
    }
    if (n < min || n > max) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid query parameter '%s': must be between %ld and %ld", name, min,
                        max);
        return -1;
    }
    *out = n;
    return 0;
}

static json_t *sim_body_field(struct sim_req *req, const char *key, bool required, int *rc)
{
    *rc = 0;
    if (req->body && !json_is_object(req->body)) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Invalid request: body must be a JSON object");
        *rc = -1;
        return NULL;
    }
    json_t *v = req->body ? json_object_get(req->body, key) : NULL;
    if (v && json_is_null(v))
        v = NULL;
    if (!v && required) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Invalid request: missing field `%s`", key);
        *rc = -1;
    }
    return v;
}

int sim_body_str(struct sim_req *req, const char *key, bool required, const char **out,
                 bool *present)
{
    int rc;
    json_t *v = sim_body_field(req, key, required, &rc);
    if (present)
        *present = v != NULL;
    if (rc || !v)
        return rc;
    if (!json_is_string(v)) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid request: invalid type for `%s`, expected a string", key);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

int sim_body_bool(struct sim_req *req, const char *key, bool required, bool *out, bool *present)
{
    int rc;
    json_t *v = sim_body_field(req, key, required, &rc);
    if (present)
        *present = v != NULL;
    if (rc || !v)
        return rc;
    if (!json_is_boolean(v)) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid request: invalid type for `%s`, expected a boolean", key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

int sim_body_int(struct sim_req *req, const char *key, bool required, long long *out, bool *present)
{
    int rc;
    json_t *v = sim_body_field(req, key, required, &rc);
    if (present)
        *present = v != NULL;
    if (rc || !v)
        return rc;
    if (!json_is_integer(v)) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid request: invalid type for `%s`, expected an integer", key);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* JSON text                                                                             */

struct sim_jbuf {
    char *p;
    size_t n, cap;
};

static void sim_jbuf_put(struct sim_jbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void sim_jbuf_str(struct sim_jbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sim_jbuf_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sim_jbuf_put(b, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        }
        sim_jbuf_put(b, esc, el);
    }
    sim_jbuf_put(b, s + run, n - run);
    sim_jbuf_put(b, "\"", 1);
}

int sim_json_real_str(double v, char out[32])
{
    int len = 0;
    for (int prec = 15; prec <= 17; prec++) {
        len = snprintf(out, 32, "%.*g", prec, v);
        if (prec == 17 || strtod(out, NULL) == v)
            break;
    }
    /* a real stays a real: "2" -> "2.0"; exponents as jansson writes them: "1e+20" -> "1e20" */
    char *e = strchr(out, 'e');
    if (e) {
        char *d = e + 1;
        if (*d == '+')
            memmove(d, d + 1, strlen(d));
        else if (*d == '-')
            d++;
        while (d[0] == '0' && d[1])
            memmove(d, d + 1, strlen(d));
        len = (int)strlen(out);
    } else if (!strchr(out, '.') && !strchr(out, 'n') && !strchr(out, 'N')) {
        memcpy(out + len, ".0", 3);
        len += 2;
    }
    return len;
}

static void sim_json_put(struct sim_jbuf *b, const json_t *j)
{
    char num[40];
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        sim_jbuf_put(b, "{", 1);
        bool first = true;
        for (void *it = json_object_iter((json_t *)j); it;
             it = json_object_iter_next((json_t *)j, it)) {
            if (!first)
                sim_jbuf_put(b, ",", 1);
            first = false;
            sim_jbuf_str(b, json_object_iter_key(it), json_object_iter_key_len(it));
            sim_jbuf_put(b, ":", 1);
            sim_json_put(b, json_object_iter_value(it));
        }
        sim_jbuf_put(b, "}", 1);
        break;
    }
    case JSON_ARRAY: {
        sim_jbuf_put(b, "[", 1);
        size_t n = json_array_size(j);
        for (size_t i = 0; i < n; i++) {
            if (i)
                sim_jbuf_put(b, ",", 1);
            sim_json_put(b, json_array_get(j, i));
        }
        sim_jbuf_put(b, "]", 1);
        break;
    }
    case JSON_STRING:
        sim_jbuf_str(b, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER: {
        int l = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        sim_jbuf_put(b, num, (size_t)l);
        break;
    }
    case JSON_REAL: {
        int l = sim_json_real_str(json_real_value(j), num);
        sim_jbuf_put(b, num, (size_t)l);
        break;
    }
    case JSON_TRUE:
        sim_jbuf_put(b, "true", 4);
        break;
    case JSON_FALSE:
        sim_jbuf_put(b, "false", 5);
        break;
    case JSON_NULL:
        sim_jbuf_put(b, "null", 4);
        break;
    }
}

char *sim_json_dumps(const json_t *j, size_t *len)
{
    struct sim_jbuf b = {0};
    sim_json_put(&b, j ? j : json_null());
    b.p[b.n] = '\0';
    if (len)
        *len = b.n;
    return b.p;
}

static void sim_free_ref(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

/* ------------------------------------------------------------------------------------ */
/* replies                                                                               */

static const char *sim_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    default:
        return "Status";
    }
}

static void sim_req_free(struct sim_req *req)
{
    struct sim_req_x *x = req->priv;
    if (x->conn && x->conn->pending == req)
        x->conn->pending = NULL;
    free(req->path);
    for (size_t i = 0; i < req->nparams; i++)
        free(req->param_values[i]);
    evhttp_clear_headers(&req->query);
    if (req->body)
        json_decref(req->body);
    if (req->upload_path) {
        unlink(req->upload_path);
        free(req->upload_path);
    }
    free(x);
}

static void sim_count_status(struct sim_ctx *ctx, int status)
{
    int cls = status / 100;
    if (cls >= 1 && cls <= 5)
        ctx->stats.status[cls]++;
}

/* Send status + body (may be NULL) and free req. */
static void sim_send(struct sim_req *req, int status, const char *ctype, struct evbuffer *body)
{
    struct sim_req_x *x = req->priv;
    struct sim_ctx *ctx = req->ctx;
    struct evhttp_request *ev = req->ev;
    if (ev && status > 0) {
        struct evkeyvalq *oh = evhttp_request_get_output_headers(ev);
        if (ctype)
            evhttp_add_header(oh, "Content-Type", ctype);
        sim_count_status(ctx, status);
        size_t len = body ? evbuffer_get_length(body) : 0;
        ctx->stats.bytes_out += len;
        struct sim_conn *conn = x->conn;
        if (conn && conn->pending == req)
            conn->pending = NULL;
        if (x->drop_mid && conn && len >= 2) {
            char cl[32];
            snprintf(cl, sizeof cl, "%zu", len);
            evhttp_add_header(oh, "Content-Length", cl);
            evhttp_send_reply_start(ev, status, sim_reason(status));
            struct evbuffer *part = evbuffer_new();
            evbuffer_remove_buffer(body, part, len / 2);
            evhttp_send_reply_chunk(ev, part);
            evbuffer_free(part);
            ctx->stats.injected_drops_mid++;
            sim_conn_kill_after(conn, 50);
        } else {
            evhttp_send_reply(ev, status, sim_reason(status), status == 204 ? NULL : body);
        }
    }
    sim_req_free(req);
}

void sim_reply_header(struct sim_req *req, const char *name, const char *value)
{
    if (req->ev)
        evhttp_add_header(evhttp_request_get_output_headers(req->ev), name, value);
}

void sim_reply_json(struct sim_req *req, int status, json_t *body)
{
    struct evbuffer *b = evbuffer_new();
    size_t len;
    char *s = sim_json_dumps(body, &len);
    if (body)
        json_decref(body);
    evbuffer_add_reference(b, s, len, sim_free_ref, NULL);
    sim_send(req, status, "application/json", b);
    evbuffer_free(b);
}

void sim_reply_empty(struct sim_req *req, int status)
{
    sim_send(req, status, NULL, NULL);
}

void sim_reply_raw(struct sim_req *req, int status, const char *content_type, struct evbuffer *buf)
{
    sim_send(req, status, content_type, buf);
}

static void sim_reply_error_msg(struct sim_req *req, int status, const char *code, const char *msg)
{
    char *s = util_api_error_json(status, code ? code : util_status_code_name(status), msg);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_reference(b, s, strlen(s), sim_free_ref, NULL);
    sim_send(req, status, "application/json", b);
    evbuffer_free(b);
}

void sim_reply_error(struct sim_req *req, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sim_reply_error_msg(req, status, code, msg);
}

void sim_send_json_ev(struct sim_ctx *ctx, struct evhttp_request *ev, int status, json_t *body)
{
    size_t len;
    char *s = sim_json_dumps(body, &len);
    if (body)
        json_decref(body);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_reference(b, s, len, sim_free_ref, NULL);
    evhttp_add_header(evhttp_request_get_output_headers(ev), "Content-Type", "application/json");
    (void)ctx;
    evhttp_send_reply(ev, status, sim_reason(status), b);
    evbuffer_free(b);
}

void sim_send_error_ev(struct sim_ctx *ctx, struct evhttp_request *ev, int status,
                       const char *message)
{
    char *s = util_api_error_json(status, util_status_code_name(status), message);
    json_t *j = json_loads(s, 0, NULL);
    free(s);
    sim_send_json_ev(ctx, ev, status, j);
}

/* ------------------------------------------------------------------------------------ */
/* stats                                                                                 */

void sim_stats_count_sql(struct sim_ctx *ctx, const char *hash)
{
    json_t *v = json_object_get(ctx->stats.sql_hashes, hash);
    if (v)
        json_integer_set(v, json_integer_value(v) + 1);
    else
        json_object_set_new(ctx->stats.sql_hashes, hash, json_integer(1));
    ctx->stats.queries_executed++;
}

void sim_stats_clear(struct sim_ctx *ctx)
{
    json_t *h = ctx->stats.sql_hashes;
    memset(&ctx->stats, 0, sizeof ctx->stats);
    if (h)
        json_object_clear(h);
    else
        h = json_object();
    ctx->stats.sql_hashes = h;
    for (size_t i = 0; i < ctx->router.n; i++)
        ctx->router.routes[i].count = 0;
}

/* ------------------------------------------------------------------------------------ */
/* the pipeline                                                                          */

static struct sim_token *sim_auth(struct sim_ctx *ctx, struct evhttp_request *ev)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(ev), "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    const char *t = h + 7;
    while (*t == ' ')
        t++;
    size_t tl = strlen(t);
    struct sim_token *found = NULL;
    for (size_t i = 0; i < ctx->cfg.ntokens; i++) {
        struct sim_token *tok = &ctx->cfg.tokens[i];
        size_t l = strlen(tok->token);
        if (l == tl && util_ct_equal(tok->token, t, l))
            found = tok;
    }
    return found;
}

bool sim_token_may_use(const struct sim_token *tok, const char *ws_id)
{
    if (tok->all_workspaces)
        return true;
    for (size_t i = 0; i < tok->nallowed; i++)
        if (strcmp(tok->allowed[i], ws_id) == 0)
            return true;
    return false;
}

/* Token bucket: 0 when admitted, else the Retry-After seconds. */
static int sim_rate_admit(struct sim_ctx *ctx, struct sim_token *tok)
{
    if (ctx->cfg.rate <= 0)
        return 0;
    uint64_t now = util_mono_us();
    double burst = ctx->cfg.burst > 0 ? ctx->cfg.burst : ctx->cfg.rate;
    if (tok->bucket_ts_us == 0) {
        tok->bucket = burst;
    } else {
        tok->bucket += (double)(now - tok->bucket_ts_us) / 1e6 * ctx->cfg.rate;
        if (tok->bucket > burst)
            tok->bucket = burst;
    }
    tok->bucket_ts_us = now;
    if (tok->bucket >= 1.0) {
        tok->bucket -= 1.0;
        return 0;
    }
    int s = (int)ceil((1.0 - tok->bucket) / ctx->cfg.rate);
    return s < 1 ? 1 : s;
}

/* The effective fault set for a route: per-route fields override the global ones. */
static struct sim_fault_set sim_faults_for(struct sim_ctx *ctx, const char *route)
{
    struct sim_fault_set s = ctx->faults.global;
    for (size_t i = 0; i < ctx->faults.nroutes; i++) {
        struct sim_route_fault *rf = &ctx->faults.routes[i];
        if (strcmp(rf->route, route) != 0)
            continue;
        if (rf->set.latency_ms >= 0)
            s.latency_ms = rf->set.latency_ms;
        if (rf->set.jitter_ms >= 0)
            s.jitter_ms = rf->set.jitter_ms;
        if (rf->set.error_rate >= 0)
            s.error_rate = rf->set.error_rate;
        if (rf->set.error_status >= 0)
            s.error_status = rf->set.error_status;
        if (rf->set.drop >= 0)
            s.drop = rf->set.drop;
        if (rf->set.drop_rate >= 0)
            s.drop_rate = rf->set.drop_rate;
        if (rf->set.stall_ms >= 0)
            s.stall_ms = rf->set.stall_ms;
    }
    return s;
}

static void sim_reply_retry_after(struct sim_req *req, int seconds, const char *msg)
{
    char ra[16];
    snprintf(ra, sizeof ra, "%d", seconds < 1 ? 1 : seconds);
    sim_reply_header(req, "Retry-After", ra);
    sim_reply_error_msg(req, 429, "OVERLOADED", msg);
}

static void sim_stage_b(struct sim_req *req);

/* A request still held by its latency timer at shutdown. */
static void sim_req_drop(void *arg)
{
    struct sim_req *req = arg;
    struct sim_req_x *x = req->priv;
    req->ev = NULL;
    x->conn = NULL; /* connections are gone by now */
    sim_req_free(req);
}

static void sim_latency_done(void *arg)
{
    struct sim_req *req = arg;
    if (!req->ev) {
        sim_req_free(req);
        return;
    }
    sim_stage_b(req);
}

/* Workspace, body, handler. */
static void sim_stage_b(struct sim_req *req)
{
    struct sim_req_x *x = req->priv;
    struct sim_ctx *ctx = req->ctx;
    struct evhttp_request *ev = req->ev;
    struct evkeyvalq *ih = evhttp_request_get_input_headers(ev);
    if (!(x->route->flags & SIM_ROUTE_NO_WORKSPACE)) {
        const char *wsid = evhttp_find_header(ih, "X-Workspace-Id");
        if (!wsid || !*wsid) {
            sim_reply_error(req, 400, "BAD_REQUEST", "Missing X-Workspace-Id header");
            return;
        }
        struct sim_ws *ws = sim_ws_find(ctx, wsid);
        if (!ws) {
            sim_reply_error(req, 404, "NOT_FOUND", "Workspace '%s' not found", wsid);
            return;
        }
        if (!sim_token_may_use(req->token, wsid)) {
            sim_reply_error(req, 403, "FORBIDDEN", "Token may not use workspace '%s'", wsid);
            return;
        }
        req->ws = ws;
        req->db = ws->db;
    }
    req->content_type = evhttp_find_header(ih, "Content-Type");
    struct evbuffer *in = evhttp_request_get_input_buffer(ev);
    if (x->route->flags & SIM_ROUTE_RAW_BODY) {
        if (!req->upload_path) {
            /* not streamed (e.g. the filter passed it through): spill the buffered body */
            char path[1024];
            snprintf(path, sizeof path, "%s/uploads/body-%llu.part", ctx->cfg.data_dir,
                     (unsigned long long)++ctx->upload_seq);
            FILE *f = fopen(path, "wb");
            if (!f) {
                sim_reply_error(req, 500, "INTERNAL_SERVER_ERROR", "cannot store upload");
                return;
            }
            size_t len = evbuffer_get_length(in);
            if (len)
                fwrite(evbuffer_pullup(in, -1), 1, len, f);
            fclose(f);
            req->upload_path = sim_strdup(path);
            req->upload_size = len;
        }
        ctx->stats.uploads++;
        ctx->stats.upload_bytes += req->upload_size;
    } else {
        size_t len = evbuffer_get_length(in);
        if (len > 0) {
            const char *p = (const char *)evbuffer_pullup(in, -1);
            size_t i = 0;
            while (i < len && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
                i++;
            if (i < len) {
                json_error_t jerr;
                req->body = json_loadb(p, len, JSON_DECODE_ANY, &jerr);
                if (!req->body) {
                    sim_reply_error(req, 400, "BAD_REQUEST", "Invalid JSON body: %s at line %d",
                                    jerr.text, jerr.line);
                    return;
                }
            }
        }
    }
    x->route->fn(req);
}

static void sim_handle_v1(struct sim_ctx *ctx, struct evhttp_request *ev, const char *method,
                          const struct evhttp_uri *uri)
{
    const char *rawpath = evhttp_uri_get_path(uri);
    if (!rawpath || !*rawpath)
        rawpath = "/";
    struct sim_req_x *x = calloc(1, sizeof *x);
    if (!x)
        abort();
    struct sim_req *req = &x->r;
    req->priv = x;
    req->ctx = ctx;
    req->ev = ev;
    req->method = method;
    req->start_us = util_mono_us();
    TAILQ_INIT(&req->query);
    req->path = evhttp_uridecode(rawpath, 0, NULL);
    x->conn = sim_conn_get(ctx, evhttp_request_get_connection(ev));
    x->conn->pending = req;
    ctx->stats.requests_total++;
    /* a body the connection filter streamed to disk: owned by req from here on */
    struct sim_upload *up = sim_stream_take(
        ctx, evhttp_find_header(evhttp_request_get_input_headers(ev), "X-Sim-Upload-Id"));
    if (up) {
        req->upload_path = up->path;
        req->upload_size = up->size;
        free(up);
    }

    /* query string: a=b&c (keys without '=' get an empty value) */
    const char *q = evhttp_uri_get_query(uri);
    if (q && *q) {
        char *dup = sim_strdup(q), *save = NULL;
        for (char *kv = strtok_r(dup, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(kv, '=');
            if (eq)
                *eq = '\0';
            char *k = evhttp_uridecode(kv, 1, NULL);
            char *v = evhttp_uridecode(eq ? eq + 1 : "", 1, NULL);
            if (k && v && *k)
                evhttp_add_header(&req->query, k, v);
            free(k);
            free(v);
        }
        free(dup);
    }

    char *segs[32];
    size_t nseg = sim_split_path(rawpath, segs, 32);
    bool path_known = false;
    struct sim_route_ent *e = sim_router_match(&ctx->router, method, segs, nseg, &path_known);
    if (e) {
        for (size_t i = 0; i < nseg && req->nparams < SIM_MAX_PARAMS; i++) {
            if (e->segs[i][0] != '{')
                continue;
            req->param_names[req->nparams] = e->segs[i];
            req->param_values[req->nparams] = evhttp_uridecode(segs[i], 0, NULL);
            req->nparams++;
        }
    }
    for (size_t i = 0; i < nseg; i++)
        free(segs[i]);
    if (!e) {
        ctx->stats.unmatched++;
        if (path_known)
            sim_reply_error(req, 405, "METHOD_NOT_ALLOWED", "Method %s not allowed for %s", method,
                            req->path);
        else
            sim_reply_error(req, 404, "NOT_FOUND", "No route for %s %s", method, req->path);
        return;
    }
    x->route = e;
    req->route = e->key;
    e->count++;

    req->token = sim_auth(ctx, ev);
    if (!req->token) {
        sim_reply_error(req, 401, "UNAUTHORIZED", "Missing or invalid authorization");
        return;
    }
    size_t ti = (size_t)(req->token - ctx->cfg.tokens);
    ctx->stats.token_counts[ti]++;

    int ra = sim_rate_admit(ctx, req->token);
    if (ra > 0) {
        ctx->stats.rate_limited++;
        ctx->stats.token_429[ti]++;
        sim_reply_retry_after(req, ra, "Rate limit exceeded, retry later");
        return;
    }
    if (ctx->faults.retry_after_count > 0) {
        ctx->faults.retry_after_count--;
        ctx->stats.one_shot_429++;
        sim_reply_retry_after(req, ctx->faults.retry_after_s, "Service overloaded (injected)");
        return;
    }
    struct sim_fault_set fs = sim_faults_for(ctx, e->key);
    if (fs.stall_ms > 0) {
        ctx->stats.injected_stalls++;
        x->abandoned = true;
        sim_conn_kill_after(x->conn, fs.stall_ms);
        return;
    }
    double drop_rate = fs.drop_rate >= 0 ? fs.drop_rate : 1.0;
    if (fs.drop == SIM_DROP_BEFORE && sim_rand01(ctx) < drop_rate) {
        ctx->stats.injected_drops_before++;
        struct sim_conn *c = x->conn;
        sim_req_free(req);
        sim_conn_kill_after(c, 0);
        return;
    }
    if (fs.drop == SIM_DROP_MID && sim_rand01(ctx) < drop_rate)
        x->drop_mid = true;
    if (fs.error_rate > 0 && sim_rand01(ctx) < fs.error_rate) {
        int st = fs.error_status > 0 ? fs.error_status : 500;
        ctx->stats.injected_errors++;
        sim_reply_error(req, st, util_status_code_name(st), "Injected fault: upstream error %d",
                        st);
        return;
    }
    int lat = fs.latency_ms > 0 ? fs.latency_ms : 0;
    if (fs.jitter_ms > 0)
        lat += (int)(sim_rand01(ctx) * (fs.jitter_ms + 1));
    if (lat > 0) {
        ctx->stats.delayed++;
        sim_timer_after_drop(ctx, lat, sim_latency_done, req, sim_req_drop);
        return;
    }
    sim_stage_b(req);
}

static bool sim_peer_is_loopback(struct evhttp_request *ev)
{
    char *addr = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evhttp_request_get_connection(ev), &addr, &port);
    if (!addr)
        return false;
    return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
           strncmp(addr, "::ffff:127.", 11) == 0;
}

static const char *sim_method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    default:
        return "OTHER";
    }
}

static void sim_gencb(struct evhttp_request *ev, void *arg)
{
    struct sim_ctx *ctx = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!uri || !path) {
        sim_send_error_ev(ctx, ev, 400, "Malformed request URI");
        return;
    }
    if (strncmp(path, "/_sim/", 6) == 0) {
        if (!sim_peer_is_loopback(ev)) {
            sim_send_error_ev(ctx, ev, 403, "control plane is loopback only");
            return;
        }
        sim_control_handle(ctx, ev, path);
        return;
    }
    sim_handle_v1(ctx, ev, sim_method_name(evhttp_request_get_command(ev)), uri);
}

/* ------------------------------------------------------------------------------------ */
/* lifecycle                                                                             */

struct sim_ctx *sim_ctx_new(void)
{
    struct sim_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        abort();
    sim_router_init(&ctx->router);
    sim_faults_clear(&ctx->faults);
    ctx->stats.sql_hashes = json_object();
    util_random(&ctx->rng, sizeof ctx->rng);
    if (!ctx->rng)
        ctx->rng = 0x9E3779B97F4A7C15ULL;
    ctx->conn_buckets = calloc(SIM_CONN_BUCKETS, sizeof *ctx->conn_buckets);
    if (!ctx->conn_buckets)
        abort();
    ctx->cfg.seed_rows = 100000;
    ctx->cfg.async_delay_ms = 200;
    ctx->cfg.result_delay_ms = 50;
    ctx->cfg.results_not_ready = 200;
    ctx->cfg.job_delay_ms = 200;
    snprintf(ctx->cfg.listen_host, sizeof ctx->cfg.listen_host, "127.0.0.1");
    ctx->cfg.listen_port = 8788;
    ctx->started_ms = util_mono_ms();
    return ctx;
}

int sim_server_start(struct sim_ctx *ctx)
{
    ctx->http = evhttp_new(ctx->base);
    if (!ctx->http)
        return -1;
    evhttp_set_allowed_methods(ctx->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                              EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                              EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
    evhttp_set_bevcb(ctx->http, sim_stream_bevcb, ctx);
    evhttp_set_gencb(ctx->http, sim_gencb, ctx);
    evhttp_set_timeout(ctx->http, 300);
    evhttp_set_max_headers_size(ctx->http, 64 * 1024);
    if (evhttp_bind_socket(ctx->http, ctx->cfg.listen_host, (ev_uint16_t)ctx->cfg.listen_port) !=
        0) {
        sim_log("cannot listen on %s:%d", ctx->cfg.listen_host, ctx->cfg.listen_port);
        return -1;
    }
    return 0;
}

void sim_ctx_free(struct sim_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->http)
        evhttp_free(ctx->http); /* closes connections: close callbacks free sim_conns */
    for (size_t b = 0; b < SIM_CONN_BUCKETS; b++) {
        struct sim_conn *c = ctx->conn_buckets[b];
        while (c) {
            struct sim_conn *n = c->next;
            if (c->kill_ev)
                event_free(c->kill_ev);
            free(c);
            c = n;
        }
    }
    free(ctx->conn_buckets);
    sim_stream_free_all(ctx);
    sim_store_close(ctx);
    sim_router_free(&ctx->router);
    sim_faults_clear(&ctx->faults);
    json_decref(ctx->stats.sql_hashes);
    for (size_t i = 0; i < ctx->cfg.ntokens; i++) {
        struct sim_token *t = &ctx->cfg.tokens[i];
        util_wipe(t->token, strlen(t->token));
        free(t->token);
        for (size_t j = 0; j < t->nallowed; j++)
            free(t->allowed[j]);
        free(t->allowed);
    }
    for (size_t i = 0; i < ctx->cfg.nws_ids; i++)
        free(ctx->cfg.ws_ids[i]);
    free(ctx->cfg.data_dir);
    if (ctx->base)
        event_base_free(ctx->base); /* drops the pending one-shot events */
    while (ctx->timers) {
        struct sim_timer *t = ctx->timers;
        ctx->timers = t->next;
        if (t->drop)
            t->drop(t->arg);
        free(t);
    }
    free(ctx);
}
