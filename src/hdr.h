/*
 * hdr: header rules shared by the request and the response direction.
 *
 *   - hop-by-hop headers (Connection, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade,
 *     every Proxy-* header, and every header named in Connection) never cross hotgate;
 *   - towards the upstream, hotgate also drops what it sets itself: Host, Content-Length,
 *     Expect, Authorization (replaced by the credential's token), X-Request-Id and
 *     X-Workspace-Id (re-added with the checked values);
 *   - X-Request-Id: a client's value is kept when it is 1..64 characters of
 *     [A-Za-z0-9._:-]; otherwise (or when absent) hotgate makes one (32 hex digits).
 *
 * Rules: pure functions over libevent's struct evkeyvalq; thread-safe.
 */
#ifndef HG_HDR_H
#define HG_HDR_H

#include <stddef.h>

#include <sys/queue.h>

#include <event2/keyvalq_struct.h>

/* A set of header names compared by length first (most names then meet no strcasecmp):
 * static const struct hdr_name set[] = {HDR_NAME("Host"), ...}. */
struct hdr_name {
    const char *name;
    size_t len;
};
#define HDR_NAME(s)                                                                                \
    {                                                                                              \
        s, sizeof s - 1                                                                            \
    }
/* 1 when name (n bytes) is in set[0..count), ASCII case-insensitive. */
int hdr_name_in(const char *name, size_t n, const struct hdr_name *set, size_t count);

/* Remove from h every header whose name drop() accepts. */
void hdr_remove_if(struct evkeyvalq *h, int (*drop)(const char *name));

/* 1 when name is a hop-by-hop header by itself (not counting Connection's list). */
int hdr_is_hop_by_hop(const char *name);

/* Remove hop-by-hop headers, including those listed in Connection, from h. */
void hdr_strip_hop_by_hop(struct evkeyvalq *h);

/* 1 when a client request header (already hop-by-hop stripped) goes upstream as is. */
int hdr_forward_to_upstream(const char *name);

/* 1 when an upstream response header goes to the client as is (Content-Length is handled
 * by the server's framing, so it is not forwarded as a header). */
int hdr_forward_to_client(const char *name);

/* The request id: the client's value if acceptable, else a fresh one. out: 65 bytes. */
void hdr_request_id(const char *client_value, char out[65]);

/* 1 when a header value is safe to emit (no CR, LF or NUL; no other control bytes but
 * tab). */
int hdr_value_ok(const char *v);

/* 1 when name is a valid field name (RFC 9110 token). */
int hdr_name_ok(const char *name, size_t len);

/* evhttp_find_header() without its tolower call per byte: the value of the first header
 * named name (ASCII case-insensitive), or NULL. */
const char *hdr_find(const struct evkeyvalq *h, const char *name);

/* Appends name: value as evhttp_add_header() stores it (freed by evhttp_clear_headers),
 * without its checks and strlen: for names and values already checked (hdr_name_ok,
 * hdr_value_ok, or config names). */
void hdr_add(struct evkeyvalq *h, const char *name, size_t name_len, const char *value,
             size_t value_len);

#endif
