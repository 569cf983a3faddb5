/*
 * server: see server.h. Worker threads (one event_base each), the listening sockets, the
 * accept path (max_connections, fd exhaustion), drain on shutdown, and the wiring of the
 * request path: the stage table (stages.h) given to the pipeline, worker 0's admin
 * listener (admin.h). Connections themselves are conn.c's.
 *
 * Threading: each worker runs its own event_base, listeners (one shared socket per
 * address, made once here), connections, upstream handle and access-log buffer. The only
 * cross-thread signals are the stop and reload events (event_active, with
 * evthread_use_pthreads() on). Each worker keeps a reference to the current config
 * snapshot (cfgsnap.h) and refreshes it when the generation changes; every request holds
 * its own reference to the snapshot it started with.
 */
#include "server.h"
#include "redis.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <event2/http.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "admin.h"
#include "cfgsnap.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "metrics.h"
#include "pipeline.h"
#include "stages.h"
#include "upstream.h"
#include "util.h"

static struct {
    const struct hg_config *cfg;
    struct hg_worker *workers;
    unsigned nworkers;
    int unix_fd;
    int listen_fds[17]; /* TCP listeners + the unix socket, shared by all workers */
    int nlisten_fds;
    atomic_int listening_workers;
    unsigned max_conns;                 /* [server] max_connections, resolved */
    atomic_uint_fast64_t accept_log_ms; /* last "accept:" log line (rate limit) */
    atomic_uint_fast64_t accept_log_suppressed;
    atomic_int draining;
} S = {.unix_fd = -1};

static struct timeval ms_tv(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

static void reload_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_worker_snap(arg);
}

void server_config_changed(void)
{
    for (unsigned i = 0; S.workers && i < S.nworkers; i++)
        if (S.workers[i].reload_ev)
            event_active(S.workers[i].reload_ev, EV_TIMEOUT, 0);
}

int server_draining(void)
{
    return atomic_load(&S.draining);
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

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct hg_worker *w = arg;
    if (w->draining) {
        evutil_closesocket(fd);
        return;
    }
    if (S.max_conns && conn_total() >= S.max_conns && !conn_close_oldest_idle(w)) {
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
    pipeline_thread_end();
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
    int nstages;
    const struct hg_stage_ops *const *stages = stages_default(&nstages);
    pipeline_set_stages(stages, nstages);
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
        conn_worker_snap(w);
        if (worker_listen(w) != 0)
            return -1;
        w->conn_closed = worker_accept_resume;
        if (i == 0 && admin_start(w->base, w->up, cfg) != 0)
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
        if (i == 0)
            admin_stop();
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
