/*
 * conn: see conn.h. The socket is read by the connection's own event and written through
 * a bufferevent; the bytes are parsed by http1.c; requests go to pipeline.c; the answers
 * come back through conn_io (struct hg_req_io).
 *
 * Bodies: up to CONN_MEM_BODY_MAX with a Content-Length, the body is read whole before the
 * pipeline runs (HG_BODY_MEMORY: replayable, hashable); larger or chunked bodies stream
 * (HG_BODY_STREAM): the pipeline runs right after the head and the bytes flow to the
 * upstream as they come.
 */
#include "conn.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cfgsnap.h"
#include "check.h"
#include "config.h"
#include "hdr.h"
#include "metrics.h"
#include "path.h"
#include "pipeline.h"
#include "upstream.h"
#include "util.h"

#define MAX_HEADERS 128

static atomic_uint nconns_total; /* open client connections, all workers */

static const struct hg_req_io conn_io;
static void early_refuse(struct hg_conn *c, int status, const char *why);
static void conn_read_cb(struct bufferevent *bev, void *arg);

static struct timeval ms_tv(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}
/* The worker's snapshot, refreshed when a reload published a new one. */
const struct hg_config *conn_worker_snap(struct hg_worker *w)
{
    uint64_t g = cfgsnap_generation();
    if (g != w->snap_gen) {
        const struct hg_config *old = w->snap;
        w->snap = cfgsnap_acquire();
        w->snap_gen = w->snap ? w->snap->generation : g;
        cfgsnap_release(old);
    }
    return w->snap ? w->snap : w->cfg; /* no snapshots (a test driving the codec): boot */
}
/* ---- connections ---- */

/* The client socket is read by the connection's own event (read_ev), the bufferevent only
 * writes: a read of the space at hand, where evbuffer_read first asks the kernel how many
 * bytes wait (an ioctl(FIONREAD) per request). Same semantics as the bufferevent's read
 * side: a persistent event whose timeout (read_timeout_ms, 0: none) restarts with every
 * read and every enable; on EOF, error or timeout reading stops and conn_event_cb hears of
 * it with BEV_EVENT_READING; reads go straight to conn_process. */
static void conn_read_enable(struct hg_conn *c)
{
    if (c->peer_eof)
        return; /* EOF stays readable: reading again would spin */
    if (c->read_timeout_ms) {
        struct timeval tv = ms_tv(c->read_timeout_ms);
        event_add(c->read_ev, &tv);
    } else if (c->read_on) {
        event_remove_timer(c->read_ev);
    } else {
        event_add(c->read_ev, NULL);
    }
    c->read_on = 1;
}

static void conn_read_disable(struct hg_conn *c)
{
    if (c->read_on) {
        event_del(c->read_ev);
        c->read_on = 0;
    }
}

static void conn_set_read_timeout(struct hg_conn *c, uint64_t ms)
{
    if (c->read_timeout_ms == ms)
        return; /* unchanged: spare the timer re-add */
    c->read_timeout_ms = ms;
    if (c->read_on)
        conn_read_enable(c);
}

static void conn_unlink(struct hg_conn *c)
{
    struct hg_worker *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    w->nconns--;
    atomic_fetch_sub(&nconns_total, 1);
    metrics_gauge_add(G_CONNECTIONS_OPEN, -1);
}

/* The client is gone (or we give up on it) while a request is attached. */
void conn_free(struct hg_conn *c)
{
    if (c->req) {
        struct hg_req *r = c->req;
        c->req = NULL;
        pipeline_client_gone(r);
    }
    struct hg_worker *w = c->w;
    conn_unlink(c);
    event_free(c->read_ev); /* before bufferevent_free closes the socket */
    event_free(c->flush_ev);
    evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
    bufferevent_free(c->bev);
    if (c->pending)
        evbuffer_free(c->pending);
    auth_memo_wipe(&c->auth);
    HG_OBJ_FINI(c);
    free(c);
    if (w->conn_closed)
        w->conn_closed(w); /* a descriptor / a connection slot is free again */
}

static void conn_close_after_write(struct hg_conn *c)
{
    c->state = CS_CLOSING;
    c->keepalive = 0;
    conn_read_disable(c);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_free(c);
}

/* Write a complete response on the connection (used for errors made by hotgate before or
 * without a hg_req, e.g. parse errors). Always closes afterwards. */
