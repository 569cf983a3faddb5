/*
 * sim_reply (sim/reply.c): the reply writer. Exactly one sim_reply_* call answers a request
 * and frees it; JSON bodies go through sim_json_dumps, errors are API-shaped
 * {"error":{"code","message"},"message","status"}. Also the two low-level senders of the
 * control plane, which has no struct sim_req.
 *
 * Rules: loop thread only. A reply to a request whose client went away (req->ev NULL) only
 * frees it. The drop-mid fault (flag on the request) sends half the body, then closes.
 */
#ifndef SIM_REPLY_H
#define SIM_REPLY_H

#include "sim_types.h"

/* JSON with status; body is stolen. Content-Type: application/json. */
void sim_reply_json(struct sim_req *req, int status, json_t *body);
/* Empty body (204 for deletes). */
void sim_reply_empty(struct sim_req *req, int status);
/* API-shaped error {"error":{"code","message"},"message","status"}; code NULL -> derived
 * from the status (util_status_code_name). */
void sim_reply_error(struct sim_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Raw bytes with a content type; buf contents are moved out (buf stays owned by caller). */
void sim_reply_raw(struct sim_req *req, int status, const char *content_type, struct evbuffer *buf);
/* Add a response header before replying (e.g. "X-Total-Row-Count"). */
void sim_reply_header(struct sim_req *req, const char *name, const char *value);
/* 429 OVERLOADED with Retry-After: seconds (at least 1). */
void sim_reply_retry_after(struct sim_req *req, int seconds, const char *msg);

/* Low-level replies for control-plane requests that have no sim_req. body is stolen. */
void sim_send_json_ev(struct evhttp_request *ev, int status, json_t *body);
void sim_send_error_ev(struct evhttp_request *ev, int status, const char *message);

#endif
