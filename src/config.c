/*
 * config: see config.h. Parsing goes through libinih's ini_parse_stream() with a reader
 * that counts lines, so that every key handler knows its line and every error can name
 * file, line and key. Errors are collected (not just the first) and returned together.
 *
 * Rules: single-threaded (called before workers start); the result is immutable.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "util.h"

#define MAX_SECRET 8192

struct parse {
    struct hg_config *cfg;
    FILE *f;
    int line;      /* line of the text handed to inih last */
    int partial;   /* the previous piece read had no newline: same line */
    char *err;     /* error text accumulated */
    size_t errlen; /* capacity */
    size_t erroff; /* used */
    int nerr;
    char **seen; /* "section\nkey" pairs, to refuse duplicates */
    size_t nseen;
};

static void perr(struct parse *p, int line, const char *section, const char *key, const char *fmt,
                 ...) __attribute__((format(printf, 5, 6)));

static void perr(struct parse *p, int line, const char *section, const char *key, const char *fmt,
                 ...)
{
    p->nerr++;
    if (!p->err || p->erroff + 1 >= p->errlen)
        return;
    int n = snprintf(p->err + p->erroff, p->errlen - p->erroff, "%s:%d: [%s] %s: ", p->cfg->path,
                     line, section ? section : "", key ? key : "");
    if (n > 0)
        p->erroff += (size_t)n < p->errlen - p->erroff ? (size_t)n : p->errlen - p->erroff - 1;
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(p->err + p->erroff, p->errlen - p->erroff, fmt, ap);
    va_end(ap);
    if (n > 0)
        p->erroff += (size_t)n < p->errlen - p->erroff ? (size_t)n : p->errlen - p->erroff - 1;
    if (p->erroff + 1 < p->errlen) {
        p->err[p->erroff++] = '\n';
        p->err[p->erroff] = '\0';
    }
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p)
        abort();
    return p;
}

/* ---- value parsers ---- */

