/*
 * gw_upstream: a tiny HTTP/1.1 upstream for the gateway-core integration tests, run as a
 * thread inside the test process on plain sockets. It does what hotdata-sim cannot be
 * asked to do: stall, fail on purpose, stream a gigabyte, count connections and attempts.
 *
 *   GET/any /v1/echo...      200 JSON {"method","path","headers":{..},"body_len","body_hash"}
 *                            (any other path too); ?vary=V adds "Vary: V" to the answer,
 *                            ?ce=gzip answers "Content-Encoding: gzip" when the request's
 *                            Accept-Encoding names gzip, ?ce=force always
 *   GET  /v1/big?n=N         200, Content-Length N, N bytes of 'x' (in 64 KiB writes)
 *   any  /v1/upload          reads the body (Content-Length or chunked), 200 {"bytes":N}
 *   any  /v1/stall           reads the request, never answers
 *   any  /v1/slow?ms=M       answers the echo after M milliseconds
 *   any  /v1/fail503?k=K     the first K requests answer 503, later ones 200
 *   any  /v1/status?s=S      answers status S with an API-shaped body (&ra=N: with
 *                            Retry-After: N)
 *   any  /v1/raw/CASE        writes canned wire bytes (gwu_raw: chunked with trailers, 1xx,
 *                            HTTP/1.0, bare LF, malformed heads, truncated bodies, ...)
 *
 * Header-only (static functions) so that each test_*.c can include it; the CMake glob
 * builds only test_*.c files. One process-wide instance per test binary.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct gwu {
    int port;
    int lfd;
    pthread_t thr;
    atomic_int stop;
    atomic_int connections;
    atomic_int requests;
    atomic_int fail_left; /* for /v1/fail503 */
    atomic_int fail_seen;
};

static struct gwu *g_gwu;

static __attribute__((unused)) void gwu_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int gwu_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* buffered reader over a socket */
struct gwu_rd {
    int fd;
    char buf[65536];
    size_t off, len;
};

static ssize_t gwu_fill(struct gwu_rd *r)
{
    if (r->off > 0 && r->off == r->len)
        r->off = r->len = 0;
    if (r->len == sizeof r->buf) {
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
    }
    ssize_t n = recv(r->fd, r->buf + r->len, sizeof r->buf - r->len, 0);
    if (n > 0)
        r->len += (size_t)n;
    return n;
}

/* one line without CRLF into out; -1 on EOF */
static int gwu_line(struct gwu_rd *r, char *out, size_t cap)
{
    for (;;) {
        char *nl = memchr(r->buf + r->off, '\n', r->len - r->off);
        if (nl) {
            size_t n = (size_t)(nl - (r->buf + r->off));
            size_t c = n < cap - 1 ? n : cap - 1;
            memcpy(out, r->buf + r->off, c);
            out[c] = '\0';
            if (c && out[c - 1] == '\r')
                out[c - 1] = '\0';
            r->off += n + 1;
            return 0;
        }
        if (gwu_fill(r) <= 0)
            return -1;
    }
}

/* read n body bytes (discarded), counting */
static long long gwu_skip(struct gwu_rd *r, long long n)
{
    long long got = 0;
    while (got < n) {
        if (r->off == r->len && gwu_fill(r) <= 0)
            return -1;
        size_t avail = r->len - r->off;
        if ((long long)avail > n - got)
            avail = (size_t)(n - got);
        r->off += avail;
        got += (long long)avail;
    }
    return got;
}

static long long gwu_read_body(struct gwu_rd *r, long long cl, int chunked)
{
    if (!chunked)
        return cl > 0 ? gwu_skip(r, cl) : 0;
    long long total = 0;
    char line[256];
    for (;;) {
        if (gwu_line(r, line, sizeof line) != 0)
            return -1;
        long long sz = strtoll(line, NULL, 16);
        if (sz == 0) {
            while (gwu_line(r, line, sizeof line) == 0 && line[0])
                ;
            return total;
        }
        if (gwu_skip(r, sz) != sz)
            return -1;
        total += sz;
        gwu_line(r, line, sizeof line);
    }
}