static void conn_error_close(struct hg_conn *c, int status, const char *message)
{
    char *body = util_api_error_json(status, NULL, message);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                        status, util_reason_phrase(status), strlen(body), body);
    free(body);
    conn_close_after_write(c);
}

/* A request body that stalled or trickled: 408 and close (the request, if it runs, loses its
 * client: a stream body whose answer has not started abandons its upstream exchange). */
static void body_timeout_close(struct hg_conn *c, const char *why)
{
    metrics_inc(M_BODY_TIMEOUTS, 1);
    if (c->req) {
        struct hg_req *r = c->req;
        c->req = NULL;
        r->status = 408;
        pipeline_client_gone(r);
    }
    conn_error_close(c, 408, why);
}

/* The body's minimum rate ([server] body_min_rate, mod_reqtimeout's MinRate): it must be whole
 * within body_timeout + bytes / rate of the request head. 1 when the client is too slow. */
static int body_too_slow(const struct hg_conn *c)
{
    const struct hg_config *cfg = c->w->cfg;
    const struct hg_req *r = c->req;
    if (!r || !cfg->server.body_min_rate || !cfg->server.body_timeout_ms || c->body_done)
        return 0;
    uint64_t since = c->body_clock_us ? c->body_clock_us : r->start_us;
    uint64_t bytes = r->bytes_in - c->body_clock_bytes;
    uint64_t elapsed_ms = (util_mono_us() - since) / 1000;
    uint64_t allowed_ms = cfg->server.body_timeout_ms + bytes * 1000 / cfg->server.body_min_rate;
    return elapsed_ms > allowed_ms;
}

static void body_clock_restart(struct hg_conn *c)
{
    c->body_clock_us = util_mono_us();
    c->body_clock_bytes = c->req ? c->req->bytes_in : 0;
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct hg_conn *c;
    HG_CAST_OBJ_NOTNULL(c, (struct hg_conn *)arg, CONN_MAGIC);
    if (what & BEV_EVENT_TIMEOUT) {
        if ((what & BEV_EVENT_READING) && c->state == CS_HEAD && c->head_bytes > 0) {
            early_refuse(c, 408, "timed out reading the request");
            return;
        }
        if ((what & BEV_EVENT_READING) &&
            (c->state == CS_BODY ||
             (c->state == CS_BUSY && c->req && c->req->body_kind == HG_BODY_STREAM &&
              !c->body_done && !c->resp_started))) {
            /* a body that stalled longer than body_timeout (memory body, or a stream body
             * whose answer has not started: its upstream exchange is abandoned) */
            body_timeout_close(c, "timed out reading the request body");
            return;
        }
    }
    if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING) && c->req && c->state == CS_BUSY &&
        c->body_done && (c->req->up || c->resp_started)) {
        /* the client half-closed (shutdown(SHUT_WR)) after a complete request that is
         * upstream or being answered: HTTP/1.1 lets it still read the answer (RFC 9112
         * 9.6), so answer, then close. A request still parked before the upstream (budget
         * queue, coalesced wait) is dropped instead: a FIN cannot tell a half-close from a
         * client that hung up, and a hung-up client must not spend upstream budget. */
        c->peer_eof = 1;
        c->keepalive = 0;
        conn_read_disable(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING) && !c->req &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
        /* a half-closed client whose answer is written but not yet flushed: flush, close */
        c->peer_eof = 1;
        conn_close_after_write(c);
        return;
    }
    conn_free(c); /* EOF, error, idle or write timeout */
}

/* Output went out (all of it, or down to the low watermark). */
static void conn_written(struct hg_conn *c)
{
    if (c->state == CS_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            conn_free(c);
        return;
    }
    if (c->drain_wanted && c->req) {
        c->drain_wanted = 0;
        if (c->drain_fn)
            c->drain_fn(c->req, c->drain_arg);
    }
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct hg_conn *c;
    HG_CAST_OBJ_NOTNULL(c, (struct hg_conn *)arg, CONN_MAGIC);
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE); /* back to direct writes (conn_flush_cb) */
    conn_written(c);
}

