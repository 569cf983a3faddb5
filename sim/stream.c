/*
 * stream: streams raw request bodies (routes flagged SIM_ROUTE_RAW_BODY, i.e. POST /v1/files)
 * to disk as bytes arrive, so a 1 GiB upload never sits in memory.
 *
 * Why a filter: libevent 2.1's evhttp buffers every request body and offers no hook before
 * the body is read for server-side requests (evhttp_set_newreqcb arrived in 2.2). So every
 * accepted connection gets a bufferevent filter (evhttp_set_bevcb) in front of evhttp that
 * follows HTTP/1.1 framing: request heads and ordinary bodies pass through untouched
 * (Content-Length and chunked bodies are tracked only to find the next head); for a raw-body
 * route the body is written to DIR/uploads/up-<id>.part (chunked framing decoded) and the
 * head is handed to evhttp only when the body is complete, rewritten to "Content-Length: 0"
 * plus "X-Sim-Upload-Id: <id>". The handler finds the file through sim_stream_take.
 * "Expect: 100-continue" is answered by the filter itself.
 *
 * Rules: loop thread only. The filter context belongs to the connection's bufferevent and is
 * freed with it (an unfinished upload file is unlinked). Finished uploads not yet taken live
 * in ctx->uploads and are freed by sim_stream_free_all.
 */
#include "sim_int.h"
#include "sim_router.h"
#include "sim_stream.h"
#include "sim_uploads.h"
#include "sim_util.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#define SIM_STREAM_MAX_HEAD (64 * 1024)

enum sim_stream_state {
    ST_HEAD,
    ST_CL,      /* Content-Length body */
    ST_CSIZE,   /* chunk size line */
    ST_CDATA,   /* chunk data */
    ST_CCRLF,   /* CRLF after chunk data */
    ST_TRAILER, /* trailer lines until an empty one */
    ST_PASS,    /* gave up parsing: everything passes through */
    ST_DISCARD, /* refused upload (413 sent): swallow the rest until the client closes */
};

struct sim_stream {
    struct sim_ctx *ctx;
    struct bufferevent *under;
    enum sim_stream_state st;
    bool upload;           /* current body goes to a file */
    uint64_t left;         /* bytes left in the CL body or the current chunk */
    int fd;                /* upload file */
    char *path;            /* upload file path */
    uint64_t size;         /* upload bytes written */
    uint64_t id;           /* upload id */
    uint64_t max;          /* upload limit (sim_uploads_max_bytes) */
    struct evbuffer *held; /* rewritten head, released when the body is complete */
    struct bufferevent *filter;
    struct event *kick;   /* flushes evhttp's output, see sim_stream_outcb */
    struct event *wready; /* socket writable again: flush the rest, see sim_stream_out */
};

static void sim_stream_ctx_free(void *arg)
{
    struct sim_stream *s = arg;
    if (s->fd >= 0)
        close(s->fd);
    if (s->path) {
        unlink(s->path);
        free(s->path);
    }
    if (s->held)
        evbuffer_free(s->held);
    if (s->kick)
        event_free(s->kick);
    if (s->wready)
        event_free(s->wready);
    free(s);
}

/* Does method+target name a RAW_BODY route? The router decides, as it will for the
 * request once evhttp has parsed it. */
static bool sim_stream_is_raw(struct sim_ctx *ctx, const char *method, size_t mlen,
                              const char *target, size_t tlen)
{
    char m[16], path[1024];
    size_t pl = 0;
    if (mlen >= sizeof m)
        return false;
    memcpy(m, method, mlen);
    m[mlen] = '\0';
    while (pl < tlen && target[pl] != '?' && pl < sizeof path - 1) {
        path[pl] = target[pl];
        pl++;
    }
    path[pl] = '\0';
    int status;
    struct sim_route_ent *e = sim_router_resolve(&ctx->router, m, path, NULL, &status);
    return e && (e->flags & SIM_ROUTE_RAW_BODY);
}

static bool sim_hdr_is(const char *line, size_t len, const char *name)
{
    size_t nl = strlen(name);
    return len > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0;
}

