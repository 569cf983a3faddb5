/*
 * sqlrewrite: turns the API's three-part table names (connection.schema.table,
 * datasets.schema.table) into the quoted SQLite table names that hold the data, so user
 * SQL runs on SQLite unchanged otherwise.
 *
 * Rules: pure (no globals, no I/O); the resolver decides what a name maps to. A small
 * tokenizer skips string literals ('...' with '' escapes), comments (-- and / * * /),
 * numbers and identifiers quoted with ` or [ ]. Identifiers are bare ([A-Za-z_][A-Za-z0-9_$]*,
 * folded to lowercase like Postgres) or "double quoted" ("" escapes, case kept). A dotted
 * chain of 3 or 4 parts (the 4th being a column) has its first three parts looked up.
 */
#include "sim_sqlrewrite.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sim_sb {
    char *p;
    size_t len, cap;
};

static void sim_sb_add(struct sim_sb *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static bool sim_ident_start(unsigned char c)
{
    return isalpha(c) || c == '_' || c >= 0x80;
}

static bool sim_ident_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

/*
 * Parse one identifier at s[i]; on success returns the index after it and stores the
 * (unquoted, case-folded when bare) name in a malloc'd *name. Returns 0 when s[i] does not
 * start an identifier; (size_t)-1 on an unterminated quote.
 */
static size_t sim_parse_ident(const char *s, size_t i, char **name)
{
    unsigned char c = (unsigned char)s[i];
    if (c == '"') {
        struct sim_sb b = {0};
        size_t j = i + 1;
        for (;;) {
            if (s[j] == '\0') {
                free(b.p);
                return (size_t)-1;
            }
            if (s[j] == '"') {
                if (s[j + 1] == '"') {
                    sim_sb_add(&b, "\"", 1);
                    j += 2;
                    continue;
                }
                j++;
                break;
            }
            sim_sb_add(&b, s + j, 1);
            j++;
        }
        if (!b.p)
            sim_sb_add(&b, "", 0);
        *name = b.p;
        return j;
    }
    if (!sim_ident_start(c))
        return 0;
    size_t j = i;
    while (s[j] && sim_ident_char((unsigned char)s[j]))
        j++;
    char *n = malloc(j - i + 1);
    if (!n)
        abort();
    for (size_t k = 0; k < j - i; k++)
        n[k] = (char)tolower((unsigned char)s[i + k]);
    n[j - i] = '\0';
    *name = n;
    return j;
}

static char *sim_quote(const char *name)
{
    struct sim_sb b = {0};
    sim_sb_add(&b, "\"", 1);
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            sim_sb_add(&b, "\"", 1);
        sim_sb_add(&b, p, 1);
    }
    sim_sb_add(&b, "\"", 1);
    return b.p;
}

static size_t sim_skip_ws(const char *s, size_t i)
{
    while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')
        i++;
    return i;
}

int sim_sql_rewrite(const char *sql, sim_sql_resolve_fn resolve, sim_sql_is_catalog_fn is_catalog,
                    void *ud, char **out, char **err)
{
    return sim_sql_rewrite_ex(sql, resolve, is_catalog, NULL, ud, out, err);
}

/* keywords that end a FROM list (a comma after them is not a table separator) */
static bool sim_ends_from(const char *w)
{
    static const char *const kw[] = {"where",     "group",  "order", "limit",  "having",  "union",
                                     "on",        "select", "using", "window", "qualify", "except",
                                     "intersect", "offset", "fetch", NULL};
    for (int k = 0; kw[k]; k++)
        if (strcmp(w, kw[k]) == 0)
            return true;
    return false;
}

