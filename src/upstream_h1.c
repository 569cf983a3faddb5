/*
 * upstream_h1: hotgate's own HTTP/1.1 client, the transport of upstream.h for plain
 * http:// upstreams (upstream_impl.h says when it is picked). Same contract as the curl
 * transport; a fraction of its cost: per exchange on a pooled connection one writev for
 * head and body, one recv per readable event, no epoll_ctl (the read event of a pooled
 * connection stays registered while it is idle) and no timer syscalls.
 *
 * Connections: a per-worker pool to the one configured address, capped by
 * max_connections_per_host (requests beyond it wait in FIFO order), idle ones reused most
 * recent first, dropped after idle_timeout, closed at once when the server closes or sends
 * stray bytes while idle. A connection idle for over a second is peeked at before reuse.
 *
 * Responses: heads as h1resp.h reads them (up to 64 KiB); bodies framed by Content-Length,
 * chunked transfer coding (trailers dropped) or the end of the connection; 1xx heads
 * skipped; HEAD, 204 and 304 carry no body. Anything malformed fails the exchange
 * (502 UPSTREAM_UNAVAILABLE) and closes the connection; a connection is reused only when
 * the exchange ended cleanly with nothing left over.
 *
 * Requests: the head (with the injected bearer token) is built in memory this module owns
 * and wiped when the request is freed. Memory bodies go with Content-Length and are
 * replayable; stream bodies go with Content-Length when known, chunked otherwise.
 *
 * Failures and retries follow upstream.h through upstream_retry_allowed(). In addition,
 * like curl, a request that meets a dead pooled connection (closed by the server while
 * idle: write refused, or EOF / reset before any response byte) is sent once more on a
 * new connection when its body can be replayed. Connect timeouts are failures before any
 * request byte left, so they are retried too.
 *
 * Names: the host is resolved when the worker starts (getaddrinfo: auto mode picks this
 * transport only for IP literals and localhost), again after a resolution failure; every
 * address is tried in turn when connecting fails.
 *
 * Rules: one struct uh1 per worker thread. A callback into the caller may cancel its own
 * request (cb_depth marks it; the frame that called back cleans up) or start others; a
 * connection is released to the pool before on_done so that a request started from
 * on_done can reuse it, and the code never touches a connection after calling back
 * unless it checked that the request still owns it.
 */
#include "upstream.h"
#include "upstream_impl.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/http.h>

#include "config.h"
#include "h1resp.h"
#include "hdr.h"
#include "http1.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define H1_READ 65536 /* bytes per recv */
#define H1_IOV 32     /* iovecs per writev */
#define H1_MAX_ADDRS 8
#define H1_PEEK_AFTER_MS 1000 /* idle longer than this: peek before reuse */
#define H1_SPARE 64           /* freed requests kept per worker for reuse */

struct h1req;

struct h1conn {
    struct uh1 *up;
    evutil_socket_t fd;
    struct event *rev; /* EV_READ|EV_PERSIST: registered from connect to close */
    struct event *wev; /* EV_WRITE|EV_PERSIST: only while output is blocked or connecting */
    struct evbuffer *in;
    struct h1req *req; /* the exchange on this connection; NULL while idle */
    int connected;
    int addr_index;
    unsigned exchanges; /* completed exchanges: > 0 is a reused connection */
    uint64_t idle_since;
    int in_idle;
    int eof;     /* the server closed its side (seen while the exchange was paused) */
    int rd_err;  /* errno of a failed recv, 0 if none */
    int wr_fail; /* errno of a failed write, to be handled from the event loop */
    int broken;  /* writing failed: never reused */
    TAILQ_ENTRY(h1conn) idle_link;
};
TAILQ_HEAD(h1conn_list, h1conn);

enum rstate {
    RS_HEAD,
    RS_LEN,     /* Content-Length body: `remaining` bytes left */
    RS_CHUNKED, /* chunked body (http1.h's decoder, state in `ck`) */
    RS_CLOSE,   /* body up to the end of the connection */
    RS_DONE,
};

struct h1req {
    struct upstream_req base_; /* first: the front's view (upstream_impl.h) */
    struct uh1 *up;
    struct h1conn *conn;
    char *method; /* method_buf, or allocated when longer */
    char method_buf[16];
    char *target; /* prefix + target */
    size_t target_cap;
    int is_head;

    /* "Name: value\r\n" lines as added; then the whole head (built at send). Both can
     * hold the bearer token: wiped before they are freed. */
    struct util_buf hdrs;
    char *head;
    size_t head_len, head_off, head_cap;

    const unsigned char *mem; /* MEM: the body, contiguous */
    size_t mem_len, mem_off;
    int body_ended;
    uint64_t body_payload; /* STREAM: payload bytes accepted */
    uint64_t body_sent;    /* body bytes (wire) written */
    int body_taken;        /* a body byte was written */
    int producer_blocked;
    int req_done; /* every byte of the request was written */
    int sent_any; /* any byte of the request reached the network (this attempt) */

    const struct upstream_callbacks *cb;
    void *arg;

    /* response */
    enum rstate rs;
    int status;
    int keep_alive;
    uint64_t remaining;
    struct http1_chunked ck;
    struct evkeyvalq resp_headers;
    int head_delivered;
    int discarding;
    struct evbuffer *chunk;
    uint64_t bytes_in;
    uint64_t resp_bytes; /* response bytes received in this attempt */
    int recv_paused;

    int cb_depth;
    int cancelled;
    int attempts;
    int stale_retried;
    int force_new;             /* next dispatch opens a new connection */
    int addr_tries;            /* addresses tried in this attempt */
    int deferred_connect_fail; /* connect() failed at once: reported from the loop */
    int deferred_ai;
    long connects; /* connections opened for this attempt */
    uint64_t started_ms, progress_ms;
    struct event *timer;       /* connect timeout, then the stall timeout */
    struct event *retry_timer; /* backoff between attempts */
    struct event *drain_ev;    /* on_body_drain, from the loop */
    int waiting;
    TAILQ_ENTRY(h1req) wait_link;
    struct h1req *live_next, *live_prev;
};
TAILQ_HEAD(h1req_list, h1req);