int config_parse_bool(const char *s, int *out)
{
    static const char *yes[] = {"yes", "true", "on", "1"}, *no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

int config_parse_duration_ms(const char *s, int bare_ms, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return -1;
    double mult;
    if (*end == '\0')
        mult = bare_ms ? 1.0 : 1000.0;
    else if (strcmp(end, "ms") == 0)
        mult = 1.0;
    else if (strcmp(end, "s") == 0)
        mult = 1000.0;
    else if (strcmp(end, "m") == 0)
        mult = 60000.0;
    else if (strcmp(end, "h") == 0)
        mult = 3600000.0;
    else
        return -1;
    double ms = v * mult;
    if (ms > 1e15)
        return -1;
    *out = (uint64_t)llround(ms);
    return 0;
}

int config_parse_size(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return -1;
    double mult = 1;
    if (*end) {
        switch (toupper((unsigned char)*end)) {
        case 'K':
            mult = 1024.0;
            break;
        case 'M':
            mult = 1024.0 * 1024;
            break;
        case 'G':
            mult = 1024.0 * 1024 * 1024;
            break;
        case 'T':
            mult = 1024.0 * 1024 * 1024 * 1024;
            break;
        case 'B':
            mult = 1;
            end--;
            break; /* plain "B" */
        default:
            return -1;
        }
        end++;
        if (*end && strcasecmp(end, "B") != 0 && strcasecmp(end, "iB") != 0)
            return -1;
    }
    double b = v * mult;
    if (b > 1.8e19)
        return -1;
    *out = (uint64_t)nearbyint(b); /* llround stops at LLONG_MAX */
    return 0;
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
    if (!s || !*s || !isdigit((unsigned char)*s))
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_rate(const char *s, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return -1;
    /* "10", "10/s", "600/m" */
    if (*end == '/') {
        if (strcmp(end, "/s") == 0)
            ;
        else if (strcmp(end, "/m") == 0)
            v /= 60.0;
        else if (strcmp(end, "/h") == 0)
            v /= 3600.0;
        else
            return -1;
    } else if (*end) {
        return -1;
    }
    *out = v;
    return 0;
}

static int valid_name(const char *s)
{
    if (!*s || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return 0;
    return 1;
}

/* "host:port" or "[v6]:port" */
static int valid_listen(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return 0;
    if (s[0] == '[' && colon[-1] != ']')
        return 0;
    unsigned port;
    if (parse_uint(colon + 1, 65535, &port) != 0 || port == 0)
        return 0;
    return 1;
}

/* Split a comma list into a NULL-terminated-free array of trimmed strings. */
static int split_list(const char *s, char ***out, size_t *n)
{
    char *copy = util_xstrdup(s), *save = NULL;
    size_t cap = 4, cnt = 0;
    char **v = xcalloc(cap, sizeof *v);
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        char *e = tok + strlen(tok);
        while (e > tok && isspace((unsigned char)e[-1]))
            *--e = '\0';
        if (!*tok)
            continue;
        if (cnt == cap) {
            cap *= 2;
            v = realloc(v, cap * sizeof *v);
            if (!v)
                abort();
        }
        v[cnt++] = util_xstrdup(tok);
    }
    free(copy);
    *out = v;
    *n = cnt;
    return cnt ? 0 : -1;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ---- secrets ---- */

void config_secret_free(struct hg_secret *s)
{
    if (s->data) {
        util_wipe(s->data, s->map_len);
        munlock(s->data, s->map_len);
        munmap(s->data, s->map_len);
    }
    memset(s, 0, sizeof *s);
}

static int secret_alloc(struct hg_secret *s, size_t len)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t map = ((len + 1 + (size_t)pg - 1) / (size_t)pg) * (size_t)pg;
    void *m = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    madvise(m, map, MADV_DONTDUMP);
    (void)mlock(m, map); /* best effort: RLIMIT_MEMLOCK may forbid it */
    s->data = m;
    s->map_len = map;
    s->len = 0;
    return 0;
}

static int secret_from_file(const char *path, int check_mode, struct hg_secret *out, char *err,
                            size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file", path);
        close(fd);
        return -1;
    }
    if (check_mode && (st.st_mode & 077)) {
        snprintf(err, errlen, "%s has mode %04o; a token file must be 0600 or stricter", path,
                 (unsigned)(st.st_mode & 07777));
        close(fd);
        return -1;
    }
    if (st.st_size > MAX_SECRET) {
        snprintf(err, errlen, "%s is larger than %d bytes", path, MAX_SECRET);
        close(fd);
        return -1;
    }
    if (secret_alloc(out, (size_t)st.st_size + 1) != 0) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, out->data + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    while (got && isspace((unsigned char)out->data[got - 1]))
        got--;
    out->data[got] = '\0';
    out->len = got;
    return 0;
}

int config_secret_load(enum hg_secret_source src, const char *value, struct hg_secret *out,
                       char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int rc = -1;
    switch (src) {
    case HG_SECRET_FILE:
        rc = secret_from_file(value, 1, out, err, errlen);
        break;
    case HG_SECRET_SYSTEMD: {
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        if (!dir || !*dir) {
            snprintf(err, errlen,
                     "CREDENTIALS_DIRECTORY is not set (not started by systemd "
                     "with LoadCredential=?)");
            return -1;
        }
        if (strchr(value, '/')) {
            snprintf(err, errlen, "credential name must not contain '/'");
            return -1;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, value);
        rc = secret_from_file(path, 1, out, err, errlen);
        break;
    }
    case HG_SECRET_ENV: {
        const char *v = getenv(value);
        if (!v) {
            snprintf(err, errlen, "environment variable %s is not set", value);
            return -1;
        }
        size_t n = strlen(v);
        if (n > MAX_SECRET || secret_alloc(out, n + 1) != 0) {
            snprintf(err, errlen, "environment variable %s is too large", value);
            return -1;
        }
        memcpy(out->data, v, n);
        while (n && isspace((unsigned char)out->data[n - 1]))
            n--;
        out->data[n] = '\0';
        out->len = n;
        rc = 0;
        break;
    }
    default:
        snprintf(err, errlen, "no token source");
        return -1;
    }
    if (rc == 0 && out->len == 0) {
        snprintf(err, errlen, "token is empty");
        config_secret_free(out);
        return -1;
    }
    if (rc == 0) {
        for (size_t i = 0; i < out->len; i++) {
            unsigned char c = (unsigned char)out->data[i];
            if (c < 0x21 || c > 0x7e) {
                snprintf(err, errlen, "token contains a blank or control character");
                config_secret_free(out);
                return -1;
            }
        }
    }
    return rc;
}

/* ---- sections ---- */

/* What struct hg_credential, hg_client and hg_class start with. */
struct named {
    char *name;
    int line;
};
_Static_assert(offsetof(struct hg_credential, line) == offsetof(struct named, line) &&
                   offsetof(struct hg_client, line) == offsetof(struct named, line) &&
                   offsetof(struct hg_class, line) == offsetof(struct named, line),
               "sections start with name and line");

/* The element named name of the array *arr (*n elements of sz bytes, each starting like
 * struct named), or a new zeroed one appended with its name and line (*added = 1). */
static void *named_get(void *arr, size_t *n, size_t sz, const char *name, int line, int *added)
{
    char **v = arr;
    *added = 0;
    for (size_t i = 0; i < *n; i++) {
        struct named *e = (struct named *)(*v + i * sz);
        if (strcmp(e->name, name) == 0)
            return e;
    }
    char *nv = realloc(*v, (*n + 1) * sz);
    if (!nv)
        abort();
    *v = nv;
    struct named *e = (struct named *)(nv + (*n)++ * sz);
    memset(e, 0, sz);
    e->name = util_xstrdup(name);
    e->line = line;
    *added = 1;
    return e;
}

static struct hg_credential *get_credential(struct hg_config *c, const char *name, int line)
{
    int added;
    return named_get(&c->credentials, &c->n_credentials, sizeof *c->credentials, name, line,
                     &added);
}

static struct hg_client *get_client(struct hg_config *c, const char *name, int line)
{
    int added;
    struct hg_client *cl =
        named_get(&c->clients, &c->n_clients, sizeof *c->clients, name, line, &added);
    if (added) {
        cl->mode = HG_MODE_READ_ONLY;
        cl->class_name = util_xstrdup("interactive");
    }
    return cl;
}

static struct hg_class *get_class(struct hg_config *c, const char *name, int line)
{
    int added;
    struct hg_class *k =
        named_get(&c->classes, &c->n_classes, sizeof *c->classes, name, line, &added);
    if (added)
        k->weight = 1;
    return k;
}

static int seen_before(struct parse *p, const char *section, const char *key)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s\n%s", section, key);
    for (size_t i = 0; i < p->nseen; i++)
        if (strcmp(p->seen[i], buf) == 0)
            return 1;
    p->seen = realloc(p->seen, (p->nseen + 1) * sizeof *p->seen);
    if (!p->seen)
        abort();
    p->seen[p->nseen++] = util_xstrdup(buf);
    return 0;
}

