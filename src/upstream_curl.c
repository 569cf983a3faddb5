/*
 * upstream_curl: the libcurl transport of upstream.h (upstream_impl.h), used for https://
 * upstreams (TLS, HTTP/2 multiplexing) and any host name; see upstream.h for the contract.
 *
 * The multi handle is driven the hiperfifo way: curl tells us which sockets to watch
 * (sock_cb) and when to wake it (multi_timer_cb); libevent events call
 * curl_multi_socket_action(), and finished transfers are collected with
 * curl_multi_info_read(). Callbacks into the caller happen from curl's callbacks; a
 * request cancelled from inside one is only marked and freed when curl lets go of it.
 *
 * Rules: one struct ucurl per worker thread; nothing here is shared across threads.
 */
#include "upstream.h"
#include "upstream_impl.h"

#include <assert.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/http.h>

#include "config.h"
#include "hdr.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

struct ucurl {
    struct upstream base_; /* first: the front's view (upstream_impl.h) */
    struct event_base *base;
    const struct hg_config *cfg;
    CURLM *multi;
    struct event *timer;
    unsigned inflight;
    uint64_t conns_opened;
    int in_action;               /* inside curl_multi_socket_action: don't recurse */
    struct ucurl_req *zombies;   /* cancelled during socket_action, freed after it */
    CURL *spare[64];             /* easy handles kept for reuse */
    unsigned char spare_get[64]; /* 1: last used for a plain GET, options kept (no reset) */
    int nspare;
    struct ucurl_req *live; /* every request not yet freed */
    struct sock_ctx **byfd; /* socket contexts by descriptor (parked ones included) */
    size_t nbyfd;
};

/* One per socket curl opened. When curl stops watching a socket (CURL_POLL_REMOVE: the
 * transfer ended, the connection went back to the pool) the context is parked with its
 * read event left registered, so that the next transfer on the connection re-arms it
 * without an epoll_ctl pair per request. A parked socket that turns readable (the server
 * closed the idle connection) only drops its event; curl finds the connection dead at the
 * next reuse. The context goes when curl closes the socket (close_cb). */
struct sock_ctx {
    struct event *ev;
    struct ucurl *up;
    curl_socket_t fd;
    int parked;
};

struct ucurl_req {
    struct upstream_req base_; /* first: the front's view (upstream_impl.h) */
    struct ucurl *up;
    CURL *easy;
    int setup_done;
    int easy_get;  /* the handle holds every option of a plain GET but the per-request ones */
    int plain_get; /* this request is a plain GET (no body) */
    char *method;
    char *url;
    struct curl_slist *headers;
    int has_content_type, has_accept;

    int body_ended;
    int body_taken;       /* curl took a body byte */
    int producer_blocked; /* upstream_body_write returned above the high water */
    uint64_t bytes_out;

    const struct upstream_callbacks *cb;
    void *arg;

    /* response */
    int status;
    struct evkeyvalq resp_headers;
    int in_head; /* collecting a header block */
    int head_delivered;
    int discarding; /* this answer is swallowed: a GET 502/503 that will be retried */
    struct evbuffer *chunk;
    uint64_t bytes_in;

    int send_paused, recv_paused;
    int in_multi;
    int cb_depth;  /* inside a callback into the caller */
    int cancelled; /* cancel requested while curl still holds the handle */
    int attempts;
    uint64_t started_ms;
    struct event *retry_timer;
    struct event *drain_ev;
    struct ucurl_req *zombie_next;
    int zombie;
    struct ucurl_req *live_next, *live_prev;
    char errbuf[CURL_ERROR_SIZE];
};

static void check_done(struct ucurl *up);

/* ---- helpers ---- */

static enum upstream_outcome classify(CURLcode rc)
{
    switch (rc) {
    case CURLE_OK:
        return UPSTREAM_OK;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return UPSTREAM_CONNECT_ERROR;
    case CURLE_OPERATION_TIMEDOUT:
        return UPSTREAM_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
        return UPSTREAM_TLS_ERROR;
    case CURLE_READ_ERROR:
    case CURLE_ABORTED_BY_CALLBACK:
        return UPSTREAM_BODY_ERROR;
    default:
        return UPSTREAM_PROTOCOL_ERROR;
    }
}