struct uh1 {
    struct upstream base_; /* first: the front's view (upstream_impl.h) */
    struct event_base *base;
    const struct hg_config *cfg;
    char *host;     /* for getaddrinfo */
    char *port;     /* service */
    char *host_hdr; /* Host header value */
    char *prefix;   /* path prefix of [upstream] url, "" if none */
    struct sockaddr_storage addrs[H1_MAX_ADDRS];
    socklen_t addrlens[H1_MAX_ADDRS];
    int naddr;
    int cur_addr; /* the address that worked last */
    uint64_t resolve_failed_ms;
    unsigned inflight;
    uint64_t conns_opened;
    unsigned nconns; /* open connections: connecting, busy and idle */
    struct h1conn_list idle;
    struct h1req_list waiting;
    struct h1req *live;
    struct h1req *spare; /* freed requests kept for reuse (buffers, events), via live_next */
    int nspare;
    int destroying;
    struct event *sweep;
    const struct timeval *tv_stall; /* common timeouts (libevent): O(1) add/del */
    const struct timeval *tv_connect;
};

static void dispatch(struct h1req *u);
static void conn_close(struct h1conn *c);
static void process(struct h1conn *c);
static void finish(struct h1req *u, enum upstream_outcome o, const char *error);
static void req_free(struct h1req *u);
static void connect_failed(struct h1req *u, int addr_index);
static void abort_req(struct h1req *u);
static int flush(struct h1conn *c);

/* ---- names and addresses ---- */

static int resolve(struct uh1 *up)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    int rc = getaddrinfo(up->host, up->port, &hints, &res);
    if (rc != 0 && rc != EAI_SYSTEM) {
        hints.ai_flags = 0; /* AI_ADDRCONFIG hides loopback-only hosts on some boxes */
        rc = getaddrinfo(up->host, up->port, &hints, &res);
    }
    if (rc != 0) {
        log_msg(LOG_ERR, "upstream: cannot resolve %s: %s", up->host, gai_strerror(rc));
        up->resolve_failed_ms = util_mono_ms();
        up->naddr = 0;
        return -1;
    }
    up->naddr = 0;
    for (struct addrinfo *a = res; a && up->naddr < H1_MAX_ADDRS; a = a->ai_next) {
        if (a->ai_addrlen > sizeof up->addrs[0])
            continue;
        memcpy(&up->addrs[up->naddr], a->ai_addr, a->ai_addrlen);
        up->addrlens[up->naddr++] = a->ai_addrlen;
    }
    freeaddrinfo(res);
    up->cur_addr = 0;
    return up->naddr ? 0 : -1;
}

/* url: http://host[:port][/prefix] (validated by config.c) */
static int parse_url(struct uh1 *up, const char *url)
{
    if (strncmp(url, "http://", 7) != 0)
        return -1;
    const char *h = url + 7, *hend, *p;
    if (*h == '[') {
        hend = strchr(h, ']');
        if (!hend)
            return -1;
        up->host = strndup(h + 1, (size_t)(hend - h - 1));
        p = hend + 1;
    } else {
        hend = h + strcspn(h, ":/");
        up->host = strndup(h, (size_t)(hend - h));
        p = hend;
    }
    if (*p == ':') {
        size_t n = strcspn(p + 1, "/");
        up->port = strndup(p + 1, n);
        p += 1 + n;
    } else {
        up->port = strdup("80");
    }
    up->host_hdr = strndup(h, (size_t)(p - h)); /* host[:port] as written */
    up->prefix = strdup(p);                     /* "" or "/prefix" */
    if (!up->host || !up->port || !up->host_hdr || !up->prefix)
        abort();
    return *up->host ? 0 : -1;
}

/* ---- connections ---- */

static void conn_read_cb(evutil_socket_t fd, short what, void *arg);
static void conn_write_cb(evutil_socket_t fd, short what, void *arg);

static void idle_remove(struct h1conn *c)
{
    if (c->in_idle) {
        TAILQ_REMOVE(&c->up->idle, c, idle_link);
        c->in_idle = 0;
    }
}

/* Open a connection for u to address up->cur_addr. Returns NULL on an immediate failure
 * (errno set). */