/* Write what the output holds now; a rest goes through the bufferevent (EV_WRITE). */
static void conn_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hg_conn *c;
    HG_CAST_OBJ_NOTNULL(c, (struct hg_conn *)arg, CONN_MAGIC);
    struct bufferevent *bev = c->bev;
    struct evbuffer *out = bufferevent_get_output(bev);
    c->flush_queued = 0;
    if (bufferevent_get_enabled(bev) & EV_WRITE)
        return; /* the bufferevent writes already */
    if (evbuffer_get_length(out) > 0) {
        evbuffer_unfreeze(out, 1); /* a socket bufferevent keeps its output's front frozen */
        int n = evbuffer_write(out, bufferevent_getfd(bev));
        evbuffer_freeze(out, 1);
        /* a rest, EAGAIN or an error: the bufferevent takes over (and reports an error
         * through conn_event_cb) */
        if (n < 0 || evbuffer_get_length(out) > 0) {
            bufferevent_enable(bev, EV_WRITE);
            return;
        }
    }
    conn_written(c);
}

static void conn_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct hg_conn *c;
    HG_CAST_OBJ_NOTNULL(c, (struct hg_conn *)arg, CONN_MAGIC);
    if (info->n_added && !c->flush_queued && !(bufferevent_get_enabled(c->bev) & EV_WRITE)) {
        c->flush_queued = 1;
        event_active(c->flush_ev, EV_TIMEOUT, 1);
    }
}

#define READ_SMALL 16384u /* a read into the worker's buffer, then copied... */
#define READ_LARGE 65536u /* ...or straight into the input after a read that filled it */

/* Requests are read into a per-worker buffer and appended: the input then gets a chain
 * the size of what came (as evbuffer_read makes it), not one the size of the space
 * offered (a 4 KB+ chain per request costs malloc more than the copy). A body streaming
 * in (a read filled the buffer) is read in place instead. */
static __thread unsigned char read_buf[READ_SMALL];

static void conn_sock_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hg_conn *c;
    HG_CAST_OBJ_NOTNULL(c, (struct hg_conn *)arg, CONN_MAGIC);
    if (what & EV_TIMEOUT) {
        conn_read_disable(c);
        conn_event_cb(c->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, c);
        return;
    }
    struct evbuffer *in = bufferevent_get_input(c->bev);
    ssize_t n;
    evbuffer_unfreeze(in, 0); /* a socket bufferevent keeps its input's end frozen */
    if (!c->read_full) {
        n = read(fd, read_buf, sizeof read_buf);
        if (n > 0) {
            evbuffer_add(in, read_buf, (size_t)n);
            explicit_bzero(read_buf, (size_t)n); /* it may hold a client key */
            c->read_full = (size_t)n == sizeof read_buf;
        }
    } else {
        struct evbuffer_iovec v[2];
        int nv = evbuffer_reserve_space(in, READ_LARGE, v, 2);
        if (nv <= 0)
            abort();
        struct iovec iov[2];
        size_t room = READ_LARGE;
        for (int i = 0; i < nv; i++) {
            size_t len = v[i].iov_len < room ? v[i].iov_len : room;
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = len;
            room -= len;
        }
        n = readv(fd, iov, nv);
        if (n > 0) {
            c->read_full = (size_t)n == READ_LARGE;
            size_t left = (size_t)n;
            for (int i = 0; i < nv; i++) {
                v[i].iov_len = left < iov[i].iov_len ? left : iov[i].iov_len;
                left -= v[i].iov_len;
            }
            evbuffer_commit_space(in, v, nv);
        }
    }
    evbuffer_freeze(in, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        conn_read_disable(c);
        conn_event_cb(c->bev, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), c);
        return;
    }
    conn_process(c);
}