static void apply_pause(struct ucurl_req *u)
{
    int mask = (u->recv_paused ? CURLPAUSE_RECV : 0) | (u->send_paused ? CURLPAUSE_SEND : 0);
    if (u->in_multi)
        curl_easy_pause(u->easy, mask);
}

/* ---- curl <-> libevent ---- */

static void event_cb(evutil_socket_t fd, short kind, void *arg)
{
    struct sock_ctx *sc = arg;
    struct ucurl *up = sc->up;
    if (sc->parked) {
        event_del(sc->ev); /* an idle pooled connection: EOF or stray bytes */
        return;
    }
    int action =
        ((kind & EV_READ) ? CURL_CSELECT_IN : 0) | ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running = 0;
    up->in_action++;
    curl_multi_socket_action(up->multi, fd, action, &running);
    up->in_action--;
    check_done(up);
}

static void timer_cb(evutil_socket_t fd, short kind, void *arg)
{
    struct ucurl *up = arg;
    int running = 0;
    up->in_action++;
    curl_multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    up->in_action--;
    check_done(up);
}

static int multi_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct ucurl *up = userp;
    if (timeout_ms < 0) {
        evtimer_del(up->timer);
    } else {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evtimer_add(up->timer, &tv);
    }
    return 0;
}

static struct sock_ctx *sock_lookup(struct ucurl *up, curl_socket_t s)
{
    return s >= 0 && (size_t)s < up->nbyfd ? up->byfd[s] : NULL;
}

static void sock_arm(struct sock_ctx *sc, short kind)
{
    if (event_get_events(sc->ev) == kind && event_pending(sc->ev, EV_READ | EV_WRITE, NULL))
        return; /* unchanged: spare the epoll_ctl calls */
    event_del(sc->ev);
    event_assign(sc->ev, sc->up->base, sc->fd, kind, event_cb, sc);
    event_add(sc->ev, NULL);
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct ucurl *up = userp;
    struct sock_ctx *sc = socketp ? socketp : sock_lookup(up, s);
    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            /* park: keep (or make) a read-only registration, see struct sock_ctx */
            sc->parked = 1;
            sock_arm(sc, EV_READ | EV_PERSIST);
            curl_multi_assign(up->multi, s, NULL);
        }
        return 0;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                         ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    if (!sc) {
        if (s < 0)
            return -1;
        if ((size_t)s >= up->nbyfd) {
            size_t n = up->nbyfd ? up->nbyfd : 64;
            while (n <= (size_t)s)
                n *= 2;
            struct sock_ctx **t = realloc(up->byfd, n * sizeof *t);
            if (!t)
                abort();
            memset(t + up->nbyfd, 0, (n - up->nbyfd) * sizeof *t);
            up->byfd = t;
            up->nbyfd = n;
        }
        sc = calloc(1, sizeof *sc);
        if (!sc)
            abort();
        sc->up = up;
        sc->fd = s;
        sc->ev = event_new(up->base, s, kind, event_cb, sc);
        if (!sc->ev)
            abort();
        up->byfd[s] = sc;
        event_add(sc->ev, NULL);
    } else {
        sock_arm(sc, kind);
    }
    sc->parked = 0;
    if (sc != socketp)
        curl_multi_assign(up->multi, s, sc);
    return 0;
}

static void sock_ctx_free(struct ucurl *up, struct sock_ctx *sc)
{
    up->byfd[sc->fd] = NULL;
    event_free(sc->ev);
    free(sc);
}

/* curl closes a socket: its context (parked or not) goes first */
static int close_cb(void *clientp, curl_socket_t s)
{
    struct ucurl *up = clientp;
    struct sock_ctx *sc = sock_lookup(up, s);
    if (sc)
        sock_ctx_free(up, sc);
    return close(s);
}

/* ---- lifecycle ---- */