/* the request being answered on this connection thread is a HEAD: no body goes out (bytes
 * after a HEAD answer would poison the pooled connection for the next request) */
static __thread int gwu_is_head;

static void gwu_reply_x(int fd, int status, const char *ctype, const char *body, int keep,
                        const char *extra)
{
    char head[1024];
    size_t bl = strlen(body);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "X-Upstream: gwu\r\nConnection: %s\r\n%s\r\n",
                     status, ctype, bl, keep ? "keep-alive" : "close", extra ? extra : "");
    gwu_write_all(fd, head, (size_t)n);
    if (!gwu_is_head)
        gwu_write_all(fd, body, bl);
}

static void gwu_reply(int fd, int status, const char *ctype, const char *body, int keep)
{
    gwu_reply_x(fd, status, ctype, body, keep, NULL);
}

/* read n body bytes; the first cap of them into buf; FNV-1a of all of them into *h */
static long long gwu_read_hash(struct gwu_rd *r, long long n, unsigned long long *h)
{
    long long got = 0;
    *h = 1469598103934665603ULL;
    while (got < n) {
        if (r->off == r->len && gwu_fill(r) <= 0)
            return -1;
        size_t avail = r->len - r->off;
        if ((long long)avail > n - got)
            avail = (size_t)(n - got);
        for (size_t i = 0; i < avail; i++)
            *h = (*h ^ (unsigned char)r->buf[r->off + i]) * 1099511628211ULL;
        r->off += avail;
        got += (long long)avail;
    }
    return got;
}

/* the value of query parameter name (up to '&') into out, or "" */
static void gwu_qstr(const char *path, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    const char *q = strchr(path, '?');
    size_t nl = strlen(name);
    for (const char *p = q ? q + 1 : NULL; p && *p;) {
        if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t l = strcspn(p + nl + 1, "&");
            snprintf(out, cap, "%.*s", (int)l, p + nl + 1);
            return;
        }
        p = strchr(p, '&');
        if (p)
            p++;
    }
}

static long gwu_qparam(const char *path, const char *name, long dflt)
{
    const char *q = strchr(path, '?');
    if (!q)
        return dflt;
    size_t nl = strlen(name);
    for (const char *p = q + 1; p && *p;) {
        if (strncmp(p, name, nl) == 0 && p[nl] == '=')
            return strtol(p + nl + 1, NULL, 10);
        p = strchr(p, '&');
        if (p)
            p++;
    }
    return dflt;
}

/* Canned answers for the upstream-client wire tests. Returns 1 if the connection must be
 * closed after it, 0 to keep it, -1 for an unknown case. */
