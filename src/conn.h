/*
 * conn: client connections. Reads the socket, drives the HTTP/1.1 codec (http1.h) over the
 * bytes, reads request bodies (whole in memory up to CONN_MEM_BODY_MAX with a
 * Content-Length, else streamed to the upstream as they come, with reading paused while the
 * upstream is UPSTREAM_BODY_HIGHWATER behind), hands each request to the pipeline
 * (pipeline.h) and writes its answer back (struct hg_req_io), keep-alive, pipelining,
 * timeouts (head, body rate, idle, write) and backpressure (PIPELINE_WRITE_HIGHWATER on the
 * output pausing the upstream transfer).
 *
 * Rules: a connection and its requests belong to one worker thread. The worker (struct
 * hg_worker) is made and run by server.c; conn.c only reads its loop, config and upstream
 * handle and keeps its list of connections. Connections cross libevent callbacks as
 * `void *`: each callback checks HG_CONN_MAGIC (check.h).
 *
 * The structs are in this header for server.c and for the in-process codec driver of the
 * tests and fuzzers (tests/fuzz/http1_drive.h); other modules use the functions only.
 */
#ifndef HG_CONN_H
#define HG_CONN_H

#include <pthread.h>
#include <stdint.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "auth.h"
#include "http1.h"

struct hg_config;
struct hg_req;
struct upstream;
struct log_access;

#define CONN_MEM_BODY_MAX (1u << 20) /* Content-Length up to this: read whole */
#define CONN_MAGIC 0x2c0a4e51u

/* One worker thread's state (server.c makes and runs it). */
struct hg_worker {
    int index;
    pthread_t thread;
    struct event_base *base;
    const struct hg_config *cfg;  /* the boot config: settings that need a restart */
    const struct hg_config *snap; /* the worker's reference to the current snapshot */
    uint64_t snap_gen;
    struct event *reload_ev; /* server_config_changed(): refresh snap now */
    struct upstream *up;
    struct log_access *alog;
    struct evconnlistener *listeners[16];
    int nlisteners;
    struct event *stop_ev;
    struct event *drain_timer;
    uint64_t drain_deadline_ms;
    int draining;
    unsigned nconns;
    struct hg_conn *conns; /* list of open connections, newest first */
    /* accept paused (fd exhaustion, max_connections): listeners disabled until
     * accept_resume_ev fires or one of our connections closes (conn_closed) */
    struct event *accept_resume_ev;
    int accept_paused;
    void (*conn_closed)(struct hg_worker *w); /* server.c: a connection slot is free */
};

enum conn_state {
    CS_HEAD = 0, /* waiting for / reading a request head */
    CS_BODY,     /* reading a memory body before the pipeline */
    CS_BUSY,     /* request in the pipeline (a stream body may still be arriving) */
    CS_CLOSING,  /* flushing the last response, then close */
};

struct hg_conn {
    unsigned magic; /* CONN_MAGIC */
    struct hg_worker *w;
    struct bufferevent *bev;
    struct hg_conn *next, *prev;
    enum conn_state state;
    struct hg_req *req;     /* the request being read or answered */
    int keepalive;          /* the connection may carry another request */
    size_t head_bytes;      /* bytes of the current head so far */
    uint64_t head_start_ms; /* first byte of the current head: the whole head must arrive
                               within read_timeout (slowloris) */
    int nheaders;
    /* the body's minimum-rate clock: since when (0: the request head) and from how many bytes;
     * restarted whenever hotgate itself stopped reading (budget queue, upstream backpressure) */
    uint64_t body_clock_us, body_clock_bytes;
    /* request body decoding */
    enum http1_framing framing;
    uint64_t body_left; /* HTTP1_BODY_LENGTH: bytes still to read */
    struct http1_chunked ck;
    int body_done;
    int read_paused;          /* reading stopped for upstream backpressure */
    struct evbuffer *pending; /* stream body read before the upstream request exists */
    /* response */
    int resp_chunked;
    int resp_no_body;
    int resp_started, resp_done;
    void (*drain_fn)(struct hg_req *, void *);
    void *drain_arg;
    int drain_wanted;
    /* output: written straight from the loop turn that produced it (flush_ev), so a
     * response that fits the socket costs one writev and no epoll_ctl; EV_WRITE on the
     * bufferevent is enabled only while a rest waits for the socket */
    struct event *flush_ev;
    int flush_queued; /* flush_ev is active (event_active again would be a costly no-op) */
    struct evbuffer_cb_entry *out_cb;
    uint64_t read_timeout_ms; /* as last set (UINT64_MAX: not yet) */
    /* input: read by read_ev (conn_sock_read_cb), not by the bufferevent */
    struct event *read_ev;
    int read_on;           /* read_ev added */
    int read_full;         /* the last read filled its space: the next one offers more */
    int peer_eof;          /* the client half-closed: never read again, close after the answer */
    struct auth_memo auth; /* the last verified client key (auth.h); wiped on close */
};

/* A new connection on an accepted socket (the worker's list gets it). */
void conn_new(struct hg_worker *w, evutil_socket_t fd);
/* Run the codec over what the connection's input holds (what a read does). */
void conn_process(struct hg_conn *c);
/* Close now (a request attached loses its client). */
void conn_free(struct hg_conn *c);
/* Close the oldest idle keep-alive connection of w: 1 if one was closed. */
int conn_close_oldest_idle(struct hg_worker *w);
/* Open client connections, all workers. */
unsigned conn_total(void);
/* The worker's config snapshot, refreshed when a reload published a new one. */
const struct hg_config *conn_worker_snap(struct hg_worker *w);

/* The body-decoder limits of client requests (also for the fuzzers). */
extern const struct http1_chunk_limits conn_chunk_limits;
#define CONN_READ_CHUNK_MAX (256u << 10)

#endif
