/*
 * fuzz_retry_after: libFuzzer target for src/retry_after.c (Retry-After from an upstream
 * 429/503: delta-seconds or an HTTP-date in three forms).
 *
 * Input: bytes 0-3 pick the wall clock (1970..2200) and the cap; the rest is the value
 * (NUL terminated copy; any embedded NUL ends it, as in a C header value).
 * Checks, besides memory safety: an accepted value yields 0..cap; an HTTP-date that parses
 * names a real calendar date and time, which gmtime_r gives back field by field (so the
 * day/month/year arithmetic agrees with libc's); the delay equals the date minus now,
 * clamped; leading/trailing blanks do not change the verdict.
 * Build: CC=clang BUILD_DIR=build-fuzz ./scripts/build.sh -DHG_FUZZ=ON (scripts/fuzz.sh).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "retry_after.h"

static const char *const mon[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* The date the parser claims (when) must be what the text says, for the fixed forms. */
static void check_date_text(const char *s, int64_t when)
{
    while (*s == ' ' || *s == '\t')
        s++;
    time_t t = (time_t)when;
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        abort();
    int d, y, h, mi, sec;
    char m[4];
    const char *comma = strchr(s, ',');
    if (comma && comma - s == 3) {
        /* IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT" */
        if (sscanf(comma + 2, "%2d %3s %4d %2d:%2d:%2d", &d, m, &y, &h, &mi, &sec) != 6)
            abort();
    } else if (comma) {
        /* RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT": the century is the parser's choice */
        if (sscanf(comma + 2, "%2d-%3s-%2d %2d:%2d:%2d", &d, m, &y, &h, &mi, &sec) != 6)
            abort();
        if (y != (tm.tm_year + 1900) % 100)
            abort();
        y = tm.tm_year + 1900;
    } else {
        /* asctime "Sun Nov  6 08:49:37 1994" */
        if (sscanf(s + 4, "%3s %2d %2d:%2d:%2d %4d", m, &d, &h, &mi, &sec, &y) != 6)
            abort();
    }
    if (sec == 60) {
        /* a leap second reads as the next minute's 00 */
        return;
    }
    if (tm.tm_mday != d || strcmp(mon[tm.tm_mon], m) != 0 || tm.tm_year + 1900 != y ||
        tm.tm_hour != h || tm.tm_min != mi || tm.tm_sec != sec)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    /* now: 1970..~2200, in ms */
    uint64_t now_ms = ((uint64_t)data[0] << 16 | (uint64_t)data[1] << 8 | data[2]) * 431000ull *
                      1000ull / 1000ull;
    uint32_t cap = data[3] & 1 ? RETRY_AFTER_DEFAULT_CAP_MS : (uint32_t)data[3] * 100000u;
    data += 4;
    size -= 4;
    char *v = malloc(size + 1);
    memcpy(v, data, size);
    v[size] = '\0';

    uint32_t delay = 0xdeadbeef;
    int ok = retry_after_parse(v, now_ms, cap, &delay);
    if (ok && delay > cap)
        abort();
    if (!ok && delay != 0xdeadbeef)
        abort(); /* untouched on garbage */

    int64_t when = 0;
    if (retry_after_parse_http_date(v, (int64_t)(now_ms / 1000), &when)) {
        check_date_text(v, when);
        /* a date is a valid Retry-After, and its delay is the difference, clamped */
        uint32_t d2 = 0;
        if (!retry_after_parse(v, now_ms, cap, &d2))
            abort();
        int64_t diff = when * 1000 - (int64_t)now_ms;
        uint32_t want = diff <= 0 ? 0 : (uint64_t)diff > cap ? cap : (uint32_t)diff;
        if (d2 != want)
            abort();
    }

    /* blanks around the value do not matter */
    char *padded = malloc(size + 3);
    padded[0] = ' ';
    memcpy(padded + 1, v, strlen(v));
    padded[1 + strlen(v)] = '\t';
    padded[2 + strlen(v)] = '\0';
    uint32_t d3 = 0;
    int ok3 = retry_after_parse(padded, now_ms, cap, &d3);
    if (ok3 != ok || (ok && d3 != delay))
        abort();
    free(padded);
    free(v);
    return 0;
}