#define BAD(...)                                                                                   \
    do {                                                                                           \
        perr(p, line, section, name, __VA_ARGS__);                                                 \
        return 1;                                                                                  \
    } while (0)

#define DUR(field, bare_ms)                                                                        \
    do {                                                                                           \
        if (config_parse_duration_ms(value, bare_ms, &(field)) != 0)                               \
            BAD("invalid duration '%s' (a number of %s, or with a unit ms, s, m, h)", value,       \
                (bare_ms) ? "milliseconds" : "seconds");                                           \
    } while (0)
#define SIZE(field)                                                                                \
    do {                                                                                           \
        if (config_parse_size(value, &(field)) != 0)                                               \
            BAD("invalid size '%s' (bytes, or with a suffix K, M, G, T)", value);                  \
    } while (0)
#define BOOL(field)                                                                                \
    do {                                                                                           \
        if (config_parse_bool(value, &(field)) != 0)                                               \
            BAD("invalid boolean '%s' (yes/no, true/false, on/off, 1/0)", value);                  \
    } while (0)
#define UINT(field, max)                                                                           \
    do {                                                                                           \
        if (parse_uint(value, max, &(field)) != 0)                                                 \
            BAD("invalid number '%s' (an integer from 0 to %u)", value, (unsigned)(max));          \
    } while (0)
#define STR(field)                                                                                 \
    do {                                                                                           \
        free(field);                                                                               \
        (field) = util_xstrdup(value);                                                             \
    } while (0)
#define RATE(field)                                                                                \
    do {                                                                                           \
        if (parse_rate(value, &(field)) != 0)                                                      \
            BAD("invalid rate '%s' (requests per second, or N/s, N/m, N/h)", value);               \
    } while (0)

static int set_token_source(struct parse *p, int line, const char *section, const char *name,
                            const char *value, enum hg_secret_source *src, char **srcval,
                            int *src_line, const char **src_key)
{
    if (*src != HG_SECRET_NONE) {
        perr(p, line, section, name,
             "a token source is already set (%s); use only one of "
             "token_file, token_env, token_credential",
             *src_key);
        return 1;
    }
    if (!*value) {
        perr(p, line, section, name, "empty value");
        return 1;
    }
    if (strcmp(name, "token_file") == 0)
        *src = HG_SECRET_FILE;
    else if (strcmp(name, "token_env") == 0)
        *src = HG_SECRET_ENV;
    else
        *src = HG_SECRET_SYSTEMD;
    *srcval = util_xstrdup(value);
    *src_line = line;
    *src_key = strcmp(name, "token_file") == 0  ? "token_file"
               : strcmp(name, "token_env") == 0 ? "token_env"
                                                : "token_credential";
    return 1;
}

/* A listen list (server or admin): replaces *list; 1 (handled; errors reported). */
static int set_listen(struct parse *p, int line, const char *section, const char *name,
                      const char *value, char ***list, size_t *n)
{
    free_list(*list, *n);
    *list = NULL;
    *n = 0;
    if (split_list(value, list, n) != 0)
        BAD("empty listen list");
    for (size_t i = 0; i < *n; i++)
        if (!valid_listen((*list)[i]))
            BAD("invalid address '%s' (host:port or [v6]:port)", (*list)[i]);
    return 1;
}

static int handle_server(struct parse *p, int line, const char *section, const char *name,
                         const char *value)
{
    struct hg_config *c = p->cfg;
    if (strcmp(name, "listen") == 0) {
        return set_listen(p, line, section, name, value, &c->server.listen, &c->server.n_listen);
    } else if (strcmp(name, "unix_socket") == 0) {
        if (value[0] != '/')
            BAD("must be an absolute path");
        if (strlen(value) >= 108)
            BAD("path too long for a unix socket");
        STR(c->server.unix_socket);
    } else if (strcmp(name, "threads") == 0) {
        if (strcmp(value, "auto") == 0) {
            long n = sysconf(_SC_NPROCESSORS_ONLN);
            c->server.threads = n > 0 ? (unsigned)(n > 64 ? 64 : n) : 1;
        } else if (parse_uint(value, 256, &c->server.threads) != 0 || c->server.threads == 0) {
            BAD("must be 'auto' or a number from 1 to 256");
        }
    } else if (strcmp(name, "max_header_size") == 0) {
        uint64_t v;
        SIZE(v);
        if (v < 1024 || v > (64u << 20))
            BAD("must be between 1K and 64M");
        c->server.max_header_size = (size_t)v;
    } else if (strcmp(name, "max_body_size") == 0) {
        SIZE(c->server.max_body_size);
    } else if (strcmp(name, "read_timeout") == 0) {
        DUR(c->server.read_timeout_ms, 0);
    } else if (strcmp(name, "write_timeout") == 0) {
        DUR(c->server.write_timeout_ms, 0);
    } else if (strcmp(name, "body_timeout") == 0) {
        DUR(c->server.body_timeout_ms, 0);
    } else if (strcmp(name, "body_min_rate") == 0) {
        SIZE(c->server.body_min_rate);
    } else if (strcmp(name, "max_connections") == 0) {
        if (strcmp(value, "auto") == 0)
            c->server.max_connections = 0;
        else
            UINT(c->server.max_connections, 10000000);
    } else if (strcmp(name, "keepalive_timeout") == 0) {
        DUR(c->server.keepalive_timeout_ms, 0);
    } else if (strcmp(name, "drain_timeout") == 0) {
        DUR(c->server.drain_timeout_ms, 0);
    } else if (strcmp(name, "access_log") == 0) {
        if (strcmp(value, "stderr") && strcmp(value, "off") && value[0] != '/')
            BAD("must be stderr, off or an absolute path");
        STR(c->server.access_log);
    } else if (strcmp(name, "log_level") == 0) {
        if (strcmp(value, "error") == 0)
            c->server.log_level = LOG_ERR;
        else if (strcmp(value, "warn") == 0 || strcmp(value, "warning") == 0)
            c->server.log_level = LOG_WARNING;
        else if (strcmp(value, "info") == 0)
            c->server.log_level = LOG_INFO;
        else if (strcmp(value, "debug") == 0)
            c->server.log_level = LOG_DEBUG;
        else
            BAD("must be error, warn, info or debug");
    } else {
        return 0;
    }
    return 1;
}