static struct upstream *cu_new(struct event_base *base, const struct hg_config *cfg)
{
    struct ucurl *up = calloc(1, sizeof *up);
    if (!up)
        abort();
    up->base = base;
    up->cfg = cfg;
    up->multi = curl_multi_init();
    if (!up->multi) {
        free(up);
        log_msg(LOG_ERR, "curl_multi_init failed");
        return NULL;
    }
    up->timer = evtimer_new(base, timer_cb, up);
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, multi_timer_cb);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
    curl_multi_setopt(up->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    if (cfg->upstream.max_connections_per_host)
        curl_multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                          (long)cfg->upstream.max_connections_per_host);
    curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS,
                      (long)(cfg->upstream.max_connections_per_host
                                 ? cfg->upstream.max_connections_per_host * 2
                                 : 64));
    return &up->base_;
}

static void req_free(struct ucurl_req *u);

static void cu_free(struct upstream *upb)
{
    struct ucurl *up = (struct ucurl *)upb;
    if (!up)
        return;
    /* the loop has stopped: whatever is still in flight (a drain that timed out, a
     * background refresh) is dropped without callbacks */
    while (up->live)
        req_free(up->live);
    while (up->nspare)
        curl_easy_cleanup(up->spare[--up->nspare]);
    curl_multi_cleanup(up->multi);
    for (size_t i = 0; i < up->nbyfd; i++)
        if (up->byfd[i])
            sock_ctx_free(up, up->byfd[i]);
    free(up->byfd);
    event_free(up->timer);
    free(up);
}

static unsigned cu_inflight(const struct upstream *upb)
{
    const struct ucurl *up = (const struct ucurl *)upb;
    return up->inflight;
}

static uint64_t cu_conns_opened(const struct upstream *upb)
{
    const struct ucurl *up = (const struct ucurl *)upb;
    return up->conns_opened;
}

/* ---- curl callbacks ---- */

static void deliver_head(struct ucurl_req *u)
{
    hdr_strip_hop_by_hop(&u->resp_headers);
    u->head_delivered = 1;
    u->cb_depth++;
    int rc = u->cb->on_head ? u->cb->on_head(u->arg, u->status, &u->resp_headers) : 0;
    u->cb_depth--;
    if (rc < 0)
        u->cancelled = 1;
}

static int can_retry_more(const struct ucurl_req *u)
{
    return upstream_retry_allowed(u->up->cfg, u->base_.no_retry, u->attempts, u->started_ms);
}

static size_t header_cb(char *buf, size_t size, size_t n, void *ud)
{
    struct ucurl_req *u = ud;
    size_t len = size * n;
    if (u->cancelled)
        return 0;
    if (u->head_delivered || u->discarding)
        return len; /* trailers: dropped */
    if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        evhttp_clear_headers(&u->resp_headers);
        const char *sp = memchr(buf, ' ', len);
        u->status = sp ? atoi(sp + 1) : 0;
        u->in_head = 1;
        return len;
    }
    if (!u->in_head)
        return len;
    size_t l = len;
    while (l && (buf[l - 1] == '\n' || buf[l - 1] == '\r'))
        l--;
    if (l == 0) {
        /* end of a header block */
        u->in_head = 0;
        if (u->status < 200)
            return len; /* 1xx: the real answer follows */
        if (u->status < 100 || u->status > 599)
            return 0; /* malformed */
        if (u->status == 502 || u->status == 503) {
            if (strcmp(u->method, "GET") == 0 && can_retry_more(u)) {
                u->discarding = 1;
                return len;
            }
        }
        deliver_head(u);
        return u->cancelled ? 0 : len;
    }
    if (buf[0] == ' ' || buf[0] == '\t')
        return len; /* obsolete line folding: dropped */
    const char *colon = memchr(buf, ':', l);
    if (!colon || !hdr_name_ok(buf, (size_t)(colon - buf)))
        return len; /* not a header: dropped */
    char name[256];
    size_t nl = (size_t)(colon - buf);
    if (nl >= sizeof name)
        return len;
    memcpy(name, buf, nl);
    name[nl] = '\0';
    const char *v = colon + 1, *end = buf + l;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vl = (size_t)(end - v);
    char vbuf[512];
    char *value = vl < sizeof vbuf ? vbuf : malloc(vl + 1);
    if (!value)
        abort();
    memcpy(value, v, vl);
    value[vl] = '\0';
    if (hdr_value_ok(value))
        evhttp_add_header(&u->resp_headers, name, value);
    if (value != vbuf)
        free(value);
    return len;
}

