/*
 * main: hotdata-sim entry point. Parses the command line into struct sim_config and the
 * initial fault set, registers every API area with the router, opens (and on first start
 * seeds) the data dir, and runs the event loop until SIGINT/SIGTERM.
 *
 * Rules: everything after setup runs on the single event-loop thread (see sim/sim.h).
 */
#include "sim_areas.h"
#include "sim_faults.h"
#include "sim_int.h"
#include "sim_jobs.h"
#include "sim_query.h"
#include "sim_server.h"
#include "sim_store.h"
#include "sim_util.h"
#include "util.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sim_usage(FILE *f)
{
    fprintf(f,
            "usage: hotdata-sim --listen HOST:PORT --token TOKEN[=WS1,WS2] --workspace WS\n"
            "                   --data-dir DIR [options]\n"
            "\n"
            "A local stand-in for the Hotdata /v1 API (SQLite-backed). See sim/README.md.\n"
            "\n"
            "identity and storage:\n"
            "  --listen HOST:PORT      address to listen on (default 127.0.0.1:8788)\n"
            "  --token T[=WS,...]      accepted bearer token (repeatable); with =list it may use\n"
            "                          only those workspaces, without it every workspace\n"
            "  --workspace WS          workspace id to serve (repeatable); workspaces named in\n"
            "                          --token lists are added too\n"
            "  --data-dir DIR          state directory (SQLite files); survives restarts\n"
            "                          (default ./hotdata-sim-data)\n"
            "  --seed-rows N           rows of demo.public.orders seeded on the first start of a\n"
            "                          data dir (default 100000)\n"
            "\n"
            "timing of background work:\n"
            "  --async-delay-ms N      async query: time spent queued, then running (default 200)\n"
            "  --result-delay-ms N     result: time spent pending, then processing (default 50;\n"
            "                          0 = ready at once)\n"
            "  --results-not-ready 200|202  GET /v1/results/{id} before ready: 200 with the\n"
            "                          status and null data (reference form, default), or 202\n"
            "                          pending/processing and 409 failed (the older form)\n"
            "  --job-delay-ms N        job: time spent pending, then running (default 200)\n"
            "\n"
            "rate limiting (like the live service; off by default):\n"
            "  --rate N                requests per second per bearer token (token bucket)\n"
            "  --burst M               bucket size (default: N)\n"
            "\n"
            "fault injection (also settable at runtime: POST /_sim/faults):\n"
            "  --latency-ms N          added latency before every /v1 answer (non-blocking)\n"
            "  --jitter-ms N           plus a uniform random 0..N ms\n"
            "  --error-rate P          fraction 0..1 of /v1 requests answered with an error\n"
            "  --error-status S        status of injected errors: 500, 502 or 503 (default 500)\n"
            "  --drop MODE             none | before (close before any response byte) | mid\n"
            "                          (send headers and half the body, then close)\n"
            "  --drop-rate P           fraction 0..1 of requests dropped (default 1)\n"
            "  --stall-ms N            hold every request N ms, then close without answering\n"
            "  --retry-after-count N   answer the next N requests 429 with Retry-After\n"
            "  --retry-after-s S       the Retry-After seconds for those (default 1)\n"
            "\n"
            "uploads:\n"
            "  --max-upload-bytes N    largest POST /v1/files body (default 2000000000; with\n"
            "                          ?streaming=true 10 N); larger ones are refused with 413\n"
            "\n"
            "  --quiet                 less logging\n"
            "  --help                  this text\n"
            "  --version               print the version\n");
}

static int sim_parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int sim_parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static void sim_add_ws_id(struct sim_config *cfg, const char *id)
{
    for (size_t i = 0; i < cfg->nws_ids; i++)
        if (strcmp(cfg->ws_ids[i], id) == 0)
            return;
    if (cfg->nws_ids < SIM_MAX_WS)
        cfg->ws_ids[cfg->nws_ids++] = sim_strdup(id);
}

