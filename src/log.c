/*
 * log: see log.h.
 */
#include "log.h"
#include "outbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "config.h"
#include "req.h"
#include "util.h"

static _Atomic int g_level = LOG_INFO; /* log_set_level() on a reload */
static int g_journal;                  /* stderr is the journal: use <N> prefixes */
static int g_access_fd = -1;           /* -1 = off */
static char *g_access_path;            /* NULL for stderr/off */
static pthread_mutex_t g_fd_lock = PTHREAD_MUTEX_INITIALIZER;

#define ACCESS_FLUSH_BYTES (64 * 1024)

struct log_access {
    struct evbuffer *buf;
    struct event *timer;
};

int log_init(int level, const char *access_log)
{
    g_level = level;
    g_journal = getenv("JOURNAL_STREAM") != NULL;
    free(g_access_path);
    g_access_path = NULL;
    if (!access_log || strcmp(access_log, "off") == 0) {
        g_access_fd = -1;
    } else if (strcmp(access_log, "stderr") == 0) {
        g_access_fd = 2;
    } else {
        g_access_path = strdup(access_log);
        int fd = open(access_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            log_msg(LOG_ERR, "cannot open access log %s: %s", access_log, strerror(errno));
            return -1;
        }
        g_access_fd = fd;
    }
    return 0;
}

void log_set_level(int level)
{
    g_level = level;
}

int log_reopen(void)
{
    if (!g_access_path)
        return 0;
    int fd = open(g_access_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        log_msg(LOG_ERR, "cannot reopen access log %s: %s", g_access_path, strerror(errno));
        return -1;
    }
    pthread_mutex_lock(&g_fd_lock);
    int old = g_access_fd;
    g_access_fd = fd;
    pthread_mutex_unlock(&g_fd_lock);
    if (old > 2)
        close(old);
    return 0;
}

void log_shutdown(void)
{
    if (g_access_fd > 2)
        close(g_access_fd);
    g_access_fd = -1;
    free(g_access_path);
    g_access_path = NULL;
}

int log_enabled(int level)
{
    return level <= g_level;
}

void log_msg(int level, const char *fmt, ...)
{
    if (level > g_level)
        return;
    static const char *names[] = {"emerg", "alert",  "crit", "error",
                                  "warn",  "notice", "info", "debug"};
    char line[2048];
    int off;
    if (g_journal) {
        off = snprintf(line, sizeof line, "<%d>", level);
    } else {
        char ts[32];
        util_rfc3339((int64_t)(util_wall_ms() / 1000), ts);
        off =
            snprintf(line, sizeof line, "%s hotgate[%d] %s: ", ts, (int)getpid(), names[level & 7]);
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + off, sizeof line - (size_t)off - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)off + (n < 0 ? 0 : (size_t)n);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(2, line, len);
    (void)w;
}

static void flush_cb(evutil_socket_t fd, short ev, void *arg)
{
    log_access_flush(arg);
}

struct log_access *log_access_new(struct event_base *base)
{
    struct log_access *la = calloc(1, sizeof *la);
    if (!la)
        abort();
    la->buf = evbuffer_new();
    la->timer = event_new(base, -1, EV_PERSIST, flush_cb, la);
    struct timeval tv = {0, 100000};
    event_add(la->timer, &tv);
    return la;
}

void log_access_flush(struct log_access *la)
{
    size_t n = evbuffer_get_length(la->buf);
    if (n == 0)
        return;
    pthread_mutex_lock(&g_fd_lock);
    int fd = g_access_fd;
    while (fd >= 0 && evbuffer_get_length(la->buf) > 0) {
        int w = evbuffer_write(la->buf, fd);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
    }
    pthread_mutex_unlock(&g_fd_lock);
    evbuffer_drain(la->buf, evbuffer_get_length(la->buf));
}

void log_access_free(struct log_access *la)
{
    if (!la)
        return;
    log_access_flush(la);
    event_free(la->timer);
    evbuffer_free(la->buf);
    free(la);
}