static int handle_admin(struct parse *p, int line, const char *section, const char *name,
                        const char *value)
{
    struct hg_config *c = p->cfg;
    if (strcmp(name, "listen") == 0) {
        return set_listen(p, line, section, name, value, &c->admin.listen, &c->admin.n_listen);
        return 1;
    }
    if (strcmp(name, "token_file") == 0 || strcmp(name, "token_env") == 0 ||
        strcmp(name, "token_credential") == 0)
        return set_token_source(p, line, section, name, value, &c->admin.token_source,
                                &c->admin.token_source_value, &c->admin.token_line,
                                &c->admin.token_key);
    return 0;
}

static int handle_upstream(struct parse *p, int line, const char *section, const char *name,
                           const char *value)
{
    struct hg_config *c = p->cfg;
    if (strcmp(name, "url") == 0) {
        size_t n = strlen(value);
        const char *rest;
        if (strncmp(value, "https://", 8) == 0)
            rest = value + 8;
        else if (strncmp(value, "http://", 7) == 0)
            rest = value + 7;
        else
            BAD("must start with https:// or http://");
        if (!*rest || *rest == '/')
            BAD("no host");
        if (strpbrk(rest, "?#@ \t\\"))
            BAD("must not contain a query, fragment, user info or blanks");
        STR(c->upstream.url);
        while (n > 0 && c->upstream.url[n - 1] == '/')
            c->upstream.url[--n] = '\0';
    } else if (strcmp(name, "ca_file") == 0) {
        if (access(value, R_OK) != 0)
            BAD("cannot read %s: %s", value, strerror(errno));
        STR(c->upstream.ca_file);
    } else if (strcmp(name, "tls_verify") == 0) {
        BOOL(c->upstream.tls_verify);
    } else if (strcmp(name, "http2") == 0) {
        BOOL(c->upstream.http2);
    } else if (strcmp(name, "connect_timeout") == 0) {
        DUR(c->upstream.connect_timeout_ms, 0);
    } else if (strcmp(name, "timeout") == 0) {
        DUR(c->upstream.timeout_ms, 0);
    } else if (strcmp(name, "idle_timeout") == 0) {
        DUR(c->upstream.idle_timeout_ms, 0);
    } else if (strcmp(name, "max_connections_per_host") == 0) {
        UINT(c->upstream.max_connections_per_host, 100000);
    } else if (strcmp(name, "retries") == 0) {
        UINT(c->upstream.retries, 10);
    } else if (strcmp(name, "retry_backoff_ms") == 0) {
        DUR(c->upstream.retry_backoff_ms, 1);
    } else if (strcmp(name, "client") == 0) {
        if (strcmp(value, "auto") == 0)
            c->upstream.client = HG_UPSTREAM_CLIENT_AUTO;
        else if (strcmp(value, "curl") == 0)
            c->upstream.client = HG_UPSTREAM_CLIENT_CURL;
        else if (strcmp(value, "native") == 0)
            c->upstream.client = HG_UPSTREAM_CLIENT_NATIVE;
        else
            BAD("must be auto, curl or native");
        c->upstream.client_line = line;
    } else {
        return 0;
    }
    return 1;
}

static int handle_credential(struct parse *p, int line, const char *section, const char *name,
                             const char *value, const char *cname)
{
    struct hg_credential *cr = get_credential(p->cfg, cname, line);
    if (strcmp(name, "token_file") == 0 || strcmp(name, "token_env") == 0 ||
        strcmp(name, "token_credential") == 0)
        return set_token_source(p, line, section, name, value, &cr->source, &cr->source_value,
                                &cr->token_line, &cr->token_key);
    if (strcmp(name, "rate") == 0)
        RATE(cr->rate);
    else if (strcmp(name, "burst") == 0)
        UINT(cr->burst, 1000000);
    else if (strcmp(name, "max_concurrent") == 0)
        UINT(cr->max_concurrent, 1000000);
    else
        return 0;
    return 1;
}

