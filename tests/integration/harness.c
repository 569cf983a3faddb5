/*
 * harness: see harness.h. Process control via fork/exec/waitpid, HTTP via libcurl easy.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int harness_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    close(fd);
    return ntohs(sa.sin_port);
}

char *harness_tmpdir(const char *tag)
{
    char *p = NULL;
    if (asprintf(&p, "/tmp/hg-%s-XXXXXX", tag) < 0)
        abort();
    if (!mkdtemp(p))
        abort();
    return p;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void harness_rmdir(const char *dir)
{
    if (dir && strncmp(dir, "/tmp/hg-", 8) == 0)
        nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* In a forked child: a test binary that crashes must not leave its servers running
 * (SIGTERM when the parent goes; kept across exec). */
static void child_dies_with_parent(void)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
}

int harness_spawn(hproc *p, char *const argv[], const char *log_path)
{
    snprintf(p->log, sizeof p->log, "%s", log_path ? log_path : "/dev/null");
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        child_dies_with_parent();
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) {
            dup2(nul, 0);
            close(nul);
        }
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    p->pid = pid;
    return 0;
}

int harness_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int harness_wait_port(int port, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        int fd = harness_connect(port);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        sleep_ms(20);
    }
    return -1;
}

int harness_wait_http(const char *url, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        hresp r;
        int rc = http_do("GET", url, NULL, NULL, 0, &r);
        hresp_free(&r); /* allocated on failure too */
        if (rc == 0)
            return 0;
        sleep_ms(50);
    }
    return -1;
}

int harness_stop(hproc *p, int grace_ms)
{
    if (p->pid <= 0)
        return -1;
    int status = 0;
    const char *wrap = getenv("HG_WRAPPER");
    if (wrap && *wrap && grace_ms < 60000)
        grace_ms = 60000; /* a wrapped process (valgrind) needs time for its report */
    kill(p->pid, SIGTERM);
    for (int waited = 0; waited <= grace_ms; waited += 10) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            return status;
        }
        sleep_ms(10);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    p->pid = 0;
    return status;
}

long harness_rss_kb(pid_t pid, int peak)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    const char *key = peak ? "VmHWM:" : "VmRSS:";
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, strlen(key)) == 0) {
            v = strtol(line + strlen(key), NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

long long harness_cpu_us(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* after ") " come fields 3.. : state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (long long)((ut + st) * 1000000ULL / (unsigned long long)hz);
}

void harness_dump_log(const hproc *p, int lines)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "tail -n %d '%s' >&2", lines, p->log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log at %s)\n", p->log);
}

/*
 * The initialised PostgreSQL cluster every simulator of this build copies on its first
 * start (--pg-template): initdb runs once per build dir, not once per simulator. Made under
 * an flock so parallel tests wait for one another. NULL when it cannot be made (the
 * simulator then runs initdb itself).
 */
const char *harness_pg_template(void)
{
    static const char path[] = HG_PG_TEMPLATE;
    char probe[sizeof path + 16];
    snprintf(probe, sizeof probe, "%s/PG_VERSION", path);
    if (access(probe, F_OK) == 0)
        return path;
    int fd = open(HG_PG_TEMPLATE ".lock", O_RDWR | O_CREAT, 0644);
    if (fd < 0)
        return NULL;
    flock(fd, LOCK_EX);
    if (access(probe, F_OK) != 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "'%s' --pg-make-template '%s' >&2", HG_BIN_SIM, path);
        if (system(cmd) != 0)
            fprintf(stderr, "harness: making the PostgreSQL template %s failed\n", path);
    }
    flock(fd, LOCK_UN);
    close(fd);
    return access(probe, F_OK) == 0 ? path : NULL;
}

int harness_pg_shared_url(char *out, size_t len)
{
    if (getenv("HG_TEST_PG_PRIVATE"))
        return -1;
    FILE *f = fopen(HG_PG_SHARED ".conninfo", "r");
    if (!f)
        return -1;
    int rc = fgets(out, (int)len, f) ? 0 : -1;
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
    return rc == 0 && out[0] ? 0 : -1;
}

