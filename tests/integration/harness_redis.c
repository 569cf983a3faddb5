/*
 * harness_redis: start/stop redis-server and talk to it synchronously (see harness_redis.h).
 */
#include "harness_redis.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

static int wait_ping(int port, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        char *r = harness_redis(port, "PING");
        int ok = r && strcmp(r, "PONG") == 0;
        free(r);
        if (ok)
            return 0;
        usleep(50000);
    }
    return -1;
}

int harness_start_redis(hproc *p, const char *dir, int port)
{
    char portstr[16], log[512];
    p->port = port ? port : harness_free_port();
    snprintf(portstr, sizeof portstr, "%d", p->port);
    snprintf(log, sizeof log, "%s/redis-%d.log", dir, p->port);
    char *argv[] = {"/usr/bin/redis-server",
                    "--port",
                    portstr,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    (char *)dir,
                    "--protected-mode",
                    "no",
                    "--enable-debug-command",
                    "yes",
                    NULL};
    if (harness_spawn(p, argv, log) != 0)
        return -1;
    if (wait_ping(p->port, 10000) != 0) {
        harness_dump_log(p, 20);
        return -1;
    }
    return 0;
}

int harness_start_redis_replica(hproc *p, const char *dir, int master_port)
{
    char portstr[16], mport[16], log[512];
    p->port = harness_free_port();
    snprintf(portstr, sizeof portstr, "%d", p->port);
    snprintf(mport, sizeof mport, "%d", master_port);
    snprintf(log, sizeof log, "%s/redis-%d.log", dir, p->port);
    char *argv[] = {"/usr/bin/redis-server",
                    "--port",
                    portstr,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    (char *)dir,
                    "--protected-mode",
                    "no",
                    "--replicaof",
                    "127.0.0.1",
                    mport,
                    NULL};
    if (harness_spawn(p, argv, log) != 0)
        return -1;
    if (wait_ping(p->port, 10000) != 0)
        return -1;
    for (int waited = 0; waited < 15000; waited += 50) {
        char *r = harness_redis(p->port, "INFO replication");
        int up = r && strstr(r, "master_link_status:up");
        free(r);
        if (up)
            return 0;
        usleep(50000);
    }
    harness_dump_log(p, 20);
    return -1;
}

int harness_start_sentinel(hproc *p, const char *dir, int master_port, const char *name)
{
    char conf[512], log[512];
    p->port = harness_free_port();
    snprintf(conf, sizeof conf, "%s/sentinel-%d.conf", dir, p->port);
    snprintf(log, sizeof log, "%s/sentinel-%d.log", dir, p->port);
    FILE *f = fopen(conf, "w");
    if (!f)
        return -1;
    fprintf(f,
            "port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\n"
            "sentinel monitor %s 127.0.0.1 %d 1\n"
            "sentinel down-after-milliseconds %s 1000\n"
            "sentinel failover-timeout %s 5000\n"
            "sentinel parallel-syncs %s 1\n",
            p->port, dir, name, master_port, name, name, name);
    fclose(f);
    char *argv[] = {"/usr/bin/redis-server", conf, "--sentinel", NULL};
    if (harness_spawn(p, argv, log) != 0)
        return -1;
    if (wait_ping(p->port, 10000) != 0) {
        harness_dump_log(p, 20);
        return -1;
    }
    return 0;
}

static void append(char **out, size_t *len, const char *s)
{
    size_t n = strlen(s);
    *out = realloc(*out, *len + n + 2);
    if (*len)
        (*out)[(*len)++] = ' ';
    memcpy(*out + *len, s, n + 1);
    *len += n;
}

static void flatten(const redisReply *r, char **out, size_t *len)
{
    char num[32];
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        append(out, len, r->str);
        break;
    case REDIS_REPLY_ERROR: {
        char *e = malloc(strlen(r->str) + 6);
        sprintf(e, "ERR: %s", r->str);
        append(out, len, e);
        free(e);
        break;
    }
    case REDIS_REPLY_INTEGER:
        snprintf(num, sizeof num, "%lld", r->integer);
        append(out, len, num);
        break;
    case REDIS_REPLY_NIL:
        append(out, len, "(nil)");
        break;
    case REDIS_REPLY_ARRAY:
        for (size_t i = 0; i < r->elements; i++)
            flatten(r->element[i], out, len);
        if (!r->elements && !*len)
            append(out, len, "");
        break;
    }
}

static redisReply *vcmd(int port, const char *fmt, va_list ap)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisReply *r = redisvCommand(c, fmt, ap);
    redisFree(c);
    return r;
}

char *harness_redis(int port, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcmd(port, fmt, ap);
    va_end(ap);
    if (!r)
        return NULL;
    char *out = NULL;
    size_t len = 0;
    flatten(r, &out, &len);
    freeReplyObject(r);
    if (!out)
        out = strdup("");
    return out;
}

long long harness_redis_int(int port, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcmd(port, fmt, ap);
    va_end(ap);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    return v;
}
