/*
 * server: see server.h. Workers, the HTTP/1.1 codec for clients, the pipeline, the
 * responses, drain on shutdown and the admin listener.
 *
 * The client side speaks HTTP/1.1 (and 1.0) with a strict parser of our own over
 * bufferevents, because evhttp (libevent 2.1.12) reads every request body whole into
 * memory before any callback runs. Parsing rules (to leave no room for request
 * smuggling): request line "METHOD SP origin-form SP HTTP/1.x", header names are tokens
 * with no blank before the colon, no obsolete line folding, Transfer-Encoding only as
 * exactly "chunked" on HTTP/1.1 and never together with Content-Length, Content-Length
 * digits only and consistent when repeated. Anything else: 400 and close.
 *
 * Bodies: up to MEM_BODY_MAX with a Content-Length, the body is read whole before the
 * pipeline runs (HG_BODY_MEMORY: replayable, hashable); larger or chunked bodies stream
 * (HG_BODY_STREAM): the pipeline runs right after the head and the bytes flow to the
 * upstream as they come, with reading from the client paused while the upstream is
 * UPSTREAM_BODY_HIGHWATER behind. Responses stream the other way with
 * SERVER_WRITE_HIGHWATER on the client's output buffer pausing the upstream transfer.
 *
 * Threading: each worker runs its own event_base, listeners (SO_REUSEPORT per worker for
 * TCP, one shared socket for the unix socket), connections, upstream handle and access-log
 * buffer. The only cross-thread signals are the stop and reload events (event_active, with
 * evthread_use_pthreads() on). Each worker keeps a reference to the current config
 * snapshot (cfgsnap.h) and refreshes it when the generation changes; every request holds
 * its own reference to the snapshot it started with.
 */
#include "server.h"
#include "redis.h"
#include "outbuf.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "auth.h"
#include "cfgsnap.h"
#include "budget_stage.h"
#include "cache.h"
#include "config.h"
#include "hdr.h"
#include "log.h"
#include "metrics.h"
#include "path.h"
#include "upstream.h"
#include "util.h"

#define MEM_BODY_MAX (1u << 20) /* Content-Length up to this: read whole (HG_BODY_MEMORY) */
#define MAX_HEADERS 128
#define READ_CHUNK_MAX (256u << 10)

/* ---- types ---- */

enum conn_state {
    CS_HEAD = 0, /* waiting for / reading a request head */
    CS_BODY,     /* reading a memory body before the pipeline */
    CS_BUSY,     /* request in the pipeline (a stream body may still be arriving) */
    CS_CLOSING,  /* flushing the last response, then close */
};

enum body_framing { BF_NONE, BF_LENGTH, BF_CHUNKED };
enum chunk_state { CK_SIZE, CK_DATA, CK_DATA_CRLF, CK_TRAILER, CK_DONE };

struct hg_worker {
    int index;
    pthread_t thread;
    struct event_base *base;
    const struct hg_config *cfg;  /* the boot config: settings that need a restart */
    const struct hg_config *snap; /* the worker's reference to the current snapshot */
    uint64_t snap_gen;
    struct event *reload_ev; /* server_config_changed(): refresh snap now */
    struct upstream *up;
    struct log_access *alog;
    struct evconnlistener *listeners[16];
    int nlisteners;
    struct evhttp *admin;
    struct event *stop_ev;
    struct event *drain_timer;
    uint64_t drain_deadline_ms;
    int draining;
    unsigned nconns;
    struct hg_conn *conns; /* list of open connections, newest first */
    /* accept paused (fd exhaustion, max_connections): listeners disabled until
     * accept_resume_ev fires or one of our connections closes */
    struct event *accept_resume_ev;
    int accept_paused;
};

struct hg_conn {
    struct hg_worker *w;
    struct bufferevent *bev;
    struct hg_conn *next, *prev;
    enum conn_state state;
    struct hg_req *req;     /* the request being read or answered */
    int keepalive;          /* the connection may carry another request */
    size_t head_bytes;      /* bytes of the current head so far */
    uint64_t head_start_ms; /* first byte of the current head: the whole head must arrive
                               within read_timeout (slowloris) */
    int nheaders;
    /* the body's minimum-rate clock: since when (0: the request head) and from how many bytes;
     * restarted whenever hotgate itself stopped reading (budget queue, upstream backpressure) */
    uint64_t body_clock_us, body_clock_bytes;
    /* request body decoding */
    enum body_framing framing;
    uint64_t body_left; /* BF_LENGTH: bytes still to read; BF_CHUNKED: of this chunk */
    enum chunk_state ck;
    int body_done;
    int read_paused;          /* reading stopped for upstream backpressure */
    struct evbuffer *pending; /* stream body read before the upstream request exists */
    /* response */
    int resp_chunked;
    int resp_no_body;
    int resp_started, resp_done;
    void (*drain_fn)(struct hg_req *, void *);
    void *drain_arg;
    int drain_wanted;
    /* output: written straight from the loop turn that produced it (flush_ev), so a
     * response that fits the socket costs one writev and no epoll_ctl; EV_WRITE on the
     * bufferevent is enabled only while a rest waits for the socket */
    struct event *flush_ev;
    int flush_queued; /* flush_ev is active (event_active again would be a costly no-op) */
    struct evbuffer_cb_entry *out_cb;
    uint64_t read_timeout_ms; /* as last set (UINT64_MAX: not yet) */
    /* input: read by read_ev (conn_sock_read_cb), not by the bufferevent */
    struct event *read_ev;
    int read_on;           /* read_ev added */
    int read_full;         /* the last read filled its space: the next one offers more */
    int peer_eof;          /* the client half-closed: never read again, close after the answer */
    struct auth_memo auth; /* the last verified client key (auth.h); wiped on close */
};

struct req_priv {
    struct hg_req pub;
    void (*cleanup_fn[4])(struct hg_req *, void *);
    void *cleanup_arg[4];
    int ncleanup;
    int logged;
    int tap_head_called;
    int retry_requested;
    int in_stage;      /* a stage function is running */
    int resumed_early; /* server_pipeline_resume() came before the stage returned HG_ASYNC */
    /* an upstream answer held back until complete (cache_hold_response): head and body */
    int held;
    int held_status;
    int64_t held_cl;
    struct evkeyvalq held_headers;
    struct evbuffer *held_body;
};

/* Held answers larger than this are let go (streamed) after all: a cut beyond it is an
 * aborted transfer, not a stale answer. */
#define HELD_MAX (16u << 20)

static struct {
    const struct hg_config *cfg;
    struct hg_worker *workers;
    unsigned nworkers;
    int unix_fd;
    int listen_fds[17]; /* TCP listeners + the unix socket, shared by all workers */
    int nlisten_fds;
    atomic_int listening_workers;
    atomic_uint nconns_total;           /* open client connections, all workers */
    unsigned max_conns;                 /* [server] max_connections, resolved */
    atomic_uint_fast64_t accept_log_ms; /* last "accept:" log line (rate limit) */
    atomic_uint_fast64_t accept_log_suppressed;
    struct {
        char path[128];
        server_admin_fn fn;
        void *arg;
        int is_public; /* no admin token needed */
    } admin[16];
    int nadmin;
    atomic_int draining;
} S = {.unix_fd = -1};

static void pipeline_run(struct hg_req *req);
static void conn_free(struct hg_conn *c);
static void worker_accept_resume(struct hg_worker *w);
static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_process(struct hg_conn *c);
static void req_finish(struct hg_req *req);
static void req_unref(struct hg_req *req);
static void upstream_hold_release(struct hg_req *req);
static void early_refuse(struct hg_conn *c, int status, const char *why);

/* ---- small helpers ---- */

/* The reason phrases of RFC 9110 section 15 (and RFC 6585 for 428, 429, 431); a status
 * with none of its own (an upstream's 499, 520...) gets an empty phrase, which the grammar
 * allows ("HTTP/1.1 599 " + CRLF), rather than a made-up one. */
static const char *reason_phrase(int s)
{
    switch (s) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 305:
        return "Use Proxy";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "";
    }
}

static struct timeval ms_tv(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

static struct req_priv *priv(struct hg_req *r)
{
    return (struct req_priv *)r;
}

struct event_base *server_req_base(const struct hg_req *req)
{
    return req->worker->base;
}

struct upstream *server_req_upstream(const struct hg_req *req)
{
    return req->worker->up;
}

const struct hg_config *server_req_config(const struct hg_req *req)
{
    return req->cfg;
}

/* The worker's snapshot, refreshed when a reload published a new one. */
static const struct hg_config *worker_snap(struct hg_worker *w)
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

static void reload_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_snap(arg);
}