void conn_new(struct hg_worker *w, evutil_socket_t fd)
{
    struct hg_conn *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    HG_OBJ_INIT(c, CONN_MAGIC);
    c->w = w;
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    atomic_fetch_add(&nconns_total, 1);
    metrics_gauge_add(G_CONNECTIONS_OPEN, 1);
    metrics_inc(M_CONNECTIONS_ACCEPTED, 1);
    c->read_timeout_ms = UINT64_MAX;
    c->read_ev = event_new(w->base, fd, EV_READ | EV_PERSIST, conn_sock_read_cb, c);
    c->flush_ev = event_new(w->base, -1, 0, conn_flush_cb, c);
    c->out_cb = evbuffer_add_cb(bufferevent_get_output(c->bev), conn_out_cb, c);
    if (!c->read_ev || !c->flush_ev || !c->out_cb)
        abort();
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_set_max_single_read(c->bev, 65536);
    bufferevent_set_max_single_write(c->bev, 262144);
    bufferevent_setwatermark(c->bev, EV_WRITE, PIPELINE_WRITE_HIGHWATER / 4, 0);
    struct timeval wt = ms_tv(w->cfg->server.write_timeout_ms);
    bufferevent_set_timeouts(c->bev, NULL, &wt);
    conn_set_read_timeout(c, w->cfg->server.read_timeout_ms);
    /* EV_WRITE (on from bufferevent_socket_new) only while a rest waits: conn_flush_cb;
     * the bufferevent never reads (conn_sock_read_cb does) */
    bufferevent_disable(c->bev, EV_WRITE);
    conn_read_enable(c);
}
/* evbuffer_readln(EVBUFFER_EOL_CRLF) into buf when the line fits (no malloc per head
 * line), else into a malloc'd copy; release with line_free(). */
static char *head_readln(struct evbuffer *in, size_t *ll, char *buf, size_t bufsz)
{
    /* the usual case: the line ends in the first chain (a head comes in one read) */
    struct evbuffer_iovec first;
    if (evbuffer_peek(in, -1, NULL, &first, 1) >= 1 && first.iov_len) {
        const char *d = first.iov_base;
        const char *nl = memchr(d, '\n', first.iov_len);
        if (nl) {
            /* what EVBUFFER_EOL_CRLF finds: the first LF, with the CR before it if any */
            size_t n = (size_t)(nl - d), eol_len = 1;
            if (n && d[n - 1] == '\r') {
                n--;
                eol_len = 2;
            }
            if (n < bufsz) {
                memcpy(buf, d, n);
                buf[n] = '\0';
                evbuffer_drain(in, n + eol_len);
                *ll = n;
                return buf;
            }
        }
    }
    size_t eol_len = 0;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
    if (eol.pos < 0)
        return NULL;
    size_t n = (size_t)eol.pos;
    char *line = n < bufsz ? buf : malloc(n + 1);
    if (!line)
        abort();
    evbuffer_remove(in, line, n);
    evbuffer_drain(in, eol_len);
    line[n] = '\0';
    *ll = n;
    return line;
}

static void line_free(char *line, const char *buf)
{
    if (line != buf)
        free(line);
}

/* ---- request head ---- */

/* The request line: a new request, its method, path and query. 0, or a status to refuse
 * with (the request exists then, for the access log, unless the line was malformed). */
static int on_request_line(struct hg_conn *c, char *line, const char **why)
{
    const char *method, *target;
    int minor;
    int st = http1_parse_request_line(line, &method, &target, &minor, why);
    if (st)
        return st;
    struct hg_req *r = pipeline_req_new(conn_worker_snap(c->w));
    r->conn = c;
    r->io = &conn_io;
    r->base = c->w->base;
    r->up_handle = c->w->up;
    r->alog = c->w->alog;
    r->auth_memo = &c->auth;
    c->req = r;
    r->http_minor = minor;
    r->method_name = strdup(method);
    if (!r->method_name)
        abort();
    if (!http1_method_known(method, &r->method)) {
        *why = "method not supported";
        return 405;
    }
    const char *reason = NULL;
    enum path_verdict v = path_check(target, strlen(target), &r->path, &r->query, &reason);
    if (v != PATH_OK) {
        *why = reason;
        metrics_inc(v == PATH_BAD ? M_REQUESTS_REFUSED_PATH : M_REQUESTS_NOT_FOUND, 1);
        /* keep what we can for the access log */
        if (!r->path && target[0] == '/') {
            size_t n = strcspn(target, "?");
            r->path = strndup(target, n > 200 ? 200 : n);
        }
        return (int)v;
    }
    return 0;
}

static int on_header_line(struct hg_conn *c, char *line, const char **why)
{
    const char *name, *value;
    size_t nl, vl;
    int drop;
    int st = http1_parse_header_line(line, &name, &nl, &value, &vl, &drop, why);
    if (st)
        return st;
    if (++c->nheaders > MAX_HEADERS) {
        *why = "too many headers";
        return 431;
    }
    if (drop) {
        metrics_inc(M_HEADERS_DROPPED_UNDERSCORE, 1);
        return 0;
    }
    /* evhttp_add_header's checks are looser than http1's */
    hdr_add(&c->req->headers, name, nl, value, vl);
    return 0;
}

