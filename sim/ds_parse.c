/*
 * ds_parse: pure helpers behind datasets (see sim_res.h): the label -> table-name rule,
 * identifier checks, per-value type inference and an RFC 4180 CSV reader that reads one
 * record at a time from a FILE*, so an uploaded file is never held whole in memory.
 *
 * Rules: no global state; the reader owns its buffers until sim_csv_free.
 */
#include "sim_res.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

char *sim_ds_table_name_from_label(const char *label)
{
    size_t n = label ? strlen(label) : 0;
    if (n == 0)
        return strdup("dataset");
    char *out = malloc(n + 1);
    if (!out)
        abort();
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)label[i];
        out[i] = (c < 0x80 && isalnum(c)) ? (char)tolower(c) : '_';
    }
    out[n] = '\0';
    return out;
}

int sim_ds_valid_ident(const char *name)
{
    if (!name || !*name || strlen(name) > 63)
        return 0;
    unsigned char c = (unsigned char)name[0];
    if (!(c < 0x80 && (isalpha(c) || c == '_')))
        return 0;
    for (const char *p = name + 1; *p; p++) {
        c = (unsigned char)*p;
        if (!(c < 0x80 && (isalnum(c) || c == '_')))
            return 0;
    }
    return 1;
}

const char *sim_ds_type_name(enum sim_ds_type t)
{
    switch (t) {
    case SIM_DS_BOOL:
        return "Boolean";
    case SIM_DS_INT:
        return "Int64";
    case SIM_DS_FLOAT:
        return "Float64";
    case SIM_DS_NULL: /* an all-null column is shown as text */
    case SIM_DS_TEXT:
    default:
        return "Utf8";
    }
}

enum sim_ds_type sim_ds_value_type(const char *s)
{
    if (!s || !*s)
        return SIM_DS_NULL;
    if (strcasecmp(s, "true") == 0 || strcasecmp(s, "false") == 0)
        return SIM_DS_BOOL;
    /* no surrounding spaces, no hex, no inf/nan: those stay text */
    if (isspace((unsigned char)s[0]) || isspace((unsigned char)s[strlen(s) - 1]))
        return SIM_DS_TEXT;
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1])))
        return SIM_DS_TEXT;
    char *end;
    errno = 0;
    (void)strtoll(s, &end, 10);
    if (*end == '\0' && errno == 0)
        return SIM_DS_INT;
    for (const char *q = s; *q; q++)
        if (*q == 'x' || *q == 'X' || *q == 'n' || *q == 'N' || *q == 'i' || *q == 'I')
            return SIM_DS_TEXT;
    errno = 0;
    (void)strtod(s, &end);
    if (*end == '\0' && errno == 0)
        return SIM_DS_FLOAT;
    return SIM_DS_TEXT;
}

enum sim_ds_type sim_ds_type_merge(enum sim_ds_type a, enum sim_ds_type b)
{
    if (a == SIM_DS_NULL)
        return b;
    if (b == SIM_DS_NULL || a == b)
        return a;
    if ((a == SIM_DS_INT && b == SIM_DS_FLOAT) || (a == SIM_DS_FLOAT && b == SIM_DS_INT))
        return SIM_DS_FLOAT;
    return SIM_DS_TEXT;
}

void sim_csv_init(sim_csv *c, FILE *f)
{
    memset(c, 0, sizeof *c);
    c->f = f;
}

static void sim_csv_putc(sim_csv *c, char ch)
{
    if (c->buf_len + 1 >= c->buf_cap) {
        size_t cap = c->buf_cap ? c->buf_cap * 2 : 256;
        char *b = realloc(c->buf, cap);
        if (!b)
            abort();
        c->buf = b;
        c->buf_cap = cap;
    }
    c->buf[c->buf_len++] = ch;
}

static void sim_csv_end_field(sim_csv *c, size_t start)
{
    sim_csv_putc(c, '\0');
    if (c->nfields == c->cap_fields) {
        size_t cap = c->cap_fields ? c->cap_fields * 2 : 16;
        size_t *o = realloc(c->offs, cap * sizeof *o);
        char **fv = realloc(c->fields, cap * sizeof *fv);
        if (!o || !fv)
            abort();
        c->offs = o;
        c->fields = fv;
        c->cap_fields = cap;
    }
    c->offs[c->nfields++] = start;
}

int sim_csv_next(sim_csv *c)
{
    c->nfields = 0;
    c->buf_len = 0;
    c->line++;
    int ch = getc(c->f);
    if (ch == EOF)
        return 0;
    /* skip a UTF-8 byte-order mark at the very start of the file */
    if (c->line == 1 && ch == 0xEF) {
        int b1 = getc(c->f), b2 = getc(c->f);
        if (b1 == 0xBB && b2 == 0xBF) {
            ch = getc(c->f);
            if (ch == EOF)
                return 0;
        } else {
            /* not a BOM: 0xEF is data, b1 is the next character, b2 goes back */
            if (b2 != EOF)
                ungetc(b2, c->f);
            sim_csv_putc(c, (char)0xEF);
            ch = b1;
        }
    }
    size_t start = 0;
    int in_quotes = 0, was_quoted = 0;
    for (;;) {
        if (ch == EOF) {
            if (in_quotes) {
                c->error = SIM_CSV_ERR_QUOTE;
                return -1;
            }
            break;
        }
        if (c->buf_len > SIM_CSV_MAX_RECORD) {
            c->error = SIM_CSV_ERR_LONG;
            return -1;
        }
        if (in_quotes) {
            if (ch == '"') {
                int nx = getc(c->f);
                if (nx == '"') {
                    sim_csv_putc(c, '"');
                } else {
                    in_quotes = 0;
                    ch = nx;
                    continue;
                }
            } else {
                if (ch == '\n')
                    c->line++;
                sim_csv_putc(c, (char)ch);
            }
        } else if (ch == '"' && c->buf_len == start && !was_quoted) {
            in_quotes = was_quoted = 1;
        } else if (ch == ',') {
            sim_csv_end_field(c, start);
            start = c->buf_len;
            was_quoted = 0;
        } else if (ch == '\r') {
            int nx = getc(c->f);
            if (nx != '\n' && nx != EOF)
                ungetc(nx, c->f);
            break;
        } else if (ch == '\n') {
            break;
        } else {
            sim_csv_putc(c, (char)ch);
        }
        ch = getc(c->f);
    }
    sim_csv_end_field(c, start);
    for (size_t i = 0; i < c->nfields; i++)
        c->fields[i] = c->buf + c->offs[i];
    return 1;
}

void sim_csv_free(sim_csv *c)
{
    free(c->buf);
    free(c->offs);
    free(c->fields);
    memset(c, 0, sizeof *c);
}