static struct h1conn *conn_open(struct uh1 *up)
{
    if (up->naddr == 0 && util_mono_ms() - up->resolve_failed_ms >= 1000)
        resolve(up);
    if (up->naddr == 0) {
        errno = EHOSTUNREACH;
        return NULL;
    }
    int ai = up->cur_addr % up->naddr;
    const struct sockaddr *sa = (const struct sockaddr *)&up->addrs[ai];
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    if (connect(fd, sa, up->addrlens[ai]) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    struct h1conn *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->up = up;
    c->fd = fd;
    c->addr_index = ai;
    c->in = evbuffer_new();
    c->rev = event_new(up->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
    c->wev = event_new(up->base, fd, EV_WRITE | EV_PERSIST, conn_write_cb, c);
    if (!c->in || !c->rev || !c->wev)
        abort();
    event_add(c->wev, NULL); /* writable = connected (or failed) */
    up->nconns++;
    up->conns_opened++;
    metrics_inc(M_UPSTREAM_CONNECTIONS, 1);
    return c;
}

static void attach(struct h1req *u, struct h1conn *c)
{
    u->conn = c;
    c->req = u;
    c->eof = 0;
    c->rd_err = 0;
    c->wr_fail = 0;
}

/* Start a waiting request on c, or park c in the pool. c is open and has no exchange. */
static void conn_release(struct h1conn *c)
{
    struct uh1 *up = c->up;
    struct h1req *w = TAILQ_FIRST(&up->waiting);
    if (w) {
        TAILQ_REMOVE(&up->waiting, w, wait_link);
        w->waiting = 0;
        attach(w, c);
        /* from the loop: the caller of release may be deep in another exchange */
        event_active(c->wev, EV_WRITE, 0);
        return;
    }
    c->idle_since = util_mono_ms();
    TAILQ_INSERT_HEAD(&up->idle, c, idle_link);
    c->in_idle = 1;
}

/* A connection slot freed up: open one for the first waiting request. */
static void kick_waiters(struct uh1 *up)
{
    unsigned cap = up->cfg->upstream.max_connections_per_host;
    while (!TAILQ_EMPTY(&up->waiting) && (cap == 0 || up->nconns < cap)) {
        struct h1req *w = TAILQ_FIRST(&up->waiting);
        TAILQ_REMOVE(&up->waiting, w, wait_link);
        w->waiting = 0;
        w->force_new = 1;
        dispatch(w);
    }
}

/* Close c; its request (if any) is detached, not finished. */
static void conn_close(struct h1conn *c)
{
    struct uh1 *up = c->up;
    idle_remove(c);
    if (c->req) {
        c->req->conn = NULL;
        c->req = NULL;
    }
    event_free(c->rev);
    event_free(c->wev);
    evbuffer_free(c->in);
    close(c->fd);
    free(c);
    up->nconns--;
}

/* An idle connection fit for reuse, or NULL. */
static struct h1conn *pool_take(struct uh1 *up)
{
    struct h1conn *c;
    uint64_t now = 0;
    while ((c = TAILQ_FIRST(&up->idle))) {
        idle_remove(c);
        if (!now)
            now = util_mono_ms();
        uint64_t idle = now - c->idle_since;
        uint64_t max = up->cfg->upstream.idle_timeout_ms;
        if (max && idle >= max) {
            conn_close(c);
            continue;
        }
        if (idle >= H1_PEEK_AFTER_MS) {
            char b;
            ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) || n > 0) {
                conn_close(c); /* closed by the server, or stray bytes */
                continue;
            }
        }
        return c;
    }
    return NULL;
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct uh1 *up = arg;
    uint64_t max = up->cfg->upstream.idle_timeout_ms;
    if (!max)
        return;
    uint64_t now = util_mono_ms();
    struct h1conn *c, *next;
    for (c = TAILQ_FIRST(&up->idle); c; c = next) {
        next = TAILQ_NEXT(c, idle_link);
        if (now - c->idle_since >= max)
            conn_close(c);
    }
}

/* ---- timers ---- */

static void arm_timer(struct h1req *u, int connecting)
{
    struct uh1 *up = u->up;
    if (connecting && up->cfg->upstream.connect_timeout_ms)
        evtimer_add(u->timer, up->tv_connect);
    else if (up->cfg->upstream.timeout_ms)
        evtimer_add(u->timer, up->tv_stall);
    else
        evtimer_del(u->timer);
}

static void progress(struct h1req *u)
{
    u->progress_ms = util_mono_ms();
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1req *u = arg;
    struct h1conn *c = u->conn;
    uint64_t tmo = u->up->cfg->upstream.timeout_ms;
    if (u->deferred_connect_fail) {
        u->deferred_connect_fail = 0;
        connect_failed(u, u->deferred_ai);
        return;
    }
    if (c && !c->connected) {
        conn_close(c);
        finish(u, UPSTREAM_TIMEOUT, "connecting to the upstream timed out");
        return;
    }
    uint64_t now = util_mono_ms(), idle = now - u->progress_ms;
    if (u->recv_paused || idle < tmo) {
        /* progress since the timer was set, or the caller holds the transfer */
        uint64_t left = u->recv_paused ? tmo : tmo - idle;
        struct timeval tv = {(time_t)(left / 1000), (suseconds_t)((left % 1000) * 1000)};
        evtimer_add(u->timer, &tv);
        return;
    }
    if (c)
        conn_close(c);
    if (u->waiting) {
        TAILQ_REMOVE(&u->up->waiting, u, wait_link);
        u->waiting = 0;
    }
    finish(u, UPSTREAM_TIMEOUT, "no progress from the upstream within [upstream] timeout");
}

/* ---- the request side ---- */

/* Append one header line made of n parts to u->hdrs. */
static void hdrs_add(struct h1req *u, const char *const *part, const size_t *len, int n)
{
    size_t need = 2;
    for (int i = 0; i < n; i++)
        need += len[i];
    struct util_buf *b = &u->hdrs;
    util_buf_reserve(b, need); /* one check; the parts are copied in place */
    for (int i = 0; i < n; i++) {
        memcpy(b->p + b->len, part[i], len[i]);
        b->len += len[i];
    }
    memcpy(b->p + b->len, "\r\n", 3);
    b->len += 2;
}

static int method_has_body(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

static void build_head(struct h1req *u)
{
    struct uh1 *up = u->up;
    char framing[64] = "";
    if (u->base_.body_kind == UPSTREAM_BODY_MEM ||
        (u->base_.body_kind == UPSTREAM_BODY_NONE && method_has_body(u->method)))
        snprintf(framing, sizeof framing, "Content-Length: %zu\r\n", u->mem_len);
    else if (u->base_.body_kind == UPSTREAM_BODY_STREAM && u->base_.body_len >= 0)
        snprintf(framing, sizeof framing, "Content-Length: %lld\r\n", (long long)u->base_.body_len);
    else if (u->base_.body_kind == UPSTREAM_BODY_STREAM)
        snprintf(framing, sizeof framing, "Transfer-Encoding: chunked\r\n");
    size_t ml = strlen(u->method), tl = strlen(u->target), hl = strlen(up->host_hdr),
           fl = strlen(framing);
    size_t n = ml + 1 + tl + 11 + 6 + hl + 2 + u->hdrs.len + fl + 2;
    if (n > u->head_cap) {
        if (u->head) {
            util_wipe(u->head, u->head_cap);
            free(u->head);
        }
        u->head_cap = n < 1024 ? 1024 : n;
        u->head = malloc(u->head_cap);
        if (!u->head)
            abort();
    }
    char *h = u->head, *p = h;
    memcpy(p, u->method, ml);
    p += ml;
    *p++ = ' ';
    memcpy(p, u->target, tl);
    p += tl;
    memcpy(p, " HTTP/1.1\r\nHost: ", 17);
    p += 17;
    memcpy(p, up->host_hdr, hl);
    p += hl;
    memcpy(p, "\r\n", 2);
    p += 2;
    if (u->hdrs.len)
        memcpy(p, u->hdrs.p, u->hdrs.len);
    p += u->hdrs.len;
    memcpy(p, framing, fl);
    p += fl;
    memcpy(p, "\r\n", 2);
    p += 2;
    assert((size_t)(p - h) == n);
    u->head_len = n;
    util_buf_clear(&u->hdrs); /* wiped; the buffer stays for the next request */
}

static void drain_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1req *u = arg;
    if (u->cancelled || !u->producer_blocked)
        return;
    u->producer_blocked = 0;
    if (u->cb->on_body_drain) {
        u->cb_depth++;
        u->cb->on_body_drain(u->arg);
        u->cb_depth--;
        if (u->cancelled)
            abort_req(u);
    }
}