/* After the blank line: framing, keep-alive, request id, body kind. 0 or a status. */
static int finish_head(struct hg_conn *c, const char **why)
{
    struct hg_req *r = c->req;
    const struct hg_config *cfg = c->w->cfg;
    struct http1_head_info hi;
    int st = http1_head_framing(&r->headers, r->http_minor, &hi, why);
    c->keepalive = hi.keepalive;
    if (st)
        return st;
    c->framing = hi.framing;
    c->body_left = hi.length;
    http1_chunked_init(&c->ck);
    r->body_length = hi.framing == HTTP1_BODY_CHUNKED ? -1 : (int64_t)hi.length;
    if (cfg->server.max_body_size && r->body_length > 0 &&
        (uint64_t)r->body_length > cfg->server.max_body_size) {
        *why = "request body larger than max_body_size";
        c->keepalive = 0;
        return 413;
    }
    if (hi.expect && strcasecmp(hi.expect, "100-continue") != 0) {
        *why = "unsupported Expect";
        return 417;
    }
    hdr_request_id(hi.request_id, r->request_id);
    hdr_strip_hop_by_hop(&r->headers);
    if (c->framing == HTTP1_BODY_NONE) {
        r->body_kind = HG_BODY_NONE;
    } else if (c->framing == HTTP1_BODY_LENGTH && c->body_left <= CONN_MEM_BODY_MAX) {
        r->body_kind = HG_BODY_MEMORY;
        r->body = evbuffer_new();
    } else {
        r->body_kind = HG_BODY_STREAM;
    }
    if (hi.expect && r->body_kind != HG_BODY_NONE && r->http_minor == 1)
        evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n");
    c->body_done = c->framing == HTTP1_BODY_NONE;
    c->body_clock_us = 0;
    c->body_clock_bytes = 0;
    return 0;
}

/* Answer a request that failed before the pipeline (the req exists). Closes. */
static void early_refuse(struct hg_conn *c, int status, const char *why)
{
    struct hg_req *r = c->req;
    if (!r) {
        conn_error_close(c, status, why);
        return;
    }
    c->keepalive = 0;
    if (!r->request_id[0])
        hdr_request_id(NULL, r->request_id);
    pipeline_respond_error(r, status, NULL, why, NULL);
}

/* ---- request body ---- */

const struct http1_chunk_limits conn_chunk_limits = {
    .size_line_max = 1024,
    .crlf_line_max = 0,
    .trailer_max = 8192,
    .hex_max = 15,
};

/* Decode body bytes from in to dst (at most max_out, at most what the framing allows).
 * Returns 0, or -1 on a malformed chunked body. */
static int body_decode(struct hg_conn *c, struct evbuffer *in, struct evbuffer *dst, size_t max_out)
{
    if (c->body_done)
        return 0;
    if (c->framing == HTTP1_BODY_LENGTH) {
        size_t n = evbuffer_get_length(in);
        if (n > c->body_left)
            n = (size_t)c->body_left;
        if (n > max_out)
            n = max_out;
        evbuffer_remove_buffer(in, dst, n);
        c->body_left -= n;
        c->body_done = c->body_left == 0;
        return 0;
    }
    if (http1_chunked_decode(&c->ck, in, dst, max_out, &conn_chunk_limits) != 0)
        return -1;
    c->body_done = http1_chunked_done(&c->ck);
    return 0;
}

static void stream_body_pump(struct hg_conn *c);

static void body_drain_cb(struct hg_conn *c)
{
    if (c->read_paused) {
        c->read_paused = 0;
        body_clock_restart(c); /* the pause was the upstream's, not the client's */
        conn_read_enable(c);
        stream_body_pump(c);
    }
}

/* The request body cannot go on (malformed, too large): the upstream gets an aborted body
 * and the client an error (or a cut, when its answer has started). */
static void body_refuse(struct hg_conn *c, int status, const char *why)
{
    struct hg_req *r = c->req;
    c->keepalive = 0;
    if (r->up) {
        struct upstream_req *u = r->up;
        r->up = NULL;
        upstream_cancel(u);
    }
    if (!r->responded)
        pipeline_respond_error(r, status, NULL, why, NULL);
    else if (status == 413)
        conn_close_after_write(c);
}

