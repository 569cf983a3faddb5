/*
 * auth: client key -> profile, workspace and mode rules.
 *
 *   - Clients send "Authorization: Bearer <client key>". The key is hashed (SHA-256) and
 *     the hash compared with every configured client's key_sha256 in constant time
 *     (util_ct_equal), without stopping at a match, so neither the time nor anything else
 *     depends on which client (if any) matched. The key is never logged. A connection
 *     keeps its last verified key (struct auth_memo, wiped when replaced and when the
 *     connection closes) so that its next requests carrying the same key skip the hash:
 *     they compare it in constant time with the kept one instead. A hit tells the sender
 *     only that its key equals the last one that succeeded on its own connection, which
 *     the answer (200 rather than 401) tells anyway.
 *   - Workspaces: a request's X-Workspace-Id must be one of the client's workspaces (or the
 *     client has "*"). Absent, the client's default_workspace is injected; a client limited
 *     to a list and without a default must send one (403). /v1/workspaces is addressed by
 *     token alone: no default is injected there.
 *   - Modes: read-only allows what the routing table marks readonly_ok (route.h: GET and
 *     HEAD, plus POST /v1/query and POST /v1/queries/{id}/execute, reads sent as POST; not
 *     OPTIONS). full allows everything.
 *
 * Rules: pure functions over the immutable config; thread-safe.
 */
#ifndef HG_AUTH_H
#define HG_AUTH_H

#include "config.h"

/* The client for an Authorization header value (may be NULL), or NULL (-> 401). */
const struct hg_client *auth_client(const struct hg_config *cfg, const char *authorization);

/* Per connection: the last key that matched a client (keys up to 128 bytes). Zeroed to
 * start; auth_memo_wipe() when the connection closes. Valid only for the config snapshot
 * it was made with (pointer and generation: after a reload the key is looked up again, and
 * a new snapshot at the old one's address cannot be mistaken for it). */
struct auth_memo {
    const struct hg_config *cfg;
    uint64_t gen;
    const struct hg_client *client;
    size_t len;
    unsigned char key[128];
};

/* auth_client() through a connection's memo: same answers, no hash when the key is the
 * memo's (compared in constant time). */
const struct hg_client *auth_client_memo(const struct hg_config *cfg, const char *authorization,
                                         struct auth_memo *m);
void auth_memo_wipe(struct auth_memo *m);

/* Workspace check. ws_header: the request's X-Workspace-Id or NULL. On 0, *effective is
 * the workspace to send upstream (NULL: send none). On -1 (-> 403), *reason says why. */
int auth_workspace(const struct hg_client *cl, const char *path, const char *ws_header,
                   const char **effective, const char **reason);

/* 1 when the client's mode allows the request routed to `route` (route.h: the routing
 * table's readonly_ok column decides what a read-only client may send). */
struct route_policy;
int auth_mode_allows(enum hg_mode mode, const struct route_policy *route);

#endif