void server_config_changed(void)
{
    for (unsigned i = 0; S.workers && i < S.nworkers; i++)
        if (S.workers[i].reload_ev)
            event_active(S.workers[i].reload_ev, EV_TIMEOUT, 0);
}

struct event_base *server_admin_base(void)
{
    return S.workers && S.workers[0].admin ? S.workers[0].base : NULL;
}

struct upstream *server_admin_upstream(void)
{
    return S.workers ? S.workers[0].up : NULL;
}

int server_draining(void)
{
    return atomic_load(&S.draining);
}

int server_req_add_tap(struct hg_req *req, const struct hg_tap *tap)
{
    if (req->ntaps >= HG_MAX_TAPS)
        return -1;
    req->taps[req->ntaps++] = *tap;
    return 0;
}

int server_req_add_cleanup(struct hg_req *req, void (*fn)(struct hg_req *, void *), void *arg)
{
    struct req_priv *p = priv(req);
    if (p->ncleanup >= 4)
        return -1;
    p->cleanup_fn[p->ncleanup] = fn;
    p->cleanup_arg[p->ncleanup] = arg;
    p->ncleanup++;
    return 0;
}

/* ---- request objects ---- */

static struct hg_req *req_new(struct hg_conn *c)
{
    struct req_priv *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    struct hg_req *r = &p->pub;
    r->worker = c->w;
    r->conn = c;
    r->start_us = util_mono_us();
    r->wall_ms = util_wall_ms();
    r->cfg = worker_snap(c->w);
    cfgsnap_hold(r->cfg);
    TAILQ_INIT(&r->headers);
    r->body_length = 0;
    r->cache_outcome = "-";
    r->refs = 1;
    metrics_gauge_add(G_REQUESTS_INFLIGHT, 1);
    return r;
}

static void req_free(struct hg_req *r)
{
    struct req_priv *p = priv(r);
    assert(r->refs == 0);
    assert(!r->up);
    for (int i = 0; i < p->ncleanup; i++)
        p->cleanup_fn[i](r, p->cleanup_arg[i]);
    evhttp_clear_headers(&r->headers);
    if (r->body)
        evbuffer_free(r->body);
    if (p->held) {
        evhttp_clear_headers(&p->held_headers);
        evbuffer_free(p->held_body);
    }
    free((char *)r->method_name);
    free(r->path);
    free(r->query);
    cfgsnap_release(r->cfg);
    free(p);
    metrics_gauge_add(G_REQUESTS_INFLIGHT, -1);
}

static void req_unref(struct hg_req *r)
{
    assert(r->refs > 0);
    if (--r->refs == 0)
        req_free(r);
}

void server_req_release(struct hg_req *req)
{
    req_unref(req);
}

/* Access log + metrics, once per request. */
static void req_log(struct hg_req *r)
{
    struct req_priv *p = priv(r);
    if (p->logged)
        return;
    p->logged = 1;
    log_access_write(r->worker->alog, r);
    metrics_request_done(r, util_mono_us() - r->start_us);
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
    atomic_fetch_sub(&S.nconns_total, 1);
    metrics_gauge_add(G_CONNECTIONS_OPEN, -1);
}

/* The client is gone (or we give up on it) while a request is attached. */
static void req_detach_client(struct hg_req *r)
{
    if (!r->conn)
        return;
    r->conn = NULL;
    r->client_gone = 1;
    if (!r->responded)
        r->status = 499; /* nginx's "client closed request" */
    req_log(r);
    r->refs++;    /* keep it through the hooks below */
    req_unref(r); /* the connection's reference */
    /* CLIENT-GONE HOOK: a stage holding the request asynchronously (budget queue,
     * coalescing wait) must learn it here and drop its hold (server_req_release). */
    budget_stage_client_gone(r); /* leaves the budget queue at once */
    cache_client_gone(r);        /* leaves a coalesced wait at once */
    if (r->up) {
        struct upstream_req *u = r->up;
        r->up = NULL;
        upstream_cancel(u);
        struct req_priv *p = priv(r);
        if (p->tap_head_called)
            for (int i = 0; i < r->ntaps; i++)
                if (r->taps[i].on_done)
                    r->taps[i].on_done(r, r->taps[i].arg, 0, NULL);
        req_unref(r); /* the upstream stage's hold: no on_done will come */
    }
    req_unref(r);
}

static void conn_free(struct hg_conn *c)
{
    if (c->req) {
        struct hg_req *r = c->req;
        c->req = NULL;
        req_detach_client(r);
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
    free(c);
    if (w->accept_paused)
        worker_accept_resume(w); /* a descriptor / a connection slot is free again */
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
                        status, reason_phrase(status), strlen(body), body);
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
        req_detach_client(r);
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
    struct hg_conn *c = arg;
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
    struct hg_conn *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE); /* back to direct writes (conn_flush_cb) */
    conn_written(c);
}

/* Write what the output holds now; a rest goes through the bufferevent (EV_WRITE). */
static void conn_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hg_conn *c = arg;
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
    struct hg_conn *c = arg;
    if (info->n_added && !c->flush_queued && !(bufferevent_get_enabled(c->bev) & EV_WRITE)) {
        c->flush_queued = 1;
        event_active(c->flush_ev, EV_TIMEOUT, 1);
    }
}

static void conn_process(struct hg_conn *c);

#define READ_SMALL 16384u /* a read into the worker's buffer, then copied... */
#define READ_LARGE 65536u /* ...or straight into the input after a read that filled it */

/* Requests are read into a per-worker buffer and appended: the input then gets a chain
 * the size of what came (as evbuffer_read makes it), not one the size of the space
 * offered (a 4 KB+ chain per request costs malloc more than the copy). A body streaming
 * in (a read filled the buffer) is read in place instead. */
static __thread unsigned char read_buf[READ_SMALL];

static void conn_sock_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hg_conn *c = arg;
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

static void conn_new(struct hg_worker *w, evutil_socket_t fd)
{
    struct hg_conn *c = calloc(1, sizeof *c);
    if (!c)
        abort();
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
    atomic_fetch_add(&S.nconns_total, 1);
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
    bufferevent_setwatermark(c->bev, EV_WRITE, SERVER_WRITE_HIGHWATER / 4, 0);
    struct timeval wt = ms_tv(w->cfg->server.write_timeout_ms);
    bufferevent_set_timeouts(c->bev, NULL, &wt);
    conn_set_read_timeout(c, w->cfg->server.read_timeout_ms);
    /* EV_WRITE (on from bufferevent_socket_new) only while a rest waits: conn_flush_cb;
     * the bufferevent never reads (conn_sock_read_cb does) */
    bufferevent_disable(c->bev, EV_WRITE);
    conn_read_enable(c);
}

/* ---- request head parsing ---- */

static int method_known(const char *m, enum evhttp_cmd_type *t)
{
    static const struct {
        const char *name;
        enum evhttp_cmd_type type;
    } methods[] = {{"GET", EVHTTP_REQ_GET},       {"POST", EVHTTP_REQ_POST},
                   {"HEAD", EVHTTP_REQ_HEAD},     {"PUT", EVHTTP_REQ_PUT},
                   {"DELETE", EVHTTP_REQ_DELETE}, {"OPTIONS", EVHTTP_REQ_OPTIONS},
                   {"PATCH", EVHTTP_REQ_PATCH}};
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if (strcmp(m, methods[i].name) == 0) {
            *t = methods[i].type;
            return 1;
        }
    return 0;
}