static int sim_add_token(struct sim_config *cfg, const char *arg)
{
    if (cfg->ntokens >= SIM_MAX_TOKENS)
        return -1;
    struct sim_token *t = &cfg->tokens[cfg->ntokens];
    memset(t, 0, sizeof *t);
    const char *eq = strchr(arg, '=');
    t->token = eq ? strndup(arg, (size_t)(eq - arg)) : sim_strdup(arg);
    if (!t->token || !*t->token)
        return -1;
    char hex[65];
    util_sha256_hex(t->token, strlen(t->token), hex);
    memcpy(t->hash12, hex, 12);
    t->hash12[12] = '\0';
    snprintf(t->user_public_id, sizeof t->user_public_id, "user_%.10s", hex);
    t->all_workspaces = eq == NULL;
    if (eq) {
        char *list = sim_strdup(eq + 1), *save = NULL;
        for (char *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
            t->allowed = realloc(t->allowed, (t->nallowed + 1) * sizeof(char *));
            if (!t->allowed)
                abort();
            t->allowed[t->nallowed++] = sim_strdup(w);
        }
        free(list);
    }
    cfg->ntokens++;
    return 0;
}

static void sim_on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

enum {
    OPT_LISTEN = 1000,
    OPT_TOKEN,
    OPT_WORKSPACE,
    OPT_DATA_DIR,
    OPT_SEED_ROWS,
    OPT_ASYNC_DELAY,
    OPT_RESULT_DELAY,
    OPT_RESULTS_NOT_READY,
    OPT_JOB_DELAY,
    OPT_RATE,
    OPT_BURST,
    OPT_LATENCY,
    OPT_JITTER,
    OPT_ERROR_RATE,
    OPT_ERROR_STATUS,
    OPT_DROP,
    OPT_DROP_RATE,
    OPT_STALL,
    OPT_RA_COUNT,
    OPT_RA_S,
    OPT_QUIET,
    OPT_MAX_UPLOAD,
    OPT_HELP,
    OPT_VERSION,
};

static const struct option sim_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"workspace", required_argument, NULL, OPT_WORKSPACE},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"seed-rows", required_argument, NULL, OPT_SEED_ROWS},
    {"async-delay-ms", required_argument, NULL, OPT_ASYNC_DELAY},
    {"result-delay-ms", required_argument, NULL, OPT_RESULT_DELAY},
    {"results-not-ready", required_argument, NULL, OPT_RESULTS_NOT_READY},
    {"job-delay-ms", required_argument, NULL, OPT_JOB_DELAY},
    {"rate", required_argument, NULL, OPT_RATE},
    {"burst", required_argument, NULL, OPT_BURST},
    {"latency-ms", required_argument, NULL, OPT_LATENCY},
    {"jitter-ms", required_argument, NULL, OPT_JITTER},
    {"error-rate", required_argument, NULL, OPT_ERROR_RATE},
    {"error-status", required_argument, NULL, OPT_ERROR_STATUS},
    {"drop", required_argument, NULL, OPT_DROP},
    {"drop-rate", required_argument, NULL, OPT_DROP_RATE},
    {"stall-ms", required_argument, NULL, OPT_STALL},
    {"retry-after-count", required_argument, NULL, OPT_RA_COUNT},
    {"retry-after-s", required_argument, NULL, OPT_RA_S},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"max-upload-bytes", required_argument, NULL, OPT_MAX_UPLOAD},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* The options that set one int or double within a range: true when c is one of them
 * (*bad set when arg is not a number in range). */
