/*
 * log: the error log and the access log.
 *
 * Error log: log_msg(LOG_ERR.., fmt, ...) writes one line to stderr, prefixed with the
 * sd-daemon level ("<3>") when stderr is the journal, else with a timestamp. Messages must
 * never carry a token, a client key or SQL text: callers pass names, not values.
 *
 * Access log: one JSON object per request, per line:
 *   {"time":"2026-01-01T00:00:00.123Z","request_id":"..","client":"..","method":"GET",
 *    "path":"/v1/..","status":200,"upstream_status":200,"bytes_in":0,"bytes_out":123,
 *    "latency_us":456,"cache":"-","sql_hash":"..","attempts":1}
 * ("client" is "-" before auth; "sql_hash" only for POST /v1/query with a parseable body.)
 * Lines are appended to a per-worker buffer and written by a timer every 100 ms or once
 * 64 KiB are pending, so a request never waits for the disk. SIGUSR1 and SIGHUP reopen
 * the file (log_reopen(): logrotate's habit).
 *
 * Threading: log_msg is thread-safe (one write(2) per line). An access-log buffer belongs
 * to one worker.
 */
#ifndef HG_LOG_H
#define HG_LOG_H

#include <event2/event.h>
#include <syslog.h>

struct hg_req;
struct log_access;

/* Set the error-log level (LOG_ERR .. LOG_DEBUG) and the access-log target ("stderr",
 * "off" or a path). Returns 0, -1 when the file cannot be opened. */
int log_init(int level, const char *access_log);
void log_shutdown(void);
int log_reopen(void);
/* A reload's [server] log_level (any thread). */
void log_set_level(int level);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int log_enabled(int level);

/* Per worker. */
struct log_access *log_access_new(struct event_base *base);
void log_access_write(struct log_access *la, const struct hg_req *req);
void log_access_flush(struct log_access *la);
void log_access_free(struct log_access *la); /* flushes */

#endif
