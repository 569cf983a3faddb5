/*
 * sim_pg_exec (sim/pg_exec.c): user SQL on PostgreSQL, asynchronously on the simulator's
 * event loop: a small pool of non-blocking libpq connections driven by events on their
 * sockets; each query runs alone (extended protocol), read only, as a workspace's role,
 * under a statement timeout and a row cap.
 *
 * Rules: loop thread only; a query's done callback runs exactly once, never from inside
 * sim_pg_query itself; freeing the pool fails what is still queued or running.
 */
#ifndef SIM_PG_EXEC_H
#define SIM_PG_EXEC_H

#include <event2/event.h>
#include <jansson.h>
#include <libpq-fe.h>

/* A query's answer in the API's terms. */
struct sim_pg_result {
    json_t *columns;  /* array of strings */
    json_t *nullable; /* array of bools */
    json_t *types;    /* array of type names (sim_pg_types.h) */
    json_t *rows;     /* array of arrays, each as long as columns */
    long row_count;
};

/* err NULL: res filled (the callee takes its json references); else res is NULL. */
typedef void (*sim_pg_done_fn)(void *arg, struct sim_pg_result *res, const char *err);

#define SIM_PG_MAX_ROWS 1000000L
#define SIM_PG_TIMEOUT_MS 10000

struct sim_pg_pool;

struct sim_pg_pool *sim_pg_pool_new(struct event_base *base, const char *conninfo, int size);
/* Fail every queued and running query ("simulator shutting down") and close. */
void sim_pg_pool_free(struct sim_pg_pool *p);
/*
 * Queue sql (one statement) to run read-only as role, with a statement timeout of
 * timeout_ms (0: SIM_PG_TIMEOUT_MS) and the row cap; done(arg, ...) runs exactly once, later,
 * on the loop.
 */
void sim_pg_query(struct sim_pg_pool *p, const char *role, const char *sql, int timeout_ms,
                  sim_pg_done_fn done, void *arg);
/* The answer held by a complete PGresult (columns, types, rows, nullable from the values). */
void sim_pg_result_from(const PGresult *r, struct sim_pg_result *out);
void sim_pg_result_clear(struct sim_pg_result *r);

#endif
