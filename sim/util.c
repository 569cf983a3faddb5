/*
 * util: the simulator's helpers without state: the log line, an aborting strdup, random
 * ids and RFC 3339 timestamps.
 *
 * Rules: no simulator state; ids use util_random (not the fault dice).
 */
#include "sim_util.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sim_log(const char *fmt, ...)
{
    char ts[40];
    sim_now_rfc3339(ts, true);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s hotdata-sim: ", ts);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

char *sim_strdup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

void sim_id_new(const char *prefix, char out[64])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rnd[20];
    util_random(rnd, sizeof rnd);
    size_t n = (size_t)snprintf(out, 64, "%s_", prefix);
    if (n > 40)
        n = 40;
    for (size_t i = 0; i < sizeof rnd; i++)
        out[n + i] = alphabet[rnd[i] % 36];
    out[n + sizeof rnd] = '\0';
}

void sim_now_rfc3339(char out[40], bool ms)
{
    uint64_t now = util_wall_ms();
    char base[32];
    util_rfc3339((int64_t)(now / 1000), base);
    if (!ms) {
        snprintf(out, 40, "%s", base);
        return;
    }
    /* "YYYY-MM-DDTHH:MM:SSZ" -> "YYYY-MM-DDTHH:MM:SS.mmmZ" */
    size_t len = strlen(base);
    if (len > 0 && base[len - 1] == 'Z')
        base[len - 1] = '\0';
    snprintf(out, 40, "%s.%03uZ", base, (unsigned)(now % 1000));
}