static size_t write_cb(char *buf, size_t size, size_t n, void *ud)
{
    struct ucurl_req *u = ud;
    size_t len = size * n;
    if (u->cancelled)
        return 0;
    if (u->discarding)
        return len;
    if (!u->head_delivered) {
        /* body without a complete head (e.g. HTTP/0.9): refuse */
        return 0;
    }
    u->bytes_in += len;
    evbuffer_add(u->chunk, buf, len);
    u->cb_depth++;
    int rc = u->cb->on_data ? u->cb->on_data(u->arg, u->chunk) : 0;
    u->cb_depth--;
    evbuffer_drain(u->chunk, evbuffer_get_length(u->chunk));
    if (u->cancelled)
        return 0;
    if (rc == UPSTREAM_PAUSE && !u->recv_paused) {
        u->recv_paused = 1;
        curl_easy_pause(u->easy, CURLPAUSE_RECV | (u->send_paused ? CURLPAUSE_SEND : 0));
    }
    return len;
}

static void drain_ev_cb(evutil_socket_t fd, short ev, void *arg)
{
    struct ucurl_req *u = arg;
    if (u->cancelled || !u->producer_blocked)
        return;
    u->producer_blocked = 0;
    if (u->cb->on_body_drain) {
        u->cb_depth++;
        u->cb->on_body_drain(u->arg);
        u->cb_depth--;
        if (u->cancelled)
            req_free(u);
    }
}

static size_t read_cb(char *buf, size_t size, size_t n, void *ud)
{
    struct ucurl_req *u = ud;
    if (u->cancelled)
        return CURL_READFUNC_ABORT;
    size_t want = size * n;
    size_t have = evbuffer_get_length(u->base_.body);
    if (have == 0) {
        if (u->body_ended)
            return 0;
        u->send_paused = 1;
        return CURL_READFUNC_PAUSE;
    }
    int got = evbuffer_remove(u->base_.body, buf, want);
    if (got <= 0)
        return CURL_READFUNC_ABORT;
    u->body_taken = 1;
    u->bytes_out += (uint64_t)got;
    if (u->producer_blocked && evbuffer_get_length(u->base_.body) < UPSTREAM_BODY_HIGHWATER / 2) {
        if (!u->drain_ev)
            u->drain_ev = event_new(u->up->base, -1, 0, drain_ev_cb, u);
        event_active(u->drain_ev, 0, 0);
    }
    return (size_t)got;
}

static int sockopt_cb(void *ud, curl_socket_t fd, curlsocktype purpose)
{
    /* a new connection: counted for metrics and the HTTP/2 multiplexing test */
    struct ucurl_req *u = ud;
    if (purpose == CURLSOCKTYPE_IPCXN) {
        u->up->conns_opened++;
        metrics_inc(M_UPSTREAM_CONNECTIONS, 1);
    }
    return CURL_SOCKOPT_OK;
}

/* ---- requests ---- */

static struct upstream_req *cu_req_new(struct upstream *upb, const char *method, const char *target)
{
    struct ucurl *up = (struct ucurl *)upb;
    struct ucurl_req *u = calloc(1, sizeof *u);
    if (!u)
        abort();
    u->up = up;
    u->method = strdup(method);
    size_t bl = strlen(up->cfg->upstream.url), tl = strlen(target);
    u->url = malloc(bl + tl + 1);
    if (!u->method || !u->url)
        abort();
    memcpy(u->url, up->cfg->upstream.url, bl);
    memcpy(u->url + bl, target, tl + 1);
    TAILQ_INIT(&u->resp_headers);
    u->chunk = evbuffer_new();
    if (up->nspare) {
        up->nspare--;
        u->easy = up->spare[up->nspare];
        u->easy_get = up->spare_get[up->nspare];
    } else {
        u->easy = curl_easy_init();
    }
    if (!u->easy)
        abort();
    up->inflight++;
    metrics_gauge_add(G_UPSTREAM_INFLIGHT, 1);
    u->live_next = up->live;
    if (up->live)
        up->live->live_prev = u;
    up->live = u;
    return &u->base_;
}

