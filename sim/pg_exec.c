/*
 * pg_exec: runs user SQL on PostgreSQL asynchronously on the simulator's libevent loop.
 *
 * A small pool of non-blocking libpq connections; each has a read event on PQsocket (and a
 * write event while PQflush has output left). A query is queued, and an idle connection
 * takes it through four steps, each sent with PQsendQuery/PQsendQueryParams and read with
 * PQconsumeInput/PQisBusy/PQgetResult when the socket is readable, so no thread ever
 * blocks on a query:
 *   1. BEGIN READ ONLY; SET LOCAL ROLE <workspace role>; SET LOCAL statement_timeout;
 *      SET LOCAL search_path = pg_catalog        (simple protocol, our own text)
 *   2. the user's SQL, alone, by the extended protocol (so it is exactly one statement), in
 *      single-row mode: rows are converted as they arrive and the row cap is enforced
 *      (PQcancel once it is passed)
 *   3. attnotnull of the table columns the result came from (the API's `nullable`)
 *   4. ROLLBACK
 * The role may only SELECT its workspace's tables; the transaction is read only; writes
 * therefore fail with PostgreSQL's own message.
 *
 * Rules: loop thread only; a query's done callback runs exactly once, never from inside
 * sim_pg_query itself; on shutdown every pending query is failed ("simulator shutting down").
 */
#include "sim_pg_exec.h"
#include "sim_pg_types.h"
#include "sim_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

struct sim_pg_job {
    char *role;
    char *sql;
    int timeout_ms;
    sim_pg_done_fn done;
    void *arg;
    struct sim_pg_job *next;
    /* the answer being built */
    struct sim_pg_result res;
    int ncol;
    Oid *oids;
    Oid *ftable;
    int *fcol;
    bool *seen_null;
    bool *notnull; /* from step 3 */
    char *err;
};

struct sim_pg_conn {
    struct sim_pg_pool *pool;
    PGconn *c;
    struct event *rev, *wev;
    struct sim_pg_job *job;
    int step;
    bool copy_refused; /* the query was a COPY: the connection is closed after it */
};

struct sim_pg_pool {
    struct event_base *base;
    char *conninfo;
    struct sim_pg_conn *conns;
    int n;
    struct sim_pg_job *head, *tail;
};

void sim_pg_result_clear(struct sim_pg_result *r)
{
    json_decref(r->columns);
    json_decref(r->nullable);
    json_decref(r->types);
    json_decref(r->rows);
    memset(r, 0, sizeof *r);
}

static void sim_pg_job_free(struct sim_pg_job *j)
{
    sim_pg_result_clear(&j->res);
    free(j->role);
    free(j->sql);
    free(j->oids);
    free(j->ftable);
    free(j->fcol);
    free(j->seen_null);
    free(j->notnull);
    free(j->err);
    free(j);
}

/* PostgreSQL's message of a failed result (primary message only). */
static char *sim_pg_errmsg(PGconn *c, const PGresult *r)
{
    const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!m || !*m)
        m = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
    char *s = sim_strdup(m && *m ? m : "query failed");
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    return s;
}

/* Column metadata from the first result of the user query. */
static void sim_pg_job_columns(struct sim_pg_job *j, const PGresult *r)
{
    if (j->res.columns)
        return;
    int n = PQnfields(r);
    j->ncol = n;
    j->res.columns = json_array();
    j->res.types = json_array();
    j->res.rows = json_array();
    j->oids = calloc((size_t)n + 1, sizeof *j->oids);
    j->ftable = calloc((size_t)n + 1, sizeof *j->ftable);
    j->fcol = calloc((size_t)n + 1, sizeof *j->fcol);
    j->seen_null = calloc((size_t)n + 1, sizeof *j->seen_null);
    j->notnull = calloc((size_t)n + 1, sizeof *j->notnull);
    if (!j->oids || !j->ftable || !j->fcol || !j->seen_null || !j->notnull)
        abort();
    for (int i = 0; i < n; i++) {
        json_array_append_new(j->res.columns, json_string(PQfname(r, i)));
        j->oids[i] = PQftype(r, i);
        j->ftable[i] = PQftable(r, i);
        j->fcol[i] = PQftablecol(r, i);
        json_array_append_new(j->res.types, json_string(sim_pg_type_name(j->oids[i])));
    }
}

