/*
 * sim_int: the simulator context (struct sim_ctx) and the framework types it holds: the
 * route table, the fault configuration, the stats counters, streamed uploads. For the core
 * files that read or change the context directly (server, router, reply, auth, faults,
 * stats, control, stream, store, query, jobs, main); area files use sim.h.
 *
 * Rules: types only, no functions (each module declares its own in sim_<file>.h) and no
 * local include but sim_types.h, so any file may include it without an include cycle.
 * Single-threaded (the event-loop thread); the context owns everything reachable from it
 * and frees it in sim_ctx_free (sim/server.c).
 */
#ifndef SIM_INT_H
#define SIM_INT_H

#include "sim_types.h"

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
    struct sim_conn **conn_buckets; /* evcon -> sim_conn (httpconn.c) */
    size_t nconns;
    struct sim_upload *uploads;
    uint64_t upload_seq;
    uint64_t started_ms;
    uint64_t rng;
    struct sim_pending_waiter *waiters; /* async_after_ms waiters (query.c) */
    bool waiters_shutdown;              /* sweep answers and frees every waiter */
    struct sim_timer *timers;           /* pending sim_timer_after timers (loop.c) */
};

#endif