static int handle_client(struct parse *p, int line, const char *section, const char *name,
                         const char *value, const char *cname)
{
    struct hg_client *cl = get_client(p->cfg, cname, line);
    if (strcmp(name, "key_sha256") == 0) {
        if (util_unhex(value, cl->key_sha256, 32) != 0)
            BAD("must be 64 hex digits (hotgate --hash-key prints it)");
        cl->has_key = 1;
        cl->key_line = line;
    } else if (strcmp(name, "credential") == 0) {
        STR(cl->credential_name);
        cl->credential_line = line;
    } else if (strcmp(name, "workspaces") == 0) {
        free_list(cl->workspaces, cl->n_workspaces);
        cl->workspaces = NULL;
        cl->n_workspaces = 0;
        cl->all_workspaces = 0;
        if (strcmp(value, "*") == 0) {
            cl->all_workspaces = 1;
        } else {
            if (split_list(value, &cl->workspaces, &cl->n_workspaces) != 0)
                BAD("empty workspace list (use * for all)");
            for (size_t i = 0; i < cl->n_workspaces; i++)
                if (!valid_name(cl->workspaces[i]))
                    BAD("invalid workspace id '%s'", cl->workspaces[i]);
        }
    } else if (strcmp(name, "default_workspace") == 0) {
        if (!valid_name(value))
            BAD("invalid workspace id '%s'", value);
        STR(cl->default_workspace);
        cl->default_workspace_line = line;
    } else if (strcmp(name, "mode") == 0) {
        if (strcmp(value, "read-only") == 0)
            cl->mode = HG_MODE_READ_ONLY;
        else if (strcmp(value, "full") == 0)
            cl->mode = HG_MODE_FULL;
        else
            BAD("must be read-only or full");
    } else if (strcmp(name, "class") == 0) {
        if (!valid_name(value))
            BAD("invalid class name '%s'", value);
        STR(cl->class_name);
        cl->class_line = line;
    } else if (strcmp(name, "rate") == 0) {
        RATE(cl->rate);
    } else if (strcmp(name, "burst") == 0) {
        UINT(cl->burst, 1000000);
    } else if (strcmp(name, "max_queued") == 0) {
        UINT(cl->max_queued, 1000000);
    } else {
        return 0;
    }
    return 1;
}

static int handle_class(struct parse *p, int line, const char *section, const char *name,
                        const char *value, const char *cname)
{
    struct hg_class *k = get_class(p->cfg, cname, line);
    if (strcmp(name, "weight") == 0) {
        UINT(k->weight, 1000);
        if (k->weight == 0)
            BAD("must be at least 1");
        return 1;
    }
    return 0;
}

static int handle_queue(struct parse *p, int line, const char *section, const char *name,
                        const char *value)
{
    struct hg_config *c = p->cfg;
    if (strcmp(name, "max_total") == 0)
        UINT(c->queue.max_total, 10000000);
    else if (strcmp(name, "max_per_client") == 0)
        UINT(c->queue.max_per_client, 10000000);
    else if (strcmp(name, "deadline") == 0)
        DUR(c->queue.deadline_ms, 0);
    else if (strcmp(name, "retry_after_max") == 0)
        DUR(c->queue.retry_after_max_ms, 0);
    else if (strcmp(name, "shed_retries") == 0)
        UINT(c->queue.shed_retries, 100);
    else if (strcmp(name, "aimd_window") == 0)
        DUR(c->queue.aimd_window_ms, 0);
    else if (strcmp(name, "aimd_decrease") == 0 || strcmp(name, "aimd_floor") == 0 ||
             strcmp(name, "aimd_increase") == 0) {
        char *end = NULL;
        double v = strtod(value, &end);
        int is_decrease = strcmp(name, "aimd_decrease") == 0;
        if (end == value || *end || !(v > 0) || v > 1 || (is_decrease && v == 1))
            BAD("must be a fraction in (0, 1%s", is_decrease ? ")" : "]");
        if (is_decrease)
            c->queue.aimd_decrease = v;
        else if (strcmp(name, "aimd_floor") == 0)
            c->queue.aimd_floor = v;
        else
            c->queue.aimd_increase = v;
    } else
        return 0;
    return 1;
}

static int handle_cache(struct parse *p, int line, const char *section, const char *name,
                        const char *value)
{
    struct hg_config *c = p->cfg;
    if (strcmp(name, "enabled") == 0) {
        BOOL(c->cache.enabled);
    } else if (strcmp(name, "dir") == 0) {
        if (value[0] != '/')
            BAD("must be an absolute path");
        STR(c->cache.dir);
    } else if (strcmp(name, "size") == 0) {
        SIZE(c->cache.size);
        if (c->cache.size < (1u << 20))
            BAD("must be at least 1M");
    } else if (strcmp(name, "max_entry_size") == 0) {
        SIZE(c->cache.max_entry_size);
    } else if (strcmp(name, "ttl_query") == 0) {
        DUR(c->cache.ttl_query_ms, 0);
    } else if (strcmp(name, "ttl_metadata") == 0) {
        DUR(c->cache.ttl_metadata_ms, 0);
    } else if (strcmp(name, "ttl_immutable") == 0) {
        DUR(c->cache.ttl_immutable_ms, 0);
    } else if (strcmp(name, "stale_while_revalidate") == 0) {
        DUR(c->cache.stale_while_revalidate_ms, 0);
        if (c->cache.stale_while_revalidate_ms > UINT32_MAX)
            BAD("stale window too long (at most 49 days)");
    } else if (strcmp(name, "stale_if_error") == 0) {
        DUR(c->cache.stale_if_error_ms, 0);
        if (c->cache.stale_if_error_ms > UINT32_MAX)
            BAD("stale window too long (at most 49 days)");
    } else if (strcmp(name, "poll_window_ms") == 0) {
        DUR(c->cache.poll_window_ms, 1);
    } else if (strcmp(name, "negative_ttl") == 0) {
        DUR(c->cache.negative_ttl_ms, 0);
    } else if (strncmp(name, "ttl.", 4) == 0) {
        const char *cls = name + 4;
        size_t cl = strlen(cls);
        if (cl == 0 || cl >= sizeof c->cache.class_ttl[0].name ||
            strspn(cls, "abcdefghijklmnopqrstuvwxyz0123456789_-") != cl)
            BAD("ttl.<class>: a class name of 1 to 31 characters [a-z0-9_-]");
        if (c->cache.n_class_ttl >= sizeof c->cache.class_ttl / sizeof c->cache.class_ttl[0])
            BAD("too many ttl.<class> keys");
        size_t i = c->cache.n_class_ttl;
        DUR(c->cache.class_ttl[i].ms, 0);
        memcpy(c->cache.class_ttl[i].name, cls, cl + 1);
        c->cache.n_class_ttl++;
    } else if (strcmp(name, "high_water") == 0) {
        char *end = NULL;
        double v = strtod(value, &end);
        if (end == value)
            BAD("invalid fraction '%s'", value);
        if (*end == '%') {
            v /= 100.0;
            end++;
        }
        if (*end || !(v > 0 && v <= 1))
            BAD("must be a fraction in (0, 1] or a percentage (e.g. 0.9 or 90%%)");
        c->cache.high_water = v;
    } else {
        return 0;
    }
    return 1;
}

