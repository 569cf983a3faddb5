/*
 * auth_stage: the pipeline's first stage (stages.h). "Authorization: Bearer <client key>"
 * -> req->client and req->cred (auth.h, against req->cfg, through the connection's key
 * memo); 401 without a known key; the workspace checked or the client's default injected
 * (403 when not allowed). The client's key is removed from the headers and wiped: it never
 * travels further nor lingers.
 */
#include "auth_stage.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "hdr.h"
#include "metrics.h"
#include "util.h"

/* Remove (and wipe) n Authorization headers. */
static void drop_authorization(struct evkeyvalq *h, int n)
{
    struct evkeyval *kv, *next;
    for (kv = TAILQ_FIRST(h); n && kv; kv = next) {
        next = TAILQ_NEXT(kv, next);
        if (strcasecmp(kv->key, "Authorization") == 0) {
            util_wipe(kv->value, strlen(kv->value));
            TAILQ_REMOVE(h, kv, next);
            free(kv->key);
            free(kv->value);
            free(kv);
            n--;
        }
    }
}

static enum hg_stage_result auth_run(struct hg_req *req)
{
    /* one walk for the first Authorization and the first X-Workspace-Id (what
     * evhttp_find_header would return) */
    const char *authz = NULL, *ws = NULL;
    int n_authz = 0;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, &req->headers, next)
    {
        size_t kn = strlen(kv->key);
        if (kn == 13 && strcasecmp(kv->key, "Authorization") == 0) {
            if (!authz)
                authz = kv->value;
            n_authz++;
        } else if (kn == 14 && !ws && strcasecmp(kv->key, "X-Workspace-Id") == 0) {
            ws = kv->value;
        }
    }
    req->client = auth_client_memo(req->cfg, authz, req->auth_memo);
    int had_authz = authz != NULL;
    drop_authorization(&req->headers, n_authz);
    if (!req->client) {
        metrics_inc(M_AUTH_UNAUTHORIZED, 1);
        pipeline_respond_error(
            req, 401, NULL, had_authz ? "invalid client key" : "missing Authorization: Bearer key",
            NULL);
        return HG_DONE;
    }
    req->cred = req->client->credential;
    const char *eff = NULL, *why = NULL;
    if (auth_workspace(req->client, req->path, ws, &eff, &why) != 0) {
        metrics_inc(M_AUTH_FORBIDDEN, 1);
        pipeline_respond_error(req, 403, NULL, why, NULL);
        return HG_DONE;
    }
    if (eff && !ws) {
        /* a config name (checked there); the header just added is the last one */
        hdr_add(&req->headers, "X-Workspace-Id", 14, eff, strlen(eff));
        eff = TAILQ_LAST(&req->headers, evkeyvalq)->value;
    }
    req->workspace = eff;
    return HG_NEXT;
}

const struct hg_stage_ops auth_stage_ops = {
    .name = "auth",
    .run = auth_run,
};