static int request_complete(const struct h1req *u)
{
    if (u->head_off < u->head_len)
        return 0;
    switch (u->base_.body_kind) {
    case UPSTREAM_BODY_NONE:
        return 1;
    case UPSTREAM_BODY_MEM:
        return u->mem_off == u->mem_len;
    case UPSTREAM_BODY_STREAM:
        return u->body_ended && evbuffer_get_length(u->base_.body) == 0;
    }
    return 0;
}

/* Write what the request has ready. 0: written or waiting for the socket / the producer;
 * -1: the connection failed (errno). Never calls back. */
static int flush(struct h1conn *c)
{
    struct h1req *u = c->req;
    for (;;) {
        if (request_complete(u)) {
            u->req_done = 1;
            break;
        }
        struct iovec iov[H1_IOV];
        int n = 0;
        size_t head_left = u->head_len - u->head_off;
        if (head_left) {
            iov[n].iov_base = u->head + u->head_off;
            iov[n++].iov_len = head_left;
        }
        if (u->base_.body_kind == UPSTREAM_BODY_MEM && u->mem_off < u->mem_len) {
            iov[n].iov_base = (void *)(u->mem + u->mem_off);
            iov[n++].iov_len = u->mem_len - u->mem_off;
        } else if (u->base_.body_kind == UPSTREAM_BODY_STREAM &&
                   evbuffer_get_length(u->base_.body)) {
            struct evbuffer_iovec ev[H1_IOV - 1];
            int k = evbuffer_peek(u->base_.body, -1, NULL, ev, H1_IOV - 1);
            if (k > H1_IOV - 1)
                k = H1_IOV - 1;
            for (int i = 0; i < k; i++) {
                iov[n].iov_base = ev[i].iov_base;
                iov[n++].iov_len = ev[i].iov_len;
            }
        }
        if (n == 0)
            break; /* a stream body with nothing buffered yet */
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!event_pending(c->wev, EV_WRITE, NULL))
                    event_add(c->wev, NULL);
                return 0;
            }
            return -1;
        }
        u->sent_any = 1;
        progress(u);
        size_t left = (size_t)w;
        size_t h = left < head_left ? left : head_left;
        u->head_off += h;
        left -= h;
        if (left) {
            u->body_taken = 1;
            u->body_sent += left;
            if (u->base_.body_kind == UPSTREAM_BODY_MEM)
                u->mem_off += left;
            else
                evbuffer_drain(u->base_.body, left);
        }
        if (u->base_.body_kind == UPSTREAM_BODY_STREAM && u->producer_blocked &&
            evbuffer_get_length(u->base_.body) < UPSTREAM_BODY_HIGHWATER / 2)
            event_active(u->drain_ev, 0, 0);
    }
    if (event_pending(c->wev, EV_WRITE, NULL))
        event_del(c->wev);
    return 0;
}

/* A write failed outside the loop's write callback: handle it from the loop. */
static void flush_or_defer(struct h1conn *c)
{
    if (flush(c) != 0) {
        c->wr_fail = errno ? errno : EPIPE;
        event_active(c->wev, EV_WRITE, 0);
    }
}

/* ---- failures ---- */

static int replayable(const struct h1req *u)
{
    return u->base_.body_kind != UPSTREAM_BODY_STREAM || !u->body_taken;
}

/* Forget the response side and the write progress of an attempt. */
static void reset_exchange(struct h1req *u)
{
    u->head_off = 0;
    u->mem_off = 0;
    u->sent_any = 0;
    u->req_done = 0;
    u->rs = RS_HEAD;
    u->status = 0;
    u->keep_alive = 0;
    u->remaining = 0;
    u->resp_bytes = 0;
    u->head_delivered = 0;
    u->discarding = 0;
    u->recv_paused = 0;
    evhttp_clear_headers(&u->resp_headers);
}

/* Connecting failed (now, or deferred): the next address, else the attempt fails. */
static void connect_failed(struct h1req *u, int addr_index)
{
    struct uh1 *up = u->up;
    u->addr_tries++;
    if (up->naddr > 1 && u->addr_tries < up->naddr) {
        up->cur_addr = (addr_index + 1) % up->naddr;
        u->force_new = 1;
        dispatch(u);
        return;
    }
    finish(u, UPSTREAM_CONNECT_ERROR, "could not connect to the upstream");
}

/* The connection of an exchange broke after it was established. */
static void conn_broke(struct h1conn *c, const char *what)
{
    struct h1req *u = c->req;
    int reused = c->exchanges > 0;
    conn_close(c);
    if (!u)
        return;
    if (!u->head_delivered && reused && u->resp_bytes == 0 && !u->stale_retried && replayable(u)) {
        /* a pooled connection the server had closed: once more on a new one */
        u->stale_retried = 1;
        reset_exchange(u);
        u->force_new = 1;
        dispatch(u);
        return;
    }
    finish(u, UPSTREAM_PROTOCOL_ERROR, what);
}

/* The request u was cancelled and nothing of it may run on: drop it. */
static void abort_req(struct h1req *u)
{
    struct uh1 *up = u->up;
    if (u->conn)
        conn_close(u->conn);
    metrics_upstream_done(UPSTREAM_CANCELLED, u->status);
    req_free(u);
    kick_waiters(up);
}

