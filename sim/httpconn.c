/*
 * httpconn: client connections and the request objects they hold. A pointer hash maps
 * each evhttp connection to its struct sim_conn; the close callback clears req->ev of the
 * request the connection had pending (or frees a stalled one nobody will answer). The drop
 * and stall faults close a connection from a timer (sim_conn_kill_after), never from inside
 * an evhttp callback.
 *
 * Rules: loop thread only. A struct sim_conn lives from the first request on a connection
 * to its close callback; a struct sim_req_x from sim_req_new to sim_req_free.
 */
#include "sim_httpconn.h"

#include <stdlib.h>
#include <sys/queue.h>
#include <unistd.h>

#include "util.h"

#define SIM_CONN_BUCKETS 1024

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
        if (x->abandoned)
            sim_req_free(req); /* stalled: nobody else will */
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

void sim_conn_kill_after(struct sim_conn *c, int ms)
{
    if (c->kill_ev)
        return;
    c->kill_ev = evtimer_new(c->ctx->base, sim_conn_kill_cb, c);
    if (!c->kill_ev)
        abort();
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(c->kill_ev, &tv);
}

void sim_conns_init(struct sim_ctx *ctx)
{
    ctx->conn_buckets = calloc(SIM_CONN_BUCKETS, sizeof *ctx->conn_buckets);
    if (!ctx->conn_buckets)
        abort();
}

void sim_conns_free(struct sim_ctx *ctx)
{
    if (!ctx->conn_buckets)
        return;
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
    ctx->conn_buckets = NULL;
}

/* ------------------------------------------------------------------------------------ */
/* request objects                                                                       */

struct sim_req *sim_req_new(struct sim_ctx *ctx, struct evhttp_request *ev, const char *method)
{
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
    x->conn = sim_conn_get(ctx, evhttp_request_get_connection(ev));
    x->conn->pending = req;
    return req;
}

void sim_req_free(struct sim_req *req)
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

/* A request still held by its latency timer at shutdown. */
void sim_req_drop(void *arg)
{
    struct sim_req *req = arg;
    struct sim_req_x *x = req->priv;
    req->ev = NULL;
    x->conn = NULL; /* connections are gone by now */
    sim_req_free(req);
}
