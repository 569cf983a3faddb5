/*
 * pg_types: PostgreSQL result values (text format) -> the API's JSON values and the type
 * names stored with a result (which sim/arrow.c turns into Arrow types).
 *
 *   int2/int4/int8/oid        -> JSON integer                 "int64"   Int64
 *   float4/float8             -> JSON real; NaN/±Infinity null "float64" Float64
 *   numeric                   -> JSON number (integer when it has no fraction); NaN and
 *                                ±Infinity null               "decimal" Float64
 *   bool                      -> JSON true/false              "bool"    Bool
 *   date                      -> "YYYY-MM-DD"                 "date32"  Date32
 *   timestamp                 -> "YYYY-MM-DDTHH:MM:SS[.ffffff]" "timestamp" Timestamp(us)
 *   timestamptz (session UTC) -> "YYYY-MM-DDTHH:MM:SS[.ffffff]Z" "timestamptz"
 *                                                              Timestamp(us, "UTC")
 *   ±infinity dates/timestamps -> null
 *   everything else (text, varchar, json, uuid, interval, arrays...) -> its text form, "utf8"
 * NULL is JSON null for every type. The service (Arrow to JSON) writes non-finite floats as
 * null too: a cell is never dropped, every row is as long as its columns.
 *
 * Rules: pure functions.
 */
#include "sim_pg_types.h"

#include <errno.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* built-in type oids (pg_type.dat) */
#define PG_BOOL 16
#define PG_INT8 20
#define PG_INT2 21
#define PG_INT4 23
#define PG_OID 26
#define PG_FLOAT4 700
#define PG_FLOAT8 701
#define PG_DATE 1082
#define PG_TIMESTAMP 1114
#define PG_TIMESTAMPTZ 1184
#define PG_NUMERIC 1700

const char *sim_pg_type_name(Oid oid)
{
    switch (oid) {
    case PG_INT2:
    case PG_INT4:
    case PG_INT8:
    case PG_OID:
        return "int64";
    case PG_FLOAT4:
    case PG_FLOAT8:
        return "float64";
    case PG_NUMERIC:
        return "decimal";
    case PG_BOOL:
        return "bool";
    case PG_DATE:
        return "date32";
    case PG_TIMESTAMP:
        return "timestamp";
    case PG_TIMESTAMPTZ:
        return "timestamptz";
    default:
        return "utf8";
    }
}

static bool sim_pg_nonfinite(const char *s)
{
    return !strcmp(s, "NaN") || !strcmp(s, "Infinity") || !strcmp(s, "-Infinity") ||
           !strcmp(s, "infinity") || !strcmp(s, "-infinity");
}

/* "2025-01-02 03:04:05.123+00" -> "2025-01-02T03:04:05.123Z" (tz) or without the offset. */
static json_t *sim_pg_ts_json(const char *s, int len, bool tz)
{
    char buf[64];
    if (len <= 0 || (size_t)len >= sizeof buf - 2)
        return json_stringn(s, (size_t)(len > 0 ? len : 0));
    memcpy(buf, s, (size_t)len);
    buf[len] = '\0';
    char *sp = strchr(buf, ' ');
    if (sp && sp - buf == 10)
        *sp = 'T';
    if (tz) {
        /* the session runs in UTC: the offset is "+00" */
        size_t n = strlen(buf);
        if (n > 3 && !strcmp(buf + n - 3, "+00"))
            strcpy(buf + n - 3, "Z");
    }
    return json_string(buf);
}

static json_t *sim_pg_numeric_json(const char *s)
{
    if (!strchr(s, '.') && !strchr(s, 'e') && !strchr(s, 'E')) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (!*end && errno == 0)
            return json_integer(v);
    }
    double d = strtod(s, NULL);
    return isfinite(d) ? json_real(d) : json_null();
}

json_t *sim_pg_cell_json(Oid oid, const char *text, int len)
{
    switch (oid) {
    case PG_BOOL:
        return json_boolean(text[0] == 't');
    case PG_INT2:
    case PG_INT4:
    case PG_INT8:
    case PG_OID:
        return json_integer(strtoll(text, NULL, 10));
    case PG_FLOAT4:
    case PG_FLOAT8: {
        if (sim_pg_nonfinite(text))
            return json_null();
        double d = strtod(text, NULL);
        return isfinite(d) ? json_real(d) : json_null();
    }
    case PG_NUMERIC:
        return sim_pg_nonfinite(text) ? json_null() : sim_pg_numeric_json(text);
    case PG_DATE:
        return sim_pg_nonfinite(text) ? json_null() : json_stringn(text, (size_t)len);
    case PG_TIMESTAMP:
    case PG_TIMESTAMPTZ:
        return sim_pg_nonfinite(text) ? json_null()
                                      : sim_pg_ts_json(text, len, oid == PG_TIMESTAMPTZ);
    default: {
        json_t *v = json_stringn(text, (size_t)len);
        return v ? v : json_string(""); /* not UTF-8 (the database is UTF8: not expected) */
    }
    }
}

char *sim_pg_quote_ident(const char *name)
{
    size_t n = strlen(name);
    char *q = malloc(2 * n + 3);
    if (!q)
        abort();
    size_t j = 0;
    q[j++] = '"';
    for (size_t i = 0; i < n; i++) {
        if (name[i] == '"')
            q[j++] = '"';
        q[j++] = name[i];
    }
    q[j++] = '"';
    q[j] = '\0';
    return q;
}
