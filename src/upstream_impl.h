/*
 * upstream_impl: what the upstream front (upstream.c) shares with its two transports.
 * Not for callers: they use upstream.h.
 *
 *   upstream_curl.c  libcurl multi: https:// (TLS verification, HTTP/2 multiplexing), any
 *                    host name (curl's resolver);
 *   upstream_h1.c    hotgate's own HTTP/1.1 client for plain http:// upstreams: a tenth
 *                    of curl's instructions and half its system calls per exchange.
 *
 * [upstream] client = auto picks the native client for http:// to an IP literal or
 * localhost, curl otherwise; curl or native force one (native refuses https://).
 *
 * Rules: every transport keeps the contract of upstream.h to the letter (callbacks,
 * ownership, backpressure, cancellation from inside callbacks) and takes its retry
 * decisions from upstream_retry_allowed()/upstream_backoff_ms(), so both replay exactly
 * the same things. A transport's handle and request structs start with struct upstream /
 * struct upstream_req, through which the front dispatches.
 */
#ifndef HG_UPSTREAM_IMPL_H
#define HG_UPSTREAM_IMPL_H

#include "upstream.h"

struct upstream_ops {
    const char *name;
    struct upstream *(*create)(struct event_base *base, const struct hg_config *cfg);
    void (*destroy)(struct upstream *up);
    unsigned (*inflight)(const struct upstream *up);
    uint64_t (*conns_opened)(const struct upstream *up);
    struct upstream_req *(*req_new)(struct upstream *up, const char *method, const char *target);
    int (*add_header)(struct upstream_req *u, const char *name, const char *value);
    int (*set_bearer)(struct upstream_req *u, const char *token, size_t len);
    int (*send)(struct upstream_req *u, const struct upstream_callbacks *cb, void *arg);
    size_t (*body_write)(struct upstream_req *u, struct evbuffer *data);
    void (*body_end)(struct upstream_req *u);
    void (*resume)(struct upstream_req *u);
    void (*cancel)(struct upstream_req *u);
    int (*sent)(const struct upstream_req *u);
};

enum upstream_body_kind { UPSTREAM_BODY_NONE, UPSTREAM_BODY_MEM, UPSTREAM_BODY_STREAM };

/* The first member of every transport's handle / request. The request part holds what the
 * caller set before upstream_send (the front sets it; transports read it and free body). */
struct upstream {
    const struct upstream_ops *ops;
};
struct upstream_req {
    const struct upstream_ops *ops;
    enum upstream_body_kind body_kind;
    struct evbuffer *body; /* MEM: the body (kept for replays); STREAM: bytes not yet sent */
    int64_t body_len;      /* STREAM: declared length, -1 = unknown */
    int no_retry;
};

extern const struct upstream_ops upstream_curl_ops;
extern const struct upstream_ops upstream_h1_ops;

/* The transport [upstream] client and url select. */
const struct upstream_ops *upstream_pick(const struct hg_config *cfg);

/* Whether one more attempt may be made: retries left and the request timeout not used up
 * since started_ms (util_mono_ms). */
int upstream_retry_allowed(const struct hg_config *cfg, int no_retry, int attempts,
                           uint64_t started_ms);

/* Delay before attempt `attempts`+1: retry_backoff_ms * 2^(attempts-1), +-50 % jitter. */
uint64_t upstream_backoff_ms(const struct hg_config *cfg, int attempts);

/* How an attempt ended, for the retry rule. */
struct upstream_attempt_end {
    enum upstream_outcome outcome;
    int discarding;     /* a GET 502/503 swallowed at the head (retry_allowed checked then) */
    int head_delivered; /* on_head was called: never retried */
    int replayable;     /* the body can be sent again (memory body, or stream not started) */
    int sent;           /* a request byte reached the network */
    int no_retry, attempts;
    uint64_t started_ms;
};

/* The retry rule of upstream.h: a swallowed GET 502/503, or a failure before any request
 * byte reached the server (refused, reset, or connect timeout) of a replayable request,
 * while retries and time are left. */
int upstream_retry_decide(const struct hg_config *cfg, const struct upstream_attempt_end *e);

/* Arm *timer (created on first use) to call fn(arg) after the backoff before attempt
 * attempts+1; logged at debug. */
void upstream_retry_arm(struct event_base *base, const struct hg_config *cfg, struct event **timer,
                        event_callback_fn fn, void *arg, const char *method,
                        const struct upstream_attempt_end *e, int status);

/* The last step of every exchange: a failure is logged (warning, no secrets), then r goes to
 * on_done with *cb_depth raised around the call. */
void upstream_report_done(const struct upstream_callbacks *cb, void *arg, int *cb_depth,
                          const struct upstream_result *r, const char *method);

#endif
