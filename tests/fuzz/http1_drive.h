/*
 * http1_drive: drive hotgate's client side (src/conn.c over the codec of src/http1.c, then
 * the pipeline with hotgate's stage table) in-process, deterministically, without threads
 * or listeners. Links against libhgcore like any test. Used by tests/fuzz/fuzz_http1.c and
 * tests/unit/test_regress_fuzz.c.
 *
 * A connection is a real bufferevent on one end of a socketpair. Input is injected into
 * the bufferevent's input buffer (unfrozen for the add, as libevent's own read does) in
 * chunks (each chunk = one read(2) of the client's
 * bytes) and conn_process() runs on it, as conn_read_cb would; between chunks the event
 * loop runs once (non-blocking) so deferred callbacks (pipelined requests) and writes run.
 * Input is only injected while the connection has reading enabled (c->read_on: the
 * connection reads its socket itself, conn_sock_read_cb), as a socket would deliver. No
 * client is configured, so every request that parses reaches the auth stage and is
 * answered 401: nothing leaves the process.
 */
#ifndef HG_HTTP1_DRIVE_H
#define HG_HTTP1_DRIVE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "config.h"
#include "conn.h"
#include "http1.h"
#include "pipeline.h"
#include "stages.h"

#define HD_MAX_HEADER_SIZE 4096u
#define HD_MAX_BODY_SIZE (2u << 20)

static struct hg_config hd_cfg;
static struct hg_worker hd_w;

__attribute__((unused)) static void hd_init(void)
{
    if (hd_w.base)
        return;
    hd_cfg.server.max_header_size = HD_MAX_HEADER_SIZE;
    hd_cfg.server.max_body_size = HD_MAX_BODY_SIZE;
    hd_cfg.server.read_timeout_ms = 30000;
    hd_cfg.server.write_timeout_ms = 30000;
    hd_cfg.server.keepalive_timeout_ms = 30000;
    hd_w.base = event_base_new();
    hd_w.cfg = &hd_cfg;
    if (!hd_w.base)
        abort();
    int n;
    const struct hg_stage_ops *const *st = stages_default(&n);
    pipeline_set_stages(st, n);
}

/* What one conversation produced. */
struct hd_result {
    char *out; /* every byte hotgate wrote to the client, NUL terminated */
    size_t out_len;
    size_t max_input_buffered; /* largest input buffer seen after conn_process */
    int closed_by_server;      /* the connection was freed before the client's EOF */
    size_t fed;                /* input bytes delivered (not delivered: read disabled) */
};

__attribute__((unused)) static void hd_collect(int fd, struct hd_result *res)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            return;
        char *nb = realloc(res->out, res->out_len + (size_t)n + 1);
        if (!nb)
            abort();
        res->out = nb;
        memcpy(res->out + res->out_len, buf, (size_t)n);
        res->out_len += (size_t)n;
        res->out[res->out_len] = '\0';
    }
}

__attribute__((unused)) static int hd_conn_alive(struct hg_conn *c)
{
    for (struct hg_conn *x = hd_w.conns; x; x = x->next)
        if (x == c)
            return 1;
    return 0;
}

/* Feed data[0..len) split at the offsets cuts[0..ncuts) (ascending, each < len), then
 * close the client side. Frees everything before returning. */
__attribute__((unused)) static void hd_run(const uint8_t *data, size_t len, const size_t *cuts,
                                           size_t ncuts, struct hd_result *res)
{
    hd_init();
    memset(res, 0, sizeof *res);
    res->out = calloc(1, 1);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    conn_new(&hd_w, sv[0]);
    struct hg_conn *c = hd_w.conns;
    size_t off = 0;
    for (size_t i = 0; i <= ncuts && off < len; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        if (end <= off)
            continue;
        if (!hd_conn_alive(c)) {
            res->closed_by_server = 1;
            break;
        }
        if (!c->read_on)
            break; /* the server stopped reading: the rest stays in the socket */
        /* what bufferevent_socket's read path does: the input buffer is frozen at its end
         * for everyone else */
        struct evbuffer *in = bufferevent_get_input(c->bev);
        evbuffer_unfreeze(in, 0);
        int rc = evbuffer_add(in, data + off, end - off);
        evbuffer_freeze(in, 0);
        if (rc != 0)
            abort();
        res->fed += end - off;
        off = end;
        conn_process(c);
        if (hd_conn_alive(c)) {
            size_t b = evbuffer_get_length(bufferevent_get_input(c->bev));
            if (b > res->max_input_buffered)
                res->max_input_buffered = b;
        }
        event_base_loop(hd_w.base, EVLOOP_NONBLOCK);
        hd_collect(sv[1], res);
    }
    /* let pending work finish (deferred pipelined requests, writes) until nothing moves */
    for (int i = 0; i < 100000 && hd_conn_alive(c); i++) {
        size_t in0 = evbuffer_get_length(bufferevent_get_input(c->bev)), out0 = res->out_len;
        event_base_loop(hd_w.base, EVLOOP_NONBLOCK);
        hd_collect(sv[1], res);
        if (hd_conn_alive(c) && evbuffer_get_length(bufferevent_get_input(c->bev)) == in0 &&
            res->out_len == out0)
            break;
    }
    if (!hd_conn_alive(c))
        res->closed_by_server = 1;
    /* the client goes away */
    close(sv[1]);
    for (int i = 0; i < 4 && hd_conn_alive(c); i++)
        event_base_loop(hd_w.base, EVLOOP_NONBLOCK);
    if (hd_conn_alive(c))
        conn_free(c); /* reading disabled: EOF unseen; what shutdown would do */
    event_base_loop(hd_w.base, EVLOOP_NONBLOCK);
}

__attribute__((unused)) static void hd_result_free(struct hd_result *res)
{
    free(res->out);
    res->out = NULL;
}

/* The status codes of the responses in out, in order (100 Continue included); -1 when
 * the byte stream is not a well-formed sequence of Content-Length framed responses, or
 * when anything follows a response that said "Connection: close". */
__attribute__((unused)) static int hd_statuses(const char *out, size_t len, int *st, int max)
{
    int n = 0, closed = 0;
    size_t p = 0;
    while (p < len) {
        if (closed)
            return -1;
        if (len - p < 12 || memcmp(out + p, "HTTP/1.", 7) != 0 ||
            (out[p + 7] != '0' && out[p + 7] != '1') || out[p + 8] != ' ')
            return -1;
        int s = atoi(out + p + 9);
        const char *end = strstr(out + p, "\r\n\r\n");
        if (!end || s < 100 || s > 599)
            return -1;
        size_t head_end = (size_t)(end - out) + 4;
        long long cl = 0;
        const char *h = strstr(out + p, "\r\nContent-Length: ");
        if (h && h < end)
            cl = atoll(h + 18);
        else if (s != 100)
            return -1; /* hotgate's own answers always carry a length */
        if (cl < 0)
            return -1;
        /* the answer to HEAD carries the length but no body: no body when the body would
         * not end at the end or at the next response while the head does */
        size_t after = head_end + (size_t)cl;
        int body_fits = (size_t)cl <= len - head_end &&
                        (after == len || (len - after >= 7 && !memcmp(out + after, "HTTP/1.", 7)));
        if (!body_fits) {
            if (head_end != len && (len - head_end < 7 || memcmp(out + head_end, "HTTP/1.", 7)))
                return -1;
            cl = 0;
        }
        const char *cc = strstr(out + p, "\r\nConnection: close\r\n");
        if (cc && cc < end)
            closed = 1;
        if (n < max)
            st[n] = s;
        n++;
        p = head_end + (size_t)cl;
    }
    return n;
}

#endif