/* An access log line is assembled in an outbuf (outbuf.h) and handed to the per-worker
 * buffer in one evbuffer_add (no printf: it was a tenth of the CPU of a cache hit). */

/* JSON string body escaping for values that are already restricted (paths, names), kept
 * anyway so that a bug elsewhere cannot break the log's format. */
/* bytes written as they are: printable ASCII (0x20..0x7e) but the quote and backslash */
static const unsigned char json_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static void add_json_str(struct outbuf *lb, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    OUTBUF_LIT(lb, "\"");
    const char *run = s;
    for (;;) {
        /* runs of plain bytes, a table lookup per byte (NUL is not plain: it ends them) */
        while (json_plain[(unsigned char)*s])
            s++;
        if (!*s)
            break;
        unsigned char c = (unsigned char)*s;
        if (s > run)
            outbuf_put(lb, run, (size_t)(s - run));
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        outbuf_put(lb, esc, sizeof esc);
        run = ++s;
    }
    if (s > run)
        outbuf_put(lb, run, (size_t)(s - run));
    OUTBUF_LIT(lb, "\"");
}

void log_access_write(struct log_access *la, const struct hg_req *req)
{
    if (g_access_fd < 0 || !la)
        return;
    static __thread char ts[32];
    static __thread int64_t ts_at = -1;
    int64_t sec = (int64_t)(req->wall_ms / 1000);
    if (sec != ts_at) {
        util_rfc3339(sec, ts);
        ts[19] = '\0'; /* drop the Z, add milliseconds */
        ts_at = sec;
    }
    uint64_t now = util_mono_us();
    struct outbuf lb;
    outbuf_init(&lb, la->buf);
    unsigned ms = (unsigned)(req->wall_ms % 1000);
    char frac[5] = {'.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10),
                    'Z'};
    OUTBUF_LIT(&lb, "{\"time\":\"");
    outbuf_put(&lb, ts, strlen(ts));
    outbuf_put(&lb, frac, sizeof frac);
    OUTBUF_LIT(&lb, "\",\"request_id\":");
    add_json_str(&lb, req->request_id);
    OUTBUF_LIT(&lb, ",\"client\":");
    add_json_str(&lb, req->client ? req->client->name : "-");
    OUTBUF_LIT(&lb, ",\"method\":");
    add_json_str(&lb, req->method_name ? req->method_name : "-");
    OUTBUF_LIT(&lb, ",\"path\":");
    add_json_str(&lb, req->path ? req->path : "-");
    OUTBUF_LIT(&lb, ",\"status\":");
    outbuf_i64(&lb, req->status);
    OUTBUF_LIT(&lb, ",\"upstream_status\":");
    outbuf_i64(&lb, req->upstream_status);
    OUTBUF_LIT(&lb, ",\"bytes_in\":");
    outbuf_u64(&lb, req->bytes_in);
    OUTBUF_LIT(&lb, ",\"bytes_out\":");
    outbuf_u64(&lb, req->bytes_out);
    OUTBUF_LIT(&lb, ",\"latency_us\":");
    outbuf_u64(&lb, now - req->start_us);
    OUTBUF_LIT(&lb, ",\"cache\":");
    add_json_str(&lb, req->cache_outcome ? req->cache_outcome : "-");
    if (req->sql_hash[0]) {
        OUTBUF_LIT(&lb, ",\"sql_hash\":");
        add_json_str(&lb, req->sql_hash);
    }
    OUTBUF_LIT(&lb, ",\"attempts\":");
    outbuf_i64(&lb, req->upstream_attempts);
    if (req->client_gone)
        OUTBUF_LIT(&lb, ",\"client_gone\":true");
    OUTBUF_LIT(&lb, "}\n");
    outbuf_flush(&lb);
    if (evbuffer_get_length(la->buf) >= ACCESS_FLUSH_BYTES)
        log_access_flush(la);
}