/* Stream body: decode what arrived and hand it to the upstream (or keep it pending). */
static void stream_body_pump(struct hg_conn *c)
{
    struct hg_req *r = c->req;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (!r || c->body_done)
        return;
    if (!c->pending)
        c->pending = evbuffer_new();
    size_t before = evbuffer_get_length(c->pending);
    if (body_decode(c, in, c->pending, CONN_READ_CHUNK_MAX * 4) != 0) {
        body_refuse(c, 400, "malformed chunked request body");
        return;
    }
    r->bytes_in += evbuffer_get_length(c->pending) - before;
    if (!c->resp_started && body_too_slow(c)) {
        body_timeout_close(c, "request body arrived below the minimum rate");
        return;
    }
    const struct hg_config *cfg = c->w->cfg;
    if (cfg->server.max_body_size && r->bytes_in > cfg->server.max_body_size) {
        body_refuse(c, 413, "request body larger than max_body_size");
        return;
    }
    size_t buffered = evbuffer_get_length(c->pending);
    if (r->up) {
        buffered = upstream_body_write(r->up, c->pending);
        if (c->body_done)
            upstream_body_end(r->up);
    }
    if (buffered >= UPSTREAM_BODY_HIGHWATER && !c->read_paused && !c->body_done) {
        c->read_paused = 1;
        conn_read_disable(c);
    }
}

/* ---- the read side ---- */

static void start_pipeline(struct hg_conn *c)
{
    struct hg_req *r = c->req;
    c->state = CS_BUSY;
    /* no read timeout while the request is processed: the upstream may take its time; a
     * stream body still arriving has body_timeout between its reads */
    conn_set_read_timeout(
        c, r->body_kind == HG_BODY_STREAM && !c->body_done ? c->w->cfg->server.body_timeout_ms : 0);
    pipeline_start(r);
}

/* Too large, or too slow: the answer for a head that has not ended yet. 1 when refused. */
static int head_incomplete(struct hg_conn *c, struct evbuffer *in)
{
    const struct hg_config *cfg = c->w->cfg;
    if (c->head_bytes + evbuffer_get_length(in) > cfg->server.max_header_size)
        early_refuse(c, c->req ? 431 : 414, "request head too large");
    else if (c->head_start_ms && util_mono_ms() - c->head_start_ms > cfg->server.read_timeout_ms)
        early_refuse(c, 408, "timed out reading the request head");
    else if (c->req)
        /* a head begun: read_timeout instead of the keepalive one (set here, when waiting,
         * not per line: a head read whole goes straight to the pipeline's timeout) */
        conn_set_read_timeout(c, cfg->server.read_timeout_ms);
    return 1;
}

enum line_verdict { LINE_MORE, LINE_STOP, LINE_HEAD_DONE };

/* One complete head line (ll bytes, NUL-free): request line, header, or the blank line. */
static enum line_verdict head_line(struct hg_conn *c, char *line, size_t ll)
{
    const char *why = NULL;
    int st;
    if (!c->req) {
        st = on_request_line(c, line, &why);
        if (st) {
            c->keepalive = 0;
            if (c->req)
                hdr_request_id(NULL, c->req->request_id);
            early_refuse(c, st, why);
            return LINE_STOP;
        }
        return LINE_MORE;
    }
    if (ll > 0) {
        int secret = strncasecmp(line, "Authorization", 13) == 0;
        st = on_header_line(c, line, &why);
        if (secret)
            util_wipe(line, ll); /* the client key must not linger in freed memory */
        if (st) {
            hdr_request_id(NULL, c->req->request_id);
            early_refuse(c, st, why);
            return LINE_STOP;
        }
        return LINE_MORE;
    }
    st = finish_head(c, &why);
    if (st) {
        if (!c->req->request_id[0])
            hdr_request_id(NULL, c->req->request_id);
        early_refuse(c, st, why);
        return LINE_STOP;
    }
    return LINE_HEAD_DONE;
}