static void sim_pg_job_rows(struct sim_pg_job *j, const PGresult *r)
{
    int nt = PQntuples(r);
    for (int t = 0; t < nt; t++) {
        json_t *row = json_array();
        for (int i = 0; i < j->ncol; i++) {
            json_t *v;
            if (PQgetisnull(r, t, i))
                v = json_null();
            else
                v = sim_pg_cell_json(j->oids[i], PQgetvalue(r, t, i), PQgetlength(r, t, i));
            if (json_is_null(v))
                j->seen_null[i] = true;
            json_array_append_new(row, v);
        }
        json_array_append_new(j->res.rows, row);
        j->res.row_count++;
    }
}

/* nullable: a table column is nullable unless declared NOT NULL; a computed one when a
 * null was seen (or when there were no rows to tell). */
static void sim_pg_job_nullable(struct sim_pg_job *j)
{
    j->res.nullable = json_array();
    for (int i = 0; i < j->ncol; i++) {
        bool nullable;
        if (j->ftable[i] != InvalidOid && j->fcol[i] > 0)
            nullable = !j->notnull[i];
        else
            nullable = j->res.row_count == 0 || j->seen_null[i];
        if (j->seen_null[i])
            nullable = true;
        json_array_append_new(j->res.nullable, json_boolean(nullable));
    }
}

static bool sim_pg_job_has_tables(const struct sim_pg_job *j)
{
    for (int i = 0; i < j->ncol; i++)
        if (j->ftable[i] != InvalidOid && j->fcol[i] > 0)
            return true;
    return false;
}

static void sim_pg_conn_dispatch(struct sim_pg_pool *p);
static void sim_pg_conn_close(struct sim_pg_conn *cn);

/* Hand the finished job to its owner; the connection becomes idle. */
static void sim_pg_conn_finish(struct sim_pg_conn *cn)
{
    struct sim_pg_job *j = cn->job;
    cn->job = NULL;
    cn->step = 0;
    if (!j)
        return;
    if (j->err) {
        j->done(j->arg, NULL, j->err);
    } else {
        if (!j->res.columns) { /* a statement without a result set */
            j->res.columns = json_array();
            j->res.types = json_array();
            j->res.rows = json_array();
        }
        sim_pg_job_nullable(j);
        j->done(j->arg, &j->res, NULL);
        memset(&j->res, 0, sizeof j->res);
    }
    sim_pg_job_free(j);
}

static void sim_pg_conn_flush(struct sim_pg_conn *cn)
{
    if (PQflush(cn->c) == 1)
        event_add(cn->wev, NULL);
}

static int sim_pg_send_step(struct sim_pg_conn *cn)
{
    struct sim_pg_job *j = cn->job;
    int ok = 0;
    switch (cn->step) {
    case 1: {
        char *role = sim_pg_quote_ident(j->role), *sql = NULL;
        if (asprintf(&sql,
                     "BEGIN READ ONLY; SET LOCAL ROLE %s; SET LOCAL statement_timeout = %d;"
                     " SET LOCAL search_path = pg_catalog",
                     role, j->timeout_ms) < 0)
            abort();
        ok = PQsendQuery(cn->c, sql);
        free(sql);
        free(role);
        break;
    }
    case 2:
        ok = PQsendQueryParams(cn->c, j->sql, 0, NULL, NULL, NULL, NULL, 0);
        if (ok)
            PQsetSingleRowMode(cn->c);
        break;
    case 3: {
        /* "{oid,oid}" of the source tables */
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, "{", 1);
        bool first = true;
        for (int i = 0; i < j->ncol; i++) {
            if (j->ftable[i] == InvalidOid)
                continue;
            evbuffer_add_printf(b, "%s%u", first ? "" : ",", j->ftable[i]);
            first = false;
        }
        evbuffer_add(b, "}", 2);
        const char *vals[] = {(const char *)evbuffer_pullup(b, -1)};
        ok = PQsendQueryParams(cn->c,
                               "SELECT attrelid::int8, attnum::int4, attnotnull FROM"
                               " pg_catalog.pg_attribute WHERE attrelid = ANY($1::oid[])",
                               1, NULL, vals, NULL, NULL, 0);
        evbuffer_free(b);
        break;
    }
    case 4:
        ok = PQsendQuery(cn->c, "ROLLBACK");
        break;
    }
    if (!ok)
        return -1;
    sim_pg_conn_flush(cn);
    return 0;
}