/* A write failed: whatever answer already arrived is still read, else the exchange
 * failed. */
static void write_failed(struct h1conn *c, int err)
{
    struct h1req *u = c->req;
    c->wr_fail = 0;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(c->in, H1_READ, &v, 1) == 1) {
        ssize_t n = recv(c->fd, v.iov_base, v.iov_len, MSG_DONTWAIT);
        if (n > 0) {
            v.iov_len = (size_t)n;
            evbuffer_commit_space(c->in, &v, 1);
            u->resp_bytes += (uint64_t)n;
        }
    }
    if (u->resp_bytes == 0) {
        conn_broke(c, err == ECONNRESET ? "the upstream reset the connection"
                                        : "the upstream closed the connection");
        return;
    }
    /* an early answer (say 413 to an upload): read it to its end like any other (the read
     * event stays registered); no more writing, no reuse */
    u->req_done = 1;
    u->keep_alive = 0;
    c->broken = 1;
    if (event_pending(c->wev, EV_WRITE, NULL))
        event_del(c->wev);
    process(c);
}

/* ---- the response side ---- */

/* Parse a response head from c->in (h1resp.h). 1: parsed (state set, head kept in u), 0:
 * incomplete, -1: malformed. */
static int parse_head(struct h1req *u, struct h1conn *c)
{
    size_t avail = evbuffer_get_length(c->in);
    size_t scan = avail < H1RESP_HEAD_MAX ? avail : H1RESP_HEAD_MAX;
    const char *b = (const char *)evbuffer_pullup(c->in, (ev_ssize_t)scan);
    if (!b)
        return 0;
    long end = h1resp_head_len(b, avail);
    if (end <= 0)
        return (int)end;
    evhttp_clear_headers(&u->resp_headers);
    struct h1resp_head h;
    int rc = h1resp_parse(b, (size_t)end, u->is_head, &h, &u->resp_headers);
    evbuffer_drain(c->in, (size_t)end);
    if (rc != 0)
        return -1;
    u->status = h.status;
    if (h.status < 200) {
        evhttp_clear_headers(&u->resp_headers);
        return 1; /* 1xx: the real answer follows */
    }
    u->keep_alive = h.keep_alive;
    switch (h.framing) {
    case H1F_NONE:
        u->rs = RS_DONE;
        break;
    case H1F_LENGTH:
        u->remaining = h.length;
        u->rs = RS_LEN;
        break;
    case H1F_CHUNKED:
        u->rs = RS_CHUNKED;
        http1_chunked_init(&u->ck);
        break;
    case H1F_CLOSE:
        u->rs = RS_CLOSE;
        break;
    }
    if ((h.status == 502 || h.status == 503) && strcmp(u->method, "GET") == 0 &&
        upstream_retry_allowed(u->up->cfg, u->base_.no_retry, u->attempts, u->started_ms))
        u->discarding = 1;
    return 1;
}

/* The chunked decoder's limits for upstream responses: lines up to 4 KB, any number of
 * hex digits up to 2^62. */
static const struct http1_chunk_limits h1_chunk_limits = {
    .size_line_max = 4096,
    .crlf_line_max = 4096,
    .trailer_max = 4096,
    .hex_max = 0,
};

/* Deliver the body bytes in u->chunk. 0, or -1 when the request was cancelled (already
 * dropped). */
static int deliver_chunk(struct h1req *u, struct h1conn *c)
{
    u->bytes_in += evbuffer_get_length(u->chunk);
    u->cb_depth++;
    int rc = u->cb->on_data ? u->cb->on_data(u->arg, u->chunk) : 0;
    u->cb_depth--;
    evbuffer_drain(u->chunk, evbuffer_get_length(u->chunk));
    if (u->cancelled) {
        abort_req(u);
        return -1;
    }
    if (rc == UPSTREAM_PAUSE && !u->recv_paused) {
        u->recv_paused = 1;
        event_del(c->rev);
    }
    return 0;
}

/* Deliver n body bytes from c->in. */
static int deliver(struct h1req *u, struct h1conn *c, size_t n)
{
    evbuffer_remove_buffer(c->in, u->chunk, n);
    return deliver_chunk(u, c);
}

/* The response is complete. */
static void complete(struct h1conn *c)
{
    struct h1req *u = c->req;
    int reuse = u->keep_alive && u->req_done && !c->eof && !c->rd_err && !c->broken &&
                evbuffer_get_length(c->in) == 0;
    c->exchanges++;
    c->req = NULL;
    u->conn = NULL;
    if (reuse)
        conn_release(c);
    else
        conn_close(c);
    finish(u, UPSTREAM_OK, NULL);
}

enum step { STEP_ON, STEP_MORE, STEP_STOP }; /* go on / need more bytes / finished or gone */

/* RS_HEAD: a response head; a final one goes to on_head. */
static enum step step_head(struct h1req *u, struct h1conn *c)
{
    int r = parse_head(u, c);
    if (r < 0) {
        u->keep_alive = 0;
        conn_close(c);
        finish(u, UPSTREAM_PROTOCOL_ERROR, "malformed response head from the upstream");
        return STEP_STOP;
    }
    if (r == 0)
        return STEP_MORE;
    if (u->status < 200)
        return STEP_ON;
    if (u->discarding) {
        /* a GET answered 502/503 with retries left: swallowed, sent again */
        conn_close(c);
        finish(u, UPSTREAM_OK, NULL);
        return STEP_STOP;
    }
    hdr_strip_hop_by_hop(&u->resp_headers);
    u->head_delivered = 1;
    u->cb_depth++;
    r = u->cb->on_head ? u->cb->on_head(u->arg, u->status, &u->resp_headers) : 0;
    u->cb_depth--;
    if (r < 0)
        u->cancelled = 1;
    if (u->cancelled) {
        abort_req(u);
        return STEP_STOP;
    }
    return STEP_ON;
}