static const char *sim_hdr_value(const char *line, size_t len, size_t nl, size_t *vlen)
{
    const char *v = line + nl + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *vlen = (size_t)(end - v);
    return v;
}

/* Write n bytes of src to the upload file (drains them). -1 on a write error. */
static int sim_stream_write(struct sim_stream *s, struct evbuffer *src, size_t n)
{
    while (n > 0) {
        int w = evbuffer_write_atmost(src, s->fd, (ev_ssize_t)n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        n -= (size_t)w;
        s->size += (uint64_t)w;
    }
    return 0;
}

static void sim_stream_finish_upload(struct sim_stream *s, struct evbuffer *dst)
{
    close(s->fd);
    s->fd = -1;
    struct sim_upload *u = calloc(1, sizeof *u);
    if (!u)
        abort();
    u->id = s->id;
    u->path = s->path;
    u->size = s->size;
    u->complete = true;
    u->next = s->ctx->uploads;
    s->ctx->uploads = u;
    s->path = NULL;
    s->upload = false;
    evbuffer_add_buffer(dst, s->held);
    /* the next upload on this connection makes its own (it was overwritten, a leak per
     * upload: found by test_oracle under ASan) */
    evbuffer_free(s->held);
    s->held = NULL;
}

/* Answer 413 on the socket ourselves and swallow the rest of the body until the client
 * closes (closing at once could reset the connection before the client read the answer). */
static void sim_stream_refuse(struct sim_stream *s, uint64_t size, uint64_t max)
{
    char msg[160];
    snprintf(msg, sizeof msg, "Upload of %s%llu bytes exceeds the limit of %llu bytes",
             s->upload ? "more than " : "", (unsigned long long)size, (unsigned long long)max);
    char *body = util_api_error_json(413, "PAYLOAD_TOO_LARGE", msg);
    struct evbuffer *out = bufferevent_get_output(s->under);
    evbuffer_add_printf(out,
                        "HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json"
                        "\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                        strlen(body), body);
    free(body);
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    if (s->path) {
        unlink(s->path);
        free(s->path);
        s->path = NULL;
    }
    if (s->held) {
        evbuffer_free(s->held);
        s->held = NULL;
    }
    s->upload = false;
    s->st = ST_DISCARD;
}

/* What the filter needs of a request head. */
struct sim_head {
    char *h; /* the head, NUL-terminated (hlen bytes incl. the blank line) */
    size_t hlen;
    char *line_end;  /* end of the request line ("\r\n") */
    const char *sp1; /* the spaces around the request target */
    const char *sp2;
    uint64_t clen; /* Content-Length */
    bool chunked;  /* Transfer-Encoding: ...chunked */
    bool expect;   /* Expect: 100-continue */
    bool bad;      /* an unparsable Content-Length: evhttp rejects it */
};

/* Content-Length value: false when it is not a plain decimal number. */
static bool sim_head_clen(const char *v, size_t vl, uint64_t *out)
{
    char num[32];
    if (vl == 0 || vl >= sizeof num || v[0] < '0' || v[0] > '9')
        return false;
    memcpy(num, v, vl);
    num[vl] = '\0';
    char *end;
    *out = strtoull(num, &end, 10);
    return *end == '\0';
}

/* The framing headers of a head (after its request line). */
static void sim_head_scan(struct sim_head *hd)
{
    for (char *l = hd->line_end + 2; l < hd->h + hd->hlen;) {
        char *e = strstr(l, "\r\n");
        if (!e || e == l)
            break;
        size_t len = (size_t)(e - l), vl;
        if (sim_hdr_is(l, len, "Content-Length")) {
            const char *v = sim_hdr_value(l, len, 14, &vl);
            if (!sim_head_clen(v, vl, &hd->clen))
                hd->bad = true;
        } else if (sim_hdr_is(l, len, "Transfer-Encoding")) {
            const char *v = sim_hdr_value(l, len, 17, &vl);
            if (vl >= 7 && strncasecmp(v + vl - 7, "chunked", 7) == 0)
                hd->chunked = true;
        } else if (sim_hdr_is(l, len, "Expect")) {
            const char *v = sim_hdr_value(l, len, 6, &vl);
            if (vl == 12 && strncasecmp(v, "100-continue", 12) == 0)
                hd->expect = true;
        }
        l = e + 2;
    }
}

/* The upload limit of this request (?streaming=true raises it). */
static uint64_t sim_head_max(struct sim_stream *s, const struct sim_head *hd)
{
    const char *q = memchr(hd->sp1 + 1, '?', (size_t)(hd->sp2 - hd->sp1 - 1));
    bool streaming = q && (memmem(q, (size_t)(hd->sp2 - q), "streaming=true", 14) ||
                           memmem(q, (size_t)(hd->sp2 - q), "streaming=1", 11));
    return sim_uploads_max_bytes(s->ctx, streaming);
}

/* The head evhttp gets once the upload is complete: the framing headers replaced by
 * "Content-Length: 0" and "X-Sim-Upload-Id". */
static void sim_head_hold(struct sim_stream *s, const struct sim_head *hd)
{
    s->held = evbuffer_new();
    evbuffer_add(s->held, hd->h, (size_t)(hd->line_end - hd->h) + 2);
    for (char *l = hd->line_end + 2; l < hd->h + hd->hlen;) {
        char *e = strstr(l, "\r\n");
        if (!e || e == l)
            break;
        size_t len = (size_t)(e - l);
        if (!sim_hdr_is(l, len, "Content-Length") && !sim_hdr_is(l, len, "Transfer-Encoding") &&
            !sim_hdr_is(l, len, "Expect") && !sim_hdr_is(l, len, "X-Sim-Upload-Id"))
            evbuffer_add(s->held, l, len + 2);
        l = e + 2;
    }
    evbuffer_add_printf(s->held, "Content-Length: 0\r\nX-Sim-Upload-Id: %llu\r\n\r\n",
                        (unsigned long long)s->id);
}

/* Open the upload file and hold the rewritten head. false (logged) when the file cannot be
 * created: the request then passes through unstreamed. */
static bool sim_head_start_upload(struct sim_stream *s, const struct sim_head *hd)
{
    char path[1024];
    s->id = 0;
    util_random(&s->id, sizeof s->id);
    s->id &= 0x7fffffffffffffffULL;
    snprintf(path, sizeof path, "%s/uploads/up-%llu.part", s->ctx->cfg.data_dir,
             (unsigned long long)s->id);
    s->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (s->fd < 0) {
        sim_log("cannot create upload file %s: %s", path, strerror(errno));
        return false;
    }
    s->path = sim_strdup(path);
    s->size = 0;
    s->upload = true;
    sim_head_hold(s, hd);
    if (hd->expect)
        bufferevent_write(s->under, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return true;
}

/* The state after a head: its body (chunked or Content-Length), or the next head. */
static void sim_head_body_state(struct sim_stream *s, const struct sim_head *hd,
                                struct evbuffer *dst)
{
    if (hd->chunked) {
        s->st = ST_CSIZE;
    } else if (hd->clen > 0) {
        s->left = hd->clen;
        s->st = ST_CL;
    } else {
        if (s->upload)
            sim_stream_finish_upload(s, dst);
        s->st = ST_HEAD;
    }
}

/* Parse the head at the front of src (hlen bytes incl. the blank line). */
static void sim_stream_head(struct sim_stream *s, struct evbuffer *src, size_t hlen,
                            struct evbuffer *dst)
{
    struct sim_head hd = {.hlen = hlen};
    hd.h = malloc(hlen + 1);
    if (!hd.h)
        abort();
    evbuffer_remove(src, hd.h, hlen);
    hd.h[hlen] = '\0';
    /* request line; a head with NUL bytes is not HTTP: evhttp rejects it */
    hd.line_end = memchr(hd.h, '\0', hlen) ? NULL : strstr(hd.h, "\r\n");
    if (hd.line_end) {
        hd.sp1 = memchr(hd.h, ' ', (size_t)(hd.line_end - hd.h));
        hd.sp2 = hd.sp1 ? memchr(hd.sp1 + 1, ' ', (size_t)(hd.line_end - hd.sp1 - 1)) : NULL;
        sim_head_scan(&hd);
    }
    if (!hd.line_end || hd.bad) {
        /* let evhttp reject it */
        evbuffer_add(dst, hd.h, hlen);
        free(hd.h);
        s->st = ST_PASS;
        return;
    }
    bool raw = hd.sp1 && hd.sp2 &&
               sim_stream_is_raw(s->ctx, hd.h, (size_t)(hd.sp1 - hd.h), hd.sp1 + 1,
                                 (size_t)(hd.sp2 - hd.sp1 - 1));
    if (raw) {
        /* a declared body over the upload limit is refused before a byte of it is read, a
         * chunked one as soon as it grows over it */
        s->max = sim_head_max(s, &hd);
        if (!hd.chunked && hd.clen > s->max) {
            sim_stream_refuse(s, hd.clen, s->max);
            free(hd.h);
            return;
        }
    }
    if (!raw || !sim_head_start_upload(s, &hd))
        evbuffer_add(dst, hd.h, hlen);
    free(hd.h);
    sim_head_body_state(s, &hd, dst);
}

/* Body bytes: to the file (upload) or through to evhttp. */
static int sim_stream_body(struct sim_stream *s, struct evbuffer *src, struct evbuffer *dst,
                           size_t n)
{
    if (s->upload) {
        if (sim_stream_write(s, src, n) < 0)
            return -1;
        if (s->size > s->max)
            sim_stream_refuse(s, s->max, s->max);
        return 0;
    }
    evbuffer_remove_buffer(src, dst, n);
    return 0;
}

/* Framing bytes of a chunked body: dropped for uploads, passed through otherwise. */
static void sim_stream_framing(struct sim_stream *s, struct evbuffer *src, struct evbuffer *dst,
                               size_t n)
{
    if (s->upload)
        evbuffer_drain(src, n);
    else
        evbuffer_remove_buffer(src, dst, n);
}

static void sim_stream_body_done(struct sim_stream *s, struct evbuffer *dst)
{
    if (s->upload)
        sim_stream_finish_upload(s, dst);
    s->st = ST_HEAD;
}

/* What one step of the input filter asks for next. */
enum sim_step { STEP_AGAIN, STEP_WAIT, STEP_ERROR };

/* ST_HEAD: a whole head (or wait for it; give up parsing past SIM_STREAM_MAX_HEAD). */
static enum sim_step sim_step_head(struct sim_stream *s, struct evbuffer *src, struct evbuffer *dst,
                                   size_t len)
{
    /* tolerate blank lines between requests */
    unsigned char c2[2];
    if (evbuffer_copyout(src, c2, 2) == 2 && c2[0] == '\r' && c2[1] == '\n') {
        evbuffer_remove_buffer(src, dst, 2);
        return STEP_AGAIN;
    }
    struct evbuffer_ptr p = evbuffer_search(src, "\r\n\r\n", 4, NULL);
    if (p.pos < 0) {
        if (len > SIM_STREAM_MAX_HEAD) {
            s->st = ST_PASS;
            return STEP_AGAIN;
        }
        return STEP_WAIT;
    }
    sim_stream_head(s, src, (size_t)p.pos + 4, dst);
    return STEP_AGAIN;
}

/* ST_CL, ST_CDATA: up to s->left body bytes; done (0 left) moves to `done`. */
static enum sim_step sim_step_data(struct sim_stream *s, struct evbuffer *src, struct evbuffer *dst,
                                   size_t len, enum sim_stream_state done)
{
    size_t n = len < s->left ? len : (size_t)s->left;
    if (sim_stream_body(s, src, dst, n) < 0)
        return STEP_ERROR;
    if (s->st == ST_DISCARD)
        return STEP_AGAIN;
    s->left -= n;
    if (s->left == 0) {
        if (done == ST_HEAD)
            sim_stream_body_done(s, dst);
        else
            s->st = done;
    }
    return STEP_AGAIN;
}

/* ST_CSIZE, ST_TRAILER: one line (a chunk size, or a trailer until the empty one). */
static enum sim_step sim_step_line(struct sim_stream *s, struct evbuffer *src, struct evbuffer *dst,
                                   size_t len)
{
    size_t eol_len = 0;
    struct evbuffer_ptr p = evbuffer_search_eol(src, NULL, &eol_len, EVBUFFER_EOL_CRLF);
    if (p.pos < 0) {
        if (len > 4096) {
            s->st = ST_PASS;
            return STEP_AGAIN;
        }
        return STEP_WAIT;
    }
    size_t ll = (size_t)p.pos;
    char line[64] = {0};
    evbuffer_copyout(src, line, ll < sizeof line - 1 ? ll : sizeof line - 1);
    sim_stream_framing(s, src, dst, ll + eol_len);
    if (s->st == ST_TRAILER) {
        if (ll == 0)
            sim_stream_body_done(s, dst);
        return STEP_AGAIN;
    }
    char *end;
    unsigned long long n = strtoull(line, &end, 16);
    if (end == line) {
        s->st = ST_PASS;
    } else if (n == 0) {
        s->st = ST_TRAILER;
    } else {
        s->left = n;
        s->st = ST_CDATA;
    }
    return STEP_AGAIN;
}

static enum sim_step sim_stream_step(struct sim_stream *s, struct evbuffer *src,
                                     struct evbuffer *dst, size_t len)
{
    switch (s->st) {
    case ST_PASS:
        evbuffer_add_buffer(dst, src);
        return STEP_WAIT;
    case ST_DISCARD:
        evbuffer_drain(src, len);
        return STEP_WAIT;
    case ST_HEAD:
        return sim_step_head(s, src, dst, len);
    case ST_CL:
        return sim_step_data(s, src, dst, len, ST_HEAD);
    case ST_CSIZE:
    case ST_TRAILER:
        return sim_step_line(s, src, dst, len);
    case ST_CDATA:
        return sim_step_data(s, src, dst, len, ST_CCRLF);
    case ST_CCRLF:
        if (len < 2)
            return STEP_WAIT;
        sim_stream_framing(s, src, dst, 2);
        s->st = ST_CSIZE;
        return STEP_AGAIN;
    }
    return STEP_WAIT;
}

static enum bufferevent_filter_result sim_stream_in(struct evbuffer *src, struct evbuffer *dst,
                                                    ev_ssize_t limit,
                                                    enum bufferevent_flush_mode mode, void *arg)
{
    (void)limit;
    (void)mode;
    struct sim_stream *s = arg;
    /* libevent calls us again while src is non-empty and we answer BEV_OK: answer NEED_MORE
     * when nothing could be consumed */
    size_t len0 = evbuffer_get_length(src);
    for (;;) {
        size_t len = evbuffer_get_length(src);
        if (len == 0)
            break;
        enum sim_step step = sim_stream_step(s, src, dst, len);
        if (step == STEP_ERROR)
            return BEV_ERROR;
        if (step == STEP_WAIT)
            break;
    }
    return evbuffer_get_length(src) < len0 ? BEV_OK : BEV_NEED_MORE;
}

/*
 * libevent 2.1's filter does not pass output on when EV_WRITE gets enabled after the data
 * was written, which is exactly what evhttp does (it writes the response, then enables
 * writing): responses would sit in the filter until the next socket event. Every addition to
 * the filter's output therefore schedules a flush on the next loop iteration.
 */
/*
 * Flush the filter's output, unless evhttp has freed the connection already: a freed
 * bufferevent lives on (callbacks cleared) until its deferred finalization, and a flush
 * then would take and drop a reference a second time, unlinking it twice.
 */
static void sim_stream_flush(struct sim_stream *s)
{
    bufferevent_event_cb ecb = NULL;
    bufferevent_getcb(s->filter, NULL, NULL, &ecb, NULL);
    if (ecb)
        bufferevent_flush(s->filter, EV_WRITE, BEV_NORMAL);
}

static void sim_stream_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sim_stream_flush(arg);
}

static void sim_stream_outcb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    struct sim_stream *s = arg;
    if (info->n_added)
        event_active(s->kick, EV_TIMEOUT, 0);
}

static void sim_stream_wready(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sim_stream_flush(arg);
}

/* Wait for the socket to be writable (its fd is known only after sim_stream_bevcb). */
static void sim_stream_arm_wready(struct sim_stream *s, evutil_socket_t fd)
{
    if (s->wready && event_get_fd(s->wready) != fd) {
        event_free(s->wready);
        s->wready = NULL;
    }
    if (!s->wready) {
        s->wready = event_new(bufferevent_get_base(s->under), fd, EV_WRITE, sim_stream_wready, s);
        if (!s->wready)
            abort();
    }
    event_add(s->wready, NULL);
}

/*
 * Output filter: responses go from the filter's output straight to the socket. evhttp takes
 * a response as sent once the filter's output is empty, and for "Connection: close" or
 * HTTP/1.0 it then frees the connection, which shutdown()s and closes the socket at once:
 * bytes still waiting in the socket bufferevent's output would be lost (an empty reply). So
 * the filter's output only empties when the kernel has taken every byte: they are written
 * here with write(2) (the socket is non-blocking); what the socket does not take stays in
 * the filter's output and s->wready flushes it when the socket is writable again. Bytes the
 * filter itself queued on the socket bufferevent (100 Continue, an early 413) go first: while
 * there are any, nothing is written here and the socket bufferevent's write callback (which
 * the filter forwards here) resumes once they are out. The filter defers its callbacks
 * (BEV_OPT_DEFER_CALLBACKS): evhttp then frees a closing connection from the loop, not from
 * inside the filter's own flush, which left libevent 2.1 finalizing the filter twice.
 */
static enum bufferevent_filter_result sim_stream_out(struct evbuffer *src, struct evbuffer *dst,
                                                     ev_ssize_t limit,
                                                     enum bufferevent_flush_mode mode, void *arg)
{
    (void)limit;
    (void)mode;
    struct sim_stream *s = arg;
    /* BEV_OK with an unchanged src would make the caller loop: NEED_MORE when stuck */
    if (evbuffer_get_length(src) == 0 || evbuffer_get_length(dst) > 0)
        return BEV_NEED_MORE;
    evutil_socket_t fd = bufferevent_getfd(s->under);
    if (fd < 0) {
        evbuffer_add_buffer(dst, src);
        return BEV_OK;
    }
    while (evbuffer_get_length(src) > 0) {
        int w = evbuffer_write(src, fd);
        if (w > 0)
            continue;
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            sim_stream_arm_wready(s, fd);
            return BEV_NEED_MORE;
        }
        /* a dead socket: let the socket bufferevent hit the error and report it the usual
         * way (event callback -> evhttp frees the connection) */
        evbuffer_add_buffer(dst, src);
        return BEV_OK;
    }
    return BEV_OK;
}