/* The current step's results are all read: go on. */
static void sim_pg_next_step(struct sim_pg_conn *cn)
{
    struct sim_pg_job *j = cn->job;
    if (cn->step == 4) {
        sim_pg_conn_finish(cn);
        sim_pg_conn_dispatch(cn->pool);
        return;
    }
    if (cn->step == 1 && j->err)
        cn->step = 4;
    else if (cn->step == 2 && (j->err || !sim_pg_job_has_tables(j)))
        cn->step = 4;
    else
        cn->step++;
    if (sim_pg_send_step(cn) < 0) {
        if (!j->err)
            j->err = sim_pg_errmsg(cn->c, NULL);
        cn->step = 4;
        sim_pg_conn_finish(cn);
        sim_pg_conn_dispatch(cn->pool);
    }
}

static void sim_pg_handle_result(struct sim_pg_conn *cn, PGresult *r)
{
    struct sim_pg_job *j = cn->job;
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE) {
        if (!j->err)
            j->err = sim_pg_errmsg(cn->c, r);
        return;
    }
    if (st == PGRES_COPY_OUT || st == PGRES_COPY_IN || st == PGRES_COPY_BOTH) {
        /* COPY leaves the connection in a copy state: refuse it and drop the connection
         * (sim_pg_conn_read sees copy_refused), the next query opens a fresh one */
        if (!j->err)
            j->err = sim_strdup("COPY is not supported: use SELECT");
        cn->copy_refused = true;
        return;
    }
    if (cn->step == 2 && !j->err && (st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK)) {
        sim_pg_job_columns(j, r);
        sim_pg_job_rows(j, r);
        if (j->res.row_count > SIM_PG_MAX_ROWS) {
            char msg[96];
            snprintf(msg, sizeof msg, "result too large: more than %ld rows", SIM_PG_MAX_ROWS);
            j->err = sim_strdup(msg);
            PGcancel *cc = PQgetCancel(cn->c);
            char eb[256];
            if (cc) {
                PQcancel(cc, eb, sizeof eb);
                PQfreeCancel(cc);
            }
        }
        return;
    }
    if (cn->step == 3 && st == PGRES_TUPLES_OK) {
        for (int t = 0; t < PQntuples(r); t++) {
            Oid rel = (Oid)strtoul(PQgetvalue(r, t, 0), NULL, 10);
            int att = atoi(PQgetvalue(r, t, 1));
            bool nn = PQgetvalue(r, t, 2)[0] == 't';
            for (int i = 0; i < j->ncol; i++)
                if (j->ftable[i] == rel && j->fcol[i] == att)
                    j->notnull[i] = nn;
        }
    }
}

static void sim_pg_conn_read(struct sim_pg_conn *cn)
{
    if (!PQconsumeInput(cn->c)) {
        if (cn->job) {
            if (!cn->job->err)
                cn->job->err = sim_pg_errmsg(cn->c, NULL);
            sim_pg_conn_finish(cn);
        }
        sim_pg_conn_close(cn); /* reopened by the next dispatch */
        sim_pg_conn_dispatch(cn->pool);
        return;
    }
    while (cn->job && !PQisBusy(cn->c)) {
        PGresult *r = PQgetResult(cn->c);
        if (!r) {
            sim_pg_next_step(cn);
            return;
        }
        sim_pg_handle_result(cn, r);
        PQclear(r);
        if (cn->copy_refused) {
            cn->copy_refused = false;
            sim_pg_conn_finish(cn);
            sim_pg_conn_close(cn);
            sim_pg_conn_dispatch(cn->pool);
            return;
        }
    }
}

static void sim_pg_on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sim_pg_conn *cn = arg;
    if (!cn->job) { /* notices, or the server went away */
        if (!PQconsumeInput(cn->c))
            event_del(cn->rev);
        while (PQnotifies(cn->c))
            ;
        return;
    }
    sim_pg_conn_read(cn);
}

static void sim_pg_on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sim_pg_conn_flush(arg);
}

static void sim_pg_conn_close(struct sim_pg_conn *cn)
{
    if (cn->rev)
        event_free(cn->rev);
    if (cn->wev)
        event_free(cn->wev);
    cn->rev = cn->wev = NULL;
    if (cn->c)
        PQfinish(cn->c);
    cn->c = NULL;
}

/* (Re)connect one pool connection (blocking: a local socket, at startup or after a
 * failure). 0 or -1. */