static int handle_redis(struct parse *p, int line, const char *section, const char *name,
                        const char *value)
{
    struct hg_config *c = p->cfg;
    if (strcmp(name, "enabled") == 0) {
        BOOL(c->redis.enabled);
    } else if (strcmp(name, "url") == 0) {
        if (!strncmp(value, "rediss://", 9))
            BAD("rediss:// (TLS) is not offered by hiredis 0.14; use a local TLS tunnel");
        if (strncmp(value, "redis://", 8) && strncmp(value, "unix://", 7) &&
            strncmp(value, "unix:/", 6))
            BAD("must start with redis:// or unix:/");
        STR(c->redis.url);
    } else if (strcmp(name, "password_file") == 0) {
        STR(c->redis.password_file);
        c->redis.password_line = line;
    } else if (strcmp(name, "key_prefix") == 0) {
        if (strlen(value) > 64 || strpbrk(value, "{} \t\r\n"))
            BAD("at most 64 characters, no braces or blanks");
        STR(c->redis.key_prefix);
    } else if (strcmp(name, "connect_timeout") == 0) {
        DUR(c->redis.connect_timeout_ms, 1);
    } else if (strcmp(name, "op_timeout") == 0) {
        DUR(c->redis.op_timeout_ms, 1);
        if (c->redis.op_timeout_ms == 0)
            BAD("must be above 0");
    } else if (strcmp(name, "max_entry_size") == 0) {
        SIZE(c->redis.max_entry_size);
        if (c->redis.max_entry_size > (512ull << 20))
            BAD("at most 512M (a Redis string's limit)");
    } else if (strcmp(name, "sentinel") == 0) {
        STR(c->redis.sentinel);
    } else if (strcmp(name, "sentinel_master") == 0) {
        STR(c->redis.sentinel_master);
    } else if (strcmp(name, "local_share") == 0) {
        char *end;
        double v = strtod(value, &end);
        if (end != value && *end == '%') {
            v /= 100;
            end++;
        }
        if (end == value || *end || !(v > 0 && v <= 1))
            BAD("must be a fraction in (0, 1] or a percentage (e.g. 0.34 or 34%%)");
        c->redis.local_share = v;
    } else if (strcmp(name, "stream_maxlen") == 0) {
        uint64_t v;
        if (config_parse_size(value, &v) != 0 || v < 100 || v > 100000000)
            BAD("a number of entries from 100 to 100000000");
        c->redis.stream_maxlen = v;
    } else {
        return 0;
    }
    return 1;
}

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
    struct parse *p = user;
    int line = p->line;
    if (!name)
        return 1;
    if (seen_before(p, section, name)) {
        perr(p, line, section, name, "duplicate key");
        return 1;
    }
    const char *sp = strchr(section, ' ');
    char kind[32] = "", ename[128] = "";
    if (sp) {
        snprintf(kind, sizeof kind, "%.*s", (int)(sp - section), section);
        while (*sp == ' ')
            sp++;
        snprintf(ename, sizeof ename, "%s", sp);
        if (!valid_name(ename)) {
            perr(p, line, section, name, "invalid section name '%s' (letters, digits, _ - .)",
                 ename);
            return 1;
        }
    } else {
        snprintf(kind, sizeof kind, "%s", section);
    }
    int known_section = 1, handled = 0;
    if (!sp && strcmp(kind, "server") == 0)
        handled = handle_server(p, line, section, name, value);
    else if (!sp && strcmp(kind, "admin") == 0)
        handled = handle_admin(p, line, section, name, value);
    else if (!sp && strcmp(kind, "upstream") == 0)
        handled = handle_upstream(p, line, section, name, value);
    else if (!sp && strcmp(kind, "queue") == 0)
        handled = handle_queue(p, line, section, name, value);
    else if (!sp && strcmp(kind, "cache") == 0)
        handled = handle_cache(p, line, section, name, value);
    else if (!sp && strcmp(kind, "redis") == 0)
        handled = handle_redis(p, line, section, name, value);
    else if (sp && strcmp(kind, "credential") == 0)
        handled = handle_credential(p, line, section, name, value, ename);
    else if (sp && strcmp(kind, "client") == 0)
        handled = handle_client(p, line, section, name, value, ename);
    else if (sp && strcmp(kind, "class") == 0)
        handled = handle_class(p, line, section, name, value, ename);
    else
        known_section = 0;
    if (!known_section)
        perr(p, line, section, name, "unknown section");
    else if (!handled)
        perr(p, line, section, name, "unknown key");
    return 1;
}

