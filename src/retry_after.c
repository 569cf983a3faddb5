/*
 * retry_after: see retry_after.h. A small hand parser rather than strptime(3): strptime
 * depends on the locale and accepts more than the grammar, and the date math is done with
 * days-from-civil so that neither timegm nor TZ is involved.
 */
#include "retry_after.h"

#include <stddef.h>
#include <string.h>

static const char *const wkday_short[7] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const wkday_long[7] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                          "Friday", "Saturday", "Sunday"};
static const char *const months[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int64_t y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

/* Match one of names (exact case, as the grammar says) at *p; advance and return its index. */
static int match_name(const char **p, const char *const *names, int n)
{
    for (int i = 0; i < n; i++) {
        size_t len = strlen(names[i]);
        if (strncmp(*p, names[i], len) == 0) {
            *p += len;
            return i;
        }
    }
    return -1;
}

/* Exactly n digits at *p. */
static int take_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit((*p)[i]))
            return 0;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 1;
}

static int take_char(const char **p, char c)
{
    if (**p != c)
        return 0;
    (*p)++;
    return 1;
}

/* "HH:MM:SS" */
static int take_time(const char **p, int *h, int *mi, int *s)
{
    return take_digits(p, 2, h) && take_char(p, ':') && take_digits(p, 2, mi) &&
           take_char(p, ':') && take_digits(p, 2, s) && *h <= 23 && *mi <= 59 && *s <= 60;
}

static int take_month(const char **p, int *m)
{
    int i = match_name(p, months, 12);
    if (i < 0)
        return 0;
    *m = i + 1;
    return 1;
}

static int finish(const char *p, int64_t y, int m, int d, int h, int mi, int s, int64_t *out)
{
    while (is_ows(*p))
        p++;
    if (*p != '\0')
        return 0;
    if (d < 1 || d > days_in_month(y, m))
        return 0;
    *out = days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60 + s;
    return 1;
}

int retry_after_parse_http_date(const char *s, int64_t now_wall_s, int64_t *out)
{
    if (!s)
        return 0;
    const char *p = s;
    while (is_ows(*p))
        p++;
    int d = 0, m = 0, h = 0, mi = 0, sec = 0, y4 = 0;

    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    const char *q = p;
    if (match_name(&q, wkday_short, 7) >= 0 && take_char(&q, ',')) {
        if (take_char(&q, ' ') && take_digits(&q, 2, &d) && take_char(&q, ' ') &&
            take_month(&q, &m) && take_char(&q, ' ') && take_digits(&q, 4, &y4) &&
            take_char(&q, ' ') && take_time(&q, &h, &mi, &sec) && strncmp(q, " GMT", 4) == 0)
            return finish(q + 4, y4, m, d, h, mi, sec, out);
        return 0;
    }

    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    q = p;
    if (match_name(&q, wkday_long, 7) >= 0 && take_char(&q, ',')) {
        int y2 = 0;
        if (take_char(&q, ' ') && take_digits(&q, 2, &d) && take_char(&q, '-') &&
            take_month(&q, &m) && take_char(&q, '-') && take_digits(&q, 2, &y2) &&
            take_char(&q, ' ') && take_time(&q, &h, &mi, &sec) && strncmp(q, " GMT", 4) == 0) {
            /* RFC 9110 5.6.7: a two-digit year more than 50 years in the future is in
             * the past century. */
            int64_t now_year = 1970 + now_wall_s / 31556952; /* close enough for a century */
            int64_t century = now_year - now_year % 100;
            int64_t y = century + y2;
            if (y > now_year + 50)
                y -= 100;
            return finish(q + 4, y, m, d, h, mi, sec, out);
        }
        return 0;
    }

    /* asctime: "Sun Nov  6 08:49:37 1994" (day is two digits or space + digit) */
    q = p;
    if (match_name(&q, wkday_short, 7) >= 0 && take_char(&q, ' ') && take_month(&q, &m) &&
        take_char(&q, ' ')) {
        if (q[0] == ' ' && is_digit(q[1])) {
            d = q[1] - '0';
            q += 2;
        } else if (!take_digits(&q, 2, &d)) {
            return 0;
        }
        if (take_char(&q, ' ') && take_time(&q, &h, &mi, &sec) && take_char(&q, ' ') &&
            take_digits(&q, 4, &y4))
            return finish(q, y4, m, d, h, mi, sec, out);
    }
    return 0;
}

int retry_after_parse(const char *value, uint64_t now_wall_ms, uint32_t cap_ms, uint32_t *delay_ms)
{
    if (!value)
        return 0;
    const char *p = value;
    while (is_ows(*p))
        p++;
    int negative = 0;
    if (*p == '-' && is_digit(p[1])) {
        /* Not in the grammar, but its meaning is unambiguous: "not later than now". */
        negative = 1;
        p++;
    }
    if (is_digit(*p)) {
        uint64_t secs = 0;
        while (is_digit(*p)) {
            if (secs <= UINT32_MAX) /* saturate: anything this large is capped anyway */
                secs = secs * 10 + (uint64_t)(*p - '0');
            p++;
        }
        while (is_ows(*p))
            p++;
        if (*p != '\0')
            return 0;
        uint64_t ms = negative ? 0 : secs * 1000;
        *delay_ms = ms > cap_ms ? cap_ms : (uint32_t)ms;
        return 1;
    }
    if (negative)
        return 0;
    int64_t when = 0;
    if (!retry_after_parse_http_date(p, (int64_t)(now_wall_ms / 1000), &when))
        return 0;
    int64_t diff = when * 1000 - (int64_t)now_wall_ms;
    if (diff <= 0)
        *delay_ms = 0;
    else
        *delay_ms = (uint64_t)diff > cap_ms ? cap_ms : (uint32_t)diff;
    return 1;
}