int harness_start_sim(hproc *p, const char *dir, const char *const extra[])
{
    char port[16], data[512], log[512];
    p->port = harness_free_port();
    snprintf(port, sizeof port, "127.0.0.1:%d", p->port);
    snprintf(data, sizeof data, "%s/sim-data", dir);
    snprintf(log, sizeof log, "%s/sim.log", dir);
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)HG_BIN_SIM;
    argv[n++] = "--listen";
    argv[n++] = port;
    argv[n++] = "--token";
    argv[n++] = "tok_test=ws_test";
    argv[n++] = "--token";
    argv[n++] = "tok_other=ws_other";
    argv[n++] = "--workspace";
    argv[n++] = "ws_test";
    argv[n++] = "--workspace";
    argv[n++] = "ws_other";
    argv[n++] = "--data-dir";
    argv[n++] = data;
    /* the results form under test (CMakeLists.txt runs the gateway suites on both) */
    const char *rnr = getenv("HG_TEST_RESULTS_NOT_READY");
    if (rnr && *rnr) {
        argv[n++] = "--results-not-ready";
        argv[n++] = (char *)rnr;
    }
    /* the suite's shared PostgreSQL server (ctest fixture integration.pg_up), else a private
     * cluster copied from the build's template */
    static char pg_url[1024];
    if (harness_pg_shared_url(pg_url, sizeof pg_url) == 0) {
        argv[n++] = "--pg-url";
        argv[n++] = pg_url;
    } else {
        const char *tmpl = harness_pg_template();
        if (tmpl) {
            argv[n++] = "--pg-template";
            argv[n++] = (char *)tmpl;
        }
    }
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    if (harness_spawn(p, argv, log) != 0)
        return -1;
    char *url = harness_url("http://127.0.0.1:%d/_sim/stats", p->port);
    int rc = harness_wait_http(url, 30000);
    free(url);
    if (rc != 0)
        harness_dump_log(p, 40);
    return rc;
}

int harness_start_hotgate(hproc *p, const char *conf_path, const char *const extra_env[])
{
    char log[sizeof p->log];
    snprintf(log, sizeof log, "%s.log", conf_path);
    pid_t pid = 0;
    snprintf(p->log, sizeof p->log, "%s", log);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        child_dies_with_parent();
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        for (int i = 0; extra_env && extra_env[i]; i++)
            putenv((char *)extra_env[i]);
        /* optional wrapper command (e.g. HG_WRAPPER="valgrind --leak-check=full"), split
         * by the shell: scripts/memcheck.sh uses it */
        const char *wrap = getenv("HG_WRAPPER");
        if (wrap && *wrap)
            execl("/bin/sh", "sh", "-c", "exec $HG_WRAPPER \"$0\" --config \"$1\"", HG_BIN_HOTGATE,
                  conf_path, (char *)NULL);
        execl(HG_BIN_HOTGATE, HG_BIN_HOTGATE, "--config", conf_path, (char *)NULL);
        _exit(127);
    }
    p->pid = pid;
    if (harness_wait_port(p->port, 30000) != 0) {
        harness_dump_log(p, 40);
        return -1;
    }
    return 0;
}

/* ---- HTTP ---- */
struct sink {
    char *buf;
    size_t len, cap;
};

static size_t sink_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct sink *s = ud;
    size_t n = size * nmemb;
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *nb = realloc(s->buf, cap);
        if (!nb)
            return 0;
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, ptr, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return n;
}

static size_t hdr_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct sink *s = ud;
    size_t n = size * nmemb;
    /* a new status line starts a new header block (after 100-continue or redirects) */
    if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0)
        s->len = 0;
    return sink_write(ptr, size, nmemb, ud);
}

int http_do(const char *method, const char *url, const char *const headers[], const char *body,
            size_t body_len, hresp *out)
{
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    struct sink b = {0}, h = {0};
    struct curl_slist *hl = NULL;
    for (int i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, hdr_write);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &out->total_s);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    if (!b.buf)
        b.buf = calloc(1, 1);
    if (!h.buf)
        h.buf = calloc(1, 1);
    out->body = b.buf;
    out->len = b.len;
    out->headers = h.buf;
    return rc == CURLE_OK ? 0 : (int)rc;
}

char *hresp_header(const hresp *r, const char *name)
{
    size_t nl = strlen(name);
    const char *p = r->headers;
    while (p && *p) {
        const char *eol = strstr(p, "\r\n");
        if (!eol)
            eol = p + strlen(p);
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            return strndup(v, (size_t)(eol - v));
        }
        p = *eol ? eol + 2 : eol;
    }
    return NULL;
}

void hresp_free(hresp *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof *r);
}

char *harness_url(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    va_end(ap);
    return s;
}

int harness_write_file(const char *path, const char *content, int mode)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(content, f);
    fclose(f);
    return chmod(path, (mode_t)mode);
}