/* inih reader that counts lines. */
static char *count_reader(char *str, int num, void *stream)
{
    struct parse *p = stream;
    char *r = fgets(str, num, p->f);
    if (r) {
        if (!p->partial)
            p->line++;
        size_t n = strlen(r);
        p->partial = !(n && r[n - 1] == '\n');
    }
    return r;
}

static void set_defaults(struct hg_config *c)
{
    c->server.listen = xcalloc(1, sizeof(char *));
    c->server.listen[0] = util_xstrdup("127.0.0.1:8080");
    c->server.n_listen = 1;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    c->server.threads = n > 0 ? (unsigned)(n > 64 ? 64 : n) : 1;
    c->server.max_header_size = 64 * 1024;
    c->server.max_body_size = 20ull << 30; /* the API's streaming upload limit */
    c->server.read_timeout_ms = 30000;
    c->server.write_timeout_ms = 30000;
    c->server.body_timeout_ms = 10000;
    c->server.body_min_rate = 500;
    c->server.max_connections = 0;
    c->server.keepalive_timeout_ms = 75000;
    c->server.drain_timeout_ms = 30000;
    c->server.access_log = util_xstrdup("stderr");
    c->server.log_level = LOG_INFO;

    c->upstream.url = util_xstrdup("https://api.hotdata.dev");
    c->upstream.tls_verify = 1;
    c->upstream.http2 = 1;
    c->upstream.connect_timeout_ms = 5000;
    c->upstream.timeout_ms = 60000;
    c->upstream.idle_timeout_ms = 60000;
    c->upstream.max_connections_per_host = 32;
    c->upstream.retries = 2;
    c->upstream.retry_backoff_ms = 100;

    c->queue.max_total = 10000;
    c->queue.max_per_client = 1000;
    c->queue.deadline_ms = 30000;
    c->queue.retry_after_max_ms = 300000;
    c->queue.shed_retries = 3;
    c->queue.aimd_decrease = 0.7;
    c->queue.aimd_floor = 0.1;
    c->queue.aimd_increase = 0.05;
    c->queue.aimd_window_ms = 10000;

    c->cache.enabled = 1;
    c->cache.dir = util_xstrdup("/var/lib/hotgate/cache");
    c->cache.size = 1ull << 30;
    c->cache.max_entry_size = 64ull << 20;
    c->cache.ttl_query_ms = 300000; /* 300 s: query results (DESIGN) */
    c->cache.ttl_metadata_ms = 60000;
    c->cache.ttl_immutable_ms = 86400000;
    c->cache.stale_while_revalidate_ms = 10000;
    c->cache.stale_if_error_ms = 300000;
    c->cache.poll_window_ms = 250; /* one upstream poll per 250 ms per run */
    c->cache.negative_ttl_ms = 5000;
    c->cache.high_water = 0.9;

    c->redis.enabled = 0;
    c->redis.url = util_xstrdup("redis://127.0.0.1:6379");
    c->redis.key_prefix = util_xstrdup("hg:");
    c->redis.connect_timeout_ms = 1000;
    c->redis.op_timeout_ms = 50;
    c->redis.max_entry_size = 1ull << 20;
    c->redis.local_share = 1.0;
    c->redis.stream_maxlen = 10000;
}

static void validate(struct parse *p, int load_secrets)
{
    struct hg_config *c = p->cfg;
    char msg[512];
    /* default classes */
    if (!config_class(c, "interactive"))
        get_class(c, "interactive", 0)->weight = 4;
    if (!config_class(c, "batch"))
        get_class(c, "batch", 0)->weight = 1;

    for (size_t i = 0; i < c->n_credentials; i++) {
        struct hg_credential *cr = &c->credentials[i];
        char sec[160];
        snprintf(sec, sizeof sec, "credential %s", cr->name);
        if (cr->source == HG_SECRET_NONE) {
            perr(p, cr->line, sec, "token_file",
                 "no token: set one of token_file, token_env, "
                 "token_credential");
            continue;
        }
        if (load_secrets &&
            config_secret_load(cr->source, cr->source_value, &cr->token, msg, sizeof msg) != 0)
            perr(p, cr->token_line, sec, cr->token_key, "%s", msg);
    }
    for (size_t i = 0; i < c->n_clients; i++) {
        struct hg_client *cl = &c->clients[i];
        char sec[160];
        snprintf(sec, sizeof sec, "client %s", cl->name);
        if (!cl->has_key)
            perr(p, cl->line, sec, "key_sha256", "missing (hotgate --hash-key prints it)");
        if (!cl->credential_name) {
            perr(p, cl->line, sec, "credential", "missing");
        } else {
            cl->credential = config_credential(c, cl->credential_name);
            if (!cl->credential)
                perr(p, cl->credential_line, sec, "credential", "no [credential %s] section",
                     cl->credential_name);
        }
        if (!cl->all_workspaces && cl->n_workspaces == 0)
            perr(p, cl->line, sec, "workspaces", "missing (a comma list, or * for all)");
        if (cl->default_workspace && !cl->all_workspaces) {
            int ok = 0;
            for (size_t k = 0; k < cl->n_workspaces; k++)
                ok |= strcmp(cl->workspaces[k], cl->default_workspace) == 0;
            if (!ok)
                perr(p, cl->default_workspace_line, sec, "default_workspace",
                     "'%s' is not in workspaces", cl->default_workspace);
        }
        cl->cls = config_class(c, cl->class_name);
        if (!cl->cls)
            perr(p, cl->class_line ? cl->class_line : cl->line, sec, "class",
                 "no class '%s' (interactive, batch or a [class NAME] section)", cl->class_name);
        for (size_t k = 0; k < i; k++)
            if (cl->has_key && c->clients[k].has_key &&
                memcmp(cl->key_sha256, c->clients[k].key_sha256, 32) == 0)
                perr(p, cl->key_line, sec, "key_sha256", "same key as client %s",
                     c->clients[k].name);
    }
    if (c->upstream.client == HG_UPSTREAM_CLIENT_NATIVE &&
        strncmp(c->upstream.url, "http://", 7) != 0)
        perr(p, c->upstream.client_line, "upstream", "client",
             "native speaks plain http:// only; use curl (or auto) for %s", c->upstream.url);
    if (c->admin.token_source != HG_SECRET_NONE && load_secrets &&
        config_secret_load(c->admin.token_source, c->admin.token_source_value, &c->admin.token, msg,
                           sizeof msg) != 0)
        perr(p, c->admin.token_line, "admin", c->admin.token_key, "%s", msg);
    if (!!c->redis.sentinel != !!c->redis.sentinel_master)
        perr(p, 0, "redis", c->redis.sentinel ? "sentinel_master" : "sentinel",
             "sentinel and sentinel_master go together");
    if (c->redis.password_file && load_secrets &&
        config_secret_load(HG_SECRET_FILE, c->redis.password_file, &c->redis.password, msg,
                           sizeof msg) != 0)
        perr(p, c->redis.password_line, "redis", "password_file", "%s", msg);
}