static int sim_pg_conn_open(struct sim_pg_pool *p, struct sim_pg_conn *cn)
{
    sim_pg_conn_close(cn);
    cn->pool = p;
    cn->c = PQconnectdb(p->conninfo);
    if (PQstatus(cn->c) != CONNECTION_OK) {
        sim_log("pg: pool connection failed: %s", PQerrorMessage(cn->c));
        return -1;
    }
    PGresult *r = PQexec(cn->c, "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD';"
                                " SET extra_float_digits = 1; SET IntervalStyle = 'iso_8601'");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok || PQsetnonblocking(cn->c, 1) != 0)
        return -1;
    cn->rev = event_new(p->base, PQsocket(cn->c), EV_READ | EV_PERSIST, sim_pg_on_read, cn);
    cn->wev = event_new(p->base, PQsocket(cn->c), EV_WRITE, sim_pg_on_write, cn);
    if (!cn->rev || !cn->wev)
        abort();
    event_add(cn->rev, NULL);
    return 0;
}

static void sim_pg_conn_dispatch(struct sim_pg_pool *p)
{
    for (int i = 0; i < p->n && p->head; i++) {
        struct sim_pg_conn *cn = &p->conns[i];
        if (cn->job)
            continue;
        if ((!cn->c || PQstatus(cn->c) != CONNECTION_OK) && sim_pg_conn_open(p, cn) < 0)
            continue;
        struct sim_pg_job *j = p->head;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        j->next = NULL;
        cn->job = j;
        cn->step = 1;
        if (sim_pg_send_step(cn) < 0) {
            j->err = sim_pg_errmsg(cn->c, NULL);
            sim_pg_conn_finish(cn);
            sim_pg_conn_close(cn);
        }
    }
}

struct sim_pg_pool *sim_pg_pool_new(struct event_base *base, const char *conninfo, int size)
{
    struct sim_pg_pool *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    p->base = base;
    p->conninfo = sim_strdup(conninfo);
    p->n = size;
    p->conns = calloc((size_t)size, sizeof *p->conns);
    if (!p->conns)
        abort();
    for (int i = 0; i < size; i++) {
        p->conns[i].pool = p;
        if (sim_pg_conn_open(p, &p->conns[i]) < 0) {
            sim_pg_pool_free(p);
            return NULL;
        }
    }
    return p;
}

static void sim_pg_job_fail_shutdown(struct sim_pg_job *j)
{
    j->done(j->arg, NULL, "simulator shutting down");
    sim_pg_job_free(j);
}

void sim_pg_pool_free(struct sim_pg_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        struct sim_pg_conn *cn = &p->conns[i];
        if (cn->job) {
            struct sim_pg_job *j = cn->job;
            cn->job = NULL;
            sim_pg_job_fail_shutdown(j);
        }
        sim_pg_conn_close(cn);
    }
    while (p->head) {
        struct sim_pg_job *j = p->head;
        p->head = j->next;
        sim_pg_job_fail_shutdown(j);
    }
    free(p->conns);
    free(p->conninfo);
    free(p);
}

/* A query that could not even be queued fails on the next loop turn. */
static void sim_pg_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sim_pg_pool *p = arg;
    sim_pg_conn_dispatch(p);
    if (!p->head)
        return;
    /* no connection could be opened: fail what waits */
    bool any = false;
    for (int i = 0; i < p->n; i++)
        any = any || p->conns[i].job;
    if (any)
        return;
    while (p->head) {
        struct sim_pg_job *j = p->head;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        j->done(j->arg, NULL, "the query engine is unavailable");
        sim_pg_job_free(j);
    }
}

void sim_pg_query(struct sim_pg_pool *p, const char *role, const char *sql, int timeout_ms,
                  sim_pg_done_fn done, void *arg)
{
    struct sim_pg_job *j = calloc(1, sizeof *j);
    if (!j)
        abort();
    j->role = sim_strdup(role);
    j->sql = sim_strdup(sql);
    j->timeout_ms = timeout_ms > 0 ? timeout_ms : SIM_PG_TIMEOUT_MS;
    j->done = done;
    j->arg = arg;
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    /* start on the next loop turn: done never runs inside this call */
    event_base_once(p->base, -1, EV_TIMEOUT, sim_pg_kick, p, NULL);
}

void sim_pg_result_from(const PGresult *r, struct sim_pg_result *out)
{
    struct sim_pg_job j = {0};
    sim_pg_job_columns(&j, r);
    sim_pg_job_rows(&j, r);
    sim_pg_job_nullable(&j);
    *out = j.res;
    free(j.oids);
    free(j.ftable);
    free(j.fcol);
    free(j.seen_null);
    free(j.notnull);
}
