/*
 * main: command line, process setup, signals and the daemon's lifetime.
 *
 *   hotgate --config FILE          run (foreground; systemd Type=notify)
 *   hotgate --check-config FILE    validate FILE (tokens included), print errors, exit 0/1
 *   hotgate --hash-key             read a client key on stdin, print its SHA-256 hex
 *   hotgate --version | --help
 *
 * Tokens are never taken from the command line. The process is made non-dumpable
 * (PR_SET_DUMPABLE 0) before any secret is read. Signals are blocked in every thread and
 * taken synchronously by the main thread with sigwait(): SIGTERM/SIGINT drain and exit 0;
 * SIGHUP reloads the configuration (reload.h) and reopens the access log, with sd_notify
 * RELOADING=1 before and READY=1 after; SIGUSR1 reopens the access log only.
 */
#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#ifdef HG_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "budget_stage.h"
#include "cache.h"
#include "cfgsnap.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "ready.h"
#include "redis.h"
#include "reload.h"
#include "server.h"
#include "util.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: hotgate --config FILE      run the gateway\n"
               "       hotgate --check-config FILE  validate a configuration and exit\n"
               "       hotgate --hash-key         read a client key on stdin, print "
               "its key_sha256\n"
               "       hotgate --version | --help\n");
}

static int hash_key(void)
{
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, stdin);
    while (n &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    if (n == 0) {
        fprintf(stderr, "hotgate: no key on stdin\n");
        return 1;
    }
    char hex[65];
    util_sha256_hex(buf, n, hex);
    util_wipe(buf, sizeof buf);
    printf("%s\n", hex);
    return 0;
}

/* metrics' upstream observer (an int outcome) -> ready.h */
static void ready_seen(int outcome)
{
    ready_upstream_seen((enum upstream_outcome)outcome);
}

static void notify(const char *msg)
{
#ifdef HG_HAVE_SYSTEMD
    sd_notify(0, msg);
#else
    (void)msg;
#endif
}

/* The command line: 0 with *conf (and *check for --check-config) to go on, else the exit
 * status (help, version and --hash-key are answered here). */
static int parse_args(int argc, char **argv, const char **conf, int *check)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return -1;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("hotgate %s (libcurl %s, libevent %s)\n", HG_VERSION,
                   curl_version_info(CURLVERSION_NOW)->version, event_get_version());
            return -1;
        } else if (strcmp(argv[i], "--hash-key") == 0) {
            int rc = hash_key();
            return rc ? rc : -1;
        } else if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) &&
                   i + 1 < argc) {
            *conf = argv[++i];
        } else if (strcmp(argv[i], "--check-config") == 0 && i + 1 < argc) {
            *conf = argv[++i];
            *check = 1;
        } else {
            fprintf(stderr, "hotgate: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!*conf) {
        usage(stderr);
        return 2;
    }
    return 0;
}

/* Process-wide setup before any module: no core dumps, heap tuning, threads, curl, signals
 * (blocked here, inherited by the workers, taken with sigwait). 0 or -1. */
static int process_setup(sigset_t *set)
{
    evthread_use_pthreads();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_msg(LOG_ERR, "curl_global_init failed");
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, set, NULL); /* inherited by the workers */
    return 0;
}

/* MODULE INIT HOOKS: modules with process-wide state (cache, budget) start here, before
 * server_start(), and stop after server_stop() (modules_stop). 0 or -1 (undone). */
static int modules_start(struct hg_config *cfg)
{
    /* the first config snapshot; it also keeps the settings that need a restart */
    cfgsnap_init(cfg);
    if (rds_init(cfg) != 0) { /* the Redis client layer, before the cache's fleet tier */
        log_msg(LOG_ERR, "redis: startup failed");
        cfgsnap_shutdown();
        return -1;
    }
    if (cache_init(cfg) != 0) {
        log_msg(LOG_ERR, "cache: startup failed");
        rds_shutdown();
        cfgsnap_shutdown();
        return -1;
    }
    if (budget_stage_init(cfg) != 0) {
        cfgsnap_shutdown();
        return -1;
    }
    reload_init();
    ready_init();
    metrics_upstream_observer(ready_seen); /* /readyz learns of every upstream exchange */
    return 0;
}

static void modules_stop(void)
{
    budget_stage_shutdown();
    cache_shutdown();
    rds_shutdown();
}

/* SIGHUP: reload the configuration and reopen the access log. */
static void on_sighup(const char *conf)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[96];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    notify(msg);
    log_msg(LOG_INFO, "SIGHUP: reloading %s and reopening the access log", conf);
    log_reopen();
    reload_run(conf);
    notify("READY=1");
}

/* Serve until SIGTERM/SIGINT. */
static void wait_signals(const sigset_t *set, const char *conf, const struct hg_config *cfg)
{
    for (;;) {
        int sig = 0;
        if (sigwait(set, &sig) != 0)
            continue;
        if (sig == SIGUSR1) {
            log_msg(LOG_INFO, "SIGUSR1: reopening the access log");
            log_reopen();
        } else if (sig == SIGHUP) {
            on_sighup(conf);
        } else {
            log_msg(LOG_INFO, "%s: draining (up to %llu ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                    (unsigned long long)cfg->server.drain_timeout_ms);
            return;
        }
    }
}

int main(int argc, char **argv)
{
    const char *conf = NULL;
    int check = 0;
    int rc = parse_args(argc, argv, &conf, &check);
    if (rc)
        return rc < 0 ? 0 : rc;
    /* no core dumps or ptrace by other users once secrets are in memory */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* per-request buffers come and go: keep a few MiB of freed heap instead of handing it
     * back to the kernel (madvise) and faulting it in again on the next request */
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    mallopt(M_MMAP_THRESHOLD, 1 << 20);

    char err[8192];
    struct hg_config *cfg = config_load(conf, 1, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "%s", err);
        return 1;
    }
    if (check) {
        printf("%s: ok (%zu client(s), %zu credential(s), upstream %s)\n", conf, cfg->n_clients,
               cfg->n_credentials, cfg->upstream.url);
        config_free(cfg);
        return 0;
    }
    if (log_init(cfg->server.log_level, cfg->server.access_log) != 0) {
        config_free(cfg);
        return 1;
    }
    sigset_t set;
    if (process_setup(&set) != 0)
        return 1;
    if (modules_start(cfg) != 0) {
        curl_global_cleanup();
        return 1;
    }
    if (server_start(cfg) != 0) {
        log_msg(LOG_ERR, "startup failed");
        server_stop();
        modules_stop();
        cfgsnap_shutdown();
        curl_global_cleanup();
        return 1;
    }
    ready_start();
    notify("READY=1");
    wait_signals(&set, conf, cfg);
    notify("STOPPING=1");
    ready_shutdown();
    server_stop();
    modules_stop();
    log_msg(LOG_INFO, "stopped");
    log_shutdown();
    cfgsnap_shutdown();
    curl_global_cleanup();
    libevent_global_shutdown();
    return 0;
}
