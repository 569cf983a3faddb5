/*
 * sim_httpconn (sim/httpconn.c): client connections and the request objects they hold.
 * Connections are tracked in a small pointer hash (evcon -> struct sim_conn) so that a
 * client going away clears req->ev of the request it had pending (the eventual reply then
 * only frees memory), and so that the drop and stall faults can close a connection from a
 * timer, never from inside an evhttp callback.
 *
 * Rules: loop thread only. struct sim_req is allocated here (inside struct sim_req_x) and
 * freed by sim_req_free, which the reply writer calls.
 */
#ifndef SIM_HTTPCONN_H
#define SIM_HTTPCONN_H

#include "sim_int.h"

struct sim_conn {
    struct evhttp_connection *evcon;
    struct sim_req *pending; /* request held by the framework or a handler */
    struct event *kill_ev;   /* drop fault: free the connection on this timer */
    struct sim_ctx *ctx;
    struct sim_conn *next;
};

/* The framework's part of a request (req->priv). */
struct sim_req_x {
    struct sim_req r;
    struct sim_route_ent *route;
    struct sim_conn *conn;
    bool abandoned;                      /* stall: nobody will reply; the close callback frees it */
    bool drop_mid;                       /* drop fault: send half the body, then close */
    void (*resume)(struct sim_req *req); /* after the latency fault's timer */
};

/* A new request for ev on its (tracked) connection, which now holds it as pending. */
struct sim_req *sim_req_new(struct sim_ctx *ctx, struct evhttp_request *ev, const char *method);
/* Free a request and everything it owns (an unclaimed upload file is unlinked). */
void sim_req_free(struct sim_req *req);
/* Free a request whose connection is gone (shutdown with the request on a timer). */
void sim_req_drop(void *arg);

/* Close c after ms milliseconds (once; the close callback frees c). */
void sim_conn_kill_after(struct sim_conn *c, int ms);
void sim_conns_init(struct sim_ctx *ctx);
/* At shutdown, after evhttp_free: free what is left of the connection table. */
void sim_conns_free(struct sim_ctx *ctx);

#endif