static int gwu_raw(int fd, const char *name)
{
    static const struct {
        const char *name;
        const char *wire;
        int close_after;
    } cases[] = {
        {"chunked",
         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
         "7;ext=1\r\n{\"a\":[1\r\n6\r\n,2,3]}\r\n0\r\nX-Trailer: t\r\n\r\n",
         0},
        {"continue",
         "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX-A: b\r\n\r\n"
         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
         "{\"ok\":true}",
         0},
        {"http10", "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello, 1.0", 1},
        {"eof_body", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", 1},
        {"bare_lf", "HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 2\n\nok", 0},
        {"garbage", "SPDY/9 what\r\n\r\n", 1},
        {"bad_length", "HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\nhello", 1},
        {"two_lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
         1},
        {"bad_chunk",
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 1},
        {"truncated",
         "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly ten b", 1},
        {"no_answer", "", 1},
        {"close_after",
         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", 1},
        {"status_999", "HTTP/1.1 999 Nine\r\nContent-Length: 0\r\n\r\n", 1},
    };
    if (strcmp(name, "big_head") == 0) {
        /* one 200 KiB header line: more than either client accepts */
        const char *h = "HTTP/1.1 200 OK\r\nX-Big: ";
        gwu_write_all(fd, h, strlen(h));
        static char blk[4096];
        memset(blk, 'y', sizeof blk);
        for (int i = 0; i < 50; i++)
            if (gwu_write_all(fd, blk, sizeof blk) != 0)
                return 1;
        const char *t = "\r\nContent-Length: 0\r\n\r\n";
        gwu_write_all(fd, t, strlen(t));
        return 1;
    }
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (strcmp(name, cases[i].name) == 0) {
            /* split writes: the client must reassemble heads and chunk lines */
            const char *w = cases[i].wire;
            size_t n = strlen(w), half = n / 2;
            gwu_write_all(fd, w, half);
            gwu_sleep_ms(2);
            gwu_write_all(fd, w + half, n - half);
            return cases[i].close_after;
        }
    return -1;
}

static void *gwu_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct gwu_rd *r = calloc(1, sizeof *r);
    r->fd = fd;
    char line[8192];
    for (;;) {
        if (gwu_line(r, line, sizeof line) != 0)
            break;
        if (!line[0])
            continue;
        char method[16] = "", path[4096] = "";
        sscanf(line, "%15s %4095s", method, path);
        gwu_is_head = strcmp(method, "HEAD") == 0;
        char hdrs[16384] = "{";
        size_t ho = 1;
        long long cl = 0;
        int chunked = 0, keep = 1;
        char ae[256] = "";
        while (gwu_line(r, line, sizeof line) == 0 && line[0]) {
            char *c = strchr(line, ':');
            if (!c)
                continue;
            *c = '\0';
            char *v = c + 1;
            while (*v == ' ')
                v++;
            if (strcasecmp(line, "Content-Length") == 0)
                cl = atoll(v);
            if (strcasecmp(line, "Transfer-Encoding") == 0 && strcasestr(v, "chunked"))
                chunked = 1;
            if (strcasecmp(line, "Connection") == 0 && strcasestr(v, "close"))
                keep = 0;
            if (strcasecmp(line, "Accept-Encoding") == 0)
                snprintf(ae, sizeof ae, "%s", v);
            /* lower-case names: HTTP/2 and HTTP/1 agree then */
            for (char *k = line; *k; k++)
                *k = (char)tolower((unsigned char)*k);
            if (ho < sizeof hdrs - 600 && !strchr(v, '"') && !strchr(v, '\\'))
                ho += (size_t)snprintf(hdrs + ho, sizeof hdrs - ho, "%s\"%s\":\"%s\"",
                                       ho > 1 ? "," : "", line, v);
        }
        snprintf(hdrs + ho, sizeof hdrs - ho, "}");
        atomic_fetch_add(&g_gwu->requests, 1);
        if (strncmp(path, "/v1/stall", 9) == 0) {
            while (!atomic_load(&g_gwu->stop) && recv(fd, line, sizeof line, 0) > 0)
                ;
            break;
        }
        unsigned long long bh = 0;
        long long got = chunked ? gwu_read_body(r, cl, chunked) : gwu_read_hash(r, cl, &bh);
        if (got < 0)
            break;
        char body[20000];
        if (strncmp(path, "/v1/upload", 10) == 0) {
            snprintf(body, sizeof body, "{\"bytes\":%lld}", got);
            gwu_reply(fd, 200, "application/json", body, keep);
        } else if (strncmp(path, "/v1/big", 7) == 0) {
            long long n = atoll(strstr(path, "n=") ? strstr(path, "n=") + 2 : "0");
            char head[256];
            int hl = snprintf(head, sizeof head,
                              "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n"
                              "Content-Length: %lld\r\n\r\n",
                              strstr(path, "ct=arrow") ? "application/vnd.apache.arrow.stream"
                                                       : "application/octet-stream",
                              n);
            gwu_write_all(fd, head, (size_t)hl);
            static char blk[65536];
            memset(blk, 'x', sizeof blk);
            long long left = gwu_is_head ? 0 : n;
            while (left > 0) {
                size_t w = left > (long long)sizeof blk ? sizeof blk : (size_t)left;
                if (gwu_write_all(fd, blk, w) != 0)
                    break;
                left -= (long long)w;
            }
            if (left > 0)
                break;
        } else if (strncmp(path, "/v1/fail503", 11) == 0) {
            atomic_fetch_add(&g_gwu->fail_seen, 1);
            if (atomic_fetch_sub(&g_gwu->fail_left, 1) > 0)
                gwu_reply(fd, 503, "application/json",
                          "{\"error\":{\"code\":\"SERVICE_UNAVAILABLE\",\"message\":\"x\"}}", keep);
            else
                gwu_reply(fd, 200, "application/json", "{\"ok\":true}", keep);
        } else if (strncmp(path, "/v1/raw/", 8) == 0) {
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)strcspn(path + 8, "?"), path + 8);
            int rc = gwu_raw(fd, name);
            if (rc < 0)
                gwu_reply(fd, 404, "application/json", "{\"error\":\"no such raw case\"}", keep);
            if (rc > 0) {
                shutdown(fd, SHUT_WR);
                gwu_sleep_ms(20);
                break;
            }
        } else if (strncmp(path, "/v1/status", 10) == 0) {
            long s = gwu_qparam(path, "s", 200);
            long ra = gwu_qparam(path, "ra", -1);
            char rah[64] = "";
            if (ra >= 0)
                snprintf(rah, sizeof rah, "Retry-After: %ld\r\n", ra);
            snprintf(body, sizeof body, "{\"status\":%ld}", s);
            gwu_reply_x(fd, (int)s, "application/json", body, keep, ra >= 0 ? rah : NULL);
        } else {
            if (strncmp(path, "/v1/slow", 8) == 0)
                gwu_sleep_ms((int)gwu_qparam(path, "ms", 100));
            int bl = snprintf(body, sizeof body,
                              "{\"method\":\"%s\",\"path\":\"%s\",\"headers\":%s,\"body_len\":%lld,"
                              "\"body_hash\":\"%016llx\"}",
                              method, path, hdrs, got, bh);
            if (bl < 0 || (size_t)bl >= sizeof body) /* echo too large: say so, valid JSON */
                snprintf(body, sizeof body, "{\"error\":\"echo too large\"}");
            char extra[512] = "", vary[128], ce[16];
            gwu_qstr(path, "vary", vary, sizeof vary);
            gwu_qstr(path, "ce", ce, sizeof ce);
            size_t xo = 0;
            if (vary[0])
                xo += (size_t)snprintf(extra + xo, sizeof extra - xo, "Vary: %s\r\n", vary);
            if ((strcmp(ce, "gzip") == 0 && strcasestr(ae, "gzip")) || strcmp(ce, "force") == 0)
                xo += (size_t)snprintf(extra + xo, sizeof extra - xo, "Content-Encoding: gzip\r\n");
            gwu_reply_x(fd, 200, "application/json", body, keep, extra);
        }
        if (!keep)
            break;
    }
    close(fd);
    free(r);
    return NULL;
}

