/*
 * auth: see auth.h.
 */
#include "auth.h"

#include <string.h>
#include <strings.h>

#include "route.h"
#include "util.h"

/* The key of an Authorization value ("Bearer <key>", blanks trimmed), or NULL. */
static const char *bearer_key(const char *authorization, size_t *len)
{
    if (!authorization || strncasecmp(authorization, "Bearer", 6) != 0)
        return NULL;
    const char *key = authorization + 6;
    if (*key != ' ' && *key != '\t')
        return NULL;
    while (*key == ' ' || *key == '\t')
        key++;
    size_t n = strlen(key);
    while (n && (key[n - 1] == ' ' || key[n - 1] == '\t'))
        n--;
    if (n == 0 || n > 4096)
        return NULL;
    *len = n;
    return key;
}

static const struct hg_client *client_for_key(const struct hg_config *cfg, const char *key,
                                              size_t n)
{
    unsigned char h[32];
    util_sha256(key, n, h);
    const struct hg_client *found = NULL;
    for (size_t i = 0; i < cfg->n_clients; i++) {
        const struct hg_client *cl = &cfg->clients[i];
        int eq = util_ct_equal(h, cl->key_sha256, sizeof h) & cl->has_key;
        /* branch-free select: no early exit, same work for every client */
        found = (const struct hg_client *)((uintptr_t)found |
                                           ((uintptr_t)cl & ((uintptr_t)0 - (uintptr_t)eq)));
    }
    util_wipe(h, sizeof h);
    return found;
}

const struct hg_client *auth_client(const struct hg_config *cfg, const char *authorization)
{
    size_t n;
    const char *key = bearer_key(authorization, &n);
    return key ? client_for_key(cfg, key, n) : NULL;
}

const struct hg_client *auth_client_memo(const struct hg_config *cfg, const char *authorization,
                                         struct auth_memo *m)
{
    size_t n;
    const char *key = bearer_key(authorization, &n);
    if (!key)
        return NULL;
    /* the same key as the connection's last verified one: its client, without hashing */
    if (m->client && m->cfg == cfg && m->gen == cfg->generation && m->len == n &&
        util_ct_equal(key, m->key, n))
        return m->client;
    const struct hg_client *found = client_for_key(cfg, key, n);
    if (found && n <= sizeof m->key) {
        auth_memo_wipe(m);
        memcpy(m->key, key, n);
        m->len = n;
        m->cfg = cfg;
        m->gen = cfg->generation;
        m->client = found;
    }
    return found;
}

void auth_memo_wipe(struct auth_memo *m)
{
    if (m->len)
        util_wipe(m->key, m->len);
    m->len = 0;
    m->cfg = NULL;
    m->gen = 0;
    m->client = NULL;
}

int auth_workspace(const struct hg_client *cl, const char *path, const char *ws,
                   const char **effective, const char **reason)
{
    *effective = NULL;
    *reason = NULL;
    int token_only = strcmp(path, "/v1/workspaces") == 0;
    if (ws && *ws) {
        if (!cl->all_workspaces) {
            int ok = 0;
            for (size_t i = 0; i < cl->n_workspaces; i++)
                ok |= strcmp(cl->workspaces[i], ws) == 0;
            if (!ok) {
                *reason = "workspace not allowed for this client";
                return -1;
            }
        }
        *effective = ws;
        return 0;
    }
    if (token_only)
        return 0;
    if (cl->default_workspace) {
        *effective = cl->default_workspace;
        return 0;
    }
    if (!cl->all_workspaces) {
        *reason = "X-Workspace-Id required: this client has no default workspace";
        return -1;
    }
    return 0;
}

int auth_mode_allows(enum hg_mode mode, const struct route_policy *route)
{
    return mode == HG_MODE_FULL || (route && route->readonly_ok);
}