struct bufferevent *sim_stream_bevcb(struct event_base *base, void *arg)
{
    struct sim_ctx *ctx = arg;
    struct bufferevent *under = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!under)
        return NULL;
    struct sim_stream *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->ctx = ctx;
    s->under = under;
    s->fd = -1;
    s->st = ST_HEAD;
    struct bufferevent *f = bufferevent_filter_new(under, sim_stream_in, sim_stream_out,
                                                   BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS,
                                                   sim_stream_ctx_free, s);
    if (!f) {
        bufferevent_free(under);
        free(s);
        return NULL;
    }
    s->filter = f;
    s->kick = event_new(base, -1, 0, sim_stream_kick, s);
    if (!s->kick)
        abort();
    evbuffer_add_cb(bufferevent_get_output(f), sim_stream_outcb, s);
    return f;
}

struct sim_upload *sim_stream_take(struct sim_ctx *ctx, const char *id_header)
{
    if (!id_header || !*id_header)
        return NULL;
    char *end;
    unsigned long long id = strtoull(id_header, &end, 10);
    if (*end)
        return NULL;
    for (struct sim_upload **pp = &ctx->uploads; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            struct sim_upload *u = *pp;
            *pp = u->next;
            u->next = NULL;
            return u;
        }
    }
    return NULL;
}

void sim_stream_free_all(struct sim_ctx *ctx)
{
    while (ctx->uploads) {
        struct sim_upload *u = ctx->uploads;
        ctx->uploads = u->next;
        if (u->path) {
            unlink(u->path);
            free(u->path);
        }
        free(u);
    }
}