static bool sim_opt_number(struct sim_ctx *ctx, int c, const char *arg, bool *bad)
{
    struct sim_config *cfg = &ctx->cfg;
    struct sim_fault_set *g = &ctx->faults.global;
    const struct {
        int opt;
        long min, max;
        int *dst;
    } ints[] = {
        {OPT_ASYNC_DELAY, 0, 600000, &cfg->async_delay_ms},
        {OPT_RESULT_DELAY, 0, 600000, &cfg->result_delay_ms},
        {OPT_JOB_DELAY, 0, 600000, &cfg->job_delay_ms},
        {OPT_LATENCY, 0, 600000, &g->latency_ms},
        {OPT_JITTER, 0, 600000, &g->jitter_ms},
        {OPT_ERROR_STATUS, 400, 599, &g->error_status},
        {OPT_STALL, 0, 3600000, &g->stall_ms},
        {OPT_RA_COUNT, 0, 1000000, &ctx->faults.retry_after_count},
        {OPT_RA_S, 1, 3600, &ctx->faults.retry_after_s},
    };
    const struct {
        int opt;
        double min, max;
        double *dst;
    } reals[] = {
        {OPT_RATE, 0, 1e9, &cfg->rate},
        {OPT_BURST, 1, 1e9, &cfg->burst},
        {OPT_ERROR_RATE, 0, 1, &g->error_rate},
        {OPT_DROP_RATE, 0, 1, &g->drop_rate},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        long n;
        if (ints[i].opt != c)
            continue;
        *bad = sim_parse_int(arg, ints[i].min, ints[i].max, &n) < 0;
        if (!*bad)
            *ints[i].dst = (int)n;
        return true;
    }
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) {
        if (reals[i].opt != c)
            continue;
        *bad = sim_parse_double(arg, reals[i].min, reals[i].max, reals[i].dst) < 0;
        return true;
    }
    return false;
}

/* --listen HOST:PORT (an empty host: 127.0.0.1). -1 when malformed. */
static int sim_opt_listen(struct sim_config *cfg, const char *arg)
{
    long n;
    const char *colon = strrchr(arg, ':');
    if (!colon || sim_parse_int(colon + 1, 0, 65535, &n) < 0 ||
        (size_t)(colon - arg) >= sizeof cfg->listen_host)
        return -1;
    memcpy(cfg->listen_host, arg, (size_t)(colon - arg));
    cfg->listen_host[colon - arg] = '\0';
    if (!cfg->listen_host[0])
        snprintf(cfg->listen_host, sizeof cfg->listen_host, "127.0.0.1");
    cfg->listen_port = (int)n;
    return 0;
}

/* --drop none|before|mid. -1 for anything else. */
static int sim_opt_drop(struct sim_fault_set *g, const char *arg)
{
    if (!strcmp(arg, "none"))
        g->drop = SIM_DROP_NONE;
    else if (!strcmp(arg, "before"))
        g->drop = SIM_DROP_BEFORE;
    else if (!strcmp(arg, "mid"))
        g->drop = SIM_DROP_MID;
    else
        return -1;
    return 0;
}

/* One option that is not a plain number. -1 when its value is bad. */
static int sim_opt_other(struct sim_ctx *ctx, int c, const char *arg)
{
    struct sim_config *cfg = &ctx->cfg;
    long n;
    switch (c) {
    case OPT_LISTEN:
        return sim_opt_listen(cfg, arg);
    case OPT_TOKEN:
        return sim_add_token(cfg, arg);
    case OPT_WORKSPACE:
        sim_add_ws_id(cfg, arg);
        return 0;
    case OPT_DATA_DIR:
        free(cfg->data_dir);
        cfg->data_dir = sim_strdup(arg);
        return 0;
    case OPT_SEED_ROWS:
        return sim_parse_int(arg, 0, 100000000, &cfg->seed_rows);
    case OPT_RESULTS_NOT_READY:
        if (sim_parse_int(arg, 200, 202, &n) < 0 || (n != 200 && n != 202))
            return -1;
        cfg->results_not_ready = (int)n;
        return 0;
    case OPT_DROP:
        return sim_opt_drop(&ctx->faults.global, arg);
    case OPT_QUIET:
        cfg->quiet = true;
        return 0;
    case OPT_MAX_UPLOAD: {
        char *end;
        unsigned long long v = strtoull(arg, &end, 10);
        cfg->max_upload_bytes = v;
        return !*arg || *end || arg[0] == '-' || v == 0 || v > (1ULL << 50) ? -1 : 0;
    }
    default:
        return -1;
    }
}