/* RS_CHUNKED: decode what arrived (http1.h) and deliver the data. */
static enum step step_chunked(struct h1req *u, struct h1conn *c)
{
    size_t before = evbuffer_get_length(c->in);
    int r = http1_chunked_decode(&u->ck, c->in, u->chunk, SIZE_MAX, &h1_chunk_limits);
    if (r != 0) {
        conn_close(c);
        finish(u, UPSTREAM_PROTOCOL_ERROR,
               r == HTTP1_CHUNK_BAD_TRAILER ? "malformed chunked trailer from the upstream"
                                            : "malformed chunked body from the upstream");
        return STEP_STOP;
    }
    if (http1_chunked_done(&u->ck))
        u->rs = RS_DONE; /* trailers themselves are dropped */
    if (evbuffer_get_length(u->chunk) && deliver_chunk(u, c) < 0)
        return STEP_STOP;
    if (u->rs != RS_DONE && evbuffer_get_length(c->in) == before)
        return STEP_MORE;
    return STEP_ON;
}

/* One step of the response parser. */
static enum step step(struct h1req *u, struct h1conn *c)
{
    size_t avail = evbuffer_get_length(c->in);
    switch (u->rs) {
    case RS_HEAD:
        return step_head(u, c);
    case RS_LEN: {
        if (!avail)
            return STEP_MORE;
        size_t n = avail < u->remaining ? avail : (size_t)u->remaining;
        u->remaining -= n;
        if (u->remaining == 0)
            u->rs = RS_DONE;
        return deliver(u, c, n) < 0 ? STEP_STOP : STEP_ON;
    }
    case RS_CLOSE:
        if (!avail)
            return STEP_MORE;
        return deliver(u, c, avail) < 0 ? STEP_STOP : STEP_ON;
    case RS_CHUNKED:
        if (!avail)
            return STEP_MORE;
        return step_chunked(u, c);
    case RS_DONE:
        complete(c);
        return STEP_STOP;
    }
    return STEP_STOP;
}

/* No more bytes for now: at the end of the connection, the end or a break. */
static void need_more(struct h1req *u, struct h1conn *c)
{
    if (!c->rd_err && !c->eof)
        return;
    if (u->rs == RS_CLOSE && !c->rd_err) {
        u->keep_alive = 0;
        complete(c);
        return;
    }
    if (!c->rd_err && c->eof && u->rs == RS_HEAD && u->resp_bytes == 0)
        conn_broke(c, "the upstream closed the connection");
    else if (u->rs == RS_HEAD && u->resp_bytes == 0)
        conn_broke(c, "the upstream reset the connection");
    else
        conn_broke(c, "the upstream connection broke before the response was complete");
}

/* Run the response parser over what c->in holds. */
static void process(struct h1conn *c)
{
    struct h1req *u = c->req;
    while (!u->recv_paused) {
        enum step r = step(u, c);
        if (r == STEP_STOP)
            return;
        if (r == STEP_MORE) {
            need_more(u, c);
            return;
        }
    }
    /* paused: upstream_resume() carries on */
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1conn *c = arg;
    struct h1req *u = c->req;
    if (!u) {
        conn_close(c); /* idle: the server closed it, or sent stray bytes */
        return;
    }
    if (u->recv_paused)
        return;
    if (!c->eof && !c->rd_err) {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(c->in, H1_READ, &v, 1) != 1)
            abort();
        ssize_t n = recv(fd, v.iov_base, v.iov_len, 0);
        if (n > 0) {
            v.iov_len = (size_t)n;
            evbuffer_commit_space(c->in, &v, 1);
            u->resp_bytes += (uint64_t)n;
            progress(u);
        } else if (n == 0) {
            c->eof = 1;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            c->rd_err = errno;
        }
    }
    process(c);
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1conn *c = arg;
    struct h1req *u = c->req;
    if (!u || c->broken) {
        event_del(c->wev); /* nothing (more) to write on it */
        return;
    }
    if (c->wr_fail) {
        write_failed(c, c->wr_fail);
        return;
    }
    if (!c->connected) {
        int err = 0;
        socklen_t l = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0)
            err = errno;
        if (err) {
            int ai = c->addr_index;
            conn_close(c);
            connect_failed(u, ai);
            return;
        }
        c->connected = 1;
        c->up->cur_addr = c->addr_index;
        event_add(c->rev, NULL);
        progress(u);
        arm_timer(u, 0);
    }
    if (flush(c) != 0)
        write_failed(c, errno);
}

/* ---- exchanges ---- */

static void dispatch(struct h1req *u)
{
    struct uh1 *up = u->up;
    struct h1conn *c = u->force_new ? NULL : pool_take(up);
    u->force_new = 0;
    if (c) {
        attach(u, c);
        arm_timer(u, 0);
        flush_or_defer(c);
        return;
    }
    unsigned cap = up->cfg->upstream.max_connections_per_host;
    if (cap && up->nconns >= cap) {
        struct h1conn *old = TAILQ_LAST(&up->idle, h1conn_list);
        if (old) {
            conn_close(old); /* room for a new connection */
        } else {
            TAILQ_INSERT_TAIL(&up->waiting, u, wait_link);
            u->waiting = 1;
            arm_timer(u, 0);
            return;
        }
    }
    int ai = up->naddr ? up->cur_addr % up->naddr : 0;
    c = conn_open(up);
    if (!c) {
        /* reported from the loop, never from inside upstream_send() */
        u->deferred_ai = ai;
        u->deferred_connect_fail = 1;
        event_active(u->timer, EV_TIMEOUT, 0);
        return;
    }
    u->connects++;
    attach(u, c);
    arm_timer(u, 1);
}

static void attempt(struct h1req *u)
{
    u->attempts++;
    if (u->attempts > 1)
        metrics_inc(M_UPSTREAM_RETRIES, 1);
    reset_exchange(u);
    u->connects = 0;
    u->addr_tries = 0;
    u->stale_retried = 0;
    progress(u);
    dispatch(u);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    attempt(arg);
}

