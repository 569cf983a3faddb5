/*
 * admin: see admin.h.
 */
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "cfgsnap.h"
#include "config.h"
#include "http1.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

static struct {
    const struct hg_config *cfg; /* boot config: the token when no snapshot exists */
    struct event_base *base;     /* the loop the listener runs on (worker 0's) */
    struct upstream *up;         /* that worker's upstream handle */
    struct evhttp *http;
    struct {
        char path[128];
        admin_fn fn;
        void *arg;
        int is_public; /* no admin token needed */
    } ep[16];
    int nep;
} A;

struct event_base *admin_loop(void)
{
    return A.http ? A.base : NULL;
}

struct upstream *admin_upstream(void)
{
    return A.up;
}

static int admin_authorized(struct evhttp_request *r)
{
    /* the token of the current snapshot: a reload can rotate it */
    const struct hg_config *cfg = cfgsnap_acquire();
    const struct hg_secret *tok = cfg ? &cfg->admin.token : &A.cfg->admin.token;
    int ok = 0;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(r), "Authorization");
    if (!tok->data) {
        ok = 1;
    } else if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        const char *k = h + 7;
        unsigned char a[32], b[32];
        util_sha256(k, strlen(k), a);
        util_sha256(tok->data, tok->len, b);
        ok = util_ct_equal(a, b, 32);
        util_wipe(a, 32);
        util_wipe(b, 32);
    }
    cfgsnap_release(cfg);
    return ok;
}

static void admin_reply_error(struct evhttp_request *r, int status, const char *msg)
{
    char *body = util_api_error_json(status, NULL, msg);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", "application/json");
    evhttp_send_reply(r, status, util_reason_phrase(status), b);
    evbuffer_free(b);
    free(body);
}

static void admin_cb(struct evhttp_request *r, void *arg)
{
    const char *uri = evhttp_request_get_uri(r);
    size_t plen = strcspn(uri, "?");
    char path[256];
    snprintf(path, sizeof path, "%.*s", (int)(plen < 255 ? plen : 255), uri);
    if (strcmp(path, "/healthz") == 0 && evhttp_request_get_command(r) == EVHTTP_REQ_GET) {
        /* health is public: a load balancer needs no token */
        struct evbuffer *b = evbuffer_new();
        evbuffer_add_printf(b, "{\"status\":\"ok\"}\n");
        evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", "application/json");
        evhttp_send_reply(r, 200, "OK", b);
        evbuffer_free(b);
        return;
    }
    for (int i = 0; i < A.nep; i++)
        if (A.ep[i].is_public && strcmp(A.ep[i].path, path) == 0) {
            A.ep[i].fn(r, A.ep[i].arg);
            return;
        }
    if (!admin_authorized(r)) {
        admin_reply_error(r, 401, "admin token required");
        return;
    }
    if (strcmp(path, "/metrics") == 0 && evhttp_request_get_command(r) == EVHTTP_REQ_GET) {
        struct evbuffer *b = evbuffer_new();
        metrics_render(b);
        evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type",
                          "text/plain; version=0.0.4");
        evhttp_send_reply(r, 200, "OK", b);
        evbuffer_free(b);
        return;
    }
    for (int i = 0; i < A.nep; i++)
        if (!A.ep[i].is_public && strcmp(A.ep[i].path, path) == 0) {
            A.ep[i].fn(r, A.ep[i].arg);
            return;
        }
    admin_reply_error(r, 404, "no such admin endpoint");
}

static int add_endpoint(const char *path, admin_fn fn, void *arg, int is_public)
{
    if (A.nep >= 16 || strlen(path) >= sizeof A.ep[0].path)
        return -1;
    snprintf(A.ep[A.nep].path, sizeof A.ep[0].path, "%s", path);
    A.ep[A.nep].fn = fn;
    A.ep[A.nep].arg = arg;
    A.ep[A.nep].is_public = is_public;
    A.nep++;
    return 0;
}

int admin_register(const char *path, admin_fn fn, void *arg)
{
    return add_endpoint(path, fn, arg, 0);
}

int admin_register_public(const char *path, admin_fn fn, void *arg)
{
    return add_endpoint(path, fn, arg, 1);
}

int admin_start(struct event_base *base, struct upstream *up, const struct hg_config *cfg)
{
    A.cfg = cfg;
    A.base = base;
    A.up = up;
    if (cfg->admin.n_listen == 0)
        return 0;
    A.http = evhttp_new(A.base);
    evhttp_set_gencb(A.http, admin_cb, NULL);
    evhttp_set_timeout(A.http, 10);
    evhttp_set_max_body_size(A.http, 1 << 20);
    evhttp_set_allowed_methods(A.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE);
    for (size_t i = 0; i < cfg->admin.n_listen; i++) {
        char host[256];
        snprintf(host, sizeof host, "%s", cfg->admin.listen[i]);
        char *colon = strrchr(host, ':');
        *colon = '\0';
        int port = atoi(colon + 1);
        char *h = host;
        if (h[0] == '[') {
            h++;
            h[strlen(h) - 1] = '\0';
        }
        if (evhttp_bind_socket(A.http, h, (ev_uint16_t)port) != 0) {
            log_msg(LOG_ERR, "admin listen %s: %s", cfg->admin.listen[i], strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* ---- drain and stop ---- */

void admin_stop(void)
{
    if (A.http)
        evhttp_free(A.http);
    A.http = NULL;
    A.base = NULL;
    A.up = NULL;
}
