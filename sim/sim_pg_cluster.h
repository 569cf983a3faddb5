/*
 * sim_pg_cluster (sim/pg_cluster.c): the private PostgreSQL cluster under --data-dir (initdb
 * or a template copy, start as an unprivileged user when root, stop, stale leftovers), and
 * the standalone server of --pg-serve that several simulators share (the test suite's).
 *
 * Rules: runs before the event loop starts and after it ends (it blocks while it waits).
 */
#ifndef SIM_PG_CLUSTER_H
#define SIM_PG_CLUSTER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct sim_pg_cluster {
    char bindir[PATH_MAX];
    char dir[PATH_MAX];     /* DIR/pg */
    char sockdir[PATH_MAX]; /* DIR/pg, or a private /tmp dir when that path is too long */
    char log[PATH_MAX];     /* DIR/pg.log */
    char conninfo[PATH_MAX + 128];
    pid_t pid; /* postmaster, 0 when not running */
    bool own_sockdir;
};

/* The directory holding postgres and initdb ($HOTDATA_SIM_PG_BIN, the newest
 * /usr/lib/postgresql/<ver>/bin, else PATH). 0 or -1. */
int sim_pg_find_bindir(char *out, size_t len);
/* initdb dir (as the postgres user when root). 0 or -1 (logged). */
int sim_pg_initdb(const char *bindir, const char *dir, const char *log);
/* Start (initdb or copying tmpl on first use) the cluster of data_dir. 0 or -1 (logged). */
int sim_pg_cluster_start(struct sim_pg_cluster *c, const char *data_dir, const char *tmpl);
void sim_pg_cluster_stop(struct sim_pg_cluster *c);
/* Make an initialised template cluster at dir (no-op when it exists). 0 or -1. */
int sim_pg_make_template(const char *dir);
/* A standalone server on cluster dir (initdb when new) that outlives this process, for
 * several simulators (--pg-serve); writes its conninfo to dir.conninfo and prints it. */
int sim_pg_serve(const char *dir);
/* Stop the server --pg-serve started on dir (no-op when none runs). */
int sim_pg_serve_stop(const char *dir);

#endif
