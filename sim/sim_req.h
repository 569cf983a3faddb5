/*
 * sim_req (sim/req.c): what a handler reads from its request: path and query parameters,
 * headers, and typed fields of the JSON body. The typed getters answer 400 themselves.
 *
 * Rules: loop thread only; strings returned point into the request (valid until its reply).
 */
#ifndef SIM_REQ_H
#define SIM_REQ_H

#include "sim_types.h"

/* Path parameter by name ({connection_id}); NULL when the pattern has no such segment. */
const char *sim_req_param(struct sim_req *req, const char *name);
/* Query parameter by name, NULL when absent. */
const char *sim_req_query(struct sim_req *req, const char *name);
/* Request header (case-insensitive), NULL when absent. */
const char *sim_req_header(struct sim_req *req, const char *name);

/*
 * Integer query parameter: *out = def when absent. Replies 400 and returns -1 when it is
 * not an integer or outside [min, max]; 0 otherwise.
 */
int sim_req_query_int(struct sim_req *req, const char *name, long def, long min, long max,
                      long *out);

/*
 * Typed body fields. Absent or JSON null -> *out unchanged and *present = false (present
 * may be NULL). A required field that is absent/null, or a field of the wrong JSON type,
 * replies 400 and returns -1. A non-object body replies 400 too. 0 on success.
 */
int sim_body_str(struct sim_req *req, const char *key, bool required, const char **out,
                 bool *present);
int sim_body_bool(struct sim_req *req, const char *key, bool required, bool *out, bool *present);
int sim_body_int(struct sim_req *req, const char *key, bool required, long long *out,
                 bool *present);

#endif