/* The command line into ctx. -1 when the simulator should start, else the exit status
 * (0 after --help / --version, 2 on a usage error). */
static int sim_parse_args(struct sim_ctx *ctx, int argc, char **argv)
{
    int c;
    while ((c = getopt_long(argc, argv, "", sim_opts, NULL)) != -1) {
        if (c == OPT_HELP) {
            sim_usage(stdout);
            return 0;
        }
        if (c == OPT_VERSION) {
            printf("hotdata-sim %s\n", HG_VERSION);
            return 0;
        }
        bool bad = false;
        if (!sim_opt_number(ctx, c, optarg, &bad))
            bad = sim_opt_other(ctx, c, optarg) < 0;
        if (bad) {
            if (c >= OPT_LISTEN)
                fprintf(stderr, "hotdata-sim: invalid value for --%s: %s\n",
                        sim_opts[c - OPT_LISTEN].name, optarg ? optarg : "");
            sim_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "hotdata-sim: unexpected argument: %s\n", argv[optind]);
        return 2;
    }
    if (ctx->cfg.ntokens == 0) {
        fprintf(stderr, "hotdata-sim: at least one --token is required\n");
        sim_usage(stderr);
        return 2;
    }
    return -1;
}

/* Defaults that depend on other options: the workspaces named in token lists, a default
 * workspace, the data dir. */
static void sim_finish_config(struct sim_config *cfg)
{
    for (size_t i = 0; i < cfg->ntokens; i++)
        for (size_t j = 0; j < cfg->tokens[i].nallowed; j++)
            sim_add_ws_id(cfg, cfg->tokens[i].allowed[j]);
    if (cfg->nws_ids == 0)
        sim_add_ws_id(cfg, "ws_default");
    if (!cfg->data_dir)
        cfg->data_dir = sim_strdup("./hotdata-sim-data");
}

/* The event base, routes, data dir and listener. 0, or -1 (logged). */
static int sim_setup(struct sim_ctx *ctx)
{
    /* the epoll changelist folds evhttp's per-request enable/disable churn into fewer
     * epoll_ctl calls */
    struct event_config *ecfg = event_config_new();
    if (ecfg) {
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        ctx->base = event_base_new_with_config(ecfg);
        event_config_free(ecfg);
    }
    if (!ctx->base)
        ctx->base = event_base_new();
    if (!ctx->base)
        return -1;
    sim_areas_register_all(&ctx->router);
    if (sim_store_open(ctx) < 0) {
        sim_log("cannot open the data dir %s", ctx->cfg.data_dir);
        return -1;
    }
    sim_query_startup(ctx);
    sim_jobs_startup(ctx);
    return sim_server_start(ctx);
}

/* Serve until SIGINT or SIGTERM. */
static void sim_run(struct sim_ctx *ctx)
{
    const struct sim_config *cfg = &ctx->cfg;
    struct event *sigint = evsignal_new(ctx->base, SIGINT, sim_on_signal, ctx->base);
    struct event *sigterm = evsignal_new(ctx->base, SIGTERM, sim_on_signal, ctx->base);
    evsignal_add(sigint, NULL);
    evsignal_add(sigterm, NULL);
    if (!cfg->quiet)
        sim_log("listening on %s:%d, %zu workspace(s), %zu route(s), data dir %s", cfg->listen_host,
                cfg->listen_port, ctx->nws, ctx->router.n, cfg->data_dir);
    event_base_dispatch(ctx->base);
    if (!cfg->quiet)
        sim_log("shutting down");
    event_free(sigint);
    event_free(sigterm);
    ctx->waiters_shutdown = true;
    sim_waiters_sweep(ctx);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    struct sim_ctx *ctx = sim_ctx_new();
    int rc = sim_parse_args(ctx, argc, argv);
    if (rc < 0) {
        sim_finish_config(&ctx->cfg);
        rc = sim_setup(ctx) < 0 ? 1 : 0;
        if (rc == 0)
            sim_run(ctx);
    }
    sim_ctx_free(ctx);
    return rc;
}