static int cu_add_header(struct upstream_req *ur, const char *name, const char *value)
{
    struct ucurl_req *u = (struct ucurl_req *)ur;
    if (!hdr_name_ok(name, strlen(name)) || !hdr_value_ok(value))
        return -1;
    if (strcasecmp(name, "Content-Type") == 0)
        u->has_content_type = 1;
    if (strcasecmp(name, "Accept") == 0)
        u->has_accept = 1;
    size_t nl = strlen(name), vl = strlen(value), n = nl + vl + 3;
    char lbuf[512];
    char *line = n <= sizeof lbuf ? lbuf : malloc(n);
    if (!line)
        abort();
    memcpy(line, name, nl);
    if (vl) {
        line[nl] = ':';
        line[nl + 1] = ' ';
        memcpy(line + nl + 2, value, vl + 1);
    } else {
        line[nl] = ';'; /* curl's spelling of an empty header */
        line[nl + 1] = '\0';
    }
    struct curl_slist *l = curl_slist_append(u->headers, line);
    if (line != lbuf)
        free(line);
    if (!l)
        abort();
    u->headers = l;
    return 0;
}

static int cu_set_bearer(struct upstream_req *ur, const char *token, size_t len)
{
    struct ucurl_req *u = (struct ucurl_req *)ur;
    size_t n = len + 32;
    char *line = malloc(n);
    if (!line)
        abort();
    int w = snprintf(line, n, "Authorization: Bearer %.*s", (int)len, token);
    struct curl_slist *l = curl_slist_append(u->headers, line);
    util_wipe(line, (size_t)w);
    free(line);
    if (!l)
        abort();
    u->headers = l;
    return 0;
}

static int cu_sent(const struct ucurl_req *u)
{
    long hdr = 0;
    curl_easy_getinfo(u->easy, CURLINFO_REQUEST_SIZE, &hdr);
    return hdr > 0 || u->body_taken;
}

static void set_headers(struct ucurl_req *u)
{
    /* curl must not add headers of its own choosing */
    if (!u->has_accept)
        u->headers = curl_slist_append(u->headers, "Accept:");
    if (!u->has_content_type)
        u->headers = curl_slist_append(u->headers, "Content-Type:");
    u->headers = curl_slist_append(u->headers, "Expect:");
    curl_easy_setopt(u->easy, CURLOPT_HTTPHEADER, u->headers);
}

static void setup_easy(struct ucurl_req *u)
{
    const struct hg_config *cfg = u->up->cfg;
    CURL *e = u->easy;
    u->plain_get = u->base_.body_kind == UPSTREAM_BODY_NONE && strcmp(u->method, "GET") == 0;
    if (u->plain_get && u->easy_get) {
        /* the handle's last transfer was a plain GET too: every other option is as
         * below already (curl_easy_reset and thirty setopt calls spared) */
        curl_easy_setopt(e, CURLOPT_URL, u->url);
        curl_easy_setopt(e, CURLOPT_PRIVATE, u);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, u->errbuf);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, u);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, u);
        curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, u);
        set_headers(u);
        return;
    }
    curl_easy_setopt(e, CURLOPT_URL, u->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* never a proxy from the environment */
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, u);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, u->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, u);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, u);
    curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
    curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, u);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, u->up);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 65536L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     cfg->upstream.http2 ? (long)CURL_HTTP_VERSION_2TLS
                                         : (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, cfg->upstream.http2 ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, cfg->upstream.tls_verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, cfg->upstream.tls_verify ? 2L : 0L);
    if (cfg->upstream.ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, cfg->upstream.ca_file);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->upstream.connect_timeout_ms);
    long stall = (long)((cfg->upstream.timeout_ms + 999) / 1000);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, stall > 0 ? stall : 1L);
    if (cfg->upstream.idle_timeout_ms)
        curl_easy_setopt(e, CURLOPT_MAXAGE_CONN,
                         (long)((cfg->upstream.idle_timeout_ms + 999) / 1000));
    set_headers(u);

    if (strcmp(u->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (u->base_.body_kind == UPSTREAM_BODY_MEM) {
        size_t n = evbuffer_get_length(u->base_.body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS,
                         n ? (char *)evbuffer_pullup(u->base_.body, -1) : "");
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, u->method);
    } else if (u->base_.body_kind == UPSTREAM_BODY_STREAM) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(e, CURLOPT_READDATA, u);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)u->base_.body_len);
        curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 65536L);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, u->method);
    } else if (strcmp(u->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, u->method);
    }
}

