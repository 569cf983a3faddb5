/*
 * harness_redis: a real redis-server (and redis-sentinel) for tests, on free loopback ports,
 * with nothing persisted (--save '' --appendonly no), plus a synchronous hiredis client to
 * look at or disturb it (DEBUG SLEEP, CLIENT KILL, SCRIPT FLUSH ...).
 */
#ifndef HG_HARNESS_REDIS_H
#define HG_HARNESS_REDIS_H

#include "harness.h"

/* Start redis-server on a free port (p->port) with its log under dir; port 0 = pick one
 * (a fixed port restarts a killed server on the same address). 0 when it answers PING. */
int harness_start_redis(hproc *p, const char *dir, int port);
/* Start a replica of 127.0.0.1:master_port on a free port; 0 once its link is up. */
int harness_start_redis_replica(hproc *p, const char *dir, int master_port);
/* Start a sentinel on a free port watching 127.0.0.1:master_port as master name. */
int harness_start_sentinel(hproc *p, const char *dir, int master_port, const char *name);
/* Run one command (printf-style, hiredis redisCommand) against 127.0.0.1:port and return
 * the reply as a malloc'd string (integers as decimal, arrays space-joined, nil as "(nil)",
 * errors as "ERR: ..."), or NULL when no reply. */
char *harness_redis(int port, const char *fmt, ...);
/* The same, returning an integer reply (-1 when not an integer). */
long long harness_redis_int(int port, const char *fmt, ...);

#endif