/* CS_HEAD: read head lines. LINE_MORE: go on with the next state; LINE_STOP: return. */
static enum line_verdict read_head(struct hg_conn *c, struct evbuffer *in)
{
    const struct hg_config *cfg = c->w->cfg;
    char lbuf[1024]; /* head lines up to this long are read without a malloc */
    for (;;) {
        if (c->w->draining && c->head_bytes == 0) {
            conn_free(c);
            return LINE_STOP;
        }
        if (!c->head_start_ms && evbuffer_get_length(in) > 0)
            c->head_start_ms = util_mono_ms();
        size_t ll = 0;
        char *line = head_readln(in, &ll, lbuf, sizeof lbuf);
        if (!line) {
            head_incomplete(c, in);
            return LINE_STOP;
        }
        c->head_bytes += ll + 2;
        enum line_verdict v = LINE_STOP;
        if (c->head_bytes > cfg->server.max_header_size)
            /* same answer however the bytes were split across reads */
            early_refuse(c, c->req ? 431 : 414, "request head too large");
        else if (memchr(line, '\0', ll))
            /* C string functions would silently cut the line there */
            early_refuse(c, 400, "NUL byte in the request head");
        else if (!c->req && ll == 0 && c->head_bytes <= 4)
            /* blank lines before a request are tolerated (RFC 9112 2.2) */
            c->head_bytes = 0, v = LINE_MORE;
        else
            v = head_line(c, line, ll);
        line_free(line, lbuf);
        if (v == LINE_STOP)
            return LINE_STOP;
        if (v == LINE_HEAD_DONE) {
            if (c->req->body_kind == HG_BODY_MEMORY) {
                c->state = CS_BODY;
                return LINE_MORE;
            }
            start_pipeline(c);
            return LINE_STOP; /* conn may be gone; the response path continues processing */
        }
    }
}

/* CS_BODY: a memory body; the pipeline starts once it is whole. */
static void read_memory_body(struct hg_conn *c, struct evbuffer *in)
{
    struct hg_req *r = c->req;
    size_t before = evbuffer_get_length(r->body);
    body_decode(c, in, r->body, CONN_MEM_BODY_MAX + 1);
    r->bytes_in += evbuffer_get_length(r->body) - before;
    if (!c->body_done) {
        if (body_too_slow(c)) {
            body_timeout_close(c, "request body arrived below the minimum rate");
            return;
        }
        conn_set_read_timeout(c, c->w->cfg->server.body_timeout_ms);
        return;
    }
    start_pipeline(c);
}

void conn_process(struct hg_conn *c)
{
    HG_CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (c->state == CS_HEAD && read_head(c, in) == LINE_STOP)
        return;
    if (c->state == CS_BODY) {
        read_memory_body(c, in);
        return;
    }
    if (c->state == CS_BUSY) {
        if (c->req && c->req->body_kind == HG_BODY_STREAM && !c->body_done) {
            stream_body_pump(c);
            return;
        }
        /* pipelined data waits; don't buffer without bound */
        if (evbuffer_get_length(in) > c->w->cfg->server.max_header_size)
            conn_read_disable(c);
    }
    /* CS_CLOSING: ignore input */
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct hg_conn *c;
    HG_CAST_OBJ_NOTNULL(c, (struct hg_conn *)arg, CONN_MAGIC);
    conn_process(c);
}

/* ---- the write side: struct hg_req_io for the pipeline ---- */

static struct hg_conn *conn_of(struct hg_req *req)
{
    struct hg_conn *c = req->conn;
    HG_CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
    return c;
}

/* A response head is assembled in an outbuf (outbuf.h) and handed to the output buffer in
 * one evbuffer_add (no printf: formatting was a fifth of the CPU of a cache hit). */
static void io_head(struct hg_req *req, int status, const struct evkeyvalq *headers, int64_t cl,
                    const struct http1_field *fields, int nfields)
{
    struct hg_conn *c = conn_of(req);
    c->resp_started = 1;
    struct http1_resp h = {
        .http_minor = req->http_minor,
        .head_request = req->method == EVHTTP_REQ_HEAD,
        .status = status,
        .content_length = cl,
        .keepalive = c->keepalive && !c->w->draining && c->body_done,
    };
    struct outbuf hb;
    outbuf_init(&hb, bufferevent_get_output(c->bev));
    http1_write_response_head(&hb, &h, headers, req->request_id, fields, nfields);
    outbuf_flush(&hb);
    c->keepalive = h.keepalive;
    c->resp_chunked = h.chunked;
    c->resp_no_body = h.no_body;
}