/* The attempt ended (u has no connection any more): retry, or report and free. */
static void finish(struct h1req *u, enum upstream_outcome o, const char *error)
{
    struct uh1 *up = u->up;
    assert(!u->conn);
    evtimer_del(u->timer);
    int sent = u->sent_any || u->body_taken;
    struct upstream_attempt_end e = {
        .outcome = o,
        .discarding = u->discarding,
        .head_delivered = u->head_delivered,
        .replayable = replayable(u),
        .sent = sent,
        .no_retry = u->base_.no_retry,
        .attempts = u->attempts,
        .started_ms = u->started_ms,
    };
    metrics_upstream_done(o, u->status);
    if (upstream_retry_decide(up->cfg, &e)) {
        if (e.discarding && u->cb->on_retry) /* the upstream did the work of an answer */
            u->cb->on_retry(u->arg);
        upstream_retry_arm(up->base, up->cfg, &u->retry_timer, retry_cb, u, u->method, &e,
                           u->status);
        kick_waiters(up);
        return;
    }
    struct upstream_result r = {0};
    r.outcome = o;
    r.http_status = u->head_delivered ? u->status : 0;
    if (o == UPSTREAM_OK && !u->head_delivered)
        r.outcome = UPSTREAM_PROTOCOL_ERROR;
    r.attempts = u->attempts;
    r.request_sent = sent;
    r.body_started = u->body_taken;
    r.curl_code = 0;
    r.bytes_in = u->bytes_in;
    r.bytes_out = u->base_.body_kind == UPSTREAM_BODY_MEM ? u->mem_len
                  : u->base_.body_kind == UPSTREAM_BODY_STREAM
                      ? (u->req_done ? u->body_payload : u->body_sent)
                      : 0;
    r.num_connects = u->connects;
    r.error = error ? error : (r.outcome == UPSTREAM_OK ? "ok" : "malformed response");
    upstream_report_done(u->cb, u->arg, &u->cb_depth, &r, u->method);
    req_free(u);
    kick_waiters(up);
}

/* ---- the contract of upstream.h ---- */

static struct h1req *R(struct upstream_req *ur)
{
    return (struct h1req *)ur;
}

static struct upstream_req *h1_req_new(struct upstream *upb, const char *method, const char *target)
{
    struct uh1 *up = (struct uh1 *)upb;
    struct h1req *u = up->spare;
    if (u) {
        up->spare = u->live_next;
        up->nspare--;
        u->live_next = NULL;
    } else {
        u = calloc(1, sizeof *u);
        if (!u)
            abort();
        u->chunk = evbuffer_new();
        u->timer = evtimer_new(up->base, timer_cb, u);
        if (!u->chunk || !u->timer)
            abort();
    }
    u->up = up;
    size_t ml = strlen(method);
    u->method = ml < sizeof u->method_buf ? memcpy(u->method_buf, method, ml + 1) : strdup(method);
    size_t pl = strlen(up->prefix), tl = strlen(target);
    if (pl + tl + 1 > u->target_cap) {
        free(u->target);
        u->target_cap = pl + tl + 1 < 256 ? 256 : pl + tl + 1;
        u->target = malloc(u->target_cap);
    }
    if (!u->method || !u->target)
        abort();
    memcpy(u->target, up->prefix, pl);
    memcpy(u->target + pl, target, tl + 1);
    u->is_head = strcmp(method, "HEAD") == 0;
    TAILQ_INIT(&u->resp_headers);
    up->inflight++;
    metrics_gauge_add(G_UPSTREAM_INFLIGHT, 1);
    u->live_next = up->live;
    if (up->live)
        up->live->live_prev = u;
    up->live = u;
    return &u->base_;
}

static int h1_add_header(struct upstream_req *ur, const char *name, const char *value)
{
    size_t nl = strlen(name);
    if (!hdr_name_ok(name, nl) || !hdr_value_ok(value))
        return -1;
    const char *part[] = {name, ": ", value};
    size_t len[] = {nl, 2, strlen(value)};
    hdrs_add(R(ur), part, len, 3);
    return 0;
}

static int h1_set_bearer(struct upstream_req *ur, const char *token, size_t token_len)
{
    const char *part[] = {"Authorization: Bearer ", token};
    size_t len[] = {22, token_len};
    hdrs_add(R(ur), part, len, 2);
    return 0;
}

static int h1_send(struct upstream_req *ur, const struct upstream_callbacks *cb, void *arg)
{
    struct h1req *u = R(ur);
    u->cb = cb;
    u->arg = arg;
    u->started_ms = util_mono_ms();
    if (u->base_.body_kind == UPSTREAM_BODY_STREAM && !u->drain_ev)
        u->drain_ev = event_new(u->up->base, -1, 0, drain_ev_cb, u);
    if (u->base_.body_kind == UPSTREAM_BODY_MEM) {
        u->mem_len = evbuffer_get_length(u->base_.body);
        u->mem = u->mem_len ? evbuffer_pullup(u->base_.body, -1) : NULL;
    }
    build_head(u);
    attempt(u);
    return 0;
}

/* Stream bodies: wake the writer from the loop (never a callback from here). */
static void want_write(struct h1req *u)
{
    struct h1conn *c = u->conn;
    if (c && c->connected && !c->wr_fail && !c->broken && !event_pending(c->wev, EV_WRITE, NULL))
        event_active(c->wev, EV_WRITE, 0);
}

static size_t h1_body_write(struct upstream_req *ur, struct evbuffer *data)
{
    struct h1req *u = R(ur);
    assert(u->base_.body_kind == UPSTREAM_BODY_STREAM);
    size_t n = evbuffer_get_length(data);
    if (n && u->base_.body_len < 0) {
        char sz[24];
        int l = snprintf(sz, sizeof sz, "%zx\r\n", n);
        evbuffer_add(u->base_.body, sz, (size_t)l);
        evbuffer_add_buffer(u->base_.body, data);
        evbuffer_add(u->base_.body, "\r\n", 2);
    } else {
        evbuffer_add_buffer(u->base_.body, data);
    }
    u->body_payload += n;
    want_write(u);
    size_t left = evbuffer_get_length(u->base_.body);
    if (left >= UPSTREAM_BODY_HIGHWATER)
        u->producer_blocked = 1;
    return left;
}

