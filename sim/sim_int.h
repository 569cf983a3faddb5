/*
 * sim_int: internals shared by the simulator core files (server.c, stream.c, store.c,
 * control.c, query.c, jobs.c, refresh.c, main.c). Area files use sim.h only.
 *
 * Rules: single-threaded (the event-loop thread); the context owns everything reachable
 * from it and frees it in sim_ctx_free.
 */
#ifndef SIM_INT_H
#define SIM_INT_H

#include "sim.h"

#include <event2/bufferevent.h>

/* ---- router ---- */
struct sim_route_ent {
    char method[8];
    char *pattern;
    char *key; /* "METHOD /pattern" */
    char **segs;
    size_t nseg;
    size_t nliteral;
    sim_handler_fn fn;
    unsigned flags;
    uint64_t count; /* requests matched (stats) */
};

struct sim_router {
    struct sim_route_ent *routes;
    size_t n, cap;
    const char **schemas;
    size_t nschemas;
    void (**seeds)(struct sim_ctx *, struct sim_ws *);
    size_t nseeds;
    void (**resets)(struct sim_ctx *);
    size_t nresets;
};

/* ---- faults ---- */
enum sim_drop_mode { SIM_DROP_NONE = 0, SIM_DROP_BEFORE, SIM_DROP_MID };

/* One set of fault knobs; -1 (or < 0) = not set (inherit from the global set / off). */
struct sim_fault_set {
    int latency_ms;
    int jitter_ms;
    double error_rate;
    int error_status;
    int drop; /* enum sim_drop_mode, -1 unset */
    double drop_rate;
    int stall_ms;
};

struct sim_route_fault {
    char *route; /* "POST /v1/query" */
    struct sim_fault_set set;
};

struct sim_faults {
    struct sim_fault_set global;
    struct sim_route_fault *routes;
    size_t nroutes;
    int retry_after_count; /* one-shot 429s left */
    int retry_after_s;
    int async_delay_ms; /* -1: use the command line value */
};

/* ---- stats ---- */
struct sim_stats {
    uint64_t requests_total;
    uint64_t unmatched;
    uint64_t rate_limited;
    uint64_t one_shot_429;
    uint64_t injected_errors;
    uint64_t injected_drops_before;
    uint64_t injected_drops_mid;
    uint64_t injected_stalls;
    uint64_t delayed;
    uint64_t queries_executed;
    uint64_t bytes_out;
    uint64_t status[6]; /* 1xx..5xx by class index */
    uint64_t connections_accepted;
    uint64_t uploads;
    uint64_t upload_bytes;
    json_t *sql_hashes; /* object hash -> integer */
    uint64_t token_counts[SIM_MAX_TOKENS];
    uint64_t token_429[SIM_MAX_TOKENS];
};

/* ---- uploads streamed by the connection filter (sim/stream.c) ---- */
struct sim_upload {
    uint64_t id;
    char *path;
    uint64_t size;
    bool complete;
    struct sim_upload *next;
};

struct sim_conn;
struct sim_timer;

struct sim_ctx {
    struct sim_config cfg;
    struct event_base *base;
    struct evhttp *http;
    struct sim_router router;
    sqlite3 *gdb;
    struct sim_ws *ws[SIM_MAX_WS];
    size_t nws;
    struct sim_faults faults;
    struct sim_stats stats;
    struct sim_conn **conn_buckets; /* evcon -> sim_conn */
    size_t nconns;
    struct sim_upload *uploads;
    uint64_t upload_seq;
    uint64_t started_ms;
    uint64_t rng;
    struct sim_pending_waiter *waiters; /* async_after_ms waiters (query.c) */
    bool waiters_shutdown;              /* sweep answers and frees every waiter */
    struct sim_timer *timers;           /* pending sim_timer_after timers (server.c) */
    struct sim_pg *pg;                  /* PostgreSQL engine (pg_engine.c) */
};

/* server.c */
struct sim_ctx *sim_ctx_new(void);
int sim_server_start(struct sim_ctx *ctx);
void sim_ctx_free(struct sim_ctx *ctx);
double sim_rand01(struct sim_ctx *ctx);
void sim_faults_clear(struct sim_faults *f);
void sim_stats_clear(struct sim_ctx *ctx);
void sim_router_init(struct sim_router *r);
void sim_router_free(struct sim_router *r);
/* Compact JSON text like json_dumps(JSON_COMPACT | JSON_ENCODE_ANY), but reals in their
 * shortest round-trip form (6357564.64, not 6357564.6399999997), still reals ("2.0"), as the
 * live service writes them. j NULL -> "null". malloc'd; *len (may be NULL) gets the length. */
char *sim_json_dumps(const json_t *j, size_t *len);
/* One real as sim_json_dumps writes it; returns the length. */
int sim_json_real_str(double v, char out[32]);
/* Low-level reply for control-plane requests that have no sim_req. */
void sim_send_json_ev(struct sim_ctx *ctx, struct evhttp_request *ev, int status, json_t *body);
void sim_send_error_ev(struct sim_ctx *ctx, struct evhttp_request *ev, int status,
                       const char *message);

/* stream.c: a bufferevent filter in front of evhttp that streams RAW_BODY uploads to disk. */
struct bufferevent *sim_stream_bevcb(struct event_base *base, void *arg);
/* Take the finished upload announced by header X-Sim-Upload-Id (NULL if none/unknown). */
struct sim_upload *sim_stream_take(struct sim_ctx *ctx, const char *id_header);
void sim_stream_free_all(struct sim_ctx *ctx);

/* store.c */
int sim_store_open(struct sim_ctx *ctx);
void sim_store_close(struct sim_ctx *ctx);
int sim_store_reset_data(struct sim_ctx *ctx);
int sim_store_seed_demo(struct sim_ws *ws, long orders);
void sim_stmt_cache_free(struct sim_stmt_cache *c);
/* Append/advance seeded demo table data for a data refresh; returns rows touched. */
long sim_store_refresh_table(struct sim_ws *ws, const char *sqlite_table);

/* control.c */
void sim_control_handle(struct sim_ctx *ctx, struct evhttp_request *ev, const char *path);
int sim_faults_from_json(struct sim_faults *f, json_t *j, char *err, size_t errlen);
json_t *sim_faults_to_json(const struct sim_faults *f);

/* query.c */
void sim_query_startup(struct sim_ctx *ctx); /* fix up runs/results left non-terminal */
int sim_query_async_delay(struct sim_ctx *ctx);
/* Free answered/expired async_after_ms waiters (all of them when ctx is shutting down). */
void sim_waiters_sweep(struct sim_ctx *ctx);

/* jobs.c */
void sim_jobs_startup(struct sim_ctx *ctx);
const char *sim_job_status_name(enum sim_job_status s);

/* misc */
void sim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *sim_strdup(const char *s);

#endif