struct hg_config *config_load(const char *path, int load_secrets, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    struct hg_config *c = xcalloc(1, sizeof *c);
    c->path = util_xstrdup(path);
    set_defaults(c);
    struct parse p = {.cfg = c, .err = err, .errlen = errlen};
    p.f = fopen(path, "r");
    if (!p.f) {
        if (err)
            snprintf(err, errlen, "%s:0: [] : cannot open: %s\n", path, strerror(errno));
        config_free(c);
        return NULL;
    }
    int rc = ini_parse_stream(count_reader, &p, ini_cb, &p);
    fclose(p.f);
    if (rc > 0)
        perr(&p, rc, "", "", "syntax error (expected [section] or key = value)");
    else if (rc < 0)
        perr(&p, 0, "", "", "cannot parse");
    if (p.nerr == 0)
        validate(&p, load_secrets);
    for (size_t i = 0; i < p.nseen; i++)
        free(p.seen[i]);
    free(p.seen);
    if (p.nerr) {
        config_free(c);
        return NULL;
    }
    for (size_t i = 0; i < c->n_credentials; i++) {
        struct hg_credential *cr = &c->credentials[i];
        char hex[65];
        if (cr->token.data)
            util_sha256_hex(cr->token.data, cr->token.len, hex);
        else
            util_sha256_hex(cr->name, strlen(cr->name), hex);
        memcpy(cr->cache_id, hex, 32);
        cr->cache_id[32] = '\0';
        util_wipe(hex, sizeof hex);
    }
    return c;
}

void config_wipe_secrets(struct hg_config *c)
{
    if (!c)
        return;
    config_secret_free(&c->admin.token);
    for (size_t i = 0; i < c->n_credentials; i++)
        config_secret_free(&c->credentials[i].token);
    config_secret_free(&c->redis.password); /* redis.c keeps its own copy */
}

void config_free(struct hg_config *c)
{
    if (!c)
        return;
    free(c->path);
    free_list(c->server.listen, c->server.n_listen);
    free(c->server.unix_socket);
    free(c->server.access_log);
    free_list(c->admin.listen, c->admin.n_listen);
    free(c->admin.token_source_value);
    config_secret_free(&c->admin.token);
    free(c->upstream.url);
    free(c->upstream.ca_file);
    for (size_t i = 0; i < c->n_credentials; i++) {
        free(c->credentials[i].name);
        free(c->credentials[i].source_value);
        config_secret_free(&c->credentials[i].token);
    }
    free(c->credentials);
    for (size_t i = 0; i < c->n_clients; i++) {
        struct hg_client *cl = &c->clients[i];
        free(cl->name);
        free(cl->credential_name);
        free_list(cl->workspaces, cl->n_workspaces);
        free(cl->default_workspace);
        free(cl->class_name);
        util_wipe(cl->key_sha256, sizeof cl->key_sha256);
    }
    free(c->clients);
    for (size_t i = 0; i < c->n_classes; i++)
        free(c->classes[i].name);
    free(c->classes);
    free(c->cache.dir);
    free(c->redis.url);
    free(c->redis.password_file);
    config_secret_free(&c->redis.password);
    free(c->redis.key_prefix);
    free(c->redis.sentinel);
    free(c->redis.sentinel_master);
    free(c);
}

const struct hg_credential *config_credential(const struct hg_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_credentials; i++)
        if (strcmp(cfg->credentials[i].name, name) == 0)
            return &cfg->credentials[i];
    return NULL;
}

const struct hg_class *config_class(const struct hg_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_classes; i++)
        if (strcmp(cfg->classes[i].name, name) == 0)
            return &cfg->classes[i];
    return NULL;
}