static void h1_body_end(struct upstream_req *ur)
{
    struct h1req *u = R(ur);
    assert(u->base_.body_kind == UPSTREAM_BODY_STREAM);
    if (u->body_ended)
        return;
    u->body_ended = 1;
    if (u->base_.body_len < 0)
        evbuffer_add(u->base_.body, "0\r\n\r\n", 5);
    want_write(u);
}

static void h1_resume(struct upstream_req *ur)
{
    struct h1req *u = R(ur);
    if (!u->recv_paused)
        return;
    u->recv_paused = 0;
    struct h1conn *c = u->conn;
    if (c) {
        event_add(c->rev, NULL);
        event_active(c->rev, EV_READ, 0); /* what is buffered, from the loop */
    }
}

static void h1_cancel(struct upstream_req *ur)
{
    struct h1req *u = R(ur);
    if (u->cancelled)
        return;
    u->cancelled = 1;
    if (u->cb_depth > 0)
        return; /* the frame that called back drops it */
    abort_req(u);
}

static int h1_sent(const struct upstream_req *ur)
{
    const struct h1req *u = (const struct h1req *)ur;
    return u->sent_any || u->body_taken;
}

/* Free a request's kept resources and the request itself. */
static void spare_destroy(struct h1req *u)
{
    evbuffer_free(u->chunk);
    event_free(u->timer);
    if (u->retry_timer)
        event_free(u->retry_timer);
    util_buf_free(&u->hdrs);
    free(u->head);
    free(u->target);
    free(u);
}

static void req_free(struct h1req *u)
{
    struct uh1 *up = u->up;
    if (u->live_prev)
        u->live_prev->live_next = u->live_next;
    else
        up->live = u->live_next;
    if (u->live_next)
        u->live_next->live_prev = u->live_prev;
    if (u->waiting)
        TAILQ_REMOVE(&up->waiting, u, wait_link);
    if (u->conn)
        conn_close(u->conn);
    /* the request head holds the token: wiped whether the buffers stay or go */
    util_buf_clear(&u->hdrs);
    util_wipe(u->head, u->head_len);
    evhttp_clear_headers(&u->resp_headers);
    if (u->base_.body)
        evbuffer_free(u->base_.body);
    if (u->drain_ev)
        event_free(u->drain_ev);
    if (u->method != u->method_buf)
        free(u->method);
    up->inflight--;
    metrics_gauge_add(G_UPSTREAM_INFLIGHT, -1);
    if (up->nspare < H1_SPARE && !up->destroying) {
        /* kept: the response buffer, the timers and the head/target buffers */
        struct h1req keep = *u;
        evbuffer_drain(keep.chunk, evbuffer_get_length(keep.chunk));
        evtimer_del(keep.timer);
        if (keep.retry_timer)
            evtimer_del(keep.retry_timer);
        memset(u, 0, sizeof *u);
        u->chunk = keep.chunk;
        u->timer = keep.timer;
        u->retry_timer = keep.retry_timer;
        u->hdrs = keep.hdrs; /* cleared above: len 0 */
        u->head = keep.head;
        u->head_cap = keep.head_cap;
        u->target = keep.target;
        u->target_cap = keep.target_cap;
        u->live_next = up->spare;
        up->spare = u;
        up->nspare++;
        return;
    }
    spare_destroy(u);
}

/* ---- the handle ---- */

static struct timeval ms_tv(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

static struct upstream *h1_new(struct event_base *base, const struct hg_config *cfg)
{
    struct uh1 *up = calloc(1, sizeof *up);
    if (!up)
        abort();
    up->base = base;
    up->cfg = cfg;
    TAILQ_INIT(&up->idle);
    TAILQ_INIT(&up->waiting);
    if (parse_url(up, cfg->upstream.url) != 0) {
        log_msg(LOG_ERR, "upstream: the native client needs an http://host[:port] url");
        free(up->host);
        free(up->port);
        free(up->host_hdr);
        free(up->prefix);
        free(up);
        return NULL;
    }
    resolve(up); /* a failure is logged and tried again when connecting */
    struct timeval tv = ms_tv(cfg->upstream.timeout_ms);
    up->tv_stall = event_base_init_common_timeout(base, &tv);
    tv = ms_tv(cfg->upstream.connect_timeout_ms);
    up->tv_connect = event_base_init_common_timeout(base, &tv);
    up->sweep = event_new(base, -1, EV_PERSIST, sweep_cb, up);
    tv = ms_tv(1000);
    event_add(up->sweep, &tv);
    return &up->base_;
}

static void h1_free(struct upstream *upb)
{
    struct uh1 *up = (struct uh1 *)upb;
    /* the loop has stopped: what is left goes without callbacks */
    up->destroying = 1;
    while (up->live)
        req_free(up->live);
    while (up->spare) {
        struct h1req *u = up->spare;
        up->spare = u->live_next;
        spare_destroy(u);
    }
    struct h1conn *c;
    while ((c = TAILQ_FIRST(&up->idle)))
        conn_close(c);
    event_free(up->sweep);
    free(up->host);
    free(up->port);
    free(up->host_hdr);
    free(up->prefix);
    free(up);
}

static unsigned h1_inflight(const struct upstream *upb)
{
    return ((const struct uh1 *)upb)->inflight;
}

static uint64_t h1_conns_opened(const struct upstream *upb)
{
    return ((const struct uh1 *)upb)->conns_opened;
}

const struct upstream_ops upstream_h1_ops = {
    .name = "native",
    .create = h1_new,
    .destroy = h1_free,
    .inflight = h1_inflight,
    .conns_opened = h1_conns_opened,
    .req_new = h1_req_new,
    .add_header = h1_add_header,
    .set_bearer = h1_set_bearer,
    .send = h1_send,
    .body_write = h1_body_write,
    .body_end = h1_body_end,
    .resume = h1_resume,
    .cancel = h1_cancel,
    .sent = h1_sent,
};
