/*
 * retry_after: parse an HTTP Retry-After value (RFC 9110 section 10.2.3) into a delay.
 *
 * Both forms are accepted: delta-seconds ("120") and HTTP-date, in all three forms a
 * recipient must accept (RFC 9110 section 5.6.7): IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT",
 * the obsolete RFC 850 form "Sunday, 06-Nov-94 08:49:37 GMT" and asctime "Sun Nov  6 08:49:37
 * 1994". Garbage means "not set" (the caller falls back to its own back-off); a delay above the
 * cap is clamped to the cap (an upstream must not be able to park us for a day); a negative
 * delta or a date in the past means "retry now" (0).
 *
 * Rules: pure functions, no allocation, no locale or global state (no strptime, no getenv(TZ)):
 * thread-safe. The wall clock is passed in so that tests can pin it.
 */
#ifndef HG_RETRY_AFTER_H
#define HG_RETRY_AFTER_H

#include <stdint.h>

/* The cap applied when the caller has no configured one: 300 s. */
#define RETRY_AFTER_DEFAULT_CAP_MS 300000u

/*
 * Parse value (may be NULL). now_wall_ms: the current wall clock (ms since the Unix epoch),
 * used for HTTP-dates. cap_ms: the largest delay returned.
 * Returns 1 and sets *delay_ms (0..cap_ms) when the value is a valid Retry-After, 0 otherwise
 * (*delay_ms untouched).
 */
int retry_after_parse(const char *value, uint64_t now_wall_ms, uint32_t cap_ms, uint32_t *delay_ms);

/*
 * Parse an HTTP-date in any of the three forms into seconds since the Unix epoch.
 * now_wall_s resolves the two-digit year of the RFC 850 form (RFC 9110: a year that
 * looks more than 50 years in the future is taken to be in the past century).
 * Returns 1 on success, 0 on garbage.
 */
int retry_after_parse_http_date(const char *s, int64_t now_wall_s, int64_t *out);

#endif
