/*
 * harness: what integration tests need to run the real programs and talk HTTP to them.
 *
 * Processes (hotdata-sim, hotgate, redis-server, nghttpx ...) are started with fork/exec on
 * free loopback ports, their output goes to a log file in the test's temporary directory,
 * and they are stopped with SIGTERM (SIGKILL after a grace period). HTTP goes through real
 * libcurl transfers. Nothing here is a mock.
 */
#ifndef HG_HARNESS_H
#define HG_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

typedef struct hproc {
    pid_t pid;
    int port;      /* main listening port, 0 if none */
    char log[512]; /* stdout+stderr of the process */
} hproc;

/* A free TCP port on 127.0.0.1 (bound then released; collisions are retried by callers). */
int harness_free_port(void);

/* mkdtemp("/tmp/hg-<tag>-XXXXXX"); returns a malloc'd path. */
char *harness_tmpdir(const char *tag);

/* Recursively remove a directory made by harness_tmpdir. */
void harness_rmdir(const char *dir);

/* Start argv[0] with argv (NULL-terminated), output to log_path. 0 on success. */
int harness_spawn(hproc *p, char *const argv[], const char *log_path);

/* Wait until something accepts TCP connections on 127.0.0.1:port. 0 when ready. */
int harness_wait_port(int port, int timeout_ms);

/* A connected TCP socket to 127.0.0.1:port, or -1. */
int harness_connect(int port);

/* Wait until GET url answers any HTTP status. 0 when ready. */
int harness_wait_http(const char *url, int timeout_ms);

/* SIGTERM, wait up to grace_ms, then SIGKILL. Returns the exit status as from waitpid
 * (WIFEXITED etc. apply), or -1 if the process was not running. */
int harness_stop(hproc *p, int grace_ms);

/* Resident set size of pid in KiB (VmRSS), peak (VmHWM) when peak != 0; -1 on error. */
long harness_rss_kb(pid_t pid, int peak);

/* Total CPU time (user+system) of pid in microseconds from /proc/PID/stat; -1 on error. */
long long harness_cpu_us(pid_t pid);

/* Print the last lines of a process log to stderr (for failing tests). */
void harness_dump_log(const hproc *p, int lines);

/*
 * Start hotdata-sim on a free port with a fresh data dir under dir.
 * extra: further NULL-terminated arguments (may be NULL).
 * Default identity: token "tok_test" for workspace "ws_test" (and token "tok_other" for
 * workspace "ws_other").
 */
int harness_start_sim(hproc *p, const char *dir, const char *const extra[]);
/* The conninfo of the suite's shared PostgreSQL server (ctest fixture integration.pg_up;
 * unset HG_TEST_PG_PRIVATE), 0; -1 when there is none (then each simulator owns a cluster). */
int harness_pg_shared_url(char *out, size_t len);
/* The build's initialised PostgreSQL template cluster (made once, under a lock), or NULL. */
const char *harness_pg_template(void);

/* Start hotgate with the config file conf_path; waits for its port (p->port set by caller
 * before the call, the one the config listens on). */
int harness_start_hotgate(hproc *p, const char *conf_path, const char *const extra_env[]);

/* ---- HTTP client ---- */
typedef struct hresp {
    long status;
    char *body; /* NUL-terminated, len bytes */
    size_t len;
    char *headers;  /* raw response header block of the final response */
    double total_s; /* transfer time */
} hresp;

/*
 * One request. headers: NULL-terminated array of "Name: value" strings (may be NULL).
 * body may be NULL. Returns 0 on a completed transfer (any status), a CURLcode otherwise.
 */
int http_do(const char *method, const char *url, const char *const headers[], const char *body,
            size_t body_len, hresp *out);

/* Value of response header name (case-insensitive), malloc'd, or NULL. */
char *hresp_header(const hresp *r, const char *name);

void hresp_free(hresp *r);

/* printf-style URL builder: returns a malloc'd string. */
char *harness_url(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Write a file (for configs): 0 on success. mode applied with chmod. */
int harness_write_file(const char *path, const char *content, int mode);

#endif