/* Parse the request line into a new request. 0, or an HTTP status to refuse with. */
static int parse_request_line(struct hg_conn *c, char *line, const char **why)
{
    char *sp1 = strchr(line, ' ');
    if (!sp1) {
        *why = "malformed request line";
        return 400;
    }
    char *sp2 = strchr(sp1 + 1, ' ');
    if (!sp2 || strchr(sp2 + 1, ' ')) {
        *why = "malformed request line";
        return 400;
    }
    *sp1 = *sp2 = '\0';
    const char *method = line, *target = sp1 + 1, *version = sp2 + 1;
    if (!hdr_name_ok(method, strlen(method))) {
        *why = "malformed method";
        return 400;
    }
    int minor;
    if (strcmp(version, "HTTP/1.1") == 0)
        minor = 1;
    else if (strcmp(version, "HTTP/1.0") == 0)
        minor = 0;
    else {
        *why = "only HTTP/1.0 and HTTP/1.1 are supported";
        return strncmp(version, "HTTP/", 5) == 0 ? 505 : 400;
    }
    struct hg_req *r = req_new(c);
    c->req = r;
    r->http_minor = minor;
    r->method_name = strdup(method);
    if (!r->method_name)
        abort();
    if (!method_known(method, &r->method)) {
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

static int parse_header_line(struct hg_conn *c, char *line, const char **why)
{
    if (line[0] == ' ' || line[0] == '\t') {
        *why = "obsolete header line folding";
        return 400;
    }
    char *colon = strchr(line, ':');
    if (!colon || !hdr_name_ok(line, (size_t)(colon - line))) {
        *why = "malformed header";
        return 400;
    }
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        v[--n] = '\0';
    if (!hdr_value_ok(v)) {
        *why = "control character in header value";
        return 400;
    }
    if (++c->nheaders > MAX_HEADERS) {
        *why = "too many headers";
        return 431;
    }
    /* a name with '_' is dropped, as nginx does (underscores_in_headers off): proxies and
     * CGI-style servers map '_' and '-' to the same name, so "X-Workspace_Id" could pass
     * for X-Workspace-Id behind hotgate's back */
    if (memchr(line, '_', (size_t)(colon - line))) {
        metrics_inc(M_HEADERS_DROPPED_UNDERSCORE, 1);
        return 0;
    }
    /* evhttp_add_header's checks are looser than the two above */
    hdr_add(&c->req->headers, line, (size_t)(colon - line), v, n);
    return 0;
}

/* After the blank line: framing, keep-alive, request id. 0 or a status. */
static int finish_head(struct hg_conn *c, const char **why)
{
    struct hg_req *r = c->req;
    const struct hg_config *cfg = c->w->cfg;
    struct evkeyvalq *h = &r->headers;
    /* keep-alive: decided from Connection before hop-by-hop headers are stripped */
    int close = 0, ka = 0;
    struct evkeyval *kv;
    const char *te = NULL, *cl = NULL, *expect = NULL, *rid = NULL;
    int n_te = 0;
    TAILQ_FOREACH(kv, h, next)
    {
        /* names compared only when the lengths match; the first Expect and X-Request-Id,
         * as evhttp_find_header would find them */
        size_t kn = strlen(kv->key);
        if (kn == 6 && !expect && strcasecmp(kv->key, "Expect") == 0)
            expect = kv->value;
        else if (kn == 12 && !rid && strcasecmp(kv->key, "X-Request-Id") == 0)
            rid = kv->value;
        else if (kn == 10 && strcasecmp(kv->key, "Connection") == 0) {
            if (strcasestr(kv->value, "close"))
                close = 1;
            if (strcasestr(kv->value, "keep-alive"))
                ka = 1;
        } else if (kn == 17 && strcasecmp(kv->key, "Transfer-Encoding") == 0) {
            te = kv->value;
            n_te++;
        } else if (kn == 14 && strcasecmp(kv->key, "Content-Length") == 0) {
            if (cl && strcmp(cl, kv->value) != 0) {
                *why = "conflicting Content-Length headers";
                return 400;
            }
            cl = kv->value;
        }
    }
    c->keepalive = r->http_minor == 1 ? !close : (ka && !close);
    if (te) {
        if (n_te != 1 || strcasecmp(te, "chunked") != 0 || r->http_minor == 0 || cl) {
            *why = "unsupported Transfer-Encoding";
            c->keepalive = 0;
            return te && strcasecmp(te, "chunked") != 0 ? 501 : 400;
        }
        c->framing = BF_CHUNKED;
        c->ck = CK_SIZE;
        c->body_left = 0;
        r->body_length = -1;
    } else if (cl) {
        if (!*cl || strspn(cl, "0123456789") != strlen(cl) || strlen(cl) > 18) {
            *why = "invalid Content-Length";
            c->keepalive = 0;
            return 400;
        }
        uint64_t len = strtoull(cl, NULL, 10);
        c->framing = len ? BF_LENGTH : BF_NONE;
        c->body_left = len;
        r->body_length = (int64_t)len;
    } else {
        c->framing = BF_NONE;
        r->body_length = 0;
    }
    if (cfg->server.max_body_size && r->body_length > 0 &&
        (uint64_t)r->body_length > cfg->server.max_body_size) {
        *why = "request body larger than max_body_size";
        c->keepalive = 0;
        return 413;
    }
    if (expect && strcasecmp(expect, "100-continue") != 0) {
        *why = "unsupported Expect";
        return 417;
    }
    hdr_request_id(rid, r->request_id);
    hdr_strip_hop_by_hop(h);
    if (c->framing == BF_NONE) {
        r->body_kind = HG_BODY_NONE;
    } else if (c->framing == BF_LENGTH && c->body_left <= MEM_BODY_MAX) {
        r->body_kind = HG_BODY_MEMORY;
        r->body = evbuffer_new();
    } else {
        r->body_kind = HG_BODY_STREAM;
    }
    if (expect && r->body_kind != HG_BODY_NONE && r->http_minor == 1)
        evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n");
    c->body_done = c->framing == BF_NONE;
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
    server_respond_error(r, status, NULL, why, NULL);
}

/* ---- request body ---- */

/* Move decoded body bytes from in to dst (at most what the framing allows). Returns 0,
 * or -1 on a malformed chunked body. */
/* Moves what has arrived of the current length-delimited run (a Content-Length body or one
 * chunk's data), at most room bytes, and returns how many. */
static size_t body_move(struct hg_conn *c, struct evbuffer *in, struct evbuffer *dst, size_t room)
{
    size_t n = evbuffer_get_length(in);
    if (n > c->body_left)
        n = (size_t)c->body_left;
    if (n > room)
        n = room;
    evbuffer_remove_buffer(in, dst, n);
    c->body_left -= n;
    return n;
}

static int body_decode(struct hg_conn *c, struct evbuffer *in, struct evbuffer *dst, size_t max_out)
{
    size_t moved = 0;
    while (!c->body_done && evbuffer_get_length(in) > 0 && moved < max_out) {
        if (c->framing == BF_LENGTH) {
            moved += body_move(c, in, dst, max_out - moved);
            if (c->body_left == 0)
                c->body_done = 1;
            continue;
        }
        /* chunked */
        switch (c->ck) {
        case CK_SIZE: {
            size_t ll;
            char *line = evbuffer_readln(in, &ll, EVBUFFER_EOL_CRLF);
            if (!line) {
                if (evbuffer_get_length(in) > 1024)
                    return -1;
                return 0;
            }
            if (memchr(line, '\0', ll)) {
                free(line);
                return -1;
            }
            char *ext = strchr(line, ';');
            if (ext)
                *ext = '\0';
            size_t hexlen = strspn(line, "0123456789abcdefABCDEF");
            size_t tail = hexlen + strspn(line + hexlen, " \t"); /* BWS before ';' only */
            if (hexlen == 0 || hexlen > 15 || line[tail] != '\0') {
                free(line);
                return -1;
            }
            c->body_left = strtoull(line, NULL, 16);
            free(line);
            c->ck = c->body_left ? CK_DATA : CK_TRAILER;
            break;
        }
        case CK_DATA: {
            moved += body_move(c, in, dst, max_out - moved);
            if (c->body_left == 0)
                c->ck = CK_DATA_CRLF;
            break;
        }
        case CK_DATA_CRLF: {
            size_t ll;
            char *line = evbuffer_readln(in, &ll, EVBUFFER_EOL_CRLF);
            if (!line)
                return evbuffer_get_length(in) > 2 ? -1 : 0;
            int bad = ll != 0;
            free(line);
            if (bad)
                return -1;
            c->ck = CK_SIZE;
            break;
        }
        case CK_TRAILER: {
            size_t ll;
            char *line = evbuffer_readln(in, &ll, EVBUFFER_EOL_CRLF);
            if (!line)
                return evbuffer_get_length(in) > 8192 ? -1 : 0;
            free(line);
            if (ll == 0) {
                c->ck = CK_DONE;
                c->body_done = 1;
            }
            break;
        }
        case CK_DONE:
            c->body_done = 1;
            break;
        }
    }
    return 0;
}

static void stream_body_pump(struct hg_conn *c);

static void body_drain_cb(void *arg)
{
    struct hg_conn *c = arg;
    if (c->read_paused) {
        c->read_paused = 0;
        body_clock_restart(c); /* the pause was the upstream's, not the client's */
        conn_read_enable(c);
        stream_body_pump(c);
    }
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
    if (body_decode(c, in, c->pending, READ_CHUNK_MAX * 4) != 0) {
        /* malformed chunked body: the upstream gets an aborted body */
        c->keepalive = 0;
        if (r->up) {
            struct upstream_req *u = r->up;
            r->up = NULL;
            upstream_cancel(u);
        }
        if (!r->responded)
            server_respond_error(r, 400, NULL, "malformed chunked request body", NULL);
        return;
    }
    size_t got = evbuffer_get_length(c->pending) - before;
    r->bytes_in += got;
    if (!c->resp_started && body_too_slow(c)) {
        body_timeout_close(c, "request body arrived below the minimum rate");
        return;
    }
    const struct hg_config *cfg = c->w->cfg;
    if (cfg->server.max_body_size && r->bytes_in > cfg->server.max_body_size) {
        c->keepalive = 0;
        if (r->up) {
            struct upstream_req *u = r->up;
            r->up = NULL;
            upstream_cancel(u);
        }
        if (!r->responded)
            server_respond_error(r, 413, NULL, "request body larger than max_body_size", NULL);
        else
            conn_close_after_write(c);
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

/* ---- the read side: heads, bodies ---- */

static void start_pipeline(struct hg_conn *c)
{
    struct hg_req *r = c->req;
    c->state = CS_BUSY;
    /* no read timeout while the request is processed: the upstream may take its time; a
     * stream body still arriving has body_timeout between its reads */
    conn_set_read_timeout(
        c, r->body_kind == HG_BODY_STREAM && !c->body_done ? c->w->cfg->server.body_timeout_ms : 0);
    r->stage = HG_STAGE_AUTH;
    r->refs++; /* held by the pipeline run itself, so that a synchronous finish is safe */
    pipeline_run(r);
    req_unref(r);
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

static void conn_process(struct hg_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    const struct hg_config *cfg = c->w->cfg;
    char lbuf[1024]; /* head lines up to this long are read without a malloc */
    for (;;) {
        if (c->state == CS_HEAD) {
            if (c->w->draining && c->head_bytes == 0) {
                conn_free(c);
                return;
            }
            if (!c->head_start_ms && evbuffer_get_length(in) > 0)
                c->head_start_ms = util_mono_ms();
            size_t ll = 0;
            char *line = head_readln(in, &ll, lbuf, sizeof lbuf);
            if (!line) {
                if (c->head_bytes + evbuffer_get_length(in) > cfg->server.max_header_size)
                    early_refuse(c, c->req ? 431 : 414, "request head too large");
                else if (c->head_start_ms &&
                         util_mono_ms() - c->head_start_ms > cfg->server.read_timeout_ms)
                    early_refuse(c, 408, "timed out reading the request head");
                else if (c->req)
                    /* a head begun: read_timeout instead of the keepalive one (set here,
                     * when waiting, not per line: a head read whole goes straight to the
                     * pipeline's timeout) */
                    conn_set_read_timeout(c, cfg->server.read_timeout_ms);
                return;
            }
            c->head_bytes += ll + 2;
            if (c->head_bytes > cfg->server.max_header_size) {
                line_free(line, lbuf);
                /* same answer however the bytes were split across reads */
                early_refuse(c, c->req ? 431 : 414, "request head too large");
                return;
            }
            if (memchr(line, '\0', ll)) {
                line_free(line, lbuf); /* C string functions would silently cut the line there */
                early_refuse(c, 400, "NUL byte in the request head");
                return;
            }
            const char *why = NULL;
            int st = 0;
            if (!c->req) {
                if (ll == 0 && c->head_bytes <= 4) {
                    /* blank lines before a request are tolerated (RFC 9112 2.2) */
                    c->head_bytes = 0;
                    line_free(line, lbuf);
                    continue;
                }
                st = parse_request_line(c, line, &why);
                line_free(line, lbuf);
                if (st) {
                    c->keepalive = 0;
                    if (c->req)
                        hdr_request_id(NULL, c->req->request_id);
                    early_refuse(c, st, why);
                    return;
                }
                continue;
            }
            if (ll > 0) {
                int secret = strncasecmp(line, "Authorization", 13) == 0;
                st = parse_header_line(c, line, &why);
                if (secret)
                    util_wipe(line, ll); /* the client key must not linger in freed memory */
                line_free(line, lbuf);
                if (st) {
                    hdr_request_id(NULL, c->req->request_id);
                    early_refuse(c, st, why);
                    return;
                }
                continue;
            }
            line_free(line, lbuf);
            st = finish_head(c, &why);
            if (st) {
                if (!c->req->request_id[0])
                    hdr_request_id(NULL, c->req->request_id);
                early_refuse(c, st, why);
                return;
            }
            if (c->req->body_kind == HG_BODY_MEMORY) {
                c->state = CS_BODY;
                continue;
            }
            start_pipeline(c);
            return; /* conn may be gone; the response path continues processing */
        }
        if (c->state == CS_BODY) {
            struct hg_req *r = c->req;
            size_t before = evbuffer_get_length(r->body);
            body_decode(c, in, r->body, MEM_BODY_MAX + 1);
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
            return;
        }
        if (c->state == CS_BUSY) {
            if (c->req && c->req->body_kind == HG_BODY_STREAM && !c->body_done) {
                stream_body_pump(c);
                return;
            }
            /* pipelined data waits; don't buffer without bound */
            if (evbuffer_get_length(in) > cfg->server.max_header_size)
                conn_read_disable(c);
            return;
        }
        return; /* CS_CLOSING: ignore input */
    }
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    conn_process(arg);
}

/* The response to the current request is complete: log, next request or close. */
static void req_finish(struct hg_req *r)
{
    struct hg_conn *c = r->conn;
    req_log(r);
    if (!c)
        return;
    assert(c->req == r);
    c->req = NULL;
    r->conn = NULL;
    int reuse = c->keepalive && c->body_done && !c->w->draining && c->state != CS_CLOSING;
    req_unref(r); /* the connection's reference */
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
    c->framing = BF_NONE;
    c->read_paused = 0;
    /* (re)armed in one go: the keepalive timer starts now */
    c->read_timeout_ms = c->w->cfg->server.keepalive_timeout_ms;
    conn_read_enable(c);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        /* a pipelined request: from the loop, not from here (no recursion per request) */
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/* ---- responses ---- */

/* A response head is assembled in an outbuf (outbuf.h) and handed to the output buffer in
 * one evbuffer_add (no printf: formatting was a fifth of the CPU of a cache hit). */
static void write_headers(struct hg_req *r, struct evbuffer *out, int status,
                          const struct evkeyvalq *headers, int64_t content_length)
{
    struct hg_conn *c = r->conn;
    struct outbuf hb;
    outbuf_init(&hb, out);
    outbuf_put(&hb, r->http_minor ? "HTTP/1.1 " : "HTTP/1.0 ", 9);
    outbuf_u64(&hb, (uint64_t)(status < 0 ? 0 : status));
    outbuf_put(&hb, " ", 1);
    outbuf_str(&hb, reason_phrase(status));
    outbuf_put(&hb, "\r\n", 2);
    int has_date = 0, has_xcache = 0;
    if (headers) {
        const struct evkeyval *kv;
        TAILQ_FOREACH(kv, headers, next)
        {
            size_t kn = strlen(kv->key); /* names compared only when the lengths match */
            if (kn == 7 && strcasecmp(kv->key, "X-Cache") == 0)
                has_xcache = 1;
            if (!hdr_forward_to_client(kv->key) ||
                (kn == 12 && strcasecmp(kv->key, "X-Request-Id") == 0))
                continue;
            if (kn == 4 && strcasecmp(kv->key, "Date") == 0)
                has_date = 1;
            outbuf_put(&hb, kv->key, kn);
            outbuf_put(&hb, ": ", 2);
            outbuf_str(&hb, kv->value);
            outbuf_put(&hb, "\r\n", 2);
        }
    }
    if (!has_date) {
        static __thread char date[64];
        static __thread size_t date_len;
        static __thread time_t date_at;
        time_t now = time(NULL);
        if (now != date_at) {
            struct tm tm;
            gmtime_r(&now, &tm);
            date_len = strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
            date_at = now;
        }
        outbuf_put(&hb, "Date: ", 6);
        outbuf_put(&hb, date, date_len);
        outbuf_put(&hb, "\r\n", 2);
    }
    outbuf_put(&hb, "X-Request-Id: ", 14);
    outbuf_str(&hb, r->request_id);
    outbuf_put(&hb, "\r\n", 2);
    const char *xc = cache_xcache(r); /* X-Cache: MISS/BYPASS on forwarded answers */
    if (xc && !has_xcache) {
        outbuf_put(&hb, "X-Cache: ", 9);
        outbuf_str(&hb, xc);
        outbuf_put(&hb, "\r\n", 2);
    }
    int no_body = r->method == EVHTTP_REQ_HEAD || status == 204 || status == 304 || status < 200;
    c->resp_no_body = no_body;
    c->resp_chunked = 0;
    if (status == 204 || status == 304) {
        /* no framing headers */
    } else if (content_length >= 0) {
        outbuf_put(&hb, "Content-Length: ", 16);
        outbuf_u64(&hb, (uint64_t)content_length);
        outbuf_put(&hb, "\r\n", 2);
    } else if (no_body) {
        /* HEAD without a known length: say nothing */
    } else if (r->http_minor == 1) {
        outbuf_str(&hb, "Transfer-Encoding: chunked\r\n");
        c->resp_chunked = 1;
    } else {
        c->keepalive = 0; /* HTTP/1.0: the end of the body is the end of the connection */
    }
    if (c->w->draining || !c->body_done)
        c->keepalive = 0;
    if (!c->keepalive)
        outbuf_str(&hb, "Connection: close\r\n\r\n");
    else if (r->http_minor == 0)
        outbuf_str(&hb, "Connection: keep-alive\r\n\r\n");
    else
        outbuf_put(&hb, "\r\n", 2);
    outbuf_flush(&hb);
}

void server_respond_start(struct hg_req *req, int status, const struct evkeyvalq *headers,
                          int64_t content_length)
{
    assert(!req->responded);
    req->responded = 1;
    req->status = status;
    req->stage = HG_STAGE_RESPOND;
    struct hg_conn *c = req->conn;
    if (!c)
        return;
    c->resp_started = 1;
    write_headers(req, bufferevent_get_output(c->bev), status, headers, content_length);
}

size_t server_respond_data(struct hg_req *req, struct evbuffer *chunk)
{
    struct hg_conn *c = req->conn;
    size_t n = evbuffer_get_length(chunk);
    if (!c || n == 0 || c->resp_no_body) {
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

void server_respond_end(struct hg_req *req)
{
    struct hg_conn *c = req->conn;
    if (c) {
        assert(c->resp_started);
        if (c->resp_chunked && !c->resp_no_body)
            evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
        c->resp_done = 1;
        if (!c->body_done)
            c->keepalive = 0; /* the rest of a request body we never read */
    }
    req_finish(req);
}

void server_respond_on_drain(struct hg_req *req, void (*fn)(struct hg_req *, void *), void *arg)
{
    struct hg_conn *c = req->conn;
    if (!c)
        return;
    c->drain_fn = fn;
    c->drain_arg = arg;
    c->drain_wanted = fn != NULL;
}

void server_respond_buffer(struct hg_req *req, int status, const struct evkeyvalq *headers,
                           struct evbuffer *body)
{
    size_t n = body ? evbuffer_get_length(body) : 0;
    server_respond_start(req, status, headers, (int64_t)n);
    if (body)
        server_respond_data(req, body);
    server_respond_end(req);
}

void server_respond_error(struct hg_req *req, int status, const char *code, const char *message,
                          const struct evkeyvalq *extra_headers)
{
    if (req->responded) {
        /* too late for an error answer: cut the connection so the client sees it */
        if (req->conn) {
            req->conn->keepalive = 0;
            struct hg_conn *c = req->conn;
            req_detach_client(req);
            c->req = NULL;
            conn_free(c);
        }
        return;
    }
    char *body = util_api_error_json(status, code, message);
    struct evkeyvalq h;
    TAILQ_INIT(&h);
    evhttp_add_header(&h, "Content-Type", "application/json");
    if (extra_headers) {
        const struct evkeyval *kv;
        TAILQ_FOREACH(kv, extra_headers, next)
        evhttp_add_header(&h, kv->key, kv->value);
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, strlen(body));
    server_respond_buffer(req, status, &h, b);
    evbuffer_free(b);
    free(body);
    evhttp_clear_headers(&h);
}

/* ---- pipeline stages ---- */

static enum hg_stage_result server_stage_auth(struct hg_req *req)
{
    const struct hg_config *cfg = req->cfg;
    /* one walk for the first Authorization and the first X-Workspace-Id (what
     * evhttp_find_header would return) */
    const char *authz = NULL, *ws = NULL;
    int n_authz = 0;
    struct evkeyval *kv, *next;
    TAILQ_FOREACH(kv, &req->headers, next)
    {
        size_t kn = strlen(kv->key);
        if (kn == 13 && strcasecmp(kv->key, "Authorization") == 0) {
            if (!authz)
                authz = kv->value;
            n_authz++;
        } else if (kn == 14 && !ws && strcasecmp(kv->key, "X-Workspace-Id") == 0) {
            ws = kv->value;
        }
    }
    req->client = auth_client_memo(cfg, authz, &req->conn->auth);
    int had_authz = authz != NULL;
    /* the client's key must not travel further, nor linger */
    for (kv = TAILQ_FIRST(&req->headers); n_authz && kv; kv = next) {
        next = TAILQ_NEXT(kv, next);
        if (strcasecmp(kv->key, "Authorization") == 0) {
            util_wipe(kv->value, strlen(kv->value));
            TAILQ_REMOVE(&req->headers, kv, next);
            free(kv->key);
            free(kv->value);
            free(kv);
            n_authz--;
        }
    }
    if (!req->client) {
        metrics_inc(M_AUTH_UNAUTHORIZED, 1);
        server_respond_error(req, 401, NULL,
                             had_authz ? "invalid client key" : "missing Authorization: Bearer key",
                             NULL);
        return HG_DONE;
    }
    req->cred = req->client->credential;
    const char *eff = NULL, *why = NULL;
    if (auth_workspace(req->client, req->path, ws, &eff, &why) != 0) {
        metrics_inc(M_AUTH_FORBIDDEN, 1);
        server_respond_error(req, 403, NULL, why, NULL);
        return HG_DONE;
    }
    if (eff && !ws) {
        /* a config name (checked there); the header just added is the last one */
        hdr_add(&req->headers, "X-Workspace-Id", 14, eff, strlen(eff));
        eff = TAILQ_LAST(&req->headers, evkeyvalq)->value;
    }
    req->workspace = eff;
    return HG_NEXT;
}

static enum hg_stage_result server_stage_route(struct hg_req *req)
{
    if (!auth_mode_allows(req->client->mode, req->method_name, req->path)) {
        metrics_inc(M_AUTH_FORBIDDEN, 1);
        server_respond_error(req, 403, NULL, "method not allowed for a read-only client", NULL);
        return HG_DONE;
    }
    /* sql_hash (access log) is set by the cache stage, from its memo of the body: a hit does not
     * parse JSON. req->route stays NULL: the cache stage matches the route policy (route.h). */
    return HG_NEXT;
}

static enum hg_stage_result server_stage_cache(struct hg_req *req)
{
    /* CACHE STAGE (cache.h): fresh hit -> server_respond_*() + HG_DONE; coalesced wait ->
     * HG_ASYNC; miss -> a tap stores the answer, HG_NEXT. */
    return cache_stage(req);
}

static enum hg_stage_result server_stage_budget(struct hg_req *req)
{
    /* BUDGET STAGE (budget_stage.h): admit -> HG_NEXT; queue -> HG_ASYNC +
     * server_pipeline_resume(); shed -> 503/429 + Retry-After + HG_DONE. */
    return budget_stage_run(req);
}

/* upstream stage: callbacks */

/* upstream stage finished its hold: called from up_on_done paths via this wrapper */
static void upstream_hold_release(struct hg_req *req)
{
    struct req_priv *p = priv(req);
    if (p->retry_requested && req->conn && !req->responded) {
        p->retry_requested = 0;
        /* taps stay: they see the next attempt too */
        req->stage = HG_STAGE_BUDGET;
        pipeline_run(req);
    }
    req_unref(req);
}

static void upstream_hold_release_cb(evutil_socket_t fd, short ev, void *arg)
{
    upstream_hold_release(arg);
}

static void up_drain_cb(struct hg_req *req, void *arg)
{
    if (req->up)
        upstream_resume(req->up);
}

static int up_on_head(void *arg, int status, const struct evkeyvalq *headers)
{
    struct hg_req *req = arg;
    struct req_priv *p = priv(req);
    req->upstream_status = status;
    p->tap_head_called = 1;
    int retry = 0;
    for (int i = 0; i < req->ntaps; i++)
        if (req->taps[i].on_head &&
            req->taps[i].on_head(req, req->taps[i].arg, status, headers) == HG_TAP_RETRY)
            retry = 1;
    if (retry && req->body_kind != HG_BODY_STREAM && !req->responded && req->conn) {
        /* drop this answer; the pipeline re-runs from the budget stage, out of curl's
         * callback */
        p->retry_requested = 1;
        req->upstream_attempts++; /* this attempt was made; its on_done never comes */
        req->up = NULL;
        struct timeval zero = {0, 0};
        event_base_once(req->worker->base, -1, EV_TIMEOUT, upstream_hold_release_cb, req, &zero);
        return -1;
    }
    if ((status >= 500 || status == 429) && cache_upstream_failed(req, status, NULL)) {
        /* stale-if-error: the cache answered with a stale entry; drop this answer */
        req->up = NULL;
        struct timeval zero = {0, 0};
        event_base_once(req->worker->base, -1, EV_TIMEOUT, upstream_hold_release_cb, req, &zero);
        return -1;
    }
    int64_t cl = -1;
    const char *cls = hdr_find(headers, "Content-Length");
    if (cls && *cls && strspn(cls, "0123456789") == strlen(cls) && strlen(cls) <= 18)
        cl = strtoll(cls, NULL, 10);
    if (!p->held && !req->responded && req->conn && cache_hold_response(req) &&
        (cl < 0 || cl <= (int64_t)HELD_MAX)) {
        /* nothing reaches the client until the answer is complete (see up_on_done) */
        p->held = 1;
        p->held_status = status;
        p->held_cl = cl;
        TAILQ_INIT(&p->held_headers);
        const struct evkeyval *kv;
        TAILQ_FOREACH(kv, headers, next)
        evhttp_add_header(&p->held_headers, kv->key, kv->value);
        p->held_body = evbuffer_new();
        if (!p->held_body)
            abort();
        return 0;
    }
    server_respond_start(req, status, headers, cl);
    return 0;
}

/* Let a held answer go: its head and what arrived of its body go to the client. */
static void held_release(struct hg_req *req)
{
    struct req_priv *p = priv(req);
    if (!p->held)
        return;
    p->held = 0;
    if (req->conn && !req->responded) {
        server_respond_start(req, p->held_status, &p->held_headers, p->held_cl);
        if (evbuffer_get_length(p->held_body))
            server_respond_data(req, p->held_body);
    }
    evhttp_clear_headers(&p->held_headers);
    evbuffer_free(p->held_body);
    p->held_body = NULL;
}

/* Drop a held answer (the upstream failed before it was complete). */
static void held_drop(struct hg_req *req)
{
    struct req_priv *p = priv(req);
    if (!p->held)
        return;
    p->held = 0;
    evhttp_clear_headers(&p->held_headers);
    evbuffer_free(p->held_body);
    p->held_body = NULL;
}

static int up_on_data(void *arg, struct evbuffer *chunk)
{
    struct hg_req *req = arg;
    for (int i = 0; i < req->ntaps; i++)
        if (req->taps[i].on_data)
            req->taps[i].on_data(req, req->taps[i].arg, chunk);
    struct req_priv *p = priv(req);
    if (p->held) {
        evbuffer_add_buffer(p->held_body, chunk);
        if (evbuffer_get_length(p->held_body) <= HELD_MAX)
            return 0;
        held_release(req); /* too large to hold: stream it after all */
        return 0;
    }
    size_t queued = server_respond_data(req, chunk);
    if (queued >= SERVER_WRITE_HIGHWATER && req->conn) {
        server_respond_on_drain(req, up_drain_cb, NULL);
        return UPSTREAM_PAUSE;
    }
    return 0;
}

static void up_on_body_drain(void *arg)
{
    struct hg_req *req = arg;
    if (req->conn)
        body_drain_cb(req->conn);
}

static void up_on_done_inner(struct hg_req *req, const struct upstream_result *res)
{
    struct req_priv *p = priv(req);
    req->upstream_attempts += res->attempts;
    if (res->http_status)
        req->upstream_status = res->http_status;
    int ok = res->outcome == UPSTREAM_OK;
    if (p->tap_head_called)
        for (int i = 0; i < req->ntaps; i++)
            if (req->taps[i].on_done)
                req->taps[i].on_done(req, req->taps[i].arg, ok, res);
    if (!req->conn) {
        held_drop(req);
        return;
    }
    if (ok) {
        held_release(req);
        server_respond_end(req);
        return;
    }
    held_drop(req); /* cut before complete: nothing of it reached the client */
    if (!req->responded) {
        if (cache_upstream_failed(req, 0, res))
            return; /* stale-if-error: answered from the cache */
        const char *code, *msg;
        int st = upstream_error_status(res->outcome, &code, &msg);
        if (res->outcome == UPSTREAM_BODY_ERROR && req->conn)
            req->conn->keepalive = 0;
        server_respond_error(req, st, code, msg, NULL);
        return;
    }
    /* failed in the middle of the body: the client must see a broken response */
    server_respond_error(req, 502, "UPSTREAM_UNAVAILABLE", "upstream failed mid-response", NULL);
}

static void up_on_done(void *arg, const struct upstream_result *res)
{
    struct hg_req *req = arg;
    req->up = NULL;
    up_on_done_inner(req, res);
    upstream_hold_release(req);
}

static void up_on_retry(void *arg)
{
    budget_stage_charge(arg);
}

static const struct upstream_callbacks up_callbacks = {
    .on_head = up_on_head,
    .on_data = up_on_data,
    .on_done = up_on_done,
    .on_body_drain = up_on_body_drain,
    .on_retry = up_on_retry,
};

static enum hg_stage_result server_stage_upstream(struct hg_req *req)
{
    struct req_priv *p = priv(req);
    p->tap_head_called = 0;
    p->retry_requested = 0;
    size_t pl = strlen(req->path), ql = req->query ? strlen(req->query) : 0;
    char tbuf[512];
    char *target = pl + ql + 2 <= sizeof tbuf ? tbuf : malloc(pl + ql + 2);
    if (!target)
        abort();
    memcpy(target, req->path, pl);
    if (req->query) {
        target[pl] = '?';
        memcpy(target + pl + 1, req->query, ql + 1);
    } else {
        target[pl] = '\0';
    }
    struct upstream_req *u = upstream_req_new(req->worker->up, req->method_name, target);
    if (target != tbuf)
        free(target);
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, &req->headers, next)
    {
        if (hdr_forward_to_upstream(kv->key))
            upstream_req_add_header(u, kv->key, kv->value);
    }
    if (req->workspace)
        upstream_req_add_header(u, "X-Workspace-Id", req->workspace);
    upstream_req_add_header(u, "X-Request-Id", req->request_id);
    if (req->cred && req->cred->token.data)
        upstream_req_set_bearer(u, req->cred->token.data, req->cred->token.len);
    if (req->body_kind == HG_BODY_MEMORY) {
        /* a copy: the request keeps its body for a replay requested by a tap */
        struct evbuffer *copy = evbuffer_new();
        size_t n = evbuffer_get_length(req->body);
        evbuffer_add(copy, evbuffer_pullup(req->body, -1), n);
        upstream_req_set_body_memory(u, copy);
        evbuffer_free(copy);
    } else if (req->body_kind == HG_BODY_STREAM) {
        upstream_req_set_body_stream(u, req->body_length);
    }
    req->up = u;
    if (upstream_send(u, &up_callbacks, req) != 0) {
        req->up = NULL;
        server_respond_error(req, 502, "UPSTREAM_UNAVAILABLE",
                             "could not start the upstream request", NULL);
        return HG_DONE;
    }
    /* a stream body read so far goes out now; the rest follows from the read side */
    struct hg_conn *c = req->conn;
    if (req->body_kind == HG_BODY_STREAM && c) {
        if (c->pending && evbuffer_get_length(c->pending))
            upstream_body_write(u, c->pending);
        if (c->body_done)
            upstream_body_end(u);
        else {
            body_clock_restart(c); /* time in the queue or a wait is not the client's */
            stream_body_pump(c);
        }
    }
    req->refs++; /* held until the upstream exchange ends */
    return HG_ASYNC;
}

/* Run stages from req->stage on. */
static void pipeline_run(struct hg_req *req)
{
    for (;;) {
        if (!req->conn || req->client_gone)
            return;
        enum hg_stage_result r;
        struct req_priv *p = priv(req);
        p->in_stage = 1;
        p->resumed_early = 0;
        switch (req->stage) {
        case HG_STAGE_AUTH:
            r = server_stage_auth(req);
            break;
        case HG_STAGE_ROUTE:
            r = server_stage_route(req);
            break;
        case HG_STAGE_CACHE:
            r = server_stage_cache(req);
            break;
        case HG_STAGE_BUDGET:
            r = server_stage_budget(req);
            break;
        case HG_STAGE_UPSTREAM:
            r = server_stage_upstream(req);
            break;
        default:
            p->in_stage = 0;
            return;
        }
        p->in_stage = 0;
        if (r == HG_DONE)
            return;
        if (r == HG_ASYNC && p->resumed_early && req->stage != HG_STAGE_UPSTREAM) {
            /* the stage resumed the request before returning: carry on here, no hold */
            p->resumed_early = 0;
            req->stage++;
            continue;
        }
        if (r == HG_ASYNC) {
            if (req->stage != HG_STAGE_UPSTREAM)
                req->refs++; /* the stage's hold, dropped by server_pipeline_resume/release */
            return;
        }
        req->stage++;
    }
}

void server_pipeline_resume(struct hg_req *req)
{
    struct req_priv *p = priv(req);
    if (p->in_stage) {
        /* called from inside the stage (a synchronous grant): pipeline_run goes on */
        p->resumed_early = 1;
        return;
    }
    assert(req->refs >= 1);
    if (req->stage < HG_STAGE_UPSTREAM)
        req->stage++;
    req->refs++;
    req_unref(req); /* the stage's hold (the extra ref keeps it alive through the run) */
    pipeline_run(req);
    req_unref(req);
}

/* ---- workers ---- */

/* How long a worker stops accepting after accept failed or max_connections was reached
 * without an idle connection to close (a connection closing resumes it earlier). */
#define ACCEPT_PAUSE_MS 100

/* Stop accepting on this worker's listeners for ms (pending clients wait in the kernel's
 * backlog) instead of spinning on an accept that keeps failing (nginx/HAProxy do the same). */
static void worker_accept_pause(struct hg_worker *w, uint64_t ms)
{
    if (!w->accept_paused) {
        for (int i = 0; i < w->nlisteners; i++)
            evconnlistener_disable(w->listeners[i]);
        w->accept_paused = 1;
    }
    struct timeval tv = ms_tv(ms);
    event_add(w->accept_resume_ev, &tv);
}

static void worker_accept_resume(struct hg_worker *w)
{
    if (!w->accept_paused)
        return;
    w->accept_paused = 0;
    event_del(w->accept_resume_ev);
    if (w->draining)
        return;
    for (int i = 0; i < w->nlisteners; i++)
        evconnlistener_enable(w->listeners[i]);
}

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    worker_accept_resume(arg);
}

/* The oldest connection of this worker that waits for a request with nothing read and
 * nothing to write (an idle keep-alive one): closed to make room. 1 if one was closed. */
static int conn_close_oldest_idle(struct hg_worker *w)
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

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct hg_worker *w = arg;
    if (w->draining) {
        evutil_closesocket(fd);
        return;
    }
    if (S.max_conns && atomic_load(&S.nconns_total) >= S.max_conns && !conn_close_oldest_idle(w)) {
        /* full of busy connections: a short API-shaped 503 (best effort, the socket is
         * new and empty), then no accepting until one closes */
        static const char busy[] =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            "Retry-After: 1\r\nConnection: close\r\nContent-Length: 146\r\n\r\n"
            "{\"error\":{\"code\":\"TOO_MANY_CONNECTIONS\",\"message\":\"the gateway is at "
            "max_connections\"},\"message\":\"the gateway is at max_connections\",\"status\":503}";
        ssize_t wr = send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)wr;
        evutil_closesocket(fd);
        metrics_inc(M_CONNECTIONS_REFUSED_LIMIT, 1);
        worker_accept_pause(w, ACCEPT_PAUSE_MS);
        return;
    }
    int one = 1;
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn_new(w, fd);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct hg_worker *w = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
        metrics_inc(M_ACCEPT_FD_EXHAUSTED, 1);
    /* whatever the error: pause instead of spinning (the listener is level-triggered) */
    worker_accept_pause(w, ACCEPT_PAUSE_MS);
    /* at most one line per second, all workers together */
    uint64_t now = util_mono_ms(), last = atomic_load(&S.accept_log_ms);
    if (last && now - last < 1000) {
        atomic_fetch_add(&S.accept_log_suppressed, 1);
        return;
    }
    if (!atomic_compare_exchange_strong(&S.accept_log_ms, &last, now ? now : 1)) {
        atomic_fetch_add(&S.accept_log_suppressed, 1);
        return;
    }
    unsigned long long more = atomic_exchange(&S.accept_log_suppressed, 0);
    log_msg(LOG_WARNING, "accept: %s (accepting paused %d ms; %llu more since the last line)",
            evutil_socket_error_to_string(err), ACCEPT_PAUSE_MS, more);
}

/* [server] max_connections, or auto: the soft RLIMIT_NOFILE minus a reserve for upstream
 * connections (per worker), the cache, logs and the event machinery. */
static unsigned max_conns_resolve(const struct hg_config *cfg, unsigned nworkers)
{
    if (cfg->server.max_connections)
        return cfg->server.max_connections;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    uint64_t soft = rl.rlim_cur == RLIM_INFINITY ? 1048576 : (uint64_t)rl.rlim_cur;
    uint64_t reserve = 64 + (uint64_t)nworkers * (cfg->upstream.max_connections_per_host + 8);
    uint64_t n = soft > 2 * reserve ? soft - reserve : soft / 2;
    if (n < 8)
        n = 8;
    return n > 10000000 ? 10000000 : (unsigned)n;
}

static int worker_listen(struct hg_worker *w)
{
    /* every worker accepts on the same sockets (made once in server_start): a second
     * hotgate on the same address fails to bind instead of silently sharing the port, as
     * it would with SO_REUSEPORT */
    for (int i = 0; i < S.nlisten_fds; i++) {
        struct evconnlistener *l =
            evconnlistener_new(w->base, accept_cb, w, LEV_OPT_CLOSE_ON_EXEC, -1, S.listen_fds[i]);
        if (!l)
            return -1;
        evconnlistener_set_error_cb(l, accept_error_cb);
        w->listeners[w->nlisteners++] = l;
    }
    return 0;
}

static int tcp_listen(const char *addr)
{
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sl) != 0) {
        log_msg(LOG_ERR, "listen %s: not an address (use an IP, not a name)", addr);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&ss, (socklen_t)sl) != 0 || listen(fd, 1024) != 0) {
        log_msg(LOG_ERR, "listen %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* The last worker to stop accepting closes the listening sockets, so that new
 * connections are refused at once while in-flight requests drain. */
static void listeners_release(void)
{
    if (atomic_fetch_sub(&S.listening_workers, 1) != 1)
        return;
    for (int i = 0; i < S.nlisten_fds; i++) {
        if (S.listen_fds[i] != S.unix_fd)
            close(S.listen_fds[i]);
        S.listen_fds[i] = -1;
    }
}

/* ---- admin ---- */

static int admin_authorized(struct evhttp_request *r)
{
    /* the token of the current snapshot: a reload can rotate it */
    const struct hg_config *cfg = cfgsnap_acquire();
    const struct hg_secret *tok = cfg ? &cfg->admin.token : &S.cfg->admin.token;
    int ok = 0;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(r), "Authorization");
    if (!tok->data) {
        ok = 1;
    } else if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        const char *k = h + 7;
        unsigned char a[32], b[32];
        util_sha256(k, strlen(k), a);
        util_sha256(tok->data, tok->len, b);
        ok = util_ct_equal(a, b, 32);
        util_wipe(a, 32);
        util_wipe(b, 32);
    }
    cfgsnap_release(cfg);
    return ok;
}

static void admin_reply_error(struct evhttp_request *r, int status, const char *msg)
{
    char *body = util_api_error_json(status, NULL, msg);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", "application/json");
    evhttp_send_reply(r, status, reason_phrase(status), b);
    evbuffer_free(b);
    free(body);
}

static void admin_cb(struct evhttp_request *r, void *arg)
{
    const char *uri = evhttp_request_get_uri(r);
    size_t plen = strcspn(uri, "?");
    char path[256];
    snprintf(path, sizeof path, "%.*s", (int)(plen < 255 ? plen : 255), uri);
    if (strcmp(path, "/healthz") == 0 && evhttp_request_get_command(r) == EVHTTP_REQ_GET) {
        /* health is public: a load balancer needs no token */
        struct evbuffer *b = evbuffer_new();
        evbuffer_add_printf(b, "{\"status\":\"ok\"}\n");
        evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", "application/json");
        evhttp_send_reply(r, 200, "OK", b);
        evbuffer_free(b);
        return;
    }
    for (int i = 0; i < S.nadmin; i++)
        if (S.admin[i].is_public && strcmp(S.admin[i].path, path) == 0) {
            S.admin[i].fn(r, S.admin[i].arg);
            return;
        }
    if (!admin_authorized(r)) {
        admin_reply_error(r, 401, "admin token required");
        return;
    }
    if (strcmp(path, "/metrics") == 0 && evhttp_request_get_command(r) == EVHTTP_REQ_GET) {
        struct evbuffer *b = evbuffer_new();
        metrics_render(b);
        evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type",
                          "text/plain; version=0.0.4");
        evhttp_send_reply(r, 200, "OK", b);
        evbuffer_free(b);
        return;
    }
    for (int i = 0; i < S.nadmin; i++)
        if (!S.admin[i].is_public && strcmp(S.admin[i].path, path) == 0) {
            S.admin[i].fn(r, S.admin[i].arg);
            return;
        }
    admin_reply_error(r, 404, "no such admin endpoint");
}

static int admin_register(const char *path, server_admin_fn fn, void *arg, int is_public)
{
    if (S.nadmin >= 16 || strlen(path) >= sizeof S.admin[0].path)
        return -1;
    snprintf(S.admin[S.nadmin].path, sizeof S.admin[0].path, "%s", path);
    S.admin[S.nadmin].fn = fn;
    S.admin[S.nadmin].arg = arg;
    S.admin[S.nadmin].is_public = is_public;
    S.nadmin++;
    return 0;
}

int server_admin_register(const char *path, server_admin_fn fn, void *arg)
{
    return admin_register(path, fn, arg, 0);
}

int server_admin_register_public(const char *path, server_admin_fn fn, void *arg)
{
    return admin_register(path, fn, arg, 1);
}

static int admin_start(struct hg_worker *w)
{
    const struct hg_config *cfg = w->cfg;
    if (cfg->admin.n_listen == 0)
        return 0;
    w->admin = evhttp_new(w->base);
    evhttp_set_gencb(w->admin, admin_cb, NULL);
    evhttp_set_timeout(w->admin, 10);
    evhttp_set_max_body_size(w->admin, 1 << 20);
    evhttp_set_allowed_methods(w->admin, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE);
    for (size_t i = 0; i < cfg->admin.n_listen; i++) {
        char host[256];
        snprintf(host, sizeof host, "%s", cfg->admin.listen[i]);
        char *colon = strrchr(host, ':');
        *colon = '\0';
        int port = atoi(colon + 1);
        char *h = host;
        if (h[0] == '[') {
            h++;
            h[strlen(h) - 1] = '\0';
        }
        if (evhttp_bind_socket(w->admin, h, (ev_uint16_t)port) != 0) {
            log_msg(LOG_ERR, "admin listen %s: %s", cfg->admin.listen[i], strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* ---- drain and stop ---- */

static void drain_check_cb(evutil_socket_t fd, short ev, void *arg)
{
    struct hg_worker *w = arg;
    /* idle keep-alive connections go now; busy ones close after their response */
    struct hg_conn *c = w->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (!c->req && c->state == CS_HEAD)
            conn_free(c);
    }
    /* done when no client is left and no upstream exchange (e.g. a background refresh)
     * is still running */
    if ((w->nconns == 0 && upstream_inflight(w->up) == 0) ||
        util_mono_ms() >= w->drain_deadline_ms) {
        if (w->nconns || upstream_inflight(w->up))
            log_msg(LOG_WARNING,
                    "worker %d: drain timeout, %u connection(s) and %u upstream "
                    "exchange(s) cut",
                    w->index, w->nconns, upstream_inflight(w->up));
        event_base_loopbreak(w->base);
    }
}

static void stop_cb(evutil_socket_t fd, short ev, void *arg)
{
    struct hg_worker *w = arg;
    if (w->draining)
        return;
    w->draining = 1;
    atomic_store(&S.draining, 1);
    for (int i = 0; i < w->nlisteners; i++)
        evconnlistener_free(w->listeners[i]);
    if (w->nlisteners)
        listeners_release();
    w->nlisteners = 0;
    w->drain_deadline_ms = util_mono_ms() + w->cfg->server.drain_timeout_ms;
    w->drain_timer = event_new(w->base, -1, EV_PERSIST, drain_check_cb, w);
    struct timeval tv = {0, 20000};
    event_add(w->drain_timer, &tv);
    drain_check_cb(-1, 0, w);
}

static void *worker_main(void *arg)
{
    struct hg_worker *w = arg;
    (void)rds_worker(w->base); /* this thread's Redis client connects now (redis.h) */
    event_base_dispatch(w->base);
    /* cut what is left */
    while (w->conns)
        conn_free(w->conns);
    rds_worker_exit(); /* this thread's Redis client (redis.h), while its base lives */
    log_access_flush(w->alog);
    return NULL;
}

static int unix_listen(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path); /* a stale socket from a previous run */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0) {
        log_msg(LOG_ERR, "unix socket %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    chmod(path, 0660);
    return fd;
}

int server_start(const struct hg_config *cfg)
{
    S.cfg = cfg;
    S.nworkers = cfg->server.threads ? cfg->server.threads : 1;
    S.max_conns = max_conns_resolve(cfg, S.nworkers);
    S.workers = calloc(S.nworkers, sizeof *S.workers);
    if (!S.workers)
        abort();
    for (size_t i = 0; i < cfg->server.n_listen && S.nlisten_fds < 16; i++) {
        int fd = tcp_listen(cfg->server.listen[i]);
        if (fd < 0)
            return -1;
        S.listen_fds[S.nlisten_fds++] = fd;
    }
    if (cfg->server.unix_socket) {
        S.unix_fd = unix_listen(cfg->server.unix_socket);
        if (S.unix_fd < 0)
            return -1;
        S.listen_fds[S.nlisten_fds++] = S.unix_fd;
    }
    atomic_store(&S.listening_workers, (int)S.nworkers);
    for (unsigned i = 0; i < S.nworkers; i++) {
        struct hg_worker *w = &S.workers[i];
        w->index = (int)i;
        w->cfg = cfg;
        /* the changelist folds the del+add pairs curl asks for within one loop turn into
         * one epoll_ctl (or none) */
        struct event_config *ec = event_config_new();
        event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        w->base = event_base_new_with_config(ec);
        event_config_free(ec);
        if (!w->base)
            return -1;
        w->up = upstream_new(w->base, cfg);
        if (!w->up)
            return -1;
        w->alog = log_access_new(w->base);
        w->stop_ev = event_new(w->base, -1, 0, stop_cb, w);
        w->reload_ev = event_new(w->base, -1, 0, reload_cb, w);
        w->accept_resume_ev = event_new(w->base, -1, 0, accept_resume_cb, w);
        if (!w->accept_resume_ev)
            return -1;
        worker_snap(w);
        if (worker_listen(w) != 0)
            return -1;
        if (i == 0 && admin_start(w) != 0)
            return -1;
    }
    for (unsigned i = 0; i < S.nworkers; i++) {
        struct hg_worker *w = &S.workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            log_msg(LOG_ERR, "pthread_create: %s", strerror(errno));
            return -1;
        }
    }
    log_msg(LOG_INFO,
            "hotgate %s: %u worker(s), at most %u client connections, upstream %s (%s client)",
            HG_VERSION, S.nworkers, S.max_conns, cfg->upstream.url,
            upstream_client_name(S.workers[0].up));
    return 0;
}

void server_stop(void)
{
    if (!S.workers)
        return;
    for (unsigned i = 0; i < S.nworkers; i++)
        if (S.workers[i].stop_ev && S.workers[i].thread)
            event_active(S.workers[i].stop_ev, EV_TIMEOUT, 0);
    for (unsigned i = 0; i < S.nworkers; i++)
        if (S.workers[i].thread)
            pthread_join(S.workers[i].thread, NULL);
    for (unsigned i = 0; i < S.nworkers; i++) {
        struct hg_worker *w = &S.workers[i];
        for (int k = 0; k < w->nlisteners; k++)
            evconnlistener_free(w->listeners[k]);
        if (w->admin)
            evhttp_free(w->admin);
        if (w->drain_timer)
            event_free(w->drain_timer);
        if (w->stop_ev)
            event_free(w->stop_ev);
        if (w->reload_ev)
            event_free(w->reload_ev);
        if (w->accept_resume_ev)
            event_free(w->accept_resume_ev);
        cfgsnap_release(w->snap);
        w->snap = NULL;
        log_access_free(w->alog);
        upstream_free(w->up);
        if (w->base)
            event_base_free(w->base);
    }
    free(S.workers);
    S.workers = NULL;
    for (int i = 0; i < S.nlisten_fds; i++)
        if (S.listen_fds[i] >= 0 && S.listen_fds[i] != S.unix_fd)
            close(S.listen_fds[i]);
    S.nlisten_fds = 0;
    if (S.unix_fd >= 0) {
        close(S.unix_fd);
        S.unix_fd = -1;
        if (S.cfg->server.unix_socket)
            unlink(S.cfg->server.unix_socket);
    }
}