static int attempt(struct ucurl_req *u)
{
    u->attempts++;
    u->status = 0;
    u->in_head = 0;
    u->discarding = 0;
    u->head_delivered = 0;
    evhttp_clear_headers(&u->resp_headers);
    if (u->attempts > 1)
        metrics_inc(M_UPSTREAM_RETRIES, 1);
    if (curl_multi_add_handle(u->up->multi, u->easy) != CURLM_OK)
        return -1;
    u->in_multi = 1;
    return 0;
}

static int cu_send(struct upstream_req *ur, const struct upstream_callbacks *cb, void *arg)
{
    struct ucurl_req *u = (struct ucurl_req *)ur;
    u->cb = cb;
    u->arg = arg;
    u->started_ms = util_mono_ms();
    setup_easy(u);
    u->setup_done = 1;
    if (attempt(u) != 0) {
        req_free(u);
        return -1;
    }
    return 0;
}

static size_t cu_body_write(struct upstream_req *ur, struct evbuffer *data)
{
    struct ucurl_req *u = (struct ucurl_req *)ur;
    assert(u->base_.body_kind == UPSTREAM_BODY_STREAM);
    evbuffer_add_buffer(u->base_.body, data);
    size_t n = evbuffer_get_length(u->base_.body);
    if (n >= UPSTREAM_BODY_HIGHWATER)
        u->producer_blocked = 1;
    if (u->send_paused && n > 0) {
        u->send_paused = 0;
        apply_pause(u);
    }
    return n;
}

static void cu_body_end(struct upstream_req *ur)
{
    struct ucurl_req *u = (struct ucurl_req *)ur;
    assert(u->base_.body_kind == UPSTREAM_BODY_STREAM);
    u->body_ended = 1;
    if (u->send_paused) {
        u->send_paused = 0;
        apply_pause(u);
    }
}

static void cu_resume(struct upstream_req *ur)
{
    struct ucurl_req *u = (struct ucurl_req *)ur;
    if (!u->recv_paused)
        return;
    u->recv_paused = 0;
    apply_pause(u);
}

static void wipe_headers(struct curl_slist *l)
{
    for (; l; l = l->next)
        if (strncasecmp(l->data, "Authorization:", 14) == 0)
            util_wipe(l->data, strlen(l->data));
}

static void req_free(struct ucurl_req *u)
{
    struct ucurl *up = u->up;
    if (u->live_prev)
        u->live_prev->live_next = u->live_next;
    else
        up->live = u->live_next;
    if (u->live_next)
        u->live_next->live_prev = u->live_prev;
    if (u->in_multi) {
        curl_multi_remove_handle(up->multi, u->easy);
        u->in_multi = 0;
    }
    if (up->nspare < (int)(sizeof up->spare / sizeof *up->spare)) {
        /* a plain GET's handle keeps its options for the next plain GET; any other is
         * reset (options gone; the pool lives in the multi handle) */
        int keep = u->plain_get && u->setup_done;
        if (!keep)
            curl_easy_reset(u->easy);
        up->spare_get[up->nspare] = (unsigned char)keep;
        up->spare[up->nspare++] = u->easy;
    } else {
        curl_easy_cleanup(u->easy);
    }
    wipe_headers(u->headers);
    curl_slist_free_all(u->headers);
    evhttp_clear_headers(&u->resp_headers);
    if (u->base_.body)
        evbuffer_free(u->base_.body);
    evbuffer_free(u->chunk);
    if (u->retry_timer)
        event_free(u->retry_timer);
    if (u->drain_ev)
        event_free(u->drain_ev);
    free(u->method);
    free(u->url);
    free(u);
    up->inflight--;
    metrics_gauge_add(G_UPSTREAM_INFLIGHT, -1);
}