static void *gwu_accept(void *arg)
{
    struct gwu *u = arg;
    for (;;) {
        int fd = accept(u->lfd, NULL, NULL);
        if (fd < 0) {
            if (atomic_load(&u->stop))
                break;
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        atomic_fetch_add(&u->connections, 1);
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_create(&t, &at, gwu_conn, (void *)(intptr_t)fd);
        pthread_attr_destroy(&at);
    }
    return NULL;
}

/* Start on port (0 = any free port). Returns the instance (also g_gwu). */
static __attribute__((unused)) struct gwu *gwu_start(int port)
{
    struct gwu *u = calloc(1, sizeof *u);
    u->lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(u->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    if (bind(u->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(u->lfd, 512) != 0) {
        close(u->lfd);
        free(u);
        return NULL;
    }
    socklen_t sl = sizeof sa;
    getsockname(u->lfd, (struct sockaddr *)&sa, &sl);
    u->port = ntohs(sa.sin_port);
    g_gwu = u;
    pthread_create(&u->thr, NULL, gwu_accept, u);
    return u;
}

static __attribute__((unused)) void gwu_stop(struct gwu *u)
{
    if (!u)
        return;
    atomic_store(&u->stop, 1);
    shutdown(u->lfd, SHUT_RDWR);
    close(u->lfd);
    pthread_join(u->thr, NULL);
    /* connection threads are detached and may still read *u (g_gwu) while they wind
     * down: u is deliberately not freed, but kept reachable (no leak report) */
    static struct gwu *retired[16];
    static int nretired;
    if (nretired < 16)
        retired[nretired++] = u;
    __asm__ volatile("" : : "r"(retired) : "memory"); /* keep the array (and *u) reachable */
}

/* ---- hotgate config helper ---- */

/* Write a hotgate config for upstream_url into dir/hotgate.conf with two clients:
 * "alice" (key ck_alice, full, ws_test+ws_other, default ws_test) and "bob" (key ck_bob,
 * read-only, ws_test only, no default). extra is appended verbatim (may be NULL).
 * Returns the malloc'd path; *port gets the listen port, *admin_port the admin port. */
static __attribute__((unused)) char *gw_write_conf(const char *dir, const char *upstream_url,
                                                   const char *extra, int *port, int *admin_port)
{
    char tokpath[1024], path[1024];
    snprintf(tokpath, sizeof tokpath, "%s/upstream.token", dir);
    FILE *f = fopen(tokpath, "w");
    fputs("tok_test\n", f);
    fclose(f);
    chmod(tokpath, 0600);
    *port = harness_free_port();
    *admin_port = harness_free_port();
    char ka[65], kb[65];
    util_sha256_hex("ck_alice", 8, ka);
    util_sha256_hex("ck_bob", 6, kb);
    snprintf(path, sizeof path, "%s/hotgate.conf", dir);
    /* HG_TEST_UPSTREAM_CLIENT (curl|native): run a suite on one transport (CMakeLists.txt
     * registers the gw suites once per transport) */
    const char *client = getenv("HG_TEST_UPSTREAM_CLIENT");
    if (client && !*client)
        client = NULL;
    f = fopen(path, "w");
    fprintf(f,
            "[server]\nlisten = 127.0.0.1:%d\n%sdrain_timeout = 10\n"
            "access_log = %s/access.log\nlog_level = debug\n"
            "[admin]\nlisten = 127.0.0.1:%d\n"
            "[upstream]\nurl = %s\n%s%s%s"
            "[cache]\nenabled = no\n"
            "[credential main]\ntoken_file = %s\n"
            "[client alice]\nkey_sha256 = %s\ncredential = main\nworkspaces = ws_test, ws_other\n"
            "default_workspace = ws_test\nmode = full\n"
            "[client bob]\nkey_sha256 = %s\ncredential = main\nworkspaces = ws_test\n"
            "mode = read-only\n%s",
            *port, extra && strstr(extra, "threads") ? "" : "threads = 2\n", dir, *admin_port,
            upstream_url, client ? "client = " : "", client ? client : "", client ? "\n" : "",
            tokpath, ka, kb, extra ? extra : "");
    fclose(f);
    return strdup(path);
}

/* A hotgate in front of upstream_url (config from gw_write_conf, extra appended) in a fresh
 * temporary directory named after tag. */
struct gw {
    char *dir;
    char *conf;
    hproc hg;
    int admin_port;
};

/* 0 when hotgate is up (its port in g->hg.port). */
static __attribute__((unused)) int gw_start(struct gw *g, const char *tag, const char *upstream_url,
                                            const char *extra)
{
    memset(g, 0, sizeof *g);
    g->dir = harness_tmpdir(tag);
    int port;
    g->conf = gw_write_conf(g->dir, upstream_url, extra, &port, &g->admin_port);
    g->hg.port = port;
    return harness_start_hotgate(&g->hg, g->conf, NULL);
}

/* A sample from hotgate's admin /metrics: name with its labels as printed (e.g.
 * hotgate_budget_retries_charged_total{credential="main"}), -1 when absent. */
static __attribute__((unused)) long gw_metric(int admin_port, const char *name)
{
    char *u = harness_url("http://127.0.0.1:%d/metrics", admin_port);
    hresp r = {0};
    long v = -1;
    if (http_do("GET", u, NULL, NULL, 0, &r) == 0 && r.status == 200) {
        char key[256];
        snprintf(key, sizeof key, "\n%s ", name);
        const char *p = strstr(r.body, key);
        if (p)
            v = atol(p + strlen(key));
    }
    hresp_free(&r);
    free(u);
    return v;
}

static __attribute__((unused)) void gw_stop(struct gw *g)
{
    if (g->hg.pid > 0)
        harness_stop(&g->hg, 10000);
    harness_rmdir(g->dir);
    free(g->dir);
    free(g->conf);
}

#endif