int sim_sql_rewrite_ex(const char *sql, sim_sql_resolve_fn resolve,
                       sim_sql_is_catalog_fn is_catalog, sim_sql_resolve_short_fn resolve_short,
                       void *ud, char **out, char **err)
{
    struct sim_sb b = {0};
    size_t i = 0;
    /* table position tracking for resolve_short: the previous significant token */
    enum { PREV_OTHER, PREV_FROM, PREV_COMMA } prev = PREV_OTHER;
    bool in_from = false;
    *out = NULL;
    *err = NULL;
    sim_sb_add(&b, "", 0);
    while (sql[i]) {
        unsigned char c = (unsigned char)sql[i];
        if (c == '\'') {
            size_t j = i + 1;
            for (;;) {
                if (!sql[j])
                    break;
                if (sql[j] == '\'') {
                    if (sql[j + 1] == '\'') {
                        j += 2;
                        continue;
                    }
                    j++;
                    break;
                }
                j++;
            }
            sim_sb_add(&b, sql + i, j - i);
            i = j;
            prev = PREV_OTHER;
            continue;
        }
        if (c == '-' && sql[i + 1] == '-') {
            size_t j = i;
            while (sql[j] && sql[j] != '\n')
                j++;
            sim_sb_add(&b, sql + i, j - i);
            i = j;
            continue;
        }
        if (c == '/' && sql[i + 1] == '*') {
            const char *e = strstr(sql + i + 2, "*/");
            size_t j = e ? (size_t)(e - sql) + 2 : strlen(sql);
            sim_sb_add(&b, sql + i, j - i);
            i = j;
            continue;
        }
        if (c == '`' || c == '[') {
            char close = c == '`' ? '`' : ']';
            const char *e = strchr(sql + i + 1, close);
            size_t j = e ? (size_t)(e - sql) + 1 : strlen(sql);
            sim_sb_add(&b, sql + i, j - i);
            i = j;
            prev = PREV_OTHER;
            continue;
        }
        if (isdigit(c)) {
            size_t j = i;
            while (sql[j] && (isalnum((unsigned char)sql[j]) || sql[j] == '.' || sql[j] == '_'))
                j++;
            sim_sb_add(&b, sql + i, j - i);
            i = j;
            prev = PREV_OTHER;
            continue;
        }
        if (c == '"' || sim_ident_start(c)) {
            /* a dotted chain of identifiers */
            char *parts[5] = {0};
            size_t np = 0, j = i, chain_end = i;
            bool bad = false;
            for (;;) {
                char *name = NULL;
                size_t k = sim_parse_ident(sql, j, &name);
                if (k == (size_t)-1) {
                    bad = true;
                    break;
                }
                if (k == 0)
                    break;
                if (np < 5)
                    parts[np] = name;
                else
                    free(name);
                np++;
                chain_end = k;
                size_t d = sim_skip_ws(sql, k);
                if (sql[d] != '.')
                    break;
                size_t n2 = sim_skip_ws(sql, d + 1);
                if (sql[n2] != '"' && !sim_ident_start((unsigned char)sql[n2]))
                    break; /* "t.*" and the like */
                j = n2;
            }
            if (bad) {
                for (size_t k = 0; k < np && k < 5; k++)
                    free(parts[k]);
                /* unterminated quoted identifier: copy the rest, SQLite reports it */
                sim_sb_add(&b, sql + i, strlen(sql + i));
                break;
            }
            bool replaced = false;
            if (np == 3 || np == 4) {
                char *t = resolve(ud, parts[0], parts[1], parts[2]);
                if (t) {
                    char *q = sim_quote(t);
                    free(t);
                    sim_sb_add(&b, q, strlen(q));
                    free(q);
                    if (np == 4) {
                        char *q4 = sim_quote(parts[3]);
                        sim_sb_add(&b, ".", 1);
                        sim_sb_add(&b, q4, strlen(q4));
                        free(q4);
                    }
                    replaced = true;
                } else if (is_catalog && is_catalog(ud, parts[0]) && np == 3) {
                    size_t need = strlen(parts[0]) + strlen(parts[1]) + strlen(parts[2]) + 64;
                    *err = malloc(need);
                    if (!*err)
                        abort();
                    snprintf(*err, need, "table '%s.%s.%s' not found", parts[0], parts[1],
                             parts[2]);
                    for (size_t k = 0; k < np && k < 5; k++)
                        free(parts[k]);
                    free(b.p);
                    return -1;
                }
            }
            if (!replaced && resolve_short && (np == 1 || np == 2) &&
                (prev == PREV_FROM || (prev == PREV_COMMA && in_from))) {
                char *t = np == 1 ? resolve_short(ud, NULL, parts[0])
                                  : resolve_short(ud, parts[0], parts[1]);
                if (t) {
                    char *q = sim_quote(t);
                    free(t);
                    sim_sb_add(&b, q, strlen(q));
                    free(q);
                    replaced = true;
                }
            }
            prev = PREV_OTHER;
            if (np == 1 && sql[i] != '"') {
                if (strcmp(parts[0], "from") == 0 || strcmp(parts[0], "join") == 0) {
                    prev = PREV_FROM;
                    in_from = strcmp(parts[0], "from") == 0;
                } else if (sim_ends_from(parts[0])) {
                    in_from = false;
                }
            }
            if (!replaced)
                sim_sb_add(&b, sql + i, chain_end - i);
            for (size_t k = 0; k < np && k < 5; k++)
                free(parts[k]);
            i = chain_end;
            continue;
        }
        if (c == ',')
            prev = PREV_COMMA;
        else if (c == '(' || c == ')') {
            prev = PREV_OTHER;
            in_from = false;
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            prev = PREV_OTHER;
        sim_sb_add(&b, sql + i, 1);
        i++;
    }
    *out = b.p;
    return 0;
}