static size_t io_data(struct hg_req *req, struct evbuffer *chunk)
{
    struct hg_conn *c = conn_of(req);
    size_t n = evbuffer_get_length(chunk);
    if (n == 0 || c->resp_no_body) {
        evbuffer_drain(chunk, n);
        return 0;
    }
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->resp_chunked)
        evbuffer_add_printf(out, "%zx\r\n", n);
    evbuffer_add_buffer(out, chunk);
    if (c->resp_chunked)
        evbuffer_add(out, "\r\n", 2);
    req->bytes_out += n;
    return evbuffer_get_length(out);
}

static void io_end(struct hg_req *req)
{
    struct hg_conn *c = conn_of(req);
    assert(c->resp_started);
    if (c->resp_chunked && !c->resp_no_body)
        evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
    c->resp_done = 1;
    if (!c->body_done)
        c->keepalive = 0; /* the rest of a request body we never read */
}

/* The response to the current request is complete (and logged): next request or close. */
static void io_finish(struct hg_req *r)
{
    struct hg_conn *c = conn_of(r);
    assert(c->req == r);
    c->req = NULL;
    r->conn = NULL;
    int reuse = c->keepalive && c->body_done && !c->w->draining && c->state != CS_CLOSING;
    pipeline_req_unref(r); /* the connection's reference */
    c->resp_started = c->resp_done = 0;
    c->drain_fn = NULL;
    c->drain_wanted = 0;
    if (!reuse) {
        conn_close_after_write(c);
        return;
    }
    c->state = CS_HEAD;
    c->head_bytes = 0;
    c->head_start_ms = 0;
    c->nheaders = 0;
    c->framing = HTTP1_BODY_NONE;
    c->read_paused = 0;
    /* (re)armed in one go: the keepalive timer starts now */
    c->read_timeout_ms = c->w->cfg->server.keepalive_timeout_ms;
    conn_read_enable(c);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        /* a pipelined request: from the loop, not from here (no recursion per request) */
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void io_on_drain(struct hg_req *req, void (*fn)(struct hg_req *, void *), void *arg)
{
    struct hg_conn *c = conn_of(req);
    c->drain_fn = fn;
    c->drain_arg = arg;
    c->drain_wanted = fn != NULL;
}

static void io_abort(struct hg_req *req)
{
    struct hg_conn *c = conn_of(req);
    c->keepalive = 0;
    pipeline_client_gone(req);
    c->req = NULL;
    conn_free(c);
}

static void io_no_reuse(struct hg_req *req)
{
    conn_of(req)->keepalive = 0;
}

static void io_body_to_upstream(struct hg_req *req, struct upstream_req *u)
{
    struct hg_conn *c = conn_of(req);
    if (c->pending && evbuffer_get_length(c->pending))
        upstream_body_write(u, c->pending);
    if (c->body_done) {
        upstream_body_end(u);
    } else {
        body_clock_restart(c); /* time in the queue or a wait is not the client's */
        stream_body_pump(c);
    }
}

static void io_body_drained(struct hg_req *req)
{
    body_drain_cb(conn_of(req));
}

static const struct hg_req_io conn_io = {
    .head = io_head,
    .data = io_data,
    .end = io_end,
    .finish = io_finish,
    .on_drain = io_on_drain,
    .abort = io_abort,
    .no_reuse = io_no_reuse,
    .body_to_upstream = io_body_to_upstream,
    .body_drained = io_body_drained,
};

/* ---- for the server ---- */

unsigned conn_total(void)
{
    return atomic_load(&nconns_total);
}

/* The oldest connection of this worker that waits for a request with nothing read and
 * nothing to write (an idle keep-alive one): closed to make room. 1 if one was closed. */
int conn_close_oldest_idle(struct hg_worker *w)
{
    struct hg_conn *last = w->conns, *victim = NULL;
    while (last && last->next)
        last = last->next;
    for (struct hg_conn *c = last; c; c = c->prev)
        if (c->state == CS_HEAD && c->head_bytes == 0 && !c->req &&
            evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
            victim = c;
            break;
        }
    if (!victim)
        return 0;
    metrics_inc(M_CONNECTIONS_IDLE_CLOSED_LIMIT, 1);
    conn_free(victim);
    return 1;
}
