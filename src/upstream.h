/*
 * upstream: HTTP exchanges with the configured upstream API, one handle per worker,
 * driven by the worker's libevent loop. Two transports behind this one contract
 * (upstream_impl.h): libcurl multi (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION) for https://
 * with TLS verification and HTTP/2 multiplexing, and hotgate's own HTTP/1.1 client for
 * plain http:// upstreams. Connections are pooled and reused and capped per worker.
 *
 * Use:
 *   struct upstream_req *u = upstream_req_new(up, "POST", "/v1/query?x=1");
 *   upstream_req_add_header(u, "Content-Type", "application/json");
 *   upstream_req_set_body_memory(u, body);              // or _set_body_stream()
 *   upstream_send(u, &callbacks, arg);
 *   ... on_head(status, headers) -> on_data(chunk)* -> on_done(result), exactly once
 *
 * Bodies. A memory body (evbuffer, moved in) is replayable: retries send it again. A
 * stream body is written by the producer with upstream_body_write() as it arrives and
 * ended with upstream_body_end(); it is not replayable. Backpressure: upstream_body_write
 * returns the bytes buffered and not yet sent; above UPSTREAM_BODY_HIGHWATER the
 * producer stops reading its source until on_body_drain is called.
 *
 * Response backpressure: on_data may return UPSTREAM_PAUSE; the transfer then stops
 * reading until upstream_resume().
 *
 * Retries (config [upstream] retries, retry_backoff_ms), only where safe:
 *   - a connection failure before any request byte was sent: any method;
 *   - a GET answered 502/503: the answer is swallowed and the GET sent again after a
 *     jittered exponential backoff, bounded by `retries` and by the request timeout.
 * Nothing else is replayed. Retries happen inside upstream: callbacks see only the final
 * attempt; result->attempts says how many were made.
 *
 * Errors the caller should map: UPSTREAM_CONNECT_ERROR/TLS_ERROR/PROTOCOL_ERROR -> 502
 * UPSTREAM_UNAVAILABLE, UPSTREAM_TIMEOUT -> 504 UPSTREAM_TIMEOUT (upstream_error_status()).
 *
 * Threading: an upstream handle and its requests belong to one worker thread.
 * Ownership: the caller owns a upstream_req until on_done returned (the request is freed
 * right after on_done) or until upstream_cancel() (freed inside, no callback after).
 */
#ifndef HG_UPSTREAM_H
#define HG_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>

struct hg_config;
struct upstream;
struct upstream_req;

enum upstream_outcome {
    UPSTREAM_OK = 0,         /* a complete response (any HTTP status) */
    UPSTREAM_CONNECT_ERROR,  /* could not connect / resolve / connection refused */
    UPSTREAM_TLS_ERROR,      /* TLS handshake or certificate verification failed */
    UPSTREAM_TIMEOUT,        /* connect timeout, or no progress within [upstream] timeout */
    UPSTREAM_PROTOCOL_ERROR, /* reset or malformed response after the request went out */
    UPSTREAM_BODY_ERROR,     /* the request body source failed (client went away) */
    UPSTREAM_CANCELLED,      /* never reported through on_done; for completeness */
};

struct upstream_result {
    enum upstream_outcome outcome;
    int http_status;    /* final HTTP status, 0 if none */
    int attempts;       /* attempts made (1 = no retry) */
    int request_sent;   /* any byte of the request (head or body) reached the network */
    int body_started;   /* any byte of the request body was sent */
    int curl_code;      /* CURLcode of the last attempt (curl transport; 0 otherwise) */
    uint64_t bytes_in;  /* response body bytes received */
    uint64_t bytes_out; /* request body bytes sent */
    long num_connects;  /* new connections made for the last attempt (CURLINFO_NUM_CONNECTS) */
    const char *error;  /* short human text, no secrets; valid during on_done */
};

#define UPSTREAM_PAUSE 1
#define UPSTREAM_BODY_HIGHWATER (4u << 20)

struct upstream_callbacks {
    /* Final response head (1xx skipped). headers: hop-by-hop removed. Return 0, or -1 to
     * abort the transfer: that is upstream_cancel() (no on_done follows). */
    int (*on_head)(void *arg, int status, const struct evkeyvalq *headers);
    /* Body bytes: the callee should move them out (evbuffer_remove_buffer/add_buffer).
     * Return 0, or UPSTREAM_PAUSE to stop until upstream_resume(). */
    int (*on_data)(void *arg, struct evbuffer *chunk);
    /* Exactly once, last. The upstream_req is freed after it returns. */
    void (*on_done)(void *arg, const struct upstream_result *res);
    /* Stream bodies only: the buffered request body fell below half the high water. */
    void (*on_body_drain)(void *arg);
    /* Optional: the upstream answered 502/503 to a GET and the request will be sent again
     * after the backoff (the caller's rate budget charges it). Must not cancel. */
    void (*on_retry)(void *arg);
};

/* Per worker: create on the worker's base. Returns NULL on failure (logged). */
struct upstream *upstream_new(struct event_base *base, const struct hg_config *cfg);
void upstream_free(struct upstream *up); /* cancels everything still in flight */

/* The transport this handle uses: "curl" or "native" (upstream_impl.h). */
const char *upstream_client_name(const struct upstream *up);

/* Requests in flight on this handle. */
unsigned upstream_inflight(const struct upstream *up);

/* Total new upstream connections opened by this handle so far. */
uint64_t upstream_connections_opened(const struct upstream *up);

/* A request for method + target ("/v1/...?query"), relative to [upstream] url. */
struct upstream_req *upstream_req_new(struct upstream *up, const char *method, const char *target);

/* Add a request header (copied). Values must not contain CR/LF (checked: -1). */
int upstream_req_add_header(struct upstream_req *u, const char *name, const char *value);

/* Add the Authorization header from a secret without leaving a copy behind: the header
 * line is wiped when the request is freed. */
int upstream_req_set_bearer(struct upstream_req *u, const char *token, size_t token_len);

/* Body: moved out of `body` (replayable). */
void upstream_req_set_body_memory(struct upstream_req *u, struct evbuffer *body);

/* Body: streamed; length -1 when unknown (sent chunked over HTTP/1.1). */
void upstream_req_set_body_stream(struct upstream_req *u, int64_t length);

/* Disable the automatic retries for this request (e.g. the budget retries itself). */
void upstream_req_no_retry(struct upstream_req *u);

/* Start. Returns 0; -1 when the request could not be started at all (on_done is then
 * not called; the request is freed). */
int upstream_send(struct upstream_req *u, const struct upstream_callbacks *cb, void *arg);

/* Stream bodies: move data in; returns bytes buffered, not yet sent. */
size_t upstream_body_write(struct upstream_req *u, struct evbuffer *data);
void upstream_body_end(struct upstream_req *u);

/* After on_data returned UPSTREAM_PAUSE. */
void upstream_resume(struct upstream_req *u);

/* Stop and free; no callback is called after this returns. */
void upstream_cancel(struct upstream_req *u);

/* Whether any request byte reached the network so far (for retry decisions). */
int upstream_req_sent(const struct upstream_req *u);

/* HTTP status, code and message for a failed outcome (502/504). */
int upstream_error_status(enum upstream_outcome o, const char **code, const char **message);

const char *upstream_outcome_name(enum upstream_outcome o);

#endif