static void cu_cancel(struct upstream_req *ur)
{
    struct ucurl_req *u = (struct ucurl_req *)ur;
    if (!u || u->cancelled)
        return;
    u->cancelled = 1;
    if (u->cb_depth > 0)
        return; /* the frame that called back into the caller frees it */
    if (u->up->in_action) {
        /* inside curl_multi_socket_action: removing the handle is not allowed now */
        u->zombie_next = u->up->zombies;
        u->up->zombies = u;
        u->zombie = 1;
        return;
    }
    req_free(u);
}

static void retry_cb(evutil_socket_t fd, short ev, void *arg)
{
    struct ucurl_req *u = arg;
    if (attempt(u) != 0) {
        struct upstream_result r = {.outcome = UPSTREAM_CONNECT_ERROR,
                                    .attempts = u->attempts,
                                    .error = "could not restart the transfer"};
        u->cb_depth++;
        u->cb->on_done(u->arg, &r);
        u->cb_depth--;
        req_free(u);
        return;
    }
    if (u->cancelled) /* cancelled while waiting for this timer's turn */
        req_free(u);
}

static void finish(struct ucurl_req *u, CURLcode rc)
{
    struct ucurl *up = u->up;
    curl_multi_remove_handle(up->multi, u->easy);
    u->in_multi = 0;
    if (u->cancelled) {
        metrics_upstream_done(UPSTREAM_CANCELLED, u->status);
        if (!u->zombie)
            req_free(u);
        return;
    }
    enum upstream_outcome o = classify(rc);
    if (rc == CURLE_WRITE_ERROR && !u->head_delivered)
        o = UPSTREAM_PROTOCOL_ERROR;
    int sent = cu_sent(u);
    struct upstream_attempt_end e = {
        .outcome = o,
        .discarding = u->discarding,
        .head_delivered = u->head_delivered,
        .replayable = u->base_.body_kind != UPSTREAM_BODY_STREAM || !u->body_taken,
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
    r.curl_code = (int)rc;
    r.bytes_in = u->bytes_in;
    r.bytes_out =
        u->base_.body_kind == UPSTREAM_BODY_MEM ? evbuffer_get_length(u->base_.body) : u->bytes_out;
    long nc = 0;
    curl_easy_getinfo(u->easy, CURLINFO_NUM_CONNECTS, &nc);
    r.num_connects = nc;
    r.error = u->errbuf[0] ? u->errbuf : curl_easy_strerror(rc);
    upstream_report_done(u->cb, u->arg, &u->cb_depth, &r, u->method);
    req_free(u);
}

static void check_done(struct ucurl *up)
{
    if (up->in_action)
        return;
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(up->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct ucurl_req *u = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&u);
        assert(u);
        finish(u, m->data.result);
    }
    while (up->zombies) {
        struct ucurl_req *z = up->zombies;
        up->zombies = z->zombie_next;
        req_free(z);
    }
}

static int cu_req_sent(const struct upstream_req *ur)
{
    return cu_sent((const struct ucurl_req *)ur);
}

const struct upstream_ops upstream_curl_ops = {
    .name = "curl",
    .create = cu_new,
    .destroy = cu_free,
    .inflight = cu_inflight,
    .conns_opened = cu_conns_opened,
    .req_new = cu_req_new,
    .add_header = cu_add_header,
    .set_bearer = cu_set_bearer,
    .send = cu_send,
    .body_write = cu_body_write,
    .body_end = cu_body_end,
    .resume = cu_resume,
    .cancel = cu_cancel,
    .sent = cu_req_sent,
};
