/*
 * req: what a handler reads from its request: path parameters (the route's {name}
 * segments), query parameters, headers, and typed fields of the JSON body. The typed getters
 * answer 400 (API-shaped) themselves and return -1, so a handler just returns.
 *
 * Rules: loop thread only; returned strings point into the request.
 */
#include "sim_reply.h"
#include "sim_req.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *sim_req_param(struct sim_req *req, const char *name)
{
    /* param_names point at the route's "{name}" segments */
    size_t len = strlen(name);
    for (size_t i = 0; i < req->nparams; i++) {
        const char *p = req->param_names[i];
        if (p[0] == '{' && strncmp(p + 1, name, len) == 0 && p[len + 1] == '}' && !p[len + 2])
            return req->param_values[i];
    }
    return NULL;
}

const char *sim_req_query(struct sim_req *req, const char *name)
{
    return evhttp_find_header(&req->query, name);
}

const char *sim_req_header(struct sim_req *req, const char *name)
{
    if (!req->ev)
        return NULL;
    return evhttp_find_header(evhttp_request_get_input_headers(req->ev), name);
}

int sim_req_query_int(struct sim_req *req, const char *name, long def, long min, long max,
                      long *out)
{
    const char *v = sim_req_query(req, name);
    if (!v || !*v) {
        *out = def;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || end == v) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid query parameter '%s': expected an integer", name);
        return -1;
    }
    if (n < min || n > max) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid query parameter '%s': must be between %ld and %ld", name, min,
                        max);
        return -1;
    }
    *out = n;
    return 0;
}

static json_t *sim_body_field(struct sim_req *req, const char *key, bool required, int *rc)
{
    *rc = 0;
    if (req->body && !json_is_object(req->body)) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Invalid request: body must be a JSON object");
        *rc = -1;
        return NULL;
    }
    json_t *v = req->body ? json_object_get(req->body, key) : NULL;
    if (v && json_is_null(v))
        v = NULL;
    if (!v && required) {
        sim_reply_error(req, 400, "BAD_REQUEST", "Invalid request: missing field `%s`", key);
        *rc = -1;
    }
    return v;
}

/* The field when present and of JSON type want (JSON_TRUE stands for either boolean):
 * *v the value (NULL when absent), 0; or the request answered 400 and -1. */
static int sim_body_typed(struct sim_req *req, const char *key, bool required, bool *present,
                          json_type want, const char *tname, json_t **v)
{
    int rc;
    *v = sim_body_field(req, key, required, &rc);
    if (present)
        *present = *v != NULL;
    if (rc || !*v)
        return rc;
    json_type t = json_typeof(*v);
    if (t == JSON_FALSE)
        t = JSON_TRUE;
    if (t != want) {
        sim_reply_error(req, 400, "BAD_REQUEST",
                        "Invalid request: invalid type for `%s`, expected %s", key, tname);
        return -1;
    }
    return 0;
}

int sim_body_str(struct sim_req *req, const char *key, bool required, const char **out,
                 bool *present)
{
    json_t *v;
    int rc = sim_body_typed(req, key, required, present, JSON_STRING, "a string", &v);
    if (rc == 0 && v)
        *out = json_string_value(v);
    return rc;
}

int sim_body_bool(struct sim_req *req, const char *key, bool required, bool *out, bool *present)
{
    json_t *v;
    int rc = sim_body_typed(req, key, required, present, JSON_TRUE, "a boolean", &v);
    if (rc == 0 && v)
        *out = json_is_true(v);
    return rc;
}

int sim_body_int(struct sim_req *req, const char *key, bool required, long long *out, bool *present)
{
    json_t *v;
    int rc = sim_body_typed(req, key, required, present, JSON_INTEGER, "an integer", &v);
    if (rc == 0 && v)
        *out = json_integer_value(v);
    return rc;
}
